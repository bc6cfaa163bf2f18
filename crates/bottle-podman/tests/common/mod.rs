//! The Podman tests' row of the shared test harness (`bottle_core::conformance::harness`):
//! their pools and prefix, connecting (a failure in CI, a skip elsewhere), the reference image
//! and the SIGTERM-deaf fixture image.

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::path::Path;
use std::sync::Arc;

use bottle_core::conformance::harness::{self, SuitePools};
use bottle_core::conformance::Fixture;
use bottle_core::ContainerRuntime;
use bottle_podman::PodmanRuntime;

/// This binary's pools and prefix.
pub const SUITE: SuitePools = harness::pools("adapter", "podman");

fn tmp() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

/// The engine (as the lifecycle takes it and as itself) and the fixture, with both images.
pub async fn setup(test: &str) -> Option<(Arc<dyn ContainerRuntime>, PodmanRuntime, Fixture)> {
    harness::setup(
        &SUITE,
        test,
        PodmanRuntime::connect().await,
        env!("CARGO_MANIFEST_DIR"),
        tmp(),
    )
    .await
}

/// The SIGTERM-deaf image on the engine; returns its tag.
pub async fn sigterm_deaf_image(rt: &PodmanRuntime) -> String {
    harness::sigterm_deaf_image(rt, &SUITE, tmp()).await
}
