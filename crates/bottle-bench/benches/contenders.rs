//! `cargo xtask bench` runs this (`cargo bench -p bottle-bench --bench contenders -- ...`): the
//! driver, and as `__worker ...` one measurement in a process of its own. The testcontainers
//! contender lives here because testcontainers is a dev-dependency of this crate only.

// A benchmark's output is its report.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;

use async_trait::async_trait;
use bottle_bench::contenders::{self, Contend, Contender, Up};
use bottle_bench::driver::{self, Options};
use bottle_bench::engine::{Api, Engine, IMAGE};
use bottle_bench::job::Job;
use bottle_bench::worker;
use nix::sys::resource::UsageWho;
use testcontainers::bollard::models::{HostConfig, PortBinding};
use testcontainers::core::{ContainerPort, IntoContainerPort};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

fn main() -> ExitCode {
    let args = bottle_bench::args::from_env();
    let rt = match bottle_bench::args::runtime("bench") {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if args.first().map(String::as_str) == Some("__worker") {
        init_tracing();
        let idle = worker::max_rss_kib(UsageWho::RUSAGE_SELF);
        println!("{}", rt.block_on(work(&args[1..], idle)));
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{}", driver::USAGE);
        return ExitCode::SUCCESS;
    }
    let opts = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(driver::drive(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Diagnostics of the worker (and of bottle's steps) on stderr when RUST_LOG asks for them.
fn init_tracing() {
    use tracing_subscriber::fmt::format::FmtSpan;
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_span_events(FmtSpan::CLOSE)
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .init();
    }
}

/// `round <contender> <engine> <slug> <slot>`, `scale <contender> <engine> <n> <parallel>` or
/// `deaf <engine> <slug>`, each optionally followed by `--bottle-bin PATH`.
async fn work(args: &[String], idle_rss: u64) -> String {
    let (args, bin) = match args.iter().position(|a| a == "--bottle-bin") {
        Some(i) => (&args[..i], args.get(i + 1).map(PathBuf::from)),
        None => (args, None),
    };
    let engine =
        |s: &str| bottle_bench::engine::parse(s).ok_or_else(|| format!("unknown engine {s}"));
    let contender = |s: &str| Contender::parse(s).ok_or_else(|| format!("unknown contender {s}"));
    let number = |s: &str| s.parse::<usize>().map_err(|e| format!("{s}: {e}"));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["round", c, e, slug, slot] => {
            let result = async {
                let (c, e) = (contender(c)?, engine(e)?);
                let slot: u8 = slot.parse().map_err(|_| format!("bad slot {slot}"))?;
                let api = Api::connect(e).await?;
                let mut run: Box<dyn Contend> = if c == Contender::Testcontainers {
                    Box::new(Testcontainers::new(e, Job::new(slug, slot)))
                } else {
                    worker::prepare(c, e, slug, slot, bin.as_deref()).await?
                };
                worker::round(&api, run.as_mut(), idle_rss).await
            };
            driver::answer(result.await)
        }
        ["scale", c, e, n, parallel] => {
            let result = async {
                let (c, e) = (contender(c)?, engine(e)?);
                worker::scale(c, e, number(n)?, number(parallel)?, bin.as_deref()).await
            };
            driver::answer(result.await)
        }
        ["deaf", e, slug] => {
            let result = async { worker::deaf(engine(e)?, slug).await };
            driver::answer(result.await)
        }
        other => driver::answer::<()>(Err(format!("unknown worker task {other:?}"))),
    }
}

/// testcontainers-rs doing the same bottle as far as it can express it.
///
/// What it cannot express, and so does not do: a network with an explicit subnet (it creates
/// the network by name with the engine's default address pool), a pinned container IP (no
/// endpoint settings in its request), and a readiness rule for several ports at once (its
/// wait conditions are log lines, an HTTP request or the engine's health status, so the same
/// connect-per-port wait as the floor's follows `start`). Publishing on a loopback address with
/// engine-chosen host ports, the hardening and the limits go through its host-config modifier,
/// which hands over bollard's raw `HostConfig`.
struct Testcontainers {
    engine: Engine,
    job: Job,
    container: Option<ContainerAsync<GenericImage>>,
}

impl Testcontainers {
    /// testcontainers reads `DOCKER_HOST`, which the driver sets for this worker to the
    /// engine's socket (Podman serves the Docker API on its socket too).
    fn new(engine: Engine, job: Job) -> Self {
        Testcontainers {
            engine,
            job,
            container: None,
        }
    }
}

#[async_trait(?Send)]
impl Contend for Testcontainers {
    async fn up(&mut self) -> Result<Up, String> {
        let job = self.job.clone();
        let (name, tag) = IMAGE.split_once(':').unwrap_or((IMAGE, "latest"));
        let lo = job.loopback.to_string();
        let ports = job.ports.clone();
        let (memory, pids) = (job.memory_bytes as i64, job.pids);
        let modifier = move |hc: &mut HostConfig| {
            let bindings: HashMap<String, Option<Vec<PortBinding>>> = ports
                .iter()
                .map(|p| {
                    (
                        format!("{p}/tcp"),
                        Some(vec![PortBinding {
                            host_ip: Some(lo.clone()),
                            host_port: Some(String::new()),
                        }]),
                    )
                })
                .collect();
            hc.port_bindings = Some(bindings);
            hc.publish_all_ports = Some(false);
            hc.tmpfs = Some(HashMap::from([(
                "/tmp".to_string(),
                "rw,noexec,nosuid,nodev,size=16m".to_string(),
            )]));
            hc.memory = Some(memory);
            hc.memory_swap = Some(memory);
            hc.pids_limit = Some(pids);
        };
        let mut image = GenericImage::new(name, tag);
        for p in &job.ports {
            image = image.with_exposed_port(p.tcp());
        }
        let container = image
            .with_container_name(&job.container)
            .with_network(&job.network)
            .with_env_var("BOTTLE_DAEMONS", &job.daemons)
            .with_label("bt-bench", "true")
            .with_cap_drop("ALL")
            .with_security_opt("no-new-privileges")
            .with_readonly_rootfs(true)
            .with_host_config_modifier(modifier)
            .start()
            .await
            .map_err(|e| format!("testcontainers start on {}: {e}", self.engine.name()))?;
        let mapped = container
            .ports()
            .await
            .map_err(|e| format!("testcontainers ports: {e}"))?;
        let mut host_ports = BTreeMap::new();
        for p in &job.ports {
            let host = mapped
                .map_to_host_port_ipv4(ContainerPort::Tcp(*p))
                .ok_or_else(|| format!("testcontainers: no host port for {p}"))?;
            host_ports.insert(*p, host);
        }
        self.container = Some(container);
        contenders::wait_ports(job.loopback, &host_ports, contenders::connect_once).await?;
        Ok(Up {
            loopback: job.loopback,
            ports: host_ports,
            container: job.container.clone(),
            network: job.network.clone(),
        })
    }

    async fn down(&mut self) -> Result<(), String> {
        if let Some(c) = self.container.take() {
            // Removes the container; dropping it drops the last handle on the network, whose
            // removal testcontainers waits for before `rm` returns.
            c.rm()
                .await
                .map_err(|e| format!("testcontainers rm: {e}"))?;
        }
        Ok(())
    }
}
