//! Readiness: how the lifecycle (and anything else that probes a bottle) tells a listening
//! daemon from an empty published port, where each agent-facing daemon is published, and the
//! waits between tries.
//!
//! One policy for every prober: on a runtime whose ports are [`PortForwarding::Proxied`], a
//! fresh connection must stay open for an idle window ([`IDLE_WINDOW`] by default), because
//! Docker's userland proxy accepts even when nothing listens behind it and then closes; on a
//! [`PortForwarding::Direct`] runtime an accepted connection is the daemon's.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::catalog::DaemonDef;
use crate::error::{Error, Result, RuntimeError};
use crate::plan;
use crate::runtime::{PortBinding, PortForwarding};

/// How long a fresh connection to a proxied port must stay open to count as a daemon's (the
/// default of [`Timeouts::idle_probe`](super::Timeouts::idle_probe)).
pub const IDLE_WINDOW: Duration = Duration::from_millis(25);

/// How long one connect of a probe may take before the port counts as not answering.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The readiness policy of one runtime: how long a probe's connection must stay open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    idle: Duration,
}

impl Readiness {
    /// The policy for a runtime that forwards ports as `forwarding`, with `window` as the idle
    /// window of a proxied port (zero on a direct one).
    pub fn new(forwarding: PortForwarding, window: Duration) -> Self {
        Readiness {
            idle: match forwarding {
                PortForwarding::Proxied => window,
                PortForwarding::Direct => Duration::ZERO,
            },
        }
    }

    /// The policy for `forwarding` with the default window, [`IDLE_WINDOW`].
    pub fn of(forwarding: PortForwarding) -> Self {
        Readiness::new(forwarding, IDLE_WINDOW)
    }

    /// The policy that is right on every runtime (the proxied one, with [`IDLE_WINDOW`]): for a
    /// prober that does not know how the ports it probes are forwarded.
    pub fn any_runtime() -> Self {
        Readiness::of(PortForwarding::Proxied)
    }

    /// How long a fresh connection must stay open; zero when accepting is enough.
    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// Whether a daemon answers at `addr` by this policy.
    pub async fn probe(&self, addr: SocketAddr) -> bool {
        probe(addr, self.idle).await
    }

    /// The daemons of `daemons` that do not answer at their address, probed concurrently, in
    /// the order given.
    pub async fn unanswered<'a>(
        &self,
        daemons: &[(&'a DaemonDef, SocketAddr)],
    ) -> Vec<(&'a DaemonDef, SocketAddr)> {
        let answers =
            futures_util::future::join_all(daemons.iter().map(|&(_, addr)| self.probe(addr))).await;
        daemons
            .iter()
            .zip(answers)
            .filter(|(_, ok)| !ok)
            .map(|(&d, _)| d)
            .collect()
    }
}

/// The agent-facing daemons of `daemons` with the host address each is published on, given the
/// container port -> host port map that [`resolve_host_ports`] returned.
pub fn agent_addresses<'a>(
    daemons: &'a [DaemonDef],
    loopback: Ipv4Addr,
    host_ports: &BTreeMap<u16, u16>,
) -> Vec<(&'a DaemonDef, SocketAddr)> {
    plan::agent_facing(daemons)
        .filter_map(|d| {
            let port = host_ports.get(&d.port)?;
            Some((d, SocketAddr::new(IpAddr::V4(loopback), *port)))
        })
        .collect()
}

/// The container ports of the agent-facing daemons of `daemons`.
pub fn agent_ports(daemons: &[DaemonDef]) -> Vec<u16> {
    plan::agent_facing(daemons).map(|d| d.port).collect()
}

/// Checks the engine's port bindings and returns container port -> host port for `wanted`.
///
/// A binding on any address other than `loopback` (including a wildcard) is a hard error.
/// Returns `None` while a wanted port has no host port yet, so the caller re-reads.
pub fn resolve_host_ports(
    container: &str,
    loopback: Ipv4Addr,
    wanted: &[u16],
    bindings: &[PortBinding],
) -> Result<Option<BTreeMap<u16, u16>>> {
    for b in bindings {
        if b.host_ip != Some(IpAddr::V4(loopback)) {
            return Err(Error::PublishedBeyondLoopback {
                container: container.to_string(),
                container_port: b.container_port,
                expected: loopback,
                found: b.host_ip.map_or_else(
                    || "every address (wildcard)".to_string(),
                    |ip| ip.to_string(),
                ),
            });
        }
    }
    let mut ports = BTreeMap::new();
    for &port in wanted {
        let host_port = bindings
            .iter()
            .filter(|b| b.container_port == port)
            .find_map(|b| b.host_port.filter(|p| *p != 0));
        match host_port {
            Some(p) => {
                ports.insert(port, p);
            }
            None => return Ok(None),
        }
    }
    let distinct: BTreeSet<u16> = ports.values().copied().collect();
    if distinct.len() != ports.len() {
        return Err(RuntimeError::Engine {
            engine: "bottle".into(),
            operation: "checking the published ports of".into(),
            target: container.to_string(),
            message: format!("two container ports share one host port: {ports:?}"),
            source: None,
        }
        .into());
    }
    Ok(Some(ports))
}

/// Whether something accepts a connection at `addr` and keeps it open for `idle` (with a zero
/// `idle`, whether it accepts).
///
/// A daemon that waits for its client keeps the connection open; Docker's userland proxy
/// accepts even when nothing listens behind it and closes at once.
pub async fn probe(addr: SocketAddr, idle: Duration) -> bool {
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await;
    let Ok(Ok(mut stream)) = connect else {
        return false;
    };
    if idle.is_zero() {
        return true;
    }
    let mut buf = [0u8; 1];
    match tokio::time::timeout(idle, stream.read(&mut buf)).await {
        Err(_elapsed) => true,
        Ok(Ok(n)) => n > 0,
        Ok(Err(_)) => false,
    }
}

/// Waits of 5 ms, the first `steady` of them, then doubling up to 200 ms.
pub(crate) struct Backoff {
    next: Duration,
    steady: u32,
}

impl Backoff {
    /// Doubling from the first wait: for engine calls.
    pub(crate) fn new() -> Self {
        Backoff {
            next: Duration::from_millis(5),
            steady: 0,
        }
    }

    /// Every 5 ms for the first 200 ms, then doubling: for readiness probes, which cost a
    /// loopback connect each, where a daemon usually starts listening within a few dozen
    /// milliseconds and a doubling wait would overshoot it by as much.
    pub(crate) fn polling() -> Self {
        Backoff {
            next: Duration::from_millis(5),
            steady: 40,
        }
    }

    pub(crate) async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        if self.steady > 0 {
            self.steady -= 1;
        } else {
            self.next = (self.next * 2).min(Duration::from_millis(200));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{DaemonDef, Facing, When};

    #[test]
    fn the_idle_window_is_waited_on_proxied_ports_only() {
        assert_eq!(Readiness::of(PortForwarding::Proxied).idle(), IDLE_WINDOW);
        assert_eq!(Readiness::of(PortForwarding::Direct).idle(), Duration::ZERO);
        let window = Duration::from_millis(7);
        assert_eq!(
            Readiness::new(PortForwarding::Proxied, window).idle(),
            window
        );
        assert_eq!(
            Readiness::any_runtime(),
            Readiness::of(PortForwarding::Proxied)
        );
    }

    fn daemon(name: &str, port: u16, facing: Facing) -> DaemonDef {
        DaemonDef {
            name: name.into(),
            port,
            facing,
            scheme: "http".into(),
            path: String::new(),
            vars: Vec::new(),
            when: When::Always,
        }
    }

    #[tokio::test]
    async fn unanswered_names_the_daemons_whose_port_closes_or_refuses() {
        // One port holds its connections (a daemon), one accepts and closes at once (a
        // userland proxy with nothing behind it), one refuses (nothing listens).
        let holding = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closing = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let refusing = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addrs = [
            holding.local_addr().unwrap(),
            closing.local_addr().unwrap(),
            refusing.local_addr().unwrap(),
        ];
        drop(refusing);
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = holding.accept().await {
                held.push(stream);
            }
        });
        tokio::spawn(async move {
            while let Ok((stream, _)) = closing.accept().await {
                drop(stream);
            }
        });
        let daemons = [
            daemon("daemon", 1, Facing::Agent),
            daemon("proxy", 2, Facing::Agent),
            daemon("nothing", 3, Facing::Agent),
            daemon("internal", 4, Facing::Internal),
        ];
        let host_ports = BTreeMap::from([
            (1, addrs[0].port()),
            (2, addrs[1].port()),
            (3, addrs[2].port()),
            (4, 1),
        ]);
        let published = agent_addresses(&daemons, Ipv4Addr::LOCALHOST, &host_ports);
        assert_eq!(published.len(), 3, "internal daemons are not published");
        assert_eq!(agent_ports(&daemons), [1, 2, 3]);

        let names = |found: Vec<(&DaemonDef, SocketAddr)>| -> Vec<String> {
            found.into_iter().map(|(d, _)| d.name.clone()).collect()
        };
        // A wide window, so a loaded host's late accept of the closing port still closes
        // within it.
        let proxied = Readiness::new(PortForwarding::Proxied, Duration::from_secs(2));
        assert_eq!(
            names(proxied.unanswered(&published).await),
            ["proxy", "nothing"]
        );
        // Where accepting is enough, the closing port counts as answering.
        let direct = Readiness::of(PortForwarding::Direct);
        assert_eq!(names(direct.unanswered(&published).await), ["nothing"]);
    }
}
