//! [`PodmanRuntime`]: the [`ContainerRuntime`] primitives over libpod's REST API.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use bottle_core::adapter::{LogLines, LogStream};
use bottle_core::error::{RuntimeError, RuntimeResult as Result};
use bottle_core::runtime::{
    ContainerInfo, ContainerRuntime, ContainerSpec, EngineInfo, ImageInfo, LabelSelector,
    LogOptions, NetworkInfo, NetworkSpec,
};
use bottle_core::{ObjectKind, PortForwarding, Timeouts};
use containers_api::conn::TtyChunk;
use futures_util::StreamExt;
use podman_api::opts::{
    ContainerDeleteOpts, ContainerListFilter, ContainerListOpts, ContainerLogsOpts,
    NetworkCreateOpts, NetworkListFilter, NetworkListOpts,
};
use podman_api::{ApiVersion, Podman, LATEST_API_VERSION};
use tracing::{debug, warn};

use crate::connect::{self, Candidate, Endpoint, PodmanEndpoint, HINT};
use crate::error::{engine_message, status, Call};
use crate::inspect::{self, short_image_name};
use crate::raw::RawClient;
use crate::{create, ENGINE};

/// How long a ping may take before an endpoint counts as not answering.
const PING_TIMEOUT: Duration = Timeouts::DEFAULT.engine_ping;

/// How long any other call may take before the service counts as not answering (the contract
/// bounds every engine call; as bollard's default for Docker).
const CALL_TIMEOUT: Duration = Timeouts::DEFAULT.engine_call;

/// A Podman engine reached over its libpod REST API.
///
/// Cheap to clone (clones share the HTTP clients). See the crate docs for how it connects and
/// where it works around `podman-api`.
#[derive(Clone)]
pub struct PodmanRuntime {
    /// The repeats of a create, and the call bound [`PodmanRuntime::with_timeouts`] set.
    timeouts: Timeouts,
    podman: Podman,
    raw: RawClient,
    endpoint: String,
    version: ApiVersion,
    forwarding: PortForwarding,
    discovered: PodmanEndpoint,
    call_timeout: Duration,
}

impl fmt::Debug for PodmanRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PodmanRuntime")
            .field("endpoint", &self.endpoint)
            .field("api_version", &self.version.to_string())
            .field("port_forwarding", &self.forwarding)
            .finish_non_exhaustive()
    }
}

impl PodmanRuntime {
    /// Connects to the first Podman API service that answers, in the order Podman's own tools
    /// look (see [`discover`](crate::discover)): `CONTAINER_CONNECTION`, `CONTAINER_HOST`, the
    /// default connection of Podman's connection config, `$XDG_RUNTIME_DIR/podman/podman.sock`,
    /// then `/run/podman/podman.sock`.
    pub async fn connect() -> Result<Self> {
        let env = connect::Env::current();
        let candidates = connect::candidates(&env, &connect::RealFiles).map_err(|msg| {
            RuntimeError::EngineUnavailable {
                engine: ENGINE.into(),
                tried: env
                    .container_host
                    .clone()
                    .or(env.container_connection.clone())
                    .unwrap_or_else(|| "the Podman connection config".into()),
                hint: msg,
                source: None,
            }
        })?;
        Self::connect_first(&candidates).await
    }

    /// Connects to the service at `url` (`unix:///path` or `tcp://host:port`).
    pub async fn connect_to(url: &str) -> Result<Self> {
        let endpoint = Endpoint::parse(url).ok_or_else(|| RuntimeError::EngineUnavailable {
            engine: ENGINE.into(),
            tried: url.to_string(),
            hint: format!("{url} is not a unix:///path or tcp://host:port URL: {HINT}"),
            source: None,
        })?;
        Self::connect_first(&[Candidate {
            endpoint,
            source: "given by the caller".into(),
        }])
        .await
    }

    async fn connect_first(candidates: &[Candidate]) -> Result<Self> {
        let mut last = None;
        for candidate in candidates {
            match Self::try_endpoint(candidate).await {
                Ok(rt) => {
                    debug!(endpoint = %rt.endpoint, version = %rt.version, source = %candidate.source, "connected to podman");
                    return Ok(rt);
                }
                Err(e) => {
                    debug!(endpoint = %candidate.endpoint.url(), error = %e, "podman endpoint does not answer");
                    last = Some(e);
                }
            }
        }
        Err(RuntimeError::EngineUnavailable {
            engine: ENGINE.into(),
            tried: candidates
                .iter()
                .map(|c| format!("{} ({})", c.endpoint.url(), c.source))
                .collect::<Vec<_>>()
                .join(", "),
            hint: HINT.into(),
            source: last.map(|e| Box::new(e) as _),
        })
    }

    async fn try_endpoint(candidate: &Candidate) -> std::result::Result<Self, podman_api::Error> {
        let endpoint = &candidate.endpoint;
        let podman = endpoint.podman(LATEST_API_VERSION)?;
        let ping = tokio::time::timeout(PING_TIMEOUT, podman.ping())
            .await
            .map_err(|_| {
                podman_api::Error::StringError(format!("no answer to ping within {PING_TIMEOUT:?}"))
            })??;
        // Address an older service with its own API version; a newer one accepts ours.
        let version = ping
            .libpod_api_version
            .parse::<ApiVersion>()
            .ok()
            .filter(|v| *v < LATEST_API_VERSION)
            .unwrap_or(LATEST_API_VERSION);
        let podman = if version == LATEST_API_VERSION {
            podman
        } else {
            endpoint.podman(version)?
        };
        Ok(PodmanRuntime {
            timeouts: Timeouts::DEFAULT,
            podman,
            raw: RawClient::new(endpoint, version)?,
            endpoint: endpoint.url(),
            version,
            forwarding: endpoint.port_forwarding(),
            discovered: candidate.describe(),
            call_timeout: CALL_TIMEOUT,
        })
    }

    /// Bounds every later engine call (except a followed log stream) by `timeout` instead of
    /// two minutes: a call without an answer by then is `EngineUnavailable`.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Uses `timeouts` for every later call (`engine_call`, as
    /// [`with_call_timeout`](Self::with_call_timeout)) and create (`create_attempts`,
    /// `create_retry_wait`) instead of the defaults.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.call_timeout = timeouts.engine_call;
        self.timeouts = timeouts;
        self
    }

    /// `call` (the trait method `operation`), bounded in time: a service that does not answer
    /// makes it fail, never hang.
    async fn bounded<T>(
        &self,
        operation: &str,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        tokio::time::timeout(self.call_timeout, call)
            .await
            .unwrap_or_else(|elapsed| {
                Err(RuntimeError::unavailable(
                    ENGINE,
                    &self.endpoint,
                    format!("no answer to {operation} within {:?}", self.call_timeout),
                    elapsed,
                ))
            })
    }

    /// Where this runtime is connected (`unix:///run/podman/podman.sock`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The endpoint this runtime connected to, how it was chosen, and whether its service runs
    /// rootless (for `bottle doctor`).
    pub fn discovered(&self) -> &PodmanEndpoint {
        &self.discovered
    }

    /// Whether the service runs rootless (its socket is not root's); `None` when that cannot be
    /// seen from here (a TCP endpoint). A rootless service lives in the user's namespaces: its
    /// networks are in the rootless network namespace (no route on the host) and it publishes
    /// ports through `rootlessport`, so [`ContainerRuntime::port_forwarding`] is `Proxied`.
    pub fn rootless(&self) -> Option<bool> {
        self.discovered.rootless
    }

    /// Whether the service applies a container's memory and pids limits: not a rootless service
    /// on a cgroup v1 host, which drops them (bottle then refuses the bundle; see the crate
    /// docs). Asks the engine (libpod's `info`, about half a second here), so it is for
    /// `bottle doctor`, not for every command.
    pub async fn applies_limits(&self) -> Result<bool> {
        self.bounded("info", async {
            let info = self.podman.info().await.map_err(|e| {
                RuntimeError::engine(ENGINE, "reading host information", self.endpoint.clone(), e)
            })?;
            let host = info.host.as_ref();
            let rootless = host
                .and_then(|h| h.security.as_ref())
                .and_then(|s| s.rootless)
                .unwrap_or(false);
            let v1 = host
                .and_then(|h| h.cgroup_version.as_deref())
                .is_some_and(|v| v == "v1");
            Ok(!(rootless && v1))
        })
        .await
    }

    /// The podman-api client, for what the trait does not cover (tests read hardening
    /// settings from libpod's full inspect answer with it).
    pub fn client(&self) -> &Podman {
        &self.podman
    }

    fn call<'a>(&'a self, operation: &'a str, kind: ObjectKind, name: &'a str) -> Call<'a> {
        Call {
            endpoint: &self.endpoint,
            operation,
            kind,
            name,
        }
    }

    /// Inspects a container with libpod's own model (security options, caps, limits).
    async fn inspect_raw(&self, name: &str) -> Result<podman_api::models::InspectContainerData> {
        self.podman
            .containers()
            .get(name)
            .inspect()
            .await
            .map_err(|e| {
                self.call("inspecting", ObjectKind::Container, name)
                    .error(e)
            })
    }

    /// Removes a container without waiting; also its anonymous volumes.
    async fn delete_container(&self, name: &str) -> std::result::Result<(), podman_api::Error> {
        // `Container::remove` sends no timeout, and Podman then gives a PID 1 that ignores
        // SIGTERM the full 10 s; `timeout=0` kills at once.
        let opts = ContainerDeleteOpts::builder()
            .force(true)
            .timeout(0)
            .volumes(true)
            .build();
        self.podman.containers().get(name).delete(&opts).await
    }
}

/// Label filters in libpod's syntax (`key` or `key=value`), as `key` and `key_val` make them
/// (the container and network listings take different filter types).
fn label_filters<F>(
    selector: &LabelSelector,
    key: fn(String) -> F,
    key_val: fn(String, String) -> F,
) -> Vec<F> {
    selector
        .0
        .iter()
        .map(|(k, v)| match v {
            Some(v) => key_val(k.clone(), v.clone()),
            None => key(k.clone()),
        })
        .collect()
}

fn network_info(n: podman_api::models::Network) -> NetworkInfo {
    NetworkInfo {
        name: n.name.unwrap_or_default(),
        id: n.id.unwrap_or_default(),
        // IPv6 subnets are not ours to plan around: bottles use IPv4 only.
        subnets: n
            .subnets
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s.subnet.as_deref()?.parse::<ipnet::Ipv4Net>().ok())
            .collect(),
        labels: inspect::labels(n.labels),
    }
}

/// Whether an engine message says a subnet is taken (Podman 4.3: "subnet 10.0.0.0/24 is already
/// used on the host or by another config", HTTP 500).
fn is_subnet_conflict(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("subnet") && (m.contains("already used") || m.contains("overlap"))
}

/// Whether an engine message says a container name is taken (Podman 4.3 answers with HTTP 500
/// "the container name ... is already in use").
fn is_name_conflict(message: &str) -> bool {
    message.to_ascii_lowercase().contains("already in use")
}

#[async_trait]
impl ContainerRuntime for PodmanRuntime {
    fn name(&self) -> &str {
        ENGINE
    }

    fn port_forwarding(&self) -> PortForwarding {
        self.forwarding
    }

    async fn info(&self) -> Result<EngineInfo> {
        self.bounded("info", async {
            // The ping, not `/version`: Podman answers `/version` by asking each of its components
            // (conmon, the OCI runtime, ...) for theirs, about half a second on these machines, and
            // the CLI asks for `info` on every command. Podman 4's `Libpod-API-Version` header is
            // its own version, so the ping says the same and costs one round trip.
            let ping = self.podman.ping().await.map_err(|e| {
                let message = engine_message(&e);
                RuntimeError::EngineUnavailable {
                    engine: ENGINE.into(),
                    tried: self.endpoint.clone(),
                    hint: format!("pinging the engine failed ({message}): {HINT}"),
                    source: Some(Box::new(e)),
                }
            })?;
            Ok(EngineInfo {
                engine: ENGINE.into(),
                version: ping.libpod_api_version,
                api_version: self.version.to_string(),
                endpoint: self.endpoint.clone(),
            })
        })
        .await
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<NetworkInfo> {
        self.bounded("create_network", async {
            let call = self.call("creating", ObjectKind::Network, &spec.name);
            let opts = NetworkCreateOpts::builder()
                .name(&spec.name)
                .driver("bridge")
                .subnets([podman_api::models::Subnet {
                    subnet: Some(spec.subnet.to_string()),
                    gateway: Some(spec.gateway.to_string()),
                    lease_range: None,
                }])
                .labels(spec.labels.iter())
                .build();
            // Podman 4.3 checks a new subnet against the host's interfaces by listing them and
            // then reading each one's addresses; a bridge that another network's container adds
            // or removes in between fails the whole create with "route ip+net: no such network
            // interface". Nothing was created then, so the create is tried again, a few times.
            let mut attempt: u32 = 0;
            let created = loop {
                attempt += 1;
                match self.podman.networks().create(&opts).await {
                    Err(e)
                        if attempt < self.timeouts.create_attempts
                            && engine_message(&e).contains("no such network interface") =>
                    {
                        warn!(network = %spec.name, attempt, "interfaces changed during network create; trying again");
                        tokio::time::sleep(self.timeouts.create_retry_wait * attempt).await;
                    }
                    other => break other,
                }
            };
            let created = match created {
                Ok(n) => n,
                Err(e) => {
                    let message = engine_message(&e);
                    return Err(
                        if status(&e) == Some(409) || message.contains("network already exists") {
                            call.already_exists(e)
                        } else if is_subnet_conflict(&message) {
                            RuntimeError::SubnetConflict {
                                subnet: spec.subnet,
                                source: Some(Box::new(e)),
                            }
                        } else {
                            call.error(e)
                        },
                    );
                }
            };
            let info = network_info(created);
            if info.subnets != [spec.subnet] {
                // Never hand out a network on other addresses than planned: remove it and say so.
                if let Err(e) = self.remove_network(&spec.name).await {
                    warn!(network = %spec.name, error = %e, "removing a network created with the wrong subnet");
                }
                return Err(RuntimeError::Engine {
                    engine: ENGINE.into(),
                    operation: "creating".into(),
                    target: format!("network {}", spec.name),
                    message: format!(
                        "the engine made subnets {:?} instead of {}; the network was removed",
                        info.subnets, spec.subnet
                    ),
                    source: None,
                });
            }
            Ok(info)
        })
        .await
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        self.bounded("remove_network", async {
            match self.podman.networks().get(name).delete().await {
                Ok(reports) => {
                    // libpod reports per-network failures inside a 200 answer.
                    if let Some(err) = reports.iter().find_map(|r| r.err.clone()) {
                        return Err(RuntimeError::Engine {
                            engine: ENGINE.into(),
                            operation: "removing".into(),
                            target: format!("network {name}"),
                            message: err,
                            source: None,
                        });
                    }
                    Ok(())
                }
                Err(e) if status(&e) == Some(404) => Ok(()),
                Err(e) => Err(self.call("removing", ObjectKind::Network, name).error(e)),
            }
        })
        .await
    }

    async fn list_networks(&self, selector: &LabelSelector) -> Result<Vec<NetworkInfo>> {
        self.bounded("list_networks", async {
            let opts = NetworkListOpts::builder()
                .filter(label_filters(
                    selector,
                    NetworkListFilter::LabelKey,
                    NetworkListFilter::LabelKeyVal,
                ))
                .build();
            let networks = self.podman.networks().list(&opts).await.map_err(|e| {
                self.call("listing every", ObjectKind::Network, &selector.to_string())
                    .error(e)
            })?;
            // Podman matches label keys as patterns; keep exactly the selected ones.
            Ok(selector.keep(networks.into_iter().map(network_info)))
        })
        .await
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<()> {
        self.bounded("create_container", async {
            let call = self.call("creating", ObjectKind::Container, &spec.name);
            let body = create::body(spec).map_err(|e| call.engine(e))?;
            // The raw path: podman-api's `Containers::create` cannot send `no_new_privileges`.
            let created = match self.raw.post_json("/libpod/containers/create", &body).await {
                Ok(answer) => answer,
                Err(e) => {
                // Podman 4.3 answers all three with HTTP 500; the message tells them apart.
                let message = engine_message(&e).to_ascii_lowercase();
                let code = status(&e);
                return Err(if code == Some(409) || is_name_conflict(&message) {
                    call.already_exists(e)
                } else if message.contains("network not found")
                    || (code == Some(404) && message.contains("network"))
                {
                    RuntimeError::NotFound {
                        kind: ObjectKind::Network,
                        name: spec.network.clone(),
                        source: Some(Box::new(e)),
                    }
                } else if message.contains("image not known") || code == Some(404) {
                    RuntimeError::NotFound {
                        kind: ObjectKind::Image,
                        name: spec.image.clone(),
                        source: Some(Box::new(e)),
                    }
                } else {
                    call.error(e)
                });
                }
            };
            // What Podman says it left out ("Resource limits are not supported and ignored on
            // cgroups V1 rootless systems"), for the message when a setting is missing.
            let warnings: Vec<&str> = created["Warnings"]
                .as_array()
                .map(|w| w.iter().filter_map(|w| w.as_str()).collect())
                .unwrap_or_default();
            // Every hardening setting must show in inspect, or the container must not exist.
            let verified = match self.inspect_raw(&spec.name).await {
                Ok(inspected) => {
                    let missing = create::missing_settings(&spec.security, spec.limits, &inspected);
                    if missing.is_empty() {
                        return Ok(());
                    }
                    let mut message = format!(
                        "the engine ignored requested settings: {}; the container was removed",
                        missing.join("; ")
                    );
                    if !warnings.is_empty() {
                        message.push_str(&format!(" (Podman warned: {})", warnings.join("; ")));
                    }
                    if self.rootless() == Some(true) && missing.iter().any(|m| m.contains("limit")) {
                        // Podman drops every resource limit of a rootless container on cgroup
                        // v1, with no setting to change that.
                        message.push_str(
                            "; a rootless Podman service applies memory and pids limits only on cgroup v2: use a host with cgroup v2 (the unified hierarchy) or the rootful service",
                        );
                    }
                    Err(RuntimeError::Engine {
                        engine: ENGINE.into(),
                        operation: "creating".into(),
                        target: format!("container {}", spec.name),
                        message,
                        source: None,
                    })
                }
                Err(e) => Err(e),
            };
            // The caller counts a failed create as nothing created, so remove what was made.
            if let Err(e) = self.delete_container(&spec.name).await {
                warn!(container = %spec.name, error = %e, "removing a container that failed its checks after create");
            }
            verified
        })
        .await
    }

    async fn start_container(&self, name: &str) -> Result<()> {
        self.bounded("start_container", async {
            match self.podman.containers().get(name).start(None).await {
                Ok(()) => Ok(()),
                // 304: already running, which is what was asked.
                Err(e) if status(&e) == Some(304) => Ok(()),
                Err(e) => Err(self.call("starting", ObjectKind::Container, name).error(e)),
            }
        })
        .await
    }

    async fn inspect_container(&self, name: &str) -> Result<ContainerInfo> {
        self.bounded("inspect_container", async {
            self.inspect_raw(name).await.map(inspect::container_info)
        })
        .await
    }

    async fn remove_container(&self, name: &str) -> Result<()> {
        self.bounded("remove_container", async {
            match self.delete_container(name).await {
                Ok(()) => Ok(()),
                Err(e) if status(&e) == Some(404) => Ok(()),
                Err(e) => Err(self.call("removing", ObjectKind::Container, name).error(e)),
            }
        })
        .await
    }

    async fn list_containers(&self, selector: &LabelSelector) -> Result<Vec<ContainerInfo>> {
        self.bounded("list_containers", async {
            let opts = ContainerListOpts::builder()
                .all(true)
                .filter(label_filters(
                    selector,
                    ContainerListFilter::LabelKey,
                    ContainerListFilter::LabelKeyVal,
                ))
                .build();
            let listed = self.podman.containers().list(&opts).await.map_err(|e| {
                self.call(
                    "listing every",
                    ObjectKind::Container,
                    &selector.to_string(),
                )
                .error(e)
            })?;
            // The listing has no addresses, health or published host ports: inspect each. A
            // container removed in between is simply no longer listed.
            let inspections = listed.into_iter().filter_map(|c| {
                let name = c.names.and_then(|n| n.into_iter().next()).or(c.id)?;
                Some(async move {
                    match self.inspect_container(&name).await {
                        Ok(info) => Ok(Some(info)),
                        Err(e) if e.kind() == bottle_core::ErrorKind::NotFound => Ok(None),
                        Err(e) => Err(e),
                    }
                })
            });
            let infos = futures_util::future::try_join_all(inspections).await?;
            Ok(selector.keep(infos.into_iter().flatten()))
        })
        .await
    }

    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>> {
        self.bounded("image", async {
            // Podman resolves a short name (`bottle-sidecars:latest`) to the local
            // `localhost/bottle-sidecars:latest` itself, so the reference is passed as given.
            match self.podman.images().get(reference).inspect().await {
                Ok(image) => {
                    let config = image.config.as_ref();
                    let labels = image
                        .labels
                        .clone()
                        .or_else(|| config.and_then(|c| c.labels.clone()));
                    let user = config
                        .and_then(|c| c.user.clone())
                        .or(image.user.clone())
                        .unwrap_or_default();
                    Ok(Some(ImageInfo {
                        id: image.id.unwrap_or_default(),
                        labels: inspect::labels(labels),
                        user,
                    }))
                }
                Err(e) if status(&e) == Some(404) => Ok(None),
                Err(e) => Err(self
                    .call("inspecting", ObjectKind::Image, reference)
                    .error(e)),
            }
        })
        .await
    }

    async fn load_image(&self, archive: &Path) -> Result<Vec<String>> {
        self.bounded("load_image", async {
            let path = archive.to_path_buf();
            let bytes = tokio::task::spawn_blocking(move || std::fs::read(&path))
                .await
                .map_err(|e| {
                    RuntimeError::engine(
                        ENGINE,
                        "reading image archive",
                        archive.display().to_string(),
                        e,
                    )
                })?
                .map_err(|e| {
                    RuntimeError::engine(
                        ENGINE,
                        "reading image archive",
                        archive.display().to_string(),
                        e,
                    )
                })?;
            let target = archive.display().to_string();
            let report = self
                .podman
                .images()
                .load(bytes)
                .await
                .map_err(|e| self.call("loading", ObjectKind::Image, &target).error(e))?;
            Ok(report
                .names
                .unwrap_or_default()
                .iter()
                .map(|n| short_image_name(n).to_string())
                .collect())
        })
        .await
    }

    async fn logs(
        &self,
        name: &str,
        options: LogOptions,
        sink: &mut (dyn FnMut(String) -> bool + Send),
    ) -> Result<()> {
        let call = self.call("reading logs of", ObjectKind::Container, name);
        let mut builder = ContainerLogsOpts::builder()
            .stdout(true)
            .stderr(true)
            .follow(options.follow);
        if let Some(n) = options.tail {
            builder = builder.tail(n.to_string());
        }
        let opts = builder.build();
        let container = self.podman.containers().get(name);
        let mut stream = container.logs(&opts);
        let mut lines = LogLines::new();
        while let Some(chunk) = stream.next().await {
            let (stream, bytes) = match chunk.map_err(|e| call.error(e))? {
                TtyChunk::StdErr(bytes) => (LogStream::Stderr, bytes),
                TtyChunk::StdOut(bytes) | TtyChunk::StdIn(bytes) => (LogStream::Stdout, bytes),
            };
            if !lines.push(stream, &bytes, sink) {
                return Ok(());
            }
        }
        lines.finish(sink);
        Ok(())
    }
}
