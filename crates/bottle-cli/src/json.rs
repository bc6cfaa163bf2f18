//! The reports of `--output json`: one type per shape, owned here so that a change in
//! `bottle_core` cannot rename a field of the CLI's output by accident. Each type converts from
//! the core's value; `docs/OUTPUT.md` documents every field, its type and its stability, and
//! `tests/snapshots.rs` pins each shape.
//!
//! The types also deserialize, so scripts written in Rust (the benchmark, the tests) read the
//! CLI's output through them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use bottle_core::lifecycle::Removed as CoreRemoved;
use bottle_core::plan::PlannedEnv as CorePlannedEnv;
use bottle_core::{AgentEndpoints, BottleStatus, BundlePlan, Facing, Health, When};
use serde::{Deserialize, Serialize};

/// `up` and `env`: the agent's endpoints and where the bottle lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    pub slug: String,
    /// `docker` or `podman`.
    pub runtime: String,
    /// The resource-name prefix.
    pub prefix: String,
    /// The address every agent-facing port is published on.
    pub loopback: String,
    /// The bottle's subnet (CIDR); `null` in `env` output when the engine no longer reports it.
    pub subnet: Option<String>,
    pub network: Option<String>,
    pub container: Option<String>,
    /// The agent's variables.
    pub env: BTreeMap<String, String>,
    /// The agent's network allowlist.
    pub allow_cidrs: Vec<String>,
    pub daemons: Vec<Daemon>,
}

/// One agent-facing daemon of [`Endpoints`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Daemon {
    pub daemon: String,
    pub container_port: u16,
    pub host_port: u16,
    pub url: String,
}

impl Endpoints {
    /// The report of `endpoints`, without the network's and bundle's names (the caller knows
    /// them or asks the engine).
    pub fn new(endpoints: &AgentEndpoints, runtime: &str, prefix: &str) -> Self {
        Endpoints {
            slug: endpoints.slug.clone(),
            runtime: runtime.into(),
            prefix: prefix.into(),
            loopback: endpoints.loopback.to_string(),
            subnet: None,
            network: None,
            container: None,
            env: endpoints.env.clone(),
            allow_cidrs: endpoints.allow_cidrs.clone(),
            daemons: endpoints
                .daemons
                .iter()
                .map(|d| Daemon {
                    daemon: d.daemon.clone(),
                    container_port: d.container_port,
                    host_port: d.host_port,
                    url: d.url.clone(),
                })
                .collect(),
        }
    }
}

/// One bottle of `ps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bottle {
    pub slug: String,
    /// `running`, `exited`, ...; `null` when the bundle container is missing.
    pub state: Option<String>,
    /// `starting`, `healthy`, `unhealthy`; `null` when the engine reports none.
    pub health: Option<String>,
    pub loopback: Option<String>,
    pub subnet: Option<String>,
    pub daemons: Vec<String>,
    pub network: Option<String>,
    pub container: Option<String>,
    /// Seconds since the Unix epoch when the bundle was created.
    pub created: Option<u64>,
    pub age_seconds: Option<u64>,
    /// Agent-facing daemons of a running bundle that do not accept connections (found by
    /// probing their published ports; empty otherwise).
    pub unreachable: Vec<String>,
    /// Network and bundle present, bundle running and not unhealthy, every agent-facing
    /// daemon answering.
    pub complete: bool,
}

impl Bottle {
    pub fn new(b: &BottleStatus, now: SystemTime) -> Self {
        Bottle {
            slug: b.slug.clone(),
            state: b.state.as_ref().map(ToString::to_string),
            health: b.health.map(|h| health_word(h).to_string()),
            loopback: b.loopback.map(|l| l.to_string()),
            subnet: b.subnet.clone(),
            daemons: b.daemons.clone(),
            network: b.network.clone(),
            container: b.container.clone(),
            created: b.created.and_then(|c| {
                c.duration_since(SystemTime::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_secs())
            }),
            age_seconds: age_seconds(b.created, now),
            unreachable: b.unreachable.clone(),
            complete: b.is_complete(),
        }
    }
}

/// Seconds from `created` to `now` (0 when `created` is in the future).
pub fn age_seconds(created: Option<SystemTime>, now: SystemTime) -> Option<u64> {
    created.map(|c| now.duration_since(c).map_or(0, |d| d.as_secs()))
}

/// The engine's health word.
pub fn health_word(h: Health) -> &'static str {
    match h {
        Health::Starting => "starting",
        Health::Healthy => "healthy",
        Health::Unhealthy => "unhealthy",
    }
}

/// An object `down` or `gc` removed (`gc --dry-run`: would remove).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    /// `container` or `network`.
    pub kind: String,
    pub name: String,
    pub slug: String,
    pub reason: String,
}

impl From<&CoreRemoved> for Removed {
    fn from(r: &CoreRemoved) -> Self {
        Removed {
            kind: r.kind.to_string(),
            name: r.name.clone(),
            slug: r.slug.clone(),
            reason: r.reason.to_string(),
        }
    }
}

/// `plan`: what `up` would create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub slug: String,
    pub image: String,
    pub network_name: String,
    pub container_name: String,
    /// CIDR.
    pub subnet: String,
    pub gateway: String,
    pub bundle_ip: String,
    pub loopback: String,
    pub daemons: Vec<PlannedDaemon>,
    pub env: Vec<PlannedEnv>,
    pub mounts: Vec<PlannedMount>,
    pub publish: Vec<PlannedPublish>,
    pub network_labels: BTreeMap<String, String>,
    pub container_labels: BTreeMap<String, String>,
    pub limits: PlannedLimits,
}

/// A daemon of [`Plan`], as the image's catalog declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedDaemon {
    pub name: String,
    pub port: u16,
    /// `agent` or `internal`.
    pub facing: String,
    pub scheme: String,
    /// Absent when the daemon's URL has no path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Absent when the daemon fills no agent variable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vars: Vec<String>,
    /// `always`, `git-upstreams`, `supervise`, `requested` or `services`.
    pub when: String,
}

/// An environment entry of the bundle: a value, or a key whose value the launcher's
/// environment gives when the bundle is created (never part of a plan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum PlannedEnv {
    Value { key: String, value: String },
    Inherit { key: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedMount {
    pub host_path: PathBuf,
    pub container_path: PathBuf,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedPublish {
    pub container_port: u16,
    pub host_ip: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedLimits {
    pub memory_bytes: Option<u64>,
    pub pids: Option<i64>,
}

impl From<&BundlePlan> for Plan {
    fn from(p: &BundlePlan) -> Self {
        Plan {
            slug: p.slug.clone(),
            image: p.image.clone(),
            network_name: p.network_name.clone(),
            container_name: p.container_name.clone(),
            subnet: p.subnet.to_string(),
            gateway: p.gateway.to_string(),
            bundle_ip: p.bundle_ip.to_string(),
            loopback: p.loopback.to_string(),
            daemons: p
                .daemons
                .iter()
                .map(|d| PlannedDaemon {
                    name: d.name.clone(),
                    port: d.port,
                    facing: match d.facing {
                        Facing::Agent => "agent",
                        Facing::Internal => "internal",
                    }
                    .into(),
                    scheme: d.scheme.clone(),
                    path: d.path.clone(),
                    vars: d.vars.clone(),
                    when: match d.when {
                        When::Always => "always",
                        When::GitUpstreams => "git-upstreams",
                        When::Supervise => "supervise",
                        When::Requested => "requested",
                        When::Services => "services",
                    }
                    .into(),
                })
                .collect(),
            env: p
                .env
                .iter()
                .map(|e| match e {
                    CorePlannedEnv::Value { key, value } => PlannedEnv::Value {
                        key: key.clone(),
                        value: value.clone(),
                    },
                    CorePlannedEnv::Inherit { key } => PlannedEnv::Inherit { key: key.clone() },
                })
                .collect(),
            mounts: p
                .mounts
                .iter()
                .map(|m| PlannedMount {
                    host_path: m.host_path.clone(),
                    container_path: m.container_path.clone(),
                    read_only: m.read_only,
                })
                .collect(),
            publish: p
                .publish
                .iter()
                .map(|p| PlannedPublish {
                    container_port: p.container_port,
                    host_ip: p.host_ip.to_string(),
                })
                .collect(),
            network_labels: p.network_labels.clone(),
            container_labels: p.container_labels.clone(),
            limits: PlannedLimits {
                memory_bytes: p.limits.memory_bytes,
                pids: p.limits.pids,
            },
        }
    }
}

/// `image load`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageLoaded {
    /// `docker` or `podman`.
    pub runtime: String,
    pub archive: PathBuf,
    /// The names of the images loaded.
    pub images: Vec<String>,
}

/// `doctor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Doctor {
    /// The engine commands would use (with `--runtime`, that one), if it answers.
    pub selected: Option<String>,
    pub engines: Vec<EngineReport>,
}

/// One engine's findings in [`Doctor`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineReport {
    pub engine: String,
    /// Whether the engine answered.
    pub answers: bool,
    pub version: Option<String>,
    pub api_version: Option<String>,
    /// The socket or URL the adapter used (or tried).
    pub endpoint: Option<String>,
    /// How the endpoint was chosen (`--context ci`, `DOCKER_HOST`, `default socket`, ...);
    /// `null` where the adapter does not say.
    pub chosen_by: Option<String>,
    /// `"local"` (a socket of this host), `"this-host"` (tcp:// or ssh:// to an address of this
    /// host), `"remote"` (another host: refused by every other command); `null` where unknown.
    pub locality: Option<String>,
    /// Whether the engine is on another host; `null` where unknown.
    pub remote: Option<bool>,
    /// Whether the engine runs rootless; `null` where unknown.
    pub rootless: Option<bool>,
    /// Whether the engine applies a bundle's memory and pids limits (`false`: rootless Podman
    /// on a cgroup v1 host, where `up` refuses bundles); `null` where not asked (Docker).
    pub applies_limits: Option<bool>,
    /// How bottles are published on this host's loopback: `"per-bottle"` or `"shared"` (the
    /// pool's addresses do not exist here; see `bottle_core::loopback`); `null` when the
    /// setting is invalid (a problem says so).
    pub loopback_mode: Option<String>,
    /// Why that mode: what was tested, or who said so.
    pub loopback_reason: Option<String>,
    /// Whether the reference image is present; `null` when the engine does not answer.
    pub image_present: Option<bool>,
    pub problems: Vec<Problem>,
}

/// A problem `doctor` found, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub problem: String,
    pub hint: String,
}

/// One line of `logs` (JSON Lines: one object per line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub line: String,
}
