//! [`Intercepted`]: any runtime wrapped with a [`Hook`] around each of its engine operations:
//! fault injection (`conformance::FailNth`), timing (the benchmark's), counting failures,
//! recording arguments, or whatever a downstream project wants to watch, without writing the
//! trait's delegation again. A hook sees each operation's arguments ([`Call`]) and its outcome
//! (the error's kind). Everything that is not
//! an engine operation (the name, [`ContainerRuntime::port_forwarding`]) is the wrapped
//! runtime's.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::error::{ErrorKind, RuntimeResult as Result};
use crate::runtime::{
    ContainerInfo, ContainerRuntime, ContainerSpec, EngineInfo, ImageInfo, LabelSelector,
    LogOptions, NetworkInfo, NetworkSpec, Op, PortForwarding,
};

/// One engine operation with its arguments, as a [`Hook`] sees it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Call<'a> {
    Info,
    CreateNetwork(&'a NetworkSpec),
    RemoveNetwork(&'a str),
    ListNetworks(&'a LabelSelector),
    /// The spec holds secret values (hidden by `Debug`, readable with `expose`): a hook that
    /// records arguments must keep them to itself.
    CreateContainer(&'a ContainerSpec),
    StartContainer(&'a str),
    InspectContainer(&'a str),
    RemoveContainer(&'a str),
    ListContainers(&'a LabelSelector),
    Image(&'a str),
    LoadImage(&'a Path),
    Logs(&'a str, LogOptions),
}

impl Call<'_> {
    /// The operation.
    pub fn op(&self) -> Op {
        match self {
            Call::Info => Op::Info,
            Call::CreateNetwork(_) => Op::CreateNetwork,
            Call::RemoveNetwork(_) => Op::RemoveNetwork,
            Call::ListNetworks(_) => Op::ListNetworks,
            Call::CreateContainer(_) => Op::CreateContainer,
            Call::StartContainer(_) => Op::StartContainer,
            Call::InspectContainer(_) => Op::InspectContainer,
            Call::RemoveContainer(_) => Op::RemoveContainer,
            Call::ListContainers(_) => Op::ListContainers,
            Call::Image(_) => Op::Image,
            Call::LoadImage(_) => Op::LoadImage,
            Call::Logs(..) => Op::Logs,
        }
    }

    /// The name of the object the operation is on, when it is on one.
    pub fn target(&self) -> Option<&str> {
        match self {
            Call::CreateNetwork(spec) => Some(&spec.name),
            Call::CreateContainer(spec) => Some(&spec.name),
            Call::RemoveNetwork(name)
            | Call::StartContainer(name)
            | Call::InspectContainer(name)
            | Call::RemoveContainer(name)
            | Call::Image(name)
            | Call::Logs(name, _) => Some(name),
            Call::Info | Call::ListNetworks(_) | Call::ListContainers(_) | Call::LoadImage(_) => {
                None
            }
        }
    }
}

/// Called around each engine operation of an [`Intercepted`] runtime.
pub trait Hook: fmt::Debug + Send + Sync + 'static {
    /// Before `call` reaches the wrapped runtime; an error is returned in its place, and the
    /// wrapped runtime is not called.
    fn before(&self, call: &Call<'_>) -> Result<()> {
        let _ = call;
        Ok(())
    }

    /// When `call` has returned (not when its future is dropped first, nor when `before`
    /// refused it): its outcome (`Err` holds the error's kind), when it was called and how long
    /// it took.
    fn after(
        &self,
        call: &Call<'_>,
        outcome: std::result::Result<(), ErrorKind>,
        called: Instant,
        took: Duration,
    ) {
        let _ = (call, outcome, called, took);
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

    async fn call<T>(&self, call: Call<'_>, f: impl Future<Output = Result<T>>) -> Result<T> {
        self.hook.before(&call)?;
        let called = Instant::now();
        let result = f.await;
        let outcome = result.as_ref().map(drop).map_err(|e| e.kind());
        self.hook.after(&call, outcome, called, called.elapsed());
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
        self.call(Call::Info, self.inner.info()).await
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<NetworkInfo> {
        self.call(Call::CreateNetwork(spec), self.inner.create_network(spec))
            .await
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        self.call(Call::RemoveNetwork(name), self.inner.remove_network(name))
            .await
    }

    async fn list_networks(&self, selector: &LabelSelector) -> Result<Vec<NetworkInfo>> {
        self.call(
            Call::ListNetworks(selector),
            self.inner.list_networks(selector),
        )
        .await
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<()> {
        self.call(
            Call::CreateContainer(spec),
            self.inner.create_container(spec),
        )
        .await
    }

    async fn start_container(&self, name: &str) -> Result<()> {
        self.call(Call::StartContainer(name), self.inner.start_container(name))
            .await
    }

    async fn inspect_container(&self, name: &str) -> Result<ContainerInfo> {
        self.call(
            Call::InspectContainer(name),
            self.inner.inspect_container(name),
        )
        .await
    }

    async fn remove_container(&self, name: &str) -> Result<()> {
        self.call(
            Call::RemoveContainer(name),
            self.inner.remove_container(name),
        )
        .await
    }

    async fn list_containers(&self, selector: &LabelSelector) -> Result<Vec<ContainerInfo>> {
        self.call(
            Call::ListContainers(selector),
            self.inner.list_containers(selector),
        )
        .await
    }

    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>> {
        self.call(Call::Image(reference), self.inner.image(reference))
            .await
    }

    async fn load_image(&self, archive: &Path) -> Result<Vec<String>> {
        self.call(Call::LoadImage(archive), self.inner.load_image(archive))
            .await
    }

    async fn logs(
        &self,
        name: &str,
        options: LogOptions,
        sink: &mut (dyn FnMut(String) -> bool + Send),
    ) -> Result<()> {
        self.call(
            Call::Logs(name, options),
            self.inner.logs(name, options, sink),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::memory::InMemoryRuntime;

    /// An operation, its target, and its outcome once it returned.
    type Seen1 = (
        Op,
        Option<String>,
        Option<std::result::Result<(), ErrorKind>>,
    );

    #[derive(Debug, Default)]
    struct Seen(Mutex<Vec<Seen1>>);

    impl Hook for Seen {
        fn before(&self, call: &Call<'_>) -> Result<()> {
            let target = call.target().map(String::from);
            self.0.lock().unwrap().push((call.op(), target, None));
            if call.op() == Op::RemoveNetwork {
                return Err(crate::error::RuntimeError::NotSupported {
                    engine: "hook".into(),
                    operation: "removing".into(),
                });
            }
            Ok(())
        }

        fn after(
            &self,
            call: &Call<'_>,
            outcome: std::result::Result<(), ErrorKind>,
            _: Instant,
            _: Duration,
        ) {
            let target = call.target().map(String::from);
            self.0
                .lock()
                .unwrap()
                .push((call.op(), target, Some(outcome)));
        }
    }

    #[tokio::test]
    async fn every_operation_passes_the_hook_with_its_arguments_and_outcome() {
        let mem = InMemoryRuntime::new();
        mem.set_port_forwarding(PortForwarding::Direct);
        let rt = Intercepted::new(Arc::new(mem.clone()), Seen::default());
        assert_eq!(rt.name(), "memory");
        assert_eq!(rt.port_forwarding(), PortForwarding::Direct);
        rt.info().await.unwrap();
        rt.list_networks(&LabelSelector::all()).await.unwrap();
        let missing = rt.inspect_container("c").await.unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        let refused = rt.remove_network("n").await.unwrap_err();
        assert!(refused.to_string().contains("hook"), "{refused}");
        assert_eq!(
            mem.calls(Op::RemoveNetwork),
            0,
            "a refused call never reaches the engine"
        );
        let c = Some("c".to_string());
        let n = Some("n".to_string());
        assert_eq!(
            *rt.hook().0.lock().unwrap(),
            vec![
                (Op::Info, None, None),
                (Op::Info, None, Some(Ok(()))),
                (Op::ListNetworks, None, None),
                (Op::ListNetworks, None, Some(Ok(()))),
                (Op::InspectContainer, c.clone(), None),
                (Op::InspectContainer, c, Some(Err(ErrorKind::NotFound))),
                (Op::RemoveNetwork, n, None),
            ]
        );
    }
}
