//! `cargo xtask bench`: bring-up and teardown measured side by side against the engine's raw
//! API floor and the tools people would use instead.

/// Runs the benchmark.
pub fn run(_args: &[String]) -> Result<(), String> {
    Err("not written yet".into())
}
