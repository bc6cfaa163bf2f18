//! The git part of `cargo xtask bench`: clone and push through a bottle's git gate against the
//! same operations directly against the same local upstream ([`upstream`]).
//!
//! The bench target (`benches/git.rs`) brings a real bottle up with the `bottle` binary (one
//! git upstream, the gate holding its token), runs the upstream on the bottle's gateway
//! address, and times the host's `git` in rounds, the contenders alternating: a clone of the
//! source repository ([`repo::source`], about 1,000 commits and 50 MB), and a push of 100 new
//! commits to a branch of its own. Where the gate's time goes is read from the upstream's side:
//! the requests the gate made during the operation (its mirror refresh for a clone, the
//! forwarded push for a push) against the rest (serving the agent, receiving and checking).

pub mod repo;
pub mod upstream;

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::args;
use crate::service::quantile;

pub const USAGE: &str = "\
cargo bench -p bottle-bench --bench git -- [options]

The git part: a clone of a generated repository and a push of new commits, through a bottle's
git gate (a real bottle on the engine, brought up with the bottle binary) against the same
operations directly against the same upstream (git http-backend behind a local HTTP server on
the bottle's gateway address), timed side by side in alternating rounds.

  --runtime docker|podman  the engine of the bottle [podman]
  --bottle-bin PATH        the bottle binary [target/debug/bottle]
  --archive PATH           load this image archive into the engine first (the gate must be in it)
  --rounds N               timed rounds [5]
  --commits N              commits of the source repository [1000]
  --megabytes N            its size in MiB (binary files that do not compress) [50]
  --push-commits N         commits of each push [100]
  --memory SIZE            the bundle's memory limit, as bottle up --memory takes it [512m]
                           (the gate's mirror lives on the bundle's tmpfs, which counts)
  --subnet CIDR            the bottle's /24 [10.237.1.0/24]
  --loopback-pool CIDR     where the gate is published [127.84.0.0/16]
  --cache DIR              where the source repository is kept [target/bench/git-cache]
  --out PATH               the report [target/bench/git.md]; relative paths are the workspace's
  --command TEXT           the command line shown in the report
";

/// How each operation is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Contender {
    /// The host's git against the upstream itself.
    Direct,
    /// The host's git against the bottle's gate, which goes to the same upstream.
    Gate,
}

impl Contender {
    pub fn name(self) -> &'static str {
        match self {
            Contender::Direct => "direct",
            Contender::Gate => "gate",
        }
    }
}

/// The operations timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Clone,
    Push,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Clone => "clone",
            Op::Push => "push",
        }
    }

    /// The target ratio gate/direct.
    pub fn target(self) -> f64 {
        match self {
            Op::Clone => 1.3,
            Op::Push => 1.5,
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub runtime: String,
    pub bottle_bin: Option<PathBuf>,
    pub archive: Option<PathBuf>,
    pub rounds: usize,
    pub commits: usize,
    pub megabytes: usize,
    pub push_commits: usize,
    pub memory: String,
    pub subnet: String,
    pub loopback_pool: String,
    pub cache: PathBuf,
    pub out: PathBuf,
    pub command: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            runtime: "podman".into(),
            bottle_bin: None,
            archive: None,
            rounds: 5,
            commits: 1000,
            megabytes: 50,
            push_commits: 100,
            memory: "512m".into(),
            subnet: "10.237.1.0/24".into(),
            loopback_pool: "127.84.0.0/16".into(),
            cache: PathBuf::from("target/bench/git-cache"),
            out: PathBuf::from("target/bench/git.md"),
            command: "cargo bench -p bottle-bench --bench git".into(),
        }
    }
}

impl Options {
    /// Parses the command line (without the program name).
    pub fn parse(argv: &[String]) -> Result<Options, String> {
        let mut o = Options::default();
        for (flag, v) in args::pairs(argv, USAGE)? {
            match flag {
                "--runtime" if v == "docker" || v == "podman" => o.runtime = v.into(),
                "--runtime" => return Err(format!("--runtime takes docker or podman, not {v:?}")),
                "--bottle-bin" => o.bottle_bin = Some(PathBuf::from(v)),
                "--archive" => o.archive = Some(PathBuf::from(v)),
                "--rounds" => o.rounds = args::number::<usize>(v, flag)?.clamp(1, 100),
                "--commits" => o.commits = args::number::<usize>(v, flag)?.clamp(1, 100_000),
                "--megabytes" => o.megabytes = args::number::<usize>(v, flag)?.clamp(1, 2048),
                "--push-commits" => {
                    o.push_commits = args::number::<usize>(v, flag)?.clamp(1, 10_000)
                }
                "--memory" => o.memory = v.into(),
                "--subnet" => o.subnet = v.into(),
                "--loopback-pool" => o.loopback_pool = v.into(),
                "--cache" => o.cache = PathBuf::from(v),
                "--out" => o.out = PathBuf::from(v),
                "--command" => o.command = v.to_string(),
                _ => return Err(format!("unknown option {flag}\n\n{USAGE}")),
            }
        }
        Ok(o)
    }
}

/// One timed operation.
#[derive(Debug, Clone)]
pub struct Sample {
    pub round: usize,
    pub contender: Contender,
    pub op: Op,
    /// Wall time of the host's git command, ms.
    pub total_ms: f64,
    /// Time the upstream spent answering requests during it, ms (requests of one operation
    /// follow each other, so this is their span less the gaps).
    pub upstream_ms: f64,
    /// The part of it in receive-pack requests (a push arriving upstream; the rest is
    /// upload-pack: a clone served, or the gate's mirror refresh).
    pub upstream_push_ms: f64,
    /// How many requests the upstream answered during it.
    pub upstream_requests: usize,
    /// CPU time the bundle's processes spent during it, ms (its cgroup's counter; the gate's
    /// own work, whatever else the machine runs).
    pub bundle_cpu_ms: Option<f64>,
}

/// Everything measured.
#[derive(Debug, Default)]
pub struct Measured {
    pub samples: Vec<Sample>,
    /// The gate's first clone, with its mirror still empty (untimed rounds otherwise).
    pub first_gate_clone: Option<Sample>,
    pub first_direct_clone: Option<Sample>,
    /// What was measured on (versions, sizes).
    pub notes: Vec<String>,
    pub failures: Vec<String>,
}

impl Measured {
    fn values(&self, contender: Contender, op: Op, f: impl Fn(&Sample) -> f64) -> Vec<f64> {
        self.samples
            .iter()
            .filter(|s| s.contender == contender && s.op == op)
            .map(f)
            .collect()
    }

    /// The ratio gate/direct of each round in which both were measured.
    pub fn ratios(&self, op: Op) -> Vec<f64> {
        let rounds: std::collections::BTreeSet<usize> =
            self.samples.iter().map(|s| s.round).collect();
        rounds
            .into_iter()
            .filter_map(|r| {
                let get = |c| {
                    self.samples
                        .iter()
                        .find(|s| s.round == r && s.op == op && s.contender == c)
                        .map(|s| s.total_ms)
                };
                Some(get(Contender::Gate)? / get(Contender::Direct)?)
            })
            .collect()
    }
}

fn ms(v: Option<f64>) -> String {
    // `max(0.0)`: a difference of sums may round below zero (and print as "-0").
    v.map_or("-".into(), |v| format!("{:.0}", v.max(0.0)))
}

/// The Markdown report.
pub fn report(o: &Options, m: &Measured) -> String {
    let mut r = String::new();
    let _ = writeln!(r, "# Git gate: through the gate against direct\n");
    let _ = writeln!(r, "Command: `{}`\n", o.command);
    for n in &m.notes {
        let _ = writeln!(r, "- {n}");
    }
    let _ = writeln!(
        r,
        "\nMedians of {} rounds; the ratio is the median of each round's gate/direct (the two \
         run back to back, in alternating order).\n",
        o.rounds
    );
    let _ = writeln!(
        r,
        "| operation | direct ms | gate ms | gate/direct (min-max) | target | met |\n|---|---:|---:|---:|---:|---|"
    );
    for op in [Op::Clone, Op::Push] {
        let d = quantile(&m.values(Contender::Direct, op, |s| s.total_ms), 0.5);
        let g = quantile(&m.values(Contender::Gate, op, |s| s.total_ms), 0.5);
        let ratios = m.ratios(op);
        let ratio = quantile(&ratios, 0.5);
        let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let max = ratios.iter().copied().fold(0.0, f64::max);
        let met = ratio.map_or("-", |x| if x <= op.target() { "yes" } else { "no" });
        let _ = writeln!(
            r,
            "| {} | {} | {} | {} | {:.1}x | {met} |",
            op.name(),
            ms(d),
            ms(g),
            ratio.map_or("-".into(), |x| format!("{x:.2}x ({min:.2}-{max:.2})")),
            op.target()
        );
    }
    let _ = writeln!(
        r,
        "\nWhere the time goes (medians, ms): what the upstream spent answering the operation's \
         requests, split into upload-pack (a clone served; through the gate, the mirror's \
         refresh: its refs asked for, new objects fetched) and receive-pack (a push arriving \
         upstream); the rest is the client's and, through the gate, the gate's own (serving \
         upload-pack from the mirror to the agent; receiving the push, checking it) and the \
         published port's. The bundle's CPU is what the gate's processes spent, from its cgroup \
         (it does not move with the machine's load as wall times do).\n"
    );
    let _ = writeln!(
        r,
        "| operation | contender | total | upstream upload-pack | upstream receive-pack | upstream requests | rest | bundle CPU |\n|---|---|---:|---:|---:|---:|---:|---:|"
    );
    for op in [Op::Clone, Op::Push] {
        for c in [Contender::Direct, Contender::Gate] {
            let total = quantile(&m.values(c, op, |s| s.total_ms), 0.5);
            let fetch = quantile(
                &m.values(c, op, |s| s.upstream_ms - s.upstream_push_ms),
                0.5,
            );
            let push = quantile(&m.values(c, op, |s| s.upstream_push_ms), 0.5);
            let reqs = quantile(&m.values(c, op, |s| s.upstream_requests as f64), 0.5);
            let rest = quantile(&m.values(c, op, |s| s.total_ms - s.upstream_ms), 0.5);
            let cpu: Vec<f64> = m
                .samples
                .iter()
                .filter(|s| s.contender == c && s.op == op)
                .filter_map(|s| s.bundle_cpu_ms)
                .collect();
            let cpu = quantile(&cpu, 0.5);
            let _ = writeln!(
                r,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                op.name(),
                c.name(),
                ms(total),
                ms(fetch),
                ms(push),
                ms(reqs),
                ms(rest),
                ms(cpu)
            );
        }
    }
    if let (Some(g), Some(d)) = (&m.first_gate_clone, &m.first_direct_clone) {
        let _ = writeln!(
            r,
            "\nFirst clone (untimed warm-up; the gate's mirror empty): gate {:.0} ms (upstream \
             {:.0} ms in {} requests, bundle CPU {} ms), direct {:.0} ms.",
            g.total_ms,
            g.upstream_ms,
            g.upstream_requests,
            ms(g.bundle_cpu_ms),
            d.total_ms
        );
    }
    if !m.failures.is_empty() {
        let _ = writeln!(r, "\nFailures:\n");
        for f in &m.failures {
            let _ = writeln!(r, "- {f}");
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let o = Options::parse(&[
            "--rounds".into(),
            "3".into(),
            "--runtime".into(),
            "podman".into(),
        ])
        .unwrap();
        assert_eq!((o.rounds, o.runtime.as_str()), (3, "podman"));
        let o = Options::parse(&["--runtime".into(), "docker".into()]).unwrap();
        assert_eq!(o.runtime, "docker");
        assert!(Options::parse(&["--runtime".into(), "lxc".into()]).is_err());
        assert!(Options::parse(&["--nope".into(), "1".into()]).is_err());
    }

    #[test]
    fn ratios_pair_rounds() {
        let s = |round, contender, total_ms| Sample {
            round,
            contender,
            op: Op::Clone,
            total_ms,
            upstream_ms: 0.0,
            upstream_push_ms: 0.0,
            upstream_requests: 0,
            bundle_cpu_ms: None,
        };
        let m = Measured {
            samples: vec![
                s(0, Contender::Direct, 100.0),
                s(0, Contender::Gate, 120.0),
                s(1, Contender::Gate, 150.0),
                s(2, Contender::Direct, 100.0),
            ],
            ..Default::default()
        };
        assert_eq!(m.ratios(Op::Clone), vec![1.2]);
        let text = report(&Options::default(), &m);
        assert!(text.contains("1.20x"), "{text}");
    }
}
