//! Mutants: runtimes that each break one promise of the trait's `# Contract`, to show that the
//! conformance suite notices. [`Mutant`] wraps any runtime (the in-memory engine, Docker,
//! Podman, a downstream adapter) and breaks the promise its [`Mutation`] names; [`MUTANTS`]
//! lists every mutation with the cases that must kill it, and [`assert_killed`] runs them.
//!
//! A mutation that no wrapper can express through the trait (unlimited swap: the trait has no
//! swap setting to get wrong) is an engine quirk of `InMemoryRuntime` instead
//! ([`InMemoryRuntime::swap_unlimited`](crate::InMemoryRuntime::swap_unlimited)).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::conformance::{Fixture, CASES};
use crate::error::{ErrorKind, ObjectKind, RuntimeError, RuntimeResult as Result};
use crate::runtime::{
    ContainerInfo, ContainerRuntime, ContainerSpec, ContainerState, EngineInfo, EnvValue,
    ImageInfo, LabelSelector, LogOptions, NetworkInfo, NetworkSpec, PortForwarding,
};

/// One broken promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// `Security::no_new_privileges` is ignored.
    IgnoreNoNewPrivileges,
    /// `Security::drop_all_capabilities` is ignored.
    IgnoreDropAllCapabilities,
    /// `Security::cap_add` is ignored.
    IgnoreCapAdd,
    /// `Security::read_only_rootfs` is ignored.
    IgnoreReadOnlyRootfs,
    /// `Security::tmpfs` is ignored.
    IgnoreTmpfs,
    /// `Security::user` is ignored.
    IgnoreUser,
    /// `Limits` are ignored.
    IgnoreLimits,
    /// Remove stops a running container gracefully (a 10 s wait) first.
    GracefulStopBeforeRemove,
    /// Secret env values are copied into labels.
    SecretsInLabels,
    /// Secret env values are quoted in the errors of a create.
    SecretsInErrors,
    /// Secret env values show up in `list_containers` output.
    SecretsInList,
    /// Errors lose their source.
    DropErrorSource,
    /// On a container name clash, the existing container is removed before `AlreadyExists`.
    ReplaceOnNameClash,
    /// Ports are published on every interface.
    PublishOnAllInterfaces,
    /// Ports are published on 127.0.0.1 instead of the requested address.
    PublishOnWrongAddress,
    /// The pinned address is not the one used.
    IgnorePinnedIp,
    /// A subnet conflict is reported as a generic engine error.
    SubnetConflictAsEngineError,
    /// A missing object is reported as a generic engine error.
    NotFoundAsEngineError,
    /// Removing a missing object fails with `NotFound`.
    RemoveMissingFails,
}

/// Every mutation a wrapper expresses, with the cases that kill it.
pub const MUTANTS: &[(Mutation, &[&str])] = &[
    (
        Mutation::IgnoreNoNewPrivileges,
        &["selfcheck_shows_every_security_setting"],
    ),
    (
        Mutation::IgnoreDropAllCapabilities,
        &["selfcheck_shows_every_security_setting"],
    ),
    (
        Mutation::IgnoreCapAdd,
        &["selfcheck_shows_every_security_setting"],
    ),
    (
        Mutation::IgnoreReadOnlyRootfs,
        &["selfcheck_shows_every_security_setting"],
    ),
    (
        Mutation::IgnoreTmpfs,
        &["selfcheck_shows_every_security_setting"],
    ),
    (
        Mutation::IgnoreUser,
        &["selfcheck_shows_every_security_setting"],
    ),
    (
        Mutation::IgnoreLimits,
        &["selfcheck_shows_limits_without_swap"],
    ),
    (
        Mutation::GracefulStopBeforeRemove,
        &["remove_kills_a_sigterm_deaf_container_at_once"],
    ),
    (
        Mutation::SecretsInLabels,
        &["env_reaches_the_container_and_secrets_nowhere_else"],
    ),
    (
        Mutation::SecretsInErrors,
        &["env_reaches_the_container_and_secrets_nowhere_else"],
    ),
    (
        Mutation::SecretsInList,
        &["env_reaches_the_container_and_secrets_nowhere_else"],
    ),
    (
        Mutation::DropErrorSource,
        &["errors_keep_their_source_and_name_the_object"],
    ),
    (
        Mutation::ReplaceOnNameClash,
        &["container_name_is_exclusive"],
    ),
    (
        Mutation::PublishOnAllInterfaces,
        &["ports_published_only_on_loopback_with_distinct_host_ports"],
    ),
    (
        Mutation::PublishOnWrongAddress,
        &["ports_published_only_on_loopback_with_distinct_host_ports"],
    ),
    (Mutation::IgnorePinnedIp, &["pinned_ip_is_honoured"]),
    (
        Mutation::SubnetConflictAsEngineError,
        &["overlapping_subnet_is_subnet_conflict"],
    ),
    (Mutation::NotFoundAsEngineError, &["missing_objects"]),
    (Mutation::RemoveMissingFails, &["missing_objects"]),
];

/// The cases that kill `mutation`.
pub fn killers(mutation: Mutation) -> &'static [&'static str] {
    MUTANTS
        .iter()
        .find(|(m, _)| *m == mutation)
        .map_or(&[], |(_, cases)| cases)
}

/// A runtime that breaks the promise its [`Mutation`] names and keeps every other.
#[derive(Debug)]
pub struct Mutant {
    inner: Arc<dyn ContainerRuntime>,
    mutation: Mutation,
    /// Secret values seen in creates, for [`Mutation::SecretsInList`].
    secrets: Mutex<Vec<String>>,
}

impl Mutant {
    pub fn new(inner: Arc<dyn ContainerRuntime>, mutation: Mutation) -> Self {
        Mutant {
            inner,
            mutation,
            secrets: Mutex::new(Vec::new()),
        }
    }

    fn is(&self, mutation: Mutation) -> bool {
        self.mutation == mutation
    }

    /// Applies the mutation to an error every operation returns.
    fn err(&self, e: RuntimeError) -> RuntimeError {
        match (self.mutation, e) {
            (Mutation::DropErrorSource, e) => without_source(e),
            (Mutation::SubnetConflictAsEngineError, e @ RuntimeError::SubnetConflict { .. }) => {
                generic(e)
            }
            (Mutation::NotFoundAsEngineError, e @ RuntimeError::NotFound { .. }) => generic(e),
            (_, e) => e,
        }
    }

    fn spec(&self, spec: &ContainerSpec) -> ContainerSpec {
        let mut spec = spec.clone();
        let sec = &mut spec.security;
        match self.mutation {
            Mutation::IgnoreNoNewPrivileges => sec.no_new_privileges = false,
            Mutation::IgnoreDropAllCapabilities => sec.drop_all_capabilities = false,
            Mutation::IgnoreCapAdd => sec.cap_add.clear(),
            Mutation::IgnoreReadOnlyRootfs => sec.read_only_rootfs = false,
            Mutation::IgnoreTmpfs => sec.tmpfs.clear(),
            Mutation::IgnoreUser => sec.user = None,
            Mutation::IgnoreLimits => spec.limits = Default::default(),
            Mutation::PublishOnAllInterfaces => spec
                .publish
                .iter_mut()
                .for_each(|p| p.host_ip = std::net::Ipv4Addr::UNSPECIFIED),
            Mutation::PublishOnWrongAddress => spec
                .publish
                .iter_mut()
                .for_each(|p| p.host_ip = std::net::Ipv4Addr::LOCALHOST),
            Mutation::IgnorePinnedIp => {
                spec.ipv4 = std::net::Ipv4Addr::from(u32::from(spec.ipv4) + 1);
            }
            Mutation::SecretsInLabels => {
                for (key, value) in secrets_of(&spec) {
                    spec.labels.insert(format!("io.bottle.env.{key}"), value);
                }
            }
            _ => {}
        }
        spec
    }
}

fn secrets_of(spec: &ContainerSpec) -> Vec<(String, String)> {
    spec.env
        .iter()
        .filter_map(|e| match &e.value {
            EnvValue::Secret(s) => Some((e.key.clone(), s.expose().to_string())),
            EnvValue::Plain(_) => None,
        })
        .collect()
}

/// `e` as a generic engine error (its kind lost).
fn generic(e: RuntimeError) -> RuntimeError {
    RuntimeError::Engine {
        engine: "mutant".into(),
        operation: "operation".into(),
        target: "object".into(),
        message: e.to_string(),
        source: Some(Box::new(e)),
    }
}

/// `e` without its source.
fn without_source(e: RuntimeError) -> RuntimeError {
    match e {
        RuntimeError::EngineUnavailable {
            engine,
            tried,
            hint,
            ..
        } => RuntimeError::EngineUnavailable {
            engine,
            tried,
            hint,
            source: None,
        },
        RuntimeError::NotFound { kind, name, .. } => RuntimeError::NotFound {
            kind,
            name,
            source: None,
        },
        RuntimeError::AlreadyExists { kind, name, .. } => RuntimeError::AlreadyExists {
            kind,
            name,
            source: None,
        },
        RuntimeError::SubnetConflict { subnet, .. } => RuntimeError::SubnetConflict {
            subnet,
            source: None,
        },
        RuntimeError::Engine {
            engine,
            operation,
            target,
            message,
            ..
        } => RuntimeError::Engine {
            engine,
            operation,
            target,
            message,
            source: None,
        },
        other => other,
    }
}

#[async_trait]
impl ContainerRuntime for Mutant {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn port_forwarding(&self) -> PortForwarding {
        self.inner.port_forwarding()
    }

    async fn info(&self) -> Result<EngineInfo> {
        self.inner.info().await.map_err(|e| self.err(e))
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<NetworkInfo> {
        self.inner
            .create_network(spec)
            .await
            .map_err(|e| self.err(e))
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        if self.is(Mutation::RemoveMissingFails) {
            let all = self.inner.list_networks(&LabelSelector::all()).await?;
            if all.iter().all(|n| n.name != name) {
                return Err(RuntimeError::NotFound {
                    kind: ObjectKind::Network,
                    name: name.into(),
                    source: None,
                });
            }
        }
        self.inner
            .remove_network(name)
            .await
            .map_err(|e| self.err(e))
    }

    async fn list_networks(&self, selector: &LabelSelector) -> Result<Vec<NetworkInfo>> {
        self.inner
            .list_networks(selector)
            .await
            .map_err(|e| self.err(e))
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<()> {
        let mutated = self.spec(spec);
        let secrets = secrets_of(spec);
        self.secrets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(secrets.iter().map(|(_, v)| v.clone()));
        match self.inner.create_container(&mutated).await {
            Ok(()) => Ok(()),
            Err(e) if self.is(Mutation::SecretsInErrors) => Err(RuntimeError::Engine {
                engine: "mutant".into(),
                operation: "creating container".into(),
                target: spec.name.clone(),
                message: format!("{e} (environment: {secrets:?})"),
                source: Some(Box::new(e)),
            }),
            Err(e)
                if self.is(Mutation::ReplaceOnNameClash)
                    && e.kind() == ErrorKind::AlreadyExists =>
            {
                self.inner.remove_container(&spec.name).await?;
                Err(e)
            }
            Err(e) => Err(self.err(e)),
        }
    }

    async fn start_container(&self, name: &str) -> Result<()> {
        self.inner
            .start_container(name)
            .await
            .map_err(|e| self.err(e))
    }

    async fn inspect_container(&self, name: &str) -> Result<ContainerInfo> {
        self.inner
            .inspect_container(name)
            .await
            .map_err(|e| self.err(e))
    }

    async fn remove_container(&self, name: &str) -> Result<()> {
        if self.is(Mutation::GracefulStopBeforeRemove) {
            if let Ok(info) = self.inner.inspect_container(name).await {
                if info.state == ContainerState::Running {
                    // What `docker stop` does to a PID 1 that ignores SIGTERM.
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
            }
        }
        if self.is(Mutation::RemoveMissingFails) {
            if let Err(e) = self.inner.inspect_container(name).await {
                if e.kind() == ErrorKind::NotFound {
                    return Err(e);
                }
            }
        }
        self.inner
            .remove_container(name)
            .await
            .map_err(|e| self.err(e))
    }

    async fn list_containers(&self, selector: &LabelSelector) -> Result<Vec<ContainerInfo>> {
        let mut listed = self
            .inner
            .list_containers(selector)
            .await
            .map_err(|e| self.err(e))?;
        if self.is(Mutation::SecretsInList) {
            let secrets = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
            for c in &mut listed {
                c.labels.insert("io.bottle.env".into(), secrets.join(","));
            }
        }
        Ok(listed)
    }

    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>> {
        self.inner.image(reference).await.map_err(|e| self.err(e))
    }

    async fn load_image(&self, archive: &Path) -> Result<Vec<String>> {
        self.inner
            .load_image(archive)
            .await
            .map_err(|e| self.err(e))
    }

    async fn logs(
        &self,
        name: &str,
        options: LogOptions,
        sink: &mut (dyn FnMut(String) -> bool + Send),
    ) -> Result<()> {
        self.inner
            .logs(name, options, sink)
            .await
            .map_err(|e| self.err(e))
    }
}

/// Runs the cases named in `cases` against `runtime` and returns those that failed (panicked
/// or hung for two minutes). Each case runs in a task of its own; whatever a failed case left
/// on the engine is removed through `cleanup` (the runtime without the mutant).
pub async fn failing_cases(
    runtime: Arc<dyn ContainerRuntime>,
    cleanup: &Arc<dyn ContainerRuntime>,
    fx: &Fixture,
    cases: &[&str],
) -> Vec<String> {
    let mut failed = Vec::new();
    for name in cases {
        let (_, case) = CASES
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no conformance case {name}"));
        let case = *case;
        let (rt, fixture) = (runtime.clone(), fx.clone());
        let run = tokio::spawn(async move { case(&rt, &fixture).await });
        let passed = matches!(
            tokio::time::timeout(Duration::from_secs(120), run).await,
            Ok(Ok(()))
        );
        if !passed {
            failed.push(name.to_string());
            crate::conformance::remove_everything(cleanup, fx).await;
        }
    }
    failed
}

/// Panics unless at least one of the cases that should kill `mutation` fails against
/// `runtime` wrapped in that mutant. Returns the cases that killed it.
pub async fn assert_killed(
    runtime: &Arc<dyn ContainerRuntime>,
    fx: &Fixture,
    mutation: Mutation,
) -> Vec<String> {
    let mutant: Arc<dyn ContainerRuntime> = Arc::new(Mutant::new(runtime.clone(), mutation));
    let killed = failing_cases(mutant, runtime, fx, killers(mutation)).await;
    assert!(
        !killed.is_empty(),
        "mutant {mutation:?} survived: every case of {:?} passed against {}",
        killers(mutation),
        runtime.name()
    );
    killed
}

/// [`assert_killed`] for every mutant of [`MUTANTS`], one after the other (their cases share
/// object names and subnets). Says on stderr which case killed each.
pub async fn assert_all_killed(runtime: &Arc<dyn ContainerRuntime>, fx: &Fixture, engine: &str) {
    for (mutation, _) in MUTANTS {
        let killed = assert_killed(runtime, fx, *mutation).await;
        crate::conformance::announce(engine, &format!("mutant {mutation:?} killed by {killed:?}"));
    }
}
