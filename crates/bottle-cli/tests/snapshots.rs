//! Snapshots of what `bottle` says: every error and hint text (exit code, stdout, stderr) of a
//! table of bad inputs and unreachable engines, and the shape of every `--output json` report
//! (field names and JSON types, see `docs/OUTPUT.md`) on the real Docker and Podman engines.
//!
//! Expected texts live in `tests/snapshots/`, one file per case. A case whose text differs
//! fails with both texts; `BOTTLE_UPDATE_SNAPSHOTS=1` rewrites the files instead (review the
//! diff before committing it). A missing file is a failure too (and is written, for review).
//!
//! The values of the reports that do not depend on an engine's timing (the plan, `down`, the
//! errors of a bottle's life) are pinned too, through the CLI library on the in-memory engine.
//!
//! The cases without an engine run everywhere; the engine cases need Docker and Podman (a
//! failure in CI, a skip elsewhere). Pools: its rows `cli-snapshots` of the shared harness's pool table
//! (`bottle_core::conformance::harness::POOLS`).

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bottle_cli::cli::{Cli, Engine as CliEngine};
use bottle_cli::hint::Globals;
use bottle_cli::runtime::Connected;
use bottle_core::conformance::harness::pools;
use bottle_core::{ContainerRuntime, InMemoryRuntime};
use clap::Parser;
use common::{bottle_env, DownOnDrop, Engine, Run};
use serde_json::Value;

/// Environment that makes both engines unreachable.
const NO_ENGINE: [(&str, &str); 2] = [
    ("DOCKER_HOST", "unix:///nonexistent/bottle-test/docker.sock"),
    (
        "CONTAINER_HOST",
        "unix:///nonexistent/bottle-test/podman.sock",
    ),
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots")
}

/// Compares `actual` with the snapshot `name`, or rewrites it when asked to.
#[track_caller]
fn check(name: &str, actual: &str) {
    let path = dir().join(format!("{name}.txt"));
    let update = std::env::var("BOTTLE_UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1");
    let expected = std::fs::read_to_string(&path).ok();
    if update || expected.is_none() {
        std::fs::create_dir_all(path.parent().expect("a snapshot has a directory"))
            .expect("create the snapshot directory");
        std::fs::write(&path, actual).expect("write the snapshot");
    }
    match expected {
        _ if update => {}
        Some(expected) => assert!(
            expected == actual,
            "snapshot {name} differs (BOTTLE_UPDATE_SNAPSHOTS=1 rewrites it)\n--- expected\n{expected}\n--- actual\n{actual}"
        ),
        None => panic!(
            "snapshot {name} was missing; written to {} for review:\n{actual}",
            path.display()
        ),
    }
}

/// A run as text: exit code, stdout, stderr.
fn render(run: &Run) -> String {
    format!(
        "$ bottle {}\nexit: {}\n--- stdout\n{}--- stderr\n{}",
        run.args.join(" "),
        run.code,
        run.stdout,
        run.stderr
    )
}

/// The shape of a JSON value: objects keep their keys, leaves become their type's name, an
/// array becomes the distinct shapes of its elements.
fn shape(value: &Value) -> Value {
    match value {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(_) => "number".into(),
        Value::String(_) => "string".into(),
        Value::Array(items) => {
            let mut shapes: Vec<Value> = Vec::new();
            for item in items.iter().map(shape) {
                if !shapes.contains(&item) {
                    shapes.push(item);
                }
            }
            Value::Array(shapes)
        }
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
        }
    }
}

/// What `bottle` says without any engine: bad input (refused before an engine is contacted,
/// exit 2) and engines that do not answer (exit 3), each with its hint.
#[test]
fn errors_and_hints_without_an_engine() {
    let cases: &[(&str, &[&str])] = &[
        ("bad-slug", &["up", "Bad"]),
        (
            "bad-slug-with-globals",
            &["--runtime", "podman", "--prefix", "bt-x", "up", "Bad"],
        ),
        ("bad-env-entry", &["up", "ok", "-e", "=x"]),
        ("bad-env-key", &["plan", "ok", "-e", "1X=v"]),
        ("bad-mount", &["up", "ok", "--mount", "relative:/data"]),
        ("bad-memory", &["up", "ok", "--memory", "12q"]),
        ("bad-allow", &["up", "ok", "--allow", "exa mple.com"]),
        ("bad-down-slug", &["down", "ok", "Not/Ok"]),
        ("bad-env-slug", &["env", "Not/Ok"]),
        ("bad-logs-slug", &["logs", ""]),
        ("bad-prefix", &["--prefix", "Bad Prefix", "ps"]),
        ("bad-prefix-empty", &["--prefix", "", "ps"]),
        (
            "bad-prefix-long",
            &[
                "--prefix",
                "p123456789-123456789-123456789-123456789-x",
                "ps",
            ],
        ),
        (
            "missing-file",
            &["up", "-f", "/nonexistent/bottle-test/bottle.toml"],
        ),
        ("no-slug", &["up"]),
        ("output-env-ps", &["ps", "--output", "env"]),
        ("output-env-down", &["down", "x", "--output", "env"]),
        ("output-env-gc", &["gc", "--output", "env"]),
        ("output-env-plan", &["plan", "x", "--output", "env"]),
        ("output-env-logs", &["logs", "x", "--output", "env"]),
        (
            "output-env-image-load",
            &["image", "load", "--output", "env"],
        ),
        ("output-env-doctor", &["doctor", "--output", "env"]),
        (
            "archive-missing",
            &["image", "load", "--archive", "/nonexistent/bottle.tar"],
        ),
        ("archive-not-a-file", &["image", "load", "--archive", "/"]),
        ("docker-unreachable", &["--runtime", "docker", "ps"]),
        (
            "docker-unreachable-with-prefix",
            &["--runtime", "docker", "--prefix", "bt-x", "up", "x"],
        ),
        ("podman-unreachable", &["--runtime", "podman", "env", "x"]),
        ("no-engine", &["ps"]),
        ("doctor-no-engine", &["doctor"]),
        ("doctor-no-engine-json", &["doctor", "--output", "json"]),
    ];
    let mut failures = Vec::new();
    for (name, args) in cases {
        let run = bottle_env(args, &NO_ENGINE);
        let text = render(&run);
        if let Err(e) = std::panic::catch_unwind(|| check(&format!("no-engine/{name}"), &text)) {
            failures.push(panic_text(&e));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn panic_text(e: &Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// One engine's snapshots: the errors that need an engine to happen, and the shape of every
/// JSON report through a bottle's life.
fn on_engine(engine: Engine) {
    if !engine.ready() {
        return;
    }
    let prefix = format!("bt-snap-{}", engine.name);
    engine.run(&prefix, &["--quiet", "down", "--all"]).ok();
    let _cleanup = DownOnDrop {
        engine,
        prefix: prefix.clone(),
    };
    let pools = engine.pools();
    let mut failures = Vec::new();
    let mut snap = |name: &str, text: String| {
        let name = format!("{}/{name}", engine.name);
        if let Err(e) = std::panic::catch_unwind(|| check(&name, &text)) {
            failures.push(panic_text(&e));
        }
    };
    // Text: the whole run (exit code, stdout, stderr).
    let text = |args: &[&str]| render(&engine.run(&prefix, args));
    // JSON: the exit code and the report's shape.
    let json = |args: &[&str]| {
        let run = engine.run(&prefix, args);
        let shape = serde_json::from_str::<Value>(&run.stdout)
            .map(|v| serde_json::to_string_pretty(&shape(&v)).expect("shape serializes"))
            .unwrap_or_else(|e| format!("not JSON ({e}): {}", run.stdout));
        format!(
            "$ bottle {}\nexit: {}\n{shape}\n",
            run.args.join(" "),
            run.code
        )
    };
    let with_pools = |args: &[&str]| -> Vec<String> {
        args.iter()
            .chain(pools.iter())
            .map(|s| s.to_string())
            .collect()
    };

    snap("env-not-up", text(&["env", "snap-none"]));
    snap("logs-not-up", text(&["logs", "snap-none"]));
    let missing = with_pools(&["up", "snap-img", "--image", "bt-snap-missing:none"]);
    snap("image-missing", text(&as_strs(&missing)));
    let up = with_pools(&["up", "snap", "--quiet", "--output", "json"]);
    snap("up-json", json(&as_strs(&up)));
    snap(
        "already-up",
        text(&as_strs(&with_pools(&["up", "snap", "--quiet"]))),
    );
    snap("env-json", json(&["env", "snap", "--output", "json"]));
    let exports = engine.run(&prefix, &["env", "snap", "--output", "env"]);
    let keys: String = exports
        .stdout
        .lines()
        .map(|l| format!("{}\n", l.split_once('=').map_or(l, |(k, _)| k)))
        .collect();
    snap("env-exports", format!("exit: {}\n{keys}", exports.code));
    snap("ps-json", json(&["ps", "--output", "json"]));
    let plan = with_pools(&[
        "plan",
        "snap-plan",
        "--supervise",
        "-e",
        "A=b",
        "-e",
        "HOME",
        "--output",
        "json",
    ]);
    snap("plan-json", json(&as_strs(&plan)));
    snap(
        "logs-json",
        json(&["logs", "snap", "--tail", "1", "--output", "json"]),
    );
    snap(
        "gc-dry-run-json",
        json(&["gc", "--dry-run", "--output", "json"]),
    );
    snap("down-json", json(&["down", "snap", "--output", "json"]));
    snap("down-not-up", text(&["down", "snap"]));
    snap("doctor-json", json(&["doctor", "--output", "json"]));
    snap(
        "image-load-json",
        json(&["image", "load", "--quiet", "--output", "json"]),
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

const DOCKER: Engine = Engine::of(pools("cli-snapshots", "docker"));

const PODMAN: Engine = Engine::of(pools("cli-snapshots", "podman"));

#[test]
fn docker_errors_and_json_shapes() {
    on_engine(DOCKER);
}

#[test]
fn podman_errors_and_json_shapes() {
    on_engine(PODMAN);
}

/// A writer the test reads back after the command wrote to it.
#[derive(Debug, Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The values, not only the shapes, of the reports that do not depend on an engine's timing or
/// ports, through the CLI library on the in-memory engine: the whole plan (names, the subnet
/// from the slug's hash, labels, env, mounts, limits) and a bottle's life as `down` reports it.
#[test]
fn values_through_the_library_on_the_in_memory_engine() {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (rt, fx) = bottle_core::conformance::memory_engine();
    let memory = rt.clone();
    let runtime: Arc<dyn ContainerRuntime> = Arc::new(rt);
    let info = tokio.block_on(runtime.info()).expect("info");
    // The in-memory engine stands in for Docker: reports name the engine the CLI chose.
    let connected = Connected {
        engine: CliEngine::Docker,
        runtime,
        info,
        reach: None,
    };
    let pools = pools("cli-snapshots", "memory");
    let image = fx.image.as_str();
    let with_pools = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = ["--prefix", pools.prefix]
            .iter()
            .chain(args)
            .map(|s| s.to_string())
            .collect();
        if matches!(args.first(), Some(&"up") | Some(&"plan")) {
            all.extend(
                [
                    "--subnet-pool",
                    pools.subnet_pool,
                    "--loopback-pool",
                    pools.loopback_pool,
                ]
                .map(String::from),
            );
        }
        all
    };
    // What happens to the bottle on the engine before a case runs.
    type Before = Option<fn(&InMemoryRuntime)>;
    let daemon_dies: Before = Some(|m| m.kill_daemon("bt-snap-memory-sidecars-demo", 8888));
    let bundle_stops: Before = Some(|m| m.stop_container("bt-snap-memory-sidecars-demo"));
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "plan-json",
            with_pools(&[
                "plan",
                "demo",
                "--image",
                image,
                "--supervise",
                "--allow",
                "example.com:443",
                "-e",
                "LOG_LEVEL=debug",
                "-e",
                "HOME",
                "--mount",
                "/tmp:/scratch:ro",
                "--memory",
                "256m",
                "--pids",
                "64",
                "--output",
                "json",
            ]),
        ),
        (
            "plan-text",
            with_pools(&[
                "plan",
                "demo",
                "--image",
                image,
                "--supervise",
                "-e",
                "HOME",
            ]),
        ),
        ("ps-empty-json", with_pools(&["ps", "--output", "json"])),
        ("env-not-up", with_pools(&["env", "demo"])),
        ("logs-not-up", with_pools(&["logs", "demo"])),
        (
            "up",
            with_pools(&[
                "up", "demo", "--image", image, "--quiet", "--output", "json",
            ]),
        ),
        (
            "already-up",
            with_pools(&["up", "demo", "--image", image, "--quiet"]),
        ),
        (
            "gc-dry-run-json",
            with_pools(&["gc", "--dry-run", "--output", "json"]),
        ),
        ("env-daemon-down", with_pools(&["env", "demo"])),
        ("env-stopped", with_pools(&["env", "demo"])),
        (
            "gc-dry-run-stopped-json",
            with_pools(&["gc", "--dry-run", "--output", "json"]),
        ),
        (
            "down-json",
            with_pools(&["down", "demo", "--output", "json"]),
        ),
        ("down-again-text", with_pools(&["down", "demo"])),
    ];
    let mut failures = Vec::new();
    for (name, args) in cases {
        let before = match name {
            "env-daemon-down" => daemon_dies,
            "env-stopped" => bundle_stops,
            _ => None,
        };
        if let Some(act) = before {
            act(&memory);
        }
        let cli = Cli::try_parse_from(std::iter::once("bottle".to_string()).chain(args.clone()))
            .expect("the case parses");
        let out = Captured::default();
        let result = tokio.block_on(bottle_cli::commands::run_on(
            cli,
            Box::new(out.clone()),
            Some(connected.clone()),
        ));
        let stdout = String::from_utf8(out.0.lock().unwrap().clone()).expect("UTF-8 output");
        // `up` hands out ports the kernel chose: only its exit and the report's shape are
        // stable.
        let stdout = if name == "up" {
            serde_json::to_string_pretty(&shape(&serde_json::from_str(&stdout).expect("JSON")))
                .expect("a shape serializes")
                + "\n"
        } else {
            stdout
        };
        let (code, stderr) = match result {
            Ok(()) => (0, String::new()),
            Err(failure) => {
                let globals = Globals {
                    runtime: None,
                    prefix: pools.prefix,
                    context: None,
                };
                (failure.code, format!("{}\n", failure.render(globals)))
            }
        };
        let text = format!(
            "$ bottle {}\nexit: {code}\n--- stdout\n{stdout}--- stderr\n{stderr}",
            args.join(" ")
        );
        let text = mask_ports(&text);
        if let Err(e) = std::panic::catch_unwind(|| check(&format!("memory/{name}"), &text)) {
            failures.push(panic_text(&e));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `text` with the port of every `address:port` (host ports the kernel chose) written `<port>`.
fn mask_ports(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(colon) = rest.find(':') {
        let (before, after) = rest.split_at(colon);
        out.push_str(before);
        let digits = after[1..].chars().take_while(char::is_ascii_digit).count();
        let address = before
            .rsplit(|c: char| !(c.is_ascii_digit() || c == '.'))
            .next()
            .unwrap_or_default();
        if digits > 0 && address.parse::<std::net::Ipv4Addr>().is_ok() {
            out.push_str(":<port>");
            rest = &after[1 + digits..];
        } else {
            out.push(':');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn ports_are_masked_after_addresses_only() {
    assert_eq!(
        mask_ports("on 127.115.90.146:45135, at 10:30 and http://127.0.0.1:80/x"),
        "on 127.115.90.146:<port>, at 10:30 and http://127.0.0.1:<port>/x"
    );
}
