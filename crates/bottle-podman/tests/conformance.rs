//! Every case of bottle-core's conformance suite against a real Podman engine: one test per
//! case, so cases run in parallel and a failure names its case.

mod common;

use std::sync::Arc;

use bottle_core::conformance::Fixture;
use bottle_core::ContainerRuntime;

/// The engine and the fixture, or `None` (outside CI only) when no engine answers.
async fn setup(case: &str) -> Option<(Arc<dyn ContainerRuntime>, Fixture)> {
    common::setup(case)
        .await
        .map(|(rt, _, fixture)| (rt, fixture))
}

bottle_core::conformance_tests!("podman", setup);
