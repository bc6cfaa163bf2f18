//! The planner: spec + catalog + what is in use -> `BundlePlan`. Pure: no IO, no clock, no
//! randomness, so the same inputs always give the same plan.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::allowlist::AllowRule;
use crate::catalog::{
    Catalog, DaemonDef, Facing, When, DAEMONS_ENV, EGRESS_ALLOW_ENV, GIT_UPSTREAMS_ENV,
    SECRET_KEYS_ENV,
};
use crate::error::{Error, Result};
use crate::labels;
use crate::runtime::{ImageInfo, Labels, Limits, Mount, PublishSpec, Security};
use crate::service::{PlannedService, SERVICES_ENV};
use crate::spec::{BottleSpec, EnvEntry, LoopbackChoice};

mod alloc;

pub(crate) use alloc::stable_hash;
pub use alloc::{allocate_loopback, allocate_subnet, first_choice_subnet};

/// Default subnet pool: a /16 in 10.0.0.0/8 clear of Docker's (172.17/16 and up, 192.168/16)
/// and Podman's (10.88/16, 10.89/16 and up) default pools.
pub const DEFAULT_SUBNET_POOL: &str = "10.213.0.0/16";
/// Default loopback pool: one address per bottle, away from 127.0.0.1.
pub const DEFAULT_LOOPBACK_POOL: &str = "127.77.0.0/16";
/// Default memory limit of a bundle.
pub const DEFAULT_MEMORY_BYTES: u64 = 128 * 1024 * 1024;
/// Default pids limit of a bundle.
pub const DEFAULT_PIDS: i64 = 256;

/// Host-wide allocation settings, the same for every bottle of one lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pools {
    /// Names are `<prefix>-bundle-<slug>` and `<prefix>-sidecars-<slug>`.
    pub prefix: String,
    /// Where /24 subnets come from, unless the spec names its own pool.
    pub subnet_pool: Ipv4Net,
    /// Where loopback addresses come from, unless the spec names its own choice.
    pub loopback: LoopbackChoice,
}

impl Default for Pools {
    fn default() -> Self {
        Pools {
            prefix: "bottle".into(),
            subnet_pool: DEFAULT_SUBNET_POOL.parse().expect("valid default pool"),
            loopback: LoopbackChoice::Pool(
                DEFAULT_LOOPBACK_POOL.parse().expect("valid default pool"),
            ),
        }
    }
}

/// What is taken on the engine: subnets of every network (ours or not), and loopback
/// addresses of every bottle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InUse {
    pub subnets: Vec<Ipv4Net>,
    pub loopbacks: BTreeSet<Ipv4Addr>,
}

/// What the image declares about itself in its labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageProfile {
    /// The catalog the image provides, when it declares one.
    pub catalog: Option<Catalog>,
    /// Capabilities its daemons need.
    pub cap_add: Vec<String>,
    /// Paths its daemons write to.
    pub tmpfs: Vec<String>,
}

impl ImageProfile {
    /// Reads the profile from an image's labels; a malformed catalog label is an error that
    /// names the image.
    pub fn from_image(image: &str, info: &ImageInfo) -> Result<Self> {
        let csv = |key| {
            info.labels
                .get(key)
                .map(|v: &String| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        let catalog = match info.labels.get(labels::CATALOG) {
            Some(json) => Some(Catalog::from_json(json).map_err(|e| {
                Error::from(crate::error::RuntimeError::Engine {
                    engine: "image".into(),
                    operation: "reading the catalog label of image".into(),
                    target: image.into(),
                    message: e.to_string(),
                    source: None,
                })
            })?),
            None => None,
        };
        Ok(ImageProfile {
            catalog,
            cap_add: csv(labels::IMAGE_CAP_ADD),
            tmpfs: csv(labels::IMAGE_TMPFS),
        })
    }
}

/// How one environment variable of the bundle gets its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum PlannedEnv {
    /// A value the plan may show.
    Value { key: String, value: String },
    /// Read from the launcher's environment when the bundle is created; never in the plan.
    Inherit { key: String },
}

/// Everything `up` will create, decided before anything is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundlePlan {
    pub slug: String,
    pub image: String,
    pub network_name: String,
    pub container_name: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub bundle_ip: Ipv4Addr,
    pub loopback: Ipv4Addr,
    /// The daemons the bundle runs, in catalog order.
    pub daemons: Vec<DaemonDef>,
    pub env: Vec<PlannedEnv>,
    pub mounts: Vec<Mount>,
    /// Agent-facing container ports, published on `loopback` with random host ports.
    pub publish: Vec<PublishSpec>,
    pub network_labels: Labels,
    pub container_labels: Labels,
    #[serde(skip)]
    pub security: Security,
    pub limits: Limits,
}

impl BundlePlan {
    /// The daemons whose ports are published for the agent.
    pub fn agent_facing(&self) -> impl Iterator<Item = &DaemonDef> {
        agent_facing(&self.daemons)
    }
}

/// The daemons of `daemons` whose ports are published for the agent, in their order.
pub fn agent_facing(daemons: &[DaemonDef]) -> impl Iterator<Item = &DaemonDef> {
    daemons.iter().filter(|d| d.facing == Facing::Agent)
}

/// `<prefix>-bundle-<slug>`.
pub fn network_name(prefix: &str, slug: &str) -> String {
    format!("{prefix}-bundle-{slug}")
}

/// `<prefix>-sidecars-<slug>`.
pub fn container_name(prefix: &str, slug: &str) -> String {
    format!("{prefix}-sidecars-{slug}")
}

/// The daemons a spec selects from a catalog, or the error naming what the image lacks.
pub fn select_daemons(spec: &BottleSpec, catalog: &Catalog, image: &str) -> Result<Vec<DaemonDef>> {
    let seed = Catalog::seed();
    let lacks = |when: When| {
        let daemon = seed
            .first_when(when)
            .map_or_else(|| format!("{when:?}"), |d| d.name.clone());
        Error::ImageLacksDaemon {
            image: image.to_string(),
            daemon,
            provided: catalog.names(),
        }
    };
    if !spec.git_upstreams.is_empty() && catalog.first_when(When::GitUpstreams).is_none() {
        return Err(lacks(When::GitUpstreams));
    }
    if spec.supervise && catalog.first_when(When::Supervise).is_none() {
        return Err(lacks(When::Supervise));
    }
    let services_template = catalog.first_when(When::Services);
    if !spec.services.is_empty() && services_template.is_none() {
        return Err(Error::ImageLacksDaemon {
            image: image.to_string(),
            daemon: "services".into(),
            provided: catalog.names(),
        });
    }
    spec.check_daemons(catalog)?;
    let mut daemons: Vec<DaemonDef> = catalog
        .daemons
        .iter()
        .filter(|d| match d.when {
            When::Always => true,
            When::GitUpstreams => !spec.git_upstreams.is_empty(),
            When::Supervise => spec.supervise,
            When::Requested => spec.daemons.contains(&d.name),
            When::Services => false,
        })
        .cloned()
        .collect();
    if let Some(template) = services_template {
        for (i, service) in spec.services.iter().enumerate() {
            let port = u16::try_from(usize::from(template.port) + i)
                .ok()
                .filter(|p| {
                    !catalog
                        .daemons
                        .iter()
                        .any(|d| d.port == *p && d.when != When::Services)
                })
                .ok_or_else(|| crate::spec::ValidationError::Other {
                    field: "services".into(),
                    reason: format!(
                        "service {} would listen on port {} + {i}, which another daemon of \
                         the image's catalog uses",
                        service.name, template.port
                    ),
                })?;
            let taken = daemons.iter().any(|d| d.vars.contains(&service.agent_env));
            if taken {
                return Err(crate::spec::ValidationError::Other {
                    field: format!("services[{i}].agent_env"),
                    reason: format!("{} is filled by a daemon of the bundle", service.agent_env),
                }
                .into());
            }
            daemons.push(DaemonDef {
                name: service.daemon(),
                port,
                facing: Facing::Agent,
                scheme: "http".into(),
                path: String::new(),
                vars: vec![service.agent_env.clone()],
                when: When::Services,
            });
        }
    }
    Ok(daemons)
}

/// The bundle's services as it runs them (ports from the planned daemons).
fn planned_services(spec: &BottleSpec, daemons: &[DaemonDef]) -> Vec<PlannedService> {
    spec.services
        .iter()
        .filter_map(|s| {
            let daemon = daemons.iter().find(|d| d.name == s.daemon())?;
            Some(PlannedService {
                name: s.name.clone(),
                port: daemon.port,
                upstream: s.upstream.clone(),
                inject: s.inject.clone(),
                paths: s.paths.clone(),
                ca_file: s.ca_path(),
                insecure_http: s.insecure_http,
            })
        })
        .collect()
}

/// Plans a bundle. `catalog` is the effective catalog (the image's, or the default).
pub fn plan(
    spec: &BottleSpec,
    image: &str,
    catalog: &Catalog,
    profile: &ImageProfile,
    pools: &Pools,
    in_use: &InUse,
) -> Result<BundlePlan> {
    let daemons = select_daemons(spec, catalog, image)?;
    let subnet_pool = spec.subnet_pool.unwrap_or(pools.subnet_pool);
    let subnet = allocate_subnet(&spec.slug, &subnet_pool, &in_use.subnets)?;
    let loopback = allocate_loopback(
        &spec.slug,
        spec.loopback.as_ref().unwrap_or(&pools.loopback),
        &in_use.loopbacks,
    )?;
    let host = |n: u32| Ipv4Addr::from(u32::from(subnet.network()) + n);
    let (gateway, bundle_ip) = (host(1), host(2));

    // The init starts the services template's one process for all `svc-` daemons.
    let template = catalog.first_when(When::Services).map(|d| d.name.as_str());
    let mut daemon_names: Vec<&str> = Vec::new();
    for d in &daemons {
        let name = match d.when {
            When::Services => template.unwrap_or(d.name.as_str()),
            _ => d.name.as_str(),
        };
        if !daemon_names.contains(&name) {
            daemon_names.push(name);
        }
    }
    let daemon_csv = daemon_names.join(",");
    let mut env = vec![PlannedEnv::Value {
        key: DAEMONS_ENV.into(),
        value: daemon_csv,
    }];
    if !spec.egress_allow.is_empty() {
        // Normalized through the same parser the proxy uses, so the bundle sees canonical rules.
        let rules: Vec<String> = spec
            .egress_allow
            .iter()
            .map(|p| p.parse::<AllowRule>().map(|r| r.to_string()))
            .collect::<Result<_, _>>()
            .map_err(crate::spec::ValidationError::from)?;
        env.push(PlannedEnv::Value {
            key: EGRESS_ALLOW_ENV.into(),
            value: rules.join(","),
        });
    }
    if !spec.git_upstreams.is_empty() {
        let planned: Vec<_> = spec.git_upstreams.iter().map(|u| u.planned()).collect();
        env.push(PlannedEnv::Value {
            key: GIT_UPSTREAMS_ENV.into(),
            value: serde_json::to_string(&planned).expect("git upstreams always serialize"),
        });
    }
    env.extend(spec.env.iter().map(|e| match e {
        EnvEntry::Value { key, value } => PlannedEnv::Value {
            key: key.clone(),
            value: value.clone(),
        },
        EnvEntry::Inherit { key } => PlannedEnv::Inherit { key: key.clone() },
    }));
    // A service's secrets and the git gate's tokens come into the bundle as bare keys too,
    // unless the bottle lists them: so they are among the bundle's secret keys.
    let secrets = spec
        .services
        .iter()
        .flat_map(|s| &s.inject)
        .map(|i| &i.secret);
    for secret in secrets.chain(spec.git_upstreams.iter().filter_map(|u| u.token.as_ref())) {
        let listed = env
            .iter()
            .any(|e| matches!(e, PlannedEnv::Inherit { key } if key == secret));
        if !listed {
            env.push(PlannedEnv::Inherit {
                key: secret.clone(),
            });
        }
    }
    if !spec.services.is_empty() {
        env.push(PlannedEnv::Value {
            key: SERVICES_ENV.into(),
            value: serde_json::to_string(&planned_services(spec, &daemons))
                .expect("services always serialize"),
        });
    }
    let secret_keys: Vec<&str> = env
        .iter()
        .filter_map(|e| match e {
            PlannedEnv::Inherit { key } => Some(key.as_str()),
            PlannedEnv::Value { .. } => None,
        })
        .collect();
    if !secret_keys.is_empty() {
        env.push(PlannedEnv::Value {
            key: SECRET_KEYS_ENV.into(),
            value: secret_keys.join(","),
        });
    }

    let publish = agent_facing(&daemons)
        .map(|d| PublishSpec {
            container_port: d.port,
            host_ip: loopback,
        })
        .collect();

    let network = labels::BottleLabels {
        prefix: pools.prefix.clone(),
        slug: spec.slug.clone(),
        role: labels::Role::Network,
        loopback: Some(loopback),
        subnet: Some(subnet.to_string()),
        daemons: Vec::new(),
        catalog: None,
    };
    let bundle = labels::BottleLabels {
        role: labels::Role::Bundle,
        daemons: daemon_names.iter().map(|d| d.to_string()).collect(),
        catalog: Some(
            Catalog {
                daemons: daemons.clone(),
            }
            .to_json(),
        ),
        ..network.clone()
    };
    let network_labels = network.encode();
    let container_labels = bundle.encode();

    let tmpfs = if profile.tmpfs.is_empty() {
        vec!["/tmp".to_string()]
    } else {
        profile.tmpfs.clone()
    };
    Ok(BundlePlan {
        slug: spec.slug.clone(),
        image: image.to_string(),
        network_name: network_name(&pools.prefix, &spec.slug),
        container_name: container_name(&pools.prefix, &spec.slug),
        subnet,
        gateway,
        bundle_ip,
        loopback,
        daemons,
        env,
        mounts: spec
            .mounts
            .iter()
            .cloned()
            .chain(spec.services.iter().filter_map(|svc| {
                Some(Mount {
                    host_path: svc.ca_file.as_ref()?.into(),
                    container_path: svc.ca_path()?.into(),
                    read_only: true,
                })
            }))
            .chain(spec.git_upstreams.iter().filter_map(|up| {
                Some(Mount {
                    host_path: up.ca_file.clone()?,
                    container_path: up.ca_path()?.into(),
                    read_only: true,
                })
            }))
            .collect(),
        publish,
        network_labels,
        container_labels,
        security: Security {
            no_new_privileges: true,
            drop_all_capabilities: true,
            cap_add: profile.cap_add.clone(),
            read_only_rootfs: true,
            tmpfs,
            user: None,
        },
        limits: Limits {
            memory_bytes: Some(spec.limits.memory_bytes.unwrap_or(DEFAULT_MEMORY_BYTES)),
            pids: Some(spec.limits.pids.unwrap_or(DEFAULT_PIDS)),
        },
    })
}

/// One agent-facing daemon's endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DaemonEndpoint {
    pub daemon: String,
    pub container_port: u16,
    pub host_port: u16,
    pub url: String,
}

/// What the agent is handed: its variables and its one-address allowlist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentEndpoints {
    pub slug: String,
    pub loopback: Ipv4Addr,
    /// `HTTPS_PROXY`, `HTTP_PROXY`, `GIT_GATE_URL`, `MCP_SUPERVISE_URL`, `NO_PROXY`, ... as
    /// the catalog says.
    pub env: BTreeMap<String, String>,
    /// The agent's network allowlist: exactly `<loopback>/32`.
    pub allow_cidrs: Vec<String>,
    pub daemons: Vec<DaemonEndpoint>,
}

/// Builds the agent's endpoints from the agent-facing daemons and their host ports.
///
/// `host_ports` maps container port to host port; a daemon without an entry is skipped.
pub fn agent_endpoints(
    slug: &str,
    loopback: Ipv4Addr,
    daemons: &[DaemonDef],
    host_ports: &BTreeMap<u16, u16>,
) -> AgentEndpoints {
    let mut env = BTreeMap::new();
    let mut endpoints = Vec::new();
    for d in agent_facing(daemons) {
        let Some(&host_port) = host_ports.get(&d.port) else {
            continue;
        };
        let url = format!("{}://{loopback}:{host_port}{}", d.scheme, d.path);
        for var in &d.vars {
            env.insert(var.clone(), url.clone());
        }
        endpoints.push(DaemonEndpoint {
            daemon: d.name.clone(),
            container_port: d.port,
            host_port,
            url,
        });
    }
    env.insert("NO_PROXY".into(), loopback.to_string());
    AgentEndpoints {
        slug: slug.to_string(),
        loopback,
        env,
        allow_cidrs: vec![format!("{loopback}/32")],
        daemons: endpoints,
    }
}
