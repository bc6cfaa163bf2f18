//! The in-memory engine and fixture the memory suites share.

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::sync::Arc;

use bottle_core::conformance::{memory_engine, Fixture};
use bottle_core::{ContainerRuntime, InMemoryRuntime, PortForwarding};

/// A fresh in-memory engine holding the images the fixture names (see
/// `bottle_core::conformance::memory_engine`), its ports forwarded as `forwarding` says.
pub fn memory_with(forwarding: PortForwarding) -> (InMemoryRuntime, Fixture) {
    let (rt, fx) = memory_engine();
    rt.set_port_forwarding(forwarding);
    (rt, fx)
}

/// [`memory_with`] ports that behave like Docker's userland proxy.
pub fn memory() -> (Arc<dyn ContainerRuntime>, Fixture) {
    let (rt, fx) = memory_with(PortForwarding::Proxied);
    (Arc::new(rt), fx)
}
