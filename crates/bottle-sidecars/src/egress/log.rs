//! The proxy's audit log: one JSON line per decision and one per end of an allowed exchange,
//! written without ever blocking traffic.
//!
//! Lines go through a bounded queue to one writer thread ([`crate::outq`]). When whoever reads
//! the daemon's stdout stops reading, the writer blocks, the queue fills, and further lines are
//! dropped and counted instead of stalling the proxy; the next line written carries the count
//! (`dropped`).
//! The schema is stable and documented in docs/SECURITY.md ("The egress log").

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::outq::OutQueue;

/// How many lines may wait for the writer before new ones are dropped.
const QUEUE: usize = 4096;

/// Whether a request was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied,
}

/// What a line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A request or tunnel was decided, before any byte was carried.
    Decision,
    /// An allowed exchange or tunnel ended.
    Close,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub kind: EventKind,
    /// The client connection's number, unique for the proxy's lifetime.
    pub conn: u64,
    pub client: Option<SocketAddr>,
    pub method: String,
    /// The target host, canonical (empty when the request named none the proxy could read).
    pub host: String,
    pub port: u16,
    /// Decision lines only.
    pub verdict: Option<Verdict>,
    /// The status the proxy answered (decision) or the upstream answered (close).
    pub status: Option<u16>,
    /// Why a request was denied or an exchange ended abnormally.
    pub reason: Option<String>,
    /// The upstream address connected to.
    pub addr: Option<SocketAddr>,
    /// Close lines only: payload bytes client to upstream and back, and the duration.
    pub bytes_up: Option<u64>,
    pub bytes_down: Option<u64>,
    pub duration_ms: Option<u64>,
}

impl Event {
    /// A line of `kind` stamped now, with every optional field empty.
    pub fn new(kind: EventKind, conn: u64, client: SocketAddr) -> Event {
        Event {
            time_ms: now_ms(),
            kind,
            conn,
            client: Some(client),
            method: String::new(),
            host: String::new(),
            port: 0,
            verdict: None,
            status: None,
            reason: None,
            addr: None,
            bytes_up: None,
            bytes_down: None,
            duration_ms: None,
        }
    }

    pub fn is_decision(&self) -> bool {
        self.kind == EventKind::Decision
    }

    /// The JSON line, fields in a fixed order (time first); `dropped` only when non-zero.
    pub fn to_json(&self, dropped: u64) -> String {
        let string = |v: &str| serde_json::Value::from(v).to_string();
        let opt = |v: Option<String>| v.unwrap_or_else(|| "null".into());
        let num = |v: Option<u64>| opt(v.map(|n| n.to_string()));
        let mut line = format!(
            r#"{{"time":{},"daemon":"egress","event":"{}","conn":{},"client":{},"method":{},"host":{},"port":{}"#,
            string(&rfc3339_ms(self.time_ms)),
            match self.kind {
                EventKind::Decision => "decision",
                EventKind::Close => "close",
            },
            self.conn,
            opt(self.client.map(|c| string(&c.to_string()))),
            string(&self.method),
            string(&self.host),
            self.port,
        );
        if let Some(v) = self.verdict {
            let v = match v {
                Verdict::Allowed => "allowed",
                Verdict::Denied => "denied",
            };
            line.push_str(&format!(r#","decision":"{v}""#));
        }
        line.push_str(&format!(
            r#","status":{},"reason":{},"addr":{}"#,
            num(self.status.map(u64::from)),
            opt(self.reason.as_deref().map(string)),
            opt(self.addr.map(|a| string(&a.to_string()))),
        ));
        if self.kind == EventKind::Close {
            line.push_str(&format!(
                r#","bytes_up":{},"bytes_down":{},"duration_ms":{}"#,
                num(self.bytes_up),
                num(self.bytes_down),
                num(self.duration_ms)
            ));
        }
        if dropped > 0 {
            line.push_str(&format!(r#","dropped":{dropped}"#));
        }
        line.push('}');
        line
    }
}

/// Where lines go. Must not block: the stdout sink queues, tests collect in memory.
pub type EventLog = Arc<dyn Fn(Event) + Send + Sync>;

/// An [`EventLog`] writing JSON lines to stdout through a bounded queue and a writer thread.
///
/// Stdout is deliberate: the bundle's init prefixes it with `[egress] ` and the engine's log
/// keeps it. A closed stdout must not kill the proxy, so write errors are ignored.
pub fn stdout_log() -> EventLog {
    queued(io::stdout())
}

/// [`stdout_log`] over any writer (tests use one that never returns).
pub fn queued(out: impl Write + Send + 'static) -> EventLog {
    let render = |event: Event, dropped: u64| {
        let mut line = event.to_json(dropped);
        line.push('\n');
        line.into_bytes()
    };
    match OutQueue::spawn("egress-log", out, QUEUE, render) {
        Ok(queue) => Arc::new(move |event: Event| queue.push(event)),
        // No thread for the log: the proxy still serves, unlogged, rather than not at all.
        Err(_) => Arc::new(|_| {}),
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// RFC 3339 UTC with milliseconds, from Unix milliseconds (civil-from-days, proleptic Gregorian).
pub(crate) fn rfc3339_ms(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_time(ms: u64, expect: &str) {
        assert_eq!(rfc3339_ms(ms), expect);
    }

    #[test]
    fn times() {
        check_time(0, "1970-01-01T00:00:00.000Z");
        check_time(951_782_400_000, "2000-02-29T00:00:00.000Z");
        check_time(1_700_000_000_123, "2023-11-14T22:13:20.123Z");
        check_time(4_107_542_399_999, "2100-02-28T23:59:59.999Z");
    }

    #[test]
    fn lines_are_json_in_a_fixed_order() {
        let mut e = Event::new(EventKind::Decision, 7, "127.0.0.1:5".parse().unwrap());
        e.time_ms = 1_700_000_000_123;
        e.method = "CONNECT".into();
        e.host = "a\"b".into();
        e.port = 443;
        e.verdict = Some(Verdict::Denied);
        e.status = Some(403);
        e.reason = Some("not in allowlist".into());
        let line = e.to_json(0);
        assert!(
            line.starts_with(
                r#"{"time":"2023-11-14T22:13:20.123Z","daemon":"egress","event":"decision","conn":7,"#
            ),
            "{line}"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["host"], "a\"b");
        assert_eq!(v["decision"], "denied");
        assert_eq!(v["addr"], serde_json::Value::Null);
        assert!(v.get("bytes_up").is_none() && v.get("dropped").is_none());

        e.kind = EventKind::Close;
        e.verdict = None;
        e.bytes_down = Some(9);
        let v: serde_json::Value = serde_json::from_str(&e.to_json(3)).unwrap();
        assert_eq!(v["event"], "close");
        assert_eq!(v["bytes_down"], 9);
        assert_eq!(v["bytes_up"], serde_json::Value::Null);
        assert_eq!(v["dropped"], 3);
        assert!(v.get("decision").is_none());
    }

    /// A writer that blocks forever, like a stdout nobody reads.
    struct Stuck;
    impl Write for Stuck {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            std::thread::park();
            Ok(0)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_reader_never_blocks_the_proxy() {
        let log = queued(Stuck);
        let client = "127.0.0.1:1".parse().unwrap();
        // Far more lines than the queue holds: every call returns at once.
        for i in 0..(QUEUE as u64 * 3) {
            log(Event::new(EventKind::Decision, i, client));
        }
    }

    /// A writer that records lines, after holding the first write until released.
    #[test]
    fn dropped_lines_are_counted_in_the_next_line() {
        use std::sync::{mpsc, Mutex};
        struct Gate {
            release: Mutex<mpsc::Receiver<()>>,
            lines: Arc<Mutex<Vec<u8>>>,
            first: bool,
        }
        impl Write for Gate {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.first {
                    self.first = false;
                    let _ = self.release.lock().unwrap().recv();
                }
                self.lines.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (release, gate_rx) = mpsc::channel();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let log = queued(Gate {
            release: Mutex::new(gate_rx),
            lines: lines.clone(),
            first: true,
        });
        let client = "127.0.0.1:1".parse().unwrap();
        let total = QUEUE as u64 + 500;
        for i in 0..total {
            log(Event::new(EventKind::Decision, i, client));
        }
        release.send(()).unwrap();
        // Bounded waits for the writer: first the queue drains (its last line is QUEUE - 1 or
        // QUEUE, as the writer may or may not have taken line 0 before the queue filled), then
        // one more line.
        let wait_for = |conn: u64| {
            for _ in 0..500 {
                let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
                if text.contains(&format!(r#""conn":{conn},"#)) {
                    return text;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            panic!("line {conn} never written");
        };
        wait_for(QUEUE as u64 - 1);
        log(Event::new(EventKind::Decision, total, client));
        let text = wait_for(total);
        let written = text.lines().count() as u64;
        let dropped: u64 = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["dropped"].as_u64())
            .sum();
        assert!(dropped > 0, "nothing was dropped: {written} lines written");
        assert_eq!(
            written + dropped,
            total + 1,
            "every line is written or counted"
        );
    }
}
