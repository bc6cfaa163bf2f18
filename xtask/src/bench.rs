//! `cargo xtask bench`: bring-up and teardown measured side by side against the engine's raw
//! API floor and the tools people would use instead.
//!
//! Builds what the benchmark drives (the reference image archive, the `bottle` binary in
//! release), then runs the `contenders` bench target of `bottle-bench` in release with the
//! given options. The engines must answer (`cargo xtask engines`). The report goes to
//! `target/bench/latest.md` and replaces the results section of `docs/BENCHMARKS.md` unless
//! `--no-doc` is given. `cargo xtask bench --help` lists the options.

use std::path::PathBuf;

use crate::util::{cargo, root, run as sh};

/// Runs the benchmark.
pub fn run(args: &[String]) -> Result<(), String> {
    let no_doc = args.iter().any(|a| a == "--no-doc");
    let args: Vec<String> = args.iter().filter(|a| *a != "--no-doc").cloned().collect();
    let help = args.iter().any(|a| a == "-h" || a == "--help");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));

    let mut bench = cargo();
    bench.args(["bench", "-p", "bottle-bench", "--bench", "contenders", "--"]);
    if !help {
        let archive = crate::image::run(&[])?;
        sh(cargo().args(["build", "--release", "-p", "bottle-cli"]))?;
        let shown = std::iter::once("cargo xtask bench".to_string())
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        bench
            .arg("--bottle-bin")
            .arg(target_dir.join("release/bottle"))
            .arg("--archive")
            .arg(archive)
            .arg("--out")
            .arg(target_dir.join("bench/latest.md"))
            .args(["--command", &shown]);
        if !no_doc {
            bench
                .arg("--update-doc")
                .arg(root().join("docs/BENCHMARKS.md"));
        }
    }
    bench.args(&args);
    sh(&mut bench)
}
