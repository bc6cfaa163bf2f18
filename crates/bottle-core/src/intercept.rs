//! [`Intercepted`]: any runtime wrapped with a [`Hook`] around each of its engine operations:
//! fault injection (`conformance::FailNth`), timing (the benchmark's), or whatever a downstream
//! project wants to watch, without writing the trait's delegation again. Everything that is not
//! an engine operation (the name, [`ContainerRuntime::port_forwarding`]) is the wrapped
//! runtime's.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::error::Result;
use crate::runtime::{
    ContainerInfo, ContainerRuntime, ContainerSpec, EngineInfo, ImageInfo, LabelSelector,
    LogOptions, NetworkInfo, NetworkSpec, Op, PortForwarding,
};

/// Called around each engine operation of an [`Intercepted`] runtime.
pub trait Hook: fmt::Debug + Send + Sync + 'static {
    /// Before `op` reaches the wrapped runtime; an error is returned in its place, and the
    /// wrapped runtime is not called.
    fn before(&self, op: Op) -> Result<()> {
        let _ = op;
        Ok(())
    }

    /// When `op` has returned (not when its future is dropped first): when it was called and
    /// how long it took.
    fn after(&self, op: Op, called: Instant, took: Duration) {
        let _ = (op, called, took);
    }
}

/// A runtime whose engine operations pass through a [`Hook`].
#[derive(Debug)]
pub struct Intercepted<H> {
    inner: Arc<dyn ContainerRuntime>,
    hook: H,
}

impl<H: Hook> Intercepted<H> {
    pub fn new(inner: Arc<dyn ContainerRuntime>, hook: H) -> Self {
        Intercepted { inner, hook }
    }

    pub fn hook(&self) -> &H {
        &self.hook
    }

    pub fn inner(&self) -> &Arc<dyn ContainerRuntime> {
        &self.inner
    }

    async fn call<T>(&self, op: Op, f: impl Future<Output = Result<T>>) -> Result<T> {
        self.hook.before(op)?;
        let called = Instant::now();
        let result = f.await;
        self.hook.after(op, called, called.elapsed());
        result
    }
}

#[async_trait]
impl<H: Hook> ContainerRuntime for Intercepted<H> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn port_forwarding(&self) -> PortForwarding {
        self.inner.port_forwarding()
    }

    async fn info(&self) -> Result<EngineInfo> {
        self.call(Op::Info, self.inner.info()).await
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<NetworkInfo> {
        self.call(Op::CreateNetwork, self.inner.create_network(spec))
            .await
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        self.call(Op::RemoveNetwork, self.inner.remove_network(name))
            .await
    }

    async fn list_networks(&self, selector: &LabelSelector) -> Result<Vec<NetworkInfo>> {
        self.call(Op::ListNetworks, self.inner.list_networks(selector))
            .await
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<()> {
        self.call(Op::CreateContainer, self.inner.create_container(spec))
            .await
    }

    async fn start_container(&self, name: &str) -> Result<()> {
        self.call(Op::StartContainer, self.inner.start_container(name))
            .await
    }

    async fn inspect_container(&self, name: &str) -> Result<ContainerInfo> {
        self.call(Op::InspectContainer, self.inner.inspect_container(name))
            .await
    }

    async fn remove_container(&self, name: &str) -> Result<()> {
        self.call(Op::RemoveContainer, self.inner.remove_container(name))
            .await
    }

    async fn list_containers(&self, selector: &LabelSelector) -> Result<Vec<ContainerInfo>> {
        self.call(Op::ListContainers, self.inner.list_containers(selector))
            .await
    }

    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>> {
        self.call(Op::Image, self.inner.image(reference)).await
    }

    async fn load_image(&self, archive: &Path) -> Result<Vec<String>> {
        self.call(Op::LoadImage, self.inner.load_image(archive))
            .await
    }

    async fn logs(
        &self,
        name: &str,
        options: LogOptions,
        sink: &mut (dyn FnMut(String) -> bool + Send),
    ) -> Result<()> {
        self.call(Op::Logs, self.inner.logs(name, options, sink))
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::memory::InMemoryRuntime;

    #[derive(Debug, Default)]
    struct Seen(Mutex<Vec<(Op, bool)>>);

    impl Hook for Seen {
        fn before(&self, op: Op) -> Result<()> {
            self.0.lock().unwrap().push((op, false));
            if op == Op::RemoveNetwork {
                return Err(crate::Error::NotSupported {
                    engine: "hook".into(),
                    operation: "removing".into(),
                });
            }
            Ok(())
        }

        fn after(&self, op: Op, _: Instant, _: Duration) {
            self.0.lock().unwrap().push((op, true));
        }
    }

    #[tokio::test]
    async fn every_operation_passes_the_hook_and_the_rest_is_the_inner_runtimes() {
        let mem = InMemoryRuntime::new();
        mem.set_port_forwarding(PortForwarding::Direct);
        let rt = Intercepted::new(Arc::new(mem.clone()), Seen::default());
        assert_eq!(rt.name(), "memory");
        assert_eq!(rt.port_forwarding(), PortForwarding::Direct);
        rt.info().await.unwrap();
        rt.list_networks(&LabelSelector::all()).await.unwrap();
        let refused = rt.remove_network("n").await.unwrap_err();
        assert!(refused.to_string().contains("hook"), "{refused}");
        assert_eq!(
            mem.calls(Op::RemoveNetwork),
            0,
            "a refused call never reaches the engine"
        );
        assert_eq!(
            *rt.hook().0.lock().unwrap(),
            vec![
                (Op::Info, false),
                (Op::Info, true),
                (Op::ListNetworks, false),
                (Op::ListNetworks, true),
                (Op::RemoveNetwork, false),
            ]
        );
    }
}
