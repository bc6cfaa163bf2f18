//! bottle-core: plans, creates and tears down the sidecar bundle of a sandboxed agent on any
//! container engine that implements [`ContainerRuntime`].
//!
//! - [`spec`]: what a caller asks for, and its validation;
//! - [`catalog`]: the daemons a bundle can run, as data;
//! - [`plan`]: the pure planner (names, subnet, loopback address, ports, labels);
//! - [`runtime`]: the [`ContainerRuntime`] trait, the one API boundary to engines;
//! - [`adapter`]: what every adapter needs and no engine owns (log lines, label filters);
//! - [`lifecycle`]: `up`, `down`, `list`, `endpoints` and `gc` over `Arc<dyn ContainerRuntime>`;
//!   `alloc` (private) is its host-wide allocation lock and reservations;
//! - [`loopback`]: whether this host has per-bottle loopback addresses, and the shared
//!   `127.0.0.1` fallback where it does not (macOS engines);
//! - [`memory`]: [`InMemoryRuntime`], a faithful engine in memory for tests;
//! - [`intercept`]: any runtime with a hook around each engine operation (faults, timing);
//! - [`git`]: git upstreams, which the bundle's git gate serves to the agent;
//! - [`selfcheck`]: the report a container gives of itself from inside, which the
//!   conformance suite compares with what was asked;
//! - `conformance` (feature `conformance`): the cases every runtime must pass;
//! - `mutants` (feature `conformance`): runtimes that each break one promise of the contract,
//!   and the cases that must notice.

// A library reports through `tracing` and its return values, never by printing.
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod adapter;
mod alloc;
pub mod allowlist;
pub mod catalog;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod error;
pub mod git;
mod host;
pub mod intercept;
pub mod labels;
pub mod lifecycle;
pub mod loopback;
pub mod memory;
#[cfg(feature = "conformance")]
pub mod mutants;
pub mod plan;
pub mod runtime;
pub mod selfcheck;
pub mod service;
pub mod spec;

/// The attribute an implementation of [`ContainerRuntime`] needs (`#[bottle_core::async_trait]`),
/// so an adapter does not have to depend on the same `async-trait` itself.
pub use async_trait::async_trait;
/// The network types of the public API (`Ipv4Net` in specs, pools and errors).
pub use ipnet;

pub use catalog::{Catalog, DaemonDef, Facing, When};
pub use error::{
    Advice, Error, ErrorKind, ObjectKind, Result, RuntimeError, RuntimeResult, Unusable,
};
pub use intercept::{Call, Hook, Intercepted};
pub use lifecycle::{BottleStatus, Lifecycle, LifecycleConfig, NoProgress, Progress, Step};
pub use loopback::LoopbackMode;
pub use memory::InMemoryRuntime;
pub use plan::{AgentEndpoints, BundlePlan, Pools};
pub use runtime::{
    ContainerInfo, ContainerRuntime, ContainerSpec, ContainerState, EngineInfo, EnvValue, EnvVar,
    Health, ImageInfo, LabelSelector, Labels, Limits, LogOptions, Mount, NetworkInfo, NetworkSpec,
    Op, PortBinding, PortForwarding, PublishSpec, Secret, Security,
};
pub use spec::{BottleSpec, EnvEntry, LoopbackChoice, ValidationError};

/// The readiness policy every prober uses, and every wait and retry count of the lifecycle and
/// the adapters.
pub use lifecycle::{Readiness, Timeouts};
