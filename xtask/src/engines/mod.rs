//! `cargo xtask engines`: makes Docker and Podman reachable on this machine, installing and
//! starting them when absent, plus what the tests of remote Docker contexts reach the engine
//! through (Docker's TLS listener on loopback, and a loopback `sshd`). Idempotent; says what
//! it did. As root, also a test user with a rootless Podman service (`rootless`).

mod docker;
mod podman;
pub mod rootless;
mod sshd;

/// Brings up both engines and the test `sshd`.
pub fn run(_args: &[String]) -> Result<(), String> {
    docker::ensure()?;
    podman::ensure()?;
    sshd::ensure()?;
    Ok(())
}
