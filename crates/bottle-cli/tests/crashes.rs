//! Crashes and faults on the real Docker and Podman engines.
//!
//! - `bottle up` killed with SIGKILL at every point between its engine calls (the CLI's testing
//!   aid `BOTTLE_DEBUG_PAUSE_AT` stops it exactly there): the debris is what that point implies;
//!   a second `bottle up` of the slug either completes or names the slug and says how to recover
//!   (`bottle down` / `bottle gc`); and `bottle gc` (for debris that is not a whole bottle) or
//!   `bottle down` leaves nothing of ours, asked of the engine by label and by name. A `bottle
//!   down` killed before it removed anything is finished by the next `bottle down`.
//! - A bundle whose daemon dies: `ps` shows it unhealthy (the probe, not engine health checks,
//!   which Podman here never runs), `env` refuses to hand out its URLs, `gc` leaves it to `down`,
//!   and once the bundle's init restarts the daemon the bottle is whole again.
//!
//! Pools: its rows `cli-crashes` of the shared harness's pool table
//! (`bottle_core::conformance::harness::POOLS`).

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bottle_core::conformance::harness::pools;
use common::{assert_nothing_left, engine_objects, spawn_bottle, Engine, PAUSE_ENV};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const DOCKER: Engine = Engine::of(pools("cli-crashes", "docker"));

const PODMAN: Engine = Engine::of(pools("cli-crashes", "podman"));

/// What a launch killed at a step leaves on the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Debris {
    /// Nothing was created yet.
    Nothing,
    /// The network, without its bundle.
    Network,
    /// The network and a bundle that was never started.
    Created,
    /// The network and a running bundle.
    Running,
}

/// Every step of `up` the CLI reports, in order, and what a kill there leaves. Each step is
/// reported as it starts, so the kill lands between the engine calls before and after it.
const POINTS: &[(&str, Debris)] = &[
    ("checking-image", Debris::Nothing),
    ("allocating", Debris::Nothing),
    // Holding the allocation lock: the kernel releases it with the process.
    ("creating-network", Debris::Nothing),
    // After network create.
    ("creating-container", Debris::Network),
    // After container create.
    ("starting", Debris::Created),
    // After start.
    ("discovering-ports", Debris::Running),
    // During readiness: host ports known, daemons not probed yet.
    ("waiting-ready", Debris::Running),
];

/// A child that is killed if the test ends before it is.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `bottle args` with `BOTTLE_DEBUG_PAUSE_AT=step`, waits for its marker line and kills it
/// with SIGKILL.
fn kill_at(engine: Engine, prefix: &str, args: &[&str], step: &str) {
    let mut child = spawn_bottle(engine.name, prefix, args, &[(PAUSE_ENV, step)]);
    let stderr = child.stderr.take().expect("piped stderr");
    let mut guard = KillOnDrop(Some(child));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let paused = line.starts_with("bottle: paused at");
            if tx.send(line).is_err() || paused {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    // A bound so a broken hook fails the test instead of hanging it; not a timing assertion.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with(&format!("bottle: paused at {step} ")) => break,
            Ok(line) => seen.push(line),
            Err(e) => panic!(
                "{} {args:?} never paused at {step} ({e}); its stderr: {seen:#?}",
                engine.name
            ),
        }
    }
    let mut child = guard.0.take().expect("child");
    child.kill().expect("SIGKILL the paused bottle");
    let status = child.wait().expect("reap it");
    assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status:?}");
}

/// The bundle's state as the engine's own client reports it.
fn container_state(engine: Engine, name: &str) -> String {
    let c = common::inspect(engine.name, "container", name);
    c["State"]["Status"]
        .as_str()
        .unwrap_or_else(|| panic!("State.Status of {name}: {c}"))
        .to_string()
}

#[track_caller]
fn check_debris(engine: Engine, prefix: &str, slug: &str, step: &str, debris: Debris) {
    let network = format!("network {prefix}-bundle-{slug}");
    let container = format!("container {prefix}-sidecars-{slug}");
    let found = engine_objects(engine.name, prefix);
    let want: Vec<String> = match debris {
        Debris::Nothing => vec![],
        Debris::Network => vec![network],
        Debris::Created | Debris::Running => vec![container, network],
    };
    assert_eq!(found, want, "{}: debris of a kill at {step}", engine.name);
    let name = format!("{prefix}-sidecars-{slug}");
    match debris {
        Debris::Created => assert_eq!(container_state(engine, &name), "created", "{step}"),
        Debris::Running => assert_eq!(container_state(engine, &name), "running", "{step}"),
        Debris::Nothing | Debris::Network => {}
    }
}

/// How the debris is cleared after the second `up`.
#[derive(Debug, Clone, Copy)]
enum Recovery {
    Gc,
    Down,
}

fn crash_at_every_step(engine: Engine) {
    if !engine.ready() {
        return;
    }
    let prefix = format!("bt-crash-{}", engine.name);
    let prefix = prefix.as_str();
    let _cleanup = engine.clean_slate(prefix);
    for &(step, debris) in POINTS {
        for recovery in [Recovery::Gc, Recovery::Down] {
            let slug = format!("{step}-{}", format!("{recovery:?}").to_lowercase());
            let slug = slug.as_str();
            eprintln!(
                "{}: kill `bottle up {slug}` at {step}, recover with {recovery:?}",
                engine.name
            );
            let mut up = vec!["--quiet", "up", slug, "--output", "json"];
            up.extend(engine.pools());
            kill_at(engine, prefix, &up, step);
            check_debris(engine, prefix, slug, step, debris);

            // `up` again: completes, or names the slug and says how to recover.
            let again = engine.run(prefix, &up);
            if again.code == 0 {
                assert_eq!(debris, Debris::Nothing, "{step}: {again:#?}");
                let report = again.json();
                assert_eq!(report["slug"], slug);
            } else {
                assert_ne!(debris, Debris::Nothing, "{step}: {again:#?}");
                assert_eq!(again.code, 1, "{again:#?}");
                for needle in [
                    format!("bottle {slug} is already up"),
                    // Commands ready to paste: this run's engine and prefix.
                    format!(
                        "`bottle --runtime {} --prefix {prefix} down {slug}`",
                        engine.name
                    ),
                    format!("`bottle --runtime {} --prefix {prefix} gc`", engine.name),
                ] {
                    assert!(
                        again.stderr.contains(&needle),
                        "{}: second up after a kill at {step} says {needle:?}: {}",
                        engine.name,
                        again.stderr
                    );
                }
                // It touched nothing: the debris is as it was.
                check_debris(engine, prefix, slug, step, debris);
            }

            match recovery {
                Recovery::Gc => {
                    let gc = engine.run(prefix, &["gc", "--output", "json"]).ok().json();
                    let removed: Vec<String> = gc
                        .as_array()
                        .expect("gc prints an array")
                        .iter()
                        .map(|r| format!("{} {}", r["kind"].as_str().unwrap(), r["name"]))
                        .collect();
                    match debris {
                        // Not a whole bottle: gc removes all of it.
                        Debris::Network | Debris::Created => {
                            assert!(!removed.is_empty(), "{step}: gc removed nothing");
                            assert_nothing_left(engine.name, prefix, &format!("gc ({step})"));
                        }
                        // A whole bottle (the second up's, or the killed one that came up on
                        // its own): nobody's garbage; `down` removes it.
                        Debris::Nothing | Debris::Running => {
                            assert_eq!(gc, serde_json::json!([]), "{step}: gc of a whole bottle");
                            let ps = engine.ps(prefix);
                            assert_eq!(ps.len(), 1, "{ps:?}");
                            engine.run(prefix, &["--quiet", "down", slug]).ok();
                            assert_nothing_left(engine.name, prefix, &format!("down ({step})"));
                        }
                    }
                }
                Recovery::Down => {
                    engine.run(prefix, &["--quiet", "down", slug]).ok();
                    assert_nothing_left(engine.name, prefix, &format!("down ({step})"));
                }
            }
        }
    }

    // `down` killed at its first removal: nothing is removed yet, and the next `down` does it.
    let slug = "half-down";
    let mut up = vec!["--quiet", "up", slug];
    up.extend(engine.pools());
    engine.run(prefix, &up).ok();
    kill_at(engine, prefix, &["--quiet", "down", slug], "removing");
    assert_eq!(
        engine_objects(engine.name, prefix).len(),
        2,
        "nothing removed yet"
    );
    engine.run(prefix, &["--quiet", "down", slug]).ok();
    assert_nothing_left(engine.name, prefix, "down after a killed down");
}

#[test]
fn docker_up_killed_at_every_step_is_recoverable() {
    crash_at_every_step(DOCKER);
}

#[test]
fn podman_up_killed_at_every_step_is_recoverable() {
    crash_at_every_step(PODMAN);
}

/// The host pid of the bundle's init (PID 1 of the container).
fn init_pid(engine: Engine, container: &str) -> i32 {
    let c = common::inspect(engine.name, "container", container);
    c["State"]["Pid"]
        .as_i64()
        .filter(|p| *p > 0)
        .unwrap_or_else(|| panic!("State.Pid of {container}: {}", c["State"])) as i32
}

/// Children of `parent` (host pids) whose command line ends with `args`.
fn children_running(parent: i32, args: &[&str]) -> Vec<i32> {
    common::children(i64::from(parent))
        .into_iter()
        .filter(|(_, words)| {
            words.len() >= args.len() && words[words.len() - args.len()..] == *args
        })
        .map(|(pid, _)| pid as i32)
        .collect()
}

/// The one-letter state of a process (`R`, `S`, `T`, `Z`, ...).
fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// Sends SIGCONT to the init when dropped, so a failed assertion leaves no stopped process.
struct ContinueOnDrop(Pid);

impl Drop for ContinueOnDrop {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

/// A bundle whose egress daemon dies.
///
/// The bundle's init restarts a dead daemon after a second, so to hold the bottle in the
/// dead-daemon state long enough to look at it, the test first stops the init (SIGSTOP from the
/// host, where it is an ordinary process) and then kills the daemon with SIGKILL: the daemon is
/// really gone (a zombie holds no socket) and nothing brings it back until the init continues.
fn dead_daemon(engine: Engine) {
    if !engine.ready() {
        return;
    }
    let prefix = format!("bt-dead-{}", engine.name);
    let prefix = prefix.as_str();
    let _cleanup = engine.clean_slate(prefix);
    let slug = "dead";
    // With supervise too: only the daemon that died may be reported.
    let mut up = vec!["--quiet", "up", slug, "--supervise", "--output", "json"];
    up.extend(engine.pools());
    let report = engine.run(prefix, &up).ok().json();
    let container = report["container"].as_str().expect("container").to_string();
    let init = init_pid(engine, &container);
    let daemons = children_running(init, &["daemon", "egress"]);
    let [egress] = daemons[..] else {
        panic!("one egress daemon under the init {init}: {daemons:?}");
    };

    let stopped = ContinueOnDrop(Pid::from_raw(init));
    match kill(stopped.0, Signal::SIGSTOP) {
        Ok(()) => {}
        Err(e) if !bottle_core::conformance::in_ci() => {
            eprintln!(
                "skipping the dead-daemon test on {}: cannot signal the bundle's processes ({e}); run the tests as root",
                engine.name
            );
            return;
        }
        Err(e) => panic!("cannot stop the bundle's init {init}: {e}"),
    }
    kill(Pid::from_raw(egress), Signal::SIGKILL).expect("kill the egress daemon");
    // Dead for sure before looking: a zombie, since its stopped parent cannot reap it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while process_state(egress) != Some('Z') {
        assert!(Instant::now() < deadline, "egress {egress} did not die");
        std::thread::sleep(Duration::from_millis(20));
    }

    // ps: unhealthy, naming the dead daemon and only it.
    let ps = engine.ps(prefix);
    let [entry] = &ps[..] else {
        panic!("one bottle: {ps:?}")
    };
    assert_eq!(entry["state"], "running", "{entry}");
    assert_eq!(
        entry["unreachable"],
        serde_json::json!(["egress"]),
        "{entry}"
    );
    assert_eq!(entry["complete"], false, "{entry}");
    let text = engine.run(prefix, &["ps"]).ok();
    assert!(
        text.stdout.contains("unhealthy (egress down)"),
        "ps shows the bottle unhealthy:\n{}",
        text.stdout
    );

    // env refuses, in every format, and prints no URL.
    for output in ["text", "json", "env"] {
        let env = engine.run(prefix, &["env", slug, "--output", output]);
        assert_eq!(env.code, 1, "env --output {output}: {env:#?}");
        assert!(
            env.stdout.is_empty(),
            "env --output {output} printed {}",
            env.stdout
        );
        assert!(
            env.stderr.contains("egress") || env.stderr.contains("unhealthy"),
            "env says why: {}",
            env.stderr
        );
        assert!(env.stderr.contains(slug), "{}", env.stderr);
    }
    // gc leaves a running bundle to `down` (its init may yet restart the daemon).
    let gc = engine
        .run(prefix, &["gc", "--dry-run", "--output", "json"])
        .ok()
        .json();
    assert_eq!(gc, serde_json::json!([]), "gc leaves a running bundle");

    // The init continues, reaps the daemon and restarts it after its backoff: whole again.
    drop(stopped);
    let deadline = Instant::now() + Duration::from_secs(60);
    let healed = loop {
        let ps = engine.ps(prefix);
        if ps.len() == 1 && ps[0]["complete"] == true {
            break ps[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "the bottle never came back after its init continued: {ps:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(healed["unreachable"], serde_json::json!([]), "{healed}");
    let env = engine
        .run(prefix, &["env", slug, "--output", "json"])
        .ok()
        .json();
    let urls = |v: &Value| v["daemons"].as_array().map(Vec::len);
    assert_eq!(urls(&env), Some(2), "{env}");

    engine.run(prefix, &["--quiet", "down", slug]).ok();
    assert_nothing_left(engine.name, prefix, "down");
}

#[test]
fn docker_dead_daemon_is_unhealthy_and_env_refuses() {
    dead_daemon(DOCKER);
}

#[test]
fn podman_dead_daemon_is_unhealthy_and_env_refuses() {
    dead_daemon(PODMAN);
}
