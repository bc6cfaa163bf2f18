//! [`DockerRuntime`]: the [`ContainerRuntime`] primitives as Docker Engine API calls.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::query_parameters::{
    ImportImageOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
    ListNetworksOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use bottle_core::adapter::{LogLines, LogStream};
use bottle_core::error::{RuntimeError, RuntimeResult as Result};
use bottle_core::runtime::{
    ContainerInfo, ContainerRuntime, ContainerSpec, EngineInfo, EnvValue, ImageInfo, LabelSelector,
    LogOptions, NetworkInfo, NetworkSpec,
};
use bottle_core::{ObjectKind, Timeouts};
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tracing::{debug, warn};

use crate::convert;
use crate::endpoint::{self, Endpoint, Sources, Transport};
use crate::errors::{self, ENGINE, HINT};
use crate::tunnel::Tunnel;

/// Where Docker listens when `DOCKER_HOST` is not set.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// How long connecting (version negotiation and ping) may take before the engine counts as
/// unavailable. Every later call uses bollard's own timeout, which an image load needs (two
/// minutes, [`Timeouts::engine_call`]; see [`DockerRuntime::with_timeouts`]).
const CONNECT_TIMEOUT: Duration = Timeouts::DEFAULT.engine_connect;

/// A Docker Engine reached through its API (bollard), as a [`ContainerRuntime`].
#[derive(Clone)]
pub struct DockerRuntime {
    /// The waits of a removal in progress (the call bound is the client's).
    timeouts: Timeouts,
    docker: Docker,
    /// The socket path or URL connected to, for messages and [`EngineInfo`].
    endpoint: String,
    /// Where the engine is and how that was chosen.
    chosen: Endpoint,
    /// The `ssh` forward of an `ssh://` engine, shared by clones; the last one closes it.
    _tunnel: Option<Arc<Tunnel>>,
}

impl std::fmt::Debug for DockerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerRuntime")
            .field("endpoint", &self.endpoint)
            .field("chosen_by", &self.chosen.chosen_by)
            .field("api_version", &self.docker.client_version().to_string())
            .finish()
    }
}

/// bollard's per-request timeout in whole seconds, until [`DockerRuntime::with_timeouts`]
/// replaces it: an image load needs minutes.
const REQUEST_TIMEOUT_SECS: u64 = Timeouts::DEFAULT.engine_call.as_secs();

impl DockerRuntime {
    /// Connects to the engine the `docker` CLI would use without `--context`: `DOCKER_HOST`,
    /// `DOCKER_CONTEXT`, the CLI config's current context, else [`DEFAULT_HOST`] (see
    /// [`endpoint`]).
    pub async fn connect() -> Result<Self> {
        Self::connect_context(None).await
    }

    /// Like [`connect`](Self::connect), with the context named by a `--context` flag first.
    pub async fn connect_context(context: Option<&str>) -> Result<Self> {
        let endpoint = endpoint::discover(&Sources::from_env(context)).map_err(|e| {
            let (tried, hint) = (e.source.clone(), e.hint.clone());
            errors::unavailable(&tried, &hint, Some(Box::new(e)))
        })?;
        Self::connect_endpoint(endpoint).await
    }

    /// Connects to the engine at `host` (`unix:///path`, `tcp://host:port` or
    /// `ssh://user@host`), agrees on an API version both sides speak, and checks that the
    /// engine answers. A `tcp://` address uses TLS when `DOCKER_TLS_VERIFY` is set, with the
    /// files of `DOCKER_CERT_PATH`.
    pub async fn connect_to(host: &str) -> Result<Self> {
        let mut sources = Sources::from_env(None);
        sources.docker_host = Some(host.to_string());
        let endpoint = endpoint::discover(&sources).map_err(|e| {
            let hint = match e.source.as_str() {
                "DOCKER_HOST" => "use a unix://, tcp:// or ssh:// address".to_string(),
                _ => e.hint.clone(),
            };
            errors::unavailable(host, &hint, Some(Box::new(e)))
        })?;
        Self::connect_endpoint(endpoint).await
    }

    /// Connects to `endpoint` (opening an ssh tunnel for `ssh://`), agrees on an API version
    /// and checks that the engine answers.
    pub async fn connect_endpoint(endpoint: Endpoint) -> Result<Self> {
        let host = endpoint.host.clone();
        let version = bollard::API_DEFAULT_VERSION;
        let mut tunnel = None;
        let docker = match &endpoint.transport {
            Transport::Unix(path) => {
                Docker::connect_with_unix(&path.to_string_lossy(), REQUEST_TIMEOUT_SECS, version)
            }
            Transport::Tcp { addr, tls: None } => {
                Docker::connect_with_http(addr, REQUEST_TIMEOUT_SECS, version)
            }
            Transport::Tcp {
                addr,
                tls: Some(files),
            } => Docker::connect_with_ssl(
                addr,
                &files.key,
                &files.cert,
                &files.ca,
                REQUEST_TIMEOUT_SECS,
                version,
            ),
            Transport::Ssh(dest) => {
                let opened = Tunnel::open(dest).await.map_err(|problem| {
                    errors::unavailable(
                        &host,
                        &format!("{problem}; check that `ssh` reaches that host with a key and without a prompt, and that its user may use the engine's socket"),
                        None,
                    )
                })?;
                let socket = opened.socket().to_string_lossy().into_owned();
                tunnel = Some(Arc::new(opened));
                Docker::connect_with_unix(&socket, REQUEST_TIMEOUT_SECS, version)
            }
        }
        .map_err(|e| errors::unavailable(&host, HINT, Some(Box::new(e))))?;
        let connect = async {
            // bollard 0.21 defaults to API 1.53, which Docker 20.10 (1.41) rejects. In fact
            // bollard sends unversioned paths (its URL join drops the `/v1.xx` prefix), so the
            // engine answers at its own newest version either way; negotiating still makes
            // `client_version()`, which `info` reports, the version actually spoken.
            let docker = docker.negotiate_version().await?;
            docker.ping().await?;
            Ok::<_, bollard::errors::Error>(docker)
        };
        let hint = match &endpoint.transport {
            Transport::Tcp { tls: Some(_), .. } => "dockerd is not listening there, or the TLS handshake failed: check that the CA signed the engine's certificate for that address and that the engine accepts the client certificate",
            _ => HINT,
        };
        let docker = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(docker)) => docker,
            Ok(Err(e)) => return Err(errors::unavailable(&host, hint, Some(Box::new(e)))),
            Err(elapsed) => return Err(errors::unavailable(&host, hint, Some(Box::new(elapsed)))),
        };
        debug!(endpoint = %host, chosen_by = %endpoint.chosen_by, api = %docker.client_version(), "connected to docker");
        Ok(DockerRuntime {
            timeouts: Timeouts::DEFAULT,
            docker,
            endpoint: host,
            chosen: endpoint,
            _tunnel: tunnel,
        })
    }

    /// Where the engine is and how it was chosen (`--context ci`, `DOCKER_HOST`, ...).
    pub fn chosen(&self) -> &Endpoint {
        &self.chosen
    }

    /// Whether the engine runs rootless, as its security options say (`name=rootless`).
    pub async fn rootless(&self) -> Result<bool> {
        let info =
            self.docker.info().await.map_err(|e| {
                errors::other(&self.endpoint, "reading the info of", "the engine", e)
            })?;
        Ok(info
            .security_options
            .unwrap_or_default()
            .iter()
            .any(|o| o.split(',').any(|kv| kv == "name=rootless")))
    }

    /// The bollard client, for what the trait does not cover (tests inspect settings with it).
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Where this runtime connected.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn map(
        &self,
        operation: &str,
        kind: ObjectKind,
        name: &str,
        e: bollard::errors::Error,
    ) -> RuntimeError {
        errors::map(&self.endpoint, operation, kind, name, e)
    }

    /// Networks named exactly `name` (Docker's `name` filter also matches substrings).
    async fn networks_named(&self, name: &str) -> Result<Vec<bollard::models::Network>> {
        let filters = std::collections::HashMap::from([("name", vec![name])]);
        let options = ListNetworksOptionsBuilder::default()
            .filters(&filters)
            .build();
        let found = self
            .docker
            .list_networks(Some(options))
            .await
            .map_err(|e| errors::other(&self.endpoint, "listing networks named", name, e))?;
        Ok(found
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name))
            .collect())
    }

    /// Fails a create whose warnings say a requested setting was discarded (removing the
    /// container again), and logs any other warning.
    async fn check_create_warnings(&self, spec: &ContainerSpec, warnings: &[String]) -> Result<()> {
        let discarded = convert::discarding_warnings(warnings);
        if discarded.is_empty() {
            for w in warnings {
                warn!(container = %spec.name, warning = %w, "docker warned on create");
            }
            debug!(container = %spec.name, image = %spec.image, ip = %spec.ipv4, "created container");
            return Ok(());
        }
        let message = format!(
            "the engine would run it without settings it was asked for ({}): enable the missing cgroup controllers on the host, or use another engine",
            discarded.join("; ")
        );
        self.remove_container(&spec.name).await?;
        Err(RuntimeError::Engine {
            engine: ENGINE.into(),
            operation: "creating container".into(),
            target: spec.name.clone(),
            message,
            source: None,
        })
    }

    /// Bounds every later engine call by `timeouts.engine_call` (bollard's own default is the
    /// same two minutes) and waits for a removal in progress by `timeouts.removal_in_progress`
    /// and `removal_poll`.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        // bollard keeps whole seconds: less than one would be none.
        self.docker = self
            .docker
            .with_timeout(timeouts.engine_call.max(Duration::from_secs(1)));
        self.timeouts = timeouts;
        self
    }

    /// Waits until a container another caller is removing is gone.
    async fn wait_removed(&self, name: &str, cause: bollard::errors::Error) -> Result<()> {
        let deadline = Instant::now() + self.timeouts.removal_in_progress;
        loop {
            match self
                .docker
                .inspect_container(name, None::<InspectContainerOptions>)
                .await
            {
                Err(e) if errors::status(&e) == Some(404) => return Ok(()),
                Err(e) => {
                    return Err(self.map("removing container", ObjectKind::Container, name, e))
                }
                Ok(_) if Instant::now() >= deadline => {
                    return Err(RuntimeError::engine(
                        ENGINE,
                        "removing container",
                        name,
                        cause,
                    ))
                }
                Ok(_) => tokio::time::sleep(self.timeouts.removal_poll).await,
            }
        }
    }
}

#[async_trait]
impl ContainerRuntime for DockerRuntime {
    fn name(&self) -> &str {
        ENGINE
    }

    async fn info(&self) -> Result<EngineInfo> {
        let v = self.docker.version().await.map_err(|e| {
            errors::other(&self.endpoint, "reading the version of", "the engine", e)
        })?;
        Ok(EngineInfo {
            engine: ENGINE.into(),
            version: v.version.unwrap_or_default(),
            // The version this client speaks, after negotiation: what every call uses.
            api_version: self.docker.client_version().to_string(),
            endpoint: self.endpoint.clone(),
        })
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<NetworkInfo> {
        let created = match self
            .docker
            .create_network(convert::network_request(spec))
            .await
        {
            Ok(created) => created,
            Err(e) if errors::status(&e) == Some(409) => {
                return Err(errors::already_exists(ObjectKind::Network, &spec.name, e))
            }
            // Docker 20.10 says 403 "Pool overlaps with other one on this address space";
            // newer engines word it differently ("overlap") and answer 400.
            Err(e)
                if matches!(errors::status(&e), Some(400 | 403))
                    && errors::message(&e).to_ascii_lowercase().contains("overlap") =>
            {
                return Err(RuntimeError::SubnetConflict {
                    subnet: spec.subnet,
                    source: Some(Box::new(e)),
                })
            }
            Err(e) => return Err(self.map("creating network", ObjectKind::Network, &spec.name, e)),
        };
        // Below API 1.44 the engine checks network names only when the request says
        // `CheckDuplicate`, a field bollard's (1.53) models no longer have: Docker 20.10 then
        // makes a second network of the same name with a mere warning. So look, and when this
        // call made a duplicate, remove it again. The oldest network of the name is the one
        // that stays, so two racing creators agree on which one that is.
        let same = match self.networks_named(&spec.name).await {
            Ok(same) => same,
            Err(e) => {
                // Unchecked, the network must not stay behind: the caller saw no success, so
                // nobody would remove it.
                let _ = self.docker.remove_network(&created.id).await;
                return Err(e);
            }
        };
        if same.len() > 1 {
            let oldest = same
                .iter()
                .min_by_key(|n| (n.created.map(std::time::SystemTime::from), n.id.clone()))
                .and_then(|n| n.id.clone());
            if oldest.as_deref() != Some(created.id.as_str()) {
                if let Err(e) = self.docker.remove_network(&created.id).await {
                    return Err(self.map(
                        "removing the duplicate of network",
                        ObjectKind::Network,
                        &spec.name,
                        e,
                    ));
                }
                let warning = (!created.warning.is_empty()).then(|| {
                    Box::new(errors::EngineMessage(created.warning)) as bottle_core::error::BoxError
                });
                return Err(RuntimeError::AlreadyExists {
                    kind: ObjectKind::Network,
                    name: spec.name.clone(),
                    source: warning,
                });
            }
        }
        debug!(network = %spec.name, subnet = %spec.subnet, "created network");
        Ok(NetworkInfo {
            name: spec.name.clone(),
            id: created.id,
            subnets: vec![spec.subnet],
            labels: spec.labels.clone(),
        })
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(e) if errors::status(&e) == Some(404) => Ok(()),
            Err(e) => Err(self.map("removing network", ObjectKind::Network, name, e)),
        }
    }

    async fn list_networks(&self, selector: &LabelSelector) -> Result<Vec<NetworkInfo>> {
        let options = ListNetworksOptionsBuilder::default()
            .filters(&convert::label_filters(selector))
            .build();
        let networks = self
            .docker
            .list_networks(Some(options))
            .await
            .map_err(|e| {
                errors::other(&self.endpoint, "listing networks", &selector.to_string(), e)
            })?;
        // The engine filtered already; filtering again keeps the contract exact whatever the
        // engine makes of unusual label values.
        Ok(selector.keep(networks.into_iter().map(convert::network_info)))
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<()> {
        let body = convert::container_body(spec)?;
        let options = bollard::query_parameters::CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        // Docker creates a container on a network that does not exist (and fails only at
        // start); the contract says `NotFound`, so the network is looked up alongside.
        let (network, created) = tokio::join!(
            self.docker.inspect_network(&spec.network, None),
            self.docker.create_container(Some(options), body)
        );
        if let Err(e) = network {
            if errors::status(&e) == Some(404) {
                if created.is_ok() {
                    self.remove_container(&spec.name).await?;
                }
                return Err(RuntimeError::NotFound {
                    kind: ObjectKind::Network,
                    name: spec.network.clone(),
                    source: Some(Box::new(e)),
                });
            }
        }
        let e = match created {
            Ok(created) => return self.check_create_warnings(spec, &created.warnings).await,
            Err(e) => e,
        };
        if errors::unreachable(&e) {
            return Err(errors::unavailable(&self.endpoint, HINT, Some(Box::new(e))));
        }
        let status = errors::status(&e);
        let missing = convert::missing_on_create(errors::message(&e));
        // The engine may quote the request back in its message; secret values never leave.
        let secrets = spec.env.iter().filter_map(|v| match &v.value {
            EnvValue::Secret(s) => Some(s.expose()),
            EnvValue::Plain(_) => None,
        });
        let source = errors::scrub(e, secrets);
        Err(match status {
            Some(409) => RuntimeError::AlreadyExists {
                kind: ObjectKind::Container,
                name: spec.name.clone(),
                source: Some(source),
            },
            Some(404) => RuntimeError::NotFound {
                kind: missing,
                name: match missing {
                    ObjectKind::Image => spec.image.clone(),
                    ObjectKind::Network => spec.network.clone(),
                    ObjectKind::Container => spec.name.clone(),
                },
                source: Some(source),
            },
            _ => RuntimeError::engine(ENGINE, "creating container", &spec.name, source),
        })
    }

    async fn start_container(&self, name: &str) -> Result<()> {
        self.docker
            .start_container(name, None)
            .await
            .map_err(|e| self.map("starting container", ObjectKind::Container, name, e))
    }

    async fn inspect_container(&self, name: &str) -> Result<ContainerInfo> {
        let c = self
            .docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.map("inspecting container", ObjectKind::Container, name, e))?;
        Ok(convert::container_info(c))
    }

    async fn remove_container(&self, name: &str) -> Result<()> {
        // `force` kills a running container with SIGKILL at once (no stop timeout), then
        // removes it; `v` removes anonymous volumes the image may have declared.
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(name, Some(options)).await {
            Ok(()) => {
                debug!(container = name, "removed container");
                Ok(())
            }
            Err(e) if errors::status(&e) == Some(404) => Ok(()),
            // "removal of container ... is already in progress": someone else (a racing `down`
            // or `gc`) is removing it; done once it is gone.
            Err(e)
                if errors::status(&e) == Some(409)
                    && errors::message(&e).contains("already in progress") =>
            {
                self.wait_removed(name, e).await
            }
            Err(e) => Err(self.map("removing container", ObjectKind::Container, name, e)),
        }
    }

    async fn list_containers(&self, selector: &LabelSelector) -> Result<Vec<ContainerInfo>> {
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&convert::label_filters(selector))
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| {
                errors::other(
                    &self.endpoint,
                    "listing containers",
                    &selector.to_string(),
                    e,
                )
            })?;
        Ok(selector.keep(containers.into_iter().map(convert::container_summary)))
    }

    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>> {
        match self.docker.inspect_image(reference).await {
            Ok(image) => {
                let config = image.config.unwrap_or_default();
                Ok(Some(ImageInfo {
                    id: image.id.unwrap_or_default(),
                    labels: config.labels.unwrap_or_default().into_iter().collect(),
                    user: config.user.unwrap_or_default(),
                }))
            }
            Err(e) if errors::status(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.map("inspecting image", ObjectKind::Image, reference, e)),
        }
    }

    async fn load_image(&self, archive: &Path) -> Result<Vec<String>> {
        let shown = archive.display().to_string();
        let file = tokio::fs::File::open(archive)
            .await
            .map_err(|e| RuntimeError::engine(ENGINE, "opening image archive", &shown, e))?;
        // Streamed in chunks: an image archive can be large, and the engine reads as it goes.
        let chunks = futures_util::stream::unfold(file, |mut file| async move {
            let mut buf = vec![0u8; 256 * 1024];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), file))
                }
                Err(e) => Some((Err(e), file)),
            }
        });
        let options = ImportImageOptionsBuilder::default().quiet(true).build();
        let mut progress = Box::pin(self.docker.import_image_stream(options, chunks, None));
        let mut loaded = Vec::new();
        while let Some(item) = progress.next().await {
            let info =
                item.map_err(|e| self.map("loading image archive", ObjectKind::Image, &shown, e))?;
            // `{"stream": "Loaded image: name:tag\n"}`, or `Loaded image ID: sha256:...` for
            // an untagged image.
            for line in info.stream.as_deref().unwrap_or_default().lines() {
                if let Some(name) = line
                    .strip_prefix("Loaded image: ")
                    .or_else(|| line.strip_prefix("Loaded image ID: "))
                {
                    loaded.push(name.trim().to_string());
                }
            }
        }
        if loaded.is_empty() {
            return Err(RuntimeError::Engine {
                engine: ENGINE.into(),
                operation: "loading image archive".into(),
                target: shown,
                message: "the engine reported no loaded image: check that the file is a `docker save` archive".into(),
                source: None,
            });
        }
        debug!(archive = %shown, images = ?loaded, "loaded image archive");
        Ok(loaded)
    }

    async fn logs(
        &self,
        name: &str,
        options: LogOptions,
        sink: &mut (dyn FnMut(String) -> bool + Send),
    ) -> Result<()> {
        let tail = options
            .tail
            .map_or_else(|| "all".to_string(), |n| n.to_string());
        let query = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .follow(options.follow)
            .tail(&tail)
            .build();
        let mut stream = Box::pin(self.docker.logs(name, Some(query)));
        let mut lines = LogLines::new();
        while let Some(item) = stream.next().await {
            let output = item.map_err(|e| {
                self.map("reading logs of container", ObjectKind::Container, name, e)
            })?;
            let (stream, bytes) = match output {
                bollard::container::LogOutput::StdErr { message } => (LogStream::Stderr, message),
                bollard::container::LogOutput::StdOut { message }
                | bollard::container::LogOutput::Console { message }
                | bollard::container::LogOutput::StdIn { message } => (LogStream::Stdout, message),
            };
            if !lines.push(stream, &bytes, sink) {
                return Ok(());
            }
        }
        lines.finish(sink);
        Ok(())
    }
}
