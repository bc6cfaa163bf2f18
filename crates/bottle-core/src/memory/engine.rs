//! The in-memory engine's side of [`ContainerRuntime`]: each operation by the rules real
//! engines enforce, its published ports as real listeners, and what its `selfcheck` daemon
//! would report.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::SystemTime;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::error::{ObjectKind, RuntimeError, RuntimeResult as Result};
use crate::plan::ImageProfile;
use crate::runtime::{
    ContainerInfo, ContainerRuntime, ContainerSpec, ContainerState, EngineInfo, ImageInfo,
    LabelSelector, LogOptions, NetworkInfo, NetworkSpec, PortBinding, PortForwarding,
};
use crate::selfcheck::{self, Report};

use super::{InMemoryRuntime, MemContainer, MemNetwork, Op};

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
            .map(|p| {
                (
                    p.clone(),
                    crate::runtime::TMPFS_OPTIONS.map(String::from).to_vec(),
                )
            })
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
