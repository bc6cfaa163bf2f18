//! The built binary as the bundle's init: it starts only the selected daemons, survives one of
//! them dying, stops everything on SIGTERM within a second, and refuses unknown daemons.

// The measured stop time is worth seeing in the test output.
#![allow(clippy::print_stderr)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use bottle_core::Catalog;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_bottle-sidecars");

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Polls `cond` every 20 ms for up to `limit`.
fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// A GET / over plain TCP; returns the status line.
fn get(port: u16) -> String {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines().next().unwrap_or("").to_string()
}

/// The init under test, its output lines as they arrive, and everything seen so far.
struct Init {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    egress: u16,
    supervise: u16,
}

impl Init {
    /// Starts the init with `daemons` and an egress allowlist of `allow`, on free ports.
    fn start(daemons: &str, allow: &str) -> Init {
        let (egress, supervise) = (free_port(), free_port());
        let mut child = Command::new(BIN)
            .arg("init")
            .env("BOTTLE_DAEMONS", daemons)
            .env("BOTTLE_EGRESS_PORT", egress.to_string())
            .env("BOTTLE_SUPERVISE_PORT", supervise.to_string())
            .env("BOTTLE_EGRESS_ALLOW", allow)
            .env("BOTTLE_EGRESS_ALLOW_FILE", "/dev/null")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Init {
            child,
            lines,
            seen: Vec::new(),
            egress,
            supervise,
        }
    }

    /// Waits up to 5 s for a line containing `part`; returns it.
    #[track_caller]
    fn wait_line(&mut self, part: &str) -> String {
        self.wait_for(part, |l| l.contains(part))
    }

    /// Waits up to 5 s for a line (seen before or new) that satisfies `pred`.
    #[track_caller]
    fn wait_for(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        if let Some(l) = self.seen.iter().find(|l| pred(l)) {
            return l.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(l) = self.lines.recv_timeout(left) else {
                break;
            };
            self.seen.push(l.clone());
            if pred(&l) {
                return l;
            }
        }
        panic!("no line with {what:?} in:\n{}", self.seen.join("\n"));
    }

    /// The pid of a `[init] started <name> pid N` line other than `not`.
    #[track_caller]
    fn started_pid(&mut self, name: &str, not: Option<Pid>) -> Pid {
        let prefix = format!("[init] started {name} pid ");
        let pid_of = |l: &str| l.strip_prefix(&prefix).and_then(|p| p.parse::<i32>().ok());
        let line = self.wait_for(&prefix, |l| {
            pid_of(l).is_some_and(|p| Some(Pid::from_raw(p)) != not)
        });
        Pid::from_raw(pid_of(&line).unwrap())
    }

    fn children(&self) -> Vec<i32> {
        let pid = self.child.id();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect()
    }
}

impl Drop for Init {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn starts_only_the_selected_daemons() {
    let mut init = Init::start("egress", "localhost");
    let egress = init.started_pid("egress", None);
    assert!(eventually(Duration::from_secs(5), || accepts(init.egress)));
    assert_eq!(init.children(), [egress.as_raw()]);
    assert!(
        !accepts(init.supervise),
        "supervise runs but was not selected"
    );
    assert!(
        !init.seen.iter().any(|l| l.contains("supervise")),
        "{:?}",
        init.seen
    );

    // The health check agrees, and fails for a daemon that is not serving.
    let health = |daemons: &str| {
        Command::new(BIN)
            .arg("health")
            .env("BOTTLE_DAEMONS", daemons)
            .env("BOTTLE_EGRESS_PORT", init.egress.to_string())
            .env("BOTTLE_SUPERVISE_PORT", init.supervise.to_string())
            .output()
            .unwrap()
    };
    let ok = health("egress");
    assert!(ok.status.success(), "{ok:?}");
    let bad = health("egress,supervise");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("supervise on 127.0.0.1:"), "{err}");
}

#[test]
fn a_dying_daemon_leaves_the_others_serving_and_sigterm_stops_all_quickly() {
    let mut init = Init::start("egress,supervise", "localhost");
    let egress = init.started_pid("egress", None);
    let supervise = init.started_pid("supervise", None);
    assert!(eventually(Duration::from_secs(5), || accepts(init.egress)
        && accepts(init.supervise)));
    let mut children = init.children();
    children.sort_unstable();
    let mut expected = vec![egress.as_raw(), supervise.as_raw()];
    expected.sort_unstable();
    assert_eq!(children, expected);

    // Daemon output reaches the init's stdout with the daemon's name in front.
    init.wait_line("[egress] listening on 0.0.0.0:");
    init.wait_line("[supervise] listening on 0.0.0.0:");

    kill(egress, Signal::SIGKILL).unwrap();
    init.wait_line(&format!(
        "[init] egress (pid {egress}) was killed by SIGKILL"
    ));
    assert!(get(init.supervise).starts_with("HTTP/1.1 200"));
    assert!(
        !init.children().contains(&egress.as_raw()),
        "egress was not reaped"
    );
    // It comes back after its backoff.
    let restarted = init.started_pid("egress", Some(egress));
    assert!(eventually(Duration::from_secs(5), || accepts(init.egress)));

    let started = Instant::now();
    kill(Pid::from_raw(init.child.id() as i32), Signal::SIGTERM).unwrap();
    let exited = eventually(Duration::from_secs(3), || {
        matches!(init.child.try_wait(), Ok(Some(_)))
    });
    assert!(exited, "init still running 3 s after SIGTERM");
    let elapsed = started.elapsed();
    init.wait_line("[init] SIGTERM: stopping");
    init.wait_line("[init] stopped");
    eprintln!("init stopped {} ms after SIGTERM", elapsed.as_millis());
    assert!(init.child.try_wait().unwrap().unwrap().success());
    for pid in [restarted, supervise] {
        assert!(kill(pid, None).is_err(), "daemon {pid} outlived the init");
    }
}

#[test]
fn an_unknown_daemon_is_refused_naming_the_known_ones() {
    let out = Command::new(BIN)
        .env("BOTTLE_DAEMONS", "egress,pipelock")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"pipelock\""), "{err}");
    assert!(err.contains("known daemons: egress, supervise"), "{err}");
    assert!(out.stdout.is_empty(), "started something anyway: {out:?}");
}

#[test]
fn a_bad_allowlist_stops_egress_with_a_clear_message() {
    let mut init = Init::start("egress", "https://example.com");
    let egress = init.started_pid("egress", None);
    init.wait_line("[egress] bottle-sidecars egress: cannot use BOTTLE_EGRESS_ALLOW");
    init.wait_line("must be a host, not a URL");
    init.wait_line(&format!(
        "[init] egress (pid {egress}) exited with status 1"
    ));
    assert!(!accepts(init.egress));
}

#[test]
fn the_catalog_subcommand_prints_what_the_label_parser_reads() {
    let out = Command::new(BIN).arg("catalog").output().unwrap();
    assert!(out.status.success());
    let json = String::from_utf8(out.stdout).unwrap();
    let catalog = Catalog::from_json(json.trim()).unwrap();
    assert_eq!(catalog, bottle_sidecars::catalog::provided());
    assert_eq!(json.trim(), catalog.to_json());
}

/// A reader of the bundle's output that stops reading (a stuck log shipper, a paused
/// `logs --follow`) must not stop traffic: the init's stdout pipe fills after a few hundred
/// decision lines, and the proxy keeps answering well beyond that.
#[test]
fn a_stdout_nobody_reads_never_stops_the_proxy() {
    let egress = free_port();
    let mut child = Command::new(BIN)
        .arg("init")
        .env("BOTTLE_DAEMONS", "egress")
        .env("BOTTLE_EGRESS_PORT", egress.to_string())
        .env("BOTTLE_EGRESS_ALLOW", "allowed.test")
        .env("BOTTLE_EGRESS_ALLOW_FILE", "/dev/null")
        // Piped and never read: the pipe (64 KiB) fills with the first few hundred lines.
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || accepts(egress)),
        "egress never listened"
    );
    // Each denied request is a ~300-byte decision line: 3000 of them are ~15 pipe-fulls.
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..3000 {
        assert!(Instant::now() < deadline, "only {i} answers within 60 s");
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, egress)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let req =
            format!("CONNECT denied-{i}.test:443 HTTP/1.1\r\nHost: denied-{i}.test:443\r\n\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head)
            .unwrap_or_else(|e| panic!("request {i} got no answer ({e}): the proxy stalled"));
        assert_eq!(&head, b"HTTP/1.1 403", "request {i}");
    }
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    let _ = child.wait();
}
