//! The services daemon: each of the bottle's services on its own agent-facing port. The agent
//! speaks plain HTTP to it (on its loopback address, which never leaves the host); the daemon
//! forwards each request to the service's upstream over TLS with certificate verification,
//! with the configured headers set from secrets the agent never holds, and streams the answer
//! back as it arrives (server-sent events and chunked responses included).
//!
//! Before a request leaves, everything the agent sent (target, headers, body) is scanned for
//! the bundle's secrets and the known credential formats ([`crate::leak`]); the headers the
//! service injects replace whatever the agent sent under those names and are not scanned.
//! One JSON line per request goes to stdout.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bottle_core::service::{self, PlannedService, Upstream, SERVICES_ENV};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue, HOST};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

use crate::egress::{strip_hop_by_hop, text};
use crate::leak::Scanner;
use crate::outq::OutQueue;

type Body = BoxBody<Bytes, hyper::Error>;

/// One service, ready to serve: its upstream, TLS settings and resolved headers.
pub struct Service {
    pub planned: PlannedService,
    upstream: Upstream,
    tls: Option<TlsConnector>,
    /// The headers set on every upstream request, values from the bundle's environment.
    inject: Vec<(HeaderName, HeaderValue)>,
    /// Upstream connections that finished their last exchange, for the next request.
    idle: Mutex<Vec<SendRequest<Body>>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the injected values.
        f.debug_struct("Service")
            .field("name", &self.planned.name)
            .field("upstream", &self.planned.upstream)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Prepares `planned`, reading its secrets with `lookup` (the environment, in the bundle).
    /// Errors name the service and what is wrong, never a secret's value.
    pub fn new(
        planned: PlannedService,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Service, String> {
        let name = planned.name.clone();
        let upstream = service::parse_upstream(&planned.upstream)
            .map_err(|why| format!("service {name}: upstream {:?} {why}", planned.upstream))?;
        let tls = if upstream.tls {
            Some(
                tls_connector(planned.ca_file.as_deref())
                    .map_err(|e| format!("service {name}: {e}"))?,
            )
        } else if planned.insecure_http {
            None
        } else {
            return Err(format!(
                "service {name}: plain http upstream without insecure_http"
            ));
        };
        let mut inject = Vec::new();
        for i in &planned.inject {
            let secret = lookup(&i.secret).ok_or_else(|| {
                format!(
                    "service {name}: secret {} is not in the bundle's environment",
                    i.secret
                )
            })?;
            let value = match &i.format {
                Some(f) => f.replacen("{}", &secret, 1),
                None => secret,
            };
            let header = HeaderName::from_bytes(i.header.as_bytes())
                .map_err(|_| format!("service {name}: {:?} is not a header name", i.header))?;
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                format!(
                    "service {name}: the value of {} cannot be sent in a header (control characters)",
                    i.secret
                )
            })?;
            value.set_sensitive(true);
            inject.push((header, value));
        }
        Ok(Service {
            planned,
            upstream,
            tls,
            inject,
            idle: Mutex::new(Vec::new()),
        })
    }
}

/// The services of [`SERVICES_ENV`], with their secrets from this process's environment.
pub fn from_env() -> Result<Vec<Service>, String> {
    let json = std::env::var(SERVICES_ENV)
        .map_err(|_| format!("{SERVICES_ENV} is not set: the bottle declares no services"))?;
    let planned: Vec<PlannedService> = serde_json::from_str(&json)
        .map_err(|e| format!("{SERVICES_ENV} is not a list of services: {e}"))?;
    planned
        .into_iter()
        .map(|p| Service::new(p, &|k| std::env::var(k).ok()))
        .collect()
}

/// TLS with the web PKI roots, or with the CA certificates of `ca_file` only.
fn tls_connector(ca_file: Option<&str>) -> Result<TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read CA file {path}: {e}"))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("cannot read CA file {path}: {e}"))?;
            if certs.is_empty() {
                return Err(format!("CA file {path} holds no certificate"));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("CA file {path}: {e}"))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// What the daemon writes per request.
type Log = Arc<dyn Fn(serde_json::Value) + Send + Sync>;

/// A log of JSON lines on stdout through a bounded queue (never blocks a request).
pub fn stdout_log() -> Log {
    let render = |v: serde_json::Value, dropped: u64| {
        let mut v = v;
        if dropped > 0 {
            v["dropped"] = dropped.into();
        }
        let mut line = v.to_string();
        line.push('\n');
        line.into_bytes()
    };
    match OutQueue::spawn("services-log", std::io::stdout(), 4096, render) {
        Ok(q) => Arc::new(move |v| q.push(v)),
        Err(_) => Arc::new(|_| {}),
    }
}

/// Serves `service` on `listener` until dropped.
pub async fn serve(listener: TcpListener, service: Arc<Service>, scanner: Arc<Scanner>, log: Log) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(30));
    loop {
        let Ok((stream, client)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (service, scanner, log) = (service.clone(), scanner.clone(), log.clone());
        let conn = http.serve_connection(
            TokioIo::new(stream),
            hyper::service::service_fn(move |req| {
                handle(service.clone(), scanner.clone(), log.clone(), client, req)
            }),
        );
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

async fn handle(
    service: Arc<Service>,
    scanner: Arc<Scanner>,
    log: Log,
    client: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let mut line = serde_json::json!({
        "time_ms": crate::egress::log::now_ms(),
        "daemon": "services",
        "service": service.planned.name,
        "client": client.to_string(),
        "method": method,
    });
    let outcome = forward(&service, &scanner, req).await;
    let (response, decision, reason) = match outcome {
        Ok(resp) => (resp, "allowed", None),
        Err((status, reason)) => {
            let body = format!("bottle service {}: {reason}\n", service.planned.name);
            let decision = if status == StatusCode::BAD_GATEWAY {
                "allowed"
            } else {
                "denied"
            };
            (text(status, body), decision, Some(reason))
        }
    };
    // The path is the agent's: logged only when it carries no credential.
    if scanner.scan(path.as_bytes()).is_none() {
        line["path"] = path.into();
    }
    line["decision"] = decision.into();
    line["status"] = response.status().as_u16().into();
    line["reason"] = reason.map_or(serde_json::Value::Null, Into::into);
    line["duration_ms"] = (started.elapsed().as_millis() as u64).into();
    log(line);
    Ok(response)
}

type Refused = (StatusCode, String);

async fn forward(
    service: &Service,
    scanner: &Scanner,
    req: Request<Incoming>,
) -> Result<Response<Body>, Refused> {
    let p = &service.planned;
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    if !service::path_allowed(&p.paths, &method, &path) {
        return Err((
            StatusCode::FORBIDDEN,
            format!("{method} {path} is not among this service's paths"),
        ));
    }
    let (mut parts, body) = req.into_parts();
    let body = crate::egress::read_body(body).await?;
    // Whatever the agent sent under an injected header's name is dropped, not forwarded.
    for (name, _) in &service.inject {
        parts.headers.remove(name);
    }
    strip_hop_by_hop(&mut parts.headers);
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_string();
    let mut head: Vec<&[u8]> = vec![target.as_bytes()];
    for (name, value) in &parts.headers {
        head.push(name.as_str().as_bytes());
        head.push(value.as_bytes());
    }
    let in_head = scanner
        .scan_pieces(&head)
        .map(|(found, _)| ("request", found));
    let in_body = || scanner.scan(&body).map(|found| ("body", found));
    if let Some((place, found)) = in_head.or_else(in_body) {
        return Err((
            StatusCode::FORBIDDEN,
            format!(
                "the {place} carries {found}; the bundle adds this service's credentials itself"
            ),
        ));
    }
    let up = &service.upstream;
    parts.uri = Uri::try_from(format!("{}{target}", up.base)).map_err(|_| {
        (
            StatusCode::BAD_REQUEST,
            "unreadable request target".to_string(),
        )
    })?;
    parts.version = hyper::Version::HTTP_11;
    let authority = if up.port == if up.tls { 443 } else { 80 } {
        host_text(&up.host)
    } else {
        format!("{}:{}", host_text(&up.host), up.port)
    };
    if let Ok(v) = HeaderValue::from_str(&authority) {
        parts.headers.insert(HOST, v);
    }
    for (name, value) in &service.inject {
        parts.headers.insert(name.clone(), value.clone());
    }
    let request = Request::from_parts(parts, Full::new(body).map_err(|n| match n {}).boxed());
    let mut sender = upstream_sender(service).await?;
    let resp = sender.send_request(request).await.map_err(|e| {
        (
            StatusCode::BAD_GATEWAY,
            format!("upstream {} failed: {e}", p.upstream),
        )
    })?;
    // The connection serves the next request once this response's body is done.
    if let Ok(mut idle) = service.idle.lock() {
        idle.push(sender);
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, body.boxed()))
}

/// A ready upstream connection: an idle one, or a new one.
async fn upstream_sender(service: &Service) -> Result<SendRequest<Body>, Refused> {
    loop {
        let kept = service.idle.lock().ok().and_then(|mut idle| idle.pop());
        let Some(mut sender) = kept else { break };
        if sender.ready().await.is_ok() {
            return Ok(sender);
        }
    }
    let up = &service.upstream;
    let bad = |why: String| {
        (
            StatusCode::BAD_GATEWAY,
            format!("cannot reach upstream {}: {why}", service.planned.upstream),
        )
    };
    let connect = TcpStream::connect((up.host.as_str(), up.port));
    let tcp = tokio::time::timeout(std::time::Duration::from_secs(10), connect)
        .await
        .map_err(|_| bad("no connection within 10 s".into()))?
        .map_err(|e| bad(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let sender = match &service.tls {
        Some(connector) => {
            let name = ServerName::try_from(up.host.clone())
                .map_err(|e| bad(format!("{} is not a TLS server name: {e}", up.host)))?;
            let tls = connector.connect(name, tcp).await.map_err(|e| {
                bad(format!(
                    "TLS handshake failed: {e}{}",
                    if service.planned.ca_file.is_some() {
                        " (the certificate must chain to the service's ca_file)"
                    } else {
                        " (for a private CA, set the service's ca_file)"
                    }
                ))
            })?;
            handshake(TokioIo::new(tls)).await
        }
        None => handshake(TokioIo::new(tcp)).await,
    };
    sender.map_err(|e| bad(format!("HTTP handshake failed: {e}")))
}

async fn handshake<T>(io: T) -> Result<SendRequest<Body>, hyper::Error>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn host_text(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}
