//! End-to-end tests of the `bottle` binary against the real Docker and Podman engines: the
//! lifecycle commands, their JSON and env output, bad input, and a second `up` of a slug.
//!
//! Each test uses its own `--prefix`, and each engine its own subnet and loopback pools, so the
//! tests run concurrently with each other and with other suites on the same engines.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::{env_map, Engine, DOCKER, PODMAN};
use serde_json::Value;

/// A canary planted as a bare env key: its value must never appear in any output.
const CANARY_KEY: &str = "BOTTLE_CLI_TEST_CANARY";

/// `up`, `ps`, `env` (json and env output), a second `up`, `down`, on one engine.
fn cycle(engine: Engine) {
    if !engine.ready() {
        return;
    }
    let prefix = format!("bt-cli-{}", engine.name);
    let prefix = prefix.as_str();
    let slug = "cycle";
    let _cleanup = engine.clean_slate(prefix);
    let canary = format!("canary-{}-{}", engine.name, std::process::id());
    let canary_env = [(CANARY_KEY, canary.as_str())];

    // up, with a bare env key whose value must never be shown.
    let mut args = vec!["-vv", "up", slug, "--output", "json", "-e", CANARY_KEY];
    args.extend(engine.pools());
    let up = engine.run_env(prefix, &args, &canary_env).ok();
    let report = up.json();
    check_endpoints(engine, prefix, slug, &report);
    assert_eq!(report["network"], format!("{prefix}-bundle-{slug}"));
    assert_eq!(report["container"], format!("{prefix}-sidecars-{slug}"));
    let subnet = report["subnet"].as_str().expect("subnet");
    assert!(
        subnet.starts_with(&engine.subnet_prefix()) && subnet.ends_with("/24"),
        "{subnet}"
    );
    let loopback = report["loopback"].as_str().expect("loopback").to_string();

    // The agent-facing ports answer on the loopback address.
    for d in report["daemons"].as_array().expect("daemons") {
        let port = d["host_port"].as_u64().expect("host_port") as u16;
        let addr = SocketAddr::new(loopback.parse().expect("ip"), port);
        TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("{} at {addr} does not answer: {e}", d["daemon"]));
    }

    // ps: the bottle, running and complete, at its loopback address.
    let ps = engine.ps(prefix);
    assert_eq!(ps.len(), 1, "{ps:?}");
    let entry = &ps[0];
    assert_eq!(entry["slug"], slug);
    assert_eq!(entry["state"], "running");
    assert_eq!(entry["complete"], true);
    assert_eq!(entry["unreachable"], serde_json::json!([]), "{entry}");
    assert_eq!(entry["loopback"], loopback.as_str());
    assert_eq!(entry["subnet"], subnet);
    assert!(
        entry["daemons"].as_array().is_some_and(|d| !d.is_empty()),
        "{entry}"
    );
    assert!(entry["age_seconds"].is_u64(), "{entry}");
    assert!(entry["created"].is_u64(), "{entry}");
    assert_eq!(entry["network"], report["network"]);
    assert_eq!(entry["container"], report["container"]);
    check_keys(
        entry,
        &[
            "slug",
            "state",
            "health",
            "loopback",
            "subnet",
            "daemons",
            "network",
            "container",
            "created",
            "age_seconds",
            "unreachable",
            "complete",
        ],
    );
    // A complete bottle is nobody's garbage.
    let gc = engine
        .run(prefix, &["gc", "--dry-run", "--output", "json"])
        .ok();
    assert_eq!(
        gc.json(),
        serde_json::json!([]),
        "gc --dry-run of a complete bottle"
    );
    let text = engine.run(prefix, &["ps"]).ok();
    assert!(text.stdout.starts_with("SLUG"), "{}", text.stdout);
    assert!(
        text.stdout.contains(slug) && text.stdout.contains(&loopback),
        "{}",
        text.stdout
    );

    // env: the same endpoints, re-read from the engine.
    let env = engine
        .run(prefix, &["env", slug, "--output", "json"])
        .ok()
        .json();
    check_endpoints(engine, prefix, slug, &env);
    assert_eq!(env_map(&env), env_map(&report));
    assert_eq!(env["subnet"], subnet);

    // --output env, evaluated by sh, sets the variables.
    let script = format!(
        "eval \"$('{}' --runtime {} --prefix {prefix} env {slug} --output env)\" && printf '%s\\n' \"$HTTPS_PROXY\" \"$NO_PROXY\"",
        common::BOTTLE,
        engine.name
    );
    let sh = Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("run sh");
    assert!(
        sh.status.success(),
        "{}",
        String::from_utf8_lossy(&sh.stderr)
    );
    let want = env_map(&report);
    assert_eq!(
        String::from_utf8_lossy(&sh.stdout),
        format!("{}\n{}\n", want["HTTPS_PROXY"], want["NO_PROXY"])
    );

    // A second up of the same slug fails, names it, and leaves the first one intact.
    let mut again = vec!["up", slug];
    again.extend(engine.pools());
    let second = engine.run(prefix, &again);
    assert_ne!(second.code, 0, "second up succeeded: {}", second.stdout);
    assert!(second.stderr.contains(slug), "{}", second.stderr);
    assert!(second.stderr.contains("already up"), "{}", second.stderr);
    let env_after = engine
        .run(prefix, &["env", slug, "--output", "json"])
        .ok()
        .json();
    assert_eq!(
        env_map(&env_after),
        env_map(&report),
        "the running bottle is intact"
    );

    // The canary appears in no output: up (with -vv), ps, env, plan, logs.
    let mut plan_args = vec!["plan", "other", "-e", CANARY_KEY, "--output", "json"];
    plan_args.extend(engine.pools());
    let plan = engine.run_env(prefix, &plan_args, &canary_env).ok();
    let logs = engine.run(prefix, &["logs", slug, "--tail", "100"]).ok();
    assert!(
        !logs.stdout.trim().is_empty(),
        "the bundle said something: {logs:?}"
    );
    for run in [&up, &text, &plan, &logs, &second] {
        assert!(
            !run.stdout.contains(&canary) && !run.stderr.contains(&canary),
            "bottle {:?} printed the secret value",
            run.args
        );
    }
    assert!(
        plan.stdout.contains(CANARY_KEY),
        "the plan names the key: {}",
        plan.stdout
    );

    // down removes everything; a second down is fine.
    let down = engine
        .run(prefix, &["down", slug, "--output", "json"])
        .ok()
        .json();
    let kinds: Vec<&str> = down
        .as_array()
        .expect("down --output json is an array")
        .iter()
        .map(|r| r["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["container", "network"], "{down}");
    for removed in down.as_array().into_iter().flatten() {
        check_keys(removed, &["kind", "name", "slug", "reason"]);
    }
    assert_eq!(engine.ps(prefix), Vec::<Value>::new());
    let again = engine.run(prefix, &["down", slug]).ok();
    assert!(again.stdout.contains("was not up"), "{}", again.stdout);
    let env_gone = engine.run(prefix, &["env", slug]);
    assert_eq!(env_gone.code, 1, "{}", env_gone.stderr);
    assert!(env_gone.stderr.contains("not up"), "{}", env_gone.stderr);
    // The hint's command is this run's, ready to paste: same engine, same prefix.
    let paste = format!(
        "`bottle --runtime {} --prefix {prefix} up {slug}`",
        engine.name
    );
    assert!(env_gone.stderr.contains(&paste), "{}", env_gone.stderr);
}

/// The object has exactly the documented fields: adding one is fine, but then document it
/// and list it here; renaming or dropping one breaks scripts.
#[track_caller]
fn check_keys(object: &Value, documented: &[&str]) {
    let mut have: Vec<&str> = object
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {object}"))
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = documented.to_vec();
    have.sort_unstable();
    want.sort_unstable();
    assert_eq!(have, want, "fields of {object}");
}

/// The documented fields of `up` / `env` JSON output.
#[track_caller]
fn check_endpoints(engine: Engine, prefix: &str, slug: &str, report: &Value) {
    check_keys(
        report,
        &[
            "slug",
            "runtime",
            "prefix",
            "loopback",
            "subnet",
            "network",
            "container",
            "env",
            "allow_cidrs",
            "daemons",
        ],
    );
    assert_eq!(report["slug"], slug, "{report}");
    assert_eq!(report["runtime"], engine.name, "{report}");
    assert_eq!(report["prefix"], prefix, "{report}");
    let loopback = report["loopback"].as_str().expect("loopback is a string");
    assert!(
        loopback.starts_with(&engine.loopback_prefix()),
        "{loopback}"
    );
    assert_eq!(
        report["allow_cidrs"],
        serde_json::json!([format!("{loopback}/32")])
    );
    let env = env_map(report);
    for key in ["HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"] {
        assert!(env.contains_key(key), "env lacks {key}: {env:?}");
    }
    assert_eq!(env["NO_PROXY"], loopback);
    let daemons = report["daemons"].as_array().expect("daemons is an array");
    assert!(!daemons.is_empty());
    for d in daemons {
        check_keys(d, &["daemon", "container_port", "host_port", "url"]);
        for field in ["daemon", "url"] {
            assert!(d[field].is_string(), "daemons[].{field}: {d}");
        }
        for field in ["container_port", "host_port"] {
            assert!(d[field].is_u64(), "daemons[].{field}: {d}");
        }
        let url = d["url"].as_str().expect("url");
        assert!(
            url.contains(&format!("://{loopback}:{}", d["host_port"])),
            "{url} is on the loopback address and host port"
        );
    }
    assert!(
        daemons
            .iter()
            .any(|d| d["url"] == env["HTTPS_PROXY"].as_str()),
        "HTTPS_PROXY is a daemon's URL"
    );
}

#[test]
fn docker_up_ps_env_down() {
    cycle(DOCKER);
}

#[test]
fn podman_up_ps_env_down() {
    cycle(PODMAN);
}

/// Bad input: exit 2, a message that names the problem, and nothing created on the engine.
fn bad_input(engine: Engine) {
    if !engine.ready() {
        return;
    }
    let prefix = format!("bt-cli-{}-bad", engine.name);
    let prefix = prefix.as_str();
    let _cleanup = common::DownOnDrop {
        engine,
        prefix: prefix.to_string(),
    };
    let dir = std::env::temp_dir().join(format!(
        "bottle-cli-bad-{}-{}",
        engine.name,
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let malformed = dir.join("malformed.toml");
    std::fs::write(
        &malformed,
        "slug = \"ok\"\nenv = [\"TOKEN=s3cr3t\"\nmounts =",
    )
    .expect("write");
    let unknown_key = dir.join("unknown.toml");
    std::fs::write(&unknown_key, "slug = \"ok\"\nbogus_key = 1\n").expect("write");
    let bad_env_in_file = dir.join("badenv.toml");
    std::fs::write(&bad_env_in_file, "slug = \"ok\"\nenv = [\"=s3cr3t\"]\n").expect("write");
    let unreadable = dir.join("does-not-exist.toml");
    let (malformed, unknown_key, bad_env_in_file, unreadable) = (
        malformed.to_str().unwrap(),
        unknown_key.to_str().unwrap(),
        bad_env_in_file.to_str().unwrap(),
        unreadable.to_str().unwrap(),
    );

    #[track_caller]
    fn check(engine: Engine, prefix: &str, args: &[&str], names: &str) {
        let mut all: Vec<&str> = args.to_vec();
        // `up` and `plan` get this engine's pools, unless the case is about a pool.
        if matches!(args.first(), Some(&"up") | Some(&"plan")) {
            let pools = engine.pools();
            for pair in pools.chunks(2) {
                let about = pair[0].trim_end_matches("-pool");
                if !args.iter().any(|a| a.starts_with(about)) {
                    all.extend_from_slice(pair);
                }
            }
        }
        let run = engine.run(prefix, &all);
        assert_eq!(
            run.code, 2,
            "bottle {all:?} should exit 2; stderr: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(names),
            "bottle {all:?}: the message names {names:?}: {}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("s3cr3t"),
            "bottle {all:?} printed a value: {}",
            run.stderr
        );
    }

    check(engine, prefix, &["up", "Bad-Slug"], "slug");
    check(engine, prefix, &["up", "a.b"], "slug");
    check(engine, prefix, &["up", ""], "slug");
    check(engine, prefix, &["up", &"x".repeat(41)], "slug");
    check(engine, prefix, &["env", "UPPER"], "slug");
    check(engine, prefix, &["down", "a/b"], "slug");
    check(engine, prefix, &["logs", "x-"], "slug");
    check(
        engine,
        prefix,
        &["up", "ok", "-f", unreadable],
        "does-not-exist.toml",
    );
    check(engine, prefix, &["up", "-f", malformed], "line 3");
    check(engine, prefix, &["up", "-f", unknown_key], "bogus_key");
    check(engine, prefix, &["up", "-f", bad_env_in_file], "env");
    check(engine, prefix, &["up", "ok", "-e", "=s3cr3t"], "env");
    check(engine, prefix, &["up", "ok", "-e", "1BAD=s3cr3t"], "env");
    check(
        engine,
        prefix,
        &["up", "ok", "-e", "BOTTLE_CLI_SURELY_UNSET"],
        "BOTTLE_CLI_SURELY_UNSET",
    );
    check(
        engine,
        prefix,
        &["up", "ok", "--loopback", "10.1.2.3"],
        "loopback",
    );
    check(
        engine,
        prefix,
        &["up", "ok", "--subnet-pool", "8.8.0.0/16"],
        "subnet_pool",
    );
    check(
        engine,
        prefix,
        &["up", "ok", "--mount", "relative/path:/data"],
        "mounts",
    );
    check(
        engine,
        prefix,
        &["up", "ok", "--mount", "/nonexistent-bottle-path:/data"],
        "mounts",
    );
    check(engine, prefix, &["up", "ok", "--pids", "1"], "pids");
    check(engine, prefix, &["up", "ok", "--memory", "1k"], "memory");
    check(
        engine,
        prefix,
        &["up", "ok", "--memory", "lots"],
        "--memory",
    );
    check(
        engine,
        prefix,
        &["up", "ok", "--daemon", "no-such-daemon"],
        "daemons",
    );
    check(engine, prefix, &["plan", "Bad"], "slug");
    check(engine, prefix, &["ps", "--output", "env"], "--output env");

    for (args, env) in [
        (
            vec!["--runtime", "nosuch", "--prefix", prefix, "up", "ok"],
            vec![],
        ),
        (
            vec!["--prefix", prefix, "up", "ok"],
            vec![("BOTTLE_RUNTIME", "nosuch")],
        ),
    ] {
        let run = common::bottle_env(&args, &env);
        assert_eq!(run.code, 2, "unknown runtime: {}", run.stderr);
        assert!(
            run.stderr.contains("nosuch") && run.stderr.contains("--runtime"),
            "{}",
            run.stderr
        );
    }

    assert_eq!(
        engine.ps(prefix),
        Vec::<Value>::new(),
        "bad input created nothing"
    );
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
}

#[test]
fn docker_bad_input_exits_2_and_creates_nothing() {
    bad_input(DOCKER);
}

#[test]
fn podman_bad_input_exits_2_and_creates_nothing() {
    bad_input(PODMAN);
}
