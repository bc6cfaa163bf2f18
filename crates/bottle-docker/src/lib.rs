//! bottle-docker: the Docker Engine adapter of bottle. [`DockerRuntime`] implements
//! [`bottle_core::ContainerRuntime`] over the engine's API with `bollard`.
//!
//! - [`endpoint`]: where the engine is (contexts, `DOCKER_HOST`, the default socket), found
//!   as the `docker` CLI finds it, and how it was chosen;
//! - `tunnel`: the `ssh` child that forwards an `ssh://` engine's socket;
//! - [`runtime`]: connecting, and each trait primitive as API calls;
//! - [`convert`]: pure translations between bottle's types and Docker's models;
//! - [`ports`]: reading published ports defensively;
//! - `errors`: Docker's answers mapped to bottle's error kinds.
//!
//! Tested against a real engine (`tests/`), which `cargo xtask engines` starts.

pub mod convert;
pub mod endpoint;
mod errors;
pub mod ports;
pub mod runtime;
mod tunnel;

pub use endpoint::{Endpoint, EndpointError, Locality, Sources};
pub use runtime::{DockerRuntime, DEFAULT_HOST};
