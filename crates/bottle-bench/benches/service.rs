//! The service part (`cargo bench -p bottle-bench --bench service -- [options]`): a service
//! endpoint (`bottle_sidecars::services`) against a client that speaks TLS to the same local
//! upstream itself.
//!
//! One process, three threads, each with a single-threaded tokio runtime: the upstream (a hyper
//! server over tokio-rustls with a CA and certificate from rcgen), the service (both endpoints,
//! as the bundle's services daemon runs them: one thread), and the load generator (this
//! thread). In-process so that the service is the library code under test with nothing in
//! between and each thread's CPU time can be read; on threads of their own so that the load
//! generator's and the upstream's tasks never queue behind the service's on one runtime, as
//! separate processes would not. Everything is on loopback; every loop is bounded by a count
//! and a time cap, and every request by a timeout.

// A benchmark's output is its report.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bottle_bench::report::Machine;
use bottle_bench::service::{
    self, report, Contender, Measured, Options, Sample, MANY_SECRETS, SSE_EVENTS,
};
use bottle_core::service::{Inject, PlannedService};
use bottle_sidecars::leak::Scanner;
use bottle_sidecars::services::{self as services, Service};
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The header carrying the credential (the service injects it; direct sends it).
const KEY_HEADER: &str = "x-api-key";
/// The key's name in the bundle's environment.
const KEY_NAME: &str = "ANTHROPIC_API_KEY";
/// The longest one request (connect, request, response) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest response head or chunk-size line the client reads.
const MAX_HEAD: usize = 16 * 1024;
/// The request measure's answer: a small message, as an API answers.
const ANSWER: &str = r#"{"id":"msg_bench","type":"message","role":"assistant","model":"bench","content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","usage":{"input_tokens":12,"output_tokens":1}}"#;

/// The secrets of the bundle, as (environment key, prefix, length): the first is the one the
/// service injects. Realistic lengths and shapes; values made up (deterministically).
const SECRETS: [(&str, &str, usize); MANY_SECRETS] = [
    (KEY_NAME, "sk-ant-api03-", 108),
    ("OPENAI_API_KEY", "sk-proj-", 100),
    ("GITHUB_TOKEN", "ghp_", 40),
    ("AWS_ACCESS_KEY_ID", "AKIA", 20),
    ("AWS_SECRET_ACCESS_KEY", "", 40),
    ("SLACK_BOT_TOKEN", "xoxb-", 56),
    ("STRIPE_SECRET_KEY", "sk_live_", 32),
    ("GITLAB_TOKEN", "glpat-", 26),
    ("NPM_TOKEN", "npm_", 40),
    ("HF_TOKEN", "hf_", 37),
    ("GOOGLE_API_KEY", "AIza", 39),
    ("SENDGRID_API_KEY", "SG.", 69),
    ("DATABASE_PASSWORD", "", 32),
    ("PYPI_TOKEN", "pypi-", 90),
    ("DOCKERHUB_TOKEN", "dckr_pat_", 36),
    ("TWILIO_AUTH_TOKEN", "", 32),
    ("MAILGUN_API_KEY", "key-", 36),
    ("SENTRY_AUTH_TOKEN", "sntrys_", 80),
    ("JWT_SIGNING_KEY", "", 64),
    ("COHERE_API_KEY", "", 40),
];

/// A made-up secret: `prefix`, then letters and digits up to `len`.
fn secret(prefix: &str, len: usize, seed: u64) -> String {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut x = (seed + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut s = prefix.to_string();
    while s.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push(ALNUM[(x % ALNUM.len() as u64) as usize] as char);
    }
    s
}

fn secrets() -> Vec<(String, String)> {
    SECRETS
        .iter()
        .enumerate()
        .map(|(i, (k, p, n))| (k.to_string(), secret(p, *n, i as u64)))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Threads and their CPU time.

/// This thread's id (`/proc/thread-self` is `<pid>/task/<tid>`).
fn thread_id() -> Option<u32> {
    std::fs::read_link("/proc/thread-self")
        .ok()?
        .file_name()?
        .to_str()?
        .parse()
        .ok()
}

/// A thread's run time so far, ns.
fn cpu_ns(tid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A thread's user and system time so far, clock ticks (`/proc/self/task/<tid>/stat`).
fn user_system(tid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // After the name in parentheses: state is field 3, utime 14, stime 15.
    let mut rest = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .skip(11);
    Some((rest.next()?.parse().ok()?, rest.next()?.parse().ok()?))
}

/// The run time of the service's, the upstream's and this thread.
fn cpu(tids: [Option<u32>; 3]) -> [Option<u64>; 3] {
    tids.map(|t| t.and_then(cpu_ns))
}

/// Runs `serve` on a thread of its own with a single-threaded runtime; returns the thread's id.
fn spawn_thread<F, Fut>(name: &str, serve: F) -> Result<Option<u32>, String>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let rt = match bottle_bench::args::runtime("a thread of the benchmark") {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = tx.send(Ok(thread_id()));
            rt.block_on(serve());
        })
        .map_err(|e| format!("cannot start the {name} thread: {e}"))?;
    rx.recv_timeout(Duration::from_secs(10))
        .map_err(|_| format!("the {name} thread did not start"))?
}

fn bind() -> Result<std::net::TcpListener, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
    l.set_nonblocking(true)
        .map_err(|e| format!("cannot set a listener non-blocking: {e}"))?;
    Ok(l)
}

fn local(l: &std::net::TcpListener) -> Result<SocketAddr, String> {
    l.local_addr().map_err(|e| format!("listener address: {e}"))
}

// ---------------------------------------------------------------------------------------------
// The TLS upstream.

/// A CA, and a server certificate for 127.0.0.1 signed by it.
struct Pki {
    ca_pem: String,
    ca: CertificateDer<'static>,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn pki() -> Result<Pki, String> {
    let e = |e: rcgen::Error| format!("making the upstream's certificate: {e}");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(e)?).map_err(e)?;
    let key = KeyPair::generate().map_err(e)?;
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .map_err(e)?
        .signed_by(&key, &ca)
        .map_err(e)?;
    Ok(Pki {
        ca_pem: ca.pem(),
        ca: ca.der().clone(),
        cert: cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    })
}

type UpBody = UnsyncBoxBody<Bytes, Infallible>;

/// One answer of the upstream: 401 without the key; `/v1/stream` streams [`SSE_EVENTS`]
/// events, the first at once and then one every `gap`; anything else gets [`ANSWER`].
async fn answer(
    req: Request<Incoming>,
    key: Arc<str>,
    gap: Duration,
) -> Result<Response<UpBody>, hyper::Error> {
    let authorized = req
        .headers()
        .get(KEY_HEADER)
        .is_some_and(|v| v.as_bytes() == key.as_bytes());
    let stream = req.uri().path() == "/v1/stream";
    req.into_body().collect().await?;
    if !authorized {
        let mut r = Response::new(Full::new(Bytes::from_static(b"no key\n")).boxed_unsync());
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(r);
    }
    if stream {
        let events = futures_util::stream::unfold(0u32, move |i| async move {
            if i >= SSE_EVENTS {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(gap).await;
            }
            let event = format!(
                "event: content_block_delta\ndata: {{\"index\":{i},\"delta\":{{\"type\":\"text_delta\",\"text\":\"word\"}}}}\n\n"
            );
            Some((Ok::<_, Infallible>(Frame::data(Bytes::from(event))), i + 1))
        });
        let mut r = Response::new(StreamBody::new(events).boxed_unsync());
        let h = r.headers_mut();
        h.insert(
            "content-type",
            "text/event-stream".parse().expect("a value"),
        );
        h.insert("cache-control", "no-cache".parse().expect("a value"));
        return Ok(r);
    }
    let mut r = Response::new(Full::new(Bytes::from_static(ANSWER.as_bytes())).boxed_unsync());
    r.headers_mut()
        .insert("content-type", "application/json".parse().expect("a value"));
    Ok(r)
}

async fn upstream(
    listener: std::net::TcpListener,
    acceptor: TlsAcceptor,
    key: Arc<str>,
    gap: Duration,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, key) = (acceptor.clone(), key.clone());
        tokio::spawn(async move {
            let Ok(Ok(tls)) = tokio::time::timeout(REQUEST_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            let svc = hyper::service::service_fn(move |req| answer(req, key.clone(), gap));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}

fn acceptor(pki: &Pki) -> Result<TlsAcceptor, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("upstream TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(vec![pki.cert.clone()], pki.key.clone_key())
        .map_err(|e| format!("upstream TLS: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Direct's TLS client: what the service's connector is (ring, the safe default versions,
/// HTTP/1.1 by ALPN), trusting the upstream's CA.
fn connector(pki: &Pki) -> Result<TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(pki.ca.clone())
        .map_err(|e| format!("client TLS: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("client TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

// ---------------------------------------------------------------------------------------------
// The load generator: raw HTTP/1.1 over TCP or TLS, keep-alive.

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Conn = Box<dyn Io>;

/// Where a contender's requests go, and what they are.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    /// Direct: TLS to the upstream.
    tls: Option<TlsConnector>,
    /// The request measure's request, whole.
    post: Arc<Vec<u8>>,
    /// The streamed response's request.
    stream: Arc<Vec<u8>>,
}

/// The body of every `POST`: a chat message of plain words, `bytes` long.
fn body(bytes: usize) -> String {
    let head = r#"{"model":"bench","max_tokens":64,"messages":[{"role":"user","content":""#;
    let tail = r#""}]}"#;
    let words = "the quick brown fox jumps over the lazy dog and then reads the manual ";
    let mut text = String::new();
    while head.len() + text.len() + tail.len() < bytes {
        text.push_str(words);
    }
    text.truncate(bytes.saturating_sub(head.len() + tail.len()));
    format!("{head}{text}{tail}")
}

impl Target {
    /// `key`: direct sends the credential itself.
    fn new(addr: SocketAddr, tls: Option<TlsConnector>, key: Option<&str>, body: &str) -> Target {
        let key = key.map_or(String::new(), |k| format!("{KEY_HEADER}: {k}\r\n"));
        let post = format!(
            "POST /v1/messages HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json\r\nUser-Agent: bottle-bench\r\nAnthropic-Version: 2023-06-01\r\n{key}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let stream = format!(
            "GET /v1/stream HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nUser-Agent: bottle-bench\r\nAnthropic-Version: 2023-06-01\r\n{key}\r\n"
        );
        Target {
            addr,
            tls,
            post: Arc::new(post.into_bytes()),
            stream: Arc::new(stream.into_bytes()),
        }
    }

    async fn connect(&self) -> Result<Conn, String> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some(c) => {
                let name = ServerName::from(self.addr.ip());
                let tls = c
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS to {}: {e}", self.addr))?;
                Ok(Box::new(tls))
            }
        }
    }
}

/// A response read in full.
#[derive(Debug, Clone, Copy)]
struct Answer {
    status: u16,
    keep: bool,
    /// When the first byte of the body was in.
    first: Option<Instant>,
}

async fn read_more(c: &mut Conn, buf: &mut Vec<u8>) -> Result<(), String> {
    buf.reserve(8192);
    match c.read_buf(buf).await {
        Ok(0) => Err("closed in the middle of a response".into()),
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// The head's length, status, `Content-Length`, whether chunked, whether keep-alive.
type Head = (usize, u16, Option<usize>, bool, bool);

fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let (mut length, mut chunked, mut keep) = (None, false, resp.version == Some(1));
            for h in resp.headers.iter() {
                let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
                if h.name.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().ok();
                } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = v.contains("chunked");
                } else if h.name.eq_ignore_ascii_case("connection") && v.contains("close") {
                    keep = false;
                }
            }
            Ok(Some((len, resp.code.unwrap_or(0), length, chunked, keep)))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(format!("bad response head: {e}")),
    }
}

/// Reads one response (`Content-Length` or chunked) into `buf`, noting when its body began.
async fn read_response(c: &mut Conn, buf: &mut Vec<u8>) -> Result<Answer, String> {
    buf.clear();
    let (head, status, length, chunked, keep) = loop {
        if let Some(h) = parse_head(buf)? {
            break h;
        }
        if buf.len() > MAX_HEAD {
            return Err("response head too large".into());
        }
        read_more(c, buf).await?;
    };
    let mut first = None;
    if !chunked {
        let length = length.ok_or("neither Content-Length nor chunked")?;
        while buf.len() < head + length {
            if first.is_none() && buf.len() > head {
                first = Some(Instant::now());
            }
            read_more(c, buf).await?;
        }
        if length > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        return Ok(Answer {
            status,
            keep,
            first,
        });
    }
    let mut pos = head;
    loop {
        let line_end = loop {
            if let Some(i) = buf[pos..].windows(2).position(|w| w == b"\r\n") {
                break pos + i;
            }
            if buf.len() - pos > MAX_HEAD {
                return Err("chunk size line too long".into());
            }
            read_more(c, buf).await?;
        };
        let size = std::str::from_utf8(&buf[pos..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .ok_or("bad chunk size")?;
        let data = line_end + 2;
        if size == 0 {
            // No trailers are sent: the blank line ends the body.
            while buf.len() < data + 2 {
                read_more(c, buf).await?;
            }
            return Ok(Answer {
                status,
                keep,
                first,
            });
        }
        while buf.len() <= data {
            read_more(c, buf).await?;
        }
        if first.is_none() {
            first = Some(Instant::now());
        }
        while buf.len() < data + size + 2 {
            read_more(c, buf).await?;
        }
        pos = data + size + 2;
    }
}

/// What a run of requests did.
#[derive(Debug, Default)]
struct Run {
    completed: u64,
    errors: u64,
    first_error: Option<String>,
    seconds: f64,
    /// Per completed request, request written to response read, ms.
    latencies_ms: Vec<f64>,
    /// Per completed request, request written to the body's first byte, ms.
    firsts_ms: Vec<f64>,
}

impl Run {
    fn fail(&mut self, e: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }

    fn merge(&mut self, w: Run) {
        self.completed += w.completed;
        self.errors += w.errors;
        if self.first_error.is_none() {
            self.first_error = w.first_error;
        }
        self.latencies_ms.extend(w.latencies_ms);
        self.firsts_ms.extend(w.firsts_ms);
    }
}

/// Whether another request may start: under the count, before the deadline.
fn next(issued: &AtomicU64, count: u64, deadline: Instant) -> bool {
    Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < count
}

/// One connection's requests, one after another, until the count or the deadline.
async fn worker(
    t: Target,
    mut conn: Option<Conn>,
    stream: bool,
    issued: Arc<AtomicU64>,
    count: u64,
    deadline: Instant,
) -> Run {
    let mut w = Run::default();
    let mut buf = Vec::with_capacity(16 * 1024);
    let request = if stream {
        t.stream.clone()
    } else {
        t.post.clone()
    };
    while next(&issued, count, deadline) {
        let t0 = Instant::now();
        let one = async {
            let mut c = match conn.take() {
                Some(c) => c,
                None => t.connect().await?,
            };
            c.write_all(&request).await.map_err(|e| e.to_string())?;
            c.flush().await.map_err(|e| e.to_string())?;
            let a = read_response(&mut c, &mut buf).await?;
            Ok::<_, String>((a, c))
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, one).await {
            Ok(Ok((a, c))) if a.status == 200 => {
                w.completed += 1;
                w.latencies_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
                if let Some(f) = a.first {
                    w.firsts_ms
                        .push(f.saturating_duration_since(t0).as_secs_f64() * 1000.0);
                }
                if a.keep {
                    conn = Some(c);
                }
            }
            Ok(Ok((a, _))) => {
                let text = String::from_utf8_lossy(&buf);
                let line = text.lines().last().unwrap_or_default().to_string();
                w.fail(format!("status {}: {line}", a.status));
            }
            Ok(Err(e)) => w.fail(e),
            Err(_) => w.fail(format!("no response within {REQUEST_TIMEOUT:?}")),
        }
    }
    w
}

/// `count` requests (or as many as fit in `cap`) from `connections` keep-alive connections,
/// each opened before the clock starts.
async fn run(t: &Target, connections: usize, count: u64, cap: Duration, stream: bool) -> Run {
    let mut r = Run::default();
    let mut conns = Vec::new();
    for _ in 0..connections.max(1) {
        match tokio::time::timeout(REQUEST_TIMEOUT, t.connect()).await {
            Ok(Ok(c)) => conns.push(c),
            Ok(Err(e)) => r.fail(e),
            Err(_) => r.fail("no connection in time".into()),
        }
    }
    if conns.is_empty() {
        return r;
    }
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + cap;
    let mut set = JoinSet::new();
    for c in conns {
        set.spawn(worker(
            t.clone(),
            Some(c),
            stream,
            issued.clone(),
            count,
            deadline,
        ));
    }
    while let Some(w) = set.join_next().await {
        if let Ok(w) = w {
            r.merge(w);
        }
    }
    r.seconds = start.elapsed().as_secs_f64();
    r
}

/// One round of one contender.
async fn measure(t: &Target, opts: &Options, tids: [Option<u32>; 3]) -> Sample {
    let mut s = Sample::default();
    let note = |s: &mut Sample, what: &str, r: &Run| {
        s.errors += r.errors;
        if let Some(e) = &r.first_error {
            s.failures.push(format!(
                "{what}: {} of {} requests failed, e.g. {e}",
                r.errors,
                r.errors + r.completed
            ));
        }
    };

    let k0 = tids[0].and_then(user_system);
    let c0 = cpu(tids);
    let r = run(t, opts.connections, opts.requests, opts.cap, false).await;
    let c1 = cpu(tids);
    let k1 = tids[0].and_then(user_system);
    if let (Some((u0, s0)), Some((u1, s1))) = (k0, k1) {
        let (u, k) = (u1.saturating_sub(u0), s1.saturating_sub(s0));
        // Ticks of 10 ms: too few say nothing (direct leaves the service idle).
        if u + k >= 20 {
            s.service_kernel_percent = Some(k as f64 * 100.0 / (u + k) as f64);
        }
    }
    note(&mut s, "keep-alive", &r);
    if r.completed > 0 && r.seconds > 0.0 {
        s.rps = Some(r.completed as f64 / r.seconds);
        s.load_p50_ms = service::quantile(&r.latencies_ms, 0.5);
        s.load_p99_ms = service::quantile(&r.latencies_ms, 0.99);
        for i in 0..3 {
            if let (Some(a), Some(b)) = (c0[i], c1[i]) {
                s.cpu_us[i] = Some(b.saturating_sub(a) as f64 / 1000.0 / r.completed as f64);
            }
        }
    }

    let r = run(t, 1, opts.latency_requests, opts.cap, false).await;
    note(&mut s, "one connection", &r);
    s.p50_ms = service::quantile(&r.latencies_ms, 0.5);
    s.p99_ms = service::quantile(&r.latencies_ms, 0.99);

    let r = run(t, 1, opts.ttfb_requests, opts.cap, true).await;
    note(&mut s, "streamed", &r);
    s.ttfb_ms = service::quantile(&r.firsts_ms, 0.5);
    s.ttfb_max_ms = service::quantile(&r.firsts_ms, 1.0);
    s
}

// ---------------------------------------------------------------------------------------------
// The scan alone.

/// µs per request for `scanner` on `head` (its pieces) and `body`, as the service scans them:
/// the median of 9 batches, so that a batch the scheduler cut into does not count.
fn scan_cost(scanner: &Scanner, head: &[&[u8]], body: &[u8], cap: Duration) -> Option<f64> {
    const BATCHES: usize = 9;
    const PER_BATCH: u32 = 300;
    let deadline = Instant::now() + cap;
    let mut batches = Vec::with_capacity(BATCHES);
    while batches.len() < BATCHES && Instant::now() < deadline {
        let start = Instant::now();
        for _ in 0..PER_BATCH {
            std::hint::black_box(scanner.scan_pieces(std::hint::black_box(head)));
            std::hint::black_box(scanner.scan(std::hint::black_box(body)));
        }
        batches.push(start.elapsed().as_secs_f64() * 1e6 / f64::from(PER_BATCH));
    }
    service::quantile(&batches, 0.5)
}

// ---------------------------------------------------------------------------------------------
// The run.

/// Prints a progress line on stderr.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "bench service: {line}");
}

/// A temporary directory for the CA file, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, String> {
        let p = std::env::temp_dir().join(format!("bottle-bench-service-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).map_err(|e| format!("creating {}: {e}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The service's log: each line rendered as the daemon's stdout log renders it, then dropped
/// (the report goes to stdout).
fn log() -> Arc<dyn Fn(serde_json::Value) + Send + Sync> {
    Arc::new(|v: serde_json::Value| {
        std::hint::black_box(v.to_string());
    })
}

async fn drive(opts: Options) -> Result<(), String> {
    let started = Instant::now();
    let mut machine = Machine::read();
    let pki = pki()?;
    let dir = TempDir::new()?;
    let ca_file = dir.0.join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem)
        .map_err(|e| format!("writing {}: {e}", ca_file.display()))?;
    let secrets = secrets();
    let key = secrets[0].1.clone();

    let up_listener = bind()?;
    let up_addr = local(&up_listener)?;
    let acceptor = acceptor(&pki)?;
    let (up_key, gap): (Arc<str>, _) = (key.clone().into(), opts.sse_gap);
    let up_tid = spawn_thread("upstream", move || {
        upstream(up_listener, acceptor, up_key, gap)
    })?;

    let planned = |port: u16| PlannedService {
        name: "api".into(),
        port,
        upstream: format!("https://{up_addr}"),
        inject: vec![Inject {
            header: KEY_HEADER.into(),
            secret: KEY_NAME.into(),
            format: None,
        }],
        paths: vec![],
        ca_file: Some(ca_file.to_string_lossy().into_owned()),
        insecure_http: false,
    };
    let lookup = |k: &str| secrets.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let (one_l, many_l) = (bind()?, bind()?);
    let (one_addr, many_addr) = (local(&one_l)?, local(&many_l)?);
    let one = Arc::new(Service::new(planned(one_addr.port()), &lookup)?);
    let many = Arc::new(Service::new(planned(many_addr.port()), &lookup)?);
    let one_scanner = Arc::new(Scanner::new([(KEY_NAME, key.as_str())]));
    let many_scanner = Arc::new(Scanner::new(
        secrets.iter().map(|(k, v)| (k.clone(), v.clone())),
    ));
    if many_scanner.keys().len() != MANY_SECRETS {
        return Err(format!(
            "the scanner took {} of the {MANY_SECRETS} secrets",
            many_scanner.keys().len()
        ));
    }
    let (ms, mm) = (one_scanner.clone(), many_scanner.clone());
    let svc_tid = spawn_thread("service", move || async move {
        let (Ok(a), Ok(b)) = (
            tokio::net::TcpListener::from_std(one_l),
            tokio::net::TcpListener::from_std(many_l),
        ) else {
            return;
        };
        tokio::spawn(services::serve(a, one, ms, log()));
        services::serve(b, many, mm, log()).await;
    })?;
    let tids = [svc_tid, up_tid, thread_id()];
    say(&format!(
        "upstream on {up_addr} (TLS), service on {one_addr}, service with {MANY_SECRETS} secrets on {many_addr}"
    ));

    let body = body(opts.body_bytes);
    let tls = connector(&pki)?;
    let target = |c: Contender| match c {
        Contender::Direct => Target::new(up_addr, Some(tls.clone()), Some(&key), &body),
        Contender::Service => Target::new(one_addr, None, None, &body),
        Contender::Service20 => Target::new(many_addr, None, None, &body),
    };

    // The head as the service scans it: the target, then each header's name and value.
    let host = one_addr.to_string();
    let length = body.len().to_string();
    let scanned_head: Vec<&str> = vec![
        "/v1/messages",
        "host",
        &host,
        "content-type",
        "application/json",
        "accept",
        "application/json",
        "user-agent",
        "bottle-bench",
        "anthropic-version",
        "2023-06-01",
        "content-length",
        &length,
    ];

    let mut m = Measured::default();
    m.scan.bytes = scanned_head.iter().map(|p| p.len()).sum::<usize>() + body.len();
    // One request each first: a contender that cannot answer is a failure, not a zero.
    for &c in &opts.contenders {
        let t = target(c);
        let r = run(&t, 1, 1, REQUEST_TIMEOUT, false).await;
        if let Some(e) = r.first_error {
            return Err(format!("{} does not answer: {e}", c.name()));
        }
    }
    if let Ok(tcp) = TcpStream::connect(up_addr).await {
        if let Ok(tls) = tls.connect(ServerName::from(up_addr.ip()), tcp).await {
            let (_, session) = tls.get_ref();
            m.notes.push(format!(
                "TLS: {:?}, {:?} (rustls with ring, the same settings on both sides)",
                session
                    .protocol_version()
                    .map_or("?".into(), |v| format!("{v:?}")),
                session
                    .negotiated_cipher_suite()
                    .map_or("?".into(), |s| format!("{:?}", s.suite())),
            ));
        }
    }

    let total = opts.warmup + opts.rounds;
    let k = opts.contenders.len();
    for r in 0..total {
        let timed = r >= opts.warmup;
        for i in 0..k {
            let j = if r % 2 == 1 { k - 1 - i } else { i };
            let c = opts.contenders[(j + r) % k];
            let t0 = Instant::now();
            let s = measure(&target(c), &opts, tids).await;
            say(&format!(
                "round {}/{total}{} {}: {} req/s, p50 {} ms, p99 {} ms, first event {} ms ({:.1} s)",
                r + 1,
                if timed { "" } else { " (warm-up)" },
                c.name(),
                report_num(s.rps, 0),
                report_num(s.p50_ms, 3),
                report_num(s.p99_ms, 3),
                report_num(s.ttfb_ms, 3),
                t0.elapsed().as_secs_f64()
            ));
            if timed {
                for f in &s.failures {
                    m.failures
                        .push(format!("round {}, {}: {f}", r + 1, c.name()));
                }
                m.rounds.entry(c).or_default().push(Some(s));
            }
        }
        if timed {
            let cap = opts.cap;
            let b = body.as_bytes();
            let h: Vec<&[u8]> = scanned_head.iter().map(|p| p.as_bytes()).collect();
            let h = h.as_slice();
            if let Some(v) = scan_cost(&one_scanner, h, b, cap) {
                m.scan.one_secret_us.push(v);
            }
            if let Some(v) = scan_cost(&many_scanner, h, b, cap) {
                m.scan.many_secrets_us.push(v);
            }
        }
    }

    machine.finish();
    let text = report::render(&opts, &machine, &m, started.elapsed());
    print!("{text}");
    if let Some(parent) = opts.out.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(&opts.out, &text).map_err(|e| format!("writing {}: {e}", opts.out.display()))?;
    say(&format!("report written to {}", opts.out.display()));
    Ok(())
}

fn report_num(v: Option<f64>, decimals: usize) -> String {
    bottle_bench::stats::num(v, decimals)
}

fn main() -> ExitCode {
    let args = bottle_bench::args::from_env();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{}", bottle_bench::service::USAGE);
        return ExitCode::SUCCESS;
    }
    let mut opts = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if opts.out.is_relative() {
        // `cargo bench` runs this in the package's directory: a relative report path is the
        // workspace's (the nearest directory up with a Cargo.lock).
        if let Ok(cwd) = std::env::current_dir() {
            let root = cwd
                .ancestors()
                .find(|d| d.join("Cargo.lock").is_file())
                .unwrap_or(&cwd);
            opts.out = root.join(&opts.out);
        }
    }
    let rt = match bottle_bench::args::runtime("bench service") {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(drive(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench service: {e}");
            ExitCode::FAILURE
        }
    }
}
