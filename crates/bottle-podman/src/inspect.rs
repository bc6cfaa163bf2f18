//! Reading Podman's inspect answers into bottle's types: port bindings, state, health,
//! addresses, labels and image names.
//!
//! Port parsing is public so that its rules can be tested on recorded JSON, and reused by
//! callers that inspect containers themselves.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bottle_core::runtime::{ContainerInfo, ContainerState, Health, Labels, PortBinding};
use podman_api::models::InspectContainerData;
use serde_json::Value;

/// The port bindings in the JSON of Podman's `NetworkSettings.Ports`
/// (`{"9099/tcp": [{"HostIp": "127.0.0.9", "HostPort": "40123"}], "9100/tcp": null}`).
///
/// Defensive about every shape Podman produces: a `null` or missing entry is no binding; a port
/// may have several bindings; an empty `HostIp` (Podman's wildcard bind) is `host_ip: None`, as
/// is an address that does not parse, so the lifecycle refuses it rather than trusting it; an
/// empty, `0` or missing `HostPort` (not assigned yet) is `host_port: None`; `HostPort` may be a
/// string or a number. Keys that are not `PORT[/PROTO]` are skipped. The result is sorted by
/// container port, TCP bindings first.
pub fn port_bindings(ports: &Value) -> Vec<PortBinding> {
    let Some(map) = ports.as_object() else {
        return Vec::new();
    };
    let mut out: Vec<(u16, bool, PortBinding)> = Vec::new();
    for (key, entries) in map {
        let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let Ok(container_port) = port.trim().parse::<u16>() else {
            tracing::debug!(key, "skipping a port key that is not PORT/PROTO");
            continue;
        };
        let Some(entries) = entries.as_array() else {
            continue;
        };
        for entry in entries {
            let binding = PortBinding {
                container_port,
                host_ip: entry.get("HostIp").and_then(host_ip),
                host_port: entry.get("HostPort").and_then(host_port),
            };
            out.push((container_port, !proto.eq_ignore_ascii_case("tcp"), binding));
        }
    }
    out.sort_by(|a, b| {
        (a.0, a.1, a.2.host_ip, a.2.host_port).cmp(&(b.0, b.1, b.2.host_ip, b.2.host_port))
    });
    out.into_iter().map(|(_, _, b)| b).collect()
}

fn host_ip(v: &Value) -> Option<IpAddr> {
    let s = v.as_str()?.trim();
    let s = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s);
    s.parse().ok()
}

fn host_port(v: &Value) -> Option<u16> {
    let port = match v {
        Value::String(s) => s.trim().parse::<u16>().ok()?,
        Value::Number(n) => u16::try_from(n.as_u64()?).ok()?,
        _ => return None,
    };
    (port != 0).then_some(port)
}

/// The engine's health word; empty (no health check) or unknown is `None`.
pub fn health(status: &str) -> Option<Health> {
    match status.trim().to_ascii_lowercase().as_str() {
        "starting" => Some(Health::Starting),
        "healthy" => Some(Health::Healthy),
        "unhealthy" => Some(Health::Unhealthy),
        _ => None,
    }
}

/// An image name as the user gave it: Podman qualifies names that have no registry with
/// `localhost/` (a loaded `bottle-sidecars:latest` is `localhost/bottle-sidecars:latest`),
/// Docker does not; dropping the prefix makes names comparable across engines.
pub fn short_image_name(name: &str) -> &str {
    name.strip_prefix("localhost/").unwrap_or(name)
}

/// Labels from the engine's map, sorted.
pub(crate) fn labels(map: Option<std::collections::HashMap<String, String>>) -> Labels {
    map.unwrap_or_default().into_iter().collect()
}

/// A timestamp (seconds and nanoseconds since the epoch) as `SystemTime`; `None` before 1970.
pub(crate) fn system_time(secs: i64, nanos: u32) -> Option<SystemTime> {
    let secs = u64::try_from(secs).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// A container from libpod's inspect answer.
/// The label holding the container's pinned address: Podman reports a static address only once
/// the container runs, and the contract wants it from create on.
pub(crate) const PINNED_IPV4_LABEL: &str = "io.bottle.podman.ipv4";

pub(crate) fn container_info(d: InspectContainerData) -> ContainerInfo {
    let state = d.state.as_ref();
    let status = state.and_then(|s| s.status.as_deref()).unwrap_or("unknown");
    let health = state
        .and_then(|s| s.health.as_ref())
        .and_then(|h| h.status.as_deref())
        .and_then(health);
    let settings = d.network_settings.as_ref();
    let labels = labels(d.config.and_then(|c| c.labels));
    let pinned: Option<Ipv4Addr> = labels.get(PINNED_IPV4_LABEL).and_then(|ip| ip.parse().ok());
    let networks: BTreeMap<String, Ipv4Addr> = settings
        .and_then(|n| n.networks.as_ref())
        .map(|nets| {
            nets.iter()
                .filter_map(|(name, net)| {
                    let ip = net
                        .ip_address
                        .as_deref()
                        .and_then(|ip| ip.parse().ok())
                        .or(pinned)?;
                    Some((name.clone(), ip))
                })
                .collect()
        })
        .unwrap_or_default();
    let ports = settings
        .and_then(|n| n.ports.as_ref())
        .and_then(|p| serde_json::to_value(p).ok())
        .map(|v| port_bindings(&v))
        .unwrap_or_default();
    ContainerInfo {
        name: d
            .name
            .as_deref()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        id: d.id.clone().unwrap_or_default(),
        image: short_image_name(d.image_name.as_deref().unwrap_or_default()).to_string(),
        state: ContainerState::parse(status),
        health,
        labels,
        networks,
        ports,
        created: d
            .created
            .as_ref()
            .and_then(|t| system_time(t.timestamp(), t.timestamp_subsec_nanos())),
    }
}
