//! The Docker tests' row of the shared test harness (`bottle_core::conformance::harness`):
//! their pools and prefix, connecting (a failure in CI, a skip elsewhere), the reference image
//! and the SIGTERM-deaf fixture image.

#![allow(dead_code)] // Each test file uses a different part of this module.

use bottle_docker::DockerRuntime;

bottle_core::adapter_test_harness!("docker", DockerRuntime, DockerRuntime::connect());
