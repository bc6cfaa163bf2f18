//! The service part of `cargo xtask bench`: a service endpoint (`bottle_sidecars::services`)
//! against talking TLS to the same upstream directly, on loopback.
//!
//! This module holds what needs no TLS and no sidecar code: the options, one round's measures,
//! and the report ([`report`]). The upstream, the service and the load generator are in the
//! bench target (`benches/service.rs`), which has the dev-dependencies (rustls, rcgen,
//! bottle-sidecars).
//!
//! Every contender measures the same things in each round: keep-alive requests from N
//! concurrent connections (req/s, p50 and p99 latency under that load), requests one after
//! another on one connection (p50 and p99: the latency an agent making one call at a time
//! sees), and the time to first byte of a streamed (server-sent events) response. Contenders
//! alternate round by round, the order rotated each round and reversed every other round.

pub mod report;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::args;

pub const USAGE: &str = "\
cargo bench -p bottle-bench --bench service -- [options]

The service part: a service endpoint (plain HTTP in, TLS out, a credential header injected, the
request scanned for secrets) against a client that speaks TLS to the same upstream itself, all
on loopback in one process: the upstream, the service and the load generator each on a thread
of their own with a single-threaded runtime (the bundle runs its services that way).

  --rounds N               timed rounds per contender [7]
  --warmup N               untimed rounds per contender first [1]
  --contenders a,b,...     direct,service,service+20 [all]
  --connections N          concurrent keep-alive connections of the throughput measure [16]
  --requests N             requests of the throughput measure [20000]
  --latency-requests N     requests one after another on one connection [5000]
  --ttfb-requests N        streamed responses whose first byte is timed [50]
  --sse-gap-ms N           the upstream's gap between its streamed events (3 of them) [10]
  --body-bytes N           size of each request's JSON body [1024]
  --cap SECONDS            time cap of each measure [5]
  --out PATH               the report [target/bench/service.md]; a relative path is the
                           workspace's (cargo bench runs this in crates/bottle-bench)
  --command TEXT           the command line shown in the report
";

/// The contenders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Contender {
    /// The load generator speaks TLS to the upstream itself, with the key.
    Direct,
    /// Plain HTTP to the service, whose scanner knows the one injected secret.
    Service,
    /// The same with 20 secrets in the scanner.
    Service20,
}

impl Contender {
    pub const ALL: [Contender; 3] = [Contender::Direct, Contender::Service, Contender::Service20];

    pub fn name(self) -> &'static str {
        match self {
            Contender::Direct => "direct",
            Contender::Service => "service",
            Contender::Service20 => "service+20 secrets",
        }
    }

    pub fn parse(s: &str) -> Option<Contender> {
        match s {
            "direct" => Some(Contender::Direct),
            "service" => Some(Contender::Service),
            "service+20" | "service+20 secrets" | "service20" => Some(Contender::Service20),
            _ => None,
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: usize,
    pub warmup: usize,
    pub contenders: Vec<Contender>,
    pub connections: usize,
    pub requests: u64,
    pub latency_requests: u64,
    pub ttfb_requests: u64,
    pub sse_gap: Duration,
    pub body_bytes: usize,
    pub cap: Duration,
    pub out: PathBuf,
    pub command: String,
}

/// How many events the upstream streams per response (the first at once).
pub const SSE_EVENTS: u32 = 3;
/// How many secrets the second service's scanner holds.
pub const MANY_SECRETS: usize = 20;

impl Default for Options {
    fn default() -> Self {
        Options {
            rounds: 7,
            warmup: 1,
            contenders: Contender::ALL.to_vec(),
            connections: 16,
            requests: 20_000,
            latency_requests: 5_000,
            ttfb_requests: 50,
            sse_gap: Duration::from_millis(10),
            body_bytes: 1024,
            cap: Duration::from_secs(5),
            out: PathBuf::from("target/bench/service.md"),
            command: "cargo bench -p bottle-bench --bench service".into(),
        }
    }
}

impl Options {
    /// Parses the command line (without the program name).
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options::default();
        for (flag, v) in args::pairs(args, USAGE)? {
            match flag {
                "--rounds" => o.rounds = args::number::<u64>(v, flag)?.clamp(1, 1000) as usize,
                "--warmup" => o.warmup = args::number::<u64>(v, flag)?.min(100) as usize,
                "--contenders" => o.contenders = args::list(v, Contender::parse, flag)?,
                "--connections" => {
                    o.connections = args::number::<u64>(v, flag)?.clamp(1, 512) as usize
                }
                "--requests" => o.requests = args::number::<u64>(v, flag)?.max(1),
                "--latency-requests" => o.latency_requests = args::number::<u64>(v, flag)?.max(1),
                "--ttfb-requests" => {
                    o.ttfb_requests = args::number::<u64>(v, flag)?.clamp(1, 10_000)
                }
                "--sse-gap-ms" => {
                    o.sse_gap = Duration::from_millis(args::number::<u64>(v, flag)?.min(1000))
                }
                "--body-bytes" => {
                    o.body_bytes = args::number::<u64>(v, flag)?.min(1 << 20) as usize
                }
                "--cap" => o.cap = Duration::from_secs(args::number::<u64>(v, flag)?.clamp(1, 600)),
                "--out" => o.out = PathBuf::from(v),
                "--command" => o.command = v.to_string(),
                _ => return Err(format!("unknown option {flag}\n\n{USAGE}")),
            }
        }
        o.contenders.dedup();
        for c in [Contender::Service, Contender::Direct] {
            // Every comparison is against direct, and the scan's against the plain service.
            if !o.contenders.contains(&c) {
                o.contenders.insert(0, c);
            }
        }
        Ok(o)
    }
}

/// One contender's measures in one round (`None`: that measure failed).
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Keep-alive requests per second from `connections` connections.
    pub rps: Option<f64>,
    /// Latency under that load, ms.
    pub load_p50_ms: Option<f64>,
    pub load_p99_ms: Option<f64>,
    /// Requests one after another on one connection, ms.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Time to the first event of a streamed response, median, ms.
    pub ttfb_ms: Option<f64>,
    /// The slowest first event, ms (above the gap between events means buffering).
    pub ttfb_max_ms: Option<f64>,
    /// CPU µs per request of the throughput measure: the service's thread, the upstream's, the
    /// load generator's.
    pub cpu_us: [Option<f64>; 3],
    /// The share of the service thread's CPU time spent in the kernel in that measure, %.
    pub service_kernel_percent: Option<f64>,
    /// Requests that failed, over all the measures.
    pub errors: u64,
    /// What failed, one line each.
    pub failures: Vec<String>,
}

/// The scan alone, outside any request: what `Scanner::scan` costs on one request's head and
/// body, per scanner, in µs (one value per timed round).
#[derive(Debug, Clone, Default)]
pub struct ScanCost {
    pub one_secret_us: Vec<f64>,
    pub many_secrets_us: Vec<f64>,
    /// The bytes scanned per request (the head's pieces, and the body).
    pub bytes: usize,
}

/// Everything measured.
#[derive(Debug, Default)]
pub struct Measured {
    /// Per contender, one entry per timed round.
    pub rounds: BTreeMap<Contender, Vec<Option<Sample>>>,
    pub scan: ScanCost,
    /// Versions and settings worth naming (rustls, the TLS version negotiated).
    pub notes: Vec<String>,
    /// What went wrong, one line each.
    pub failures: Vec<String>,
}

/// The `q`-quantile (0..=1) of a sample, nearest rank; `None` when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_keep_the_references() {
        let o = Options::parse(&["--contenders".into(), "service+20".into()]).unwrap();
        assert_eq!(o.contenders, Contender::ALL.to_vec());
        let o = Options::parse(&["--bench".into(), "--rounds".into(), "2".into()]).unwrap();
        assert_eq!(o.rounds, 2);
        assert!(Options::parse(&["--nope".into(), "1".into()]).is_err());
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(50.0));
        assert_eq!(quantile(&v, 0.99), Some(99.0));
        assert_eq!(quantile(&[3.0], 0.99), Some(3.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
