//! Queries: `list` (every bottle of a prefix), `status` (one bottle), `endpoints` (the agent's
//! view of a running bottle) and `logs` (one bundle's output), all read from the engine by
//! labels, never by name.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use super::readiness::{agent_addresses, agent_ports, resolve_host_ports};
use super::{BottleStatus, Lifecycle};
use crate::catalog::{Catalog, DaemonDef};
use crate::error::{Error, Result, Unusable};
use crate::labels::{self, BottleLabels, Role};
use crate::plan::{self, AgentEndpoints};
use crate::runtime::{ContainerInfo, ContainerState, LogOptions, NetworkInfo};

/// Why a bundle cannot hand out its agent-facing addresses.
enum NoAddresses {
    /// Its catalog label is missing or unreadable.
    NoCatalog(Box<Error>),
    /// The catalog is there, but the loopback label or a host port is not (or a port is
    /// published beyond loopback).
    Unpublished(Catalog, Box<Error>),
}

impl Lifecycle {
    /// Every bottle of this lifecycle's prefix on the engine, complete or not, sorted by slug.
    /// The agent-facing daemons of each running bundle are probed (concurrently), so a dead
    /// daemon shows even where the engine runs no health checks.
    pub async fn list(&self) -> Result<Vec<BottleStatus>> {
        self.statuses(None).await
    }

    /// One bottle, as [`Lifecycle::list`] would show it, found by its labels without listing
    /// the other bottles. [`Error::NotUp`] when the engine has nothing of it.
    pub async fn status(&self, slug: &str) -> Result<BottleStatus> {
        crate::spec::validate_slug(slug)?;
        self.statuses(Some(slug))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::NotUp {
                slug: slug.to_string(),
            })
    }

    /// Streams the output of the bottle's bundle to `sink` (see
    /// [`ContainerRuntime::logs`](crate::ContainerRuntime::logs)). Only a bundle of ours, found
    /// by labels, is read: never a stray container named like one.
    pub async fn logs(
        &self,
        slug: &str,
        options: LogOptions,
        sink: &mut (dyn FnMut(String) -> bool + Send),
    ) -> Result<()> {
        crate::spec::validate_slug(slug)?;
        let bundle = self.bundle_of(slug).await?;
        Ok(self.runtime.logs(&bundle.name, options, sink).await?)
    }

    /// The bottles of this prefix (of one slug when given), each running bundle probed.
    async fn statuses(&self, slug: Option<&str>) -> Result<Vec<BottleStatus>> {
        let selector = self.selector(slug);
        let (networks, containers) = tokio::try_join!(
            self.runtime.list_networks(&selector),
            self.runtime.list_containers(&selector),
        )?;
        let probes: Vec<(String, Vec<String>)> = futures_util::future::join_all(
            containers
                .iter()
                .filter(|c| c.state == ContainerState::Running)
                .filter_map(|c| Some((BottleLabels::decode(&c.labels)?, c)))
                .map(|(l, c)| async move { (l.slug, self.unreachable_daemons(c).await) }),
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

    /// The bundle container of `slug`, found by labels; [`Error::NotUp`] when there is none.
    async fn bundle_of(&self, slug: &str) -> Result<ContainerInfo> {
        let selector = self
            .selector(Some(slug))
            .eq(labels::ROLE, labels::ROLE_BUNDLE);
        let containers = self.runtime.list_containers(&selector).await?;
        containers.into_iter().next().ok_or_else(|| Error::NotUp {
            slug: slug.to_string(),
        })
    }

    /// The agent-facing daemons of a bundle that do not accept a connection on their published
    /// port. A bundle whose labels or ports cannot be read counts every daemon as unreachable.
    async fn unreachable_daemons(&self, c: &ContainerInfo) -> Vec<String> {
        match published(c) {
            Ok(p) => {
                let addresses = agent_addresses(&p.catalog.daemons, p.loopback, &p.ports);
                let unanswered = self.readiness().unanswered(&addresses).await;
                unanswered
                    .into_iter()
                    .map(|(d, _)| d.name.clone())
                    .collect()
            }
            Err(NoAddresses::NoCatalog(_)) => vec!["(no catalog label)".into()],
            Err(NoAddresses::Unpublished(catalog, _)) => plan::agent_facing(&catalog.daemons)
                .map(|d| d.name.clone())
                .collect(),
        }
    }

    /// The agent's endpoints of a running bottle, re-read from the engine. Refuses a bottle
    /// that is missing, stopped, unhealthy, or whose agent-facing daemon does not answer.
    pub async fn endpoints(&self, slug: &str) -> Result<AgentEndpoints> {
        crate::spec::validate_slug(slug)?;
        let listed = self.bundle_of(slug).await?;
        // Inspect for the freshest state and ports; the listing may be summarised.
        let c = self.runtime.inspect_container(&listed.name).await?;
        let not_usable = |reason: Unusable| Error::NotUsable {
            slug: slug.to_string(),
            reason,
        };
        if c.state != ContainerState::Running {
            return Err(not_usable(Unusable::NotRunning {
                container: c.name.clone(),
                state: c.state.clone(),
            }));
        }
        let Published {
            catalog,
            loopback,
            ports,
        } = match published(&c) {
            Ok(found) => found,
            Err(NoAddresses::NoCatalog(e) | NoAddresses::Unpublished(_, e)) => return Err(*e),
        };
        let addresses = agent_addresses(&catalog.daemons, loopback, &ports);
        let unanswered: Vec<(&DaemonDef, SocketAddr)> =
            self.readiness().unanswered(&addresses).await;
        if let Some((d, addr)) = unanswered.first() {
            return Err(not_usable(Unusable::NotAnswering {
                daemon: d.name.clone(),
                address: addr.to_string(),
            }));
        }
        Ok(plan::agent_endpoints(
            slug,
            loopback,
            &catalog.daemons,
            &ports,
        ))
    }
}

/// Where a bundle publishes its agent-facing daemons, read from its labels and ports.
struct Published {
    catalog: Catalog,
    loopback: Ipv4Addr,
    /// Container port -> host port of each agent-facing daemon.
    ports: BTreeMap<u16, u16>,
}

/// Where a bundle publishes its agent-facing daemons, or why that cannot be told.
fn published(c: &ContainerInfo) -> std::result::Result<Published, NoAddresses> {
    let labels = BottleLabels::decode(&c.labels);
    let missing = |label: &'static str| {
        Box::new(Error::NotUsable {
            slug: labels.as_ref().map(|l| l.slug.clone()).unwrap_or_default(),
            reason: Unusable::MissingLabel {
                container: c.name.clone(),
                label,
            },
        })
    };
    let catalog = match labels.as_ref().and_then(BottleLabels::catalog) {
        Some(Ok(catalog)) => catalog,
        Some(Err(e)) => return Err(NoAddresses::NoCatalog(Box::new(e.into()))),
        None => return Err(NoAddresses::NoCatalog(missing("catalog"))),
    };
    let Some(loopback) = labels.as_ref().and_then(|l| l.loopback) else {
        return Err(NoAddresses::Unpublished(catalog, missing("loopback")));
    };
    match resolve_host_ports(&c.name, loopback, &agent_ports(&catalog.daemons), &c.ports) {
        Ok(Some(ports)) => Ok(Published {
            catalog,
            loopback,
            ports,
        }),
        Ok(None) => {
            let e = Error::NotUsable {
                slug: labels.map(|l| l.slug).unwrap_or_default(),
                reason: Unusable::UnassignedPorts {
                    container: c.name.clone(),
                },
            };
            Err(NoAddresses::Unpublished(catalog, Box::new(e)))
        }
        Err(e) => Err(NoAddresses::Unpublished(catalog, Box::new(e))),
    }
}

/// The status entry of the bottle `labels` belong to, created on first sight.
fn entry<'a>(
    map: &'a mut BTreeMap<String, BottleStatus>,
    labels: &BottleLabels,
) -> &'a mut BottleStatus {
    let status = map
        .entry(labels.slug.clone())
        .or_insert_with(|| BottleStatus {
            slug: labels.slug.clone(),
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
    status.loopback = status.loopback.or(labels.loopback);
    if status.subnet.is_none() {
        status.subnet.clone_from(&labels.subnet);
    }
    status
}

/// Groups networks and containers by their slug label.
fn group(networks: Vec<NetworkInfo>, containers: Vec<ContainerInfo>) -> Vec<BottleStatus> {
    let mut by_slug: BTreeMap<String, BottleStatus> = BTreeMap::new();
    for n in networks {
        match BottleLabels::decode(&n.labels) {
            Some(l) if l.role == Role::Network => entry(&mut by_slug, &l).network = Some(n.name),
            _ => continue,
        }
    }
    for c in containers {
        let Some(l) = BottleLabels::decode(&c.labels).filter(|l| l.role == Role::Bundle) else {
            continue;
        };
        let status = entry(&mut by_slug, &l);
        status.daemons = l.daemons;
        status.state = Some(c.state);
        status.health = c.health;
        status.created = c.created;
        status.container = Some(c.name);
    }
    by_slug.into_values().collect()
}
