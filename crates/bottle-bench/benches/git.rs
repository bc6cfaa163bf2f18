//! The git part (`cargo bench -p bottle-bench --bench git -- [options]`): clone and push
//! through a bottle's git gate against directly, to the same local upstream.
//!
//! A real bottle, brought up with the `bottle` binary on the chosen engine, declares one git
//! upstream: `git http-backend` behind the bench's HTTP server on the bottle's gateway address,
//! which wants a token for pushes (the bottle holds it as a bare env key). The host's `git`
//! plays the agent. Every git command is bounded in time; the bottle is taken down at the end,
//! whatever happened.

// A benchmark's output is its report.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use bottle_bench::git::upstream::{self, Auth, Upstream};
use bottle_bench::git::{repo, report, Contender, Measured, Op, Options, Sample, USAGE};

/// The bench's prefix and slug on the engine.
const PREFIX: &str = "bottle-bench-git";
const SLUG: &str = "gitbench";
/// The bare key holding the upstream's token.
const TOKEN_KEY: &str = "BOTTLE_BENCH_GIT_TOKEN";
/// The longest one git command may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(600);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let mut o = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // `cargo bench` runs this in the package's directory: relative paths are the workspace's.
    let root = std::env::current_dir()
        .ok()
        .and_then(|cwd| {
            cwd.ancestors()
                .find(|d| d.join("Cargo.lock").is_file())
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| PathBuf::from("."));
    for p in [&mut o.out, &mut o.cache] {
        if p.is_relative() {
            *p = root.join(&*p);
        }
    }
    let bottle = o
        .bottle_bin
        .clone()
        .unwrap_or_else(|| root.join("target/debug/bottle"));
    let result = run(&o, &bottle);
    // The work directory goes whatever happened (the bottle went when `run` returned).
    let _ = std::fs::remove_dir_all(work_dir());
    match result {
        Ok(m) => {
            let text = report(&o, &m);
            print!("{text}");
            if let Some(dir) = o.out.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            if let Err(e) = std::fs::write(&o.out, &text) {
                eprintln!("bench git: cannot write {}: {e}", o.out.display());
                return ExitCode::FAILURE;
            }
            eprintln!("bench git: report in {}", o.out.display());
            if m.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("bench git: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where the upstream's repository, the clones and the pushing repository live for one run.
fn work_dir() -> PathBuf {
    std::env::temp_dir().join(format!("bottle-bench-git-{}", std::process::id()))
}

/// Takes the bench's bottle down when dropped.
struct Down<'a> {
    bottle: &'a Path,
    runtime: &'a str,
}

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = bottle_cmd(self.bottle, self.runtime, &["--quiet", "down", "--all"]).output();
    }
}

fn bottle_cmd(bottle: &Path, runtime: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(bottle);
    cmd.args(["--runtime", runtime, "--prefix", PREFIX])
        .args(args)
        .env_remove("BOTTLE_RUNTIME")
        .env_remove("BOTTLE_PREFIX")
        .stdin(Stdio::null());
    cmd
}

/// Runs `bottle`; its stdout, or an error with its stderr.
fn bottle_run(
    bottle: &Path,
    runtime: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<String, String> {
    let mut cmd = bottle_cmd(bottle, runtime, args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bottle.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "bottle {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs the host's git in `dir`, bounded in time; an error carries its stderr.
fn git_timed(dir: &Path, args: &[&str]) -> Result<Duration, String> {
    let err_path =
        std::env::temp_dir().join(format!("bottle-bench-git-{}.err", std::process::id()));
    let err_file = std::fs::File::create(&err_path).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut child = upstream::git_command(dir, args, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::from(err_file))
        .spawn()
        .map_err(|e| format!("cannot run git: {e}"))?;
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(s);
        }
        if started.elapsed() > GIT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let took = started.elapsed();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&err_path);
    match status {
        Some(s) if s.success() => Ok(took),
        Some(s) => Err(format!("git {args:?}: {s}: {}", stderr.trim())),
        None => Err(format!("git {args:?}: killed after {GIT_TIMEOUT:?}")),
    }
}

/// A sample from a timed git command and what the upstream answered meanwhile.
/// The bundle's CPU time counter, from its cgroup: what the gate's processes spent, whatever
/// else the machine runs.
struct BundleCpu(Option<PathBuf>);

impl BundleCpu {
    /// Finds the counter of `container` (cgroup v1 `cpuacct.usage`, or v2 `cpu.stat`).
    fn find(runtime: &str, container: &str) -> BundleCpu {
        let pid = Command::new(runtime)
            .args(["inspect", "--format", "{{.State.Pid}}", container])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        let cgroups = pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/cgroup")).ok());
        let file = cgroups.and_then(|text| {
            text.lines().find_map(|line| {
                let mut parts = line.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                let candidates: Vec<PathBuf> = if controllers.is_empty() {
                    vec![PathBuf::from(format!("/sys/fs/cgroup{path}/cpu.stat"))]
                } else if controllers.split(',').any(|c| c == "cpuacct") {
                    vec![
                        PathBuf::from(format!("/sys/fs/cgroup/cpuacct{path}/cpuacct.usage")),
                        PathBuf::from(format!("/sys/fs/cgroup/{controllers}{path}/cpuacct.usage")),
                    ]
                } else {
                    vec![]
                };
                candidates.into_iter().find(|p| p.is_file())
            })
        });
        BundleCpu(file)
    }

    /// The counter now, in ns.
    fn now(&self) -> Option<u64> {
        let path = self.0.as_ref()?;
        let text = std::fs::read_to_string(path).ok()?;
        if path.ends_with("cpu.stat") {
            let usec: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec "))?
                .trim()
                .parse()
                .ok()?;
            Some(usec * 1000)
        } else {
            text.trim().parse().ok()
        }
    }

    /// The ms spent between two readings.
    fn between(before: Option<u64>, after: Option<u64>) -> Option<f64> {
        Some(after?.checked_sub(before?)? as f64 / 1e6)
    }
}

#[allow(clippy::too_many_arguments)]
fn sample(
    up: &Upstream,
    round: usize,
    contender: Contender,
    op: Op,
    from: Instant,
    took: Duration,
    bundle_cpu_ms: Option<f64>,
) -> Sample {
    let during: Vec<_> = up
        .log()
        .into_iter()
        .filter(|l| l.started >= from && l.started <= from + took)
        .collect();
    Sample {
        round,
        contender,
        op,
        total_ms: took.as_secs_f64() * 1e3,
        upstream_ms: during.iter().map(|l| l.took.as_secs_f64() * 1e3).sum(),
        upstream_push_ms: during
            .iter()
            .filter(|l| l.target.contains("receive-pack"))
            .map(|l| l.took.as_secs_f64() * 1e3)
            .sum(),
        upstream_requests: during.len(),
        bundle_cpu_ms,
    }
}

fn run(o: &Options, bottle: &Path) -> Result<Measured, String> {
    let mut m = Measured::default();
    let io = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| format!("{what}: {e}")
    };
    let version = upstream::git(Path::new("."), &["--version"]).map_err(io("git --version"))?;
    m.notes.push(format!("host {}", version.trim()));

    eprintln!(
        "bench git: the source repository ({} commits, {} MiB)",
        o.commits, o.megabytes
    );
    let source =
        repo::source(&o.cache, o.commits, o.megabytes).map_err(io("generating the source"))?;
    let base = upstream::git(&source, &["rev-parse", "main"])
        .map_err(io("rev-parse"))?
        .trim()
        .to_string();
    let pack_bytes: u64 = std::fs::read_dir(source.join("objects/pack"))
        .map_err(io("the source's packs"))?
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    m.notes.push(format!(
        "source: {} commits, packed {:.1} MiB; each push: {} commits of a 4 KiB text file",
        o.commits,
        pack_bytes as f64 / (1 << 20) as f64,
        o.push_commits
    ));
    m.notes.push(format!(
        "engine: {}; the bundle's memory limit {}",
        o.runtime, o.memory
    ));

    let work = work_dir();
    let _ = std::fs::remove_dir_all(&work);
    let (up_root, pusher, clones) = (work.join("up"), work.join("pusher"), work.join("clones"));
    for d in [&up_root, &clones] {
        std::fs::create_dir_all(d).map_err(io("the work directory"))?;
    }
    let source_s = source.to_string_lossy().into_owned();
    let bare = up_root.join("bench.git").to_string_lossy().into_owned();
    upstream::git(&work, &["clone", "-q", "--bare", &source_s, &bare])
        .map_err(io("the upstream"))?;
    let pusher_s = pusher.to_string_lossy().into_owned();
    upstream::git(
        &work,
        &["clone", "-q", "--no-checkout", &source_s, &pusher_s],
    )
    .map_err(io("the pushing clone"))?;
    // One branch of new commits per round and contender, each its own content.
    let mut branches = std::collections::BTreeMap::new();
    for round in 0..o.rounds {
        for c in [Contender::Direct, Contender::Gate] {
            let name = format!("{}-{round}", c.name());
            let seed = 1000 + round as u64 * 2 + c as u64;
            let tip = repo::push_branch(&pusher, &name, &base, o.push_commits, seed)
                .map_err(io("the commits to push"))?;
            branches.insert((round, c), (name, tip));
        }
    }

    if let Some(archive) = &o.archive {
        let a = archive.to_string_lossy().into_owned();
        bottle_run(
            bottle,
            &o.runtime,
            &["--quiet", "image", "load", "--archive", &a],
            &[],
        )?;
    }
    let net: bottle_core::ipnet::Ipv4Net =
        o.subnet.parse().map_err(|e| format!("--subnet: {e}"))?;
    let gateway = Ipv4Addr::from(u32::from(net.network()) + 1);
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(io("a free port"))?
        .port();
    let token = format!("bench-token-{}", std::process::id());
    let file = work.join("bottle.toml");
    std::fs::write(
        &file,
        format!(
            "[[git_upstreams]]\nname = \"bench\"\nurl = \"http://{gateway}:{port}/bench.git\"\n\
             token = \"{TOKEN_KEY}\"\npush = [\"refs/heads/bench/*\"]\ninsecure_http = true\n"
        ),
    )
    .map_err(io("the bottle file"))?;
    let _ = bottle_run(bottle, &o.runtime, &["--quiet", "down", "--all"], &[]);
    let _down = Down {
        bottle,
        runtime: &o.runtime,
    };
    let file_s = file.to_string_lossy().into_owned();
    let up_out = bottle_run(
        bottle,
        &o.runtime,
        &[
            "up",
            SLUG,
            "-f",
            &file_s,
            "--subnet-pool",
            &o.subnet,
            "--loopback-pool",
            &o.loopback_pool,
            "--memory",
            &o.memory,
            "--output",
            "json",
        ],
        &[(TOKEN_KEY, &token)],
    )?;
    let report: serde_json::Value =
        serde_json::from_str(&up_out).map_err(|e| format!("bottle up's JSON: {e}"))?;
    let gate_url = report["env"]["GIT_GATE_URL"]
        .as_str()
        .ok_or_else(|| format!("no GIT_GATE_URL in {up_out}"))?
        .to_string();
    let upstream = Upstream::start(
        SocketAddr::from((gateway, port)),
        &up_root,
        Auth {
            token: Some(token.clone()),
            private: false,
        },
    )
    .map_err(io("the upstream"))?;
    let direct_url = upstream.url("bench");
    let direct_push_url = direct_url.replace("http://", &format!("http://bench:{token}@"));
    let gate_repo = format!("{gate_url}/bench.git");
    let url = |c: Contender, op: Op| match (c, op) {
        (Contender::Direct, Op::Push) => direct_push_url.clone(),
        (Contender::Direct, Op::Clone) => direct_url.clone(),
        (Contender::Gate, _) => gate_repo.clone(),
    };

    let container = report["container"].as_str().unwrap_or_default();
    let cpu = BundleCpu::find(&o.runtime, container);
    if cpu.now().is_none() {
        m.notes
            .push("the bundle's CPU time could not be read from its cgroup".into());
    }
    let clone = |c: Contender, dir: &str| -> Result<(Instant, Duration, Option<f64>), String> {
        let target = clones.join(dir);
        let _ = std::fs::remove_dir_all(&target);
        let target_s = target.to_string_lossy().into_owned();
        let before = cpu.now();
        let from = Instant::now();
        let took = git_timed(
            &clones,
            &[
                "clone",
                "-q",
                "--no-checkout",
                &url(c, Op::Clone),
                &target_s,
            ],
        )?;
        let spent = BundleCpu::between(before, cpu.now());
        let _ = std::fs::remove_dir_all(&target);
        Ok((from, took, spent))
    };

    // Warm-up: the first clone of each (the gate's mirror starts empty).
    for c in [Contender::Gate, Contender::Direct] {
        let (from, took, spent) = clone(c, "warmup")?;
        let s = sample(&upstream, 0, c, Op::Clone, from, took, spent);
        match c {
            Contender::Gate => m.first_gate_clone = Some(s),
            Contender::Direct => m.first_direct_clone = Some(s),
        }
    }

    for round in 0..o.rounds {
        let order = if round % 2 == 0 {
            [Contender::Direct, Contender::Gate]
        } else {
            [Contender::Gate, Contender::Direct]
        };
        for c in order {
            match clone(c, &format!("{}-{round}", c.name())) {
                Ok((from, took, spent)) => {
                    m.samples
                        .push(sample(&upstream, round, c, Op::Clone, from, took, spent))
                }
                Err(e) => m
                    .failures
                    .push(format!("round {round}: {} clone: {e}", c.name())),
            }
        }
        for c in order {
            let (name, tip) = &branches[&(round, c)];
            let refspec = format!("refs/heads/{name}:refs/heads/bench/{name}");
            let before = cpu.now();
            let from = Instant::now();
            match git_timed(&pusher, &["push", "-q", &url(c, Op::Push), &refspec]) {
                Ok(took) => {
                    let spent = BundleCpu::between(before, cpu.now());
                    let landed = upstream::ref_id(
                        &upstream.repo("bench"),
                        &format!("refs/heads/bench/{name}"),
                    );
                    if landed.as_deref() != Some(tip.as_str()) {
                        m.failures.push(format!(
                            "round {round}: {} push returned but the upstream has {landed:?}, not {tip}",
                            c.name()
                        ));
                    }
                    m.samples
                        .push(sample(&upstream, round, c, Op::Push, from, took, spent));
                }
                Err(e) => m
                    .failures
                    .push(format!("round {round}: {} push: {e}", c.name())),
            }
        }
        eprintln!("bench git: round {} of {} done", round + 1, o.rounds);
    }
    drop(upstream);
    let _ = std::fs::remove_dir_all(&work);
    Ok(m)
}
