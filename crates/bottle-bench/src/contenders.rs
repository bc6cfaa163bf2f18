//! The contenders: each brings one bottle up until its ports are usable and tears it down, its
//! own way. Every contender runs in a fresh worker process per round (see `worker`), so its
//! memory is its own.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bottle_core::intercept::{Hook, Intercepted};
use bottle_core::{BottleSpec, ContainerRuntime, Lifecycle, LifecycleConfig, LoopbackChoice};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::engine::{Api, Engine, IMAGE, PREFIX};
use crate::job::{Job, LOOPBACK_POOL, SUBNET_POOL};

/// Who brings the bottle up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Contender {
    /// The minimal raw API sequence, ready at one successful connect per port.
    Floor,
    /// The same, ready by bottle's rule for proxied ports (the connection stays open 25 ms).
    FloorIdle,
    /// `Lifecycle::up` / `down` in-process.
    Library,
    /// The `bottle` binary, one process for `up`, one for `down`.
    Cli,
    /// One `docker`/`podman` command per step.
    EngineCli,
    /// testcontainers-rs (Docker API; on Podman through its Docker-compatible API).
    Testcontainers,
}

impl Contender {
    pub const ALL: [Contender; 6] = [
        Contender::Floor,
        Contender::FloorIdle,
        Contender::Library,
        Contender::Cli,
        Contender::EngineCli,
        Contender::Testcontainers,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Contender::Floor => "floor",
            Contender::FloorIdle => "floor-idle",
            Contender::Library => "library",
            Contender::Cli => "cli",
            Contender::EngineCli => "engine-cli",
            Contender::Testcontainers => "testcontainers",
        }
    }

    pub fn parse(s: &str) -> Option<Contender> {
        Contender::ALL.into_iter().find(|c| c.name() == s)
    }

    /// A short slug of its own, so contenders never share names.
    pub fn slug(self) -> &'static str {
        match self {
            Contender::Floor => "floor",
            Contender::FloorIdle => "flidle",
            Contender::Library => "lib",
            Contender::Cli => "cli",
            Contender::EngineCli => "ecli",
            Contender::Testcontainers => "tc",
        }
    }

    /// Whether the contender's memory is that of the worker itself (else of its children).
    pub fn in_process(self) -> bool {
        !matches!(self, Contender::Cli | Contender::EngineCli)
    }
}

/// A bottle a contender brought up: where its ports are, and what must be gone after `down`.
#[derive(Debug, Clone)]
pub struct Up {
    pub loopback: Ipv4Addr,
    /// Container port -> host port.
    pub ports: BTreeMap<u16, u16>,
    pub container: String,
    pub network: String,
}

impl Up {
    /// The bottle of `job`, whose ports got these host ports.
    pub fn of(job: &Job, ports: BTreeMap<u16, u16>) -> Up {
        Up {
            loopback: job.loopback,
            ports,
            container: job.container.clone(),
            network: job.network.clone(),
        }
    }
}

/// One contender, prepared (connected) and ready to be timed.
#[async_trait(?Send)]
pub trait Contend {
    /// Brings the bottle up; returns once the contender considers every port usable.
    async fn up(&mut self) -> Result<Up, String>;
    /// Tears it down; returns once the contender considers it gone.
    async fn down(&mut self) -> Result<(), String>;
    /// The engine calls made since the last call of this, as (operation, start, duration) in
    /// ms, where the contender can tell.
    fn calls(&mut self) -> Vec<Call> {
        Vec::new()
    }
}

/// One engine call: operation, start (ms since the wrapper was made) and duration (ms).
pub type Call = (&'static str, f64, f64);

/// A hook that notes how long each engine call takes: where the library's time goes, call by
/// call, without touching the code under test (`Intercepted::new(runtime, Timed::default())`).
#[derive(Debug)]
pub struct Timed {
    log: Mutex<Vec<Call>>,
    epoch: Instant,
}

impl Default for Timed {
    fn default() -> Self {
        Timed {
            log: Mutex::default(),
            epoch: Instant::now(),
        }
    }
}

impl Timed {
    /// Takes what was noted so far.
    pub fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.log.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// `runtime` with every engine call timed.
pub fn timed(runtime: Arc<dyn ContainerRuntime>) -> Arc<Intercepted<Timed>> {
    Arc::new(Intercepted::new(runtime, Timed::default()))
}

impl Hook for Timed {
    fn after(
        &self,
        call: &bottle_core::intercept::Call<'_>,
        _: Result<(), bottle_core::ErrorKind>,
        called: Instant,
        took: Duration,
    ) {
        let start = (called - self.epoch).as_secs_f64() * 1000.0;
        self.log.lock().unwrap_or_else(|e| e.into_inner()).push((
            call.op().name(),
            start,
            took.as_secs_f64() * 1000.0,
        ));
    }
}

/// The floor's readiness: one TCP connect that succeeds, retried every 5 ms.
pub async fn connect_once(addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{addr} did not accept a connection in 30 s"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// bottle's readiness rule (the connection must stay open [`IDLE`]), retried every 5 ms.
pub async fn idle_probe(addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if bottle_core::lifecycle::probe(addr, IDLE).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{addr} did not keep a connection open in 30 s"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The idle window of bottle's readiness probe where ports are proxied.
pub const IDLE: Duration = bottle_core::lifecycle::IDLE_WINDOW;

/// Waits for every port with `rule`, all ports at once.
pub async fn wait_ports<F, Fut>(
    loopback: Ipv4Addr,
    ports: &BTreeMap<u16, u16>,
    rule: F,
) -> Result<(), String>
where
    F: Fn(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let waits = ports
        .values()
        .map(|p| rule(SocketAddr::new(IpAddr::V4(loopback), *p)));
    futures_util::future::try_join_all(waits).await.map(drop)
}

// ---- floor ----

/// The minimal raw API sequence over the engine's socket.
#[derive(Debug)]
pub struct Floor {
    pub api: Api,
    pub job: Job,
    /// Ready by bottle's idle rule instead of one connect.
    pub idle: bool,
}

#[async_trait(?Send)]
impl Contend for Floor {
    async fn up(&mut self) -> Result<Up, String> {
        let job = &self.job;
        self.api.create_network(job).await?;
        self.api.create_container(job, IMAGE).await?;
        self.api.start(&job.container).await?;
        let ports = self.api.wait_host_ports(job).await?;
        if self.idle {
            wait_ports(job.loopback, &ports, idle_probe).await?;
        } else {
            wait_ports(job.loopback, &ports, connect_once).await?;
        }
        Ok(Up::of(job, ports))
    }

    async fn down(&mut self) -> Result<(), String> {
        self.api.remove_container(&self.job.container).await?;
        self.api.remove_network(&self.job.network).await
    }
}

// ---- bottle, in-process ----

/// Connects bottle's runtime for `engine`, as the CLI does.
pub async fn connect_runtime(engine: Engine) -> Result<Arc<dyn ContainerRuntime>, String> {
    Ok(crate::engine::connect(engine).await?.runtime)
}

/// The lifecycle with its default configuration, except the benchmark's prefix and pools.
pub fn lifecycle(runtime: Arc<dyn ContainerRuntime>) -> Lifecycle {
    Lifecycle::new(runtime, config())
}

/// The default configuration, except the benchmark's prefix and pools.
pub fn config() -> LifecycleConfig {
    let mut config = LifecycleConfig::default();
    config.pools.prefix = PREFIX.to_string();
    config.pools.subnet_pool = SUBNET_POOL.parse().expect("valid pool");
    config.pools.loopback = LoopbackChoice::Pool(LOOPBACK_POOL.parse().expect("valid pool"));
    config
}

/// The spec every bottle contender brings up: supervise on, so both of the reference image's
/// agent-facing daemons run.
pub fn spec(slug: &str) -> BottleSpec {
    let mut spec = BottleSpec::new(slug);
    spec.supervise = true;
    spec
}

/// `Lifecycle::up` then `Lifecycle::down`.
#[derive(Debug)]
pub struct Library {
    pub lifecycle: Lifecycle,
    pub spec: BottleSpec,
    /// The timing wrapper the lifecycle's runtime is, when it is one.
    pub timed: Option<Arc<Intercepted<Timed>>>,
}

#[async_trait(?Send)]
impl Contend for Library {
    async fn up(&mut self) -> Result<Up, String> {
        let bottle = self
            .lifecycle
            .up(&self.spec, &bottle_core::lifecycle::NoProgress)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Up {
            loopback: bottle.plan.loopback,
            ports: bottle
                .endpoints
                .daemons
                .iter()
                .map(|d| (d.container_port, d.host_port))
                .collect(),
            container: bottle.plan.container_name,
            network: bottle.plan.network_name,
        })
    }

    async fn down(&mut self) -> Result<(), String> {
        self.lifecycle
            .down(&self.spec.slug, &bottle_core::lifecycle::NoProgress)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn calls(&mut self) -> Vec<Call> {
        self.timed
            .as_ref()
            .map(|t| t.hook().take())
            .unwrap_or_default()
    }
}

// ---- bottle, as processes ----

/// `bottle up ... -q -o json`, then `bottle down`.
#[derive(Debug)]
pub struct Cli {
    pub bin: PathBuf,
    pub engine: Engine,
    pub slug: String,
}

impl Cli {
    fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(["--runtime", self.engine.name(), "--prefix", PREFIX, "-q"]);
        c
    }
}

/// Runs a command to its end; its stdout, or an error with its stderr.
pub async fn run(mut cmd: Command) -> Result<String, String> {
    let shown = format!("{:?}", cmd.as_std());
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("{shown}: cannot run: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{shown}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[async_trait(?Send)]
impl Contend for Cli {
    async fn up(&mut self) -> Result<Up, String> {
        let mut c = self.command();
        c.args([
            "--output",
            "json",
            "up",
            &self.slug,
            "--supervise",
            "--subnet-pool",
            SUBNET_POOL,
            "--loopback-pool",
            LOOPBACK_POOL,
        ]);
        let out = run(c).await?;
        let v: Value = serde_json::from_str(&out).map_err(|e| format!("bottle up: {e}: {out}"))?;
        let field = |k: &str| {
            v[k].as_str()
                .map(String::from)
                .ok_or_else(|| format!("bottle up: no {k} in {out}"))
        };
        let loopback = field("loopback")?
            .parse()
            .map_err(|e| format!("bottle up: loopback: {e}"))?;
        let ports = v["daemons"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| {
                Some((
                    u16::try_from(d["container_port"].as_u64()?).ok()?,
                    u16::try_from(d["host_port"].as_u64()?).ok()?,
                ))
            })
            .collect();
        Ok(Up {
            loopback,
            ports,
            container: field("container")?,
            network: field("network")?,
        })
    }

    async fn down(&mut self) -> Result<(), String> {
        let mut c = self.command();
        c.args(["down", &self.slug]);
        run(c).await.map(drop)
    }
}

// ---- the engine's own CLI ----

/// One `docker` / `podman` command per step, as a shell script would do it.
#[derive(Debug)]
pub struct EngineCli {
    pub engine: Engine,
    pub job: Job,
}

impl EngineCli {
    fn command(&self) -> Command {
        Command::new(self.engine.name())
    }
}

/// `127.95.0.2:40001` (the first line of `docker port`) -> 40001.
fn parse_port_line(out: &str) -> Option<u16> {
    out.lines().next()?.trim().rsplit(':').next()?.parse().ok()
}

#[async_trait(?Send)]
impl Contend for EngineCli {
    async fn up(&mut self) -> Result<Up, String> {
        let job = &self.job;
        let mut c = self.command();
        c.args([
            "network",
            "create",
            "--driver",
            "bridge",
            "--subnet",
            &job.subnet,
            "--gateway",
            &job.gateway.to_string(),
            "--label",
            "bt-bench=true",
            &job.network,
        ]);
        run(c).await?;

        let mut c = self.command();
        c.args([
            "run",
            "-d",
            "--name",
            &job.container,
            "--network",
            &job.network,
        ]);
        c.args(["--ip", &job.ip.to_string()]);
        for p in &job.ports {
            c.args(["-p", &format!("{}::{p}", job.loopback)]);
        }
        c.args(["-e", &format!("BOTTLE_DAEMONS={}", job.daemons)]);
        c.args(["--label", "bt-bench=true"]);
        c.args(["--cap-drop", "ALL", "--security-opt", "no-new-privileges"]);
        c.args([
            "--read-only",
            "--tmpfs",
            "/tmp:rw,noexec,nosuid,nodev,size=16m",
        ]);
        c.args(["--memory", &job.memory_bytes.to_string()]);
        if self.engine == Engine::Docker {
            c.args(["--memory-swap", &job.memory_bytes.to_string()]);
        }
        c.args(["--pids-limit", &job.pids.to_string(), IMAGE]);
        run(c).await?;

        let mut ports = BTreeMap::new();
        for p in &job.ports {
            let mut c = self.command();
            c.args(["port", &job.container, &format!("{p}/tcp")]);
            let out = run(c).await?;
            let host = parse_port_line(&out)
                .ok_or_else(|| format!("{} port: cannot read {out:?}", self.engine.name()))?;
            ports.insert(*p, host);
        }
        wait_ports(job.loopback, &ports, connect_once).await?;
        Ok(Up::of(job, ports))
    }

    async fn down(&mut self) -> Result<(), String> {
        let mut c = self.command();
        c.args(["rm", "-f"]);
        if self.engine == Engine::Podman {
            // Podman's `rm -f` stops with the 10 s grace unless told otherwise; bottle and
            // Docker's `rm -f` kill at once, so the comparison asks for the same.
            c.args(["-t", "0"]);
        }
        c.arg(&self.job.container);
        run(c).await?;
        let mut c = self.command();
        c.args(["network", "rm", &self.job.network]);
        run(c).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_lines() {
        assert_eq!(parse_port_line("127.95.0.2:40001\n"), Some(40001));
        assert_eq!(
            parse_port_line("127.95.0.2:40001\n[::]:40001\n"),
            Some(40001)
        );
        assert_eq!(parse_port_line(""), None);
    }

    #[test]
    fn names_round_trip() {
        for c in Contender::ALL {
            assert_eq!(Contender::parse(c.name()), Some(c));
        }
    }
}
