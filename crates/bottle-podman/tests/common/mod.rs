//! The Podman tests' row of the shared test harness (`bottle_core::conformance::harness`):
//! their pools and prefix, connecting (a failure in CI, a skip elsewhere), the reference image
//! and the SIGTERM-deaf fixture image.

#![allow(dead_code)] // Each test binary uses its own part of this module.

use bottle_podman::PodmanRuntime;

bottle_core::adapter_test_harness!("podman", PodmanRuntime, PodmanRuntime::connect());
