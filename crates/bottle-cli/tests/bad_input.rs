//! Malformed input through the `bottle` binary's flags and through a bottle file, on the real
//! Docker and Podman engines: every case exits 2, its message names the field (or the flag, or
//! the file's line), no value of an env entry is ever echoed, and nothing is created on the
//! engine (asked of the engine's own client, by label and by name).
//!
//! How a NUL byte can arrive: not through a flag nor through the environment (a bare `-e KEY`
//! takes its value from there): both are C strings, so `execve` cannot carry a NUL and std
//! refuses to build such an argument. It can arrive only through a bottle file: as a TOML escape
//! (`\u0000`) inside a string, which parses and is then refused by the rule of its field; or as
//! a raw byte, which the TOML parser refuses, naming the line.
//!
//! Duplicate ports: no flag or bottle-file key takes a port; ports come from the image's catalog
//! label, which is validated when read (two daemons on one port are refused there, see
//! `bottle_core::catalog`). The duplicates a user can write are covered instead: a container
//! path mounted twice, an env key given twice, a daemon requested twice.
//!
//! Pools: its rows `cli-bad-input` of the shared harness's pool table
//! (`bottle_core::conformance::harness::POOLS`); nothing here creates anything.

mod common;

use std::path::{Path, PathBuf};

use bottle_core::conformance::harness::pools;
use common::{assert_nothing_left, DownOnDrop, Engine};

const DOCKER: Engine = Engine::of(pools("cli-bad-input", "docker"));

const PODMAN: Engine = Engine::of(pools("cli-bad-input", "podman"));

/// A value that must never be echoed back.
const SECRET: &str = "s3cr3t";

struct Suite {
    engine: Engine,
    prefix: String,
    dir: PathBuf,
    cases: usize,
}

impl Suite {
    /// Runs `bottle <args>` (with `-f <file>` when a file is given) and checks exit 2, that
    /// stderr names `names`, and that no secret is echoed. `up` and `plan` get this suite's
    /// pools unless the case itself is about a pool.
    #[track_caller]
    fn check(&mut self, args: &[&str], file: Option<&[u8]>, names: &str) {
        self.cases += 1;
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if let Some(text) = file {
            let path = self.dir.join(format!("case-{}.toml", self.cases));
            std::fs::write(&path, text).expect("write the bottle file");
            all.push("-f".into());
            all.push(path.display().to_string());
        }
        if matches!(args.first(), Some(&"up") | Some(&"plan")) {
            let text = String::from_utf8_lossy(file.unwrap_or_default()).into_owned();
            for pair in self.engine.pools().chunks(2) {
                // A flag would override the file's value, hiding the case.
                let about = pair[0].trim_start_matches("--").replace("-pool", "");
                let mentioned = args.iter().any(|a| a.contains(&about)) || text.contains(&about);
                if !mentioned {
                    all.extend(pair.iter().map(|s| s.to_string()));
                }
            }
        }
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let run = self
            .engine
            .run_env(&self.prefix, &all, &[("BOTTLE_BAD_INPUT_TOKEN", SECRET)]);
        let file_text = file.map(String::from_utf8_lossy);
        assert_eq!(
            run.code, 2,
            "{}: bottle {all:?} (file {file_text:?}) exits 2\nstdout: {}\nstderr: {}",
            self.engine.name, run.stdout, run.stderr
        );
        assert!(
            run.stderr.contains(names),
            "{}: bottle {all:?} (file {file_text:?}): the message names {names:?}: {}",
            self.engine.name,
            run.stderr
        );
        assert!(
            !run.stderr.contains(SECRET) && !run.stdout.contains(SECRET),
            "bottle {all:?} echoed a value: {}",
            run.stderr
        );
    }
}

fn bad_input(engine: Engine) {
    if !engine.ready() {
        return;
    }
    let prefix = format!("bt-bad-{}", engine.name);
    engine.run(&prefix, &["--quiet", "down", "--all"]).ok();
    let _cleanup = DownOnDrop {
        engine,
        prefix: prefix.clone(),
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bad-input-{}", engine.name));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut s = Suite {
        engine,
        prefix: prefix.clone(),
        dir: dir.clone(),
        cases: 0,
    };
    let long = "x".repeat(200);
    let host = dir.display().to_string();
    let mount = |container: &str| format!("{host}:{container}");

    // Slugs, on the command line.
    s.check(&["up", "Bad-Slug"], None, "slug");
    s.check(&["up", "a.b"], None, "slug");
    s.check(&["up", "a/b"], None, "slug");
    s.check(&["up", &long], None, "slug: is 200 characters long");
    s.check(&["up", ""], None, "slug: must not be empty");
    s.check(&["up"], None, "slug: must not be empty");
    s.check(&["up", "a-"], None, "slug");
    s.check(&["up", "a b"], None, "slug");
    s.check(&["up", "café"], None, "slug");
    s.check(&["up", "a\nb"], None, "slug");
    s.check(&["up", "a_b"], None, "slug");
    s.check(&["env", "UPPER"], None, "slug");
    s.check(&["down", "a/b"], None, "slug");
    s.check(&["logs", "a.b"], None, "slug");
    // ... and in the bottle file.
    s.check(&["up"], Some(b"slug = \"UPPER\"\n"), "slug");
    s.check(&["up"], Some(b"slug = \"a.b\"\n"), "slug");
    s.check(&["up"], Some(b"slug = \"a/b\"\n"), "slug");
    s.check(
        &["up"],
        Some(format!("slug = \"{long}\"\n").as_bytes()),
        "slug: is 200 characters long",
    );
    s.check(&["up"], Some(b"slug = \"\"\n"), "slug: must not be empty");
    s.check(&["up"], Some(b"slug = \"a\\u0000b\"\n"), "slug");

    // Env entries, on the command line.
    s.check(&["up", "ok", "-e", "=s3cr3t"], None, "env");
    s.check(&["up", "ok", "-e", "BAD KEY=s3cr3t"], None, "env");
    s.check(&["up", "ok", "-e", "1BAD=s3cr3t"], None, "env");
    s.check(&["up", "ok", "-e", "A-B=s3cr3t"], None, "env");
    s.check(&["up", "ok", "-e", "KEY\nX=s3cr3t"], None, "env");
    s.check(&["up", "ok", "-e", "KÉY=s3cr3t"], None, "env");
    s.check(&["up", "ok", "-e", "BOTTLE_DAEMONS=egress"], None, "env");
    s.check(
        &["up", "ok", "-e", "BOTTLE_BAD_INPUT_SURELY_UNSET"],
        None,
        "env: bare key BOTTLE_BAD_INPUT_SURELY_UNSET",
    );
    // ... and in the bottle file: spaces, `=`, NUL (escaped and raw), newlines, duplicates.
    s.check(&["up", "ok"], Some(b"env = [\"A B=s3cr3t\"]\n"), "env");
    s.check(&["up", "ok"], Some(b"env = [\"=s3cr3t\"]\n"), "env");
    s.check(
        &["up", "ok"],
        Some(b"env = [\"A\\u0000B=s3cr3t\"]\n"),
        "env",
    );
    s.check(
        &["up", "ok"],
        Some(b"env = [\"KEY=s3\\u0000cr3t\"]\n"),
        "env: value of KEY contains a NUL byte",
    );
    s.check(&["up", "ok"], Some(b"env = [\"A\\nB=s3cr3t\"]\n"), "env");
    s.check(
        &["up", "ok"],
        Some(b"env = [\"A=1\", \"A=2\"]\n"),
        "env: key A is given twice",
    );
    s.check(
        &["up", "ok"],
        Some(b"env = [\"BOTTLE_EGRESS_ALLOW=x.test\"]\n"),
        "env",
    );
    s.check(
        &["up", "ok"],
        Some(b"slug = \"ok\"\nenv = [\"A\0B=s3cr3t\"]\n"),
        "at line 2",
    );
    s.check(
        &["up", "ok"],
        Some(b"env = \"A=s3cr3t\"\n"),
        "(env): invalid type",
    );

    // Mounts: relative, missing, with `..`, malformed, duplicated.
    s.check(
        &["up", "ok", "--mount", "relative/path:/data"],
        None,
        "mounts",
    );
    s.check(
        &["up", "ok", "--mount", "/nonexistent-bottle-path:/data"],
        None,
        "mounts: host path \"/nonexistent-bottle-path\" does not exist",
    );
    s.check(
        &["up", "ok", "--mount", &format!("{host}/../x:/data")],
        None,
        "mounts",
    );
    s.check(&["up", "ok", "--mount", &mount("data")], None, "mounts");
    s.check(&["up", "ok", "--mount", &mount("/")], None, "mounts");
    s.check(
        &["up", "ok", "--mount", &mount("/data/../etc")],
        None,
        "mounts",
    );
    s.check(&["up", "ok", "--mount", &host], None, "mounts");
    s.check(
        &[
            "up",
            "ok",
            "--mount",
            &mount("/data"),
            "--mount",
            &mount("/data:ro"),
        ],
        None,
        "mounts: container path \"/data\" is mounted twice",
    );
    s.check(
        &["up", "ok"],
        Some(b"mounts = [{ host_path = \"relative\", container_path = \"/d\" }]\n"),
        "mounts",
    );
    s.check(
        &["up", "ok"],
        Some(b"mounts = [{ host_path = \"/tmp/../etc\", container_path = \"/d\" }]\n"),
        "mounts",
    );
    s.check(
        &["up", "ok"],
        Some(b"mounts = [{ host_path = \"/tmp\", container_path = \"/d\", readonly = true }]\n"),
        "readonly",
    );

    // Loopback addresses outside 127/8, and pools.
    s.check(&["up", "ok", "--loopback", "10.1.2.3"], None, "loopback");
    s.check(&["up", "ok", "--loopback", "0.0.0.0"], None, "loopback");
    s.check(&["up", "ok", "--loopback", "localhost"], None, "--loopback");
    s.check(
        &["up", "ok", "--loopback-pool", "10.0.0.0/16"],
        None,
        "loopback",
    );
    s.check(
        &["up", "ok", "--loopback-pool", "127.108.0.0/31"],
        None,
        "loopback",
    );
    s.check(
        &["up", "ok"],
        Some(b"loopback = { fixed = \"192.168.1.1\" }\n"),
        "loopback",
    );
    s.check(
        &["up", "ok"],
        Some(b"loopback = { pool = \"10.0.0.0/8\" }\n"),
        "loopback",
    );
    s.check(
        &["up", "ok"],
        Some(b"loopback = \"127.0.0.5\"\n"),
        "(loopback)",
    );

    // Subnet pools that are not private, not /24-capable, not a network address.
    s.check(
        &["up", "ok", "--subnet-pool", "8.8.0.0/16"],
        None,
        "subnet_pool",
    );
    s.check(
        &["up", "ok", "--subnet-pool", "10.248.0.0/25"],
        None,
        "subnet_pool",
    );
    s.check(
        &["up", "ok", "--subnet-pool", "10.248.0.1/16"],
        None,
        "subnet_pool",
    );
    s.check(
        &["up", "ok", "--subnet-pool", "100.64.0.0/16"],
        None,
        "subnet_pool",
    );
    s.check(
        &["up", "ok", "--subnet-pool", "172.32.0.0/16"],
        None,
        "subnet_pool",
    );
    s.check(
        &["up", "ok", "--subnet-pool", "ten/16"],
        None,
        "--subnet-pool",
    );
    s.check(
        &["up", "ok"],
        Some(b"subnet_pool = \"1.2.3.0/24\"\n"),
        "subnet_pool",
    );
    s.check(
        &["up", "ok"],
        Some(b"subnet_pool = \"192.168.0.0/28\"\n"),
        "subnet_pool",
    );

    // Daemons: unknown, not requestable, twice.
    s.check(&["up", "ok", "--daemon", "no-such-daemon"], None, "daemons");
    s.check(&["up", "ok", "--daemon", "egress"], None, "daemons");
    s.check(
        &["up", "ok"],
        Some(b"daemons = [\"pipelock\"]\n"),
        "daemons",
    );
    s.check(
        &["up", "ok"],
        Some(b"daemons = [\"supervise\", \"supervise\"]\n"),
        "daemons",
    );

    // Absurd limits.
    s.check(&["up", "ok", "--memory", "1k"], None, "limits.memory_bytes");
    s.check(&["up", "ok", "--memory", "2t"], None, "limits.memory_bytes");
    s.check(&["up", "ok", "--memory", "99999999999t"], None, "--memory");
    s.check(&["up", "ok", "--memory", "lots"], None, "--memory");
    s.check(&["up", "ok", "--pids", "1"], None, "limits.pids");
    s.check(&["up", "ok", "--pids=-5"], None, "limits.pids");
    s.check(&["up", "ok", "--pids", "99999999999"], None, "limits.pids");
    s.check(&["up", "ok", "--pids", "many"], None, "--pids");
    s.check(
        &["up", "ok"],
        Some(b"limits = { memory_bytes = 0 }\n"),
        "memory_bytes",
    );
    s.check(&["up", "ok"], Some(b"[limits]\npids = 5\n"), "pids");
    s.check(
        &["up", "ok"],
        Some(b"limits = { memory_bytes = 99999999999999999999 }\n"),
        "(limits.memory_bytes)",
    );

    // Egress allowlist, git upstreams, image.
    s.check(&["up", "ok", "--allow", ""], None, "egress_allow");
    s.check(
        &["up", "ok", "--allow", "https://x.test"],
        None,
        "egress_allow",
    );
    s.check(&["up", "ok", "--allow", "*.test"], None, "egress_allow");
    s.check(&["up", "ok", "--allow", "a*.x.test"], None, "egress_allow");
    s.check(&["up", "ok", "--allow", "x.test:0"], None, "egress_allow");
    s.check(
        &["up", "ok"],
        Some(b"egress_allow = [\"*\"]\n"),
        "egress_allow",
    );
    s.check(
        &["up", "ok", "--git-upstream", "not a url"],
        None,
        "git_upstreams",
    );
    s.check(&["up", "ok", "--image", "Bad Image!"], None, "image");

    // TOML with unknown keys, and values of the wrong type.
    s.check(&["up", "ok"], Some(b"bogus_key = 1\n"), "bogus_key");
    s.check(
        &["up", "ok"],
        Some(b"egress-allow = [\"x.test\"]\n"),
        "egress-allow",
    );
    s.check(&["up", "ok"], Some(b"limits = { cpus = 2 }\n"), "cpus");
    s.check(&["up", "ok"], Some(b"[limits]\nswap = 1\n"), "swap");
    s.check(&["up", "ok"], Some(b"supervise = \"yes\"\n"), "(supervise)");
    s.check(
        &["up", "ok"],
        Some(b"slug = \"ok\"\nenv = [\"T=s3cr3t\"\nmounts ="),
        "line 3",
    );

    // A command that prints no variables, asked for them.
    s.check(&["ps", "--output", "env"], None, "--output env");

    eprintln!(
        "{}: {} malformed inputs refused with exit 2",
        engine.name, s.cases
    );
    assert!(s.cases >= 40, "at least 40 cases: {}", s.cases);
    assert_nothing_left(engine.name, &prefix, "bad input");
    assert!(engine.ps(&prefix).is_empty(), "bad input created nothing");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn docker_malformed_input_exits_2_and_creates_nothing() {
    bad_input(DOCKER);
}

#[test]
fn podman_malformed_input_exits_2_and_creates_nothing() {
    bad_input(PODMAN);
}
