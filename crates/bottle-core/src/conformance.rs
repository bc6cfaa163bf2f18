//! The conformance suite: the behaviour every [`ContainerRuntime`] must show, as plain async
//! functions that panic on a violation. Each backend's tests call every case (see
//! [`CASES`]); a downstream adapter does the same against its engine.
//!
//! Cases clean up after themselves and name their objects from [`Fixture::prefix`] and the case
//! name, so cases can run concurrently on one engine and beside other users of it.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;

use crate::error::{ErrorKind, Result, RuntimeError, RuntimeResult};
use crate::intercept::{Call, Hook, Intercepted};
use crate::labels;
use crate::lifecycle::{resolve_host_ports, Lifecycle, LifecycleConfig, NoProgress, Readiness};
use crate::memory::Op;
use crate::plan::{first_choice_subnet, Pools};
use crate::runtime::{
    ContainerInfo, ContainerRuntime, ContainerSpec, EnvValue, EnvVar, LabelSelector, Labels,
    Limits, LogOptions, NetworkSpec, PublishSpec, Security,
};
use crate::selfcheck::{self, Report};
use crate::spec::{BottleSpec, LoopbackChoice};

/// What a backend's tests hand the suite.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// An image present on the engine whose labels declare a catalog with at least one
    /// agent-facing daemon that accepts connections once started (the reference image does).
    pub image: String,
    /// A prefix unique to this test run, for every object name (`bt-docker`).
    pub prefix: String,
    /// A private pool of /24s reserved for this run, a /18 or larger: direct cases use the
    /// first 32 /24s, lifecycle cases allocate from the upper half.
    pub subnet_pool: Ipv4Net,
    /// A loopback pool reserved for this run, a /23 or larger: direct cases use addresses of
    /// its last /24, lifecycle cases allocate from the whole pool.
    pub loopback_pool: Ipv4Net,
    /// An image present on the engine whose PID 1 ignores SIGTERM (see
    /// [`ensure_sigterm_deaf_image`]), for the case that removal never waits for a graceful stop.
    pub sigterm_deaf_image: String,
}

impl Fixture {
    /// The `i`-th /24 of the pool, for cases that create networks directly. Cases use indices
    /// 0-31; lifecycle cases allocate from the upper half of the pool (see
    /// [`Fixture::lifecycle_subnet_pool`]), so they never take a /24 a direct case is about to
    /// create.
    fn subnet(&self, i: u32) -> Ipv4Net {
        self.check_pools();
        assert!(i < 32, "direct cases use /24s 0-31 of the pool");
        let base = u32::from(self.subnet_pool.network()) + (i << 8);
        Ipv4Net::new(Ipv4Addr::from(base), 24).expect("valid prefix")
    }

    /// A loopback address of the pool for direct cases: address `i` (1-200) of the pool's last
    /// /24.
    fn loopback(&self, i: u32) -> Ipv4Addr {
        self.check_pools();
        assert!((1..=200).contains(&i), "direct cases use addresses 1-200");
        Ipv4Addr::from(u32::from(self.loopback_pool.broadcast()) - 255 + i)
    }

    /// Panics, naming the field, when a pool is too small for the suite or a loopback pool is
    /// not loopback.
    pub fn check_pools(&self) {
        assert!(
            self.subnet_pool.prefix_len() <= 18,
            "the fixture's subnet pool {} must be a /18 or larger",
            self.subnet_pool
        );
        assert!(
            self.loopback_pool.prefix_len() <= 23,
            "the fixture's loopback pool {} must be a /23 or larger",
            self.loopback_pool
        );
        assert!(
            self.loopback_pool.network().is_loopback(),
            "the fixture's loopback pool {} must be inside 127.0.0.0/8",
            self.loopback_pool
        );
    }

    fn name(&self, case: &str, what: &str) -> String {
        format!("{}-{case}-{what}", self.prefix)
    }

    fn labels(&self, case: &str) -> Labels {
        Labels::from([
            ("io.bottle.conformance".to_string(), self.prefix.clone()),
            ("io.bottle.conformance.case".to_string(), case.to_string()),
        ])
    }

    /// A lifecycle whose objects are namespaced by this case.
    pub fn lifecycle(&self, runtime: Arc<dyn ContainerRuntime>, case: &str) -> Lifecycle {
        Lifecycle::new(runtime, self.lifecycle_config(case))
    }

    /// The subnets lifecycle cases allocate from: the upper half of [`Fixture::subnet_pool`].
    ///
    /// A slug's first choice is a hash over the pool; over the whole pool, a bottle of one case
    /// (slug `right` hashes to /24 number 5) could take the /24 that a direct case running at
    /// the same time creates next, and that case would then fail with a subnet conflict.
    pub fn lifecycle_subnet_pool(&self) -> Ipv4Net {
        assert!(
            self.subnet_pool.prefix_len() <= 18,
            "the fixture's subnet pool {} must be a /18 or larger",
            self.subnet_pool
        );
        let half = self.subnet_pool.prefix_len() + 1;
        let upper = u32::from(self.subnet_pool.network()) + (1u32 << (32 - u32::from(half)));
        Ipv4Net::new(Ipv4Addr::from(upper), half)
            .expect("half of a /18 or larger is a valid prefix")
    }

    /// The lifecycle settings of a case: its own name prefix, this run's pools.
    pub fn lifecycle_config(&self, case: &str) -> LifecycleConfig {
        LifecycleConfig {
            pools: Pools {
                prefix: format!("{}-{case}", self.prefix),
                subnet_pool: self.lifecycle_subnet_pool(),
                loopback: LoopbackChoice::Pool(self.loopback_pool),
            },
            default_image: self.image.clone(),
            ..LifecycleConfig::default()
        }
    }

    fn network(&self, case: &str, what: &str, subnet: Ipv4Net) -> NetworkSpec {
        NetworkSpec {
            name: self.name(case, what),
            subnet,
            gateway: host(subnet, 1),
            labels: self.labels(case),
        }
    }

    fn container(
        &self,
        case: &str,
        network: &NetworkSpec,
        publish: &[(u16, Ipv4Addr)],
    ) -> ContainerSpec {
        ContainerSpec {
            name: self.name(case, "c"),
            image: self.image.clone(),
            network: network.name.clone(),
            ipv4: host(network.subnet, 2),
            env: Vec::new(),
            mounts: Vec::new(),
            publish: publish
                .iter()
                .map(|&(container_port, host_ip)| PublishSpec {
                    container_port,
                    host_ip,
                })
                .collect(),
            labels: self.labels(case),
            security: Security {
                no_new_privileges: true,
                drop_all_capabilities: true,
                cap_add: Vec::new(),
                read_only_rootfs: true,
                tmpfs: vec!["/tmp".into()],
                user: None,
            },
            limits: Limits {
                memory_bytes: Some(64 * 1024 * 1024),
                pids: Some(64),
            },
        }
    }
}

fn host(subnet: Ipv4Net, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + n)
}

/// A conformance case.
pub type Case = for<'a> fn(
    &'a Arc<dyn ContainerRuntime>,
    &'a Fixture,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Calls `$callback!` with the name of every case: the one list both [`CASES`] and
/// [`conformance_tests!`](crate::conformance_tests) are made from.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ([$($callback:tt)*] ($($args:tt)*)) => {
        $($callback)*!(($($args)*)
            network_create_is_exclusive_and_remove_idempotent,
            overlapping_subnet_is_subnet_conflict,
            missing_objects,
            container_name_is_exclusive,
            pinned_ip_is_honoured,
            ports_published_only_on_loopback_with_distinct_host_ports,
            port_without_daemon_never_passes_readiness,
            labels_round_trip_and_select,
            remove_running_container,
            image_lookup,
            selfcheck_shows_every_security_setting,
            selfcheck_shows_limits_without_swap,
            env_reaches_the_container_and_secrets_nowhere_else,
            remove_kills_a_sigterm_deaf_container_at_once,
            failed_create_is_not_found_and_leaves_nothing,
            created_container_reports_what_was_asked,
            concurrent_removes_both_succeed,
            errors_keep_their_source_and_name_the_object,
            up_down_full_cycle,
            up_refuses_a_slug_that_is_up,
            up_rolls_back_at_every_step,
            up_moves_past_a_taken_subnet,
            two_bottles_get_distinct_subnets_and_loopbacks,
            down_is_idempotent_and_leaves_nothing,
            gc_removes_half_created_bottles,
        );
    };
}

macro_rules! cases {
    (() $($name:ident),* $(,)?) => {
        /// Every case, by name, for backends that run them in a loop.
        pub const CASES: &[(&str, Case)] = &[
            $((stringify!($name), |rt, fx| Box::pin($name(rt, fx)))),*
        ];
    };
}

__conformance_cases!([cases]());

/// Generates one `#[tokio::test]` per conformance case, so cases run in parallel and a failure
/// names its case. `$engine` names the engine in the output; `$setup` is an
/// `async fn(case: &str) -> Option<(Arc<dyn ContainerRuntime>, Fixture)>` that returns `None`
/// to skip (outside CI only: see [`require_engine`]).
///
/// ```text
/// bottle_core::conformance_tests!("mine", common::setup);
/// ```
///
/// The calling crate needs `tokio` with the `macros` and `rt-multi-thread` features.
#[macro_export]
macro_rules! conformance_tests {
    ($engine:literal, $setup:path) => {
        $crate::__conformance_cases!([$crate::conformance_tests] (@each $engine, $setup));
    };
    ((@each $engine:literal, $setup:path) $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some((runtime, fixture)) = $setup(stringify!($case)).await else {
                    return;
                };
                $crate::conformance::announce($engine, stringify!($case));
                $crate::conformance::$case(&runtime, &fixture).await;
            }
        )*
    };
}

/// Says on stderr, past the test harness's capture, which case runs against which engine, so a
/// run's output shows the suite really ran.
pub fn announce(engine: &str, case: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "conformance[{engine}]: {case}");
}

async fn remove_all(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture, case: &str) {
    let sel = LabelSelector::all()
        .eq("io.bottle.conformance", &fx.prefix)
        .eq("io.bottle.conformance.case", case);
    for c in rt.list_containers(&sel).await.expect("list containers") {
        rt.remove_container(&c.name)
            .await
            .expect("remove container");
    }
    for n in rt.list_networks(&sel).await.expect("list networks") {
        rt.remove_network(&n.name).await.expect("remove network");
    }
}

/// Removes every container and network of this fixture's prefix, of every case (after a case
/// that failed half-way).
pub async fn remove_everything(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    let sel = LabelSelector::all().eq("io.bottle.conformance", &fx.prefix);
    for c in rt.list_containers(&sel).await.expect("list containers") {
        rt.remove_container(&c.name)
            .await
            .expect("remove container");
    }
    for n in rt.list_networks(&sel).await.expect("list networks") {
        rt.remove_network(&n.name).await.expect("remove network");
    }
}

/// Creating a network twice is `AlreadyExists` and keeps the first; removing twice succeeds.
pub async fn network_create_is_exclusive_and_remove_idempotent(
    rt: &Arc<dyn ContainerRuntime>,
    fx: &Fixture,
) {
    let case = "netx";
    remove_all(rt, fx, case).await;
    let spec = fx.network(case, "n", fx.subnet(0));
    let created = rt.create_network(&spec).await.expect("create network");
    assert_eq!(created.name, spec.name);
    assert_eq!(created.subnets, vec![spec.subnet], "{created:?}");
    assert!(!created.id.is_empty(), "{created:?}");
    for (k, v) in &spec.labels {
        assert_eq!(created.labels.get(k), Some(v), "label {k}: {created:?}");
    }
    let mut again = spec.clone();
    again.subnet = fx.subnet(1);
    again.gateway = host(again.subnet, 1);
    let err = rt
        .create_network(&again)
        .await
        .expect_err("second create must fail");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    let listed = rt
        .list_networks(&LabelSelector::all().eq("io.bottle.conformance.case", case))
        .await
        .expect("list");
    let ours: Vec<_> = listed.iter().filter(|n| n.name == spec.name).collect();
    assert_eq!(ours.len(), 1, "exactly one network named {}", spec.name);
    assert_eq!(
        ours[0].subnets,
        vec![spec.subnet],
        "the first network is kept"
    );
    rt.remove_network(&spec.name).await.expect("remove");
    rt.remove_network(&spec.name)
        .await
        .expect("second remove succeeds");
    let listed = rt.list_networks(&LabelSelector::all()).await.expect("list");
    assert!(
        listed.iter().all(|n| n.name != spec.name),
        "network is gone"
    );
}

/// A subnet that overlaps an existing network's is `SubnetConflict`, naming the subnet.
pub async fn overlapping_subnet_is_subnet_conflict(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    let case = "overlap";
    remove_all(rt, fx, case).await;
    let a = fx.network(case, "a", fx.subnet(2));
    rt.create_network(&a).await.expect("create a");
    let b = fx.network(case, "b", fx.subnet(2));
    let err = rt.create_network(&b).await.expect_err("overlap must fail");
    assert_eq!(err.kind(), ErrorKind::SubnetConflict, "{err}");
    assert!(err.to_string().contains(&fx.subnet(2).to_string()), "{err}");
    let left = rt.list_networks(&LabelSelector::all()).await.expect("list");
    assert!(
        left.iter().all(|n| n.name != b.name),
        "no network b was made"
    );
    rt.remove_network(&a.name).await.expect("remove a");
}

/// Removing missing objects succeeds; inspecting a missing container is `NotFound`.
pub async fn missing_objects(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    let name = fx.name("missing", "never-created");
    rt.remove_container(&name)
        .await
        .expect("remove missing container");
    rt.remove_network(&name)
        .await
        .expect("remove missing network");
    let err = rt
        .inspect_container(&name)
        .await
        .expect_err("inspect missing");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        err.to_string().contains(&name),
        "the error names the container: {err}"
    );
}

/// Creating a container whose name exists is `AlreadyExists`.
pub async fn container_name_is_exclusive(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    let case = "ctrx";
    remove_all(rt, fx, case).await;
    let net = fx.network(case, "n", fx.subnet(3));
    rt.create_network(&net).await.expect("create network");
    let spec = fx.container(case, &net, &[]);
    rt.create_container(&spec).await.expect("create container");
    let first = rt.inspect_container(&spec.name).await.expect("inspect");
    let err = rt.create_container(&spec).await.expect_err("second create");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    let kept = rt
        .inspect_container(&spec.name)
        .await
        .expect("the first container is still there");
    assert_eq!(
        kept.id, first.id,
        "the first container is kept, not replaced"
    );
    remove_all(rt, fx, case).await;
}

/// The container's address on the network is the pinned one.
pub async fn pinned_ip_is_honoured(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    let case = "pin";
    remove_all(rt, fx, case).await;
    let net = fx.network(case, "n", fx.subnet(4));
    rt.create_network(&net).await.expect("create network");
    let mut spec = fx.container(case, &net, &[]);
    spec.ipv4 = host(net.subnet, 77);
    rt.create_container(&spec).await.expect("create");
    rt.start_container(&spec.name).await.expect("start");
    let info = rt.inspect_container(&spec.name).await.expect("inspect");
    assert_eq!(info.networks.get(&net.name), Some(&spec.ipv4), "{info:?}");
    remove_all(rt, fx, case).await;
}

/// Reads host ports until assigned (bounded), checking the loopback-only rule on each read.
async fn host_ports(
    rt: &Arc<dyn ContainerRuntime>,
    name: &str,
    loopback: Ipv4Addr,
    wanted: &[u16],
) -> Result<(BTreeMap<u16, u16>, ContainerInfo)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = rt.inspect_container(name).await?;
        if let Some(ports) = resolve_host_ports(name, loopback, wanted, &info.ports)? {
            return Ok((ports, info));
        }
        assert!(
            Instant::now() < deadline,
            "host ports never assigned: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every binding is on the requested loopback address, each port gets its own host port.
pub async fn ports_published_only_on_loopback_with_distinct_host_ports(
    rt: &Arc<dyn ContainerRuntime>,
    fx: &Fixture,
) {
    let case = "ports";
    remove_all(rt, fx, case).await;
    let net = fx.network(case, "n", fx.subnet(5));
    rt.create_network(&net).await.expect("create network");
    let lo = fx.loopback(5);
    let spec = fx.container(case, &net, &[(9099, lo), (9100, lo), (9418, lo)]);
    rt.create_container(&spec).await.expect("create");
    rt.start_container(&spec.name).await.expect("start");
    let (ports, info) = host_ports(rt, &spec.name, lo, &[9099, 9100, 9418])
        .await
        .expect("ports only on loopback");
    assert_eq!(ports.len(), 3, "{info:?}");
    let distinct: std::collections::BTreeSet<_> = ports.values().collect();
    assert_eq!(distinct.len(), 3, "distinct host ports: {ports:?}");
    for b in &info.ports {
        assert_eq!(
            b.host_ip,
            Some(IpAddr::V4(lo)),
            "binding {b:?} is on {lo} only"
        );
    }
    remove_all(rt, fx, case).await;
}

/// A published port with no daemon behind it never passes the lifecycle's readiness rule for
/// this runtime, while the daemon's port beside it does; a runtime that reports
/// [`PortForwarding::Direct`](crate::runtime::PortForwarding::Direct) refuses connections there.
pub async fn port_without_daemon_never_passes_readiness(
    rt: &Arc<dyn ContainerRuntime>,
    fx: &Fixture,
) {
    use crate::runtime::PortForwarding;
    let case = "empty-port";
    remove_all(rt, fx, case).await;
    let catalog = fixture_catalog(rt, fx).await;
    let daemon = catalog
        .daemons
        .iter()
        .find(|d| d.facing == crate::catalog::Facing::Agent)
        .expect("an agent-facing daemon");
    // A port no daemon of the image listens on.
    let empty = (9000..)
        .find(|p| catalog.daemons.iter().all(|d| d.port != *p))
        .expect("a free port number");
    let net = fx.network(case, "n", fx.subnet(8));
    rt.create_network(&net).await.expect("create network");
    let lo = fx.loopback(8);
    let mut spec = fx.container(case, &net, &[(daemon.port, lo), (empty, lo)]);
    spec.env.push(EnvVar {
        key: crate::catalog::DAEMONS_ENV.into(),
        value: EnvValue::Plain(daemon.name.clone()),
    });
    rt.create_container(&spec).await.expect("create");
    rt.start_container(&spec.name).await.expect("start");
    let (ports, _) = host_ports(rt, &spec.name, lo, &[daemon.port, empty])
        .await
        .expect("ports");
    let readiness = Readiness::of(rt.port_forwarding());
    let at = |port: u16| SocketAddr::new(IpAddr::V4(lo), ports[&port]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !readiness.probe(at(daemon.port)).await {
        assert!(
            Instant::now() < deadline,
            "daemon {} never answered at {}",
            daemon.name,
            at(daemon.port)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The daemon answers, so the bundle runs: the empty port must still not pass, every time.
    for _ in 0..5 {
        assert!(
            !readiness.probe(at(empty)).await,
            "port {empty} (no daemon behind it) passed the readiness rule at {}",
            at(empty)
        );
        if rt.port_forwarding() == PortForwarding::Direct {
            let connect = tokio::net::TcpStream::connect(at(empty)).await;
            assert!(
                connect.is_err(),
                "{} reports direct port forwarding, but {} accepted a connection with no daemon behind it",
                rt.name(),
                at(empty)
            );
        }
    }
    remove_all(rt, fx, case).await;
}

/// Labels come back as set, and selection by label finds exactly the labelled objects.
pub async fn labels_round_trip_and_select(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    let case = "labels";
    remove_all(rt, fx, case).await;
    let mut net = fx.network(case, "n", fx.subnet(6));
    net.labels
        .insert("io.bottle.test.value".into(), "a=b,c d".into());
    rt.create_network(&net).await.expect("create network");
    let mut spec = fx.container(case, &net, &[]);
    spec.labels
        .insert("io.bottle.test.value".into(), "x".into());
    rt.create_container(&spec).await.expect("create");

    let sel = LabelSelector::all().eq("io.bottle.conformance.case", case);
    let nets = rt.list_networks(&sel).await.expect("list networks");
    assert_eq!(nets.len(), 1, "{nets:?}");
    for (k, v) in &net.labels {
        assert_eq!(nets[0].labels.get(k), Some(v), "network label {k}");
    }
    let ctrs = rt.list_containers(&sel).await.expect("list containers");
    assert_eq!(ctrs.len(), 1, "one container, running or not: {ctrs:?}");
    for (k, v) in &spec.labels {
        assert_eq!(ctrs[0].labels.get(k), Some(v), "container label {k}");
    }
    let miss = sel.clone().eq("io.bottle.test.value", "y");
    assert!(rt.list_containers(&miss).await.expect("list").is_empty());
    let hit = sel.eq("io.bottle.test.value", "x");
    assert_eq!(rt.list_containers(&hit).await.expect("list").len(), 1);
    remove_all(rt, fx, case).await;
}

/// A running container is removed by one call, and is gone afterwards.
pub async fn remove_running_container(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    let case = "rmrun";
    remove_all(rt, fx, case).await;
    let net = fx.network(case, "n", fx.subnet(7));
    rt.create_network(&net).await.expect("create network");
    let spec = fx.container(case, &net, &[]);
    rt.create_container(&spec).await.expect("create");
    rt.start_container(&spec.name).await.expect("start");
    rt.remove_container(&spec.name)
        .await
        .expect("remove running");
    let err = rt.inspect_container(&spec.name).await.expect_err("gone");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    rt.remove_network(&net.name)
        .await
        .expect("network removable after");
}

/// The fixture image is found with its catalog label; an absent image is `None`.
pub async fn image_lookup(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    let info = rt.image(&fx.image).await.expect("image").expect("present");
    assert!(info.labels.contains_key(labels::CATALOG), "{info:?}");
    let absent = rt
        .image("bottle-conformance-absent:never")
        .await
        .expect("lookup of an absent image");
    assert!(absent.is_none());
}

/// Clears what an earlier run of `case` left, then creates the case's network on the `index`-th
/// /24 of the pool.
async fn fresh_network(
    rt: &Arc<dyn ContainerRuntime>,
    fx: &Fixture,
    case: &str,
    index: u32,
) -> NetworkSpec {
    remove_all(rt, fx, case).await;
    let net = fx.network(case, "n", fx.subnet(index));
    rt.create_network(&net).await.expect("create network");
    net
}

/// The catalog the fixture image declares in its label.
async fn fixture_catalog(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) -> crate::Catalog {
    let image = rt.image(&fx.image).await.expect("image").expect("present");
    crate::plan::ImageProfile::from_image(&fx.image, &image)
        .expect("catalog label")
        .catalog
        .expect("the fixture image declares a catalog")
}

/// The port of the fixture image's `selfcheck` daemon, from the image's catalog.
async fn selfcheck_port(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) -> u16 {
    fixture_catalog(rt, fx)
        .await
        .get(selfcheck::DAEMON)
        .unwrap_or_else(|| {
            panic!(
                "the fixture image {} must provide the {} daemon (the reference image does)",
                fx.image,
                selfcheck::DAEMON
            )
        })
        .port
}

/// A container of the fixture image on a network of its own, running only the `selfcheck`
/// daemon, published on a loopback address; `edit` changes the spec before it is created.
async fn selfcheck_spec(
    rt: &Arc<dyn ContainerRuntime>,
    fx: &Fixture,
    case: &str,
    index: u32,
) -> (ContainerSpec, Ipv4Addr, u16) {
    let port = selfcheck_port(rt, fx).await;
    let net = fresh_network(rt, fx, case, index).await;
    let lo = fx.loopback(index);
    let mut spec = fx.container(case, &net, &[(port, lo)]);
    spec.env.push(EnvVar {
        key: crate::catalog::DAEMONS_ENV.into(),
        value: EnvValue::Plain(selfcheck::DAEMON.into()),
    });
    (spec, lo, port)
}

/// Creates and starts `spec` and returns the report its `selfcheck` daemon gives (bounded).
async fn start_and_read_report(
    rt: &Arc<dyn ContainerRuntime>,
    spec: &ContainerSpec,
    lo: Ipv4Addr,
    port: u16,
) -> Report {
    use tokio::io::AsyncReadExt;
    rt.create_container(spec).await.expect("create");
    rt.start_container(&spec.name).await.expect("start");
    let (ports, _) = host_ports(rt, &spec.name, lo, &[port])
        .await
        .expect("the selfcheck port, on loopback only");
    let addr = SocketAddr::new(IpAddr::V4(lo), ports[&port]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    loop {
        let read = async {
            let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
            let mut text = String::new();
            stream.read_to_string(&mut text).await.ok()?;
            Some(text)
        };
        if let Ok(Some(text)) = tokio::time::timeout(Duration::from_secs(5), read).await {
            match serde_json::from_str::<Report>(&text) {
                Ok(report) => return report,
                Err(e) => last = format!("{e}: {text:?}"),
            }
        }
        assert!(
            Instant::now() < deadline,
            "the selfcheck daemon of {} never reported at {addr} (last answer: {last})",
            spec.name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every field of [`Security`] shows up inside the container: the user and group, the
/// capabilities (bounding set: only those added back), no-new-privileges, the read-only root,
/// and each tmpfs, mounted `rw,nosuid,nodev,noexec`.
pub async fn selfcheck_shows_every_security_setting(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    let case = "sec";
    let (mut spec, lo, port) = selfcheck_spec(rt, fx, case, 9).await;
    spec.security = Security {
        no_new_privileges: true,
        drop_all_capabilities: true,
        cap_add: vec!["NET_BIND_SERVICE".into()],
        read_only_rootfs: true,
        tmpfs: vec!["/tmp".into()],
        user: Some("65534:65534".into()),
    };
    let r = start_and_read_report(rt, &spec, lo, port).await;
    assert_eq!((r.uid, r.gid), (65534, 65534), "user 65534:65534: {r:?}");
    let asked = selfcheck::capability_set(["NET_BIND_SERVICE"]);
    assert_eq!(
        r.cap_bounding,
        asked,
        "every capability dropped, NET_BIND_SERVICE added back; bounding set is {:?}",
        selfcheck::capability_names(r.cap_bounding)
    );
    assert_eq!(
        r.cap_effective & !asked,
        0,
        "effective capabilities beyond those asked: {:?}",
        selfcheck::capability_names(r.cap_effective & !asked)
    );
    assert!(r.no_new_privs, "no-new-privileges: {r:?}");
    assert!(r.root_read_only, "read-only root: {r:?}");
    let tmp = r
        .tmpfs
        .get("/tmp")
        .unwrap_or_else(|| panic!("/tmp is a tmpfs: {:?}", r.tmpfs));
    for option in TMPFS_OPTIONS {
        assert!(
            tmp.iter().any(|o| o == option),
            "tmpfs /tmp has option {option}: {tmp:?}"
        );
    }
    remove_all(rt, fx, case).await;
}

/// The mount options every tmpfs of [`Security::tmpfs`] has (its size is the engine's).
pub const TMPFS_OPTIONS: [&str; 4] = ["rw", "nosuid", "nodev", "noexec"];

/// The memory and pids limits show up in the container's cgroup, with no swap on top of the
/// memory limit.
pub async fn selfcheck_shows_limits_without_swap(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    let case = "limits";
    let (mut spec, lo, port) = selfcheck_spec(rt, fx, case, 10).await;
    spec.limits = Limits {
        memory_bytes: Some(96 * 1024 * 1024),
        pids: Some(48),
    };
    let r = start_and_read_report(rt, &spec, lo, port).await;
    assert_eq!(r.memory_limit, spec.limits.memory_bytes, "memory: {r:?}");
    assert_eq!(
        r.memory_swap,
        Some(0),
        "no swap beyond the memory limit (cgroup {}): {r:?}",
        r.cgroup
    );
    assert_eq!(r.pids_limit, Some(48), "pids: {r:?}");
    remove_all(rt, fx, case).await;
}

/// Whether `needle` shows up anywhere in `err`: its message, its `Debug`, or any source's.
fn error_mentions(err: &RuntimeError, needle: &str) -> bool {
    let mut texts = vec![err.to_string(), format!("{err:?}")];
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        texts.push(s.to_string());
        source = s.source();
    }
    texts.iter().any(|t| t.contains(needle))
}

/// Plain and secret values reach the container's environment (seen as hashes from inside), and
/// a secret value shows up nowhere else: not in labels, `inspect` or `list` output, error
/// messages of a refused or failed create, or logs.
pub async fn env_reaches_the_container_and_secrets_nowhere_else(
    rt: &Arc<dyn ContainerRuntime>,
    fx: &Fixture,
) {
    let case = "secret";
    let (mut spec, lo, port) = selfcheck_spec(rt, fx, case, 11).await;
    let secret = format!("s3cret-{}-{}", fx.prefix, std::process::id());
    spec.env.push(EnvVar {
        key: "BT_PLAIN".into(),
        value: EnvValue::Plain("visible value".into()),
    });
    spec.env.push(EnvVar {
        key: "BT_SECRET".into(),
        value: EnvValue::Secret(crate::runtime::Secret::new(secret.clone())),
    });
    let r = start_and_read_report(rt, &spec, lo, port).await;
    assert_eq!(
        r.env.get("BT_PLAIN"),
        Some(&selfcheck::value_hash("visible value")),
        "{:?}",
        r.env
    );
    assert_eq!(
        r.env.get("BT_SECRET"),
        Some(&selfcheck::value_hash(&secret)),
        "the secret reaches the container's environment: {:?}",
        r.env
    );
    let info = rt.inspect_container(&spec.name).await.expect("inspect");
    assert!(
        !format!("{info:?}").contains(&secret),
        "inspect shows the secret: {info:?}"
    );
    let sel = LabelSelector::all().eq("io.bottle.conformance.case", case);
    let listed = rt.list_containers(&sel).await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(
        !format!("{listed:?}").contains(&secret),
        "list shows the secret: {listed:?}"
    );
    let refused = rt.create_container(&spec).await.expect_err("name taken");
    assert!(
        !error_mentions(&refused, &secret),
        "the error of a refused create carries the secret: {refused:?}"
    );
    let mut lost = spec.clone();
    lost.name = fx.name(case, "lost");
    lost.network = fx.name(case, "no-such-network");
    let failed = rt.create_container(&lost).await.expect_err("no network");
    assert!(
        !error_mentions(&failed, &secret),
        "the error of a failed create carries the secret: {failed:?}"
    );
    let mut lines = Vec::new();
    match rt
        .logs(&spec.name, LogOptions::default(), &mut |l| {
            lines.push(l);
            true
        })
        .await
    {
        Ok(()) => assert!(
            lines.iter().all(|l| !l.contains(&secret)),
            "the logs show the secret"
        ),
        Err(e) => assert_eq!(e.kind(), ErrorKind::NotSupported, "{e}"),
    }
    remove_all(rt, fx, case).await;
}

/// Removing a running container whose PID 1 ignores SIGTERM kills it at once.
///
/// A remove that stops the container gracefully first waits the engine's grace period (10 s on
/// Docker and Podman) before it kills a process that ignores SIGTERM. Time is the only thing
/// that tells the two apart through the trait, so the bound is relative and wide: removing the
/// running container may take at most 5 s more than removing a created, never started container
/// of the same image (which has no process to stop). A graceful stop exceeds it by half the
/// grace period; a kill stays far below it even on a loaded host.
pub async fn remove_kills_a_sigterm_deaf_container_at_once(
    rt: &Arc<dyn ContainerRuntime>,
    fx: &Fixture,
) {
    let case = "deaf";
    let net = fresh_network(rt, fx, case, 12).await;
    let mut deaf = fx.container(case, &net, &[]);
    deaf.image = fx.sigterm_deaf_image.clone();
    let mut idle = deaf.clone();
    idle.name = fx.name(case, "idle");
    idle.ipv4 = host(net.subnet, 3);
    rt.create_container(&deaf).await.expect("create");
    rt.start_container(&deaf.name).await.expect("start");
    rt.create_container(&idle)
        .await
        .expect("create the idle one");
    let started = Instant::now();
    rt.remove_container(&idle.name).await.expect("remove idle");
    let baseline = started.elapsed();
    let bound = baseline + Duration::from_secs(5);
    let started = Instant::now();
    let removed = tokio::time::timeout(bound, rt.remove_container(&deaf.name)).await;
    assert!(
        removed.is_ok(),
        "removing a running container whose PID 1 ignores SIGTERM took longer than {bound:?} \
         ({baseline:?} for a container never started): remove must kill, not stop gracefully"
    );
    removed.unwrap().expect("remove running");
    let took = started.elapsed();
    let err = rt.inspect_container(&deaf.name).await.expect_err("gone");
    assert_eq!(
        err.kind(),
        ErrorKind::NotFound,
        "gone after {took:?}: {err}"
    );
    remove_all(rt, fx, case).await;
}

/// Creating a container on a missing network, or of a missing image, is `NotFound`, and leaves
/// no container behind.
pub async fn failed_create_is_not_found_and_leaves_nothing(
    rt: &Arc<dyn ContainerRuntime>,
    fx: &Fixture,
) {
    let case = "failcreate";
    remove_all(rt, fx, case).await;
    let net = fx.network(case, "n", fx.subnet(13));
    let mut spec = fx.container(case, &net, &[]);
    let err = rt
        .create_container(&spec)
        .await
        .expect_err("create on a missing network");
    assert_eq!(err.kind(), ErrorKind::NotFound, "missing network: {err}");
    let gone = rt.inspect_container(&spec.name).await.expect_err("nothing");
    assert_eq!(gone.kind(), ErrorKind::NotFound, "{gone}");
    rt.create_network(&net).await.expect("create network");
    spec.image = "bottle-conformance-absent:never".into();
    let err = rt
        .create_container(&spec)
        .await
        .expect_err("create of a missing image");
    assert_eq!(err.kind(), ErrorKind::NotFound, "missing image: {err}");
    let sel = LabelSelector::all().eq("io.bottle.conformance.case", case);
    let left = rt.list_containers(&sel).await.expect("list");
    assert!(left.is_empty(), "a failed create left {left:?}");
    remove_all(rt, fx, case).await;
}

/// A created, not started container reports its image reference as asked, its pinned address
/// and its labels; once started, only the published port is a binding (the image's other
/// exposed ports are not).
pub async fn created_container_reports_what_was_asked(
    rt: &Arc<dyn ContainerRuntime>,
    fx: &Fixture,
) {
    let case = "created";
    let (spec, lo, port) = selfcheck_spec(rt, fx, case, 14).await;
    rt.create_container(&spec).await.expect("create");
    let info = rt.inspect_container(&spec.name).await.expect("inspect");
    assert_eq!(info.name, spec.name);
    assert_eq!(
        info.state,
        crate::runtime::ContainerState::Created,
        "{info:?}"
    );
    assert_eq!(info.image, spec.image, "the image reference as asked");
    assert_eq!(
        info.networks.get(&spec.network),
        Some(&spec.ipv4),
        "the pinned address before start: {info:?}"
    );
    for (k, v) in &spec.labels {
        assert_eq!(info.labels.get(k), Some(v), "label {k}");
    }
    rt.start_container(&spec.name).await.expect("start");
    let (_, info) = host_ports(rt, &spec.name, lo, &[port])
        .await
        .expect("ports");
    assert!(
        info.ports.iter().all(|b| b.container_port == port),
        "only the published port {port} is a binding: {:?}",
        info.ports
    );
    assert_eq!(info.image, spec.image, "the image reference as asked");
    remove_all(rt, fx, case).await;
}

/// Two removes of one container at once both succeed, and so do two of one network.
pub async fn concurrent_removes_both_succeed(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    let case = "rmrace";
    let net = fresh_network(rt, fx, case, 15).await;
    let spec = fx.container(case, &net, &[]);
    rt.create_container(&spec).await.expect("create");
    rt.start_container(&spec.name).await.expect("start");
    let (a, b) = tokio::join!(
        rt.remove_container(&spec.name),
        rt.remove_container(&spec.name)
    );
    a.expect("first remove");
    b.expect("concurrent remove");
    let (a, b) = tokio::join!(rt.remove_network(&net.name), rt.remove_network(&net.name));
    a.expect("first network remove");
    b.expect("concurrent network remove");
    remove_all(rt, fx, case).await;
}

/// An engine's errors keep the engine's own error as their source, and name the object.
pub async fn errors_keep_their_source_and_name_the_object(
    rt: &Arc<dyn ContainerRuntime>,
    fx: &Fixture,
) {
    let case = "source";
    remove_all(rt, fx, case).await;
    let name = fx.name(case, "never-created");
    let err = rt.inspect_container(&name).await.expect_err("missing");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains(&name), "names {name}: {err}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "NotFound keeps the engine's error as its source: {err:?}"
    );
    let net = fx.network(case, "n", fx.subnet(16));
    rt.create_network(&net).await.expect("create network");
    let spec = fx.container(case, &net, &[]);
    rt.create_container(&spec).await.expect("create");
    let err = rt.create_container(&spec).await.expect_err("name taken");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert!(err.to_string().contains(&spec.name), "names it: {err}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "AlreadyExists keeps the engine's error as its source: {err:?}"
    );
    remove_all(rt, fx, case).await;
}

/// Checks that nothing with this lifecycle's prefix is left on the engine.
async fn assert_nothing_left(lc: &Lifecycle) {
    let left = lc.list().await.expect("list");
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// `up` returns endpoints that answer on the bottle's loopback address; `down` removes all.
pub async fn up_down_full_cycle(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    let lc = fx.lifecycle(rt.clone(), "cycle");
    let _ = lc.down("one", &NoProgress).await;
    let bottle = lc
        .up(&BottleSpec::new("one"), &NoProgress)
        .await
        .expect("up");
    let ep = &bottle.endpoints;
    assert!(fx.loopback_pool.contains(&ep.loopback), "{ep:?}");
    assert_eq!(ep.allow_cidrs, vec![format!("{}/32", ep.loopback)]);
    assert!(!ep.daemons.is_empty(), "at least one agent-facing daemon");
    assert!(ep
        .env
        .get("NO_PROXY")
        .is_some_and(|v| v.contains(&ep.loopback.to_string())));
    for d in &ep.daemons {
        let addr = SocketAddr::new(IpAddr::V4(ep.loopback), d.host_port);
        assert!(
            Readiness::of(rt.port_forwarding()).probe(addr).await,
            "{} answers on {addr}",
            d.daemon
        );
        assert!(d.url.contains(&addr.to_string()), "{d:?}");
    }
    let info = rt
        .inspect_container(&bottle.plan.container_name)
        .await
        .expect("inspect");
    assert_eq!(
        info.networks.get(&bottle.plan.network_name),
        Some(&bottle.plan.bundle_ip)
    );
    let listed = lc.list().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert!(listed[0].is_complete(), "{listed:?}");
    let again = lc.endpoints("one").await.expect("endpoints re-read");
    assert_eq!(again.env, ep.env, "endpoints re-read from the engine match");
    lc.down("one", &NoProgress).await.expect("down");
    assert_nothing_left(&lc).await;
}

/// `up` of a slug that is up is `AlreadyUp`, names the slug, and leaves the first intact.
pub async fn up_refuses_a_slug_that_is_up(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    let lc = fx.lifecycle(rt.clone(), "twice");
    let _ = lc.down("dup", &NoProgress).await;
    let first = lc
        .up(&BottleSpec::new("dup"), &NoProgress)
        .await
        .expect("up");
    let err = lc
        .up(&BottleSpec::new("dup"), &NoProgress)
        .await
        .expect_err("second up");
    assert_eq!(err.kind(), ErrorKind::AlreadyUp, "{err}");
    assert!(err.to_string().contains("dup"), "{err}");
    assert!(
        err.to_string().contains("bottle down dup"),
        "says how: {err}"
    );
    let still = lc.endpoints("dup").await.expect("first still usable");
    assert_eq!(still.env, first.endpoints.env);
    lc.down("dup", &NoProgress).await.expect("down");
    assert_nothing_left(&lc).await;
}

/// A hook that fails the `nth` call of one operation and lets everything else through: fault
/// injection for any backend, as `Intercepted::new(runtime, FailNth::new(op, nth))`.
#[derive(Debug)]
pub struct FailNth {
    op: Op,
    nth: usize,
    seen: AtomicUsize,
}

impl FailNth {
    pub fn new(op: Op, nth: usize) -> Self {
        FailNth {
            op,
            nth,
            seen: AtomicUsize::new(0),
        }
    }
}

impl Hook for FailNth {
    fn before(&self, call: &Call<'_>) -> RuntimeResult<()> {
        let op = call.op();
        if op == self.op && self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.nth {
            return Err(RuntimeError::Engine {
                engine: "fault".into(),
                operation: format!("{op:?}"),
                target: "injected".into(),
                message: "injected fault".into(),
                source: None,
            });
        }
        Ok(())
    }
}

/// A failure at each engine step of `up` returns that failure and leaves nothing behind.
pub async fn up_rolls_back_at_every_step(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    let steps = [
        (Op::CreateNetwork, 1),
        (Op::CreateContainer, 1),
        (Op::StartContainer, 1),
        (Op::InspectContainer, 1),
    ];
    for (op, nth) in steps {
        let faulty: Arc<dyn ContainerRuntime> =
            Arc::new(Intercepted::new(rt.clone(), FailNth::new(op, nth)));
        let case = "rollback";
        let lc = Lifecycle::new(faulty, fx.lifecycle_config(case));
        let err = lc
            .up(&BottleSpec::new("rb"), &NoProgress)
            .await
            .expect_err("up with a fault");
        assert_eq!(err.kind(), ErrorKind::Engine, "{op:?}: {err}");
        assert!(
            err.to_string().contains("injected fault"),
            "{op:?}: original error kept: {err}"
        );
        assert_nothing_left(&fx.lifecycle(rt.clone(), case)).await;
    }
}

/// When the slug's first-choice subnet is taken by someone else's network, `up` uses another.
pub async fn up_moves_past_a_taken_subnet(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    let case = "taken";
    remove_all(rt, fx, case).await;
    let lc = fx.lifecycle(rt.clone(), case);
    let _ = lc.down("tk", &NoProgress).await;
    let first = first_choice_subnet("tk", &fx.lifecycle_subnet_pool());
    let squatter = fx.network(case, "squatter", first);
    rt.create_network(&squatter).await.expect("create squatter");
    let bottle = lc
        .up(&BottleSpec::new("tk"), &NoProgress)
        .await
        .expect("up");
    assert_ne!(bottle.plan.subnet, first, "moved past the taken subnet");
    lc.down("tk", &NoProgress).await.expect("down");
    remove_all(rt, fx, case).await;
    assert_nothing_left(&lc).await;
}

/// Two bottles up at once have different subnets and loopback addresses.
pub async fn two_bottles_get_distinct_subnets_and_loopbacks(
    rt: &Arc<dyn ContainerRuntime>,
    fx: &Fixture,
) {
    let lc = fx.lifecycle(rt.clone(), "pair");
    for slug in ["left", "right"] {
        let _ = lc.down(slug, &NoProgress).await;
    }
    let (left, right) = (BottleSpec::new("left"), BottleSpec::new("right"));
    let (a, b) = tokio::join!(lc.up(&left, &NoProgress), lc.up(&right, &NoProgress));
    let (a, b) = (a.expect("up left"), b.expect("up right"));
    assert_ne!(a.plan.subnet, b.plan.subnet);
    assert_ne!(a.endpoints.loopback, b.endpoints.loopback);
    assert_ne!(a.endpoints.allow_cidrs, b.endpoints.allow_cidrs);
    for slug in ["left", "right"] {
        lc.down(slug, &NoProgress).await.expect("down");
    }
    assert_nothing_left(&lc).await;
}

/// `down` of a bottle that is not there succeeds; after `down` nothing of ours is left.
pub async fn down_is_idempotent_and_leaves_nothing(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    let lc = fx.lifecycle(rt.clone(), "downx");
    lc.down("never", &NoProgress)
        .await
        .expect("down of nothing");
    lc.up(&BottleSpec::new("gone"), &NoProgress)
        .await
        .expect("up");
    let removed = lc.down("gone", &NoProgress).await.expect("down");
    assert_eq!(removed.len(), 2, "container and network: {removed:?}");
    assert!(lc
        .down("gone", &NoProgress)
        .await
        .expect("second down")
        .is_empty());
    assert_nothing_left(&lc).await;
}

/// A network left without its bundle (a launcher killed between steps) is found by `gc` and
/// removed; a complete bottle is left alone.
pub async fn gc_removes_half_created_bottles(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    let case = "gc";
    let lc = fx.lifecycle(rt.clone(), case);
    for slug in ["whole", "half"] {
        let _ = lc.down(slug, &NoProgress).await;
    }
    lc.up(&BottleSpec::new("whole"), &NoProgress)
        .await
        .expect("up whole");
    // A launch that dies right after creating its network: the network fails nothing, the
    // container step never happens.
    let dies = Arc::new(Intercepted::new(
        rt.clone(),
        FailNth::new(Op::CreateContainer, 1),
    ));
    let plan = Lifecycle::new(dies, fx.lifecycle_config(case))
        .plan(&BottleSpec::new("half"))
        .await
        .expect("plan");
    rt.create_network(&NetworkSpec {
        name: plan.network_name.clone(),
        subnet: plan.subnet,
        gateway: plan.gateway,
        labels: plan.network_labels.clone(),
    })
    .await
    .expect("network of the half bottle");

    let would = lc.gc(true).await.expect("gc dry run");
    assert_eq!(would.len(), 1, "{would:?}");
    assert_eq!(would[0].name, plan.network_name);
    assert_eq!(
        lc.list().await.expect("list").len(),
        2,
        "dry run removes nothing"
    );
    let removed = lc.gc(false).await.expect("gc");
    assert_eq!(removed, would);
    let left = lc.list().await.expect("list");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].slug, "whole");
    lc.down("whole", &NoProgress).await.expect("down");
    assert_nothing_left(&lc).await;
}

/// An in-memory engine holding what a [`Fixture`] needs, and that fixture: an image whose
/// catalog is the seed's plus `selfcheck`, and an image whose PID 1 ignores SIGTERM. For the
/// in-memory suites, and for an adapter that starts out delegating to the in-memory engine.
pub fn memory_engine() -> (crate::InMemoryRuntime, Fixture) {
    let rt = crate::InMemoryRuntime::new();
    let mut catalog = crate::Catalog::seed();
    catalog.daemons.push(selfcheck::daemon_def());
    rt.add_image(
        "bottle-sidecars:test",
        [(labels::CATALOG.to_string(), catalog.to_json())].into(),
    );
    rt.add_image(
        "bt-mem-sleep:test",
        [("io.bottle.test".to_string(), "sleep".to_string())].into(),
    );
    let fx = Fixture {
        image: "bottle-sidecars:test".into(),
        prefix: "bt-mem".into(),
        subnet_pool: "10.214.0.0/16".parse().expect("a valid pool"),
        loopback_pool: "127.78.0.0/16".parse().expect("a valid pool"),
        sigterm_deaf_image: "bt-mem-sleep:test".into(),
    };
    (rt, fx)
}

/// Whether this run is CI (`CI=true`), where a missing engine is a failure, never a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Decides what a real-engine test does with the result of connecting to its engine: the
/// runtime when it answers; in CI a panic naming the problem; elsewhere `None` after one line
/// that says how to run the test.
#[allow(clippy::print_stderr)] // A test helper: the skip line is for the person running tests.
pub fn require_engine<R, E: std::fmt::Display>(
    engine: &str,
    connected: std::result::Result<R, E>,
) -> Option<R> {
    match connected {
        Ok(rt) => Some(rt),
        Err(e) if in_ci() => panic!("{engine} engine required in CI but unavailable: {e}"),
        Err(e) => {
            eprintln!(
                "skipping {engine} tests: {e}; start the engine to run them (with CI=true a \
                 missing engine fails them instead)"
            );
            None
        }
    }
}

/// The reference image archive that `cargo xtask image` writes: `$BOTTLE_IMAGE_ARCHIVE`, else
/// `target/bottle-sidecars.tar` of the workspace that contains `manifest_dir`.
pub fn image_archive(manifest_dir: &str) -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("BOTTLE_IMAGE_ARCHIVE") {
        return p.into();
    }
    let mut dir = std::path::PathBuf::from(manifest_dir);
    while !dir.join("target").is_dir() && dir.pop() {}
    dir.join("target").join("bottle-sidecars.tar")
}

/// Makes the reference image on `rt` the one in the archive `cargo xtask image` wrote, and
/// returns its reference. The archive is loaded whenever it exists, so an older image of the
/// same name left on the engine by an earlier build is replaced; without an archive, an image
/// already present is used.
pub async fn ensure_reference_image(rt: &dyn ContainerRuntime, manifest_dir: &str) -> String {
    let reference = crate::lifecycle::DEFAULT_IMAGE;
    let archive = image_archive(manifest_dir);
    if archive.exists() {
        rt.load_image(&archive)
            .await
            .expect("load the reference image");
    } else {
        assert!(
            rt.image(reference).await.expect("image lookup").is_some(),
            "reference image {reference} is not on the engine and its archive {} is missing: build it (`cargo xtask image` in bottle's repository) and point BOTTLE_IMAGE_ARCHIVE at it",
            archive.display()
        );
    }
    assert!(
        rt.image(reference).await.expect("image lookup").is_some(),
        "{reference} present after loading {}",
        archive.display()
    );
    reference.to_string()
}

/// Makes sure the image `tag` is on `rt`: this host's `/bin/sleep` and the libraries it links,
/// running `sleep infinity` as user 65534 with the label `io.bottle.test=sleep`. As PID 1 of
/// its namespace `sleep` has no SIGTERM handler, so the kernel drops SIGTERM: such a container
/// only goes away by SIGKILL. Built (under `dir`) and loaded only when missing; returns `tag`.
pub async fn ensure_sigterm_deaf_image<'a>(
    rt: &dyn ContainerRuntime,
    tag: &'a str,
    dir: &Path,
) -> &'a str {
    if rt.image(tag).await.expect("image lookup").is_none() {
        let names = rt
            .load_image(&sigterm_deaf_archive(tag, dir))
            .await
            .expect("load the SIGTERM-deaf image");
        assert!(
            names
                .iter()
                .any(|n| n == tag || n.ends_with(&format!("/{tag}"))),
            "loaded names {names:?} include {tag}"
        );
    }
    tag
}

/// Writes the `docker save` archive of [`ensure_sigterm_deaf_image`]'s image under `dir` and
/// returns its path.
pub fn sigterm_deaf_archive(tag: &str, dir: &Path) -> PathBuf {
    let dir = dir.join(format!("sigterm-deaf-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the archive directory");
    let ldd = stdout(Command::new("ldd").arg("/bin/sleep"));
    let mut files = vec!["bin/sleep".to_string()];
    files.extend(
        ldd.split_whitespace()
            .filter(|w| w.starts_with('/'))
            .map(|w| w.trim_start_matches('/').to_string()),
    );
    // `-h` stores what symlinks point at: the dynamic loader is one.
    stdout(
        Command::new("tar")
            .arg("-chf")
            .arg(dir.join("layer.tar"))
            .arg("-C")
            .arg("/")
            .args(&files),
    );
    let sha = stdout(Command::new("sha256sum").arg(dir.join("layer.tar")));
    let sha = sha.split_whitespace().next().expect("a digest");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {
            "User": "65534",
            "Cmd": ["/bin/sleep", "infinity"],
            "Labels": {"io.bottle.test": "sleep"}
        },
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{sha}")]}
    });
    let manifest = serde_json::json!([
        {"Config": "config.json", "RepoTags": [tag], "Layers": ["layer.tar"]}
    ]);
    std::fs::write(dir.join("config.json"), config.to_string()).expect("write config.json");
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).expect("write manifest.json");
    let archive = dir.join("image.tar");
    stdout(
        Command::new("tar")
            .arg("-cf")
            .arg(&archive)
            .arg("-C")
            .arg(&dir)
            .args(["manifest.json", "config.json", "layer.tar"]),
    );
    archive
}

/// Runs a command and returns its stdout; panics naming the command when it fails.
fn stdout(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(subnet_pool: &str, loopback_pool: &str) -> Fixture {
        Fixture {
            image: "i".into(),
            prefix: "p".into(),
            subnet_pool: subnet_pool.parse().unwrap(),
            loopback_pool: loopback_pool.parse().unwrap(),
            sigterm_deaf_image: "s".into(),
        }
    }

    #[test]
    fn direct_loopback_addresses_stay_inside_the_pool() {
        for pool in ["127.78.0.0/16", "127.78.4.0/23", "127.0.0.0/8"] {
            let fx = fixture("10.214.0.0/16", pool);
            for i in [1, 100, 200] {
                let addr = fx.loopback(i);
                assert!(fx.loopback_pool.contains(&addr), "{addr} outside {pool}");
            }
        }
        assert_eq!(
            fixture("10.214.0.0/16", "127.78.4.0/23").loopback(5),
            "127.78.5.5".parse::<Ipv4Addr>().unwrap()
        );
    }

    #[test]
    #[should_panic(expected = "must be a /23 or larger")]
    fn a_loopback_pool_too_small_is_refused() {
        fixture("10.214.0.0/16", "127.78.4.0/24").loopback(1);
    }

    #[test]
    #[should_panic(expected = "must be a /18 or larger")]
    fn a_subnet_pool_too_small_is_refused() {
        fixture("10.214.0.0/20", "127.78.0.0/16").subnet(0);
    }
}
