//! `cargo xtask ci`: everything CI checks, in order.

use std::process::Command;

use crate::util::{cargo, run as sh};

/// fmt check, clippy with warnings denied, then every test.
pub fn run(_args: &[String]) -> Result<(), String> {
    sh(cargo().args(["fmt", "--all", "--check"]))?;
    sh(cargo().args(["clippy", "--workspace", "--all-targets", "--all-features", "--", "-D", "warnings"]))?;
    sh(cargo().args(["test", "--workspace", "--all-features"]))?;
    let _ = Command::new("true");
    Ok(())
}
