//! `cargo xtask demo`: one bottle end to end on a real engine.

/// Runs the demo.
pub fn run(_args: &[String]) -> Result<(), String> {
    Err("not written yet".into())
}
