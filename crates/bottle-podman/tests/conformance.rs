//! bottle-core's conformance suite against a real Podman, one test per case: cases run in
//! parallel, and a failure is named by its case.

mod common;

use bottle_core::conformance::CASES;

async fn run_case(name: &str) {
    let case = CASES
        .iter()
        .find_map(|(n, case)| (*n == name).then_some(*case))
        .unwrap_or_else(|| panic!("bottle-core's conformance suite has no case {name}"));
    let Some((rt, _, fixture)) = common::setup(name).await else {
        return;
    };
    common::say(&format!("conformance[podman]: {name}"));
    case(&rt, &fixture).await;
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                run_case(stringify!($name)).await;
            }
        )*

        /// A case added to bottle-core fails here until it is listed above, so none is
        /// silently left out for Podman.
        #[test]
        fn every_case_is_listed() {
            let listed = [$(stringify!($name)),*];
            let unlisted: Vec<&str> = CASES
                .iter()
                .map(|(n, _)| *n)
                .filter(|n| !listed.contains(n))
                .collect();
            assert!(unlisted.is_empty(), "cases not run against Podman: {unlisted:?}");
        }
    };
}

cases!(
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
