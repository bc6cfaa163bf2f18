//! The git gate on the real Docker and Podman: `bottle up` with git upstreams, and the host's
//! `git` playing the agent through the gate's published port (`GIT_GATE_URL`).
//!
//! The upstreams are Debian git's `git http-backend` behind a small HTTP server
//! (`bottle_bench::git::upstream`) that this test runs on each bottle's gateway address, with
//! basic auth that checks a token for pushes (a public repository with a private push). Two
//! bottles, each with its own upstream server: clone and fetch work; an allowed push reaches the
//! upstream with the gate's token; a push outside the rules, a tag and a file holding a secret
//! of the bundle are refused with the reason shown to the agent and nothing sent upstream; a
//! push to an upstream without a token configured fails upstream with a message; a bottle's gate
//! serves only its own repositories; concurrent pushes to one gate all land. Neither the token
//! nor the canary secret shows in any output.

mod common;

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bottle_bench::git::upstream::{self, Auth, Upstream};
use common::{Engine, DOCKER, PODMAN};

/// The bare key holding the upstream's token.
const TOKEN_KEY: &str = "BT_GIT_TEST_TOKEN";
/// A bare key whose value the agent tries to push in a file.
const CANARY_KEY: &str = "BT_GIT_TEST_CANARY";
/// The longest one git command may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(120);
/// How many agents push to one gate at once.
const CONCURRENT: usize = 4;

#[test]
fn docker_git_gate() {
    gate(DOCKER, ["10.236.1.0/24", "10.236.2.0/24"]);
}

#[test]
fn podman_git_gate() {
    gate(PODMAN, ["10.236.3.0/24", "10.236.4.0/24"]);
}

/// Removes a directory when dropped, so a failed assertion leaves no repositories behind.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What one git command did.
#[derive(Debug)]
struct Git {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Git {
    #[track_caller]
    fn ok(self, what: &str) -> Self {
        assert!(
            self.ok,
            "{what} failed\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    fn refused(self, what: &str) -> Self {
        assert!(
            !self.ok,
            "{what} succeeded but must be refused\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs the host's `git` in `dir` (isolated from any user configuration), bounded in time.
fn git(dir: &Path, args: &[&str]) -> Git {
    let out_dir = std::env::temp_dir();
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let tag = format!(
        "bt-git-out-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    );
    let (out_path, err_path) = (
        out_dir.join(format!("{tag}.out")),
        out_dir.join(format!("{tag}.err")),
    );
    let mut cmd: Command = upstream::git_command(dir, args, &[]);
    cmd.stdout(Stdio::from(File::create(&out_path).unwrap()))
        .stderr(Stdio::from(File::create(&err_path).unwrap()));
    let mut child = cmd.spawn().expect("run the host's git");
    let deadline = Instant::now() + GIT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |p: &PathBuf| {
        let s = std::fs::read_to_string(p).unwrap_or_default();
        let _ = std::fs::remove_file(p);
        s
    };
    let (stdout, mut stderr) = (read(&out_path), read(&err_path));
    if status.is_none() {
        stderr.push_str(&format!("\n(killed after {GIT_TIMEOUT:?})"));
    }
    Git {
        ok: status.is_some_and(|s| s.success()),
        stdout,
        stderr,
    }
}

/// Commits a file in the work tree `dir`; the new commit's id.
fn commit(dir: &Path, path: &str, content: &str) -> String {
    let file = dir.join(path);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, content).unwrap();
    git(dir, &["add", path]).ok("git add");
    git(dir, &["commit", "-q", "-m", &format!("change {path}")]).ok("git commit");
    head(dir)
}

fn head(dir: &Path) -> String {
    git(dir, &["rev-parse", "HEAD"])
        .ok("rev-parse")
        .stdout
        .trim()
        .to_string()
}

/// A free TCP port now (the upstream binds it on the gateway once the network exists).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn gateway(subnet: &str) -> Ipv4Addr {
    let net: ipnet::Ipv4Net = subnet.parse().unwrap();
    Ipv4Addr::from(u32::from(net.network()) + 1)
}

/// Pushes straight into the upstream's bare repository (not through any gate): the upstream
/// moving on by itself.
fn advance_upstream(bare: &Path, scratch: &Path) -> String {
    let _ = std::fs::remove_dir_all(scratch);
    let bare_s = bare.to_string_lossy().into_owned();
    let scratch_s = scratch.to_string_lossy().into_owned();
    git(
        bare.parent().unwrap(),
        &["clone", "-q", &bare_s, &scratch_s],
    )
    .ok("clone the bare repo");
    let id = commit(scratch, "UPSTREAM.md", "moved on upstream\n");
    git(scratch, &["push", "-q", "origin", "HEAD:main"]).ok("push into the bare repo");
    id
}

fn gate(engine: Engine, subnets: [&str; 2]) {
    if !engine.ready() {
        return;
    }
    let prefix = format!("bt-git-{}", engine.name);
    let prefix = prefix.as_str();
    let _cleanup = engine.clean_slate(prefix);
    let dir = std::env::temp_dir().join(format!("bt-git-{}-{}", engine.name, std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _dir_cleanup = RemoveOnDrop(dir.clone());
    let (root_a, root_b, agent) = (dir.join("up-a"), dir.join("up-b"), dir.join("agent"));
    for d in [&root_a, &root_b, &agent] {
        std::fs::create_dir_all(d).unwrap();
    }
    let app_first = upstream::init_repo(&root_a, "app", &[("README.md", "app\n")]).unwrap();
    upstream::init_repo(&root_a, "open", &[("README.md", "open\n")]).unwrap();
    let lib_first = upstream::init_repo(&root_b, "lib", &[("README.md", "lib\n")]).unwrap();

    let token = format!("gittok-{}-{}-5c1f", engine.name, std::process::id());
    let canary = format!("gitcanary-{}-{}-a77e", engine.name, std::process::id());
    let (gw_a, gw_b) = (gateway(subnets[0]), gateway(subnets[1]));
    let (port_a, port_b) = (free_port(), free_port());

    // Bottle A: `app` with the token and a push rule, `open` without a token (the default
    // rules); its agent also holds a canary secret.
    let file_a = dir.join("a.toml");
    std::fs::write(
        &file_a,
        format!(
            r#"env = ["{CANARY_KEY}"]

[[git_upstreams]]
name = "app"
url = "http://{gw_a}:{port_a}/app.git"
token = "{TOKEN_KEY}"
push = ["refs/heads/agent/*"]
insecure_http = true

[[git_upstreams]]
url = "http://{gw_a}:{port_a}/open.git"
insecure_http = true
"#
        ),
    )
    .unwrap();
    // Bottle B: one plain upstream of its own.
    let file_b = dir.join("b.toml");
    std::fs::write(
        &file_b,
        format!(
            "[[git_upstreams]]\nurl = \"http://{gw_b}:{port_b}/lib.git\"\ninsecure_http = true\n"
        ),
    )
    .unwrap();
    let secrets = [(TOKEN_KEY, token.as_str()), (CANARY_KEY, canary.as_str())];
    let up = |slug: &str, file: &Path, subnet: &str| {
        let file = file.to_string_lossy().into_owned();
        let args = [
            "up",
            slug,
            "-f",
            &file,
            "--output",
            "json",
            "--subnet-pool",
            subnet,
            "--loopback-pool",
            engine.loopback_pool,
        ];
        let run = engine.run_env(prefix, &args, &secrets);
        if run.code != 0 && run.stderr.contains("does not provide daemon git-gate") {
            // Another suite loaded an image built before the gate: load the archive again
            // (`cargo xtask image` builds it with the gate).
            eprintln!(
                "{}: the loaded image has no git gate; loading the archive",
                engine.name
            );
            engine.run(prefix, &["--quiet", "image", "load"]).ok();
            return engine.run_env(prefix, &args, &secrets).ok();
        }
        run.ok()
    };
    let up_a = up("gita", &file_a, subnets[0]);
    let up_b = up("gitb", &file_b, subnets[1]);
    let url_of = |run: &common::Run| {
        run.json()["env"]["GIT_GATE_URL"]
            .as_str()
            .unwrap_or_else(|| panic!("no GIT_GATE_URL in {}", run.stdout))
            .to_string()
    };
    let (gate_a, gate_b) = (url_of(&up_a), url_of(&up_b));
    assert!(gate_a.starts_with("git://127."), "{gate_a}");
    let upstream_a = Upstream::start(
        SocketAddr::from((gw_a, port_a)),
        &root_a,
        Auth {
            token: Some(token.clone()),
            private: false,
        },
    )
    .unwrap();
    let upstream_b =
        Upstream::start(SocketAddr::from((gw_b, port_b)), &root_b, Auth::default()).unwrap();
    eprintln!(
        "{}: gates {gate_a} and {gate_b}, upstreams {} and {}",
        engine.name,
        upstream_a.addr(),
        upstream_b.addr()
    );
    let app_repo = upstream_a.repo("app");
    let pushes = |u: &Upstream| u.log().iter().filter(|l| l.is_push()).count();

    // Clone and fetch.
    let work = agent.join("app");
    git(
        &agent,
        &["clone", "-q", &format!("{gate_a}/app.git"), "app"],
    )
    .ok("clone through the gate");
    assert_eq!(head(&work), app_first, "the clone is the upstream's main");
    let moved = advance_upstream(&app_repo, &dir.join("scratch"));
    git(&work, &["fetch", "-q", "origin"]).ok("fetch through the gate");
    let fetched = git(&work, &["rev-parse", "origin/main"]).ok("rev-parse");
    assert_eq!(
        fetched.stdout.trim(),
        moved,
        "the fetch sees the upstream's new commit"
    );
    let listed = git(&agent, &["ls-remote", &format!("{gate_a}/app")]).ok("ls-remote /app");
    assert!(
        listed.stdout.contains("refs/heads/main"),
        "{}",
        listed.stdout
    );
    git(&work, &["merge", "-q", "--ff-only", "origin/main"]).ok("fast-forward");

    // An allowed push reaches the upstream, with the gate's token.
    let one = commit(&work, "agent/one.txt", "one\n");
    git(&work, &["push", "origin", "HEAD:refs/heads/agent/one"]).ok("allowed push");
    assert_eq!(
        upstream::ref_id(&app_repo, "refs/heads/agent/one").as_deref(),
        Some(one.as_str())
    );
    assert!(
        upstream_a
            .log()
            .iter()
            .any(|l| l.is_push() && l.status == 200 && l.user.is_some()),
        "the push went upstream with the token: {:?}",
        upstream_a.log()
    );

    // Refused pushes: the reason reaches the agent; nothing reaches the upstream.
    let before = pushes(&upstream_a);
    let main_before = upstream::ref_id(&app_repo, "refs/heads/main");
    let refused = git(&work, &["push", "origin", "HEAD:refs/heads/main"]).refused("push to main");
    eprintln!("{}: a push to main: {}", engine.name, refused.stderr.trim());
    assert!(refused.stderr.contains("remote:"), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("refs/heads/main"),
        "{}",
        refused.stderr
    );
    let tag = git(&work, &["push", "origin", "HEAD:refs/tags/v1"]).refused("push of a tag");
    assert!(tag.stderr.contains("refs/tags/v1"), "{}", tag.stderr);
    assert_eq!(upstream::ref_id(&app_repo, "refs/heads/main"), main_before);
    assert_eq!(upstream::ref_id(&app_repo, "refs/tags/v1"), None);

    // A file holding a secret of the bundle: refused, naming the file, never the secret.
    let leak = commit(&work, "config/leak.env", &format!("KEY={canary}\n"));
    let refused =
        git(&work, &["push", "origin", "HEAD:refs/heads/agent/leak"]).refused("push of a secret");
    eprintln!(
        "{}: a secret pushed: {}",
        engine.name,
        refused.stderr.trim()
    );
    assert!(
        refused.stderr.contains("config/leak.env"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains(&canary), "{}", refused.stderr);
    assert_eq!(upstream::ref_id(&app_repo, "refs/heads/agent/leak"), None);
    assert_eq!(
        upstream::ref_id(&app_repo, &format!("{leak}^{{commit}}")),
        None,
        "the commit is not upstream"
    );
    assert_eq!(
        pushes(&upstream_a),
        before,
        "a refused push sent nothing upstream"
    );
    git(&work, &["reset", "-q", "--hard", "HEAD~1"]).ok("drop the leak");

    // An upstream without a token: reads work, a push fails upstream with a message.
    let open = agent.join("open");
    git(
        &agent,
        &["clone", "-q", &format!("{gate_a}/open.git"), "open"],
    )
    .ok("clone open");
    commit(&open, "feature.txt", "feature\n");
    let unauth =
        git(&open, &["push", "origin", "HEAD:refs/heads/feature"]).refused("push without a token");
    eprintln!(
        "{}: a push without a token: {}",
        engine.name,
        unauth.stderr.trim()
    );
    let lower = unauth.stderr.to_ascii_lowercase();
    assert!(
        lower.contains("upstream") && (lower.contains("401") || lower.contains("auth")),
        "the agent is told the upstream refused: {}",
        unauth.stderr
    );
    assert_eq!(
        upstream::ref_id(&upstream_a.repo("open"), "refs/heads/feature"),
        None
    );

    // Each bottle's gate serves its own repositories only.
    git(&agent, &["ls-remote", &format!("{gate_a}/lib.git")]).refused("bottle B's repo through A");
    git(&agent, &["ls-remote", &format!("{gate_b}/app.git")]).refused("bottle A's repo through B");
    git(
        &agent,
        &["clone", "-q", &format!("{gate_b}/lib.git"), "lib"],
    )
    .ok("clone through B");
    assert_eq!(head(&agent.join("lib")), lib_first);
    assert!(
        upstream_b.log().iter().all(|l| !l.target.contains("app")),
        "gate B asked upstream B for app: {:?}",
        upstream_b.log()
    );

    // Concurrent pushes to one gate, each to its own branch, all land.
    let handles: Vec<_> = (0..CONCURRENT)
        .map(|i| {
            let (agent, gate_a) = (agent.clone(), gate_a.clone());
            std::thread::spawn(move || {
                let name = format!("c{i}");
                git(
                    &agent,
                    &["clone", "-q", &format!("{gate_a}/app.git"), &name],
                )
                .ok("clone");
                let dir = agent.join(&name);
                let id = commit(&dir, &format!("c/{name}.txt"), &format!("{name}\n"));
                git(
                    &dir,
                    &[
                        "push",
                        "-q",
                        "origin",
                        &format!("HEAD:refs/heads/agent/{name}"),
                    ],
                )
                .ok("concurrent push");
                (name, id)
            })
        })
        .collect();
    for h in handles {
        let (name, id) = h.join().expect("a concurrent agent");
        assert_eq!(
            upstream::ref_id(&app_repo, &format!("refs/heads/agent/{name}")).as_deref(),
            Some(id.as_str()),
            "{name}"
        );
    }

    // Neither secret is in any output; the gate's log has its audit lines.
    let logs = engine.run(prefix, &["logs", "gita"]).ok();
    let outputs = [
        up_a.stdout.clone(),
        up_a.stderr.clone(),
        engine
            .run(prefix, &["env", "gita", "--output", "json"])
            .ok()
            .stdout,
        engine.run(prefix, &["ps", "--output", "json"]).ok().stdout,
        logs.stdout.clone(),
        logs.stderr.clone(),
    ];
    for out in &outputs {
        assert!(
            !out.contains(&token) && !out.contains(&canary),
            "{}: an output holds a secret: {out}",
            engine.name
        );
    }
    assert!(
        logs.stdout.contains("refs/heads/agent/one"),
        "the gate audits pushes: {}",
        logs.stdout
    );
    engine.run(prefix, &["--quiet", "down", "gita"]).ok();
    engine.run(prefix, &["--quiet", "down", "gitb"]).ok();
    drop((upstream_a, upstream_b));
}

/// Bad git upstreams, through flags and a bottle file: exit 2 before any engine is contacted,
/// the message names the upstream's field, and no credential or token value is echoed.
#[test]
fn bad_git_upstreams_exit_2_naming_the_field() {
    let dir = std::env::temp_dir().join(format!("bt-git-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = "s3cr3t-git-value";
    let check = |args: &[&str], file: Option<&str>, names: &str| {
        let mut all = vec!["--runtime", "docker", "--prefix", "bt-git-bad", "up", "bad"];
        all.extend_from_slice(args);
        let path = dir.join("bad.toml").to_string_lossy().into_owned();
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
            all.extend(["-f", path.as_str()]);
        }
        let run = common::bottle_env(&all, &[("BT_GIT_SET", secret)]);
        assert_eq!(run.code, 2, "{all:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(names),
            "{all:?}: {} lacks {names}",
            run.stderr
        );
        assert!(!run.stderr.contains(secret), "{all:?}: {}", run.stderr);
        assert!(!run.stderr.contains("s3cr3t"), "{all:?}: {}", run.stderr);
    };
    check(
        &["--git-upstream", "https://agent:s3cr3t@git.test/o/app.git"],
        None,
        "git_upstreams[0].url: carries credentials",
    );
    check(
        &["--git-upstream", "ssh://git@git.test/o/app.git"],
        None,
        "ssh is not supported",
    );
    check(
        &["--git-upstream", "git@git.test:o/app.git"],
        None,
        "ssh is not supported",
    );
    check(
        &["--git-upstream", "http://git.test/o/app.git"],
        None,
        "insecure_http",
    );
    check(
        &[
            "--git-upstream",
            "https://git.test/o/app.git",
            "--git-upstream",
            "APP=https://other.test/app",
        ],
        None,
        "git_upstreams[1].name: APP is declared twice",
    );
    check(
        &["--git-upstream", ".hidden=https://git.test/o/app.git"],
        None,
        "git_upstreams[0].name",
    );
    check(
        &[],
        Some("[[git_upstreams]]\nurl = \"https://git.test/o/app.git\"\ntoken = \"BT_GIT_UNSET\"\n"),
        "git_upstreams[0].token: BT_GIT_UNSET is not set",
    );
    check(
        &["-e", "BT_GIT_SET=s3cr3t"],
        Some("[[git_upstreams]]\nurl = \"https://git.test/o/app.git\"\ntoken = \"BT_GIT_SET\"\n"),
        "git_upstreams[0].token: BT_GIT_SET has a value in env",
    );
    check(
        &[],
        Some("[[git_upstreams]]\nurl = \"https://git.test/o/app.git\"\ntoken = \"s3cr3t-git-value\"\n"),
        "git_upstreams[0].token: is not a bare env key",
    );
    check(
        &[],
        Some("[[git_upstreams]]\nurl = \"https://git.test/o/app.git\"\npush = [\"main\"]\n"),
        "git_upstreams[0].push",
    );
    check(
        &[],
        Some("[[git_upstreams]]\nurl = \"https://git.test/o/app.git\"\ntokn = \"A\"\n"),
        "tokn",
    );
    let _ = std::fs::remove_dir_all(&dir);
}
