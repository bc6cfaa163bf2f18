//! The conformance suite: the behaviour every [`ContainerRuntime`] must show, as plain async
//! functions that panic on a violation. Each backend's tests call every case (see
//! [`CASES`]); a downstream adapter does the same against its engine.
//!
//! Cases clean up after themselves and name their objects from [`Fixture::prefix`] and the case
//! name, so cases can run concurrently on one engine and beside other users of it.

use std::future::Future;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::Arc;

use ipnet::Ipv4Net;

use crate::lifecycle::{Lifecycle, LifecycleConfig};
use crate::plan::Pools;
use crate::runtime::{
    ContainerRuntime, ContainerSpec, LabelSelector, Labels, Limits, NetworkSpec, PublishSpec,
    Security,
};
use crate::spec::LoopbackChoice;

mod create_remove;
pub mod harness;
mod inside;
mod kit;
mod lifecycle;
mod objects;

pub use create_remove::*;
pub use inside::*;
pub use kit::*;
pub use lifecycle::*;
pub use objects::*;

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
    remove_selected(rt, &sel).await;
}

/// Removes every container and network of this fixture's prefix, of every case (after a case
/// that failed half-way).
pub async fn remove_everything(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    remove_selected(
        rt,
        &LabelSelector::all().eq("io.bottle.conformance", &fx.prefix),
    )
    .await;
}

/// Removes the containers, then the networks, that `sel` selects.
async fn remove_selected(rt: &Arc<dyn ContainerRuntime>, sel: &LabelSelector) {
    for c in rt.list_containers(sel).await.expect("list containers") {
        rt.remove_container(&c.name)
            .await
            .expect("remove container");
    }
    for n in rt.list_networks(sel).await.expect("list networks") {
        rt.remove_network(&n.name).await.expect("remove network");
    }
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
