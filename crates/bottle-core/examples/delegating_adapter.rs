//! A minimal adapter: a `ContainerRuntime` that hands every operation to another runtime (here
//! the in-memory engine), written as a crate outside this workspace writes one, with nothing
//! but `bottle_core`'s root. Replace each body with calls to your engine. `main` runs the
//! conformance suite and every mutant against it.
//!
//! `cargo run -p bottle-core --features conformance --example delegating_adapter`

use std::path::Path;
use std::sync::Arc;

use bottle_core::{
    ContainerInfo, ContainerRuntime, ContainerSpec, EngineInfo, ImageInfo, LabelSelector,
    LogOptions, NetworkInfo, NetworkSpec, RuntimeResult,
};

/// The adapter.
#[derive(Debug)]
pub struct MyRuntime {
    engine: Arc<dyn ContainerRuntime>,
}

#[bottle_core::async_trait]
impl ContainerRuntime for MyRuntime {
    fn name(&self) -> &str {
        "mine"
    }

    async fn info(&self) -> RuntimeResult<EngineInfo> {
        self.engine.info().await
    }

    async fn create_network(&self, spec: &NetworkSpec) -> RuntimeResult<NetworkInfo> {
        self.engine.create_network(spec).await
    }

    async fn remove_network(&self, name: &str) -> RuntimeResult<()> {
        self.engine.remove_network(name).await
    }

    async fn list_networks(&self, selector: &LabelSelector) -> RuntimeResult<Vec<NetworkInfo>> {
        self.engine.list_networks(selector).await
    }

    async fn create_container(&self, spec: &ContainerSpec) -> RuntimeResult<()> {
        self.engine.create_container(spec).await
    }

    async fn start_container(&self, name: &str) -> RuntimeResult<()> {
        self.engine.start_container(name).await
    }

    async fn inspect_container(&self, name: &str) -> RuntimeResult<ContainerInfo> {
        self.engine.inspect_container(name).await
    }

    async fn remove_container(&self, name: &str) -> RuntimeResult<()> {
        self.engine.remove_container(name).await
    }

    async fn list_containers(&self, selector: &LabelSelector) -> RuntimeResult<Vec<ContainerInfo>> {
        self.engine.list_containers(selector).await
    }

    async fn image(&self, reference: &str) -> RuntimeResult<Option<ImageInfo>> {
        self.engine.image(reference).await
    }

    async fn load_image(&self, archive: &Path) -> RuntimeResult<Vec<String>> {
        self.engine.load_image(archive).await
    }

    async fn logs(
        &self,
        name: &str,
        options: LogOptions,
        sink: &mut (dyn FnMut(String) -> bool + Send),
    ) -> RuntimeResult<()> {
        self.engine.logs(name, options, sink).await
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    for (name, case) in bottle_core::conformance::CASES {
        let (engine, fixture) = bottle_core::conformance::memory_engine();
        let rt: Arc<dyn ContainerRuntime> = Arc::new(MyRuntime {
            engine: Arc::new(engine),
        });
        bottle_core::conformance::announce("mine", name);
        case(&rt, &fixture).await;
    }
    let (engine, fixture) = bottle_core::conformance::memory_engine();
    let rt: Arc<dyn ContainerRuntime> = Arc::new(MyRuntime {
        engine: Arc::new(engine),
    });
    bottle_core::mutants::assert_all_killed(&rt, &fixture, "mine").await;
}
