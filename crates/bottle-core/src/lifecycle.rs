//! The transactional lifecycle: `up`, `down`, `list`, `endpoints` and `gc` of bottles over any
//! [`ContainerRuntime`].
//!
//! `up` either returns a bottle whose every agent-facing port answers, or removes everything it
//! created and returns the error that stopped it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::alloc::{Allocator, Pending, Reservation};
use crate::catalog::{Catalog, DaemonDef, Facing};
use crate::error::{Error, ErrorKind, ObjectKind, Result, RuntimeError};
use crate::labels;
use crate::plan::{self, AgentEndpoints, BundlePlan, ImageProfile, InUse, PlannedEnv, Pools};
use crate::runtime::{
    ContainerInfo, ContainerRuntime, ContainerSpec, ContainerState, EnvValue, EnvVar, Health,
    LabelSelector, NetworkInfo, NetworkSpec, PortBinding, PortForwarding, Secret,
};
use crate::spec::BottleSpec;

/// The reference bundle image that `cargo xtask image` builds.
pub const DEFAULT_IMAGE: &str = "bottle-sidecars:latest";

/// Reads one variable of the launcher's environment.
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// How long and how `up` waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Until every published port has a host port.
    pub host_ports: Duration,
    /// Until every agent-facing daemon accepts connections.
    pub readiness: Duration,
    /// How long a fresh connection must stay open to count as a daemon's, on a runtime whose
    /// ports are [`PortForwarding::Proxied`]: Docker's userland proxy accepts on the host even
    /// when nothing listens in the container, then closes. Not waited on a
    /// [`PortForwarding::Direct`] runtime, where an accepted connection is the daemon's.
    pub idle_probe: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            host_ports: Duration::from_secs(10),
            readiness: Duration::from_secs(30),
            idle_probe: Duration::from_millis(25),
        }
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
    pub kind: &'static str,
    pub name: String,
    pub slug: String,
    pub reason: String,
}

/// `up`, `down`, `list`, `endpoints` and `gc` over one runtime.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    runtime: Arc<dyn ContainerRuntime>,
    config: LifecycleConfig,
    /// The allocation lock and the reservations of launches whose networks are being created.
    alloc: Arc<Allocator>,
}

/// What `up` created so far, for rollback in reverse order.
///
/// A create whose answer is not back when `up` is interrupted may have taken effect: its name
/// is `in_flight` until the answer comes, and rollback removes it too (remove is idempotent by
/// contract, so removing what was never made is harmless).
#[derive(Debug, Default)]
struct Created {
    network: Option<String>,
    container: Option<String>,
    network_in_flight: Option<String>,
    container_in_flight: Option<String>,
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

    /// How long a fresh connection must stay open to count as a daemon's on this runtime.
    fn idle_probe(&self) -> Duration {
        match self.runtime.port_forwarding() {
            PortForwarding::Proxied => self.config.timeouts.idle_probe,
            PortForwarding::Direct => Duration::ZERO,
        }
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

    /// Brings a bottle up and returns its agent endpoints once every agent-facing daemon
    /// accepts connections. On failure, removes what this call created.
    pub async fn up(&self, spec: &BottleSpec, progress: &dyn Progress) -> Result<Bottle> {
        self.up_until(spec, progress, std::future::pending()).await
    }

    /// [`Lifecycle::up`], abandoned when `interrupt` completes (a Ctrl-C, a deadline): what was
    /// created so far is removed and [`Error::Interrupted`] returned. Dropping the future of
    /// `up` instead would leave the objects for `gc`.
    pub async fn up_until(
        &self,
        spec: &BottleSpec,
        progress: &dyn Progress,
        interrupt: impl std::future::Future<Output = ()> + Send,
    ) -> Result<Bottle> {
        let span = info_span!("up", slug = %spec.slug, runtime = self.runtime.name());
        async {
            let started = Instant::now();
            spec.validate(self.config.env_lookup.as_ref())?;
            let image = self.image_of(spec);
            progress.step(
                &spec.slug,
                &Step::CheckingImage {
                    image: image.clone(),
                },
            );
            // Before anything is created: a daemon the image lacks, an unknown daemon. (Leftovers
            // of this slug are refused under the allocation lock.)
            let (catalog, profile) = self.image_catalog(&image).await?;
            plan::select_daemons(spec, &catalog, &image)?;

            let mut created = Created::default();
            let result = tokio::select! {
                r = self.up_steps(spec, &image, &catalog, &profile, progress, &mut created) => r,
                () = interrupt => Err(Error::Interrupted { slug: spec.slug.clone() }),
            };
            match result {
                Ok(bottle) => {
                    info!(elapsed = ?started.elapsed(), "bottle up");
                    progress.step(&spec.slug, &Step::Ready);
                    Ok(bottle)
                }
                Err(error) => Err(self.rollback(&spec.slug, created, error, progress).await),
            }
        }
        .instrument(span)
        .await
    }

    async fn up_steps(
        &self,
        spec: &BottleSpec,
        image: &str,
        catalog: &Catalog,
        profile: &ImageProfile,
        progress: &dyn Progress,
        created: &mut Created,
    ) -> Result<Bottle> {
        let slug = spec.slug.as_str();
        progress.step(slug, &Step::Allocating);
        // Held until the bundle's ports are published: from then on the host itself shows the
        // loopback address as taken to launchers on other engines.
        let (plan, _reservation) = self
            .allocate_and_create_network(spec, image, catalog, profile, progress, created)
            .await?;

        progress.step(
            slug,
            &Step::CreatingContainer {
                name: plan.container_name.clone(),
            },
        );
        let container = self.container_spec(&plan)?;
        created.container_in_flight = Some(plan.container_name.clone());
        let answer = self.runtime.create_container(&container).await;
        created.container_in_flight = None;
        match answer {
            Ok(()) => created.container = Some(plan.container_name.clone()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyUp {
                    slug: slug.to_string(),
                    found: format!("container {} exists", plan.container_name),
                })
            }
            Err(e) => return Err(e.into()),
        }
        debug!(container = %plan.container_name, "created");

        progress.step(
            slug,
            &Step::Starting {
                name: plan.container_name.clone(),
            },
        );
        self.runtime.start_container(&plan.container_name).await?;

        progress.step(slug, &Step::DiscoveringPorts);
        let host_ports = self.wait_host_ports(&plan).await?;

        let facing: Vec<&DaemonDef> = plan.agent_facing().collect();
        progress.step(
            slug,
            &Step::WaitingReady {
                daemons: facing.iter().map(|d| d.name.clone()).collect(),
            },
        );
        self.wait_ready(&plan, &facing, &host_ports).await?;
        let endpoints = plan::agent_endpoints(slug, plan.loopback, &plan.daemons, &host_ports);
        Ok(Bottle { plan, endpoints })
    }

    /// Plans under the allocation lock, reserves what was planned, and creates the network
    /// after releasing the lock (see the crate's `alloc` module); moves to the next subnet when
    /// the engine reports a conflict (a network made by something other than bottle). Returns
    /// the plan and its reservation.
    async fn allocate_and_create_network(
        &self,
        spec: &BottleSpec,
        image: &str,
        catalog: &Catalog,
        profile: &ImageProfile,
        progress: &dyn Progress,
        created: &mut Created,
    ) -> Result<(BundlePlan, Reservation)> {
        let name = plan::network_name(self.prefix(), &spec.slug);
        let mut refused: Vec<ipnet::Ipv4Net> = Vec::new();
        for attempt in 0..=self.config.max_subnet_retries {
            let (plan, reservation) = {
                let planning = self.alloc.lock().await?;
                // Reservations first, then the engine's networks and the host: see the `alloc`
                // module.
                let pending = planning.pending()?;
                let ours = self.selector(Some(&spec.slug));
                let all = LabelSelector::all();
                let (networks, leftovers) = tokio::try_join!(
                    self.runtime.list_networks(&all),
                    self.runtime.list_containers(&ours),
                )?;
                let host = crate::host::taken();
                // Under the lock, this slug's objects (a bottle that is up, debris of a crashed
                // launch, a launch that got here first) are visible: refuse before creating
                // anything. (Docker 20.10 would even create a second network of the same name,
                // which breaks the first launch's container create.)
                let taken = networks
                    .iter()
                    .find(|n| n.name == name || ours.matches(&n.labels))
                    .map(|n| format!("network {} exists", n.name))
                    .or_else(|| {
                        leftovers
                            .first()
                            .map(|c| format!("container {} is {}", c.name, c.state))
                    })
                    .or_else(|| {
                        pending
                            .iter()
                            .any(|p| p.network == name)
                            .then(|| format!("another launch is creating network {name}"))
                    });
                if let Some(found) = taken {
                    return Err(Error::AlreadyUp {
                        slug: spec.slug.clone(),
                        found,
                    });
                }
                let mut in_use = in_use_of(&networks);
                in_use.subnets.extend(pending.iter().map(|p| p.subnet));
                in_use.subnets.extend(refused.iter().copied());
                in_use.loopbacks.extend(pending.iter().map(|p| p.loopback));
                in_use.subnets.extend(host.subnets);
                in_use.loopbacks.extend(host.loopbacks);
                let plan = plan::plan(spec, image, catalog, profile, &self.config.pools, &in_use)?;
                let reservation = planning.reserve(Pending {
                    network: plan.network_name.clone(),
                    subnet: plan.subnet,
                    loopback: plan.loopback,
                })?;
                (plan, reservation)
            };
            progress.step(
                &spec.slug,
                &Step::CreatingNetwork {
                    name: plan.network_name.clone(),
                    subnet: plan.subnet.to_string(),
                },
            );
            let network = NetworkSpec {
                name: plan.network_name.clone(),
                subnet: plan.subnet,
                gateway: plan.gateway,
                labels: plan.network_labels.clone(),
            };
            created.network_in_flight = Some(plan.network_name.clone());
            let answer = self.runtime.create_network(&network).await;
            created.network_in_flight = None;
            match answer {
                Ok(_) => {
                    created.network = Some(plan.network_name.clone());
                    debug!(network = %plan.network_name, subnet = %plan.subnet, attempt, "created");
                    return Ok((plan, reservation));
                }
                Err(RuntimeError::SubnetConflict { subnet, .. }) => {
                    warn!(%subnet, attempt, "subnet taken on the engine; trying the next one");
                    refused.push(subnet);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    return Err(Error::AlreadyUp {
                        slug: spec.slug.clone(),
                        found: format!(
                        "network {} exists (another launch of this slug, or not made by bottle)",
                        plan.network_name
                    ),
                    })
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::PoolExhausted {
            what: "subnet",
            pool: format!(
                "{} (the engine reported {} conflicts in a row)",
                spec.subnet_pool.unwrap_or(self.config.pools.subnet_pool),
                self.config.max_subnet_retries + 1
            ),
        })
    }

    /// The container to create, with bare env keys resolved from the launcher's environment.
    fn container_spec(&self, plan: &BundlePlan) -> Result<ContainerSpec> {
        let env = plan
            .env
            .iter()
            .map(|e| match e {
                PlannedEnv::Value { key, value } => Ok(EnvVar {
                    key: key.clone(),
                    value: EnvValue::Plain(value.clone()),
                }),
                PlannedEnv::Inherit { key } => (self.config.env_lookup)(key)
                    .map(|v| EnvVar {
                        key: key.clone(),
                        value: EnvValue::Secret(Secret::new(v)),
                    })
                    .ok_or_else(|| {
                        crate::spec::ValidationError::EnvInheritMissing { key: key.clone() }.into()
                    }),
            })
            .collect::<Result<_>>()?;
        Ok(ContainerSpec {
            name: plan.container_name.clone(),
            image: plan.image.clone(),
            network: plan.network_name.clone(),
            ipv4: plan.bundle_ip,
            env,
            mounts: plan.mounts.clone(),
            publish: plan.publish.clone(),
            labels: plan.container_labels.clone(),
            security: plan.security.clone(),
            limits: plan.limits,
        })
    }

    /// Re-reads the container until every published port has a host port (bounded).
    async fn wait_host_ports(&self, plan: &BundlePlan) -> Result<BTreeMap<u16, u16>> {
        let wanted: Vec<u16> = plan.publish.iter().map(|p| p.container_port).collect();
        let deadline = Instant::now() + self.config.timeouts.host_ports;
        let mut backoff = Backoff::new();
        loop {
            let info = self.runtime.inspect_container(&plan.container_name).await?;
            if let Some(ports) =
                resolve_host_ports(&plan.container_name, plan.loopback, &wanted, &info.ports)?
            {
                return Ok(ports);
            }
            if matches!(info.state, ContainerState::Exited | ContainerState::Dead) {
                return Err(Error::NotUsable {
                    slug: plan.slug.clone(),
                    reason: format!(
                        "bundle {} stopped right after start: read its output with `bottle logs {}`",
                        plan.container_name, plan.slug
                    ),
                });
            }
            if Instant::now() >= deadline {
                let missing = wanted
                    .iter()
                    .find(|p| {
                        !info
                            .ports
                            .iter()
                            .any(|b| b.container_port == **p && b.host_port.is_some())
                    })
                    .copied()
                    .unwrap_or_default();
                return Err(Error::PortNotAssigned {
                    container: plan.container_name.clone(),
                    container_port: missing,
                    waited: self.config.timeouts.host_ports,
                });
            }
            backoff.wait().await;
        }
    }

    /// Waits until every agent-facing daemon accepts a connection that stays open.
    async fn wait_ready(
        &self,
        plan: &BundlePlan,
        facing: &[&DaemonDef],
        host_ports: &BTreeMap<u16, u16>,
    ) -> Result<()> {
        let timeouts = self.config.timeouts;
        let idle = self.idle_probe();
        let deadline = Instant::now() + timeouts.readiness;
        let waits = facing.iter().map(|d| {
            let addr = SocketAddr::new(IpAddr::V4(plan.loopback), host_ports[&d.port]);
            async move {
                let mut backoff = Backoff::polling();
                let mut attempts = 0u32;
                let mut last_check = Instant::now();
                loop {
                    if probe(addr, idle).await {
                        debug!(daemon = %d.name, %addr, attempts, "ready");
                        return Ok(());
                    }
                    attempts += 1;
                    if Instant::now() >= deadline {
                        return Err(Error::NotReady {
                            slug: plan.slug.clone(),
                            daemon: d.name.clone(),
                            address: addr.to_string(),
                            waited: timeouts.readiness,
                        });
                    }
                    // Every quarter second of misses, check that the bundle is still running: a
                    // bundle that exited will never become ready, so say so at once.
                    if last_check.elapsed() >= Duration::from_millis(250) {
                        last_check = Instant::now();
                        let info = self.runtime.inspect_container(&plan.container_name).await?;
                        if matches!(info.state, ContainerState::Exited | ContainerState::Dead) {
                            return Err(Error::NotUsable {
                                slug: plan.slug.clone(),
                                reason: format!(
                                    "bundle {} exited while waiting for {}: read its output with `bottle logs {}`",
                                    plan.container_name, d.name, plan.slug
                                ),
                            });
                        }
                    }
                    backoff.wait().await;
                }
            }
        });
        futures_util::future::try_join_all(waits).await.map(drop)
    }

    /// Removes what `up` created, in reverse order, and returns the original error (with any
    /// cleanup failures attached).
    async fn rollback(
        &self,
        slug: &str,
        created: Created,
        original: Error,
        progress: &dyn Progress,
    ) -> Error {
        let container = created.container.or(created.container_in_flight);
        let network = created.network.or(created.network_in_flight);
        if network.is_none() && container.is_none() {
            return original;
        }
        warn!(error = %original, "up failed; removing what it created");
        progress.step(
            slug,
            &Step::RollingBack {
                reason: original.to_string(),
            },
        );
        let mut cleanup = Vec::new();
        if let Some(name) = &container {
            if let Err(e) = self.runtime.remove_container(name).await {
                cleanup.push(e);
            }
        }
        if let Some(name) = &network {
            if let Err(e) = self.runtime.remove_network(name).await {
                cleanup.push(e);
            }
        }
        if cleanup.is_empty() {
            original
        } else {
            Error::CleanupFailed {
                original: Box::new(original),
                cleanup,
            }
        }
    }

    /// Removes a bottle's bundle, then its network, found by labels. Nothing there is success.
    pub async fn down(&self, slug: &str, progress: &dyn Progress) -> Result<Vec<Removed>> {
        crate::spec::validate_slug(slug)?;
        let span = info_span!("down", slug, runtime = self.runtime.name());
        async {
            let selector = self.selector(Some(slug));
            let containers = self.runtime.list_containers(&selector).await?;
            let mut removed = Vec::new();
            for c in containers {
                progress.step(
                    slug,
                    &Step::Removing {
                        kind: ObjectKind::Container,
                        name: c.name.clone(),
                    },
                );
                self.runtime.remove_container(&c.name).await?;
                removed.push(Removed {
                    kind: "container",
                    name: c.name,
                    slug: slug.to_string(),
                    reason: "down".into(),
                });
            }
            // Listed after the containers are gone, so a network created meanwhile by a
            // racing `up` of the same slug is seen too.
            let networks = self.runtime.list_networks(&selector).await?;
            for n in networks {
                progress.step(
                    slug,
                    &Step::Removing {
                        kind: ObjectKind::Network,
                        name: n.name.clone(),
                    },
                );
                self.runtime.remove_network(&n.name).await?;
                removed.push(Removed {
                    kind: "network",
                    name: n.name,
                    slug: slug.to_string(),
                    reason: "down".into(),
                });
            }
            info!(objects = removed.len(), "bottle down");
            Ok(removed)
        }
        .instrument(span)
        .await
    }

    /// Every bottle of this lifecycle's prefix on the engine, complete or not, sorted by slug.
    /// The agent-facing daemons of each running bundle are probed (concurrently), so a dead
    /// daemon shows even where the engine runs no health checks.
    pub async fn list(&self) -> Result<Vec<BottleStatus>> {
        let selector = self.selector(None);
        let (networks, containers) = tokio::try_join!(
            self.runtime.list_networks(&selector),
            self.runtime.list_containers(&selector),
        )?;
        let probes: Vec<(String, Vec<String>)> = futures_util::future::join_all(
            containers
                .iter()
                .filter(|c| c.state == ContainerState::Running)
                .map(|c| async move {
                    let slug = c.labels.get(labels::SLUG).cloned().unwrap_or_default();
                    (slug, self.unreachable_daemons(c).await)
                }),
        )
        .await;
        let mut bottles = group(networks, containers);
        for (slug, unreachable) in probes {
            if let Some(b) = bottles.iter_mut().find(|b| b.slug == slug) {
                b.unreachable = unreachable;
            }
        }
        Ok(bottles)
    }

    /// The agent-facing daemons of a bundle that do not accept a connection on their published
    /// port. A bundle whose labels or ports cannot be read counts every daemon as unreachable.
    async fn unreachable_daemons(&self, c: &ContainerInfo) -> Vec<String> {
        let catalog = c
            .labels
            .get(labels::CATALOG)
            .and_then(|j| Catalog::from_json(j).ok());
        let Some(catalog) = catalog else {
            return vec!["(no catalog label)".into()];
        };
        let facing: Vec<&DaemonDef> = catalog
            .daemons
            .iter()
            .filter(|d| d.facing == Facing::Agent)
            .collect();
        let wanted: Vec<u16> = facing.iter().map(|d| d.port).collect();
        let ports = loopback_label(&c.labels).and_then(|lo| {
            resolve_host_ports(&c.name, lo, &wanted, &c.ports)
                .ok()
                .flatten()
                .map(|p| (lo, p))
        });
        let Some((loopback, ports)) = ports else {
            return facing.iter().map(|d| d.name.clone()).collect();
        };
        let idle = self.idle_probe();
        let answers = futures_util::future::join_all(
            facing
                .iter()
                .map(|d| probe(SocketAddr::new(IpAddr::V4(loopback), ports[&d.port]), idle)),
        )
        .await;
        facing
            .iter()
            .zip(answers)
            .filter(|(_, ok)| !ok)
            .map(|(d, _)| d.name.clone())
            .collect()
    }

    /// The agent's endpoints of a running bottle, re-read from the engine. Refuses a bottle
    /// that is missing, stopped, unhealthy, or whose agent-facing daemon does not answer.
    pub async fn endpoints(&self, slug: &str) -> Result<AgentEndpoints> {
        crate::spec::validate_slug(slug)?;
        let selector = self
            .selector(Some(slug))
            .eq(labels::ROLE, labels::ROLE_BUNDLE);
        let containers = self.runtime.list_containers(&selector).await?;
        let listed = containers.into_iter().next().ok_or_else(|| Error::NotUp {
            slug: slug.to_string(),
        })?;
        // Inspect for the freshest state and ports; the listing may be summarised.
        let c = self.runtime.inspect_container(&listed.name).await?;
        let not_usable = |reason: String| Error::NotUsable {
            slug: slug.to_string(),
            reason,
        };
        if c.state != ContainerState::Running {
            return Err(not_usable(format!(
                "bundle {} is {}: bring it back with `bottle down {slug}` then `bottle up {slug}`",
                c.name, c.state
            )));
        }
        let loopback = loopback_label(&c.labels)
            .ok_or_else(|| not_usable(format!("bundle {} has no loopback label", c.name)))?;
        let catalog = c
            .labels
            .get(labels::CATALOG)
            .map(|j| Catalog::from_json(j))
            .transpose()?
            .ok_or_else(|| not_usable(format!("bundle {} has no catalog label", c.name)))?;
        let wanted: Vec<u16> = catalog
            .daemons
            .iter()
            .filter(|d| d.facing == Facing::Agent)
            .map(|d| d.port)
            .collect();
        let ports = resolve_host_ports(&c.name, loopback, &wanted, &c.ports)?
            .ok_or_else(|| not_usable(format!("bundle {} has unassigned ports", c.name)))?;
        for d in catalog.daemons.iter().filter(|d| d.facing == Facing::Agent) {
            let addr = SocketAddr::new(IpAddr::V4(loopback), ports[&d.port]);
            if !probe(addr, self.idle_probe()).await {
                return Err(not_usable(format!(
                    "daemon {} does not accept connections on {addr}: read `bottle logs {slug}`, then `bottle down {slug}` and `bottle up {slug}`",
                    d.name
                )));
            }
        }
        Ok(plan::agent_endpoints(
            slug,
            loopback,
            &catalog.daemons,
            &ports,
        ))
    }

    /// Removes objects of ours that no whole bottle owns: a network without its bundle, a
    /// bundle that is not running, a bundle without its network. A running bundle whose
    /// daemons do not answer is left alone (its init restarts them; `down` removes it), and so
    /// is a bottle that a live launch (of any process on this host) is still bringing up. With
    /// `dry_run`, only lists them.
    pub async fn gc(&self, dry_run: bool) -> Result<Vec<Removed>> {
        let bottles = self.list().await?;
        // Read after listing: a launch that was half-way through when the engine was listed
        // still holds its reservation (until its ports are published), and is left alone.
        let launching: BTreeSet<String> = self
            .alloc
            .lock()
            .await?
            .pending()?
            .into_iter()
            .map(|p| p.network)
            .collect();
        let mut removed = Vec::new();
        for b in &bottles {
            let network = plan::network_name(self.prefix(), &b.slug);
            if launching.contains(&network) {
                debug!(slug = %b.slug, "being launched; not collected");
                continue;
            }
            let reason = match (&b.network, &b.container, &b.state) {
                (Some(_), None, _) => "network without its bundle".to_string(),
                (None, Some(_), _) => "bundle without its network".to_string(),
                (_, _, Some(state)) if *state != ContainerState::Running => {
                    format!("bundle is {state}")
                }
                _ => continue,
            };
            if let Some(name) = &b.container {
                if !dry_run {
                    self.runtime.remove_container(name).await?;
                }
                removed.push(Removed {
                    kind: "container",
                    name: name.clone(),
                    slug: b.slug.clone(),
                    reason: reason.clone(),
                });
            }
            if let Some(name) = &b.network {
                if !dry_run {
                    self.runtime.remove_network(name).await?;
                }
                removed.push(Removed {
                    kind: "network",
                    name: name.clone(),
                    slug: b.slug.clone(),
                    reason,
                });
            }
        }
        Ok(removed)
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
            in_use.loopbacks.extend(loopback_label(&n.labels));
        }
    }
    in_use
}

fn loopback_label(labels: &crate::runtime::Labels) -> Option<Ipv4Addr> {
    labels.get(labels::LOOPBACK).and_then(|v| v.parse().ok())
}

/// The status entry of the slug in `labels`, created on first sight.
fn entry<'a>(
    map: &'a mut BTreeMap<String, BottleStatus>,
    labels: &crate::runtime::Labels,
) -> &'a mut BottleStatus {
    let slug = labels.get(labels::SLUG).cloned().unwrap_or_default();
    let status = map.entry(slug.clone()).or_insert_with(|| BottleStatus {
        slug,
        state: None,
        health: None,
        loopback: None,
        subnet: None,
        daemons: Vec::new(),
        network: None,
        container: None,
        created: None,
        unreachable: Vec::new(),
    });
    status.loopback = status.loopback.or_else(|| loopback_label(labels));
    if status.subnet.is_none() {
        status.subnet = labels.get(labels::SUBNET).cloned();
    }
    status
}

/// Groups networks and containers by their slug label.
fn group(networks: Vec<NetworkInfo>, containers: Vec<ContainerInfo>) -> Vec<BottleStatus> {
    let mut by_slug: BTreeMap<String, BottleStatus> = BTreeMap::new();
    for n in networks {
        if n.labels.get(labels::ROLE).map(String::as_str) != Some(labels::ROLE_NETWORK) {
            continue;
        }
        entry(&mut by_slug, &n.labels).network = Some(n.name);
    }
    for c in containers {
        if c.labels.get(labels::ROLE).map(String::as_str) != Some(labels::ROLE_BUNDLE) {
            continue;
        }
        let status = entry(&mut by_slug, &c.labels);
        status.daemons = c
            .labels
            .get(labels::DAEMONS)
            .map(|d| {
                d.split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        status.state = Some(c.state);
        status.health = c.health;
        status.created = c.created;
        status.container = Some(c.name);
    }
    by_slug.into_values().collect()
}

/// Checks the engine's port bindings and returns container port -> host port for `wanted`.
///
/// A binding on any address other than `loopback` (including a wildcard) is a hard error.
/// Returns `None` while a wanted port has no host port yet, so the caller re-reads.
pub fn resolve_host_ports(
    container: &str,
    loopback: Ipv4Addr,
    wanted: &[u16],
    bindings: &[PortBinding],
) -> Result<Option<BTreeMap<u16, u16>>> {
    for b in bindings {
        if b.host_ip != Some(IpAddr::V4(loopback)) {
            return Err(Error::PublishedBeyondLoopback {
                container: container.to_string(),
                container_port: b.container_port,
                expected: loopback,
                found: b.host_ip.map_or_else(
                    || "every address (wildcard)".to_string(),
                    |ip| ip.to_string(),
                ),
            });
        }
    }
    let mut ports = BTreeMap::new();
    for &port in wanted {
        let host_port = bindings
            .iter()
            .filter(|b| b.container_port == port)
            .find_map(|b| b.host_port.filter(|p| *p != 0));
        match host_port {
            Some(p) => {
                ports.insert(port, p);
            }
            None => return Ok(None),
        }
    }
    let distinct: BTreeSet<u16> = ports.values().copied().collect();
    if distinct.len() != ports.len() {
        return Err(RuntimeError::Engine {
            engine: "bottle".into(),
            operation: "checking the published ports of".into(),
            target: container.to_string(),
            message: format!("two container ports share one host port: {ports:?}"),
            source: None,
        }
        .into());
    }
    Ok(Some(ports))
}

/// Whether something accepts a connection at `addr` and keeps it open for `idle` (with a zero
/// `idle`, whether it accepts).
///
/// A daemon that waits for its client keeps the connection open; Docker's userland proxy
/// accepts even when nothing listens behind it and closes at once.
pub async fn probe(addr: SocketAddr, idle: Duration) -> bool {
    let connect = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await;
    let Ok(Ok(mut stream)) = connect else {
        return false;
    };
    if idle.is_zero() {
        return true;
    }
    let mut buf = [0u8; 1];
    match tokio::time::timeout(idle, stream.read(&mut buf)).await {
        Err(_elapsed) => true,
        Ok(Ok(n)) => n > 0,
        Ok(Err(_)) => false,
    }
}

/// Waits of 5 ms, the first `steady` of them, then doubling up to 200 ms.
struct Backoff {
    next: Duration,
    steady: u32,
}

impl Backoff {
    /// Doubling from the first wait: for engine calls.
    fn new() -> Self {
        Backoff {
            next: Duration::from_millis(5),
            steady: 0,
        }
    }

    /// Every 5 ms for the first 200 ms, then doubling: for readiness probes, which cost a
    /// loopback connect each, where a daemon usually starts listening within a few dozen
    /// milliseconds and a doubling wait would overshoot it by as much.
    fn polling() -> Self {
        Backoff {
            next: Duration::from_millis(5),
            steady: 40,
        }
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        if self.steady > 0 {
            self.steady -= 1;
        } else {
            self.next = (self.next * 2).min(Duration::from_millis(200));
        }
    }
}
