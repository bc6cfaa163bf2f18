//! The proxy part's report: every contender side by side with bottle's ratios against direct and
//! against each peer, the targets, and where the CPU goes.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use super::peers::Contender;
use super::{Measured, Options, Sample};
use crate::report::Machine;
use crate::stats::{self, median, num, pairwise, summary, Summary};

/// Where the proxy results section of the benchmarks document starts and ends.
pub const BEGIN: &str = "<!-- bench-proxy:begin -->";
pub const END: &str = "<!-- bench-proxy:end -->";

/// The least fraction of direct bottle's proxy must reach on each throughput measure.
pub const TARGET_VS_DIRECT: f64 = 0.8;

/// One row of the table.
#[derive(Debug, Clone, Copy)]
struct Metric {
    name: &'static str,
    get: fn(&Sample) -> Option<f64>,
    /// Throughput (higher is better, a target) or latency (lower is better, shown only).
    throughput: bool,
    decimals: usize,
}

const METRICS: [Metric; 6] = [
    Metric {
        name: "new connection per request: req/s",
        get: |s| s.new_rps,
        throughput: true,
        decimals: 0,
    },
    Metric {
        name: "new connection per request: p50 latency ms",
        get: |s| s.new_p50_ms,
        throughput: false,
        decimals: 2,
    },
    Metric {
        name: "new connection per request: p99 latency ms",
        get: |s| s.new_p99_ms,
        throughput: false,
        decimals: 2,
    },
    Metric {
        name: "keep-alive: req/s",
        get: |s| s.keepalive_rps,
        throughput: true,
        decimals: 0,
    },
    Metric {
        name: "CONNECT tunnel, client to upstream: MB/s",
        get: |s| s.tunnel_up_mbs,
        throughput: true,
        decimals: 0,
    },
    Metric {
        name: "CONNECT tunnel, upstream to client: MB/s",
        get: |s| s.tunnel_down_mbs,
        throughput: true,
        decimals: 0,
    },
];

fn values(m: &Measured, c: Contender, f: impl Fn(&Sample) -> Option<f64>) -> Vec<Option<f64>> {
    stats::values(&m.rounds, &c, f)
}

/// Pairwise ratio `a ÷ b` round by round, summarised.
fn ratio(m: &Measured, a: Contender, b: Contender, metric: Metric) -> Option<Summary> {
    summary(&pairwise(
        &values(m, a, metric.get),
        &values(m, b, metric.get),
    ))
}

fn ratio_cell(s: Option<Summary>) -> String {
    s.map_or("–".into(), |s| {
        format!("**{:.2}** ({:.2}–{:.2})", s.median, s.p25, s.p75)
    })
}

fn has(m: &Measured, c: Contender) -> bool {
    stats::has(&m.rounds, &c)
}

/// The side-by-side table with the targets.
fn table(out: &mut String, m: &Measured) {
    let peers = [Contender::Tinyproxy, Contender::Squid];
    let _ = writeln!(
        out,
        "| measure | direct | bottle | tinyproxy | squid | bottle ÷ direct | bottle ÷ tinyproxy | bottle ÷ squid | target: ≥ {TARGET_VS_DIRECT}× direct, ahead of tinyproxy and squid |\n|---|---:|---:|---:|---:|---|---|---|---|"
    );
    for metric in METRICS {
        let direct = median(&values(m, Contender::Direct, metric.get));
        let cell = |c: Contender| {
            let v = median(&values(m, c, metric.get));
            match (c, v) {
                (_, None) => "–".to_string(),
                (Contender::Direct, Some(v)) => format!("{v:.*}", metric.decimals),
                (_, Some(v)) => {
                    let r = ratio(m, c, Contender::Direct, metric).map(|s| s.median);
                    format!("{v:.*} ({}×)", metric.decimals, num(r, 2))
                }
            }
        };
        let vs_direct = ratio(m, Contender::Bottle, Contender::Direct, metric);
        let vs_peer = peers.map(|p| ratio(m, Contender::Bottle, p, metric));
        let verdict = if !metric.throughput {
            "not a target (lower is better)".to_string()
        } else {
            let mut missed = Vec::new();
            let mut unknown = Vec::new();
            match vs_direct {
                Some(s) if s.median >= TARGET_VS_DIRECT => {}
                Some(s) => missed.push(format!("{:.2}× direct", s.median)),
                None => unknown.push("direct"),
            }
            for (p, r) in peers.iter().zip(vs_peer) {
                match r {
                    Some(s) if s.median > 1.0 => {}
                    Some(s) => missed.push(format!("{:.2}× {}", s.median, p.name())),
                    None => unknown.push(p.name()),
                }
            }
            match (missed.is_empty(), unknown.is_empty()) {
                (true, true) => "met".to_string(),
                (true, false) => format!("not measured against {}", unknown.join(", ")),
                (false, _) => format!("**missed**: {}", missed.join(", ")),
            }
        };
        let _ = direct;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {verdict} |",
            metric.name,
            cell(Contender::Direct),
            cell(Contender::Bottle),
            cell(Contender::Tinyproxy),
            cell(Contender::Squid),
            ratio_cell(vs_direct),
            ratio_cell(vs_peer[0]),
            ratio_cell(vs_peer[1]),
        );
    }
    out.push('\n');
}

/// Where the CPU goes, and how connections are used.
fn costs(out: &mut String, m: &Measured) {
    let _ = writeln!(
        out,
        "Where the CPU goes (medians over the timed rounds; CPU time of each process from `/proc`, \
         all its threads; proxy / upstream / load generator = all three, and in parentheses \
         that total over direct's, round by round: a proxy's CPU cost, which other work on the \
         machine moves much less than it moves the rates):\n\n\
         | contender | new connection: CPU µs per request | keep-alive: CPU µs per request | tunnel: CPU s per GB | proxy context switches per request (new connection, keep-alive) | upstream connections per request (new connection, keep-alive) | client connections per 1000 keep-alive requests | failed requests (new connection, keep-alive) |\n\
         |---|---|---|---|---|---|---:|---|"
    );
    for c in Contender::ALL {
        if !has(m, c) {
            continue;
        }
        // Each process's median, the median of the rounds' totals, and that total over
        // direct's, round by round.
        let three = |f: fn(&Sample) -> [Option<f64>; 3], d: usize| {
            let parts = (0..3)
                .map(|i| num(median(&values(m, c, |s| f(s)[i])), d))
                .collect::<Vec<_>>()
                .join(" / ");
            let total = |s: &Sample| {
                let v = f(s);
                Some(v[1]? + v[2]? + v[0].unwrap_or(0.0))
            };
            let totals = values(m, c, total);
            let vs_direct = summary(&pairwise(&totals, &values(m, Contender::Direct, total)));
            match (c, vs_direct) {
                (Contender::Direct, _) | (_, None) => {
                    format!("{parts} = {}", num(median(&totals), d))
                }
                (_, Some(r)) => format!("{parts} = {} ({:.1}×)", num(median(&totals), d), r.median),
            }
        };
        let conns = |i: usize| num(median(&values(m, c, |s| s.upstream_conns_per_req[i])), 3);
        let switches = |i: usize| num(median(&values(m, c, |s| s.proxy_switches_per_req[i])), 2);
        let errors = |i: usize| -> u64 {
            m.rounds
                .get(&c)
                .map(|v| v.iter().flatten().map(|s| s.errors[i]).sum())
                .unwrap_or(0)
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {}, {} | {}, {} | {} | {}, {} |",
            c.name(),
            three(|s| s.new_cpu_us, 0),
            three(|s| s.keepalive_cpu_us, 1),
            three(|s| s.tunnel_cpu_s_per_gb, 2),
            switches(0),
            switches(1),
            conns(0),
            conns(1),
            num(
                median(&values(m, c, |s| s
                    .keepalive_client_conns_per_req
                    .map(|x| x * 1000.0))),
                1
            ),
            errors(0),
            errors(1),
        );
    }
    out.push('\n');
}

/// The whole report.
pub fn render(opts: &Options, machine: &Machine, m: &Measured, took: Duration) -> String {
    let mut out = machine.heading(
        &opts.command,
        took,
        "",
        "The load generator, the upstream and the proxy share these cores, unpinned.",
    );
    out.push('\n');
    let versions: Vec<String> = m
        .versions
        .iter()
        .map(|(c, v)| format!("{}: {}", c.name(), if v.is_empty() { "?" } else { v }))
        .collect();
    let _ = writeln!(
        out,
        "{} timed rounds after {} warm-up round(s), contenders alternating round by round (the order rotated each round and reversed every other round). Each round: {} new-connection requests and {} keep-alive requests from {} concurrent connections (each capped at {} s), then {} MB through one tunnel each way. Versions: {}.\n",
        opts.rounds,
        opts.warmup,
        opts.requests,
        opts.keepalive_requests,
        opts.connections,
        opts.cap.as_secs(),
        opts.tunnel_mb,
        if versions.is_empty() {
            "–".to_string()
        } else {
            versions.join("; ")
        }
    );
    let _ = writeln!(
        out,
        "Medians over the rounds; a proxy's value is followed by its ratio to direct. Ratios are taken round by round and shown as median (p25–p75); for the latencies a ratio above 1 means slower.\n"
    );
    table(&mut out, m);
    costs(&mut out, m);
    if !m.skipped.is_empty() {
        let _ = writeln!(out, "Left out:\n");
        for s in &m.skipped {
            let _ = writeln!(out, "- {s}");
        }
        out.push('\n');
    }
    if !m.failures.is_empty() {
        let _ = writeln!(out, "Failures:\n");
        for f in &m.failures {
            let _ = writeln!(out, "- {f}");
        }
        out.push('\n');
    }
    out
}

/// Replaces the text between [`BEGIN`] and [`END`] in `doc` with `text`.
pub fn update_doc(doc: &Path, text: &str) -> Result<(), String> {
    crate::stats::update_section(doc, BEGIN, END, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rps: f64) -> Option<Sample> {
        Some(Sample {
            new_rps: Some(rps),
            keepalive_rps: Some(rps),
            tunnel_up_mbs: Some(rps),
            tunnel_down_mbs: Some(rps),
            ..Sample::default()
        })
    }

    #[test]
    fn verdicts_follow_the_ratios() {
        let mut m = Measured::default();
        m.rounds
            .insert(Contender::Direct, vec![sample(100.0), sample(100.0)]);
        m.rounds
            .insert(Contender::Bottle, vec![sample(85.0), sample(90.0)]);
        m.rounds
            .insert(Contender::Tinyproxy, vec![sample(30.0), sample(30.0)]);
        m.rounds
            .insert(Contender::Squid, vec![sample(95.0), sample(95.0)]);
        let mut out = String::new();
        table(&mut out, &m);
        let row = out.lines().find(|l| l.starts_with("| keep-alive")).unwrap();
        assert!(row.contains("**0.88**"), "{row}");
        assert!(row.contains("**missed**: 0.92× squid"), "{row}");
        m.rounds
            .insert(Contender::Squid, vec![sample(50.0), sample(50.0)]);
        let mut out = String::new();
        table(&mut out, &m);
        assert!(out
            .lines()
            .any(|l| l.starts_with("| keep-alive") && l.ends_with("| met |")));
    }

    #[test]
    fn the_doc_section_is_replaced() {
        let dir = std::env::temp_dir().join(format!("bb-proxy-doc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let doc = dir.join("B.md");
        std::fs::write(&doc, format!("a\n{BEGIN}\nold\n{END}\nb\n")).unwrap();
        update_doc(&doc, "new\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&doc).unwrap(),
            format!("a\n{BEGIN}\nnew\n{END}\nb\n")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
