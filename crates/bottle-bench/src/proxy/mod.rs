//! The proxy part of `cargo xtask bench`: bottle's egress proxy against direct (no proxy),
//! tinyproxy and squid, on loopback.
//!
//! - [`upstream`]: the upstream (hyper server, tunnel sink and source), a process of its own;
//! - [`load`]: the bounded load generator (new connection per request, keep-alive, tunnel);
//! - [`peers`]: starting and stopping the proxies, their configurations, CPU time;
//! - [`report`]: medians, ratios, the table and the targets.
//!
//! Every contender measures the same four things in each round: new-connection requests
//! (req/s, p50 and p99 latency), keep-alive requests (req/s), and one `CONNECT` tunnel each way
//! (MB/s). Contenders alternate round by round, the order rotated each round and reversed every
//! other round, as in the engine part.

pub mod load;
pub mod peers;
pub mod report;
pub mod upstream;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;

use crate::args;
use crate::report::Machine;
use load::{Direction, Endpoint};
use peers::{Contender, Programs, Proxy};
use upstream::Upstream;

pub const USAGE: &str = "\
cargo xtask bench proxy [options]

The proxy part: bottle's egress proxy (`bottle-sidecars daemon egress`) against direct (no
proxy), tinyproxy and squid, all on loopback in front of one upstream (a hyper server and a TCP
sink/source started by this benchmark). No container engine is involved.

  --rounds N               timed rounds per contender [5]
  --warmup N               untimed rounds per contender first [1]
  --contenders a,b,...     direct,bottle,tinyproxy,squid [all]
  --connections N          concurrent client connections [16]
  --requests N             requests per new-connection measure [20000]
  --keepalive-requests N   requests per keep-alive measure [60000]
  --tunnel-mb N            MB through the tunnel, each way [512]
  --cap SECONDS            time cap of each request measure [5]; a tunnel gets 6 times that
  --sidecars-bin PATH      the bottle-sidecars binary (cargo xtask bench proxy passes it)
  --tinyproxy PATH         [tinyproxy on PATH or in /usr/sbin]
  --squid PATH             [squid on PATH or in /usr/sbin]
  --out PATH               the report [target/bench/proxy.md]
  --update-doc PATH        also replace the proxy results section of this file
  --command TEXT           the command line shown in the report

A contender whose program is missing is left out with a note (cargo xtask bench proxy installs
tinyproxy and squid with apt-get when they are absent). bottle's proxy inherits the environment:
BOTTLE_EGRESS_* settings given that way (BOTTLE_EGRESS_THREADS=1, say) are named in the report.
";

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: usize,
    pub warmup: usize,
    pub contenders: Vec<Contender>,
    pub connections: usize,
    pub requests: u64,
    pub keepalive_requests: u64,
    pub tunnel_mb: u64,
    pub cap: Duration,
    pub programs: Programs,
    pub out: PathBuf,
    pub update_doc: Option<PathBuf>,
    pub command: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rounds: 5,
            warmup: 1,
            contenders: Contender::ALL.to_vec(),
            connections: 16,
            requests: 20_000,
            keepalive_requests: 60_000,
            tunnel_mb: 512,
            cap: Duration::from_secs(5),
            programs: Programs::default(),
            out: PathBuf::from("target/bench/proxy.md"),
            update_doc: None,
            command: "cargo xtask bench proxy".into(),
        }
    }
}

impl Options {
    /// Parses the command line (without the program name).
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options::default();
        for (flag, v) in args::pairs(args, USAGE)? {
            match flag {
                "--rounds" => o.rounds = args::number::<u64>(v, flag)?.max(1) as usize,
                "--warmup" => o.warmup = args::number::<u64>(v, flag)? as usize,
                "--contenders" => o.contenders = args::list(v, Contender::parse, flag)?,
                "--connections" => {
                    o.connections = args::number::<u64>(v, flag)?.clamp(1, 512) as usize
                }
                "--requests" => o.requests = args::number::<u64>(v, flag)?.max(1),
                "--keepalive-requests" => {
                    o.keepalive_requests = args::number::<u64>(v, flag)?.max(1)
                }
                "--tunnel-mb" => o.tunnel_mb = args::number::<u64>(v, flag)?.clamp(1, 16_384),
                "--cap" => o.cap = Duration::from_secs(args::number::<u64>(v, flag)?.clamp(1, 600)),
                "--sidecars-bin" => o.programs.sidecars = Some(PathBuf::from(v)),
                "--tinyproxy" => o.programs.tinyproxy = Some(PathBuf::from(v)),
                "--squid" => o.programs.squid = Some(PathBuf::from(v)),
                "--out" => o.out = PathBuf::from(v),
                "--update-doc" => o.update_doc = Some(PathBuf::from(v)),
                "--command" => o.command = v.to_string(),
                _ => return Err(format!("unknown option {flag}\n\n{USAGE}")),
            }
        }
        if o.programs.tinyproxy.is_none() {
            o.programs.tinyproxy = peers::find_program("tinyproxy");
        }
        if o.programs.squid.is_none() {
            o.programs.squid = peers::find_program("squid");
        }
        if !o.contenders.contains(&Contender::Direct) {
            // Every ratio is against direct.
            o.contenders.insert(0, Contender::Direct);
        }
        Ok(o)
    }
}

/// One contender's measures in one round (`None`: that measure failed).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sample {
    pub new_rps: Option<f64>,
    pub new_p50_ms: Option<f64>,
    pub new_p99_ms: Option<f64>,
    pub keepalive_rps: Option<f64>,
    pub tunnel_up_mbs: Option<f64>,
    pub tunnel_down_mbs: Option<f64>,
    /// CPU µs per new-connection request: the proxy's process, the upstream's, the client's.
    pub new_cpu_us: [Option<f64>; 3],
    /// The same for keep-alive requests.
    pub keepalive_cpu_us: [Option<f64>; 3],
    /// CPU seconds per GB through the tunnel (both ways together): proxy, upstream, client.
    pub tunnel_cpu_s_per_gb: [Option<f64>; 3],
    /// Upstream connections per request, new-connection and keep-alive.
    pub upstream_conns_per_req: [Option<f64>; 2],
    /// Client connections per keep-alive request (1/16000 when every connection held).
    pub keepalive_client_conns_per_req: Option<f64>,
    /// The proxy's context switches per request, new-connection and keep-alive.
    pub proxy_switches_per_req: [Option<f64>; 2],
    /// Requests that failed, new-connection and keep-alive.
    pub errors: [u64; 2],
    /// What failed, one line each.
    pub failures: Vec<String>,
}

/// CPU seconds of the proxy (if any), the upstream and this process.
fn cpu(proxy: Option<u32>, upstream: u32) -> [Option<f64>; 3] {
    [
        proxy.and_then(peers::cpu_seconds),
        peers::cpu_seconds(upstream),
        peers::cpu_seconds(std::process::id()),
    ]
}

/// The CPU used between two readings, per `unit`, times `scale`.
fn per(
    before: [Option<f64>; 3],
    after: [Option<f64>; 3],
    unit: f64,
    scale: f64,
) -> [Option<f64>; 3] {
    let mut out = [None; 3];
    for i in 0..3 {
        if let (Some(a), Some(b)) = (before[i], after[i]) {
            if unit > 0.0 {
                out[i] = Some((b - a) / unit * scale);
            }
        }
    }
    out
}

/// The proxy's context switches per request since reading `before`.
fn switches(before: Option<u64>, pid: Option<u32>, requests: u64) -> Option<f64> {
    let (before, after) = (before?, peers::context_switches(pid?)?);
    (requests > 0).then(|| after.saturating_sub(before) as f64 / requests as f64)
}

/// Upstream connections per request over a measure (the stats request itself excluded).
async fn conns_per_req(up: Upstream, before: Option<(u64, u64)>, requests: u64) -> Option<f64> {
    let after = load::upstream_stats(up).await.ok()?;
    let (c0, _) = before?;
    (requests > 0).then(|| after.0.saturating_sub(c0 + 1) as f64 / requests as f64)
}

/// One round of one contender.
async fn measure(
    ep: Endpoint,
    proxy_pid: Option<u32>,
    upstream_pid: u32,
    opts: &Options,
) -> Sample {
    let mut s = Sample::default();
    let up = ep.upstream;

    let stats = load::upstream_stats(up).await.ok();
    let c0 = cpu(proxy_pid, upstream_pid);
    let x0 = proxy_pid.and_then(peers::context_switches);
    let r = load::new_connections(ep, opts.connections, opts.requests, opts.cap).await;
    let c1 = cpu(proxy_pid, upstream_pid);
    s.proxy_switches_per_req[0] = switches(x0, proxy_pid, r.completed);
    s.upstream_conns_per_req[0] = conns_per_req(up, stats, r.completed + r.errors).await;
    s.errors[0] = r.errors;
    if let Some(e) = &r.first_error {
        s.failures.push(format!(
            "new-connection: {} of {} requests failed, e.g. {e}",
            r.errors,
            r.errors + r.completed
        ));
    }
    if r.completed > 0 {
        s.new_rps = Some(r.per_second());
        let lat = crate::stats::summary(&r.latencies_ms);
        let mut sorted = r.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        s.new_p50_ms = lat.map(|l| l.median);
        s.new_p99_ms = sorted
            .get(((sorted.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
            .copied();
        s.new_cpu_us = per(c0, c1, r.completed as f64, 1e6);
    }

    let stats = load::upstream_stats(up).await.ok();
    let c0 = cpu(proxy_pid, upstream_pid);
    let x0 = proxy_pid.and_then(peers::context_switches);
    let r = load::keep_alive(ep, opts.connections, opts.keepalive_requests, opts.cap).await;
    let c1 = cpu(proxy_pid, upstream_pid);
    s.proxy_switches_per_req[1] = switches(x0, proxy_pid, r.completed);
    s.upstream_conns_per_req[1] = conns_per_req(up, stats, r.completed + r.errors).await;
    s.errors[1] = r.errors;
    if let Some(e) = &r.first_error {
        s.failures.push(format!(
            "keep-alive: {} of {} requests failed, e.g. {e}",
            r.errors,
            r.errors + r.completed
        ));
    }
    if r.completed > 0 {
        s.keepalive_rps = Some(r.per_second());
        s.keepalive_cpu_us = per(c0, c1, r.completed as f64, 1e6);
        s.keepalive_client_conns_per_req = Some(r.connections as f64 / r.completed as f64);
    }

    let bytes = opts.tunnel_mb * 1_000_000;
    let c0 = cpu(proxy_pid, upstream_pid);
    let mut moved = 0u64;
    for (dir, slot) in [
        (Direction::Up, &mut s.tunnel_up_mbs),
        (Direction::Down, &mut s.tunnel_down_mbs),
    ] {
        match load::tunnel(ep, dir, bytes, opts.cap * 6).await {
            Ok(mbs) => {
                *slot = Some(mbs);
                moved += bytes;
            }
            Err(e) => s.failures.push(format!("tunnel {dir:?}: {e}")),
        }
    }
    let c1 = cpu(proxy_pid, upstream_pid);
    s.tunnel_cpu_s_per_gb = per(c0, c1, moved as f64 / 1e9, 1.0);
    s
}

/// Prints a progress line on stderr.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "bench proxy: {line}");
}

/// The upstream process (this executable as `__upstream`), killed on drop.
async fn start_upstream() -> Result<(tokio::process::Child, Upstream), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this benchmark: {e}"))?;
    let mut child = tokio::process::Command::new(exe)
        .arg("__upstream")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the upstream: {e}"))?;
    let stdout = child.stdout.take().ok_or("the upstream has no stdout")?;
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .map_err(|_| "the upstream did not say where it listens".to_string())?
    .map_err(|e| format!("reading the upstream's ports: {e}"))?;
    let up = Upstream::parse(&line).ok_or_else(|| format!("the upstream said {line:?}"))?;
    Ok((child, up))
}

/// A temporary directory for the proxies' configurations and logs, removed on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, String> {
        use std::os::unix::fs::PermissionsExt;
        let p = std::env::temp_dir().join(format!("bottle-bench-proxy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).map_err(|e| format!("creating {}: {e}", p.display()))?;
        // The peers drop root for their own users and write their logs here.
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755));
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Everything measured.
#[derive(Debug, Default)]
pub struct Measured {
    /// Per contender, one entry per timed round (`None`: the contender was not running).
    pub rounds: BTreeMap<Contender, Vec<Option<Sample>>>,
    /// Per contender, its version line.
    pub versions: BTreeMap<Contender, String>,
    /// Contenders left out, and why.
    pub skipped: Vec<String>,
    /// What went wrong, one line each.
    pub failures: Vec<String>,
}

/// Runs the whole proxy part.
pub async fn drive(opts: Options) -> Result<(), String> {
    let started = Instant::now();
    let mut machine = Machine::read();
    let dir = TempDir::new()?;
    let (mut upstream_child, up) = start_upstream().await?;
    let upstream_pid = upstream_child.id().ok_or("the upstream exited at once")?;
    say(&format!(
        "upstream: http on {}, tunnel sink/source on {}",
        up.http, up.tunnel
    ));

    let mut m = Measured::default();
    let mut proxies: BTreeMap<Contender, Proxy> = BTreeMap::new();
    let mut contenders = Vec::new();
    for &c in &opts.contenders {
        if c == Contender::Direct {
            contenders.push(c);
            continue;
        }
        match peers::start(c, &opts.programs, up, &dir.0) {
            Ok(p) => {
                say(&format!("{} listening on {}", c.name(), p.addr));
                m.versions.insert(c, opts.programs.version(c));
                proxies.insert(c, p);
                contenders.push(c);
            }
            Err(e) => {
                say(&format!("leaving {} out: {e}", c.name()));
                m.skipped.push(format!("{}: {e}", c.name()));
            }
        }
    }

    let total = opts.warmup + opts.rounds;
    let k = contenders.len();
    for r in 0..total {
        let timed = r >= opts.warmup;
        for i in 0..k {
            let j = if r % 2 == 1 { k - 1 - i } else { i };
            let c = contenders[(j + r) % k];
            // A proxy that died is restarted once per round, and the round says so.
            if let Some(p) = proxies.get_mut(&c) {
                if !p.running() {
                    let why = p.diagnostics();
                    m.failures.push(format!(
                        "{} had exited before round {}: {why}",
                        c.name(),
                        r + 1
                    ));
                    proxies.remove(&c);
                    match peers::start(c, &opts.programs, up, &dir.0) {
                        Ok(p) => {
                            proxies.insert(c, p);
                        }
                        Err(e) => {
                            m.failures.push(format!("{} restart: {e}", c.name()));
                            if timed {
                                m.rounds.entry(c).or_default().push(None);
                            }
                            continue;
                        }
                    }
                }
            }
            let proxy = proxies.get(&c);
            let ep = Endpoint {
                proxy: proxy.map(|p| p.addr),
                upstream: up,
            };
            let s = measure(ep, proxy.map(Proxy::pid), upstream_pid, &opts).await;
            say(&format!(
                "{} round {}{}: new-connection {} req/s (p50 {} ms, p99 {} ms), keep-alive {} req/s, tunnel up {} MB/s, down {} MB/s{}",
                c.name(),
                r + 1,
                if timed { "" } else { " (warm-up)" },
                crate::stats::num(s.new_rps, 0),
                crate::stats::num(s.new_p50_ms, 2),
                crate::stats::num(s.new_p99_ms, 2),
                crate::stats::num(s.keepalive_rps, 0),
                crate::stats::num(s.tunnel_up_mbs, 0),
                crate::stats::num(s.tunnel_down_mbs, 0),
                if s.failures.is_empty() {
                    String::new()
                } else {
                    format!("; {}", s.failures.join("; "))
                }
            ));
            for f in &s.failures {
                m.failures
                    .push(format!("{} round {}: {f}", c.name(), r + 1));
            }
            if timed {
                m.rounds.entry(c).or_default().push(Some(s));
            }
        }
    }
    drop(proxies);
    let _ = upstream_child.kill().await;
    drop(dir);
    machine.finish();

    let text = report::render(&opts, &machine, &m, started.elapsed());
    crate::report::publish(
        &text,
        &opts.out,
        opts.update_doc.as_deref(),
        report::update_doc,
    )?;
    say(&format!(
        "report written to {} ({:.0} s in all)",
        opts.out.display(),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_default_and_direct_is_always_measured() {
        let o = Options::parse(&["--contenders".into(), "bottle".into()]).unwrap();
        assert_eq!(o.contenders, vec![Contender::Direct, Contender::Bottle]);
        let o = Options::parse(&[]).unwrap();
        assert_eq!(o.contenders, Contender::ALL.to_vec());
        assert!(Options::parse(&["--rounds".into()]).is_err());
        assert!(Options::parse(&["--nope".into(), "1".into()]).is_err());
    }
}
