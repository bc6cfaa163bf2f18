//! Docker contexts end to end, against the real Docker engine: contexts written by the real
//! `docker` CLI (`docker context create` into a temporary `DOCKER_CONFIG`) that point at a
//! unix socket other than the default, at the engine's TLS listener on loopback (`tcp://`, the
//! certificates `cargo xtask engines` made), and at a loopback `sshd` (`ssh://`, the key it
//! made); each runs `bottle up`, `ps` and `down`, and `doctor` says which endpoint was chosen
//! and how. All three reach the same engine as the default socket, so the objects they create
//! are checked with the engine's own client too.
//!
//! An engine on another host is refused before it is contacted (no traffic leaves the host:
//! the address is TEST-NET-3).
//!
//! Pools: 10.226/16 and 127.126/16.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bottle_core::conformance::in_ci;
use common::{Run, BOTTLE, DOCKER};
use serde_json::Value;

const SUBNET_POOL: &str = "10.226.0.0/16";
const LOOPBACK_POOL: &str = "127.126.0.0/16";

/// What `cargo xtask engines` makes for these tests (see `xtask/src/engines/`).
const TLS_DIR: &str = "/etc/bottle-engines/docker-tls";
const TLS_HOST: &str = "tcp://127.0.0.1:2376";
const SSH_DIR: &str = "/etc/bottle-engines/sshd";
const SSH_HOST: &str = "ssh://root@127.0.0.1:2222";

/// A temporary `DOCKER_CONFIG` (and `TMPDIR` for bottle's ssh forwards), removed on drop.
struct Store {
    dir: PathBuf,
}

impl Store {
    fn new(tag: &str) -> Store {
        let dir = std::env::temp_dir().join(format!("bt-contexts-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tmp")).expect("create the temporary DOCKER_CONFIG");
        Store { dir }
    }

    fn config(&self) -> &Path {
        &self.dir
    }

    /// Where bottle's ssh forwards make their private directories.
    fn tmp(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// `docker context <args>` against this store, with the real docker CLI.
    #[track_caller]
    fn docker_context(&self, args: &[&str]) {
        let out = Command::new("docker")
            .arg("context")
            .args(args)
            .env("DOCKER_CONFIG", &self.dir)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .stdin(Stdio::null())
            .output()
            .expect("run the docker CLI");
        assert!(
            out.status.success(),
            "docker context {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `bottle args...` with this store as `DOCKER_CONFIG`, none of the caller's Docker or
    /// bottle settings, and `env` on top.
    fn bottle(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(BOTTLE);
        cmd.args(args)
            .env("DOCKER_CONFIG", &self.dir)
            .env("TMPDIR", self.tmp())
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .env_remove("BOTTLE_RUNTIME")
            .env_remove("BOTTLE_PREFIX")
            .env_remove("BOTTLE_SSH_CONFIG")
            .env_remove("BOTTLE_LOOPBACK_MODE")
            .env_remove("RUST_LOG");
        common::collect(cmd, args, env)
    }

    /// An ssh configuration that uses the test key and trusts only the test server's host key.
    fn ssh_config(&self) -> String {
        let path = self.dir.join("ssh_config");
        std::fs::write(
            &path,
            format!(
                "Host *\n  IdentityFile {SSH_DIR}/client_key\n  IdentitiesOnly yes\n  UserKnownHostsFile {SSH_DIR}/known_hosts\n  StrictHostKeyChecking yes\n"
            ),
        )
        .expect("write the ssh config");
        path.display().to_string()
    }

    /// Whether any ssh forward's private directory is left (each closes with its runtime).
    fn forwards_left(&self) -> Vec<String> {
        std::fs::read_dir(self.tmp())
            .expect("read TMPDIR")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("bottle-ssh-"))
            .collect()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the engine, its image, and what `xtask engines` makes for `need` are there; in CI a
/// missing piece fails the test, elsewhere it skips with one line.
fn ready(need: &[&str]) -> bool {
    if !DOCKER.ready() {
        return false;
    }
    let missing: Vec<&str> = need
        .iter()
        .copied()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!("missing {missing:?}: run `cargo xtask engines` (as root)");
    if in_ci() {
        panic!("context tests required in CI: {why}");
    }
    common::say(&format!("skipping context test: {why}"));
    false
}

/// `doctor`, `up`, `ps` and `down` of one bottle through `global` (the context flags) and
/// `env`, checking that doctor reports `endpoint` chosen by `chosen_by`, and that the bottle
/// is on the same engine as the default socket.
fn cycle(
    store: &Store,
    prefix: &str,
    global: &[&str],
    env: &[(&str, &str)],
    endpoint: &str,
    chosen_by: &str,
) {
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = global.to_vec();
        all.extend(["--prefix", prefix]);
        all.extend_from_slice(args);
        store.bottle(&all, env)
    };
    let _cleanup = common::DownOnDrop {
        engine: DOCKER,
        prefix: prefix.to_string(),
    };

    let doctor = run(&["doctor", "--output", "json"]).ok().json();
    assert_eq!(doctor["selected"], "docker", "{doctor}");
    let docker = doctor["engines"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["engine"] == "docker"))
        .unwrap_or_else(|| panic!("doctor lists docker: {doctor}"));
    assert_eq!(docker["answers"], true, "{docker}");
    assert_eq!(docker["endpoint"], endpoint, "{docker}");
    assert_eq!(docker["chosen_by"], chosen_by, "{docker}");
    // tcp:// and ssh:// to 127.0.0.1: a network transport, this host's loopback.
    let locality = if endpoint.starts_with("unix://") {
        "local"
    } else {
        "this-host"
    };
    assert_eq!(docker["locality"], locality, "{docker}");
    assert_eq!(docker["remote"], false, "{docker}");
    assert_eq!(docker["rootless"], false, "{docker}");

    let slug = "ctx";
    let up = run(&[
        "up",
        slug,
        "--output",
        "json",
        "--subnet-pool",
        SUBNET_POOL,
        "--loopback-pool",
        LOOPBACK_POOL,
    ])
    .ok()
    .json();
    assert_eq!(up["runtime"], "docker", "{up}");
    let loopback = up["loopback"].as_str().expect("loopback").to_string();
    assert!(loopback.starts_with("127.126."), "{up}");
    let daemons = up["daemons"].as_array().expect("daemons");
    assert!(!daemons.is_empty(), "{up}");
    for d in daemons {
        let port = d["host_port"].as_u64().expect("host_port") as u16;
        let addr = SocketAddr::new(loopback.parse().expect("ip"), port);
        TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("{} at {addr} does not answer: {e}", d["daemon"]));
    }
    // The same engine, seen through its default socket by its own client.
    let container = up["container"].as_str().expect("container");
    let state = common::inspect("docker", "container", container);
    assert_eq!(state["State"]["Running"], true, "{state}");

    let ps = run(&["ps", "--output", "json"]).ok().json();
    let ps = ps.as_array().expect("ps is an array");
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0]["slug"], slug);
    assert_eq!(ps[0]["complete"], true, "{:?}", ps[0]);
    assert_eq!(ps[0]["loopback"], loopback.as_str());

    run(&["--quiet", "down", slug]).ok();
    let ps = run(&["ps", "--output", "json"]).ok().json();
    assert_eq!(ps, Value::Array(Vec::new()), "after down");
    common::assert_nothing_left("docker", prefix, "down through the context");
    assert_eq!(
        store.forwards_left(),
        Vec::<String>::new(),
        "ssh forwards left"
    );
}

/// A context at a unix socket other than the default (a link to the engine's socket), chosen
/// with `--context`.
#[test]
fn unix_socket_context() {
    if !ready(&[]) {
        return;
    }
    let store = Store::new("unix");
    let link = store.config().join("engine.sock");
    std::os::unix::fs::symlink("/var/run/docker.sock", &link).expect("link the engine's socket");
    let host = format!("unix://{}", link.display());
    store.docker_context(&["create", "alt", "--docker", &format!("host={host}")]);
    cycle(
        &store,
        "bt-ctx-unix",
        &["--context", "alt"],
        &[],
        &host,
        "--context alt",
    );
}

/// A `tcp://` context with TLS (the context store holds the CA and the client's pair), chosen
/// as the docker CLI's current context.
#[test]
fn tls_context() {
    if !ready(&[TLS_DIR]) {
        return;
    }
    let store = Store::new("tls");
    store.docker_context(&[
        "create",
        "tls",
        "--docker",
        &format!(
            "host={TLS_HOST},ca={TLS_DIR}/ca.pem,cert={TLS_DIR}/cert.pem,key={TLS_DIR}/key.pem"
        ),
    ]);
    store.docker_context(&["use", "tls"]);
    let chosen = format!(
        "context tls from {}",
        store.config().join("config.json").display()
    );
    cycle(
        &store,
        "bt-ctx-tls",
        &["--runtime", "docker"],
        &[],
        TLS_HOST,
        &chosen,
    );

    // A context without the client's pair: bottle needs all three files and says which are
    // missing (exit 2), contacting nothing.
    store.docker_context(&[
        "create",
        "no-client-cert",
        "--docker",
        &format!("host={TLS_HOST},ca={TLS_DIR}/ca.pem"),
    ]);
    let run = store.bottle(
        &[
            "--context",
            "no-client-cert",
            "--prefix",
            "bt-ctx-tls",
            "ps",
        ],
        &[],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("TLS file missing"), "{run:?}");
    assert!(run.stderr.contains("cert.pem"), "{run:?}");

    // A client certificate the engine does not accept (the server's own, made for server
    // authentication only): the handshake fails, and bottle cannot reach the engine (exit 3).
    store.docker_context(&[
        "create",
        "wrong-cert",
        "--docker",
        &format!("host={TLS_HOST},ca={TLS_DIR}/ca.pem,cert={TLS_DIR}/server-cert.pem,key={TLS_DIR}/server-key.pem"),
    ]);
    let run = store.bottle(
        &["--context", "wrong-cert", "--prefix", "bt-ctx-tls", "ps"],
        &[],
    );
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains(TLS_HOST), "{run:?}");
    assert!(run.stderr.contains("TLS handshake"), "{run:?}");
}

/// An `ssh://` context, chosen with `DOCKER_CONTEXT`, through the loopback sshd with the test
/// key; every forward is closed when its command ends.
#[test]
fn ssh_context() {
    if !ready(&[SSH_DIR]) {
        return;
    }
    let store = Store::new("ssh");
    store.docker_context(&["create", "ssh", "--docker", &format!("host={SSH_HOST}")]);
    let config = store.ssh_config();
    cycle(
        &store,
        "bt-ctx-ssh",
        &["--runtime", "docker"],
        &[("DOCKER_CONTEXT", "ssh"), ("BOTTLE_SSH_CONFIG", &config)],
        SSH_HOST,
        "DOCKER_CONTEXT=ssh",
    );

    // Without the key and the host's known key, ssh cannot log in: bottle says what ssh said.
    let run = store.bottle(
        &["--runtime", "docker", "--prefix", "bt-ctx-ssh", "ps"],
        &[("DOCKER_CONTEXT", "ssh")],
    );
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains(SSH_HOST), "{run:?}");
    assert!(run.stderr.contains("ssh exited"), "{run:?}");
    assert_eq!(store.forwards_left(), Vec::<String>::new());
}

/// A `bottle` killed with SIGKILL while its ssh forward is open leaves neither `ssh` nor the
/// forward's directory behind: the forward's shell sees its standard input close.
#[test]
fn killed_bottle_leaves_no_ssh() {
    use std::io::{BufRead, BufReader};
    if !ready(&[SSH_DIR]) {
        return;
    }
    let store = Store::new("ssh-kill");
    store.docker_context(&["create", "ssh", "--docker", &format!("host={SSH_HOST}")]);
    let config = store.ssh_config();
    let mut child = Command::new(BOTTLE)
        .args([
            "--context",
            "ssh",
            "--prefix",
            "bt-ctx-kill",
            "up",
            "killed",
        ])
        .args([
            "--subnet-pool",
            SUBNET_POOL,
            "--loopback-pool",
            LOOPBACK_POOL,
        ])
        .env("DOCKER_CONFIG", store.config())
        .env("TMPDIR", store.tmp())
        .env("BOTTLE_SSH_CONFIG", &config)
        .env(common::PAUSE_ENV, "checking-image")
        .env_remove("DOCKER_HOST")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bottle");
    // It pauses after connecting, so the forward is open.
    let stderr = child.stderr.take().expect("stderr");
    let mut said = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("read stderr");
        let paused = line.contains("paused at");
        said.push(line);
        if paused {
            break;
        }
    }
    assert!(
        said.iter().any(|l| l.contains("paused at")),
        "bottle did not pause: {said:?}"
    );
    let tmp = store.tmp().display().to_string();
    let ssh_of_this_test = || -> Vec<String> {
        std::fs::read_dir("/proc")
            .expect("read /proc")
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.starts_with("ssh ") && c.contains(&tmp))
            .collect()
    };
    assert_eq!(ssh_of_this_test().len(), 1, "one forward while bottle runs");
    assert_eq!(store.forwards_left().len(), 1);
    child.kill().expect("SIGKILL bottle");
    child.wait().expect("reap bottle");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while (!ssh_of_this_test().is_empty() || !store.forwards_left().is_empty())
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        ssh_of_this_test(),
        Vec::<String>::new(),
        "ssh outlived bottle"
    );
    assert_eq!(store.forwards_left(), Vec::<String>::new());
    common::assert_nothing_left("docker", "bt-ctx-kill", "a killed up");
}

/// An engine on another host is refused before anything is contacted, whichever way it was
/// chosen, and `--context` does not fall back to Podman.
#[test]
fn remote_engine_is_refused() {
    let store = Store::new("remote");
    // `docker context create` only writes files: no engine is contacted.
    store.docker_context(&["create", "far", "--docker", "host=ssh://deploy@203.0.113.7"]);
    // (global flags, environment)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);
    let cases: [Case<'_>; 3] = [
        (&["--context", "far"], &[]),
        (&[], &[("DOCKER_HOST", "tcp://203.0.113.7:2375")]),
        (&["--runtime", "docker"], &[("DOCKER_CONTEXT", "far")]),
    ];
    for (global, env) in cases {
        let mut args = global.to_vec();
        args.extend(["--prefix", "bt-ctx-remote", "up", "far"]);
        let run = store.bottle(&args, env);
        assert_eq!(run.code, 2, "{run:?}");
        assert!(run.stderr.contains("runs on another host"), "{run:?}");
        assert!(run.stderr.contains("203.0.113.7"), "{run:?}");
    }
    let run = store.bottle(&["--context", "nope", "ps"], &[]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--context nope"), "{run:?}");
    assert!(run.stderr.contains("does not exist"), "{run:?}");
    let run = store.bottle(&["--runtime", "podman", "--context", "far", "ps"], &[]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("does not apply"), "{run:?}");
}

/// `doctor` reports each engine's loopback mode: per bottle where the pool's addresses exist
/// (every Linux host), shared when forced, with the warning as a problem; an invalid setting
/// is a problem too, not a crash.
#[test]
fn doctor_reports_the_loopback_mode() {
    if !ready(&[]) {
        return;
    }
    let store = Store::new("doctor");
    let docker_entry = |env: &[(&str, &str)]| -> Value {
        let run = store.bottle(&["--runtime", "docker", "doctor", "--output", "json"], env);
        let report = run.json();
        report["engines"]
            .as_array()
            .and_then(|e| e.iter().find(|e| e["engine"] == "docker"))
            .unwrap_or_else(|| panic!("doctor lists docker: {report}"))
            .clone()
    };
    let entry = docker_entry(&[]);
    assert_eq!(entry["loopback_mode"], "per-bottle", "{entry}");
    assert_eq!(entry["chosen_by"], "default socket", "{entry}");
    assert_eq!(entry["locality"], "local", "{entry}");
    let entry = docker_entry(&[("BOTTLE_LOOPBACK_MODE", "shared")]);
    assert_eq!(entry["loopback_mode"], "shared", "{entry}");
    assert!(
        entry["problems"]
            .to_string()
            .contains("share one loopback address"),
        "{entry}"
    );
    let entry = docker_entry(&[("BOTTLE_LOOPBACK_MODE", "sideways")]);
    assert_eq!(entry["loopback_mode"], Value::Null, "{entry}");
    assert!(
        entry["problems"]
            .to_string()
            .contains("BOTTLE_LOOPBACK_MODE"),
        "{entry}"
    );
}
