//! The `ContainerRuntime` trait: the few engine primitives the lifecycle needs, and their data.
//!
//! This module is an **API boundary**: crates outside this workspace implement the trait for
//! their own engines, so its types change only with a major version.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;
use ipnet::Ipv4Net;

use crate::error::RuntimeResult as Result;

/// Engine object labels, sorted so that output and comparisons are stable.
pub type Labels = BTreeMap<String, String>;

/// A secret value: passed to the engine, never shown by `Debug`, `Display` or serialization.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that hands it to the engine.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The value of one environment variable of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    /// A value that may be shown and labelled.
    Plain(String),
    /// A value inherited from the launcher's environment; never shown, logged or labelled.
    Secret(Secret),
}

impl EnvValue {
    /// The value to hand to the engine.
    pub fn expose(&self) -> &str {
        match self {
            EnvValue::Plain(v) => v,
            EnvValue::Secret(s) => s.expose(),
        }
    }
}

/// One environment variable of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub key: String,
    pub value: EnvValue,
}

impl EnvVar {
    /// `KEY=VALUE` as engines take it. Contains secret values: hand it to the engine only.
    pub fn to_engine_string(&self) -> String {
        format!("{}={}", self.key, self.value.expose())
    }
}

/// A bind mount of a host path into a container.
///
/// Unknown keys are refused: a misspelt `read_only` must not quietly give a writable mount.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    pub host_path: PathBuf,
    pub container_path: PathBuf,
    #[serde(default)]
    pub read_only: bool,
}

/// What to create for a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    pub name: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub labels: Labels,
}

/// A network as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInfo {
    pub name: String,
    pub id: String,
    /// IPv4 subnets of the network (engines' default networks may have several or none).
    pub subnets: Vec<Ipv4Net>,
    pub labels: Labels,
}

/// A container port to publish on `host_ip` with a host port the engine picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct PublishSpec {
    pub container_port: u16,
    pub host_ip: Ipv4Addr,
}

/// The mount options every tmpfs of [`Security::tmpfs`] has (its size is the engine's).
pub const TMPFS_OPTIONS: [&str; 4] = ["rw", "nosuid", "nodev", "noexec"];

/// Hardening of the container. Every field must show up in the engine's inspect output.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Security {
    /// `no-new-privileges`.
    pub no_new_privileges: bool,
    /// Drop every capability, then add back `cap_add`.
    pub drop_all_capabilities: bool,
    /// Capabilities the image declares it needs (`NET_BIND_SERVICE`, without `CAP_`).
    pub cap_add: Vec<String>,
    /// Mount the root filesystem read-only.
    pub read_only_rootfs: bool,
    /// Paths that get a tmpfs because the image writes there.
    pub tmpfs: Vec<String>,
    /// The user to run as; `None` keeps the image's.
    pub user: Option<String>,
}

/// Resource limits of the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Memory limit in bytes.
    pub memory_bytes: Option<u64>,
    /// Maximum number of processes.
    pub pids: Option<i64>,
}

/// What to create for a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// The network to attach to, by name.
    pub network: String,
    /// The pinned IPv4 address on `network`.
    pub ipv4: Ipv4Addr,
    pub env: Vec<EnvVar>,
    pub mounts: Vec<Mount>,
    pub publish: Vec<PublishSpec>,
    pub labels: Labels,
    pub security: Security,
    pub limits: Limits,
}

/// The state of a container.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
    Dead,
    Other(String),
}

impl ContainerState {
    /// Parses an engine's state word (`running`, `exited`, ...), case-insensitively.
    pub fn parse(s: &str) -> Self {
        match s.to_ascii_lowercase().as_str() {
            "created" | "configured" | "initialized" => ContainerState::Created,
            "running" => ContainerState::Running,
            "paused" => ContainerState::Paused,
            "restarting" => ContainerState::Restarting,
            "exited" | "stopped" | "stopping" => ContainerState::Exited,
            "dead" | "removing" => ContainerState::Dead,
            other => ContainerState::Other(other.to_string()),
        }
    }
}

impl fmt::Display for ContainerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContainerState::Created => f.write_str("created"),
            ContainerState::Running => f.write_str("running"),
            ContainerState::Paused => f.write_str("paused"),
            ContainerState::Restarting => f.write_str("restarting"),
            ContainerState::Exited => f.write_str("exited"),
            ContainerState::Dead => f.write_str("dead"),
            ContainerState::Other(s) => f.write_str(s),
        }
    }
}

/// The engine's health status of a container with a health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

/// One published port binding as the engine reports it, before any checking.
///
/// Engines report several bindings per port, empty host addresses for wildcard binds and, right
/// after start, bindings without a host port: an adapter reports what it saw and the lifecycle
/// decides (see [`crate::lifecycle`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortBinding {
    pub container_port: u16,
    /// The host address; `None` when the engine reported none or an empty one (a wildcard bind).
    pub host_ip: Option<IpAddr>,
    /// The host port; `None` when not assigned yet.
    pub host_port: Option<u16>,
}

/// A container as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub name: String,
    pub id: String,
    pub image: String,
    pub state: ContainerState,
    /// `None` when the container has no health check or the engine does not run it.
    pub health: Option<Health>,
    pub labels: Labels,
    /// IPv4 address per attached network name.
    pub networks: BTreeMap<String, Ipv4Addr>,
    pub ports: Vec<PortBinding>,
    pub created: Option<SystemTime>,
}

/// What the engine knows of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub id: String,
    pub labels: Labels,
    /// The image's configured user, empty for root.
    pub user: String,
}

/// The engine's identity, for `doctor` and benchmarks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineInfo {
    /// `docker`, `podman`, `memory`, ...
    pub engine: String,
    pub version: String,
    pub api_version: String,
    /// Where the runtime connected (a socket path or URL).
    pub endpoint: String,
}

/// What [`ContainerRuntime::logs`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogOptions {
    /// Only the last this many lines; `None` for all.
    pub tail: Option<usize>,
    /// Keep streaming new output until the container stops.
    pub follow: bool,
}

/// Selects objects by label: each entry is a key that must be present, with a value when
/// `Some`. An empty selector selects every object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<(String, Option<String>)>);

impl LabelSelector {
    /// Selects every object.
    pub fn all() -> Self {
        LabelSelector(Vec::new())
    }

    /// Adds `key` (any value).
    pub fn has(mut self, key: impl Into<String>) -> Self {
        self.0.push((key.into(), None));
        self
    }

    /// Adds `key=value`.
    pub fn eq(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.push((key.into(), Some(value.into())));
        self
    }

    /// Whether `labels` satisfy every entry.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.0.iter().all(|(k, v)| match (labels.get(k), v) {
            (Some(_), None) => true,
            (Some(have), Some(want)) => have == want,
            (None, _) => false,
        })
    }
}

/// An engine operation of [`ContainerRuntime`], for call counting, fault injection and timing
/// (see [`crate::intercept`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Info,
    CreateNetwork,
    RemoveNetwork,
    ListNetworks,
    CreateContainer,
    StartContainer,
    InspectContainer,
    RemoveContainer,
    ListContainers,
    Image,
    LoadImage,
    Logs,
}

impl Op {
    /// The trait method's name: `create_network`.
    pub fn name(self) -> &'static str {
        match self {
            Op::Info => "info",
            Op::CreateNetwork => "create_network",
            Op::RemoveNetwork => "remove_network",
            Op::ListNetworks => "list_networks",
            Op::CreateContainer => "create_container",
            Op::StartContainer => "start_container",
            Op::InspectContainer => "inspect_container",
            Op::RemoveContainer => "remove_container",
            Op::ListContainers => "list_containers",
            Op::Image => "image",
            Op::LoadImage => "load_image",
            Op::Logs => "logs",
        }
    }

    /// Whether the operation changes the engine's state.
    pub fn mutates(self) -> bool {
        matches!(
            self,
            Op::CreateNetwork
                | Op::RemoveNetwork
                | Op::CreateContainer
                | Op::StartContainer
                | Op::RemoveContainer
                | Op::LoadImage
        )
    }
}

/// How an engine forwards a published host port to the container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum PortForwarding {
    /// Something on the host may accept a connection before anything listens in the container
    /// and close it afterwards (Docker's userland proxy, rootless Podman's port forwarder). A
    /// port counts as ready when a fresh connection stays open for
    /// [`Timeouts::idle_probe`](crate::lifecycle::Timeouts::idle_probe).
    #[default]
    Proxied,
    /// The kernel forwards the connection to the container (DNAT: rootful Podman on netavark
    /// or CNI), so a connection is accepted only when a daemon listens: the first accepted
    /// connection counts as ready.
    Direct,
}

/// The engine primitives the bottle lifecycle is built on.
///
/// Implementations are used as `Arc<dyn ContainerRuntime>`; the lifecycle calls them from
/// several tasks at once.
///
/// # Contract
///
/// Every implementation must, and the cases of `bottle_core::conformance` check it from the
/// outside (through this trait) and from the inside (the reference image's `selfcheck` report,
/// see [`crate::selfcheck`]); `docs/CONTRACT.md` maps each promise to its cases, and lists the
/// mutants (`bottle_core::mutants`) that break one promise each and the case that catches it:
///
/// - **Remove is idempotent**: removing a network or container that does not exist is `Ok(())`,
///   and two removes of one object at once both succeed.
/// - **Create never replaces**: creating a network or container whose name exists returns
///   [`RuntimeError::AlreadyExists`](crate::RuntimeError::AlreadyExists) and leaves the existing one alone.
/// - **Subnet overlap has its own kind**: creating a network whose subnet overlaps an existing
///   network's returns [`RuntimeError::SubnetConflict`](crate::RuntimeError::SubnetConflict), so the
///   lifecycle can move to the next candidate.
/// - **Missing objects are `NotFound`**: inspecting a container that does not exist, and
///   creating a container on a network or of an image that does not exist, return
///   [`RuntimeError::NotFound`](crate::RuntimeError::NotFound).
/// - **A failed create leaves nothing behind** (each create is a transaction of its own):
///   when a create fails after the engine made something (a container created but refused
///   for a setting it would drop, a network created but not as asked), the adapter removes
///   what it made before returning the create's error (a removal that fails is returned
///   instead, so the caller knows an object is left). An adapter may repeat a create that failed for a passing reason of its
///   engine's own only when the failed attempt made nothing, at most
///   [`Timeouts::create_attempts`](crate::lifecycle::Timeouts::create_attempts) times; every
///   wait of an adapter (connecting, each call, a removal in progress, a repeat) is a field of
///   [`Timeouts`](crate::lifecycle::Timeouts), so the values live in one place.
/// - **Remove never waits**: removing a container kills it at once (no graceful stop timeout),
///   and removes it even when it is running.
/// - **Every requested setting takes effect or fails**: the pinned IP, each port published on
///   exactly the requested host address with an engine-chosen host port, the labels, and every
///   field of [`Security`] and [`Limits`]. Silently ignoring one is a bug. In particular:
///   a memory limit allows no swap on top of it; each tmpfs is mounted `rw,nosuid,nodev,noexec`
///   (its size is the engine's); `cap_add` is added back to an empty bounding set when
///   `drop_all_capabilities`; a user without a group (`65534`) gets group 0, as engines do.
/// - **What is reported is what was asked**: [`ContainerRuntime::create_network`] returns the
///   network with the name, subnet and labels asked for and the engine's id;
///   [`ContainerInfo::image`] is the image reference given to create (not an id, not a
///   registry-qualified name); a created, not yet started container reports its pinned address;
///   [`ContainerInfo::ports`] holds the published ports only, never ports the image merely
///   exposes.
/// - **Secrets stay secret**: values of [`EnvValue::Secret`] go to the engine's container
///   environment and nowhere else (not in labels, `inspect` or `list` output, logs or error
///   messages).
/// - **Errors keep their source**: the SDK's error is the `source` of the returned error, and
///   its message names the operation and the object.
/// - **Engine unreachable is [`RuntimeError::EngineUnavailable`](crate::RuntimeError::EngineUnavailable)**,
///   naming what was tried. (Not checked by the suite: an engine cannot be made unreachable
///   through the trait; the in-tree adapters' own tests check it.)
/// - **Every engine call is bounded in time**: an engine that stops answering makes a call fail
///   (`EngineUnavailable` or `Engine`), never hang; a followed log stream is the exception.
///   (Not checked by the suite, for the same reason.)
/// - **[`PortForwarding::Direct`] is a promise**: a runtime that reports it refuses a
///   connection to a published host port while nothing listens behind it in the container.
#[async_trait]
pub trait ContainerRuntime: fmt::Debug + Send + Sync + 'static {
    /// A short name for messages: `docker`, `podman`, `memory`.
    fn name(&self) -> &str;

    /// The engine's identity; also the cheapest call that proves the engine answers.
    async fn info(&self) -> Result<EngineInfo>;

    /// How connections to published ports reach the container, which decides how the
    /// lifecycle tells a listening daemon from an empty port. The default,
    /// [`PortForwarding::Proxied`], is always safe; report [`PortForwarding::Direct`] only
    /// when the promise in the trait's contract holds.
    fn port_forwarding(&self) -> PortForwarding {
        PortForwarding::Proxied
    }

    /// Creates a bridge network with an explicit subnet and gateway.
    async fn create_network(&self, spec: &NetworkSpec) -> Result<NetworkInfo>;

    /// Removes a network by name; a missing network is success.
    async fn remove_network(&self, name: &str) -> Result<()>;

    /// Every network whose labels match `selector`.
    async fn list_networks(&self, selector: &LabelSelector) -> Result<Vec<NetworkInfo>>;

    /// Creates (does not start) a container.
    async fn create_container(&self, spec: &ContainerSpec) -> Result<()>;

    /// Starts a created container.
    async fn start_container(&self, name: &str) -> Result<()>;

    /// Inspects a container by name.
    async fn inspect_container(&self, name: &str) -> Result<ContainerInfo>;

    /// Removes a container by name, killing it first without a grace period; a missing
    /// container is success.
    async fn remove_container(&self, name: &str) -> Result<()>;

    /// Every container (running or not) whose labels match `selector`.
    async fn list_containers(&self, selector: &LabelSelector) -> Result<Vec<ContainerInfo>>;

    /// The image's labels and user, or `None` when the image is not present.
    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>>;

    /// Loads an image archive (`docker save` format) into the engine and returns the names it
    /// loaded. Optional: the default is `NotSupported`.
    async fn load_image(&self, archive: &Path) -> Result<Vec<String>> {
        let _ = archive;
        Err(crate::RuntimeError::NotSupported {
            engine: self.name().to_string(),
            operation: "loading an image archive".into(),
        })
    }

    /// Streams the container's output (stdout and stderr interleaved) to `sink`, one call per
    /// line without its newline. With `follow`, returns when the container stops or the sink
    /// returns `false`. Optional: the default is `NotSupported`.
    async fn logs(
        &self,
        name: &str,
        options: LogOptions,
        sink: &mut (dyn FnMut(String) -> bool + Send),
    ) -> Result<()> {
        let _ = (name, options, sink);
        Err(crate::RuntimeError::NotSupported {
            engine: self.name().to_string(),
            operation: "reading logs".into(),
        })
    }
}
