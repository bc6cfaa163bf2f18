//! The load generator: a bounded HTTP/1.1 client on tokio.
//!
//! Every loop is bounded twice: by a request count (or byte count) and by a time cap, and every
//! single request by a timeout of its own. Through a proxy the requests are absolute-form
//! (`GET http://127.0.0.1:PORT/ HTTP/1.1` with `Host`), and a tunnel is a `CONNECT`; direct they
//! are origin-form and the tunnel's bytes go straight to the upstream's sink and source.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::upstream::{Upstream, CHUNK, STATS_PATH};

/// The longest one request (connect, request, response) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest response head the client reads.
const MAX_HEAD: usize = 16 * 1024;

/// Where the client connects: the upstream itself, or a proxy in front of it.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// The proxy's address, `None` for direct.
    pub proxy: Option<SocketAddr>,
    pub upstream: Upstream,
}

impl Endpoint {
    fn connect_to(&self, tunnel: bool) -> SocketAddr {
        match (self.proxy, tunnel) {
            (Some(p), _) => p,
            (None, false) => self.upstream.http,
            (None, true) => self.upstream.tunnel,
        }
    }

    /// The request head for `path`, absolute-form through a proxy.
    fn request(&self, path: &str, close: bool) -> Vec<u8> {
        let host = self.upstream.http;
        let target = match self.proxy {
            Some(_) => format!("http://{host}{path}"),
            None => path.to_string(),
        };
        format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: bottle-bench\r\nAccept: */*\r\n{}\r\n",
            if close { "Connection: close\r\n" } else { "" }
        )
        .into_bytes()
    }
}

/// What a run of requests did.
#[derive(Debug, Clone, Default)]
pub struct Requests {
    /// Requests answered `200` in full.
    pub completed: u64,
    /// Requests that failed (any other status, a connection error, a timeout).
    pub errors: u64,
    /// The first error, as an example.
    pub first_error: Option<String>,
    /// From the first connect to the last response.
    pub seconds: f64,
    /// Client connections opened.
    pub connections: u64,
    /// Per completed request, connect to last byte, in ms (new-connection mode only).
    pub latencies_ms: Vec<f64>,
}

impl Requests {
    pub fn per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.completed as f64 / self.seconds
        } else {
            0.0
        }
    }

    fn merge(&mut self, w: Worker) {
        self.completed += w.completed;
        self.errors += w.errors;
        self.connections += w.connections;
        if self.first_error.is_none() {
            self.first_error = w.first_error;
        }
        self.latencies_ms.extend(w.latencies_ms);
    }
}

#[derive(Debug, Default)]
struct Worker {
    completed: u64,
    errors: u64,
    connections: u64,
    first_error: Option<String>,
    latencies_ms: Vec<f64>,
}

impl Worker {
    fn fail(&mut self, e: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }
}

/// A parsed response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    status: u16,
    /// Whether the connection may carry another request.
    keep: bool,
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// Reads one response whose body has a `Content-Length` (or ends at close) into `buf`.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Head, String> {
    buf.clear();
    loop {
        let parsed = {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(buf) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let mut length = None;
                    let mut close = resp.version == Some(0);
                    let mut chunked = false;
                    for h in resp.headers.iter() {
                        let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
                        if h.name.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse::<usize>().ok();
                        } else if h.name.eq_ignore_ascii_case("connection")
                            || h.name.eq_ignore_ascii_case("proxy-connection")
                        {
                            if v.split(',').any(|t| t.trim() == "close") {
                                close = true;
                            } else if v.split(',').any(|t| t.trim() == "keep-alive") {
                                close = false;
                            }
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = true;
                        }
                    }
                    if chunked {
                        return Err("chunked responses are not expected here".into());
                    }
                    Some((head_len, resp.code.unwrap_or(0), length, close))
                }
                Ok(httparse::Status::Partial) => None,
                Err(e) => return Err(format!("bad response head: {e}")),
            }
        };
        match parsed {
            Some((head_len, status, Some(length), close)) => {
                while buf.len() < head_len + length {
                    buf.reserve(length);
                    if s.read_buf(buf).await.map_err(|e| e.to_string())? == 0 {
                        return Err("closed in the body".into());
                    }
                }
                if buf.len() > head_len + length {
                    return Err("bytes after the response".into());
                }
                return Ok(Head {
                    status,
                    keep: !close,
                });
            }
            Some((_, status, None, _)) => {
                // The body ends at close.
                let mut rest = Vec::new();
                s.read_to_end(&mut rest).await.map_err(|e| e.to_string())?;
                return Ok(Head {
                    status,
                    keep: false,
                });
            }
            None => {
                if buf.len() > MAX_HEAD {
                    return Err("response head too large".into());
                }
                buf.reserve(4096);
                if s.read_buf(buf).await.map_err(|e| e.to_string())? == 0 {
                    return Err("closed before a response".into());
                }
            }
        }
    }
}

/// Whether another request may start: under the count, before the deadline.
fn next(issued: &AtomicU64, count: u64, deadline: Instant) -> bool {
    Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < count
}

/// `count` requests (or as many as fit in `cap`), each on a connection of its own, from
/// `connections` concurrent clients. Latencies run from the connect to the last byte.
pub async fn new_connections(
    ep: Endpoint,
    connections: usize,
    count: u64,
    cap: Duration,
) -> Requests {
    let request = Arc::new(ep.request("/", true));
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + cap;
    let mut set = JoinSet::new();
    for _ in 0..connections.max(1) {
        let (request, issued) = (request.clone(), issued.clone());
        set.spawn(async move {
            let mut w = Worker::default();
            let mut buf = Vec::with_capacity(4096);
            while next(&issued, count, deadline) {
                let t = Instant::now();
                let one = async {
                    let mut s = connect(ep.connect_to(false)).await?;
                    s.write_all(&request).await.map_err(|e| e.to_string())?;
                    read_response(&mut s, &mut buf).await
                };
                w.connections += 1;
                match tokio::time::timeout(REQUEST_TIMEOUT, one).await {
                    Ok(Ok(h)) if h.status == 200 => {
                        w.completed += 1;
                        w.latencies_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    Ok(Ok(h)) => w.fail(format!("status {}", h.status)),
                    Ok(Err(e)) => w.fail(e),
                    Err(_) => w.fail(format!("no response within {REQUEST_TIMEOUT:?}")),
                }
            }
            w
        });
    }
    let mut r = Requests::default();
    while let Some(w) = set.join_next().await {
        if let Ok(w) = w {
            r.merge(w);
        }
    }
    r.seconds = start.elapsed().as_secs_f64();
    r
}

/// `count` requests (or as many as fit in `cap`) from `connections` concurrent clients, each
/// sending its requests one after another on one connection for as long as the other side keeps
/// it open (a new connection when it does not).
pub async fn keep_alive(ep: Endpoint, connections: usize, count: u64, cap: Duration) -> Requests {
    let request = Arc::new(ep.request("/", false));
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + cap;
    let mut set = JoinSet::new();
    for _ in 0..connections.max(1) {
        let (request, issued) = (request.clone(), issued.clone());
        set.spawn(async move {
            let mut w = Worker::default();
            let mut buf = Vec::with_capacity(4096);
            let mut conn: Option<TcpStream> = None;
            while next(&issued, count, deadline) {
                // A reused connection the other side closed while idle is retried once on a
                // fresh one (legal for an idempotent request); a fresh one that fails is an error.
                for attempt in 0..2 {
                    let fresh = conn.is_none();
                    let one = async {
                        let mut s = match conn.take() {
                            Some(s) => s,
                            None => connect(ep.connect_to(false)).await?,
                        };
                        s.write_all(&request).await.map_err(|e| e.to_string())?;
                        let h = read_response(&mut s, &mut buf).await?;
                        Ok::<_, String>((h, s))
                    };
                    if fresh {
                        w.connections += 1;
                    }
                    match tokio::time::timeout(REQUEST_TIMEOUT, one).await {
                        Ok(Ok((h, s))) => {
                            if h.status == 200 {
                                w.completed += 1;
                            } else {
                                w.fail(format!("status {}", h.status));
                            }
                            if h.keep {
                                conn = Some(s);
                            }
                            break;
                        }
                        Ok(Err(e)) if fresh || attempt == 1 => {
                            w.fail(e);
                            break;
                        }
                        Ok(Err(_)) => continue,
                        Err(_) => {
                            w.fail(format!("no response within {REQUEST_TIMEOUT:?}"));
                            break;
                        }
                    }
                }
            }
            w
        });
    }
    let mut r = Requests::default();
    while let Some(w) = set.join_next().await {
        if let Ok(w) = w {
            r.merge(w);
        }
    }
    r.seconds = start.elapsed().as_secs_f64();
    r
}

/// Which way the tunnel's bytes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to upstream.
    Up,
    /// Upstream to client.
    Down,
}

/// Opens one tunnel (a `CONNECT` through a proxy) and moves `bytes` through it one way; returns
/// MB/s (10^6 bytes), timed from the first byte written to the last byte (or the sink's
/// acknowledgement) read, the tunnel's setup excluded.
pub async fn tunnel(
    ep: Endpoint,
    dir: Direction,
    bytes: u64,
    cap: Duration,
) -> Result<f64, String> {
    let run = async {
        let mut s = connect(ep.connect_to(true)).await?;
        if ep.proxy.is_some() {
            let target = ep.upstream.tunnel;
            let head = format!(
                "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: bottle-bench\r\n\r\n"
            );
            s.write_all(head.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            // Read the answer byte by byte up to its blank line: nothing of the tunnel's own
            // bytes may be swallowed (none come before the client speaks, but be exact).
            let mut head = Vec::with_capacity(256);
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if head.len() > MAX_HEAD {
                    return Err("CONNECT answer head too large".to_string());
                }
                if s.read(&mut b).await.map_err(|e| e.to_string())? == 0 {
                    return Err("closed before answering CONNECT".into());
                }
                head.push(b[0]);
            }
            let line = String::from_utf8_lossy(&head);
            let status = line.split_whitespace().nth(1).unwrap_or_default();
            if status != "200" {
                return Err(format!(
                    "CONNECT answered {}",
                    line.lines().next().unwrap_or_default()
                ));
            }
        }
        let mut buf = vec![0xa5_u8; CHUNK];
        let mut header = [0u8; 9];
        header[0] = if dir == Direction::Up { b'U' } else { b'D' };
        header[1..].copy_from_slice(&bytes.to_be_bytes());
        let t = Instant::now();
        s.write_all(&header).await.map_err(|e| e.to_string())?;
        let mut left = bytes;
        match dir {
            Direction::Up => {
                while left > 0 {
                    let k = left.min(CHUNK as u64) as usize;
                    s.write_all(&buf[..k]).await.map_err(|e| e.to_string())?;
                    left -= k as u64;
                }
                let mut ack = [0u8; 1];
                s.read_exact(&mut ack)
                    .await
                    .map_err(|e| format!("no acknowledgement from the sink: {e}"))?;
            }
            Direction::Down => {
                while left > 0 {
                    let k = s.read(&mut buf).await.map_err(|e| e.to_string())?;
                    if k == 0 {
                        return Err(format!("closed with {left} bytes still to come"));
                    }
                    left = left.saturating_sub(k as u64);
                }
            }
        }
        Ok(bytes as f64 / 1e6 / t.elapsed().as_secs_f64())
    };
    tokio::time::timeout(cap, run)
        .await
        .map_err(|_| format!("{} MB did not go through within {cap:?}", bytes / 1_000_000))?
}

/// The upstream's counters: connections accepted and requests served (this one included).
pub async fn upstream_stats(up: Upstream) -> Result<(u64, u64), String> {
    let ep = Endpoint {
        proxy: None,
        upstream: up,
    };
    let one = async {
        let mut s = connect(up.http).await?;
        s.write_all(&ep.request(STATS_PATH, true))
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        read_response(&mut s, &mut buf).await?;
        let text = String::from_utf8_lossy(&buf);
        let body = text.rsplit("\r\n\r\n").next().unwrap_or_default();
        let mut it = body.split_whitespace().map(|n| n.parse::<u64>().ok());
        match (it.next().flatten(), it.next().flatten()) {
            (Some(c), Some(r)) => Ok((c, r)),
            _ => Err(format!("bad stats body {body:?}")),
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, one)
        .await
        .map_err(|_| "the upstream's stats did not come".to_string())?
}
