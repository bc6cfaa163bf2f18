//! `cargo xtask engines`: makes Docker and Podman reachable on this machine, installing and
//! starting them when absent. Idempotent; says what it did.

mod docker;
mod podman;

/// Brings up both engines.
pub fn run(_args: &[String]) -> Result<(), String> {
    docker::ensure()?;
    podman::ensure()?;
    Ok(())
}
