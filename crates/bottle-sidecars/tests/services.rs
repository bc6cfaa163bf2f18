//! A service endpoint in-process, in front of a TLS upstream this test runs on loopback with
//! its own CA: the upstream gets the injected credential and never the agent's, responses
//! stream through as they are sent, a wrong CA is a clear 502, and a request that carries the
//! secret is refused before anything reaches the upstream.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bottle_core::service::{Inject, PlannedService};
use bottle_sidecars::leak::Scanner;
use bottle_sidecars::services::{self, Service};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio::time::timeout;

const CANARY: &str = "sk-canary-4Rt7Zq9Lw2Xp";
const IO: Duration = Duration::from_secs(10);

/// A CA, and a server certificate for 127.0.0.1 signed by it.
struct Pki {
    ca_pem: String,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert: cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    }
}

/// The TLS upstream: records each request head; `/sse` sends one event, then the second
/// only when `release` is notified.
struct Upstream {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    release: Arc<Notify>,
}

async fn upstream(pki: &Pki) -> Upstream {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.cert.clone()], pki.key.clone_key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads: Arc<Mutex<Vec<String>>> = Arc::default();
    let release = Arc::new(Notify::new());
    let (h, r) = (heads.clone(), release.clone());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, h, r) = (acceptor.clone(), h.clone(), r.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (h, r) = (h.clone(), r.clone());
                        async move {
                            let mut head = format!("{} {}\n", req.method(), req.uri());
                            for (k, v) in req.headers() {
                                head.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
                            }
                            let path = req.uri().path().to_string();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            head.push_str(&String::from_utf8_lossy(&body));
                            h.lock().unwrap().push(head);
                            if path.ends_with("/sse") {
                                let (tx, rx) = mpsc::channel::<Bytes>(4);
                                tokio::spawn(async move {
                                    let _ = tx.send(Bytes::from("data: one\n\n")).await;
                                    r.notified().await;
                                    let _ = tx.send(Bytes::from("data: two\n\n")).await;
                                });
                                let mut resp = Response::new(ChanBody(rx).boxed());
                                resp.headers_mut()
                                    .insert("content-type", "text/event-stream".parse().unwrap());
                                Ok::<_, hyper::Error>(resp)
                            } else {
                                Ok(Response::new(
                                    Full::new(Bytes::from("ok")).map_err(|n| match n {}).boxed(),
                                ))
                            }
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Upstream {
        addr,
        heads,
        release,
    }
}

/// A response body fed by a channel: each message is a frame, sent when it arrives.
struct ChanBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChanBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        self.0.poll_recv(cx).map(|m| m.map(|b| Ok(Frame::data(b))))
    }
}

type Lines = Arc<Mutex<Vec<serde_json::Value>>>;

/// The service under test in front of `up`, with `ca_pem` as its CA; returns its address.
async fn service(up: &Upstream, ca_pem: &str) -> (SocketAddr, Lines) {
    let dir = std::env::temp_dir().join(format!("bottle-services-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join(format!("ca-{}.pem", ca_pem.len() ^ up.addr.port() as usize));
    std::fs::write(&ca_file, ca_pem).unwrap();
    let planned = PlannedService {
        name: "api".into(),
        port: 0,
        upstream: format!("https://{}/base", up.addr),
        inject: vec![Inject {
            header: "x-api-key".into(),
            secret: "API_KEY".into(),
            format: None,
        }],
        paths: vec![],
        ca_file: Some(ca_file.to_string_lossy().into_owned()),
        insecure_http: false,
    };
    let svc = Service::new(planned, &|k| (k == "API_KEY").then(|| CANARY.to_string())).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let lines: Lines = Arc::default();
    let sink = lines.clone();
    tokio::spawn(services::serve(
        listener,
        Arc::new(svc),
        Arc::new(Scanner::new([("API_KEY", CANARY)])),
        Arc::new(move |v| sink.lock().unwrap().push(v)),
    ));
    (addr, lines)
}

/// Sends a raw request and reads the whole response (the service closes nothing, so the
/// request asks for Connection: close).
async fn exchange(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    timeout(IO, s.read_to_end(&mut out))
        .await
        .expect("answer in time")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn the_upstream_gets_the_injected_credential_and_never_the_agents() {
    let pki = pki();
    let up = upstream(&pki).await;
    let (addr, lines) = service(&up, &pki.ca_pem).await;
    let resp = exchange(
        addr,
        "POST /v1/messages?x=1 HTTP/1.1\r\nHost: whatever\r\nX-Api-Key: the-agents-own-guess\r\n\
         Content-Length: 2\r\nConnection: close\r\n\r\nhi",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(!resp.contains(CANARY));
    let heads = up.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let head = &heads[0];
    assert!(head.starts_with("POST /base/v1/messages?x=1\n"), "{head}");
    assert!(head.contains(&format!("x-api-key: {CANARY}\n")), "{head}");
    assert!(!head.contains("the-agents-own-guess"), "{head}");
    assert_eq!(head.matches("x-api-key").count(), 1, "{head}");
    assert!(head.contains(&format!("host: {}\n", up.addr)), "{head}");
    assert!(head.ends_with("hi"), "{head}");
    let logged = serde_json::to_string(&*lines.lock().unwrap()).unwrap();
    assert!(!logged.contains(CANARY), "{logged}");
    assert!(logged.contains("\"status\":200"), "{logged}");
}

#[tokio::test]
async fn server_sent_events_arrive_as_they_are_sent() {
    let pki = pki();
    let up = upstream(&pki).await;
    let (addr, _) = service(&up, &pki.ca_pem).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The first event reaches the agent while the upstream still holds the second.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("data: one") {
        let n = timeout(IO, s.read(&mut buf))
            .await
            .expect("the first event, before the second is sent")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(!String::from_utf8_lossy(&got).contains("data: two"));
    up.release.notify_one();
    while !String::from_utf8_lossy(&got).contains("data: two") {
        let n = timeout(IO, s.read(&mut buf))
            .await
            .expect("the second event")
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn a_certificate_of_another_ca_is_a_clear_502() {
    let pki = pki();
    let other = pki_ca_only();
    let up = upstream(&pki).await;
    let (addr, _) = service(&up, &other).await;
    let resp = exchange(
        addr,
        "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 502"), "{resp}");
    assert!(resp.contains("TLS handshake failed"), "{resp}");
    assert!(resp.contains("ca_file"), "{resp}");
    assert!(up.heads.lock().unwrap().is_empty());
}

fn pki_ca_only() -> String {
    pki().ca_pem
}

#[tokio::test]
async fn a_request_carrying_the_secret_is_refused_before_it_leaves() {
    let pki = pki();
    let up = upstream(&pki).await;
    let (addr, lines) = service(&up, &pki.ca_pem).await;
    let hex: String = CANARY.bytes().map(|b| format!("{b:02x}")).collect();
    let url: String = CANARY.bytes().map(|b| format!("%{b:02X}")).collect();
    let mut near = CANARY.to_string();
    near.replace_range(12..13, "Q");
    let requests = |value: &str| {
        vec![
            format!("GET /p/{value} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            format!("GET /q?k={value} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            format!("GET /h HTTP/1.1\r\nHost: x\r\nX-Note: {value}\r\nConnection: close\r\n\r\n"),
            format!(
                "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{value}",
                value.len()
            ),
        ]
    };
    for value in [CANARY, hex.as_str(), url.as_str()] {
        for request in requests(value) {
            let resp = exchange(addr, &request).await;
            assert!(resp.starts_with("HTTP/1.1 403"), "{request:?}: {resp}");
            assert!(resp.contains("API_KEY"), "{resp}");
        }
    }
    assert!(
        up.heads.lock().unwrap().is_empty(),
        "the upstream was reached"
    );
    for request in requests(&near) {
        let resp = exchange(addr, &request).await;
        assert!(
            resp.starts_with("HTTP/1.1 200"),
            "near miss {request:?}: {resp}"
        );
    }
    let logged = serde_json::to_string(&*lines.lock().unwrap()).unwrap();
    assert!(
        !logged.contains(CANARY) && !logged.contains(&hex),
        "{logged}"
    );
}
