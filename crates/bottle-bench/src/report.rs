//! The report: one Markdown section per engine (contenders, ratios against the floor, the
//! SIGTERM case, scale) and the targets, met or missed.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::contenders::Contender;
use crate::driver::{Measured, Options};
use crate::engine::Engine;
use crate::stats::{median, pairwise, some, summary, Summary};
use crate::worker::Round;

/// Where the results section of the benchmarks document starts and ends.
pub const BEGIN: &str = "<!-- bench:begin -->";
pub const END: &str = "<!-- bench:end -->";

/// The machine the numbers come from.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub kernel: String,
    pub load_before: String,
    pub load_after: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn load() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_else(|| "unknown".into());
        let memory_gib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory_gib,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            load_before: load(),
            load_after: String::new(),
        }
    }

    /// Notes the load at the end of the run.
    pub fn finish(&mut self) {
        self.load_after = load();
    }

    /// The opening paragraphs every part's report shares: the command and how long it took
    /// (then `how_to_run`, when not empty), and this machine (then `sharing`: who else used its
    /// cores while measuring).
    pub fn heading(
        &self,
        command: &str,
        took: Duration,
        how_to_run: &str,
        sharing: &str,
    ) -> String {
        let run = if how_to_run.is_empty() {
            String::new()
        } else {
            format!(" {how_to_run}")
        };
        format!(
            "Command: `{command}`, {:.1} minutes in all.{run}\n\nMachine: {} cores ({}), {:.0} GiB, Linux {}; load average {} before, {} after (1, 5, 15 min). {sharing}\n",
            took.as_secs_f64() / 60.0,
            self.cpus,
            self.cpu_model,
            self.memory_gib,
            self.kernel,
            self.load_before,
            self.load_after
        )
    }
}

/// Writes a part's report to `out` (creating its directory), replaces its section of `doc`
/// with `update` when asked, and prints it.
pub fn publish(
    text: &str,
    out: &Path,
    doc: Option<&Path>,
    update: fn(&Path, &str) -> Result<(), String>,
) -> Result<(), String> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    std::fs::write(out, text).map_err(|e| format!("writing {}: {e}", out.display()))?;
    if let Some(doc) = doc {
        update(doc, text)?;
    }
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{text}");
    Ok(())
}

/// One engine's results.
#[derive(Debug)]
pub struct EngineReport {
    pub engine: Engine,
    pub version: String,
    pub seconds: f64,
    pub measured: Measured,
    /// What the final sweep found, empty when nothing.
    pub left: String,
}

fn values(rounds: &[Option<Round>], f: impl Fn(&Round) -> f64) -> Vec<Option<f64>> {
    rounds.iter().map(|r| r.as_ref().map(&f)).collect()
}

fn ms(s: &Option<Summary>) -> String {
    s.map_or("–".into(), |s| format!("{:.0}", s.median))
}

fn spread(s: &Option<Summary>) -> String {
    s.map_or("–".into(), |s| {
        format!("{:.0}–{:.0} ({:.0}–{:.0})", s.p25, s.p75, s.min, s.max)
    })
}

fn ratio(s: &Option<Summary>) -> String {
    s.map_or("–".into(), |s| {
        format!("{:.3} ({:.3}–{:.3})", s.median, s.p25, s.p75)
    })
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

/// Medians a contender's verdicts are made of.
#[derive(Debug, Clone, Copy, Default)]
struct Key {
    up: Option<f64>,
    down: Option<f64>,
    up_ratio: Option<f64>,
    down_ratio: Option<f64>,
}

fn keys(m: &Measured, c: Contender) -> Key {
    let Some(rounds) = m.rounds.get(&c) else {
        return Key::default();
    };
    let floor = m.rounds.get(&Contender::Floor);
    let up = values(rounds, |r| r.up_ms);
    let down = values(rounds, |r| r.down_ms);
    let (up_ratio, down_ratio) = match floor {
        Some(f) => (
            summary(&pairwise(&up, &values(f, |r| r.up_ms))).map(|s| s.median),
            summary(&pairwise(&down, &values(f, |r| r.down_ms))).map(|s| s.median),
        ),
        None => (None, None),
    };
    Key {
        up: median(&up),
        down: median(&down),
        up_ratio,
        down_ratio,
    }
}

fn engine_section(out: &mut String, r: &EngineReport, opts: &Options) {
    let m = &r.measured;
    let _ = writeln!(
        out,
        "### {} {}\n\n{} timed rounds per contender after {} warm-up round(s), contenders alternating \
         round by round (the order rotated each round and reversed every other round); {:.0} s for this engine.\n",
        r.engine.name(),
        r.version,
        opts.rounds,
        opts.warmup,
        r.seconds
    );
    let _ = writeln!(
        out,
        "| contender | up: median ms | up: p25–p75 (min–max) | up ÷ floor: median (p25–p75) | down: median ms | down: p25–p75 (min–max) | down ÷ floor: median (p25–p75) | peak RSS MiB | daemons answered when declared ready | failed rounds |"
    );
    let _ = writeln!(out, "|---|---:|---|---|---:|---|---|---:|---:|---:|");
    let floor = m.rounds.get(&Contender::Floor);
    for (c, rounds) in &m.rounds {
        let up = values(rounds, |r| r.up_ms);
        let down = values(rounds, |r| r.down_ms);
        let (su, sd) = (summary(&some(&up)), summary(&some(&down)));
        let (ru, rd) = match floor {
            Some(f) if *c != Contender::Floor => (
                summary(&pairwise(&up, &values(f, |r| r.up_ms))),
                summary(&pairwise(&down, &values(f, |r| r.down_ms))),
            ),
            _ => (None, None),
        };
        let rss = summary(&some(&values(rounds, |r| {
            if c.in_process() {
                r.self_rss_kib as f64
            } else {
                r.children_rss_kib as f64
            }
        })));
        let idle = summary(&some(&values(rounds, |r| r.idle_rss_kib as f64)));
        let rss_text = match (rss, c.in_process(), idle) {
            (Some(s), true, Some(i)) => format!(
                "{:.1} (+{:.1} over the idle worker)",
                mib(s.median),
                mib(s.median - i.median)
            ),
            (Some(s), false, _) => format!("{:.1} (largest child)", mib(s.median)),
            _ => "–".into(),
        };
        let ok: Vec<&Round> = rounds.iter().flatten().collect();
        let honest = ok.iter().filter(|r| r.ready_when_said).count();
        let failed = rounds.iter().filter(|r| r.is_none()).count();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {}/{} | {} |",
            c.name(),
            ms(&su),
            spread(&su),
            if *c == Contender::Floor {
                "1".into()
            } else {
                ratio(&ru)
            },
            ms(&sd),
            spread(&sd),
            if *c == Contender::Floor {
                "1".into()
            } else {
                ratio(&rd)
            },
            rss_text,
            honest,
            ok.len(),
            failed
        );
    }
    if let Some(rounds) = m.rounds.get(&Contender::Library) {
        breakdown(out, rounds);
    }
    if !m.deaf.is_empty() {
        let downs: Vec<f64> = m.deaf.iter().map(|d| d.down_ms).collect();
        let s = summary(&downs);
        let ignored = m.deaf.iter().filter(|d| d.ignored_sigterm).count();
        let _ = writeln!(
            out,
            "\nTeardown (`Lifecycle::down`) of a bundle whose PID 1 ignores SIGTERM: median {} ms, max {:.0} ms over {} runs; PID 1 was still running 1 s after a SIGTERM in {}/{} runs.",
            ms(&s),
            s.map_or(0.0, |s| s.max),
            downs.len(),
            ignored,
            m.deaf.len()
        );
    }
    if !m.scale.is_empty() {
        let _ = writeln!(
            out,
            "\nScale: N bottles up, then all down, at most {} in flight.\n\n| contender | N | up wall s | down wall s | per bottle ms | per bottle ÷ N={} |\n|---|---:|---:|---:|---:|---:|",
            opts.parallel,
            opts.scale.first().copied().unwrap_or(0)
        );
        for (c, runs) in &m.scale {
            let base = runs
                .first()
                .map(|s| (s.up_wall_ms + s.down_wall_ms) / s.n as f64);
            for s in runs {
                let per = (s.up_wall_ms + s.down_wall_ms) / s.n as f64;
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.1} | {:.1} | {:.0} | {} |",
                    c.name(),
                    s.n,
                    s.up_wall_ms / 1000.0,
                    s.down_wall_ms / 1000.0,
                    per,
                    base.map_or("–".into(), |b| format!("{:.2}", per / b))
                );
            }
        }
    }
    if let Some(runs) = m.scale.get(&Contender::Library) {
        let calls = |v: &[crate::worker::OpStats]| {
            v.iter()
                .map(|o| {
                    format!(
                        "`{}` {}× median {:.0} ms, max {:.0} ms, sum {:.1} s",
                        o.op,
                        o.count,
                        o.median_ms,
                        o.max_ms,
                        o.sum_ms / 1000.0
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        let _ = writeln!(out, "\nThe library's engine calls in the scale runs:\n");
        for s in runs.iter().filter(|s| !s.up_calls.is_empty()) {
            let _ = writeln!(
                out,
                "- N={}: up: {}. Down: {}.",
                s.n,
                calls(&s.up_calls),
                calls(&s.down_calls)
            );
        }
    }
    if !m.failures.is_empty() {
        let _ = writeln!(out, "\nFailures:\n");
        for f in &m.failures {
            let _ = writeln!(out, "- {}", f.replace('\n', " "));
        }
    }
    if !r.left.is_empty() {
        let _ = writeln!(out, "\nAt the end: {}.", r.left);
    }
    out.push('\n');
}

/// Where the library's time goes: engine calls one by one, and the time no call was in flight.
fn breakdown(out: &mut String, rounds: &[Option<Round>]) {
    let ok: Vec<&Round> = rounds.iter().flatten().collect();
    if ok.iter().all(|r| r.up_calls.is_empty()) {
        return;
    }
    let med = |f: &dyn Fn(&Round) -> f64| {
        summary(&ok.iter().map(|r| f(r)).collect::<Vec<_>>()).map_or(0.0, |s| s.median)
    };
    let _ = writeln!(
        out,
        "\nWhere the library's time goes (medians over its rounds; engine calls timed around the adapter):\n\n| | up ms | down ms |\n|---|---:|---:|"
    );
    let _ = writeln!(
        out,
        "| total | {:.0} | {:.0} |",
        med(&|r| r.up_ms),
        med(&|r| r.down_ms)
    );
    let _ = writeln!(
        out,
        "| some engine call in flight | {:.0} | {:.0} |",
        med(&|r| r.up_engine_ms),
        med(&|r| r.down_engine_ms)
    );
    let _ = writeln!(
        out,
        "| no engine call in flight (validation, planning, allocation lock, readiness probes (with a 25 ms idle window where ports are proxied), backoff) | {:.0} | {:.0} |",
        med(&|r| r.up_ms - r.up_engine_ms),
        med(&|r| r.down_ms - r.down_engine_ms)
    );
    let mut ops: Vec<&str> = ok
        .iter()
        .flat_map(|r| r.up_calls.iter().chain(&r.down_calls))
        .map(|(op, _)| op.as_str())
        .collect();
    ops.sort_unstable();
    ops.dedup();
    for op in ops {
        let sum = |calls: &[(String, f64)]| -> (f64, usize) {
            let mine: Vec<f64> = calls.iter().filter(|(o, _)| o == op).map(|c| c.1).collect();
            (mine.iter().sum(), mine.len())
        };
        let cell = |pick: &dyn Fn(&Round) -> &[(String, f64)]| {
            let n = ok.iter().map(|r| sum(pick(r)).1).max().unwrap_or(0);
            if n == 0 {
                "–".to_string()
            } else {
                format!("{:.1} ({n}×)", med(&|r| sum(pick(r)).0))
            }
        };
        let _ = writeln!(
            out,
            "| `{op}` | {} | {} |",
            cell(&|r| &r.up_calls),
            cell(&|r| &r.down_calls)
        );
    }
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "not measured",
    }
}

fn targets(out: &mut String, reports: &[EngineReport]) {
    let _ = writeln!(
        out,
        "### Targets\n\n| engine | target | measured | verdict |\n|---|---|---|---|"
    );
    for r in reports {
        let m = &r.measured;
        let e = r.engine.name();
        let (lib, cli, ecli) = (
            keys(m, Contender::Library),
            keys(m, Contender::Cli),
            keys(m, Contender::EngineCli),
        );
        let within = |k: Key, limit: f64, name: &str, out: &mut String| {
            let ok = k
                .up_ratio
                .zip(k.down_ratio)
                .map(|(u, d)| u <= limit && d <= limit);
            let _ = writeln!(
                out,
                "| {e} | {name} within {limit:.2}× of the floor, up and down | up {}, down {} | {} |",
                k.up_ratio.map_or("–".into(), |x| format!("{x:.3}×")),
                k.down_ratio.map_or("–".into(), |x| format!("{x:.3}×")),
                verdict(ok)
            );
        };
        within(lib, 1.10, "library", out);
        within(cli, 1.15, "CLI", out);
        for (name, k) in [("library", lib), ("CLI", cli)] {
            let ok = match (k.up, k.down, ecli.up, ecli.down) {
                (Some(u), Some(d), Some(eu), Some(ed)) => Some(u < eu && d < ed),
                _ => None,
            };
            let _ = writeln!(
                out,
                "| {e} | {name} faster than the engine CLI sequence, up and down | up {} vs {} ms, down {} vs {} ms | {} |",
                k.up.map_or("–".into(), |x| format!("{x:.0}")),
                ecli.up.map_or("–".into(), |x| format!("{x:.0}")),
                k.down.map_or("–".into(), |x| format!("{x:.0}")),
                ecli.down.map_or("–".into(), |x| format!("{x:.0}")),
                verdict(ok)
            );
        }
        let deaf_max = m
            .deaf
            .iter()
            .map(|d| d.down_ms)
            .fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))));
        let all_ignored = m.deaf.iter().all(|d| d.ignored_sigterm);
        let _ = writeln!(
            out,
            "| {e} | teardown of a SIGTERM-ignoring bundle under 1 s | max {} | {} |",
            deaf_max.map_or("–".into(), |x| format!("{x:.0} ms")),
            verdict(deaf_max.map(|x| x < 1000.0 && all_ignored))
        );
        if let Some(runs) = m.scale.get(&Contender::Library) {
            let per = |s: &crate::worker::Scale| (s.up_wall_ms + s.down_wall_ms) / s.n as f64;
            let small = runs.iter().min_by_key(|s| s.n);
            let large = runs.iter().max_by_key(|s| s.n);
            let (text, ok) = match (small, large) {
                (Some(a), Some(b)) if a.n < b.n => (
                    format!(
                        "N={}: {:.0} ms, N={}: {:.0} ms per bottle ({:.2}×)",
                        a.n,
                        per(a),
                        b.n,
                        per(b),
                        per(b) / per(a)
                    ),
                    Some(per(b) / per(a) <= 1.5),
                ),
                _ => ("–".into(), None),
            };
            let _ = writeln!(
                out,
                "| {e} | library: per-bottle time at the largest N within 1.5× of the smallest N | {text} | {} |",
                verdict(ok)
            );
        }
    }
    out.push('\n');
}

/// The whole report.
pub fn render(
    opts: &Options,
    machine: &Machine,
    reports: &[EngineReport],
    took: Duration,
) -> String {
    let mut out = machine.heading(
        &opts.command,
        took,
        "",
        "Shared with other work while measuring: see the notes on noise.",
    );
    out.push('\n');
    targets(&mut out, reports);
    for r in reports {
        engine_section(&mut out, r, opts);
    }
    out
}

/// Replaces the text between [`BEGIN`] and [`END`] in `doc` with `text`.
pub fn update_doc(doc: &Path, text: &str) -> Result<(), String> {
    crate::stats::update_section(doc, BEGIN, END, text)
}
