//! The git gate, end to end on the host: the gate binary serves `git://` on loopback in front
//! of upstreams served by `git http-backend` behind a local HTTP server that checks the token,
//! and the host's `git` is the agent. Clone and fetch (protocol v2 and v0), an allowed push
//! reaching the upstream, one case per refusal rule with the agent's error and an upstream
//! unchanged, refused paths, a missing or wrong credential, concurrent pushes, and the token
//! never reaching the agent or the gate's output.

#[path = "gitgate/support.rs"]
mod support;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use serde_json::json;
use support::*;

/// Two upstreams: `app` under the default rule, `lib` with a push list.
struct World {
    upstream: Upstream,
    gate: Gate,
    seen: Arc<Mutex<String>>,
}

fn upstreams(up: &Upstream, token: Option<&str>) -> serde_json::Value {
    json!([
        {"name": "app", "url": up.url("app"), "token_key": token, "push": null,
         "ca_file": null, "insecure_http": true},
        {"name": "lib", "url": up.url("lib"), "token_key": token,
         "push": ["refs/heads/agent/*", "refs/tags/v*"], "ca_file": null, "insecure_http": true},
    ])
}

fn world(env: &[(&str, &str)]) -> World {
    let upstream = Upstream::start(Some(TOKEN));
    upstream.create("app", 3);
    upstream.create("lib", 2);
    // A branch the agent may push to, for the fast-forward and deletion rules.
    git_in(
        GATE_GIT,
        &upstream.repo("app"),
        &["update-ref", "refs/heads/agent/nff", "refs/heads/main"],
    );
    let gate = Gate::start(&upstreams(&upstream, Some(TOKEN_KEY)), env);
    World {
        upstream,
        gate,
        seen: Arc::default(),
    }
}

impl World {
    fn agent(&self, repo: &str) -> Agent {
        let agent = Agent::new(self.seen.clone());
        agent.clone_from(&self.gate.url(&format!("/{repo}.git")));
        agent
    }

    /// Neither the token nor the canary, raw or as the header carries it, reached the agent or
    /// the gate's output.
    fn assert_no_secret_escaped(&self) {
        let header = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("x-access-token:{TOKEN}"),
        );
        for (what, text) in [
            ("the agent's git output", self.seen.lock().unwrap().clone()),
            (
                "the gate's stdout",
                self.gate.stdout.lock().unwrap().clone(),
            ),
            (
                "the gate's stderr",
                self.gate.stderr.lock().unwrap().clone(),
            ),
        ] {
            for secret in [TOKEN, CANARY, header.as_str()] {
                assert!(!text.contains(secret), "{what} holds a secret:\n{text}");
            }
        }
    }
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn clone_and_fetch_with_protocol_v2_and_v0() {
    let w = world(&[]);
    for version in ["2", "0"] {
        let agent = Agent::new(w.seen.clone());
        let work = agent.work();
        agent.ok(
            &agent.dir.0,
            &[
                "-c",
                &format!("protocol.version={version}"),
                "clone",
                "-q",
                &w.gate.url("/app.git"),
                work.to_str().unwrap(),
            ],
        );
        let main = w.upstream.refs("app")["refs/heads/main"].clone();
        assert_eq!(
            agent.ok(&work, &["rev-parse", "HEAD"]).trim(),
            main,
            "v{version}"
        );
        assert_eq!(
            agent.ok(&work, &["symbolic-ref", "HEAD"]).trim(),
            "refs/heads/main"
        );
        // The upstream moves; a fetch through the gate sees it.
        let seed = TempDir::new("upstream-work");
        git_in(
            GATE_GIT,
            &seed.0,
            &["clone", "-q", w.upstream.repo("app").to_str().unwrap(), "w"],
        );
        let wd = seed.0.join("w");
        std::fs::write(wd.join("NEW"), format!("v{version}\n")).unwrap();
        git_in(GATE_GIT, &wd, &["add", "NEW"]);
        git_in(GATE_GIT, &wd, &["commit", "-q", "-m", "upstream moves"]);
        git_in(GATE_GIT, &wd, &["push", "-q", "origin", "main"]);
        let moved = w.upstream.refs("app")["refs/heads/main"].clone();
        assert_ne!(moved, main);
        agent.ok(
            &work,
            &[
                "-c",
                &format!("protocol.version={version}"),
                "fetch",
                "-q",
                "origin",
            ],
        );
        assert_eq!(
            agent.ok(&work, &["rev-parse", "origin/main"]).trim(),
            moved,
            "v{version}"
        );
    }
    // The plain name works too.
    let agent = Agent::new(w.seen.clone());
    agent.ok(&agent.dir.0, &["clone", "-q", &w.gate.url("/lib"), "lib"]);
    let lines = w.gate.audit("fetch", 5);
    let fetches: Vec<_> = lines.iter().filter(|l| l["event"] == "fetch").collect();
    assert!(fetches.len() >= 5, "{lines:?}");
    assert!(fetches
        .iter()
        .all(|l| l["decision"] == "allowed" && l["daemon"] == "git-gate"));
    // The refresh before the second fetch recorded what moved upstream.
    assert!(
        fetches.iter().any(|l| l["refs"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["ref"] == "refs/heads/main"))),
        "{fetches:?}"
    );
    w.assert_no_secret_escaped();
}

#[test]
fn allowed_pushes_reach_the_upstream() {
    let w = world(&[]);
    let agent = w.agent("app");
    let work = agent.work();
    let head = agent.commit(&[("src/lib.rs", b"pub fn f() {}\n")], "agent work");
    let out = agent.git(&work, &["push", "origin", "HEAD:refs/heads/agent/one"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("checked and pushed to"),
        "{}",
        text(&out)
    );
    assert_eq!(w.upstream.refs("app")["refs/heads/agent/one"], head);
    // A fast-forward of an existing branch.
    let next = agent.commit(&[("src/lib.rs", b"pub fn g() {}\n")], "more");
    agent.ok(
        &work,
        &["push", "-q", "origin", "HEAD:refs/heads/agent/one"],
    );
    assert_eq!(w.upstream.refs("app")["refs/heads/agent/one"], next);

    // lib's list allows agent branches and v* tags.
    let lib = w.agent("lib");
    let lw = lib.work();
    let c = lib.commit(&[("x", b"x\n")], "lib work");
    lib.ok(&lw, &["tag", "v1.0"]);
    lib.ok(
        &lw,
        &[
            "push",
            "-q",
            "origin",
            "HEAD:refs/heads/agent/x",
            "refs/tags/v1.0",
        ],
    );
    let refs = w.upstream.refs("lib");
    assert_eq!(refs["refs/heads/agent/x"], c);
    assert_eq!(refs["refs/tags/v1.0"], c);

    let lines = w.gate.audit("push", 3);
    let pushes: Vec<_> = lines.iter().filter(|l| l["event"] == "push").collect();
    assert_eq!(pushes.len(), 3, "{lines:?}");
    assert!(
        pushes.iter().all(|l| l["decision"] == "allowed"),
        "{pushes:?}"
    );
    assert_eq!(pushes[0]["refs"][0]["ref"], "refs/heads/agent/one");
    assert_eq!(pushes[0]["refs"][0]["new"], head.as_str());
    assert_eq!(pushes[2]["refs"].as_array().unwrap().len(), 2);
    w.assert_no_secret_escaped();
}

/// One refusal: what the agent does, and what its error must say.
struct Refused {
    name: &'static str,
    repo: &'static str,
    /// Prepares the clone; returns the push's refspecs.
    prepare: fn(&Agent) -> Vec<String>,
    expect: &'static [&'static str],
}

/// The push of the clone's work to an agent branch.
fn to_agent_branch() -> Vec<String> {
    vec!["HEAD:refs/heads/agent/files".into()]
}

fn pct(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

const CASES: &[Refused] = &[
    Refused {
        name: "ref outside the push list",
        repo: "lib",
        prepare: |a| {
            a.commit(&[("f", b"1\n")], "work");
            vec!["HEAD:refs/heads/dev".into()]
        },
        expect: &[
            "rule: ref not allowed",
            "ref: refs/heads/dev",
            "refs/heads/agent/*, refs/tags/v*",
        ],
    },
    Refused {
        name: "the default branch under the default rule",
        repo: "app",
        prepare: |a| {
            a.commit(&[("f", b"1\n")], "work");
            vec!["HEAD:refs/heads/main".into()]
        },
        expect: &[
            "rule: ref not allowed",
            "ref: refs/heads/main",
            "default branch",
        ],
    },
    Refused {
        name: "a tag under the default rule",
        repo: "app",
        prepare: |a| {
            a.ok(&a.work(), &["tag", "v9"]);
            vec!["refs/tags/v9".into()]
        },
        expect: &[
            "rule: ref not allowed",
            "ref: refs/tags/v9",
            "tags are not pushed",
        ],
    },
    Refused {
        name: "a non-fast-forward update",
        repo: "app",
        prepare: |_| vec!["+HEAD~1:refs/heads/agent/nff".into()],
        expect: &["rule: non-fast-forward", "ref: refs/heads/agent/nff"],
    },
    Refused {
        name: "a deletion",
        repo: "app",
        prepare: |_| vec![":refs/heads/agent/nff".into()],
        expect: &["rule: deletion", "ref: refs/heads/agent/nff"],
    },
    Refused {
        name: "a secret's value, raw",
        repo: "app",
        prepare: |a| {
            a.commit(
                &[("conf/app.env", format!("KEY={CANARY}\n").as_bytes())],
                "config",
            );
            to_agent_branch()
        },
        expect: &[
            "rule: secret",
            "file: conf/app.env",
            "BOTTLE_TEST_CANARY (raw)",
            "commit: ",
        ],
    },
    Refused {
        name: "a secret's value, base64",
        repo: "app",
        prepare: |a| {
            let b = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, CANARY);
            a.commit(&[("data.txt", format!("blob: {b}\n").as_bytes())], "data");
            to_agent_branch()
        },
        expect: &[
            "rule: secret",
            "file: data.txt",
            "BOTTLE_TEST_CANARY (base64)",
        ],
    },
    Refused {
        name: "a secret's value, hex",
        repo: "app",
        prepare: |a| {
            let h: String = CANARY.bytes().map(|b| format!("{b:02x}")).collect();
            a.commit(&[("hex.txt", h.as_bytes())], "hex");
            to_agent_branch()
        },
        expect: &["rule: secret", "file: hex.txt", "BOTTLE_TEST_CANARY (hex)"],
    },
    Refused {
        name: "a secret's value, URL-encoded",
        repo: "app",
        prepare: |a| {
            a.commit(
                &[(
                    "url.txt",
                    format!("https://x/?q={}\n", pct(CANARY)).as_bytes(),
                )],
                "url",
            );
            to_agent_branch()
        },
        expect: &[
            "rule: secret",
            "file: url.txt",
            "BOTTLE_TEST_CANARY (URL-encoded)",
        ],
    },
    Refused {
        name: "the gate's own token",
        repo: "app",
        prepare: |a| {
            a.commit(&[("token.txt", TOKEN.as_bytes())], "token");
            to_agent_branch()
        },
        expect: &["rule: secret", "file: token.txt", "APP_GIT_TOKEN (raw)"],
    },
    Refused {
        name: "a secret in an earlier commit, removed in the last",
        repo: "app",
        prepare: |a| {
            a.commit(&[("leak.txt", CANARY.as_bytes())], "leak");
            a.commit(&[("leak.txt", b"gone\n")], "remove the leak");
            to_agent_branch()
        },
        expect: &["rule: secret", "file: leak.txt"],
    },
    Refused {
        name: "a secret in a commit message",
        repo: "app",
        prepare: |a| {
            a.commit(&[], &format!("the key is {CANARY}"));
            to_agent_branch()
        },
        expect: &["rule: secret", "the commit message"],
    },
    Refused {
        name: "a private key block",
        repo: "app",
        prepare: |a| {
            a.commit(
                &[("id_ed25519", b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA==\n-----END OPENSSH PRIVATE KEY-----\n")],
                "key",
            );
            to_agent_branch()
        },
        expect: &[
            "rule: credential pattern",
            "file: id_ed25519",
            "private-key-block",
        ],
    },
    Refused {
        name: "a cloud access key",
        repo: "app",
        prepare: |a| {
            a.commit(
                &[("deploy/aws.cfg", b"key = AKIAZ7Q2X4W5V6B7N8M9\n")],
                "aws",
            );
            to_agent_branch()
        },
        expect: &[
            "rule: credential pattern",
            "file: deploy/aws.cfg",
            "aws-access-key-id",
        ],
    },
    Refused {
        name: "a blob over the size cap",
        repo: "app",
        prepare: |a| {
            a.commit(&[("big.bin", &[7u8; 5000])], "big");
            to_agent_branch()
        },
        expect: &[
            "rule: blob too large",
            "file: big.bin",
            "5000 bytes",
            "cap of 4096 bytes",
        ],
    },
];

#[test]
fn every_refusal_rule_leaves_the_upstream_unchanged() {
    let w = world(&[("BOTTLE_GIT_GATE_MAX_BLOB_BYTES", "4096")]);
    for case in CASES {
        let agent = w.agent(case.repo);
        let refspecs = (case.prepare)(&agent);
        let before = w.upstream.refs(case.repo);
        let pushes = w.upstream.pushes_seen();
        let mut args = vec!["push", "origin"];
        args.extend(refspecs.iter().map(String::as_str));
        let out = agent.git(&agent.work(), &args);
        let said = text(&out);
        assert!(
            !out.status.success(),
            "{}: the push succeeded:\n{said}",
            case.name
        );
        assert!(
            said.contains("remote: bottle git gate: push refused, nothing was sent upstream"),
            "{}:\n{said}",
            case.name
        );
        for part in case.expect {
            assert!(
                said.contains(part),
                "{}: the agent's error lacks {part:?}:\n{said}",
                case.name
            );
        }
        assert_eq!(
            w.upstream.refs(case.repo),
            before,
            "{}: the upstream changed",
            case.name
        );
        assert_eq!(
            w.upstream.pushes_seen(),
            pushes,
            "{}: a push reached the upstream",
            case.name
        );
    }
    let lines = w.gate.audit("push", CASES.len());
    let denied: Vec<_> = lines
        .iter()
        .filter(|l| l["event"] == "push" && l["decision"] == "denied")
        .collect();
    assert_eq!(denied.len(), CASES.len(), "{lines:?}");
    assert!(denied
        .iter()
        .all(|l| l["reason"].as_str().is_some_and(|r| r.contains("(ref "))));
    w.assert_no_secret_escaped();
}

#[test]
fn bad_paths_are_refused_with_a_message_the_client_shows() {
    let w = world(&[]);
    for (path, expect) in [
        ("/../app.git", "'..' is not allowed"),
        ("/app.git/../lib.git", "'..' is not allowed"),
        ("/~root/app.git", "~user paths are not served"),
        ("~root/app.git", "~user paths are not served"),
        ("/srv/git/app.git", "no repository"),
        ("/other.git", "no repository"),
        ("app.git", "must be /<name>.git"),
    ] {
        for service in ["git-upload-pack", "git-receive-pack"] {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", w.gate.port)).unwrap();
            let body = format!("{service} {path}\0host=127.0.0.1\0");
            s.write_all(format!("{:04x}{body}", body.len() + 4).as_bytes())
                .unwrap();
            let mut answer = String::new();
            s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            s.read_to_string(&mut answer).unwrap();
            assert!(answer[4..].starts_with("ERR "), "{path}: {answer}");
            assert!(answer.contains(expect), "{path}: {answer}");
            assert!(
                answer.contains("this gate serves: app.git, lib.git"),
                "{answer}"
            );
        }
    }
    // What the git client prints.
    let agent = Agent::new(w.seen.clone());
    let out = agent.git(&agent.dir.0, &["clone", &w.gate.url("/other.git"), "x"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("remote error: no repository at \"/other.git\""),
        "{}",
        text(&out)
    );
    let out = agent.git(&agent.dir.0, &["ls-remote", &w.gate.url("/~root/app.git")]);
    assert!(
        text(&out).contains("~user paths are not served"),
        "{}",
        text(&out)
    );
    let lines = w.gate.audit("fetch", 9);
    assert_eq!(lines.len(), 16, "{lines:?}");
    assert!(lines.iter().all(|l| l["decision"] == "denied"), "{lines:?}");
    w.assert_no_secret_escaped();
}

#[test]
fn a_missing_or_wrong_credential_fails_with_a_clear_message() {
    let upstream = Upstream::start(Some(TOKEN));
    upstream.create("app", 1);
    let seen: Arc<Mutex<String>> = Arc::default();
    // No token declared.
    let gate = Gate::start(&upstreams(&upstream, None), &[]);
    let agent = Agent::new(seen.clone());
    let out = agent.git(&agent.dir.0, &["clone", &gate.url("/app.git"), "x"]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains(&format!(
            "upstream {} asks for a credential (401)",
            upstream.url("app")
        )),
        "{said}"
    );
    assert!(
        said.contains("set token = \"KEY\" for upstream app"),
        "{said}"
    );
    // A push fails the same way before anything is received.
    let work = agent.dir.0.join("w");
    std::fs::create_dir_all(&work).unwrap();
    agent.ok(&work, &["init", "-q"]);
    agent.commit_in(&work);
    let out = agent.git(
        &work,
        &["push", &gate.url("/app.git"), "HEAD:refs/heads/agent/x"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("asks for a credential (401)"),
        "{}",
        text(&out)
    );
    assert_eq!(upstream.pushes_seen(), 0);
    let lines = gate.audit("push", 1);
    assert!(lines.iter().all(|l| l["decision"] == "failed"), "{lines:?}");

    // A wrong token.
    let gate = Gate::start(
        &upstreams(&upstream, Some(TOKEN_KEY)),
        &[(TOKEN_KEY, "wrong-token-value-123")],
    );
    let out = agent.git(&agent.dir.0, &["clone", &gate.url("/app.git"), "y"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("refused the gate's credential (401)"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains(TOKEN_KEY), "{}", text(&out));
    let all = format!(
        "{}{}{}",
        seen.lock().unwrap(),
        gate.stdout.lock().unwrap(),
        gate.stderr.lock().unwrap()
    );
    assert!(
        !all.contains("wrong-token-value-123") && !all.contains(TOKEN),
        "{all}"
    );
}

#[test]
fn concurrent_pushes_to_one_gate_all_land() {
    let w = world(&[]);
    let agents: Vec<Agent> = (0..4).map(|_| w.agent("app")).collect();
    let heads: Vec<String> = agents
        .iter()
        .enumerate()
        .map(|(i, a)| {
            a.commit(
                &[(&format!("f{i}"), format!("{i}\n").as_bytes())],
                "parallel",
            )
        })
        .collect();
    std::thread::scope(|s| {
        for (i, a) in agents.iter().enumerate() {
            s.spawn(move || {
                let out = a.git(
                    &a.work(),
                    &["push", "origin", &format!("HEAD:refs/heads/agent/p{i}")],
                );
                assert!(out.status.success(), "push {i}: {}", text(&out));
            });
        }
    });
    let refs = w.upstream.refs("app");
    for (i, head) in heads.iter().enumerate() {
        assert_eq!(&refs[&format!("refs/heads/agent/p{i}")], head);
    }
    w.assert_no_secret_escaped();
}

#[test]
fn an_https_upstream_is_verified_against_its_ca_file() {
    let (ca_pem, tls) = tls_for_loopback();
    let upstream = Upstream::start_with(Some(TOKEN), Some(tls));
    upstream.create("app", 2);
    let ca = TempDir::new("ca");
    let ca_file = ca.0.join("app.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let seen: Arc<Mutex<String>> = Arc::default();
    let planned = |ca_file: Option<&std::path::Path>| {
        json!([{"name": "app", "url": upstream.https_url("app"), "token_key": TOKEN_KEY,
                "push": null, "ca_file": ca_file, "insecure_http": false}])
    };
    let gate = Gate::start(&planned(Some(&ca_file)), &[]);
    let agent = Agent::new(seen.clone());
    agent.clone_from(&gate.url("/app.git"));
    let head = agent.commit(&[("tls.txt", b"over TLS\n")], "tls");
    agent.ok(
        &agent.work(),
        &["push", "-q", "origin", "HEAD:refs/heads/agent/tls"],
    );
    assert_eq!(upstream.refs("app")["refs/heads/agent/tls"], head);

    // Without the CA the upstream's certificate is not trusted, and the agent is told so.
    let gate = Gate::start(&planned(None), &[]);
    let out = agent.git(&agent.dir.0, &["clone", &gate.url("/app.git"), "untrusted"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("its TLS certificate is not trusted")
            && text(&out).contains("set ca_file"),
        "{}",
        text(&out)
    );
    assert!(!seen.lock().unwrap().contains(TOKEN));
}

#[test]
fn connections_beyond_the_cap_are_told_the_gate_is_busy() {
    let w = world(&[("BOTTLE_GIT_GATE_MAX_CONNECTIONS", "1")]);
    // One connection that has not sent its request holds the only slot (once the gate's
    // start-up probe has let go of it).
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut held = std::net::TcpStream::connect(("127.0.0.1", w.gate.port)).unwrap();
    held.write_all(b"00").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let agent = Agent::new(w.seen.clone());
    let out = agent.git(&agent.dir.0, &["ls-remote", &w.gate.url("/app.git")]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        text(&out).contains("the git gate is busy (all 1 of its connections are in use)"),
        "{}",
        text(&out)
    );
    // Once the slot is free, the next one is served.
    drop(held);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = agent.git(&agent.dir.0, &["ls-remote", &w.gate.url("/app.git")]);
        if out.status.success() {
            assert!(String::from_utf8_lossy(&out.stdout).contains("refs/heads/main"));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", text(&out));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_stalled_push_is_ended_at_the_session_limit_and_frees_the_mirror() {
    let w = world(&[("BOTTLE_GIT_GATE_SESSION_TIMEOUT_SECS", "2")]);
    // A client that asks to push, reads the advertisement and then says nothing.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", w.gate.port)).unwrap();
    let body = "git-receive-pack /app.git\0host=127.0.0.1\0";
    s.write_all(format!("{:04x}{body}", body.len() + 4).as_bytes())
        .unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut seen = Vec::new();
    // The gate ends the session: the connection closes (read returns 0), not the timeout.
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) => panic!("the stalled push was not ended: {e}"),
        }
    }
    assert!(
        String::from_utf8_lossy(&seen).contains("refs/heads/main"),
        "no advertisement: {seen:?}"
    );
    let lines = w.gate.audit("push", 1);
    let push = lines.iter().find(|l| l["event"] == "push").unwrap();
    assert_eq!(push["decision"], "failed", "{push}");
    assert!(
        push["reason"]
            .as_str()
            .is_some_and(|r| r.contains("session limit")),
        "{push}"
    );
    // The mirror is free again: the next push goes through.
    let agent = w.agent("app");
    let head = agent.commit(&[("after", b"1\n")], "after the stall");
    agent.ok(
        &agent.work(),
        &["push", "-q", "origin", "HEAD:refs/heads/agent/after"],
    );
    assert_eq!(w.upstream.refs("app")["refs/heads/agent/after"], head);
}

/// A push whose pack is over `BOTTLE_GIT_GATE_MAX_PUSH_BYTES` is stopped while it is received
/// (it would otherwise fill the bundle's tmpfs before the hook could look at it): the agent is
/// told, nothing reaches the upstream, and the gate takes the next push.
#[test]
fn a_push_over_the_size_cap_is_stopped_while_it_is_received() {
    let w = world(&[("BOTTLE_GIT_GATE_MAX_PUSH_BYTES", "65536")]);
    let agent = w.agent("app");
    let work = agent.work();
    // 512 KiB that no compression shrinks (xorshift64).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..512 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    agent.commit(&[("data/noise.bin", &noise)], "a large file");
    let before = w.upstream.refs("app");
    let pushes = w.upstream.pushes_seen();
    let out = agent.git(&work, &["push", "origin", "HEAD:refs/heads/agent/big"]);
    let said = text(&out);
    assert!(!out.status.success(), "the push succeeded:\n{said}");
    // The agent's git sees the connection end (receive-pack stops reading and exits quietly);
    // the audit line says that nothing was updated and what may have stopped it.
    let lines = w.gate.audit("push", 1);
    let line = lines
        .iter()
        .find(|l| l["event"] == "push")
        .expect("a push line");
    assert!(
        line["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no ref was updated")),
        "{line}"
    );
    assert_eq!(w.upstream.refs("app"), before, "the upstream changed");
    assert_eq!(
        w.upstream.pushes_seen(),
        pushes,
        "a push reached the upstream"
    );

    let small = w.agent("app");
    let head = small.commit(&[("src/small.rs", b"fn s() {}\n")], "small");
    small.ok(
        &small.work(),
        &["push", "-q", "origin", "HEAD:refs/heads/agent/small"],
    );
    assert_eq!(w.upstream.refs("app")["refs/heads/agent/small"], head);
    w.assert_no_secret_escaped();
}
