//! `InMemoryRuntime`: a container engine in memory, faithful to the rules real engines enforce,
//! with fault injection. Fit for tests of anything built on [`ContainerRuntime`](crate::ContainerRuntime).
//!
//! Published ports are real: starting a container binds a TCP listener on the requested host
//! address with a port the kernel picks, which accepts and holds connections the way a daemon
//! does, so readiness probing and port discovery run exactly as against a real engine.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use ipnet::Ipv4Net;
use tokio::task::JoinHandle;

use crate::error::{RuntimeError, RuntimeResult as Result};
use crate::runtime::{ContainerSpec, ContainerState, ImageInfo, Labels, PortForwarding};

pub use crate::runtime::Op;
pub use engine::{selfcheck_report, EngineMessage};

mod engine;

type MakeError = Box<dyn Fn() -> RuntimeError + Send + Sync>;

struct Fault {
    op: Op,
    /// 1-based index of the call of `op` that fails.
    nth: usize,
    make: MakeError,
}

struct MemNetwork {
    id: String,
    subnet: Ipv4Net,
    labels: Labels,
}

struct MemContainer {
    id: String,
    spec: ContainerSpec,
    state: ContainerState,
    /// Container port -> (listener task, host port), once started.
    listeners: BTreeMap<u16, (JoinHandle<()>, u16)>,
    created: SystemTime,
    log: Vec<String>,
}

impl MemContainer {
    fn stop(&mut self) {
        for (task, _) in self.listeners.values() {
            task.abort();
        }
        self.listeners.clear();
    }
}

#[derive(Default)]
struct State {
    networks: BTreeMap<String, MemNetwork>,
    containers: BTreeMap<String, MemContainer>,
    images: BTreeMap<String, ImageInfo>,
    calls: BTreeMap<Op, usize>,
    faults: Vec<Fault>,
    /// Inspections after start that still report unassigned host ports.
    unassigned_inspections: usize,
    /// Publish on the wildcard address whatever was asked (a misbehaving engine).
    publish_wildcard: bool,
    /// Containers may swap without limit (a quirk: an engine that leaves swap unset).
    swap_unlimited: bool,
    /// No daemon listens behind published ports (see `InMemoryRuntime::daemons_never_ready`).
    daemons_silent: bool,
    /// What a published port with no daemon behind it does: accept and close (`Proxied`) or
    /// refuse (`Direct`).
    forwarding: PortForwarding,
    /// Held operations: calls wait at the gate until it is released (closed), counted.
    gates: BTreeMap<Op, (Arc<tokio::sync::Semaphore>, usize)>,
    /// Held answers: calls take effect, then wait at the gate until it is released, counted.
    answer_gates: BTreeMap<Op, (Arc<tokio::sync::Semaphore>, usize)>,
    next_id: u64,
}

/// A container engine in memory. Cheap to clone: clones share state.
#[derive(Clone, Default)]
pub struct InMemoryRuntime {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for InMemoryRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("InMemoryRuntime")
            .field("networks", &s.networks.len())
            .field("containers", &s.containers.len())
            .finish()
    }
}

impl InMemoryRuntime {
    /// An empty engine without images.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an image with these labels.
    pub fn add_image(&self, reference: &str, labels: Labels) {
        let mut s = self.lock();
        let id = s.id();
        s.images.insert(
            reference.to_string(),
            ImageInfo {
                id,
                labels,
                user: "65532".into(),
            },
        );
    }

    /// Makes the `nth` call (1-based, counted from now on) of `op` fail with `make()`.
    pub fn fail_nth(
        &self,
        op: Op,
        nth: usize,
        make: impl Fn() -> RuntimeError + Send + Sync + 'static,
    ) {
        let mut s = self.lock();
        let base = s.calls.get(&op).copied().unwrap_or(0);
        s.faults.push(Fault {
            op,
            nth: base + nth,
            make: Box::new(make),
        });
    }

    /// The next `n` inspections of a started container report its ports without host ports,
    /// as engines do right after start.
    pub fn delay_host_ports(&self, n: usize) {
        self.lock().unassigned_inspections = n;
    }

    /// Makes every later start publish on the wildcard address, as a misconfigured engine
    /// would.
    pub fn publish_on_wildcard(&self, on: bool) {
        self.lock().publish_wildcard = on;
    }

    /// Makes later containers' memory limits come without a swap limit, as an engine that
    /// leaves swap unset does: the mutant the trait cannot express (it has no swap setting).
    pub fn swap_unlimited(&self, on: bool) {
        self.lock().swap_unlimited = on;
    }

    /// Makes later starts publish ports with no daemon behind them: the daemons never become
    /// ready, as when a bundle's daemons fail to start.
    pub fn daemons_never_ready(&self, on: bool) {
        self.lock().daemons_silent = on;
    }

    /// Sets what [`ContainerRuntime::port_forwarding`](crate::ContainerRuntime::port_forwarding) reports and how later starts publish a
    /// port with no daemon behind it. `Proxied` (the default) accepts connections there and
    /// closes them at once, as Docker's userland proxy does; `Direct` refuses them, as a
    /// kernel-forwarded port does.
    ///
    /// A daemon listens behind a published port when the image's catalog names a daemon on
    /// that port and the container's `BOTTLE_DAEMONS` lists it; an image without a catalog, or
    /// a container without `BOTTLE_DAEMONS`, has a daemon behind every published port.
    pub fn set_port_forwarding(&self, forwarding: PortForwarding) {
        self.lock().forwarding = forwarding;
    }

    /// Makes later calls of `op` (`CreateNetwork`, `CreateContainer` or `StartContainer`) wait,
    /// before they take effect, until [`InMemoryRuntime::release`]: a slow engine, to watch
    /// what launches (and others) do meanwhile.
    pub fn hold(&self, op: Op) {
        self.lock()
            .gates
            .insert(op, (Arc::new(tokio::sync::Semaphore::new(0)), 0));
    }

    /// How many calls of `op` reached the gate since [`InMemoryRuntime::hold`].
    pub fn held(&self, op: Op) -> usize {
        self.lock().gates.get(&op).map_or(0, |(_, n)| *n)
    }

    /// Makes later calls of `op` (`CreateNetwork` or `CreateContainer`) take effect and then
    /// wait, before they answer, until [`InMemoryRuntime::release`]: an engine that acted but
    /// whose answer is not back yet.
    pub fn hold_answer(&self, op: Op) {
        self.lock()
            .answer_gates
            .insert(op, (Arc::new(tokio::sync::Semaphore::new(0)), 0));
    }

    /// How many calls of `op` took effect and wait to answer since
    /// [`InMemoryRuntime::hold_answer`].
    pub fn held_answers(&self, op: Op) -> usize {
        self.lock().answer_gates.get(&op).map_or(0, |(_, n)| *n)
    }

    /// Lets every held call (or answer) of `op`, and every later one, proceed.
    pub fn release(&self, op: Op) {
        let mut guard = self.lock();
        let s: &mut State = &mut guard;
        for gates in [&mut s.gates, &mut s.answer_gates] {
            if let Some((gate, _)) = gates.remove(&op) {
                gate.close();
            }
        }
    }

    /// Waits at the gate of `op` while it is held.
    async fn pass(&self, op: Op) {
        self.wait_at(op, false).await;
    }

    /// Waits at the answer gate of `op` while it is held.
    async fn answer(&self, op: Op) {
        self.wait_at(op, true).await;
    }

    async fn wait_at(&self, op: Op, answer: bool) {
        let gate = {
            let mut s = self.lock();
            let gates = if answer {
                &mut s.answer_gates
            } else {
                &mut s.gates
            };
            gates.get_mut(&op).map(|(gate, n)| {
                *n += 1;
                gate.clone()
            })
        };
        if let Some(gate) = gate {
            // Closed when released.
            let _ = gate.acquire().await;
        }
    }

    /// Stops the daemon behind `container_port` of a running container (its port stops
    /// answering), as when a daemon crashes.
    pub fn kill_daemon(&self, container: &str, container_port: u16) {
        let mut s = self.lock();
        if let Some(c) = s.containers.get_mut(container) {
            if let Some((task, _)) = c.listeners.get(&container_port) {
                task.abort();
            }
        }
    }

    /// Stops a container as if its PID 1 exited.
    pub fn stop_container(&self, name: &str) {
        let mut s = self.lock();
        if let Some(c) = s.containers.get_mut(name) {
            c.stop();
            c.state = ContainerState::Exited;
        }
    }

    /// How many calls of `op` were made.
    pub fn calls(&self, op: Op) -> usize {
        self.lock().calls.get(&op).copied().unwrap_or(0)
    }

    /// How many calls changed the engine's state.
    pub fn mutating_calls(&self) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|(op, _)| op.mutates())
            .map(|(_, n)| n)
            .sum()
    }

    /// How many calls of any kind were made.
    pub fn total_calls(&self) -> usize {
        self.lock().calls.values().sum()
    }

    /// Whether the engine has no networks and no containers.
    pub fn is_empty(&self) -> bool {
        let s = self.lock();
        s.networks.is_empty() && s.containers.is_empty()
    }

    /// Names of every network and container, for assertions.
    pub fn object_names(&self) -> Vec<String> {
        let s = self.lock();
        s.networks
            .keys()
            .map(|n| format!("network {n}"))
            .chain(s.containers.keys().map(|c| format!("container {c}")))
            .collect()
    }

    /// The environment a container was created with, as `KEY=VALUE` (as an engine's inspect
    /// would show it).
    pub fn container_env(&self, name: &str) -> Option<Vec<String>> {
        let s = self.lock();
        s.containers
            .get(name)
            .map(|c| c.spec.env.iter().map(|e| e.to_engine_string()).collect())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts the call and returns the injected fault for it, if any.
    fn enter(&self, op: Op) -> Result<std::sync::MutexGuard<'_, State>> {
        let mut s = self.lock();
        let n = s.calls.entry(op).or_insert(0);
        *n += 1;
        let n = *n;
        if let Some(i) = s.faults.iter().position(|f| f.op == op && f.nth == n) {
            let fault = s.faults.remove(i);
            return Err((fault.make)());
        }
        Ok(s)
    }
}

impl State {
    fn id(&mut self) -> String {
        self.next_id += 1;
        format!("{:012x}", self.next_id)
    }
}
