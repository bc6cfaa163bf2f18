//! `InMemoryRuntime`: a container engine in memory, faithful to the rules real engines enforce,
//! with fault injection. Fit for tests of anything built on [`ContainerRuntime`].
//!
//! Published ports are real: starting a container binds a TCP listener on the requested host
//! address with a port the kernel picks, which accepts and holds connections the way a daemon
//! does, so readiness probing and port discovery run exactly as against a real engine.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use ipnet::Ipv4Net;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::error::{ObjectKind, RuntimeError, RuntimeResult as Result};
use crate::plan::ImageProfile;
use crate::runtime::{
    ContainerInfo, ContainerRuntime, ContainerSpec, ContainerState, EngineInfo, ImageInfo,
    LabelSelector, Labels, LogOptions, NetworkInfo, NetworkSpec, PortBinding, PortForwarding,
};
use crate::selfcheck::{self, Report};

pub use crate::runtime::Op;

type MakeError = Box<dyn Fn() -> RuntimeError + Send + Sync>;

struct Fault {
    op: Op,
    /// 1-based index of the call of `op` that fails.
    nth: usize,
    make: MakeError,
}

struct MemNetwork {
    id: String,
    subnet: Ipv4Net,
    labels: Labels,
}

struct MemContainer {
    id: String,
    spec: ContainerSpec,
    state: ContainerState,
    /// Container port -> (listener task, host port), once started.
    listeners: BTreeMap<u16, (JoinHandle<()>, u16)>,
    created: SystemTime,
    log: Vec<String>,
}

impl MemContainer {
    fn stop(&mut self) {
        for (task, _) in self.listeners.values() {
            task.abort();
        }
        self.listeners.clear();
    }
}

#[derive(Default)]
struct State {
    networks: BTreeMap<String, MemNetwork>,
    containers: BTreeMap<String, MemContainer>,
    images: BTreeMap<String, ImageInfo>,
    calls: BTreeMap<Op, usize>,
    faults: Vec<Fault>,
    /// Inspections after start that still report unassigned host ports.
    unassigned_inspections: usize,
    /// Publish on the wildcard address whatever was asked (a misbehaving engine).
    publish_wildcard: bool,
    /// Containers may swap without limit (a quirk: an engine that leaves swap unset).
    swap_unlimited: bool,
    /// No daemon listens behind published ports (see `InMemoryRuntime::daemons_never_ready`).
    daemons_silent: bool,
    /// What a published port with no daemon behind it does: accept and close (`Proxied`) or
    /// refuse (`Direct`).
    forwarding: PortForwarding,
    /// Held operations: calls wait at the gate until it is released (closed), counted.
    gates: BTreeMap<Op, (Arc<tokio::sync::Semaphore>, usize)>,
    /// Held answers: calls take effect, then wait at the gate until it is released, counted.
    answer_gates: BTreeMap<Op, (Arc<tokio::sync::Semaphore>, usize)>,
    next_id: u64,
}

/// A container engine in memory. Cheap to clone: clones share state.
#[derive(Clone, Default)]
pub struct InMemoryRuntime {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for InMemoryRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("InMemoryRuntime")
            .field("networks", &s.networks.len())
            .field("containers", &s.containers.len())
            .finish()
    }
}

impl InMemoryRuntime {
    /// An empty engine without images.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an image with these labels.
    pub fn add_image(&self, reference: &str, labels: Labels) {
        let mut s = self.lock();
        let id = s.id();
        s.images.insert(
            reference.to_string(),
            ImageInfo {
                id,
                labels,
                user: "65532".into(),
            },
        );
    }

    /// Makes the `nth` call (1-based, counted from now on) of `op` fail with `make()`.
    pub fn fail_nth(
        &self,
        op: Op,
        nth: usize,
        make: impl Fn() -> RuntimeError + Send + Sync + 'static,
    ) {
        let mut s = self.lock();
        let base = s.calls.get(&op).copied().unwrap_or(0);
        s.faults.push(Fault {
            op,
            nth: base + nth,
            make: Box::new(make),
        });
    }

    /// The next `n` inspections of a started container report its ports without host ports,
    /// as engines do right after start.
    pub fn delay_host_ports(&self, n: usize) {
        self.lock().unassigned_inspections = n;
    }

    /// Makes every later start publish on the wildcard address, as a misconfigured engine
    /// would.
    pub fn publish_on_wildcard(&self, on: bool) {
        self.lock().publish_wildcard = on;
    }

    /// Makes later containers' memory limits come without a swap limit, as an engine that
    /// leaves swap unset does: the mutant the trait cannot express (it has no swap setting).
    pub fn swap_unlimited(&self, on: bool) {
        self.lock().swap_unlimited = on;
    }

    /// Makes later starts publish ports with no daemon behind them: the daemons never become
    /// ready, as when a bundle's daemons fail to start.
    pub fn daemons_never_ready(&self, on: bool) {
        self.lock().daemons_silent = on;
    }

    /// Sets what [`ContainerRuntime::port_forwarding`] reports and how later starts publish a
    /// port with no daemon behind it. `Proxied` (the default) accepts connections there and
    /// closes them at once, as Docker's userland proxy does; `Direct` refuses them, as a
    /// kernel-forwarded port does.
    ///
    /// A daemon listens behind a published port when the image's catalog names a daemon on
    /// that port and the container's `BOTTLE_DAEMONS` lists it; an image without a catalog, or
    /// a container without `BOTTLE_DAEMONS`, has a daemon behind every published port.
    pub fn set_port_forwarding(&self, forwarding: PortForwarding) {
        self.lock().forwarding = forwarding;
    }

    /// Makes later calls of `op` (`CreateNetwork`, `CreateContainer` or `StartContainer`) wait,
    /// before they take effect, until [`InMemoryRuntime::release`]: a slow engine, to watch
    /// what launches (and others) do meanwhile.
    pub fn hold(&self, op: Op) {
        self.lock()
            .gates
            .insert(op, (Arc::new(tokio::sync::Semaphore::new(0)), 0));
    }

    /// How many calls of `op` reached the gate since [`InMemoryRuntime::hold`].
    pub fn held(&self, op: Op) -> usize {
        self.lock().gates.get(&op).map_or(0, |(_, n)| *n)
    }

    /// Makes later calls of `op` (`CreateNetwork` or `CreateContainer`) take effect and then
    /// wait, before they answer, until [`InMemoryRuntime::release`]: an engine that acted but
    /// whose answer is not back yet.
    pub fn hold_answer(&self, op: Op) {
        self.lock()
            .answer_gates
            .insert(op, (Arc::new(tokio::sync::Semaphore::new(0)), 0));
    }

    /// How many calls of `op` took effect and wait to answer since
    /// [`InMemoryRuntime::hold_answer`].
    pub fn held_answers(&self, op: Op) -> usize {
        self.lock().answer_gates.get(&op).map_or(0, |(_, n)| *n)
    }

    /// Lets every held call (or answer) of `op`, and every later one, proceed.
    pub fn release(&self, op: Op) {
        let mut guard = self.lock();
        let s: &mut State = &mut guard;
        for gates in [&mut s.gates, &mut s.answer_gates] {
            if let Some((gate, _)) = gates.remove(&op) {
                gate.close();
            }
        }
    }

    /// Waits at the gate of `op` while it is held.
    async fn pass(&self, op: Op) {
        self.wait_at(op, false).await;
    }

    /// Waits at the answer gate of `op` while it is held.
    async fn answer(&self, op: Op) {
        self.wait_at(op, true).await;
    }

    async fn wait_at(&self, op: Op, answer: bool) {
        let gate = {
            let mut s = self.lock();
            let gates = if answer {
                &mut s.answer_gates
            } else {
                &mut s.gates
            };
            gates.get_mut(&op).map(|(gate, n)| {
                *n += 1;
                gate.clone()
            })
        };
        if let Some(gate) = gate {
            // Closed when released.
            let _ = gate.acquire().await;
        }
    }

    /// Stops the daemon behind `container_port` of a running container (its port stops
    /// answering), as when a daemon crashes.
    pub fn kill_daemon(&self, container: &str, container_port: u16) {
        let mut s = self.lock();
        if let Some(c) = s.containers.get_mut(container) {
            if let Some((task, _)) = c.listeners.get(&container_port) {
                task.abort();
            }
        }
    }

    /// Stops a container as if its PID 1 exited.
    pub fn stop_container(&self, name: &str) {
        let mut s = self.lock();
        if let Some(c) = s.containers.get_mut(name) {
            c.stop();
            c.state = ContainerState::Exited;
        }
    }

    /// How many calls of `op` were made.
    pub fn calls(&self, op: Op) -> usize {
        self.lock().calls.get(&op).copied().unwrap_or(0)
    }

    /// How many calls changed the engine's state.
    pub fn mutating_calls(&self) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|(op, _)| op.mutates())
            .map(|(_, n)| n)
            .sum()
    }

    /// How many calls of any kind were made.
    pub fn total_calls(&self) -> usize {
        self.lock().calls.values().sum()
    }

    /// Whether the engine has no networks and no containers.
    pub fn is_empty(&self) -> bool {
        let s = self.lock();
        s.networks.is_empty() && s.containers.is_empty()
    }

    /// Names of every network and container, for assertions.
    pub fn object_names(&self) -> Vec<String> {
        let s = self.lock();
        s.networks
            .keys()
            .map(|n| format!("network {n}"))
            .chain(s.containers.keys().map(|c| format!("container {c}")))
            .collect()
    }

    /// The environment a container was created with, as `KEY=VALUE` (as an engine's inspect
    /// would show it).
    pub fn container_env(&self, name: &str) -> Option<Vec<String>> {
        let s = self.lock();
        s.containers
            .get(name)
            .map(|c| c.spec.env.iter().map(|e| e.to_engine_string()).collect())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts the call and returns the injected fault for it, if any.
    fn enter(&self, op: Op) -> Result<std::sync::MutexGuard<'_, State>> {
        let mut s = self.lock();
        let n = s.calls.entry(op).or_insert(0);
        *n += 1;
        let n = *n;
        if let Some(i) = s.faults.iter().position(|f| f.op == op && f.nth == n) {
            let fault = s.faults.remove(i);
            return Err((fault.make)());
        }
        Ok(s)
    }
}

impl State {
    fn id(&mut self) -> String {
        self.next_id += 1;
        format!("{:012x}", self.next_id)
    }
}

/// The in-memory engine's own error, kept as the source of every error it returns, as an SDK's
/// error is by a real adapter.
#[derive(Debug)]
pub struct EngineMessage(pub String);

impl std::fmt::Display for EngineMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EngineMessage {}

fn engine_error(op: &str, target: &str, message: impl Into<String>) -> RuntimeError {
    RuntimeError::engine("memory", op, target, EngineMessage(message.into()))
}

fn missing(kind: ObjectKind, name: &str) -> RuntimeError {
    RuntimeError::NotFound {
        kind,
        name: name.into(),
        source: Some(Box::new(EngineMessage(format!("no such {kind}: {name}")))),
    }
}

fn exists(kind: ObjectKind, name: &str) -> RuntimeError {
    RuntimeError::AlreadyExists {
        kind,
        name: name.into(),
        source: Some(Box::new(EngineMessage(format!(
            "{kind} name {name} is in use"
        )))),
    }
}

/// The daemons of the container, by container port, when the image's catalog and the
/// container's `BOTTLE_DAEMONS` say; `None` when every published port has a daemon behind it.
fn served_ports(spec: &ContainerSpec, image: Option<&ImageInfo>) -> Option<BTreeMap<u16, String>> {
    let catalog = ImageProfile::from_image(&spec.image, image?)
        .ok()?
        .catalog?;
    let names = spec
        .env
        .iter()
        .find(|e| e.key == crate::catalog::DAEMONS_ENV)?
        .value
        .expose()
        .to_string();
    Some(
        names
            .split(',')
            .filter_map(|n| catalog.get(n.trim()))
            .map(|d| (d.port, d.name.clone()))
            .collect(),
    )
}

/// What answers behind a published port.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Behind {
    /// A daemon that accepts connections and holds them open.
    Daemon,
    /// The `selfcheck` daemon: each connection gets this report and is closed.
    Report(String),
    /// Nothing listens in the container.
    Nothing,
}

/// What the reference image's `selfcheck` daemon would report in a container made from `spec`
/// by an engine that honours every setting (see [`crate::selfcheck`]).
pub fn selfcheck_report(spec: &ContainerSpec, image_user: &str) -> Report {
    let sec = &spec.security;
    let user = sec.user.as_deref().unwrap_or(image_user);
    let (uid, gid) = selfcheck::parse_user(user).unwrap_or((0, 0));
    let added = selfcheck::capability_set(sec.cap_add.iter().map(String::as_str));
    let cap_bounding = if sec.drop_all_capabilities {
        added
    } else {
        selfcheck::capability_set(selfcheck::ENGINE_DEFAULT_CAPABILITIES) | added
    };
    Report {
        uid,
        gid,
        cap_effective: if uid == 0 { cap_bounding } else { 0 },
        cap_bounding,
        no_new_privs: sec.no_new_privileges,
        root_read_only: sec.read_only_rootfs,
        tmpfs: sec
            .tmpfs
            .iter()
            .map(|p| (p.clone(), TMPFS_OPTIONS.map(String::from).to_vec()))
            .collect(),
        cgroup: "memory".into(),
        memory_limit: spec.limits.memory_bytes,
        memory_swap: spec.limits.memory_bytes.map(|_| 0),
        pids_limit: spec.limits.pids.and_then(|p| u64::try_from(p).ok()),
        env: spec
            .env
            .iter()
            .map(|e| (e.key.clone(), selfcheck::value_hash(e.value.expose())))
            .collect(),
    }
}

/// The options of every tmpfs the in-memory engine mounts.
const TMPFS_OPTIONS: [&str; 4] = ["rw", "nosuid", "nodev", "noexec"];

/// Publishes one port on `addr` (port 0: a free one) with `behind` behind it; with nothing
/// behind it, what `forwarding` does. Returns the task that owns the socket and the host port.
fn publish_port(
    addr: SocketAddr,
    behind: Behind,
    forwarding: PortForwarding,
) -> std::io::Result<(JoinHandle<()>, u16)> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(addr)?;
    let port = socket.local_addr()?.port();
    let task = match behind {
        Behind::Daemon => serve(socket.listen(64)?, false),
        Behind::Report(report) => answer(socket.listen(64)?, report),
        Behind::Nothing if forwarding == PortForwarding::Proxied => serve(socket.listen(64)?, true),
        // Bound, never listening: the port is taken and connections are refused.
        Behind::Nothing => tokio::spawn(async move {
            let _held = socket;
            std::future::pending::<()>().await;
        }),
    };
    Ok((task, port))
}

/// Accepts connections on `listener` and holds each open until the client closes it, as a
/// daemon waiting for a request does.
/// With `silent`, each connection is closed at once instead.
fn serve(listener: tokio::net::TcpListener, silent: bool) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut held = tokio::task::JoinSet::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            if silent {
                continue;
            }
            held.spawn(async move {
                let mut buf = [0u8; 512];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    })
}

/// Answers each connection on `listener` with `text` and closes it.
fn answer(listener: tokio::net::TcpListener, text: String) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.write_all(text.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    })
}

#[async_trait]
impl ContainerRuntime for InMemoryRuntime {
    fn name(&self) -> &str {
        "memory"
    }

    fn port_forwarding(&self) -> PortForwarding {
        self.lock().forwarding
    }

    async fn info(&self) -> Result<EngineInfo> {
        drop(self.enter(Op::Info)?);
        Ok(EngineInfo {
            engine: "memory".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            api_version: "1".into(),
            endpoint: "in-process".into(),
        })
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<NetworkInfo> {
        self.pass(Op::CreateNetwork).await;
        let info = {
            let mut s = self.enter(Op::CreateNetwork)?;
            if s.networks.contains_key(&spec.name) {
                return Err(exists(ObjectKind::Network, &spec.name));
            }
            if !spec.subnet.contains(&spec.gateway)
                || spec.gateway == spec.subnet.network()
                || spec.gateway == spec.subnet.broadcast()
            {
                return Err(engine_error(
                    "creating network",
                    &spec.name,
                    format!("gateway {} is not a host of {}", spec.gateway, spec.subnet),
                ));
            }
            let overlap = s.networks.values().any(|n| {
                n.subnet.contains(&spec.subnet.network())
                    || spec.subnet.contains(&n.subnet.network())
            });
            if overlap {
                return Err(RuntimeError::SubnetConflict {
                    subnet: spec.subnet,
                    source: Some(Box::new(EngineMessage(format!(
                        "subnet {} overlaps an existing network",
                        spec.subnet
                    )))),
                });
            }
            let id = s.id();
            s.networks.insert(
                spec.name.clone(),
                MemNetwork {
                    id: id.clone(),
                    subnet: spec.subnet,
                    labels: spec.labels.clone(),
                },
            );
            NetworkInfo {
                name: spec.name.clone(),
                id,
                subnets: vec![spec.subnet],
                labels: spec.labels.clone(),
            }
        };
        self.answer(Op::CreateNetwork).await;
        Ok(info)
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        let mut s = self.enter(Op::RemoveNetwork)?;
        if s.containers.values().any(|c| c.spec.network == name) {
            return Err(engine_error(
                "removing network",
                name,
                "network has active endpoints",
            ));
        }
        s.networks.remove(name);
        Ok(())
    }

    async fn list_networks(&self, selector: &LabelSelector) -> Result<Vec<NetworkInfo>> {
        let s = self.enter(Op::ListNetworks)?;
        Ok(s.networks
            .iter()
            .filter(|(_, n)| selector.matches(&n.labels))
            .map(|(name, n)| NetworkInfo {
                name: name.clone(),
                id: n.id.clone(),
                subnets: vec![n.subnet],
                labels: n.labels.clone(),
            })
            .collect())
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<()> {
        self.pass(Op::CreateContainer).await;
        {
            let mut s = self.enter(Op::CreateContainer)?;
            if s.containers.contains_key(&spec.name) {
                return Err(exists(ObjectKind::Container, &spec.name));
            }
            if !s.images.contains_key(&spec.image) {
                return Err(missing(ObjectKind::Image, &spec.image));
            }
            let network = s
                .networks
                .get(&spec.network)
                .ok_or_else(|| missing(ObjectKind::Network, &spec.network))?;
            let ip = spec.ipv4;
            let host_of_subnet = network.subnet.contains(&ip)
                && ip != network.subnet.network()
                && ip != network.subnet.broadcast()
                && ip != Ipv4Addr::from(u32::from(network.subnet.network()) + 1);
            if !host_of_subnet {
                return Err(engine_error(
                    "creating container",
                    &spec.name,
                    format!(
                        "address {ip} is not a free host address of {}",
                        network.subnet
                    ),
                ));
            }
            let ip_taken = s
                .containers
                .values()
                .any(|c| c.spec.network == spec.network && c.spec.ipv4 == ip);
            if ip_taken {
                return Err(engine_error(
                    "creating container",
                    &spec.name,
                    format!("address {ip} is already in use"),
                ));
            }
            let mut ports = BTreeSet::new();
            if let Some(dup) = spec
                .publish
                .iter()
                .find(|p| !ports.insert(p.container_port))
            {
                return Err(engine_error(
                    "creating container",
                    &spec.name,
                    format!("port {} is published twice", dup.container_port),
                ));
            }
            let id = s.id();
            s.containers.insert(
                spec.name.clone(),
                MemContainer {
                    id,
                    spec: spec.clone(),
                    state: ContainerState::Created,
                    listeners: BTreeMap::new(),
                    created: SystemTime::now(),
                    log: Vec::new(),
                },
            );
        }
        self.answer(Op::CreateContainer).await;
        Ok(())
    }

    async fn start_container(&self, name: &str) -> Result<()> {
        self.pass(Op::StartContainer).await;
        let forwarding;
        let publish = {
            let s = self.enter(Op::StartContainer)?;
            let c = s
                .containers
                .get(name)
                .ok_or_else(|| missing(ObjectKind::Container, name))?;
            if c.state == ContainerState::Running {
                return Ok(());
            }
            let wildcard = s.publish_wildcard;
            forwarding = s.forwarding;
            let image = s.images.get(&c.spec.image);
            let served = served_ports(&c.spec, image);
            let mut report = selfcheck_report(&c.spec, image.map_or("", |i| i.user.as_str()));
            if s.swap_unlimited {
                report.memory_swap = None;
            }
            c.spec
                .publish
                .iter()
                .map(|p| {
                    let ip = if wildcard {
                        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                    } else {
                        IpAddr::V4(p.host_ip)
                    };
                    let behind = match served.as_ref().map(|s| s.get(&p.container_port)) {
                        _ if s.daemons_silent => Behind::Nothing,
                        None => Behind::Daemon,
                        Some(None) => Behind::Nothing,
                        Some(Some(name)) if name == selfcheck::DAEMON => Behind::Report(
                            serde_json::to_string(&report).expect("a report serializes"),
                        ),
                        Some(Some(_)) => Behind::Daemon,
                    };
                    (p.container_port, SocketAddr::new(ip, 0), behind)
                })
                .collect::<Vec<_>>()
        };
        let mut listeners = BTreeMap::new();
        for (container_port, addr, behind) in publish {
            let published = publish_port(addr, behind, forwarding)
                .map_err(|e| RuntimeError::engine("memory", "publishing a port of", name, e))?;
            listeners.insert(container_port, published);
        }
        let mut s = self.lock();
        let Some(c) = s.containers.get_mut(name) else {
            listeners.values().for_each(|(t, _)| t.abort());
            return Err(missing(ObjectKind::Container, name));
        };
        c.listeners = listeners;
        c.state = ContainerState::Running;
        let daemons = c
            .spec
            .env
            .iter()
            .find(|e| e.key == crate::catalog::DAEMONS_ENV)
            .map(|e| e.value.expose().to_string())
            .unwrap_or_default();
        c.log.push(format!("[init] starting daemons: {daemons}"));
        Ok(())
    }

    async fn inspect_container(&self, name: &str) -> Result<ContainerInfo> {
        let mut s = self.enter(Op::InspectContainer)?;
        let hide_ports = s.unassigned_inspections > 0
            && s.containers
                .get(name)
                .is_some_and(|c| c.state == ContainerState::Running);
        if hide_ports {
            s.unassigned_inspections -= 1;
        }
        let wildcard = s.publish_wildcard;
        let c = s
            .containers
            .get(name)
            .ok_or_else(|| missing(ObjectKind::Container, name))?;
        Ok(info_of(name, c, hide_ports, wildcard))
    }

    async fn remove_container(&self, name: &str) -> Result<()> {
        let mut s = self.enter(Op::RemoveContainer)?;
        if let Some(mut c) = s.containers.remove(name) {
            c.stop();
        }
        Ok(())
    }

    async fn list_containers(&self, selector: &LabelSelector) -> Result<Vec<ContainerInfo>> {
        let s = self.enter(Op::ListContainers)?;
        Ok(s.containers
            .iter()
            .filter(|(_, c)| selector.matches(&c.spec.labels))
            .map(|(name, c)| info_of(name, c, false, s.publish_wildcard))
            .collect())
    }

    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>> {
        let s = self.enter(Op::Image)?;
        Ok(s.images.get(reference).cloned())
    }

    async fn logs(
        &self,
        name: &str,
        options: LogOptions,
        sink: &mut (dyn FnMut(String) -> bool + Send),
    ) -> Result<()> {
        let lines = {
            let s = self.enter(Op::Logs)?;
            let c = s
                .containers
                .get(name)
                .ok_or_else(|| missing(ObjectKind::Container, name))?;
            let skip = options.tail.map_or(0, |t| c.log.len().saturating_sub(t));
            c.log[skip..].to_vec()
        };
        for line in lines {
            if !sink(line) {
                break;
            }
        }
        Ok(())
    }
}

fn info_of(name: &str, c: &MemContainer, hide_ports: bool, wildcard: bool) -> ContainerInfo {
    let ports = c
        .spec
        .publish
        .iter()
        .map(|p| PortBinding {
            container_port: p.container_port,
            host_ip: if wildcard {
                None
            } else {
                Some(IpAddr::V4(p.host_ip))
            },
            host_port: c
                .listeners
                .get(&p.container_port)
                .map(|(_, hp)| *hp)
                .filter(|_| !hide_ports),
        })
        .collect();
    ContainerInfo {
        name: name.to_string(),
        id: c.id.clone(),
        image: c.spec.image.clone(),
        state: c.state.clone(),
        health: None,
        labels: c.spec.labels.clone(),
        networks: BTreeMap::from([(c.spec.network.clone(), c.spec.ipv4)]),
        ports,
        created: Some(c.created),
    }
}
