//! `cargo xtask ci`: everything CI checks, in order, from a clean clone.
//!
//! One debug build serves clippy-free tests of every crate; the real-engine suites run against
//! the engines `engines` brought up, with `CI=true` so that a missing engine fails them.

use std::time::Instant;

use crate::util::{cargo, run as sh};

/// fmt check, tidy, clippy with warnings denied, engines, reference image, every test, then the
/// README's adapter guide built as a crate outside the workspace.
pub fn run(args: &[String]) -> Result<(), String> {
    let quick = args.iter().any(|a| a == "--no-engines");
    if args.iter().any(|a| a == "--rootless-only") {
        // The rootless stage alone, over the test binaries an earlier `cargo test` built.
        return stage("rootless podman", crate::engines::rootless::ci);
    }
    let started = Instant::now();
    stage("format", || sh(cargo().args(["fmt", "--all", "--check"])))?;
    stage("tidy", || crate::tidy::run(&[]))?;
    stage("clippy", || {
        sh(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    if !quick {
        stage("engines", || crate::engines::run(&[]))?;
        stage("image", || crate::image::run(&[]).map(drop))?;
    }
    stage("tests", || {
        let mut test = cargo();
        test.args(["test", "--workspace", "--all-features"]);
        if !quick {
            // Real-engine suites fail instead of skipping when their engine is missing, and
            // the minutes-long scale test runs.
            test.env("CI", "true");
            test.env("BOTTLE_SCALE_TESTS", "1");
        }
        sh(&mut test)
    })?;
    if !quick && crate::engines::rootless::user().is_some() {
        // The Podman suites once more as a user against its rootless service (see
        // `engines::rootless::ci`).
        stage("rootless podman", crate::engines::rootless::ci)?;
    }
    stage("adapter guide", || crate::guide::run_guide(&[]))?;
    println!("xtask ci: all stages passed in {:.0?}", started.elapsed());
    Ok(())
}

fn stage(name: &str, f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    println!("== {name}");
    let t = Instant::now();
    let r = f().map_err(|e| format!("stage {name} failed: {e}"));
    println!(
        "== {name}: {} in {:.1?}",
        if r.is_ok() { "ok" } else { "FAILED" },
        t.elapsed()
    );
    r
}
