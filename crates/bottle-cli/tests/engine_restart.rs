//! The engine restarting while bottles run, on the real Docker and Podman: the test stops
//! `dockerd` / the Podman API service (by the pid it runs under, with SIGTERM), checks that
//! `bottle ps` then says no engine answers, starts the engine again the way `cargo xtask engines`
//! does (detached, its log appended to `target/engines/`), and checks that `bottle ps` reports
//! each bottle's real state (what the engine's own `inspect` says, and whether its daemons
//! answer), that `env` hands out URLs only for a whole bottle, that a new bottle comes up, and
//! that `down` still removes everything.
//!
//! What "real state" is differs: Docker (without live-restore, as `xtask engines` runs it)
//! stops every container when it shuts down, so the bundles come back `exited`; Podman has no
//! daemon (each container has its own `conmon`), so the bundles keep running through a restart
//! of its API service.
//!
//! This binary holds one test only: cargo runs test binaries one after another, so no other test
//! sees the engine go away. A guard starts the engine again if the test fails half-way.
//!
//! Pools: its rows `cli-engine-restart` of the shared harness's pool table
//! (`bottle_core::conformance::harness::POOLS`).

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bottle_core::conformance::harness::pools;
use bottle_core::conformance::in_ci;
use common::{assert_nothing_left, say, Engine};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const DOCKER: Engine = Engine::of(pools("cli-engine-restart", "docker"));

const PODMAN: Engine = Engine::of(pools("cli-engine-restart", "podman"));

const DOCKER_SOCKET: &str = "/var/run/docker.sock";
const DOCKER_PID_FILE: &str = "/var/run/docker.pid";
const PODMAN_SOCKET: &str = "/run/podman/podman.sock";

/// How long an engine gets to stop or to answer after start; only a bound against hanging.
const ENGINE_WAIT: Duration = Duration::from_secs(120);

/// Whether the engine answers `GET /_ping` on its socket.
fn answers(socket: &str) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: engine\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply
        .lines()
        .next()
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("200"))
}

/// The directory `cargo xtask engines` logs to.
fn log_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/bottle-cli is two levels below the workspace");
    let dir = workspace.join("target").join("engines");
    std::fs::create_dir_all(&dir).expect("create target/engines");
    dir
}

/// An engine this test can stop and start: its socket, how to find its process, how to start it.
#[derive(Debug, Clone, Copy)]
struct Service {
    engine: Engine,
    socket: &'static str,
}

impl Service {
    /// The pid of the engine process serving the socket this test talks to, or why there is none
    /// this test may restart.
    fn pid(&self) -> Result<i32, String> {
        let (var, value) = match self.engine.name {
            "docker" => ("DOCKER_HOST", std::env::var("DOCKER_HOST")),
            _ => ("CONTAINER_HOST", std::env::var("CONTAINER_HOST")),
        };
        if let Some(v) = value.ok().filter(|v| !v.is_empty()) {
            return Err(format!(
                "{var}={v} points at an engine this test did not start"
            ));
        }
        match self.engine.name {
            "docker" => {
                let pid: i32 = std::fs::read_to_string(DOCKER_PID_FILE)
                    .map_err(|e| format!("{DOCKER_PID_FILE}: {e}"))?
                    .trim()
                    .parse()
                    .map_err(|e| format!("{DOCKER_PID_FILE}: {e}"))?;
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                (comm.trim() == "dockerd")
                    .then_some(pid)
                    .ok_or_else(|| format!("pid {pid} of {DOCKER_PID_FILE} is not dockerd"))
            }
            _ => {
                let url = format!("unix://{PODMAN_SOCKET}");
                let found: Vec<i32> = std::fs::read_dir("/proc")
                    .expect("/proc")
                    .flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                    .filter(|pid| {
                        let cmdline =
                            std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                        let words: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                        words.first().is_some_and(|w| w.ends_with(b"podman"))
                            && words.iter().any(|w| *w == b"service")
                            && words.contains(&url.as_bytes())
                    })
                    .collect();
                match found[..] {
                    [pid] => Ok(pid),
                    _ => Err(format!(
                        "expected one `podman system service ... {url}` process, found {found:?}"
                    )),
                }
            }
        }
    }

    /// SIGTERM to the engine, then waits until its process is gone.
    fn stop(&self, pid: i32) {
        say(&format!(
            "{}: stopping the engine (pid {pid})",
            self.engine.name
        ));
        kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM the engine");
        let deadline = Instant::now() + ENGINE_WAIT;
        while Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid) {
            assert!(
                Instant::now() < deadline,
                "the engine (pid {pid}) did not stop"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts the engine as `cargo xtask engines` does, detached in its own process group so it
    /// outlives this test, and waits until it answers.
    fn start(&self) {
        let log_path = log_dir().join(match self.engine.name {
            "docker" => "dockerd.log",
            _ => "podman.log",
        });
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open the engine log");
        let mut cmd = match self.engine.name {
            "docker" => Command::new(
                ["/usr/sbin/dockerd", "/usr/bin/dockerd"]
                    .into_iter()
                    .find(|p| Path::new(p).exists())
                    .unwrap_or("dockerd"),
            ),
            _ => {
                // A socket file left behind refuses the new service's bind.
                let _ = std::fs::remove_file(PODMAN_SOCKET);
                let mut cmd = Command::new("podman");
                cmd.args([
                    "system",
                    "service",
                    "--time=0",
                    &format!("unix://{PODMAN_SOCKET}"),
                ]);
                cmd
            }
        };
        cmd.current_dir("/")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0);
        // Never waited for: the engine outlives this test, like the one `xtask engines` starts.
        #[allow(clippy::zombie_processes)]
        let child = cmd.spawn().expect("start the engine");
        say(&format!(
            "{}: started the engine again (pid {}, log {})",
            self.engine.name,
            child.id(),
            log_path.display()
        ));
        let deadline = Instant::now() + ENGINE_WAIT;
        while !answers(self.socket) {
            assert!(
                Instant::now() < deadline,
                "{} did not answer after its restart; see {}",
                self.engine.name,
                log_path.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Starts the engine again when dropped, if it does not answer: a failed assertion must not
/// leave the machine without its engine.
struct EngineBack(Service);

impl Drop for EngineBack {
    fn drop(&mut self) {
        if !answers(self.0.socket) {
            say(&format!(
                "{}: the engine is down after the test; starting it",
                self.0.engine.name
            ));
            self.0.start();
        }
    }
}

/// The bundle's state as the engine's own client reports it.
fn engine_state(engine: Engine, container: &str) -> String {
    common::inspect(engine.name, "container", container)["State"]["Status"]
        .as_str()
        .expect("State.Status")
        .to_string()
}

fn restart(service: Service) {
    let engine = service.engine;
    if !engine.ready() {
        return;
    }
    let pid = match service.pid() {
        Ok(pid) => pid,
        Err(why) if in_ci() => panic!("{}: cannot restart the engine in CI: {why}", engine.name),
        Err(why) => {
            say(&format!("skipping the {} restart test: {why}", engine.name));
            return;
        }
    };
    let prefix = format!("bt-restart-{}", engine.name);
    let prefix = prefix.as_str();
    let _cleanup = engine.clean_slate(prefix);
    let slugs = ["before-1", "before-2"];
    for slug in slugs {
        let mut up = vec!["--quiet", "up", slug, "--supervise"];
        up.extend(engine.pools());
        engine.run(prefix, &up).ok();
    }
    assert!(engine.ps(prefix).iter().all(|b| b["complete"] == true));

    // Down: the engine does not answer, and `bottle` says so.
    let back = EngineBack(service);
    service.stop(pid);
    let ps = engine.run(prefix, &["ps"]);
    assert_eq!(ps.code, 3, "ps without an engine: {ps:#?}");
    assert!(ps.stderr.contains(engine.name), "{}", ps.stderr);

    // Up again: ps reports what the engine and the ports say.
    service.start();
    let ps = engine.ps(prefix);
    assert_eq!(ps.len(), slugs.len(), "{ps:?}");
    for entry in &ps {
        let slug = entry["slug"].as_str().expect("slug");
        let container = entry["container"].as_str().expect("the bundle is listed");
        let state = engine_state(engine, container);
        say(&format!(
            "{}: after the restart, bundle {container} is {state}; ps: state {}, complete {}, unreachable {}",
            engine.name, entry["state"], entry["complete"], entry["unreachable"]
        ));
        assert_eq!(
            entry["state"],
            state.as_str(),
            "ps tells the engine's state"
        );
        let whole = state == "running" && entry["unreachable"] == serde_json::json!([]);
        assert_eq!(entry["complete"], whole, "{entry}");
        match engine.name {
            // Docker stops containers when it shuts down.
            "docker" => assert_eq!(state, "exited", "{entry}"),
            // Podman's containers do not depend on its API service.
            _ => assert_eq!(state, "running", "{entry}"),
        }
        let env = engine.run(prefix, &["env", slug, "--output", "json"]);
        if whole {
            let report = env.ok().json();
            assert_eq!(report["slug"], slug);
        } else {
            assert_eq!(env.code, 1, "env of a bundle that is {state}: {env:#?}");
            assert!(env.stdout.is_empty(), "{}", env.stdout);
            assert!(env.stderr.contains(slug), "{}", env.stderr);
        }
    }

    // A new bottle comes up on the restarted engine.
    let mut up = vec!["--quiet", "up", "after", "--output", "json"];
    up.extend(engine.pools());
    let report: Value = engine.run(prefix, &up).ok().json();
    assert_eq!(report["slug"], "after");

    // Down removes everything, whatever state the restart left.
    engine.run(prefix, &["--quiet", "down", "--all"]).ok();
    assert_nothing_left(engine.name, prefix, "down --all after the restart");
    drop(back);
}

#[test]
fn engines_restart_under_running_bottles() {
    restart(Service {
        engine: DOCKER,
        socket: DOCKER_SOCKET,
    });
    restart(Service {
        engine: PODMAN,
        socket: PODMAN_SOCKET,
    });
}
