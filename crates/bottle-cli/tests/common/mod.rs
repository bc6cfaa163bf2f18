//! Helpers shared by the CLI's test suites: run the built `bottle` binary, and make sure a real
//! engine is there (failing in CI, skipping with one line elsewhere).

#![allow(dead_code, clippy::print_stderr)] // Not every suite uses every helper; skip lines are for people.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use bottle_core::conformance::harness::{pools, SuitePools};
use bottle_core::conformance::in_ci;
use serde_json::Value;

pub const BOTTLE: &str = env!("CARGO_BIN_EXE_bottle");

/// One real engine, with the pools the shared harness's table reserves for a suite, so it
/// never collides with others.
#[derive(Debug, Clone, Copy)]
pub struct Engine {
    pub name: &'static str,
    pub subnet_pool: &'static str,
    pub loopback_pool: &'static str,
}

impl Engine {
    /// The engine and pools of a row of `bottle_core::conformance::harness::POOLS`.
    pub const fn of(pools: SuitePools) -> Engine {
        Engine {
            name: pools.engine,
            subnet_pool: pools.subnet_pool,
            loopback_pool: pools.loopback_pool,
        }
    }

    /// `a.b.` of the subnet pool, to check subnets against.
    pub fn subnet_prefix(&self) -> String {
        two_octets(self.subnet_pool)
    }

    /// `127.x.` of the loopback pool, to check addresses against.
    pub fn loopback_prefix(&self) -> String {
        two_octets(self.loopback_pool)
    }
}

fn two_octets(pool: &str) -> String {
    let octets: Vec<&str> = pool.split('.').take(2).collect();
    format!("{}.", octets.join("."))
}

/// The pools of the suites that share this table's `cli` row (engines, services).
pub const DOCKER: Engine = Engine::of(pools("cli", "docker"));
pub const PODMAN: Engine = Engine::of(pools("cli", "podman"));

/// The result of one `bottle` run.
#[derive(Debug)]
pub struct Run {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "bottle {:?} failed\nstdout: {}\nstderr: {}",
            self.args, self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "bottle {:?}: stdout is not JSON ({e}):\n{}\nstderr: {}",
                self.args, self.stdout, self.stderr
            )
        })
    }
}

/// Runs `bottle` with `args` and extra environment, isolated from the caller's BOTTLE_*
/// settings.
pub fn bottle_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(BOTTLE);
    cmd.args(args)
        .env_remove("BOTTLE_RUNTIME")
        .env_remove("BOTTLE_PREFIX")
        .env_remove("RUST_LOG");
    collect(cmd, args, env)
}

/// Runs `cmd` (the bottle binary, its arguments `args` already given) with `env` added and no
/// stdin, and collects what it said.
pub fn collect(mut cmd: Command, args: &[&str], env: &[(&str, &str)]) -> Run {
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("run the bottle binary");
    Run {
        args: args.iter().map(|s| s.to_string()).collect(),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn bottle(args: &[&str]) -> Run {
    bottle_env(args, &[])
}

impl Engine {
    /// Runs `bottle --runtime <engine> --prefix <prefix> args...`.
    pub fn run(&self, prefix: &str, args: &[&str]) -> Run {
        self.run_env(prefix, args, &[])
    }

    pub fn run_env(&self, prefix: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut all = vec!["--runtime", self.name, "--prefix", prefix];
        all.extend_from_slice(args);
        bottle_env(&all, env)
    }

    /// The pool flags of this engine, for `up` and `plan`.
    pub fn pools(&self) -> [&'static str; 4] {
        [
            "--subnet-pool",
            self.subnet_pool,
            "--loopback-pool",
            self.loopback_pool,
        ]
    }

    /// The bottles of `prefix` on the engine, from `ps --output json`.
    #[track_caller]
    pub fn ps(&self, prefix: &str) -> Vec<Value> {
        match self.run(prefix, &["ps", "--output", "json"]).ok().json() {
            Value::Array(items) => items,
            other => panic!("ps --output json is not an array: {other}"),
        }
    }

    /// Whether the engine answers and has the reference image (loaded here when missing).
    /// In CI a missing engine or image is a failure; elsewhere the test skips with one line.
    pub fn ready(&self) -> bool {
        static DOCKER_READY: OnceLock<bool> = OnceLock::new();
        static PODMAN_READY: OnceLock<bool> = OnceLock::new();
        let cell = if self.name == "docker" {
            &DOCKER_READY
        } else {
            &PODMAN_READY
        };
        *cell.get_or_init(|| self.check_ready())
    }

    fn check_ready(&self) -> bool {
        let doctor = bottle(&["--runtime", self.name, "doctor", "--output", "json"]);
        let report = doctor.json();
        let entry = report["engines"]
            .as_array()
            .and_then(|engines| engines.iter().find(|e| e["engine"] == self.name))
            .unwrap_or_else(|| panic!("doctor lists {}: {report}", self.name))
            .clone();
        if entry["answers"] != true {
            let why = entry["problems"].to_string();
            if in_ci() {
                panic!("{} engine required in CI but unavailable: {why}", self.name);
            }
            eprintln!(
                "skipping {} CLI tests: the engine does not answer ({why}); run `cargo xtask engines`",
                self.name
            );
            return false;
        }
        if entry["image_present"] != true {
            let load = bottle(&["--runtime", self.name, "--quiet", "image", "load"]);
            if load.code != 0 {
                if in_ci() {
                    panic!(
                        "loading the reference image into {} failed: {}",
                        self.name, load.stderr
                    );
                }
                eprintln!(
                    "skipping {} CLI tests: the reference image is missing and could not be loaded ({}); run `cargo xtask image`",
                    self.name,
                    load.stderr.trim()
                );
                return false;
            }
        }
        eprintln!("running CLI tests against the real {} engine", self.name);
        true
    }
}

/// Tears down every bottle of a prefix when dropped, so a failed assertion leaves nothing
/// behind on the engine.
#[derive(Debug)]
pub struct DownOnDrop {
    pub engine: Engine,
    pub prefix: String,
}

impl Engine {
    /// Takes down what an earlier run left under `prefix`, and returns the guard that takes
    /// down what this run leaves.
    pub fn clean_slate(self, prefix: &str) -> DownOnDrop {
        self.run(prefix, &["--quiet", "down", "--all"]).ok();
        DownOnDrop {
            engine: self,
            prefix: prefix.to_string(),
        }
    }
}

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let _ = self.engine.run(&self.prefix, &["--quiet", "down", "--all"]);
    }
}

/// The `env` object of an endpoints report, as a map.
pub fn env_map(report: &Value) -> BTreeMap<String, String> {
    report["env"]
        .as_object()
        .expect("env is an object")
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().expect("env values are strings").to_string(),
            )
        })
        .collect()
}

/// Runs the engine's own command-line client (`docker` or `podman`) and returns its stdout;
/// `None` when it fails (its stderr is printed).
pub fn engine_cli(engine: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(engine)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run the {engine} client: {e}"));
    if out.status.success() {
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        eprintln!(
            "{engine} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        None
    }
}

/// Every container and network of `prefix` on the engine, asked of the engine's own client
/// both by our prefix label and by name (`<prefix>-...`), so an object that lost its labels, or
/// one the lifecycle never labelled, shows too. Sorted, deduplicated: `container NAME`,
/// `network NAME`.
#[track_caller]
pub fn engine_objects(engine: &str, prefix: &str) -> Vec<String> {
    let label = format!("label={}={prefix}", bottle_core::labels::PREFIX);
    let named = format!("{prefix}-");
    let lines = |args: &[&str]| -> Vec<String> {
        engine_cli(engine, args)
            .unwrap_or_else(|| panic!("{engine} {args:?} failed"))
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    };
    let mut found = std::collections::BTreeSet::new();
    for name in lines(&["ps", "-a", "--filter", &label, "--format", "{{.Names}}"]) {
        found.insert(format!("container {name}"));
    }
    for name in lines(&["ps", "-a", "--format", "{{.Names}}"]) {
        if name.starts_with(&named) {
            found.insert(format!("container {name}"));
        }
    }
    for name in lines(&["network", "ls", "--filter", &label, "--format", "{{.Name}}"]) {
        found.insert(format!("network {name}"));
    }
    for name in lines(&["network", "ls", "--format", "{{.Name}}"]) {
        if name.starts_with(&named) {
            found.insert(format!("network {name}"));
        }
    }
    found.into_iter().collect()
}

/// Fails unless nothing of `prefix` is left on the engine, by label or by name.
#[track_caller]
pub fn assert_nothing_left(engine: &str, prefix: &str, after: &str) {
    let left = engine_objects(engine, prefix);
    assert!(
        left.is_empty(),
        "{engine}: after {after}, objects of prefix {prefix} are left: {left:?}"
    );
}

/// `docker inspect` / `podman inspect` of one object, as JSON (the first element).
#[track_caller]
pub fn inspect(engine: &str, kind: &str, name: &str) -> Value {
    let text = engine_cli(engine, &[kind, "inspect", name])
        .unwrap_or_else(|| panic!("{engine} {kind} inspect {name} failed"));
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{engine} {kind} inspect {name}: not JSON ({e}): {text}"));
    match v {
        Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
        other => panic!("{engine} {kind} inspect {name}: {other}"),
    }
}

/// `bottle --runtime <engine> --prefix <prefix> args...` as a child process with stderr piped
/// (and stdout too), for tests that kill it or run many at once.
pub fn spawn_bottle(engine: &str, prefix: &str, args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(BOTTLE);
    cmd.args(["--runtime", engine, "--prefix", prefix])
        .args(args)
        .env_remove("BOTTLE_RUNTIME")
        .env_remove("BOTTLE_PREFIX")
        .env_remove("RUST_LOG")
        .env_remove(PAUSE_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn the bottle binary")
}

/// Waits for a child from [`spawn_bottle`] and collects it as a [`Run`].
pub fn finish(child: Child, args: &[&str]) -> Run {
    let out = child.wait_with_output().expect("wait for bottle");
    Run {
        args: args.iter().map(|s| s.to_string()).collect(),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The testing aid of the CLI's progress reporter (see the CLI's crate docs).
pub const PAUSE_ENV: &str = "BOTTLE_DEBUG_PAUSE_AT";

/// Whether an opt-in suite runs: when `var` is `1`, or in CI. Otherwise prints one line saying
/// how to run it.
pub fn opted_in(var: &str, suite: &str) -> bool {
    if std::env::var(var).is_ok_and(|v| v == "1") || in_ci() {
        return true;
    }
    say(&format!(
        "skipping {suite}: set {var}=1 to run it (CI runs it)"
    ));
    false
}

/// A line on the test's stderr directly, past libtest's capture, so it shows in every run's
/// output (figures, skips).
pub fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The children of host process `parent`, each with its command line split into words.
pub fn children(parent: i64) -> Vec<(i64, Vec<String>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i64>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // `pid (comm) state ppid ...`; comm may hold spaces, so split after the last `)`.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i64>().ok());
        if ppid != Some(parent) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let words = cmdline
            .split(|b| *b == 0)
            .filter(|w| !w.is_empty())
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        found.push((pid, words));
    }
    found
}
