//! bottle-docker: the Docker Engine adapter of bottle. [`DockerRuntime`] implements
//! [`bottle_core::ContainerRuntime`] over the engine's API with `bollard`.
//!
//! - [`runtime`]: connecting, and each trait primitive as API calls;
//! - [`convert`]: pure translations between bottle's types and Docker's models;
//! - [`ports`]: reading published ports defensively;
//! - `errors`: Docker's answers mapped to bottle's error kinds.
//!
//! Tested against a real engine (`tests/`), which `cargo xtask engines` starts.

pub mod convert;
mod errors;
pub mod ports;
pub mod runtime;

pub use runtime::{DockerRuntime, DEFAULT_HOST};
