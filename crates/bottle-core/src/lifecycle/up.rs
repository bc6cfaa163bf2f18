//! `up`: plan under the allocation lock, create the network and the bundle, wait for host ports
//! and readiness, and on any failure (or an interrupt) remove what was created, in reverse order.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use tracing::{debug, info, info_span, warn, Instrument};

use super::readiness::{agent_addresses, resolve_host_ports, Backoff};
use super::{in_use_of, Bottle, Lifecycle, Progress, Step};
use crate::alloc::{Pending, Reservation};
use crate::catalog::{Catalog, DaemonDef};
use crate::error::{Error, ErrorKind, Result, RuntimeError, Unusable};
use crate::plan::{self, BundlePlan, ImageProfile, PlannedEnv};
use crate::runtime::{
    ContainerSpec, ContainerState, EnvValue, EnvVar, LabelSelector, NetworkSpec, Secret,
};
use crate::spec::BottleSpec;

/// What `up` launches: the spec, and the image with its catalog and profile as the image check
/// found them.
#[derive(Clone, Copy)]
struct Launch<'a> {
    spec: &'a BottleSpec,
    image: &'a str,
    catalog: &'a Catalog,
    profile: &'a ImageProfile,
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

            let launch = Launch {
                spec,
                image: &image,
                catalog: &catalog,
                profile: &profile,
            };
            let mut created = Created::default();
            let result = tokio::select! {
                r = self.up_steps(&launch, progress, &mut created) => r,
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
        launch: &Launch<'_>,
        progress: &dyn Progress,
        created: &mut Created,
    ) -> Result<Bottle> {
        let slug = launch.spec.slug.as_str();
        progress.step(slug, &Step::Allocating);
        // Held until the bundle's ports are published: from then on the host itself shows the
        // loopback address as taken to launchers on other engines.
        let (plan, _reservation) = self
            .allocate_and_create_network(launch, progress, created)
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

        let facing = agent_addresses(&plan.daemons, plan.loopback, &host_ports);
        progress.step(
            slug,
            &Step::WaitingReady {
                daemons: facing.iter().map(|(d, _)| d.name.clone()).collect(),
            },
        );
        self.wait_ready(&plan, &facing).await?;
        let endpoints = plan::agent_endpoints(slug, plan.loopback, &plan.daemons, &host_ports);
        Ok(Bottle { plan, endpoints })
    }

    /// Plans under the allocation lock, reserves what was planned, and creates the network
    /// after releasing the lock (see the crate's `alloc` module); moves to the next subnet when
    /// the engine reports a conflict (a network made by something other than bottle). Returns
    /// the plan and its reservation.
    async fn allocate_and_create_network(
        &self,
        launch: &Launch<'_>,
        progress: &dyn Progress,
        created: &mut Created,
    ) -> Result<(BundlePlan, Reservation)> {
        let Launch {
            spec,
            image,
            catalog,
            profile,
        } = *launch;
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
                    reason: Unusable::StoppedAtStart {
                        container: plan.container_name.clone(),
                    },
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
        facing: &[(&DaemonDef, SocketAddr)],
    ) -> Result<()> {
        let timeouts = self.config.timeouts;
        let readiness = self.readiness();
        let deadline = Instant::now() + timeouts.readiness;
        let waits = facing.iter().map(|&(d, addr)| {
            async move {
                let mut backoff = Backoff::polling();
                let mut attempts = 0u32;
                let mut last_check = Instant::now();
                loop {
                    if readiness.probe(addr).await {
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
                    // Now and then, check that the bundle is still running: a bundle that exited
                    // will never become ready, so say so at once.
                    if last_check.elapsed() >= timeouts.bundle_check {
                        last_check = Instant::now();
                        let info = self.runtime.inspect_container(&plan.container_name).await?;
                        if matches!(info.state, ContainerState::Exited | ContainerState::Dead) {
                            return Err(Error::NotUsable {
                                slug: plan.slug.clone(),
                                reason: Unusable::ExitedWhileWaiting {
                                    container: plan.container_name.clone(),
                                    daemon: d.name.clone(),
                                },
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
}
