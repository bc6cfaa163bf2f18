//! bottle-podman: [`PodmanRuntime`], the [`ContainerRuntime`](bottle_core::ContainerRuntime) of
//! bottle over Podman's libpod REST API, through the `podman-api` crate.
//!
//! # Connecting
//!
//! [`PodmanRuntime::connect`] uses `CONTAINER_HOST` when it is set (`unix:///path` or
//! `tcp://host:port`), else the rootful socket `/run/podman/podman.sock`, else the user's
//! `$XDG_RUNTIME_DIR/podman/podman.sock`, and pings each. When none answers it returns
//! [`RuntimeError::EngineUnavailable`](bottle_core::RuntimeError::EngineUnavailable) naming
//! every endpoint it tried.
//!
//! Podman is daemonless, and the adapter could start `podman system service` on a private
//! socket itself. It deliberately does not: a service started from a library outlives or dies
//! with whatever process happened to start it, runs with that process's limits and
//! configuration, and hides from the user which engine state bottle talks to. Starting the
//! service is a setup step instead (`cargo xtask engines` does it; so does
//! `podman system service --time=0 unix:///run/podman/podman.sock &`).
//!
//! # Where `podman-api` 0.11 falls short, and what this crate does instead
//!
//! - **`no_new_privileges`**: the container-create builder's field is misspelt
//!   (`no_new_privilages`), so Podman ignores it and the container runs without the flag. The
//!   builder cannot add a field of its own, so the adapter serialises the builder's body, adds
//!   `no_new_privileges`, and POSTs it to the same libpod endpoint through podman-api's own HTTP
//!   layer (`containers-api`), see `raw.rs`. The tests check `SecurityOpt` in inspect.
//! - **Removal without a grace period**: `Container::remove` sends no stop timeout, so Podman
//!   waits 10 s for a PID 1 that ignores SIGTERM; the adapter passes `timeout=0` explicitly.
//! - **`podman_api::Error::clone` recurses forever** for most variants (`e => e.clone()` in its
//!   `Clone` impl): the adapter never clones one; it moves it into the error's source.
//! - **No timeouts**: a service that stops answering would hang every call; the adapter bounds
//!   each call itself (two minutes; [`PodmanRuntime::with_call_timeout`]).
//! - **Swap**: a memory limit without a swap limit lets the container swap as much again; the
//!   adapter sets memory plus swap to the memory limit.
//! - **A static address before start**: Podman 4.3 reports a container's address only once it
//!   runs; the adapter keeps the pinned address in the label `io.bottle.podman.ipv4` and reports
//!   it for a created container.
//! - **Most refusals are HTTP 500** from Podman 4.3 (a container name in use, a subnet in use,
//!   a missing image or network on create; only a network name conflict is 409): the adapter
//!   tells them apart by the engine's message.
//! - **Errors of a log stream** arrive wrapped in an `io::Error` inside a connection error: the
//!   adapter searches the whole chain for the engine's status (a missing container's logs are
//!   `NotFound`, not a broken connection).
//!
//! # Health checks
//!
//! Podman runs health checks from systemd timers. Where no systemd runs (these CI machines), a
//! container with a health check stays `starting` forever; [`ContainerInfo::health`] reports
//! exactly what Podman says, and the lifecycle only refuses `unhealthy`.
//!
//! [`ContainerInfo::health`]: bottle_core::runtime::ContainerInfo::health

mod connect;
mod create;
mod error;
pub mod inspect;
mod raw;
mod runtime;

pub use runtime::PodmanRuntime;

/// The engine name in messages and [`EngineInfo`](bottle_core::runtime::EngineInfo).
pub const ENGINE: &str = "podman";
