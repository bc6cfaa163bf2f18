//! The service part's report: the contenders side by side, the targets (added latency, the
//! scan's share of a request), and where the CPU goes.

use std::fmt::Write as _;
use std::time::Duration;

use super::{Contender, Measured, Options, Sample, MANY_SECRETS, SSE_EVENTS};
use crate::report::Machine;
use crate::stats::{self, median, num, pairwise, summary, Summary};

/// The most a service may add to a request's p50 latency, ms.
pub const TARGET_ADDED_P50_MS: f64 = 1.0;
/// The most the scan with [`MANY_SECRETS`] secrets may take of a request's time, percent.
pub const TARGET_SCAN_PERCENT: f64 = 10.0;
/// The cores the latency target is stated for.
pub const TARGET_CORES: usize = 2;

/// One row of the side-by-side table.
#[derive(Debug, Clone, Copy)]
struct Metric {
    get: fn(&Sample) -> Option<f64>,
    decimals: usize,
}

fn metrics(o: &Options) -> [(String, Metric); 6] {
    let n = o.connections;
    [
        (
            format!("keep-alive, {n} connections: req/s"),
            Metric {
                get: |s| s.rps,
                decimals: 0,
            },
        ),
        (
            format!("keep-alive, {n} connections: p50 latency ms"),
            Metric {
                get: |s| s.load_p50_ms,
                decimals: 3,
            },
        ),
        (
            format!("keep-alive, {n} connections: p99 latency ms"),
            Metric {
                get: |s| s.load_p99_ms,
                decimals: 3,
            },
        ),
        (
            "one connection, one request at a time: p50 latency ms".into(),
            Metric {
                get: |s| s.p50_ms,
                decimals: 3,
            },
        ),
        (
            "one connection, one request at a time: p99 latency ms".into(),
            Metric {
                get: |s| s.p99_ms,
                decimals: 3,
            },
        ),
        (
            format!(
                "streamed response: time to first event ms (median of {})",
                o.ttfb_requests
            ),
            Metric {
                get: |s| s.ttfb_ms,
                decimals: 3,
            },
        ),
    ]
}

fn values(m: &Measured, c: Contender, f: impl Fn(&Sample) -> Option<f64>) -> Vec<Option<f64>> {
    stats::values(&m.rounds, &c, f)
}

/// `f(a, b)` round by round, skipping rounds where either failed.
fn paired(a: &[Option<f64>], b: &[Option<f64>], f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    a.iter()
        .zip(b)
        .filter_map(|(x, y)| Some(f((*x)?, (*y)?)))
        .collect()
}

fn spread(s: Option<Summary>, decimals: usize, unit: &str) -> String {
    s.map_or("–".into(), |s| {
        format!(
            "**{:.*}{unit}** ({:.*}–{:.*})",
            decimals, s.median, decimals, s.p25, decimals, s.p75
        )
    })
}

fn has(m: &Measured, c: Contender) -> bool {
    stats::has(&m.rounds, &c)
}

/// The side-by-side table.
fn table(out: &mut String, o: &Options, m: &Measured) {
    let _ = writeln!(
        out,
        "| measure | direct | service | service+{MANY_SECRETS} secrets | service ÷ direct | service+{MANY_SECRETS} ÷ service |\n|---|---:|---:|---:|---|---|"
    );
    for (name, metric) in metrics(o) {
        let cell = |c: Contender| num(median(&values(m, c, metric.get)), metric.decimals);
        let ratio = |a: Contender, b: Contender| {
            summary(&pairwise(
                &values(m, a, metric.get),
                &values(m, b, metric.get),
            ))
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} |",
            cell(Contender::Direct),
            cell(Contender::Service),
            cell(Contender::Service20),
            spread(ratio(Contender::Service, Contender::Direct), 2, "×"),
            spread(ratio(Contender::Service20, Contender::Service), 2, "×"),
        );
    }
    out.push('\n');
}

/// A verdict against an upper bound.
fn at_most(s: Option<Summary>, limit: f64, unit: &str) -> String {
    match s {
        None => "not measured".into(),
        Some(s) if s.median <= limit => "met".into(),
        Some(s) => format!("**missed** ({:.2}{unit} over {limit}{unit})", s.median),
    }
}

/// The targets, and the differences behind them.
fn targets(out: &mut String, o: &Options, machine: &Machine, m: &Measured) {
    let (d, s, s20) = (Contender::Direct, Contender::Service, Contender::Service20);
    let diff = |a: Contender, b: Contender, f: fn(&Sample) -> Option<f64>| {
        summary(&paired(&values(m, a, f), &values(m, b, f), |x, y| x - y))
    };
    let cores = if machine.cpus == TARGET_CORES {
        format!("{TARGET_CORES} cores, as here")
    } else {
        format!(
            "stated for {TARGET_CORES} cores; this machine has {}",
            machine.cpus
        )
    };
    let _ = writeln!(
        out,
        "Targets. Differences and shares are taken round by round and shown as median (p25–p75). \
         The added latency is the one-connection measure's (an agent making one call at a time); \
         under load, latency follows throughput and is shown without a target.\n\n\
         | target | figure | verdict |\n|---|---|---|"
    );
    let added = diff(s, d, |x| x.p50_ms);
    let _ = writeln!(
        out,
        "| added p50 latency, service − direct ≤ {TARGET_ADDED_P50_MS} ms ({cores}) | {} | {} |",
        spread(added, 3, " ms"),
        at_most(added, TARGET_ADDED_P50_MS, " ms"),
    );
    let added20 = diff(s20, d, |x| x.p50_ms);
    let _ = writeln!(
        out,
        "| added p50 latency, service+{MANY_SECRETS} secrets − direct ≤ {TARGET_ADDED_P50_MS} ms | {} | {} |",
        spread(added20, 3, " ms"),
        at_most(added20, TARGET_ADDED_P50_MS, " ms"),
    );
    // The whole scan, timed alone, over the time of a request that pays for it.
    let alone = summary(&paired(
        &m.scan
            .many_secrets_us
            .iter()
            .map(|v| Some(*v))
            .collect::<Vec<_>>(),
        &values(m, s20, |x| x.p50_ms),
        |us, ms| us / (ms * 1000.0) * 100.0,
    ));
    let _ = writeln!(
        out,
        "| the scan with {MANY_SECRETS} secrets ≤ {TARGET_SCAN_PERCENT}% of a request's time: the whole scan timed alone (head and body, {} bytes) ÷ service+{MANY_SECRETS}'s one-connection p50 | {} | {} |",
        m.scan.bytes,
        spread(alone, 2, "%"),
        at_most(alone, TARGET_SCAN_PERCENT, "%"),
    );
    // End to end, service+20 against service: under load the time per request is 1 / rate,
    // so what the 19 more secrets take of it is 1 − rate20 / rate1.
    let rate_share = summary(&paired(
        &values(m, s20, |x| x.rps),
        &values(m, s, |x| x.rps),
        |x, y| (1.0 - x / y) * 100.0,
    ));
    let _ = writeln!(
        out,
        "| the same end to end, service+{MANY_SECRETS} secrets against service, under load: 1 − (service+{MANY_SECRETS} req/s ÷ service req/s) | {} | {} |",
        spread(rate_share, 1, "%"),
        at_most(rate_share, TARGET_SCAN_PERCENT, "%"),
    );
    // One request at a time the difference is two medians of a few hundred µs apart, within
    // what thread wake-ups move them: shown, not judged.
    let one_conn = summary(&paired(
        &values(m, s20, |x| x.p50_ms),
        &values(m, s, |x| x.p50_ms),
        |x, y| (x - y) / x * 100.0,
    ));
    let _ = writeln!(
        out,
        "| (no target: within the wake-up noise) the same, one connection: (service+{MANY_SECRETS} p50 − service p50) ÷ service+{MANY_SECRETS} p50 | {} | – |",
        spread(one_conn, 1, "%"),
    );
    let ttfb = diff(s, d, |x| x.ttfb_ms);
    let gap_ms = o.sse_gap.as_secs_f64() * 1000.0;
    // Buffered, a response's first event would come with its last, (events − 1) gaps in.
    let medians: Vec<f64> = [d, s, s20]
        .iter()
        .flat_map(|c| values(m, *c, |x| x.ttfb_ms))
        .flatten()
        .collect();
    let worst_median = medians.iter().copied().reduce(f64::max);
    let slowest = [d, s, s20]
        .iter()
        .flat_map(|c| values(m, *c, |x| x.ttfb_max_ms))
        .flatten()
        .reduce(f64::max);
    let _ = writeln!(
        out,
        "| streamed, not buffered: each round's median first event before the upstream's second ({gap_ms:.0} ms later) | added time to first event {}; slowest round's median {} ms, slowest single first event {} ms | {} |",
        spread(ttfb, 3, " ms"),
        num(worst_median, 3),
        num(slowest, 3),
        match worst_median {
            None => "not measured".to_string(),
            Some(v) if v < gap_ms => "met".to_string(),
            Some(v) => format!("**missed** ({v:.1} ms)"),
        }
    );
    let load = diff(s, d, |x| x.load_p50_ms);
    let p99 = diff(s, d, |x| x.p99_ms);
    let _ = writeln!(
        out,
        "| (no target) added p99, one connection; added p50 under load ({} connections) | {}; {} | – |",
        o.connections,
        spread(p99, 3, " ms"),
        spread(load, 3, " ms"),
    );
    out.push('\n');
}

/// Where the CPU goes.
fn costs(out: &mut String, m: &Measured) {
    let _ = writeln!(
        out,
        "Where the CPU goes in the throughput measure (medians over the rounds; each thread's \
         run time from `/proc/self/task/*/schedstat`): service / upstream / load generator = \
         all three, and in parentheses that total over direct's, round by round. Direct's \
         client does the TLS the service does otherwise. The service thread's time in the \
         kernel (from its user and system ticks) is mostly loopback TCP: the service adds a \
         socket pair to every request's path.\n\n\
         | contender | CPU µs per request | service thread in the kernel | failed requests |\n|---|---|---:|---:|"
    );
    for c in Contender::ALL {
        if !has(m, c) {
            continue;
        }
        let parts = (0..3)
            .map(|i| num(median(&values(m, c, |s| s.cpu_us[i])), 1))
            .collect::<Vec<_>>()
            .join(" / ");
        let total = |s: &Sample| Some(s.cpu_us[1]? + s.cpu_us[2]? + s.cpu_us[0].unwrap_or(0.0));
        let totals = values(m, c, total);
        let vs = summary(&pairwise(&totals, &values(m, Contender::Direct, total)));
        let errors: u64 = m
            .rounds
            .get(&c)
            .map(|v| v.iter().flatten().map(|s| s.errors).sum())
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "| {} | {parts} = {}{} | {} | {errors} |",
            c.name(),
            num(median(&totals), 1),
            match (c, vs) {
                (Contender::Direct, _) | (_, None) => String::new(),
                (_, Some(r)) => format!(" ({:.2}×)", r.median),
            },
            median(&values(m, c, |s| s.service_kernel_percent))
                .map_or("–".into(), |v| format!("{v:.0}%")),
        );
    }
    let one = summary(&m.scan.one_secret_us);
    let many = summary(&m.scan.many_secrets_us);
    let _ = writeln!(
        out,
        "\nThe scan alone, per request ({} bytes: the head's pieces as the service scans them, and the \
         body), outside any request, on the load generator's thread: {} µs with 1 secret, {} µs with \
         {MANY_SECRETS} (each round the median of 9 batches; the median over \
         the rounds). Timed alone, the scan finds its automata in the cache; inside the service, \
         between the sockets, HTTP and TLS, it mostly does not, so there it costs more: this is \
         a lower bound, and the service thread's CPU per request above (service+{MANY_SECRETS} \
         against service) is the end-to-end reading.\n",
        m.scan.bytes,
        num(one.map(|s| s.median), 2),
        num(many.map(|s| s.median), 2),
    );
}

/// The whole report.
pub fn render(opts: &Options, machine: &Machine, m: &Measured, took: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        machine.heading(
            &opts.command,
            took,
            "Run it with `cargo bench -p bottle-bench --bench service -- [options]` (`-- --help` \
             lists them); `cargo build --profile bench-run -p bottle-bench --bench service` \
             builds it release-like.",
            "The upstream, the service and the load generator run in this one process, each on \
             a thread of its own with a single-threaded runtime, unpinned on these cores.",
        )
    );
    let _ = writeln!(
        out,
        "{} timed rounds after {} warm-up round(s), contenders alternating round by round (the \
         order rotated each round and reversed every other round). Each round and contender: \
         {} keep-alive `POST` requests ({} byte JSON body, a small JSON answer) from {} \
         concurrent connections, then {} one after another on one connection, then {} streamed \
         responses ({SSE_EVENTS} server-sent events, the first at once, then one every {} ms), \
         each measure capped at {} s. `direct` speaks TLS to the upstream itself with the key \
         in its request; `service` speaks plain HTTP to a service endpoint, which adds the key \
         and whose scanner knows that one secret; `service+{MANY_SECRETS} secrets` is a second \
         endpoint whose scanner knows {MANY_SECRETS} secrets of 20–108 characters. Every \
         connection is opened before the clock starts.{}\n",
        opts.rounds,
        opts.warmup,
        opts.requests,
        opts.body_bytes,
        opts.connections,
        opts.latency_requests,
        opts.ttfb_requests,
        opts.sse_gap.as_millis(),
        opts.cap.as_secs(),
        if m.notes.is_empty() {
            String::new()
        } else {
            format!(" {}.", m.notes.join("; "))
        }
    );
    let _ = writeln!(
        out,
        "Medians over the rounds; ratios are taken round by round and shown as median \
         (p25–p75), and for the latencies a ratio above 1 means slower.\n"
    );
    table(&mut out, opts, m);
    targets(&mut out, opts, machine, m);
    costs(&mut out, m);
    if !m.failures.is_empty() {
        let _ = writeln!(out, "Failures:\n");
        for f in &m.failures {
            let _ = writeln!(out, "- {f}");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(p50: f64, rps: f64) -> Option<Sample> {
        Some(Sample {
            rps: Some(rps),
            p50_ms: Some(p50),
            ttfb_ms: Some(p50),
            ttfb_max_ms: Some(p50),
            ..Sample::default()
        })
    }

    fn machine() -> Machine {
        let mut m = Machine::read();
        m.cpus = TARGET_CORES;
        m
    }

    #[test]
    fn verdicts_follow_the_differences() {
        let o = Options::default();
        let mut m = Measured::default();
        m.rounds.insert(
            Contender::Direct,
            vec![sample(0.2, 10.0), sample(0.2, 10.0)],
        );
        m.rounds
            .insert(Contender::Service, vec![sample(0.5, 8.0), sample(0.6, 8.0)]);
        m.rounds.insert(
            Contender::Service20,
            vec![sample(0.52, 7.9), sample(0.62, 7.9)],
        );
        m.scan.many_secrets_us = vec![5.0, 5.0];
        let mut out = String::new();
        targets(&mut out, &o, &machine(), &m);
        let row = |start: &str| {
            out.lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_default()
                .to_string()
        };
        let added = row("| added p50 latency, service − direct");
        assert!(
            added.contains("**0.350 ms**") && added.ends_with("| met |"),
            "{added}"
        );
        assert!(row("| the scan with").ends_with("| met |"), "{out}");
        m.rounds
            .insert(Contender::Service, vec![sample(1.5, 8.0), sample(1.6, 8.0)]);
        m.rounds.insert(
            Contender::Service20,
            vec![sample(2.0, 6.0), sample(2.2, 6.0)],
        );
        let mut out = String::new();
        targets(&mut out, &o, &machine(), &m);
        assert!(out.contains("**missed** (1.35 ms over 1 ms)"), "{out}");
        assert!(out
            .lines()
            .any(|l| l.starts_with("| the same end to end") && l.contains("**missed**")));
    }

    #[test]
    fn the_report_renders_with_nothing_measured() {
        let out = render(
            &Options::default(),
            &machine(),
            &Measured::default(),
            Duration::from_secs(1),
        );
        assert!(out.contains("| target | figure | verdict |"));
        assert!(out.contains("not measured"));
    }
}
