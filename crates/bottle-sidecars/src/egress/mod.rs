//! The egress daemon: an HTTP/1.1 forward proxy that lets the agent reach exactly the hosts in
//! its bottle's allowlist, by CONNECT tunnel or absolute-form plain HTTP, and logs every decision.
//!
//! The agent is assumed hostile, and so is the DNS of every name it may reach. A request goes
//! through, in order: the HTTP parser ([`hyper`]; what it rejects is logged too), the target
//! ([`target`]: strict ports, every numeric spelling of an address read as that address), the
//! `Host` header (it must name the target), the allowlist ([`bottle_core::allowlist`], the same
//! code the planner validates with), one resolution as an absolute name and a check of every
//! address it gave ([`policy`]: no loopback, private, link-local, ... unless a rule names the
//! address), and a connection to a checked address only. A tunnel to port 443 must then start
//! with a TLS ClientHello whose server name is the tunnel's host ([`tls`]). Plain HTTP is
//! forwarded with the `Host` it was decided on.
//!
//! What it records ([`log`]): one line per decision, one per end of an allowed exchange, never
//! blocking traffic. Under load: a cap on connections with a fast 503 beyond it, idle timeouts
//! on keep-alive connections and tunnels, a short header timeout ([`Limits`]).

mod config;
mod decide;
mod forward;
pub use config::{
    allowlist_from_env, Config, Limits, ALLOW_FILE_ENV, DEFAULT_ALLOW_FILE, HEADER_TIMEOUT_ENV,
    IDLE_TIMEOUT_ENV, MAX_CONNECTIONS_ENV,
};
use decide::Refusal;
pub use forward::strip_hop_by_hop;
pub mod io;
pub mod log;
pub mod policy;
mod splice;
pub mod target;
pub mod tls;
mod tunnel;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use self::io::{Activity, Tracked};
pub use self::log::{stdout_log, Event, EventKind, EventLog, Verdict};
use self::policy::Policy;
use self::target::Target;
use crate::leak::Scanner;

/// The largest request head (request line plus headers) the proxy reads; larger is refused
/// (431) rather than buffered, so a client cannot make the proxy hold arbitrary memory.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long a connection beyond the cap waits for an idle one to make room before its 503.
const SLOT_WAIT: Duration = Duration::from_millis(250);

type Body = BoxBody<Bytes, hyper::Error>;

/// Serves the proxy on `listener`, logging to stdout. Runs until dropped.
pub async fn serve(listener: TcpListener, config: Config) {
    serve_with_log(listener, config, stdout_log()).await
}

/// [`serve`] with the log lines sent to `log`.
pub async fn serve_with_log(listener: TcpListener, config: Config, log: EventLog) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.limits.header_timeout)
        .max_header_size(MAX_HEAD_BYTES);
    let log = withholding(log, Arc::new(config.scanner.clone()));
    let slots = Arc::new(Semaphore::new(config.limits.max_connections));
    let waiters = Arc::new(Semaphore::new(config::FD_RESERVE as usize / 4));
    let proxy = Arc::new(Proxy {
        policy: Policy {
            allow: config.allow,
            local: config.local,
        },
        limits: config.limits,
        scanner: config.scanner,
        log,
        http,
        shed: Notify::new(),
        next_conn: AtomicU64::new(1),
        pool: Arc::default(),
    });
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors despite the reserve (another process's doing): keep
                // serving the connections we have and retry shortly instead of spinning.
                eprintln_quiet(&format!("accepting a connection failed: {e}; retrying"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let id = proxy.next_conn.fetch_add(1, Ordering::Relaxed);
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            tokio::spawn(proxy.clone().connection(stream, client, id, permit));
            continue;
        }
        // At the cap: ask idle keep-alive connections to close, and give this one a short
        // wait for the slot that frees, if few others are waiting already (each waiter holds a
        // descriptor of the reserve); else, or when no slot frees in time, a 503 at once.
        proxy.shed.notify_waiters();
        let Ok(waiter) = waiters.clone().try_acquire_owned() else {
            proxy.refuse_busy(&stream, client, id);
            continue;
        };
        let (proxy, slots) = (proxy.clone(), slots.clone());
        tokio::spawn(async move {
            let _waiter = waiter;
            match tokio::time::timeout(SLOT_WAIT, slots.acquire_owned()).await {
                Ok(Ok(permit)) => proxy.connection(stream, client, id, permit).await,
                _ => proxy.refuse_busy(&stream, client, id),
            }
        });
    }
}

/// `log`, with any field the agent could have put a credential in (method, host, reason, which
/// quotes what it refused) withheld when it carries one: the log never holds a secret.
fn withholding(log: EventLog, scanner: Arc<Scanner>) -> EventLog {
    Arc::new(move |mut event: Event| {
        // One pass over the three fields finds nothing for almost every line; only a line
        // that carries something pays for withholding field by field.
        let reason = event.reason.as_deref().unwrap_or("");
        let pieces = [
            event.method.as_bytes(),
            event.host.as_bytes(),
            reason.as_bytes(),
        ];
        if scanner.scan_name_pieces(&pieces).is_some() {
            for field in [&mut event.method, &mut event.host] {
                if let Some(found) = scanner.scan_name(field.as_bytes()) {
                    *field = format!("<withheld: carries {found}>");
                }
            }
            if let Some(reason) = &mut event.reason {
                if let Some(found) = scanner.scan_name(reason.as_bytes()) {
                    *reason = format!("<withheld: the reason quotes {found}>");
                }
            }
        }
        log(event)
    })
}

/// Writes a diagnostic line to stderr, ignoring failures.
fn eprintln_quiet(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
}

struct Proxy {
    policy: Policy,
    limits: Limits,
    scanner: Scanner,
    log: EventLog,
    http: hyper::server::conn::http1::Builder,
    /// Tells keep-alive connections to close once idle, when the cap is reached.
    shed: Notify,
    next_conn: AtomicU64,
    /// Idle upstream connections of plain-HTTP exchanges.
    pool: Arc<forward::Pool>,
}

/// One client connection, as its requests see it.
struct Conn {
    id: u64,
    client: SocketAddr,
    /// The connection's slot under the cap, held as long as the connection (and its tunnel).
    _slot: OwnedSemaphorePermit,
    activity: Activity,
}

/// What the log says about a request, filled in as it is read.
#[derive(Debug, Clone)]
struct Record {
    conn: u64,
    client: SocketAddr,
    method: String,
    host: String,
    port: u16,
}

impl Record {
    fn event(&self, kind: EventKind) -> Event {
        let mut e = Event::new(kind, self.conn, self.client);
        e.method = self.method.clone();
        e.host = self.host.clone();
        e.port = self.port;
        e
    }

    fn set_target(&mut self, t: &Target) {
        self.host = t.host.to_string();
        self.port = t.port;
    }

    fn decision(&self, verdict: Verdict, status: Option<u16>, reason: Option<String>) -> Event {
        let mut e = self.event(EventKind::Decision);
        e.verdict = Some(verdict);
        e.status = status;
        e.reason = reason;
        e
    }
}

impl Proxy {
    /// Serves one client connection until it closes, idles out or is shed.
    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        client: SocketAddr,
        id: u64,
        slot: OwnedSemaphorePermit,
    ) {
        let _ = stream.set_nodelay(true);
        let activity = Activity::new();
        let conn = Arc::new(Conn {
            id,
            client,
            _slot: slot,
            activity: activity.clone(),
        });
        let io = TokioIo::new(Tracked::new(stream, activity.clone()));
        let proxy = self.clone();
        let service =
            hyper::service::service_fn(move |req| proxy.clone().handle(conn.clone(), req));
        let served = self.http.serve_connection(io, service).with_upgrades();
        tokio::pin!(served);
        let outcome = loop {
            let shed = self.shed.notified();
            tokio::select! {
                r = served.as_mut() => break Some(r),
                () = activity.idle(self.limits.idle_timeout) => break None,
                () = shed => served.as_mut().graceful_shutdown(),
            }
        };
        if let Some(Err(e)) = outcome {
            // A header timeout on a connection that sent nothing since our last answer is an
            // idle keep-alive connection (or one never used) closing, not a refusal.
            if !e.is_timeout() || activity.input_pending() {
                self.log_rejected(id, client, &e);
            }
        }
    }

    /// A request hyper refused before it reached [`Proxy::handle`] (it has answered it
    /// already, or closed the connection): logged as a denial with the client's address.
    fn log_rejected(&self, conn: u64, client: SocketAddr, e: &hyper::Error) {
        let status = if e.is_parse_too_large() {
            Some(431)
        } else if e.is_parse() {
            Some(400)
        } else if e.is_timeout() {
            None
        } else {
            // The client went away, or the connection broke mid-exchange: not a refusal.
            return;
        };
        let mut event = Event::new(EventKind::Decision, conn, client);
        event.verdict = Some(Verdict::Denied);
        event.status = status;
        event.reason = Some(format!("refused by the HTTP parser: {e}"));
        (self.log)(event);
    }

    /// Beyond the cap: a 503 written without waiting (a fresh socket's buffer takes it), the
    /// connection closed, and idle keep-alive connections asked to make room.
    fn refuse_busy(&self, stream: &TcpStream, client: SocketAddr, id: u64) {
        const BODY: &str = "bottle egress: too many connections; retry shortly\n";
        let busy = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
            BODY.len()
        );
        let _ = stream.try_write(busy.as_bytes());
        let mut event = Event::new(EventKind::Decision, id, client);
        event.verdict = Some(Verdict::Denied);
        event.status = Some(503);
        event.reason = Some(format!(
            "too many connections (the cap is {})",
            self.limits.max_connections
        ));
        (self.log)(event);
    }

    async fn handle(
        self: Arc<Self>,
        conn: Arc<Conn>,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        let mut record = Record {
            conn: conn.id,
            client: conn.client,
            method: req.method().to_string(),
            host: String::new(),
            port: 0,
        };
        let result = if req.method() == Method::CONNECT {
            self.tunnel(&conn, &mut record, req).await
        } else {
            self.forward(&mut record, req).await
        };
        Ok(result.unwrap_or_else(|refusal| self.refuse(&record, refusal)))
    }

    /// Logs a refusal and turns it into the response the client sees.
    fn refuse(&self, record: &Record, r: Refusal) -> Response<Body> {
        (self.log)(record.decision(r.verdict, Some(r.status.as_u16()), Some(r.reason)));
        text(r.status, r.body)
    }
}

/// The largest request body a daemon reads (and scans) before forwarding it.
pub const MAX_BODY: usize = 16 << 20;

/// Reads a whole request body, at most [`MAX_BODY`]: a credential in it must never reach the
/// upstream, not even in part, so nothing is forwarded before all of it is scanned. The error
/// is the status and reason to refuse with.
pub(crate) async fn read_body(body: Incoming) -> Result<Bytes, (StatusCode, String)> {
    match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request bodies over {} MiB are refused", MAX_BODY >> 20),
        )),
        Err(e) => Err((
            StatusCode::BAD_REQUEST,
            format!("cannot read the request body: {e}"),
        )),
    }
}

/// A plain-text response the daemon answers itself.
pub(crate) fn text(status: StatusCode, body: String) -> Response<Body> {
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
