//! The conformance suite against `InMemoryRuntime`: the reference for what real engines must do.
//! It runs twice: with ports that behave like Docker's userland proxy (the default) and with
//! kernel-forwarded ports, as rootful Podman's.

use std::sync::Arc;

use bottle_core::conformance::Fixture;
use bottle_core::{labels, Catalog, ContainerRuntime, InMemoryRuntime, PortForwarding};

/// A fresh in-memory engine per case, holding the image the fixture names.
async fn setup(_case: &str) -> Option<(Arc<dyn ContainerRuntime>, Fixture)> {
    setup_with(PortForwarding::Proxied)
}

fn setup_with(forwarding: PortForwarding) -> Option<(Arc<dyn ContainerRuntime>, Fixture)> {
    let rt = InMemoryRuntime::new();
    rt.set_port_forwarding(forwarding);
    let mut catalog = Catalog::seed();
    catalog.daemons.push(bottle_core::selfcheck::daemon_def());
    rt.add_image(
        "bottle-sidecars:test",
        [(labels::CATALOG.to_string(), catalog.to_json())].into(),
    );
    rt.add_image(
        "bt-mem-sleep:test",
        [("io.bottle.test".to_string(), "sleep".to_string())].into(),
    );
    let fx = Fixture {
        image: "bottle-sidecars:test".into(),
        prefix: "bt-mem".into(),
        subnet_pool: "10.214.0.0/16".parse().unwrap(),
        loopback_pool: "127.78.0.0/16".parse().unwrap(),
        sigterm_deaf_image: "bt-mem-sleep:test".into(),
    };
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
