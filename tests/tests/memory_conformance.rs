//! The conformance suite against `InMemoryRuntime`: the reference for what real engines must do.
//! It runs twice: with ports that behave like Docker's userland proxy (the default) and with
//! kernel-forwarded ports, as rootful Podman's.

mod common;

use std::sync::Arc;

use bottle_core::conformance::Fixture;
use bottle_core::{ContainerRuntime, PortForwarding};

/// A fresh in-memory engine per case, holding the images the fixture names.
async fn setup(_case: &str) -> Option<(Arc<dyn ContainerRuntime>, Fixture)> {
    setup_with(PortForwarding::Proxied)
}

fn setup_with(forwarding: PortForwarding) -> Option<(Arc<dyn ContainerRuntime>, Fixture)> {
    let (rt, fx) = common::memory_with(forwarding);
    Some((Arc::new(rt), fx))
}

bottle_core::conformance_tests!("memory", setup);

mod direct {
    use super::*;

    async fn setup(_case: &str) -> Option<(Arc<dyn ContainerRuntime>, Fixture)> {
        setup_with(PortForwarding::Direct)
    }

    bottle_core::conformance_tests!("memory, direct ports", setup);
}
