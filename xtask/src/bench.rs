//! `cargo xtask bench`: bring-up and teardown measured side by side against the engine's raw
//! API floor and the tools people would use instead.
//!
//! Builds what the benchmark drives (the reference image archive as `cargo xtask image` does;
//! the `bottle` binary and the `contenders` bench target of `bottle-bench` with the
//! `bench-run` profile, which is the release profile unwinding, in one cargo invocation), then
//! runs the bench executable with the given options. The engines must answer (`cargo xtask engines`). The report goes to
//! `target/bench/latest.md` and replaces the results section of `docs/BENCHMARKS.md` unless
//! `--no-doc` is given. `cargo xtask bench --help` lists the options.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::util::{cargo, root, run as sh, show};

/// Runs the benchmark.
pub fn run(args: &[String]) -> Result<(), String> {
    let no_doc = args.iter().any(|a| a == "--no-doc");
    let args: Vec<String> = args.iter().filter(|a| *a != "--no-doc").cloned().collect();
    let help = args.iter().any(|a| a == "-h" || a == "--help");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));

    // The image exactly as `cargo xtask image` builds it (its own feature set).
    let archive = if help {
        None
    } else {
        Some(crate::image::run(&[])?)
    };
    let built = build()?;
    let mut bench = Command::new(&built.bench);
    if let Some(archive) = archive {
        let shown = std::iter::once("cargo xtask bench".to_string())
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        bench
            .arg("--bottle-bin")
            .arg(&built.bottle)
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

/// Builds `bottle` and the `contenders` bench target in one invocation and returns their paths
/// (cargo names the bench executable with a hash; its JSON messages say which).
fn build() -> Result<Built, String> {
    let mut build = cargo();
    // `bench-run` (the release profile, unwinding) for both: bench targets and their
    // dependencies always unwind, so building `bottle` the same way compiles every shared
    // crate once.
    build.args([
        "build",
        "--profile",
        "bench-run",
        "-p",
        "bottle-cli",
        "-p",
        "bottle-bench",
        "--bin",
        "bottle",
        "--bench",
        "contenders",
        "--message-format=json-render-diagnostics",
    ]);
    eprintln!("$ {}", show(&build));
    let out = build
        .current_dir(root())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", show(&build)))?;
    if !out.status.success() {
        return Err(format!("{} failed ({})", show(&build), out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let executable = |kind: &str, name: &str| {
        stdout
            .lines()
            .filter(|l| {
                l.contains(r#""reason":"compiler-artifact""#)
                    && l.contains(&format!(r#""kind":["{kind}"]"#))
                    && l.contains(&format!(r#""name":"{name}""#))
            })
            .find_map(|l| json_string(l, "executable"))
            .map(PathBuf::from)
            .ok_or_else(|| format!("{} did not report the {name} executable", show(&build)))
    };
    Ok(Built {
        bench: executable("bench", "contenders")?,
        bottle: executable("bin", "bottle")?,
    })
}

/// The two executables the benchmark needs.
struct Built {
    bench: PathBuf,
    bottle: PathBuf,
}

/// The string value of `"key":"..."` in one line of cargo's JSON (paths: no escapes but `\\`).
fn json_string(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!(r#""{key}":""#))? + key.len() + 4;
    let rest = &line[start..];
    let end = rest.find('"')?;
    Some(rest[..end].replace(r"\\", r"\"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_executable_is_read_from_a_cargo_message() {
        let line = r#"{"reason":"compiler-artifact","target":{"kind":["bench"],"name":"contenders"},"executable":"/x/target/release/deps/contenders-0a1b","fresh":true}"#;
        assert_eq!(
            super::json_string(line, "executable").as_deref(),
            Some("/x/target/release/deps/contenders-0a1b")
        );
        assert_eq!(super::json_string(line, "missing"), None);
    }
}
