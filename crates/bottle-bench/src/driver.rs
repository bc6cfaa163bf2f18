//! The driver: prepares each engine, runs every contender round by round in fresh worker
//! processes, the scale runs and the SIGTERM case, sweeps up, and writes the report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use tokio::process::Command;

use crate::args;
use crate::contenders::Contender;
use crate::engine::{Api, Engine, DEAF_IMAGE, IMAGE};
use crate::report::{self, EngineReport, Machine};
use crate::worker::{Deaf, Round, Scale};

pub const USAGE: &str = "\
cargo xtask bench [options]

  --engine docker|podman|both     engines to measure [both]
  --rounds N                      timed rounds per contender [5]
  --warmup N                      untimed rounds per contender first [1]
  --contenders a,b,...            floor,floor-idle,library,cli,engine-cli,testcontainers [all]
  --scale N,N,...|none            scale mode bottle counts [10,100]
  --scale-contenders a,b,...      contenders of the scale mode [library,engine-cli]
  --parallel N                    bottles in flight at once in scale mode [8]
  --sigterm-rounds N              teardowns of a SIGTERM-ignoring bundle [3]
  --bottle-bin PATH               the `bottle` binary for the cli contender (xtask passes it)
  --archive PATH                  image archive loaded when an engine lacks the image
  --out PATH                      the report [target/bench/latest.md]
  --update-doc PATH               also replace the results section of this file
  --command TEXT                  the command line shown in the report

The defaults fit a run from a clean clone (build included) in under 15 minutes on 2 cores;
`--rounds 10 --scale 10,50,100` is the fuller run (about twice as long).

Environment: RUST_LOG=bottle_core=debug,bottle_docker=debug shows bottle's steps with times
(workers and `bottle` processes inherit it).
";

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub engines: Vec<Engine>,
    pub rounds: usize,
    pub warmup: usize,
    pub contenders: Vec<Contender>,
    pub scale: Vec<usize>,
    pub scale_contenders: Vec<Contender>,
    pub parallel: usize,
    pub sigterm_rounds: usize,
    pub bottle_bin: Option<PathBuf>,
    pub archive: Option<PathBuf>,
    pub out: PathBuf,
    pub update_doc: Option<PathBuf>,
    pub command: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            engines: Engine::ALL.to_vec(),
            rounds: 5,
            warmup: 1,
            contenders: Contender::ALL.to_vec(),
            scale: vec![10, 100],
            scale_contenders: vec![Contender::Library, Contender::EngineCli],
            parallel: 8,
            sigterm_rounds: 3,
            bottle_bin: None,
            archive: None,
            out: PathBuf::from("target/bench/latest.md"),
            update_doc: None,
            command: "cargo xtask bench".into(),
        }
    }
}

/// A list that may also be empty (`none`).
fn list<T>(v: &str, parse: impl Fn(&str) -> Option<T>, what: &str) -> Result<Vec<T>, String> {
    if v == "none" || v.is_empty() {
        return Ok(Vec::new());
    }
    args::list(v, parse, what)
}

fn number(v: &str, what: &str) -> Result<usize, String> {
    args::number(v, what)
}

impl Options {
    /// Parses the command line (without the program name).
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options::default();
        for (flag, v) in args::pairs(args, USAGE)? {
            match flag {
                "--engine" => {
                    o.engines = match v {
                        "both" | "all" => Engine::ALL.to_vec(),
                        one => list(one, crate::engine::parse, "--engine")?,
                    }
                }
                "--rounds" => o.rounds = number(v, flag)?.max(1),
                "--warmup" => o.warmup = number(v, flag)?,
                "--contenders" => o.contenders = list(v, Contender::parse, flag)?,
                "--scale" => o.scale = list(v, |s| s.parse().ok(), flag)?,
                "--scale-contenders" => o.scale_contenders = list(v, Contender::parse, flag)?,
                "--parallel" => o.parallel = number(v, flag)?.max(1),
                "--sigterm-rounds" => o.sigterm_rounds = number(v, flag)?,
                "--bottle-bin" => o.bottle_bin = Some(PathBuf::from(v)),
                "--archive" => o.archive = Some(PathBuf::from(v)),
                "--out" => o.out = PathBuf::from(v),
                "--update-doc" => o.update_doc = Some(PathBuf::from(v)),
                "--command" => o.command = v.to_string(),
                _ => return Err(format!("unknown option {flag}\n\n{USAGE}")),
            }
        }
        if o.scale.iter().any(|n| *n == 0 || *n > 250) {
            return Err("--scale counts must be 1..=250".into());
        }
        if o.contenders.contains(&Contender::Cli) && o.bottle_bin.is_none() {
            return Err(
                "the cli contender needs --bottle-bin (cargo xtask bench passes it)".into(),
            );
        }
        Ok(o)
    }
}

/// What a worker prints as its last line.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Answer<T> {
    Ok(T),
    Err(String),
}

/// Runs this executable as a worker and reads its answer.
async fn worker<T: for<'de> Deserialize<'de>>(
    args: &[String],
    bottle_bin: Option<&Path>,
    limit: Duration,
) -> Result<T, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this benchmark: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("__worker").args(args);
    if let Some(bin) = bottle_bin {
        cmd.arg("--bottle-bin").arg(bin);
    }
    if let Some(engine) = args.get(2).and_then(|e| crate::engine::parse(e)) {
        // testcontainers finds its engine through DOCKER_HOST; Podman serves the Docker API on
        // its socket too.
        if args.get(1).map(String::as_str) == Some(Contender::Testcontainers.name()) {
            cmd.env(
                "DOCKER_HOST",
                format!("unix://{}", crate::engine::socket(engine).await?),
            );
        }
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .map_err(|_| format!("worker {args:?} ran longer than {limit:?}"))?
        .map_err(|e| format!("cannot start worker {args:?}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default();
    match serde_json::from_str::<Answer<T>>(last) {
        Ok(Answer::Ok(v)) => Ok(v),
        Ok(Answer::Err(e)) => Err(e),
        Err(_) => Err(format!(
            "worker {args:?} exited {} without an answer",
            out.status
        )),
    }
}

/// Everything measured on one engine.
#[derive(Debug, Default)]
pub struct Measured {
    /// Per contender, one entry per timed round (`None`: the round failed).
    pub rounds: BTreeMap<Contender, Vec<Option<Round>>>,
    pub failures: Vec<String>,
    pub scale: BTreeMap<Contender, Vec<Scale>>,
    pub deaf: Vec<Deaf>,
}

/// Prints a progress line on stderr.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "bench: {line}");
}

/// Makes sure the engine answers and has both images; sweeps what an earlier run left.
async fn prepare(api: &Api, opts: &Options) -> Result<String, String> {
    let version = api.version().await.map_err(|e| {
        format!(
            "{} does not answer ({e}): run `cargo xtask engines`",
            api.engine.name()
        )
    })?;
    if !api.has_image(IMAGE).await? {
        let (Some(bin), Some(archive)) = (&opts.bottle_bin, &opts.archive) else {
            return Err(format!(
                "{} has no {IMAGE}: run `cargo xtask image` and `bottle image load`",
                api.engine.name()
            ));
        };
        say(&format!(
            "loading {} into {}",
            archive.display(),
            api.engine.name()
        ));
        let mut c = Command::new(bin);
        c.args(["image", "load", "--runtime", api.engine.name(), "--archive"])
            .arg(archive);
        crate::contenders::run(c).await?;
    }
    let swept = api.sweep().await?;
    if swept > 0 {
        say(&format!(
            "removed {swept} objects an earlier run left on {}",
            api.engine.name()
        ));
    }
    let runtime = crate::engine::connect(api.engine).await?.runtime;
    let dir = std::env::temp_dir().join("bottle-bench");
    bottle_core::conformance::ensure_sigterm_deaf_image(&*runtime, DEAF_IMAGE, &dir).await;
    Ok(version)
}

/// Slot of a contender's bottle in round mode (its own /24 and loopback address).
fn slot(c: Contender) -> u8 {
    200 + Contender::ALL.iter().position(|x| *x == c).unwrap_or(0) as u8
}

/// After a failure: waits (bounded) for the engine to answer again, since on a shared machine
/// someone may be restarting it, then removes what the failed run left.
async fn recover(api: &Api) {
    wait_engine(api).await;
    if let Err(e) = api.sweep().await {
        say(&format!(
            "{}: sweeping after a failure: {e}",
            api.engine.name()
        ));
    }
}

/// Waits up to 90 s for the engine to answer.
async fn wait_engine(api: &Api) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while api.version().await.is_err() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn measure(api: &Api, opts: &Options) -> Measured {
    let engine = api.engine;
    let mut m = Measured::default();
    let bin = opts.bottle_bin.as_deref();
    let contenders = &opts.contenders;
    let total = opts.warmup + opts.rounds;
    for r in 0..total {
        let timed = r >= opts.warmup;
        // Rotated each round, and reversed every other round, so no contender always runs
        // first or always follows the same one.
        let k = contenders.len().max(1);
        for i in 0..contenders.len() {
            let j = if r % 2 == 1 { k - 1 - i } else { i };
            let c = contenders[(j + r) % k];
            let args = vec![
                "round".to_string(),
                c.name().to_string(),
                engine.name().to_string(),
                c.slug().to_string(),
                slot(c).to_string(),
            ];
            let result: Result<Round, String> = worker(&args, bin, Duration::from_secs(180)).await;
            match &result {
                Ok(round) => say(&format!(
                    "{} {} round {}{}: up {:.0} ms, down {:.0} ms",
                    engine.name(),
                    c.name(),
                    r + 1,
                    if timed { "" } else { " (warm-up)" },
                    round.up_ms,
                    round.down_ms
                )),
                Err(e) => {
                    say(&format!(
                        "{} {} round {}: {e}",
                        engine.name(),
                        c.name(),
                        r + 1
                    ));
                    m.failures
                        .push(format!("{} round {}: {e}", c.name(), r + 1));
                    recover(api).await;
                }
            }
            if timed {
                m.rounds.entry(c).or_default().push(result.ok());
            }
        }
    }
    for _ in 0..opts.sigterm_rounds {
        let args = vec![
            "deaf".to_string(),
            engine.name().to_string(),
            "deaf".to_string(),
        ];
        match worker::<Deaf>(&args, bin, Duration::from_secs(120)).await {
            Ok(d) => {
                say(&format!(
                    "{} SIGTERM-deaf bundle: ignored SIGTERM {}, down {:.0} ms",
                    engine.name(),
                    d.ignored_sigterm,
                    d.down_ms
                ));
                m.deaf.push(d);
            }
            Err(e) => {
                say(&format!("{} SIGTERM-deaf bundle: {e}", engine.name()));
                m.failures.push(format!("sigterm-deaf: {e}"));
                recover(api).await;
            }
        }
    }
    for &n in &opts.scale {
        for &c in &opts.scale_contenders {
            let args = vec![
                "scale".to_string(),
                c.name().to_string(),
                engine.name().to_string(),
                n.to_string(),
                opts.parallel.to_string(),
            ];
            let t = Instant::now();
            match worker::<Scale>(&args, bin, Duration::from_secs(900)).await {
                Ok(s) => {
                    say(&format!(
                        "{} scale {} N={n}: up {:.1} s, down {:.1} s ({:.0} s total)",
                        engine.name(),
                        c.name(),
                        s.up_wall_ms / 1000.0,
                        s.down_wall_ms / 1000.0,
                        t.elapsed().as_secs_f64()
                    ));
                    m.scale.entry(c).or_default().push(s);
                }
                Err(e) => {
                    say(&format!("{} scale {} N={n}: {e}", engine.name(), c.name()));
                    m.failures.push(format!("scale {} N={n}: {e}", c.name()));
                    recover(api).await;
                }
            }
        }
    }
    m
}

/// Runs the whole benchmark.
pub async fn drive(opts: Options) -> Result<(), String> {
    let started = Instant::now();
    let mut machine = Machine::read();
    let mut reports = Vec::new();
    for &engine in &opts.engines {
        let api = Api::connect(engine).await?;
        say(&format!("preparing {}", engine.name()));
        let version = prepare(&api, &opts).await?;
        let t = Instant::now();
        let measured = measure(&api, &opts).await;
        // Whatever happened, nothing of ours stays on the engine.
        wait_engine(&api).await;
        let swept = api.sweep().await;
        let left = match swept {
            Ok(0) => String::new(),
            Ok(n) => format!("{n} objects were left and removed at the end"),
            Err(e) => format!("the final sweep failed: {e}"),
        };
        reports.push(EngineReport {
            engine,
            version,
            seconds: t.elapsed().as_secs_f64(),
            measured,
            left,
        });
    }
    machine.finish();
    let text = report::render(&opts, &machine, &reports, started.elapsed());
    report::publish(
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

/// The JSON line a worker prints.
pub fn answer<T: serde::Serialize>(result: Result<T, String>) -> String {
    let v = match result {
        Ok(v) => serde_json::json!({ "ok": v }),
        Err(e) => serde_json::json!({ "err": e }),
    };
    Value::to_string(&v)
}
