//! Every case of bottle-core's conformance suite, against a real Docker Engine: one test per
//! case, so cases run in parallel and a failure names its case.

mod common;

use bottle_core::conformance::CASES;

use common::{say, setup};

/// Runs the conformance case `name` against Docker.
async fn run(name: &str) {
    let (_, case) = CASES
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("bottle-core has no conformance case {name}"));
    let Some((rt, _, fixture)) = setup(name).await else {
        return;
    };
    say(&format!("conformance[docker]: {name}"));
    case(&rt, &fixture).await;
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                run(stringify!($case)).await;
            }
        )*

        /// Every case of the suite has a test above: a case added to bottle-core fails here
        /// until it is added to the list.
        #[test]
        fn every_case_runs() {
            let here = [$(stringify!($case)),*];
            let missing: Vec<&str> = CASES
                .iter()
                .map(|(n, _)| *n)
                .filter(|n| !here.contains(n))
                .collect();
            assert!(missing.is_empty(), "conformance cases without a Docker test: {missing:?}");
        }
    };
}

conformance!(
    network_create_is_exclusive_and_remove_idempotent,
    overlapping_subnet_is_subnet_conflict,
    missing_objects,
    container_name_is_exclusive,
    pinned_ip_is_honoured,
    ports_published_only_on_loopback_with_distinct_host_ports,
    labels_round_trip_and_select,
    remove_running_container,
    image_lookup,
    up_down_full_cycle,
    up_refuses_a_slug_that_is_up,
    up_rolls_back_at_every_step,
    up_moves_past_a_taken_subnet,
    two_bottles_get_distinct_subnets_and_loopbacks,
    down_is_idempotent_and_leaves_nothing,
    gc_removes_half_created_bottles,
);
