//! Every mutant of `bottle_core::mutants` against a real Docker engine: each breaks one
//! promise of the trait's contract, and at least one conformance case must fail against it.
//! Mutants run one after another (their cases share object names and subnets); only the cases
//! that kill each one run.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutant_is_killed() {
    let Some((rt, _, mut fixture)) = common::setup("mutants").await else {
        return;
    };
    // Apart from the conformance run's objects, should both run at once.
    fixture.prefix = format!("{}-mut", fixture.prefix);
    bottle_core::mutants::assert_all_killed(&rt, &fixture, "docker").await;
}
