//! `cargo xtask image`: builds the reference bundle image archive.

use std::path::PathBuf;

/// Builds the archive and returns its path.
pub fn run(_args: &[String]) -> Result<PathBuf, String> {
    Err("not built yet".into())
}
