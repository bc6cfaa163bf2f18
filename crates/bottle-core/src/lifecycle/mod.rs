//! The transactional lifecycle: `up`, `down`, `list`, `status`, `endpoints`, `logs` and `gc`
//! of bottles over any [`ContainerRuntime`].
//!
//! `up` either returns a bottle whose every agent-facing port answers, or removes everything it
//! created and returns the error that stopped it.
//!
//! - this module: the types (configuration, steps, statuses) and [`Lifecycle`] itself;
//! - `up`: the `up` transaction and its rollback;
//! - [`readiness`]: the one readiness policy (and where each daemon is published);
//! - `status`: `list`, `status`, `endpoints` and `logs`;
//! - `down`: `down` and `gc`.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::alloc::Allocator;
use crate::catalog::Catalog;
use crate::error::{Error, ObjectKind, Result};
use crate::labels;
use crate::plan::{self, AgentEndpoints, BundlePlan, ImageProfile, InUse, Pools};
use crate::runtime::{ContainerRuntime, ContainerState, Health, LabelSelector, NetworkInfo};
use crate::spec::BottleSpec;

mod down;
pub mod readiness;
mod status;
mod up;

pub use readiness::{probe, resolve_host_ports, Readiness, IDLE_WINDOW};

/// The reference bundle image that `cargo xtask image` builds.
pub const DEFAULT_IMAGE: &str = "bottle-sidecars:latest";

/// Reads one variable of the launcher's environment.
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Every wait and retry count of bottle's engine work, in one place: how `up` waits (the first
/// four fields, read by the lifecycle), and how adapters bound and retry engine calls (the
/// rest, read by the in-tree adapters through their `with_timeouts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Until every published port has a host port.
    pub host_ports: Duration,
    /// Until every agent-facing daemon accepts connections.
    pub readiness: Duration,
    /// How long a fresh connection must stay open to count as a daemon's, on a runtime whose
    /// ports are [`PortForwarding::Proxied`](crate::PortForwarding::Proxied): Docker's
    /// userland proxy accepts on the host even when nothing listens in the container, then
    /// closes. Not waited on a [`PortForwarding::Direct`](crate::PortForwarding::Direct)
    /// runtime, where an accepted connection is the daemon's (see [`readiness`]).
    pub idle_probe: Duration,
    /// While readiness probes miss, how often `up` checks that the bundle still runs (one that
    /// exited never becomes ready, and `up` says so at once).
    pub bundle_check: Duration,
    /// Connecting to an engine: the whole handshake (Docker: version negotiation and ping).
    pub engine_connect: Duration,
    /// One ping of a candidate endpoint while looking for the engine (Podman tries several).
    pub engine_ping: Duration,
    /// Any other engine call, so an engine that stops answering fails the call instead of
    /// hanging it (a followed log stream excepted).
    pub engine_call: Duration,
    /// How long removing a container waits for another removal of it already in progress.
    pub removal_in_progress: Duration,
    /// How often that wait looks again.
    pub removal_poll: Duration,
    /// How many times an adapter makes a create that failed for a passing reason of the
    /// engine's own (Podman 4.3's race with interfaces coming and going); nothing was created
    /// by the failed ones.
    pub create_attempts: u32,
    /// The wait before the n-th repeat of such a create is n times this.
    pub create_retry_wait: Duration,
}

impl Timeouts {
    /// The defaults, as a constant (adapters' constants are read from it).
    pub const DEFAULT: Timeouts = Timeouts {
        host_ports: Duration::from_secs(10),
        readiness: Duration::from_secs(30),
        idle_probe: IDLE_WINDOW,
        bundle_check: Duration::from_millis(250),
        engine_connect: Duration::from_secs(10),
        engine_ping: Duration::from_secs(5),
        engine_call: Duration::from_secs(120),
        removal_in_progress: Duration::from_secs(30),
        removal_poll: Duration::from_millis(100),
        create_attempts: 5,
        create_retry_wait: Duration::from_millis(20),
    };
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts::DEFAULT
    }
}

/// Settings of a [`Lifecycle`].
#[derive(Clone)]
pub struct LifecycleConfig {
    /// Name prefix and allocation pools.
    pub pools: Pools,
    /// The image used when a spec names none.
    pub default_image: String,
    /// The catalog used when the image declares none.
    pub catalog: Catalog,
    /// A lock file that serialises planning across processes on this host, with reservations
    /// beside it (see the crate's `alloc` module); `None` keeps both within this process (planning within
    /// one process is always serialised).
    pub lock_path: Option<PathBuf>,
    /// How many subnet conflicts reported by the engine `up` absorbs before giving up.
    pub max_subnet_retries: usize,
    pub timeouts: Timeouts,
    /// Where bare env keys get their values.
    pub env_lookup: EnvLookup,
}

impl fmt::Debug for LifecycleConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LifecycleConfig")
            .field("pools", &self.pools)
            .field("default_image", &self.default_image)
            .field("lock_path", &self.lock_path)
            .field("max_subnet_retries", &self.max_subnet_retries)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

/// The default allocation lock: `$XDG_RUNTIME_DIR/bottle/alloc.lock`, else under the
/// temporary directory.
pub fn default_lock_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("bottle").join("alloc.lock"),
        _ => std::env::temp_dir().join("bottle").join("alloc.lock"),
    }
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            pools: Pools::default(),
            default_image: DEFAULT_IMAGE.into(),
            catalog: Catalog::seed(),
            lock_path: Some(default_lock_path()),
            max_subnet_retries: 16,
            timeouts: Timeouts::default(),
            env_lookup: Arc::new(|k| std::env::var(k).ok()),
        }
    }
}

/// A step of `up` or `down`, reported to a [`Progress`] as it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    CheckingImage { image: String },
    Allocating,
    CreatingNetwork { name: String, subnet: String },
    CreatingContainer { name: String },
    Starting { name: String },
    DiscoveringPorts,
    WaitingReady { daemons: Vec<String> },
    Ready,
    RollingBack { reason: String },
    Removing { kind: ObjectKind, name: String },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::CheckingImage { image } => write!(f, "checking image {image}"),
            Step::Allocating => f.write_str("allocating subnet and loopback address"),
            Step::CreatingNetwork { name, subnet } => {
                write!(f, "creating network {name} ({subnet})")
            }
            Step::CreatingContainer { name } => write!(f, "creating bundle {name}"),
            Step::Starting { name } => write!(f, "starting bundle {name}"),
            Step::DiscoveringPorts => f.write_str("reading published host ports"),
            Step::WaitingReady { daemons } => {
                write!(
                    f,
                    "waiting for {} to accept connections",
                    daemons.join(", ")
                )
            }
            Step::Ready => f.write_str("ready"),
            Step::RollingBack { reason } => write!(f, "rolling back: {reason}"),
            Step::Removing { kind, name } => write!(f, "removing {kind} {name}"),
        }
    }
}

/// Receives each step as it starts; the CLI turns them into a progress line.
pub trait Progress: Send + Sync {
    fn step(&self, slug: &str, step: &Step);
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn step(&self, _: &str, _: &Step) {}
}

/// A bottle that `up` brought up.
#[derive(Debug, Clone, Serialize)]
pub struct Bottle {
    pub plan: BundlePlan,
    pub endpoints: AgentEndpoints,
}

/// A bottle as found on the engine by its labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BottleStatus {
    pub slug: String,
    /// The bundle's state; `None` when the bundle container is missing.
    pub state: Option<ContainerState>,
    pub health: Option<Health>,
    pub loopback: Option<Ipv4Addr>,
    pub subnet: Option<String>,
    pub daemons: Vec<String>,
    pub network: Option<String>,
    pub container: Option<String>,
    #[serde(skip)]
    pub created: Option<SystemTime>,
    /// Agent-facing daemons of a running bundle whose published port does not accept
    /// connections (a dead daemon), found by probing them; empty otherwise.
    pub unreachable: Vec<String>,
}

impl BottleStatus {
    /// Network and bundle both present, the bundle running, and every agent-facing daemon
    /// answering. The engine's own health status is reported but not used here: engines run
    /// health checks as timed `exec`s, which time out on a loaded host while the daemons serve
    /// (and Podman without systemd never runs them); the probe asks the daemons themselves.
    pub fn is_complete(&self) -> bool {
        self.network.is_some()
            && self.container.is_some()
            && self.state == Some(ContainerState::Running)
            && self.unreachable.is_empty()
    }
}

/// An object `down` or `gc` removed (or, with a dry run, would remove).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removed {
    pub kind: ObjectKind,
    pub name: String,
    pub slug: String,
    pub reason: String,
}

impl Removed {
    fn new(kind: ObjectKind, name: String, slug: &str, reason: &str) -> Self {
        Removed {
            kind,
            name,
            slug: slug.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// `up`, `down`, `list`, `status`, `endpoints`, `logs` and `gc` over one runtime.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    runtime: Arc<dyn ContainerRuntime>,
    config: LifecycleConfig,
    /// The allocation lock and the reservations of launches whose networks are being created.
    alloc: Arc<Allocator>,
}

impl Lifecycle {
    pub fn new(runtime: Arc<dyn ContainerRuntime>, config: LifecycleConfig) -> Self {
        Lifecycle {
            runtime,
            alloc: Allocator::new(config.lock_path.clone()),
            config,
        }
    }

    pub fn runtime(&self) -> &Arc<dyn ContainerRuntime> {
        &self.runtime
    }

    pub fn config(&self) -> &LifecycleConfig {
        &self.config
    }

    fn prefix(&self) -> &str {
        &self.config.pools.prefix
    }

    /// Our objects: managed, with this lifecycle's prefix, optionally of one slug.
    fn selector(&self, slug: Option<&str>) -> LabelSelector {
        let s = LabelSelector::all()
            .eq(labels::MANAGED, "true")
            .eq(labels::PREFIX, self.prefix());
        match slug {
            Some(slug) => s.eq(labels::SLUG, slug),
            None => s,
        }
    }

    /// The readiness policy of this lifecycle's runtime (see [`readiness`]).
    pub fn readiness(&self) -> Readiness {
        Readiness::new(
            self.runtime.port_forwarding(),
            self.config.timeouts.idle_probe,
        )
    }

    fn image_of(&self, spec: &BottleSpec) -> String {
        if spec.image.is_empty() {
            self.config.default_image.clone()
        } else {
            spec.image.clone()
        }
    }

    /// Validates the spec, then reads the image's declared catalog and what is in use, and
    /// returns what `up` would create. Creates nothing.
    pub async fn plan(&self, spec: &BottleSpec) -> Result<BundlePlan> {
        spec.validate(self.config.env_lookup.as_ref())?;
        let image = self.image_of(spec);
        let (catalog, profile) = self.image_catalog(&image).await?;
        let in_use = self.in_use().await?;
        plan::plan(
            spec,
            &image,
            &catalog,
            &profile,
            &self.config.pools,
            &in_use,
        )
    }

    /// The image's profile and the catalog to plan with: the image's own, else the default.
    async fn image_catalog(&self, image: &str) -> Result<(Catalog, ImageProfile)> {
        let info = self
            .runtime
            .image(image)
            .await?
            .ok_or_else(|| Error::ImageMissing {
                image: image.to_string(),
                engine: self.runtime.name().to_string(),
            })?;
        let profile = ImageProfile::from_image(image, &info)?;
        let catalog = profile
            .catalog
            .clone()
            .unwrap_or_else(|| self.config.catalog.clone());
        Ok((catalog, profile))
    }

    /// Subnets of every network on the engine, and loopback addresses of every bottle (of any
    /// prefix: loopback addresses are host-wide).
    async fn in_use(&self) -> Result<InUse> {
        let networks = self.runtime.list_networks(&LabelSelector::all()).await?;
        Ok(in_use_of(&networks))
    }
}

/// What `networks` (every network on the engine) take: their subnets, and the loopback
/// addresses of bottles. A bottle's network carries its loopback label and is created before its
/// bundle (and cannot be removed while the bundle is attached), so networks alone tell every
/// address in use: one listing call, however many bottles run.
fn in_use_of(networks: &[NetworkInfo]) -> InUse {
    let managed = LabelSelector::all().eq(labels::MANAGED, "true");
    let mut in_use = InUse::default();
    for n in networks {
        in_use.subnets.extend(n.subnets.iter().copied());
        if managed.matches(&n.labels) {
            in_use.loopbacks.extend(labels::loopback(&n.labels));
        }
    }
    in_use
}
