//! The egress daemon: an HTTP/1.1 forward proxy that lets the agent reach exactly the hosts in
//! its bottle's allowlist, by CONNECT tunnel or absolute-form plain HTTP, and logs every decision.
//!
//! Matching is [`bottle_core::allowlist::Allowlist`], the same code the planner validates the
//! patterns with, so what `bottle plan` accepts is exactly what this proxy lets through. The agent
//! is assumed hostile: a request is judged on the target it names *and* on its `Host` header, and
//! anything the proxy cannot parse is answered with a 4xx instead of being guessed at.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bottle_core::allowlist::{normalize_host, Allowlist};
use bottle_core::catalog::EGRESS_ALLOW_ENV;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CONNECTION, CONTENT_TYPE, HOST};
use hyper::http::uri::Authority;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The environment variable naming an allowlist file (one or more patterns a line, `#` comments).
pub const ALLOW_FILE_ENV: &str = "BOTTLE_EGRESS_ALLOW_FILE";
/// The allowlist file read when [`ALLOW_FILE_ENV`] is unset and this path exists.
pub const DEFAULT_ALLOW_FILE: &str = "/etc/bottle/egress-allow";

/// The largest request head (request line plus headers) the proxy reads; larger is refused
/// (431) rather than buffered, so a client cannot make the proxy hold arbitrary memory.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long a client may take to send a request head; stops slow-loris connections pinning tasks.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting to an allowed upstream may take before the client gets a 502.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type Body = BoxBody<Bytes, hyper::Error>;

/// Reads the allowlist from [`EGRESS_ALLOW_ENV`] and the allowlist file, merged.
///
/// The file is [`ALLOW_FILE_ENV`] when set (it must then exist: a missing file the operator named
/// is a mistake, not an empty list), else [`DEFAULT_ALLOW_FILE`] if it exists.
pub fn allowlist_from_env() -> Result<Allowlist, String> {
    let mut allow = match std::env::var(EGRESS_ALLOW_ENV) {
        Ok(csv) => Allowlist::parse(&csv).map_err(|e| {
            format!("cannot use {EGRESS_ALLOW_ENV}: {e}; fix the bottle's egress_allow")
        })?,
        Err(_) => Allowlist::default(),
    };
    let (path, required) = match std::env::var(ALLOW_FILE_ENV) {
        Ok(p) => (p, true),
        Err(_) => (DEFAULT_ALLOW_FILE.to_string(), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let file = Allowlist::parse(&text)
                .map_err(|e| format!("cannot use allowlist file {path}: {e}; fix that line"))?;
            allow.rules.extend(file.rules);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && !required => {}
        Err(e) => {
            return Err(format!(
                "cannot read allowlist file {path} (named by {ALLOW_FILE_ENV}): {e}; \
                 mount it or unset {ALLOW_FILE_ENV}"
            ))
        }
    }
    Ok(allow)
}

/// Whether a request was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied,
}

/// One decision of the proxy, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Milliseconds since the Unix epoch when the decision was logged.
    pub time_ms: u64,
    /// The client's address.
    pub client: Option<SocketAddr>,
    pub method: String,
    /// The target host, normalized (empty when the request named none the proxy could read).
    pub host: String,
    pub port: u16,
    pub verdict: Verdict,
    /// Why a request was denied, or what went wrong with an allowed one.
    pub reason: Option<String>,
    /// The status the proxy answered with, or the upstream's status for plain HTTP.
    pub status: u16,
    /// Bytes sent to the upstream (request head and body, or tunnel payload), when known.
    pub bytes_up: Option<u64>,
    /// Bytes received from the upstream, when known.
    pub bytes_down: Option<u64>,
}

impl Decision {
    /// The one-line JSON form written to the daemon's stdout. Written by hand rather than
    /// through a map so the fields keep a fixed, readable order (time first).
    pub fn to_json(&self) -> String {
        let string = |v: &str| serde_json::Value::from(v).to_string();
        let number = |v: Option<u64>| v.map_or_else(|| "null".to_string(), |n| n.to_string());
        format!(
            r#"{{"time":{},"daemon":"egress","client":{},"method":{},"host":{},"port":{},"decision":"{}","status":{},"bytes_up":{},"bytes_down":{},"reason":{}}}"#,
            string(&rfc3339_ms(self.time_ms)),
            self.client
                .map_or_else(|| "null".into(), |c| string(&c.to_string())),
            string(&self.method),
            string(&self.host),
            self.port,
            match self.verdict {
                Verdict::Allowed => "allowed",
                Verdict::Denied => "denied",
            },
            self.status,
            number(self.bytes_up),
            number(self.bytes_down),
            self.reason.as_deref().map_or_else(|| "null".into(), string),
        )
    }
}

/// Where decisions go. The daemon writes them to stdout; tests collect them.
pub type DecisionLog = Arc<dyn Fn(Decision) + Send + Sync>;

/// A [`DecisionLog`] that writes one JSON line per decision to stdout.
///
/// Stdout is deliberate: the bundle's init prefixes it with `[egress] ` and the engine's log
/// keeps it. A closed stdout must not kill the proxy, so write errors are ignored rather than
/// panicking as `println!` would.
pub fn stdout_log() -> DecisionLog {
    Arc::new(|d: Decision| {
        use std::io::Write;
        let mut line = d.to_json();
        line.push('\n');
        let _ = io::stdout().lock().write_all(line.as_bytes());
    })
}

/// Serves the proxy on `listener` with `allow`, logging decisions to stdout. Runs until dropped.
pub async fn serve(listener: TcpListener, allow: Allowlist) {
    serve_with_log(listener, allow, stdout_log()).await
}

/// [`serve`] with the decisions sent to `log`.
pub async fn serve_with_log(listener: TcpListener, allow: Allowlist, log: DecisionLog) {
    let proxy = Arc::new(Proxy { allow, log });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_header_size(MAX_HEAD_BYTES);
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Usually out of file descriptors: keep serving the connections we have and
                // retry shortly instead of spinning or exiting.
                eprintln_quiet(&format!("accepting a connection failed: {e}; retrying"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        let conn = http
            .serve_connection(
                TokioIo::new(stream),
                hyper::service::service_fn(move |req| proxy.clone().handle(client, req)),
            )
            .with_upgrades();
        tokio::spawn(async move {
            // A client that sends garbage has already had its 400 from hyper; nothing to do.
            let _ = conn.await;
        });
    }
}

/// Writes a diagnostic line to stderr, ignoring failures (see [`stdout_log`]).
fn eprintln_quiet(msg: &str) {
    use std::io::Write;
    let _ = writeln!(io::stderr().lock(), "{msg}");
}

struct Proxy {
    allow: Allowlist,
    log: DecisionLog,
}

/// What the proxy knows about a request when it decides.
#[derive(Clone)]
struct Target {
    client: SocketAddr,
    method: String,
    host: String,
    port: u16,
}

impl Target {
    fn decision(&self, verdict: Verdict, reason: Option<String>, status: StatusCode) -> Decision {
        Decision {
            time_ms: now_ms(),
            client: Some(self.client),
            method: self.method.clone(),
            host: self.host.clone(),
            port: self.port,
            verdict,
            reason,
            status: status.as_u16(),
            bytes_up: None,
            bytes_down: None,
        }
    }
}

impl Proxy {
    async fn handle(
        self: Arc<Self>,
        client: SocketAddr,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        let target = Target {
            client,
            method: req.method().to_string(),
            host: String::new(),
            port: 0,
        };
        let result = if req.method() == Method::CONNECT {
            self.tunnel(target, req).await
        } else {
            self.forward(target, req).await
        };
        Ok(result.unwrap_or_else(|refusal| self.refuse(*refusal)))
    }

    /// Logs a refusal (unless its decision is logged already) and turns it into the response
    /// the client sees.
    fn refuse(&self, r: Refusal) -> Response<Body> {
        if let Some(reason) = r.reason {
            (self.log)(r.target.decision(Verdict::Denied, Some(reason), r.status));
        }
        text(r.status, r.body)
    }

    /// Judges `host:port`: allowed, or a 403 that says how to allow it.
    fn check_allowed(&self, target: Target) -> Result<Target, Box<Refusal>> {
        if self.allow.allows(&target.host, target.port) {
            return Ok(target);
        }
        let hostport = host_port(&target.host, target.port);
        let body = format!(
            "bottle egress: {} to {hostport} denied: it is not in this bottle's egress allowlist.\n\
             To allow it, add \"{hostport}\" to egress_allow of the bottle and restart it.\n",
            target.method
        );
        Err(Box::new(Refusal {
            status: StatusCode::FORBIDDEN,
            reason: Some("not in allowlist".into()),
            body,
            target,
        }))
    }

    /// CONNECT host:port: check, dial the upstream, answer 200 and splice the two streams.
    async fn tunnel(
        &self,
        mut target: Target,
        mut req: Request<Incoming>,
    ) -> Result<Response<Body>, Box<Refusal>> {
        let authority = req.uri().authority().cloned();
        let Some((host, Some(port))) = authority.as_ref().and_then(split_authority) else {
            return Err(bad_request(
                target,
                format!(
                    "CONNECT needs a host:port target, got {:?}",
                    req.uri().to_string()
                ),
            ));
        };
        target.host = host;
        target.port = port;
        check_host_header(&req, &target, 0)?;
        let target = self.check_allowed(target)?;
        let upstream = self.dial(&target).await?;
        let on_upgrade = hyper::upgrade::on(&mut req);
        let log = self.log.clone();
        tokio::spawn(async move {
            let up = Arc::new(AtomicU64::new(0));
            let down = Arc::new(AtomicU64::new(0));
            let mut upstream = Counted::new(upstream, up.clone(), down.clone());
            let reason = match on_upgrade.await {
                Ok(client) => {
                    let mut client = TokioIo::new(client);
                    // A reset from either side is how many tunnels end; it is not worth a
                    // reason unless nothing was carried.
                    tokio::io::copy_bidirectional(&mut client, &mut upstream)
                        .await
                        .err()
                        .map(|e| format!("tunnel ended: {e}"))
                }
                Err(e) => Some(format!("client left before the tunnel opened: {e}")),
            };
            let mut d = target.decision(Verdict::Allowed, reason, StatusCode::OK);
            d.bytes_up = Some(up.load(Ordering::Relaxed));
            d.bytes_down = Some(down.load(Ordering::Relaxed));
            log(d);
        });
        Ok(Response::new(empty()))
    }

    /// Absolute-form plain HTTP: check, then send the request to the upstream over a fresh
    /// connection and stream its response back.
    async fn forward(
        &self,
        mut target: Target,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Box<Refusal>> {
        let uri = req.uri().clone();
        let Some(authority) = uri.authority() else {
            return Err(bad_request(
                target,
                "this is a forward proxy: send absolute-form requests (GET http://host/path) \
                 or CONNECT host:port"
                    .into(),
            ));
        };
        if uri.scheme_str() != Some("http") {
            return Err(bad_request(
                target,
                format!(
                    "only http:// URLs are forwarded in plain; got {uri}; use CONNECT for https"
                ),
            ));
        }
        let Some((host, port)) = split_authority(authority) else {
            return Err(bad_request(
                target,
                format!("cannot read the host of {uri}"),
            ));
        };
        target.host = host;
        target.port = port.unwrap_or(80);
        check_host_header(&req, &target, 80)?;
        let target = self.check_allowed(target)?;
        let upstream = self.dial(&target).await?;

        let up = Arc::new(AtomicU64::new(0));
        let down = Arc::new(AtomicU64::new(0));
        let io = TokioIo::new(Counted::new(upstream, up.clone(), down.clone()));
        let (mut sender, conn) = match hyper::client::conn::http1::handshake(io).await {
            Ok(pair) => pair,
            Err(e) => return Err(self.bad_gateway(&target, format!("HTTP handshake failed: {e}"))),
        };
        // The connection task logs the decision once the exchange is over, so the line carries
        // the byte counts; the handler hands it the upstream's status first.
        let (status_tx, status_rx) = tokio::sync::oneshot::channel::<Result<u16, String>>();
        let log = self.log.clone();
        let logged = target.clone();
        tokio::spawn(async move {
            let conn_err = conn
                .await
                .err()
                .map(|e| format!("upstream connection: {e}"));
            let outcome = status_rx
                .await
                .unwrap_or_else(|_| Err("the request was abandoned".into()));
            let (status, reason) = match outcome {
                Ok(status) => (status, conn_err),
                Err(e) => (StatusCode::BAD_GATEWAY.as_u16(), Some(e)),
            };
            let mut d = logged.decision(Verdict::Allowed, reason, StatusCode::OK);
            d.status = status;
            d.bytes_up = Some(up.load(Ordering::Relaxed));
            d.bytes_down = Some(down.load(Ordering::Relaxed));
            log(d);
        });

        let (mut parts, body) = req.into_parts();
        parts.uri = origin_form(&uri);
        parts.version = Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        match sender.send_request(Request::from_parts(parts, body)).await {
            Ok(mut resp) => {
                let _ = status_tx.send(Ok(resp.status().as_u16()));
                strip_hop_by_hop(resp.headers_mut());
                Ok(resp.map(BodyExt::boxed))
            }
            Err(e) => {
                let msg = format!(
                    "upstream {} failed: {e}",
                    host_port(&target.host, target.port)
                );
                let _ = status_tx.send(Err(msg.clone()));
                Ok(text(
                    StatusCode::BAD_GATEWAY,
                    format!("bottle egress: {msg}\n"),
                ))
            }
        }
    }

    /// Connects to an allowed target; failure is a logged 502.
    async fn dial(&self, target: &Target) -> Result<TcpStream, Box<Refusal>> {
        let connect = TcpStream::connect((target.host.as_str(), target.port));
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                Ok(stream)
            }
            Ok(Err(e)) => Err(self.bad_gateway(target, format!("cannot connect: {e}"))),
            Err(_) => Err(self.bad_gateway(
                target,
                format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
            )),
        }
    }

    /// A 502 for an allowed request, logged here as allowed since the policy said yes.
    fn bad_gateway(&self, target: &Target, why: String) -> Box<Refusal> {
        (self.log)(target.decision(Verdict::Allowed, Some(why.clone()), StatusCode::BAD_GATEWAY));
        Box::new(Refusal {
            status: StatusCode::BAD_GATEWAY,
            reason: None,
            body: format!(
                "bottle egress: {} is allowed but {why}\n",
                host_port(&target.host, target.port)
            ),
            target: target.clone(),
        })
    }
}

/// A request the proxy answers itself with an error status.
struct Refusal {
    status: StatusCode,
    /// The short reason for the log line; `None` when the decision is logged already.
    reason: Option<String>,
    /// The text the client sees.
    body: String,
    target: Target,
}

fn bad_request(target: Target, why: String) -> Box<Refusal> {
    Box::new(Refusal {
        status: StatusCode::BAD_REQUEST,
        reason: Some(why.clone()),
        body: format!("bottle egress: bad request: {why}\n"),
        target,
    })
}

/// The `Host` header must name the same host (and port, when it has one) as the target, or the
/// request is a spoofing attempt: an upstream virtual-hosting on the allowed name would otherwise
/// serve the agent a host the allowlist never named. HTTP/1.1 requires the header (RFC 9112
/// §3.2); HTTP/1.0 clients may omit it.
fn check_host_header(
    req: &Request<Incoming>,
    target: &Target,
    default_port: u16,
) -> Result<(), Box<Refusal>> {
    let copy = || target.clone();
    let mut values = req.headers().get_all(HOST).iter();
    let value = match (values.next(), values.next()) {
        (None, _) if req.version() >= Version::HTTP_11 => {
            return Err(bad_request(
                copy(),
                "HTTP/1.1 requests need a Host header".into(),
            ))
        }
        (None, _) => return Ok(()),
        (Some(_), Some(_)) => return Err(bad_request(copy(), "more than one Host header".into())),
        (Some(v), None) => v,
    };
    let parsed = value
        .to_str()
        .ok()
        .and_then(|v| Authority::from_str(v).ok())
        .and_then(|a| split_authority(&a));
    let Some((host, port)) = parsed else {
        return Err(bad_request(
            copy(),
            format!("unreadable Host header {value:?}"),
        ));
    };
    // CONNECT has no scheme default; a port-less Host there names the target's host only.
    let port_matches = match port {
        Some(p) => p == target.port,
        None => default_port == 0 || default_port == target.port,
    };
    if host == target.host && port_matches {
        return Ok(());
    }
    let shown = value.to_str().unwrap_or("?").to_string();
    Err(Box::new(Refusal {
        status: StatusCode::FORBIDDEN,
        reason: Some(format!("Host header {shown:?} does not match the target")),
        body: format!(
            "bottle egress: denied: the Host header {shown:?} does not match the request target \
             {}; send the request to the host it names\n",
            host_port(&target.host, target.port)
        ),
        target: copy(),
    }))
}

/// The normalized host and the port, if any, of an authority; `None` for userinfo or a bad host.
fn split_authority(a: &Authority) -> Option<(String, Option<u16>)> {
    if a.as_str().contains('@') {
        return None;
    }
    let host = normalize_host(a.host())?;
    Some((host, a.port_u16()))
}

/// `host:port`, bracketing IPv6 literals.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The path and query of an absolute-form URI, which is what an origin server expects.
fn origin_form(uri: &Uri) -> Uri {
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let pq = if pq.is_empty() { "/" } else { pq };
    Uri::from_str(pq).unwrap_or_else(|_| Uri::from_static("/"))
}

/// Removes the headers that describe one hop (RFC 9110 §7.6.1), including any that `Connection`
/// names, so the client's proxy credentials or upgrade wishes never reach the upstream.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    for name in named {
        headers.remove(name.as_str());
    }
    for name in [
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "upgrade",
    ] {
        headers.remove(name);
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)).map_err(|n| match n {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn empty() -> Body {
    Empty::<Bytes>::new().map_err(|n| match n {}).boxed()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// RFC 3339 UTC with milliseconds, from Unix milliseconds (civil-from-days, proleptic Gregorian).
fn rfc3339_ms(ms: u64) -> String {
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

/// A stream that counts the bytes read from and written to it.
struct Counted<S> {
    inner: S,
    written: Arc<AtomicU64>,
    read: Arc<AtomicU64>,
}

impl<S> Counted<S> {
    fn new(inner: S, written: Arc<AtomicU64>, read: Arc<AtomicU64>) -> Self {
        Counted {
            inner,
            written,
            read,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll {
            self.written.fetch_add(*n as u64, Ordering::Relaxed);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
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
    fn decision_lines_are_json() {
        let d = Decision {
            time_ms: 1_700_000_000_123,
            client: Some("127.0.0.1:5".parse().unwrap()),
            method: "CONNECT".into(),
            host: "a\"b".into(),
            port: 443,
            verdict: Verdict::Denied,
            reason: Some("not in allowlist".into()),
            status: 403,
            bytes_up: None,
            bytes_down: Some(7),
        };
        let line = d.to_json();
        assert!(
            line.starts_with(r#"{"time":"2023-11-14T22:13:20.123Z","#),
            "{line}"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["host"], "a\"b");
        assert_eq!(v["decision"], "denied");
        assert_eq!(v["bytes_up"], serde_json::Value::Null);
        assert_eq!(v["bytes_down"], 7);
    }

    #[track_caller]
    fn check_strip(headers: &[(&str, &str)], kept: &[&str]) {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                hyper::header::HeaderName::from_str(k).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        strip_hop_by_hop(&mut map);
        let mut got: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
        got.sort_unstable();
        assert_eq!(got, kept);
    }

    #[test]
    fn hop_by_hop_headers_stay_on_their_hop() {
        check_strip(
            &[
                ("host", "a"),
                ("connection", "close, x-secret"),
                ("x-secret", "1"),
                ("proxy-authorization", "Basic x"),
                ("accept", "*/*"),
            ],
            &["accept", "host"],
        );
    }
}
