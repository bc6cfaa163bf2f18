//! Cases of the whole lifecycle over the runtime: up and down, refusal of a slug that is up,
//! rollback at every step, subnet conflicts, distinct allocations, gc of half-made bottles.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{remove_all, Fixture};
use crate::error::{Advice, Error, RuntimeError, RuntimeResult};
use crate::intercept::{Call, Hook, Intercepted};
use crate::lifecycle::{Lifecycle, NoProgress, Readiness};
use crate::memory::Op;
use crate::plan::first_choice_subnet;
use crate::runtime::{ContainerRuntime, NetworkSpec};
use crate::spec::BottleSpec;

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
    assert!(
        matches!(&err, Error::AlreadyUp { slug, .. } if slug == "dup"),
        "AlreadyUp naming the slug: {err:?}"
    );
    assert_eq!(
        err.advice(),
        Advice::UseOrRemoveBottle { slug: "dup".into() },
        "says what to do: {err:?}"
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
        assert!(
            matches!(&err, Error::Runtime(RuntimeError::Engine { message, .. }) if message == "injected fault"),
            "{op:?}: the injected error is returned: {err:?}"
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
