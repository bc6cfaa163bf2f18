//! Shared setup of the real-engine tests: the engine, the reference image, the fixture, and a
//! tiny image whose PID 1 ignores SIGTERM, built from this host's `sleep`.

#![allow(dead_code)] // Each test file uses a different part of this module.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bottle_core::conformance::{
    ensure_reference_image, ensure_sigterm_deaf_image, require_engine, sigterm_deaf_archive,
    Fixture,
};
use bottle_core::ContainerRuntime;
use bottle_docker::DockerRuntime;
use tokio::sync::OnceCell;

/// Name prefix of every object these tests create.
pub const PREFIX: &str = "bt-docker";
/// Subnets and loopback addresses reserved for Docker's tests (Podman's use other pools, so
/// both suites can run on one host at once).
pub const SUBNET_POOL: &str = "10.215.0.0/16";
pub const LOOPBACK_POOL: &str = "127.79.0.0/16";

/// The image `sleep_image_archive` builds.
pub const SLEEP_IMAGE: &str = "bt-docker-sleep:test";

/// Writes a line to the test's stderr directly, past libtest's capture, so that the run's
/// output shows what ran against Docker.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The engine; `None` (after a line saying so) when no engine answers outside CI. In CI a
/// missing engine fails the test.
pub async fn engine(test: &str) -> Option<DockerRuntime> {
    let docker = require_engine("docker", DockerRuntime::connect().await);
    if docker.is_none() {
        say(&format!(
            "docker: {test} skipped: no Docker Engine answers (run `cargo xtask engines`)"
        ));
    }
    docker
}

/// The engine, the reference image and the fixture, as [`engine`] says.
pub async fn setup(test: &str) -> Option<(Arc<dyn ContainerRuntime>, DockerRuntime, Fixture)> {
    let docker = engine(test).await?;
    let image = reference_image(&docker).await;
    ensure_sleep_image(&docker).await;
    let fixture = Fixture {
        image,
        prefix: PREFIX.into(),
        subnet_pool: SUBNET_POOL.parse().expect("valid pool"),
        loopback_pool: LOOPBACK_POOL.parse().expect("valid pool"),
        sigterm_deaf_image: SLEEP_IMAGE.into(),
    };
    let rt: Arc<dyn ContainerRuntime> = Arc::new(docker.clone());
    Some((rt, docker, fixture))
}

/// The reference image, loaded once per test binary (tests run in parallel).
async fn reference_image(rt: &DockerRuntime) -> String {
    static IMAGE: OnceCell<String> = OnceCell::const_new();
    IMAGE
        .get_or_init(|| ensure_reference_image(rt, env!("CARGO_MANIFEST_DIR")))
        .await
        .clone()
}

/// A `docker save` archive of [`SLEEP_IMAGE`] (see
/// `bottle_core::conformance::ensure_sigterm_deaf_image`), written once per test binary.
pub fn sleep_image_archive() -> PathBuf {
    static ARCHIVE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ARCHIVE
        .get_or_init(|| sigterm_deaf_archive(SLEEP_IMAGE, Path::new(env!("CARGO_TARGET_TMPDIR"))))
        .clone()
}

/// Makes sure [`SLEEP_IMAGE`], whose PID 1 ignores SIGTERM, is on the engine.
pub async fn ensure_sleep_image(rt: &DockerRuntime) {
    static LOADED: OnceCell<()> = OnceCell::const_new();
    LOADED
        .get_or_init(|| async {
            ensure_sigterm_deaf_image(rt, SLEEP_IMAGE, Path::new(env!("CARGO_TARGET_TMPDIR")))
                .await;
        })
        .await;
}
