//! The Docker tests' row of the shared test harness (`bottle_core::conformance::harness`):
//! their pools and prefix, connecting (a failure in CI, a skip elsewhere), the reference image
//! and the SIGTERM-deaf fixture image.

#![allow(dead_code)] // Each test file uses a different part of this module.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bottle_core::conformance::harness::{self, SuitePools};
use bottle_core::conformance::Fixture;
use bottle_core::ContainerRuntime;
use bottle_docker::DockerRuntime;

/// This binary's pools and prefix.
pub const SUITE: SuitePools = harness::pools("adapter", "docker");

fn tmp() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

/// The engine, or `None` after a line saying `test` is skipped (in CI a failure).
pub async fn engine(test: &str) -> Option<DockerRuntime> {
    harness::connect(&SUITE, test, DockerRuntime::connect().await)
}

/// The engine (as the lifecycle takes it and as itself) and the fixture, with both images.
pub async fn setup(test: &str) -> Option<(Arc<dyn ContainerRuntime>, DockerRuntime, Fixture)> {
    harness::setup(
        &SUITE,
        test,
        DockerRuntime::connect().await,
        env!("CARGO_MANIFEST_DIR"),
        tmp(),
    )
    .await
}

/// The SIGTERM-deaf image on the engine; returns its tag.
pub async fn sigterm_deaf_image(rt: &DockerRuntime) -> String {
    harness::sigterm_deaf_image(rt, &SUITE, tmp()).await
}

/// The `docker save` archive of the SIGTERM-deaf image.
pub fn sigterm_deaf_archive() -> PathBuf {
    harness::sigterm_deaf_archive(&SUITE, tmp())
}
