//! Every mutant of `bottle_core::mutants` against `InMemoryRuntime`: each breaks one promise of
//! the trait's contract, and at least one conformance case must fail against it.

mod common;

use std::sync::Arc;

use bottle_core::mutants::{assert_killed, failing_cases, MUTANTS};
use bottle_core::ContainerRuntime;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutant_is_killed() {
    for (mutation, _) in MUTANTS {
        // A fresh engine per mutant: what a killed case left behind never meets the next.
        let (rt, fx) = common::memory();
        let killed = assert_killed(&rt, &fx, *mutation).await;
        bottle_core::conformance::announce(
            "memory",
            &format!("mutant {mutation:?} killed by {killed:?}"),
        );
    }
}

/// The mutant no wrapper can express: an engine that leaves swap unlimited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlimited_swap_is_killed() {
    let (mem, fx) = common::memory_with(bottle_core::PortForwarding::Proxied);
    mem.swap_unlimited(true);
    let rt: Arc<dyn ContainerRuntime> = Arc::new(mem);
    let cases = ["selfcheck_shows_limits_without_swap"];
    let killed = failing_cases(rt.clone(), &rt, &fx, &cases).await;
    assert_eq!(killed, cases, "unlimited swap survived");
}

/// The suite's own check: the unmutated engine passes every killing case, so a kill is the
/// mutation's doing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_itself_passes_every_killing_case() {
    let (rt, fx): (Arc<dyn ContainerRuntime>, _) = common::memory();
    let mut cases: Vec<&str> = MUTANTS
        .iter()
        .flat_map(|(_, c)| c.iter().copied())
        .collect();
    cases.sort();
    cases.dedup();
    let failed = failing_cases(rt.clone(), &rt, &fx, &cases).await;
    assert!(failed.is_empty(), "{failed:?}");
}
