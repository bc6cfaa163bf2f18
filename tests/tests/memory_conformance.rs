//! The conformance suite against `InMemoryRuntime`: the reference for what real engines must do.

use std::sync::Arc;

use bottle_core::conformance::{Fixture, CASES};
use bottle_core::{labels, Catalog, ContainerRuntime, InMemoryRuntime};

fn fixture() -> (Arc<dyn ContainerRuntime>, Fixture) {
    let rt = InMemoryRuntime::new();
    rt.add_image(
        "bottle-sidecars:test",
        [(labels::CATALOG.to_string(), Catalog::seed().to_json())].into(),
    );
    let fx = Fixture {
        image: "bottle-sidecars:test".into(),
        prefix: "bt-mem".into(),
        subnet_pool: "10.214.0.0/16".parse().unwrap(),
        loopback_pool: "127.78.0.0/16".parse().unwrap(),
    };
    (Arc::new(rt), fx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_conformance_case_passes_in_memory() {
    let (rt, fx) = fixture();
    for (name, case) in CASES {
        eprintln!("conformance[memory]: {name}");
        case(&rt, &fx).await;
    }
    eprintln!("conformance[memory]: {} cases passed", CASES.len());
}
