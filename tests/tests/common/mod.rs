//! The in-memory engine and fixture the memory suites share.

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::sync::Arc;

use bottle_core::conformance::Fixture;
use bottle_core::{labels, Catalog, ContainerRuntime, InMemoryRuntime, PortForwarding};

/// A fresh in-memory engine holding the images the fixture names: one whose catalog is the
/// seed's plus `selfcheck`, and one whose PID 1 ignores SIGTERM.
pub fn memory_with(forwarding: PortForwarding) -> (InMemoryRuntime, Fixture) {
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
    (rt, fx)
}

/// [`memory_with`] ports that behave like Docker's userland proxy.
pub fn memory() -> (Arc<dyn ContainerRuntime>, Fixture) {
    let (rt, fx) = memory_with(PortForwarding::Proxied);
    (Arc::new(rt), fx)
}
