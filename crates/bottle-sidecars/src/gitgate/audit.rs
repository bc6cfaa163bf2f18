//! The gate's audit log: one JSON line per fetch and per push decision (and per refused
//! request), on stdout through a bounded queue ([`crate::outq`]), like the egress log.
//!
//! Fields, in order: `time`, `daemon` (`git-gate`), `event` (`fetch`, `push`, `request`),
//! `conn`, `client`, `repo`, `decision` (`allowed`, `denied`, `failed`: the upstream refused or
//! could not be reached), `reason`, `refs` (`ref`, `old`, `new`: for a push the agent's
//! updates, for a fetch what the refresh from the upstream moved), and `dropped` when lines
//! were dropped before this one. Any field the agent wrote (a path, a ref name, a reason that
//! quotes one) is withheld when it carries a secret.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;

use super::upstream::RefChange;
use crate::leak::Scanner;
use crate::outq::OutQueue;

const QUEUE: usize = 1024;

/// One line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub time: String,
    pub daemon: &'static str,
    pub event: &'static str,
    pub conn: u64,
    pub client: Option<String>,
    pub repo: String,
    pub decision: &'static str,
    pub reason: Option<String>,
    pub refs: Vec<RefChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
}

impl Event {
    pub fn new(event: &'static str, conn: u64, client: SocketAddr, repo: &str) -> Event {
        Event {
            time: crate::egress::log::rfc3339_ms(crate::egress::log::now_ms()),
            daemon: "git-gate",
            event,
            conn,
            client: Some(client.to_string()),
            repo: repo.to_string(),
            decision: "allowed",
            reason: None,
            refs: Vec::new(),
            dropped: None,
        }
    }

    /// The line, with `dropped` when non-zero.
    pub fn to_json(&self, dropped: u64) -> String {
        let mut e = self.clone();
        e.dropped = (dropped > 0).then_some(dropped);
        serde_json::to_string(&e).unwrap_or_default()
    }

    /// Withholds any field the agent wrote that carries a secret.
    pub fn withhold(&mut self, scanner: &Scanner) {
        if let Some(found) = scanner.scan(self.repo.as_bytes()) {
            self.repo = format!("<withheld: carries {found}>");
        }
        if let Some(reason) = &mut self.reason {
            if let Some(found) = scanner.scan(reason.as_bytes()) {
                *reason = format!("<withheld: the reason quotes {found}>");
            }
        }
        for r in &mut self.refs {
            if let Some(found) = scanner.scan(r.refname.as_bytes()) {
                r.refname = format!("<withheld: carries {found}>");
            }
        }
    }
}

/// Where lines go; never blocks.
pub type Log = Arc<dyn Fn(Event) + Send + Sync>;

/// Lines to stdout through a bounded queue.
pub fn stdout_log() -> Log {
    queued(io::stdout())
}

/// [`stdout_log`] over any writer.
pub fn queued(out: impl Write + Send + 'static) -> Log {
    let render = |event: Event, dropped: u64| {
        let mut line = event.to_json(dropped);
        line.push('\n');
        line.into_bytes()
    };
    match OutQueue::spawn("git-gate-log", out, QUEUE, render) {
        Ok(queue) => Arc::new(move |event: Event| queue.push(event)),
        Err(_) => Arc::new(|_| {}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_and_withhold_secrets() {
        let scanner = Scanner::new([("TOKEN", "tok-Zr4mK9qL2xW7")]);
        let mut e = Event::new("push", 3, "127.0.0.1:9".parse().unwrap(), "app");
        e.decision = "denied";
        e.reason = Some("ref refs/heads/tok-Zr4mK9qL2xW7 outside".into());
        e.refs.push(RefChange {
            refname: "refs/heads/tok-Zr4mK9qL2xW7".into(),
            old: "0".repeat(40),
            new: "1".repeat(40),
        });
        e.withhold(&scanner);
        let line = e.to_json(2);
        assert!(!line.contains("tok-Zr4mK9qL2xW7"), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["daemon"], "git-gate");
        assert_eq!(v["event"], "push");
        assert_eq!(v["decision"], "denied");
        assert_eq!(v["dropped"], 2);
        assert_eq!(v["refs"][0]["old"], "0".repeat(40));
        assert!(v["refs"][0]["ref"]
            .as_str()
            .unwrap()
            .starts_with("<withheld"));
        assert!(line.starts_with(r#"{"time":""#), "{line}");
    }
}
