//! The shared-loopback fallback, as close to a Docker Desktop host as these Linux machines get.
//!
//! - **Detection** runs the `bottle` binary in a network namespace this test makes, whose `lo`
//!   holds only `127.0.0.1/32`, as macOS's `lo0` does without aliases: a per-bottle address
//!   cannot be bound there. The engine's socket is a file, so the binary still reaches the real
//!   Docker engine from inside, but that engine publishes in the host's namespace, where this
//!   namespace's probes cannot follow: the namespace runs `plan` (which reads the engine and
//!   creates nothing) and a refused `up`, not a whole `up`.
//! - **The shared mode on a real engine** runs in the host namespace with the mode forced
//!   (`BOTTLE_LOOPBACK_MODE=shared`): two bottles on `127.0.0.1`, both ready, `ps` and `down`.
//!
//! What a real VM engine does (Desktop's port forwarder on the Mac) cannot be run here; see the
//! README.

mod common;

use std::process::{Command, Stdio};

use bottle_core::conformance::harness::pools;
use common::{Engine, BOTTLE};
use serde_json::Value;

/// Pools of this suite, from the shared table (others use other pools, so suites run at once).
const DOCKER: Engine = Engine::of(pools("cli-loopback", "docker"));

/// Runs `bottle args` in a new network namespace whose `lo` has only `127.0.0.1/32`.
fn bottle_in_mac_like_netns(args: &[&str]) -> common::Run {
    let script = "ip link set lo up && ip addr del 127.0.0.1/8 dev lo && ip addr add 127.0.0.1/32 dev lo && exec \"$@\"";
    let out = Command::new("unshare")
        .args(["--net", "--", "sh", "-c", script, "sh", BOTTLE])
        .args(args)
        .env_remove("BOTTLE_RUNTIME")
        .env_remove("BOTTLE_PREFIX")
        .env_remove("BOTTLE_LOOPBACK_MODE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run unshare (util-linux) and ip (iproute2)");
    common::Run {
        args: args.iter().map(|s| s.to_string()).collect(),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn without_per_bottle_addresses_bottles_share_127_0_0_1_with_a_warning() {
    if !DOCKER.ready() {
        return;
    }
    let prefix = "bt-lo-ns";
    let mut args = vec![
        "--runtime",
        "docker",
        "--prefix",
        prefix,
        "plan",
        "one",
        "--output",
        "json",
    ];
    args.extend(DOCKER.pools());
    let plan = bottle_in_mac_like_netns(&args).ok();
    let plan_json = plan.json();
    assert_eq!(plan_json["loopback"], "127.0.0.1", "{plan_json}");
    for want in [
        "127.83.0.1 of the loopback pool 127.83.0.0/16 cannot be bound",
        "not isolated",
        "ifconfig lo0 alias",
    ] {
        assert!(
            plan.stderr.contains(want),
            "{want:?} missing from: {}",
            plan.stderr
        );
    }

    // The same plan on this host's own loopback (every 127.x.y.z exists): per bottle, quietly.
    let here = DOCKER
        .run_env(
            prefix,
            &[&["plan", "one", "--output", "json"], &DOCKER.pools()[..]].concat(),
            &[],
        )
        .ok();
    let here_json = here.json();
    let addr = here_json["loopback"].as_str().expect("loopback");
    assert!(addr.starts_with(&DOCKER.loopback_prefix()), "{here_json}");
    assert!(!here.stderr.contains("warning"), "{}", here.stderr);

    // A fixed address the namespace lacks is refused before anything is created.
    let up = bottle_in_mac_like_netns(&[
        "--runtime",
        "docker",
        "--prefix",
        prefix,
        "up",
        "one",
        "--loopback",
        "127.83.9.9",
    ]);
    assert_eq!(up.code, 2, "{up:?}");
    assert!(up.stderr.contains("loopback: 127.83.9.9"), "{}", up.stderr);
    common::assert_nothing_left("docker", prefix, "a refused up in the namespace");
}

#[test]
fn shared_mode_runs_two_bottles_on_127_0_0_1() {
    if !DOCKER.ready() {
        return;
    }
    let prefix = "bt-lo-shared";
    let shared = [("BOTTLE_LOOPBACK_MODE", "shared")];
    DOCKER.run(prefix, &["--quiet", "down", "--all"]).ok();
    let _cleanup = common::DownOnDrop {
        engine: DOCKER,
        prefix: prefix.to_string(),
    };
    let mut ports = Vec::new();
    for slug in ["first", "second"] {
        let args = [&["up", slug, "--output", "json"], &DOCKER.pools()[..]].concat();
        let up = DOCKER.run_env(prefix, &args, &shared).ok();
        assert!(
            up.stderr
                .contains("warning: publishing on the shared 127.0.0.1"),
            "{}",
            up.stderr
        );
        let report: Value = up.json();
        assert_eq!(report["loopback"], "127.0.0.1", "{report}");
        assert_eq!(report["allow_cidrs"][0], "127.0.0.1/32", "{report}");
        let proxy = common::env_map(&report)
            .into_iter()
            .find(|(k, _)| k == "HTTP_PROXY")
            .map(|(_, v)| v)
            .expect("HTTP_PROXY in the report");
        assert!(proxy.starts_with("http://127.0.0.1:"), "{proxy}");
        ports.push(proxy);
    }
    assert_ne!(ports[0], ports[1], "two bottles got one port");
    let listed = DOCKER.ps(prefix);
    assert_eq!(listed.len(), 2, "{listed:?}");
    for b in &listed {
        assert_eq!(b["loopback"], "127.0.0.1", "{b}");
        assert_eq!(b["unreachable"].as_array().map(Vec::len), Some(0), "{b}");
    }
    DOCKER.run(prefix, &["--quiet", "down", "--all"]).ok();
    common::assert_nothing_left("docker", prefix, "down --all");
}
