//! Every case of bottle-core's conformance suite once more through each network transport to
//! the same real Docker engine: `tcp://` with TLS (the engine's listener on loopback with the
//! certificates `cargo xtask engines` made) and `ssh://` (its loopback `sshd` and test key).
//! Every primitive (streamed image loads and logs included) must behave over them as over the
//! unix socket. Images are made sure of through the default socket: it is the same engine.
//!
//! Pools: 10.227/16 and 127.127/16 over TLS, 10.228/16 and 127.128/16 over ssh.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bottle_core::conformance::{in_ci, Fixture};
use bottle_core::ContainerRuntime;
use bottle_docker::endpoint::{Endpoint, SshDestination, TlsFiles, Transport};
use bottle_docker::DockerRuntime;

/// What `cargo xtask engines` makes (see `xtask/src/engines/`).
const TLS_DIR: &str = "/etc/bottle-engines/docker-tls";
const SSH_DIR: &str = "/etc/bottle-engines/sshd";

/// The runtime over `endpoint` and a fixture of its own prefix and pools; `None` outside CI
/// when the engine or the material of `need` is missing.
async fn setup_over(
    case: &str,
    endpoint: Endpoint,
    need: &str,
    prefix: &str,
    pools: (&str, &str),
) -> Option<(Arc<dyn ContainerRuntime>, Fixture)> {
    if !Path::new(need).exists() {
        let why = format!("{need} is missing: run `cargo xtask engines` (as root)");
        assert!(!in_ci(), "{prefix} tests required in CI: {why}");
        bottle_core::conformance::harness::say(&format!("{prefix}: {case} skipped: {why}"));
        return None;
    }
    // The default socket makes sure of the images (same engine) and skips without one.
    let (_, _, fixture) = common::setup(case).await?;
    let shown = endpoint.host.clone();
    let rt = DockerRuntime::connect_endpoint(endpoint)
        .await
        .unwrap_or_else(|e| panic!("{prefix}: connecting over {shown}: {e}"));
    let fixture = Fixture {
        prefix: prefix.into(),
        subnet_pool: pools.0.parse().expect("valid pool"),
        loopback_pool: pools.1.parse().expect("valid pool"),
        ..fixture
    };
    Some((Arc::new(rt) as Arc<dyn ContainerRuntime>, fixture))
}

mod tls {
    use super::*;

    async fn setup(case: &str) -> Option<(Arc<dyn ContainerRuntime>, Fixture)> {
        let dir = PathBuf::from(TLS_DIR);
        let endpoint = Endpoint {
            host: "tcp://127.0.0.1:2376".into(),
            transport: Transport::Tcp {
                addr: "127.0.0.1:2376".into(),
                tls: Some(TlsFiles {
                    ca: dir.join("ca.pem"),
                    cert: dir.join("cert.pem"),
                    key: dir.join("key.pem"),
                }),
            },
            chosen_by: "test".into(),
        };
        let pools = ("10.227.0.0/16", "127.127.0.0/16");
        setup_over(case, endpoint, TLS_DIR, "bt-docker-tls", pools).await
    }

    bottle_core::conformance_tests!("docker over tls", setup);
}

mod ssh {
    use super::*;

    async fn setup(case: &str) -> Option<(Arc<dyn ContainerRuntime>, Fixture)> {
        // The test key, and only the test server's host key trusted.
        let config = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("transports-ssh_config");
        if Path::new(SSH_DIR).exists() {
            std::fs::write(
                &config,
                format!(
                    "Host *\n  IdentityFile {SSH_DIR}/client_key\n  IdentitiesOnly yes\n  UserKnownHostsFile {SSH_DIR}/known_hosts\n  StrictHostKeyChecking yes\n"
                ),
            )
            .expect("write the ssh config");
        }
        let endpoint = Endpoint {
            host: "ssh://root@127.0.0.1:2222".into(),
            transport: Transport::Ssh(SshDestination {
                user: Some("root".into()),
                host: "127.0.0.1".into(),
                port: Some(2222),
                config: Some(config),
            }),
            chosen_by: "test".into(),
        };
        let pools = ("10.228.0.0/16", "127.128.0.0/16");
        setup_over(case, endpoint, SSH_DIR, "bt-docker-ssh", pools).await
    }

    bottle_core::conformance_tests!("docker over ssh", setup);
}
