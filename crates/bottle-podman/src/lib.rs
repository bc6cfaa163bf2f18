//! bottle-podman: [`PodmanRuntime`], the [`ContainerRuntime`](bottle_core::ContainerRuntime) of
//! bottle over Podman's libpod REST API, through the `podman-api` crate.
//!
//! # Connecting
//!
//! [`PodmanRuntime::connect`] looks where Podman's own tools look: `CONTAINER_CONNECTION` (a
//! connection by name), `CONTAINER_HOST` (`unix:///path` or `tcp://host:port`), the default
//! connection of Podman's connection config (`podman-connections.json`, then `containers.conf`
//! `[engine] active_service`), then the user's `$XDG_RUNTIME_DIR/podman/podman.sock`, then the
//! rootful `/run/podman/podman.sock`, and pings each. When none answers it returns
//! [`RuntimeError::EngineUnavailable`](bottle_core::RuntimeError::EngineUnavailable) naming
//! every endpoint it tried and why. [`discover`] says, without connecting, which endpoint
//! comes first and why; [`PodmanRuntime::discovered`] says which one answered.
//!
//! # Rootless
//!
//! A rootless service (its socket is the user's, not root's) is driven like the rootful one,
//! with three differences the adapter reports truthfully:
//!
//! - **Port forwarding**: it publishes through `rootlessport`, a user-space forwarder that
//!   listens on the host address and accepts a connection before anything listens in the
//!   container, so [`port_forwarding`](bottle_core::ContainerRuntime::port_forwarding) is
//!   `Proxied` (the rootful service's kernel DNAT is `Direct`).
//! - **Networks** live in the user's rootless network namespace: their routes are not in the
//!   host's table, so the host read of taken subnets does not see them. The lifecycle lists the
//!   engine's networks (and so this user's rootless ones) anyway; published loopback addresses
//!   are bound on the host by `rootlessport` and are seen there.
//! - **Resource limits**: on cgroup v1 Podman drops a rootless container's memory and pids
//!   limits (with a warning); the adapter's inspect check then refuses the container and says
//!   why. Rootless bottles need cgroup v2.
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

pub use connect::{discover, PodmanEndpoint};
pub use runtime::PodmanRuntime;

/// The engine name in messages and [`EngineInfo`](bottle_core::runtime::EngineInfo).
pub const ENGINE: &str = "podman";
