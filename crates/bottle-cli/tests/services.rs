//! Service endpoints on the real Docker and Podman: a bottle file declares a service whose
//! upstream is a TLS server this test runs on the bottle's gateway with its own CA (mounted
//! through `ca_file`). Playing the agent from the host, a request to the service's published
//! URL reaches the upstream with the injected credential in place of the agent's; the secret
//! is in no output of `up`, `env`, `ps` or `logs`; a request carrying it is refused before it
//! leaves.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Engine, DOCKER, PODMAN};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

const KEY: &str = "BT_SERVICE_TEST_KEY";

#[test]
fn docker_service_endpoints() {
    services(DOCKER, "10.243.1.0/24");
}

#[test]
fn podman_service_endpoints() {
    services(PODMAN, "10.243.2.0/24");
}

/// A CA and a certificate it signed for `ip`.
struct Pki {
    ca_pem: String,
    config: Arc<rustls::ServerConfig>,
}

fn pki(ip: Ipv4Addr) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![ip.to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let key: PrivateKeyDer<'static> = PrivatePkcs8KeyDer::from(key.serialize_der()).into();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        config: Arc::new(config),
    }
}

/// A TLS upstream on `addr` that records each request head and answers `200 ok`.
struct Upstream {
    heads: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    fn start(addr: SocketAddr, config: Arc<rustls::ServerConfig>) -> Upstream {
        let listener = TcpListener::bind(addr).unwrap();
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let recorded = heads.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (config, recorded) = (config.clone(), recorded.clone());
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let conn = rustls::ServerConnection::new(config).unwrap();
                    let mut tls = rustls::StreamOwned::new(conn, stream);
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match tls.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    recorded
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&head).to_ascii_lowercase());
                    let _ = tls.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    );
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        Upstream { heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// A plain-HTTP request from the host (the agent's side) to `base` + `path`; the whole answer.
fn get(base: &str, path: &str, extra: &str) -> String {
    let hostport = base.trim_start_matches("http://").trim_end_matches('/');
    send(
        hostport,
        &format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\n{extra}Connection: close\r\n\r\n"),
    )
}

/// Sends `request` to `hostport` and reads the whole answer.
fn send(hostport: &str, request: &str) -> String {
    let mut s = TcpStream::connect(hostport).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn services(engine: Engine, subnet: &str) {
    if !engine.ready() {
        return;
    }
    let prefix = format!("bt-svc-{}", engine.name);
    let prefix = prefix.as_str();
    let _cleanup = engine.clean_slate(prefix);
    let net: ipnet::Ipv4Net = subnet.parse().unwrap();
    let gateway = Ipv4Addr::from(u32::from(net.network()) + 1);
    // The upstream listens on the gateway once the bottle's network (and so the gateway's
    // address) exists; its port is picked now, its certificate made for the gateway now.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pki = pki(gateway);
    let dir = std::env::temp_dir().join(format!("bt-svc-{}-{}", engine.name, std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let file = dir.join("bottle.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[[services]]
name = "api"
upstream = "https://{gateway}:{port}/base"
agent_env = "API_BASE_URL"
inject = [{{ header = "x-api-key", secret = "{KEY}" }}]
ca_file = "{}"
"#,
            ca_file.display()
        ),
    )
    .unwrap();
    let canary = format!("svc-canary-{}-{}-9d2e", engine.name, std::process::id());
    let env = [(KEY, canary.as_str())];
    let file_arg = file.to_string_lossy().into_owned();
    // The egress proxy may reach the upstream too: the secret must not leave that way either.
    let allow = format!("{gateway}:{port}");
    let up = engine
        .run_env(
            prefix,
            &[
                "up",
                "svc",
                "-f",
                &file_arg,
                "--output",
                "json",
                "--subnet-pool",
                subnet,
                "--loopback-pool",
                engine.loopback_pool,
                "--allow",
                &allow,
            ],
            &env,
        )
        .ok();
    let report = up.json();
    let base = report["env"]["API_BASE_URL"]
        .as_str()
        .unwrap_or_else(|| panic!("no API_BASE_URL in {report}"))
        .to_string();
    let upstream = Upstream::start(SocketAddr::from((gateway, port)), pki.config.clone());
    eprintln!(
        "{}: service at {base}, upstream {gateway}:{port}",
        engine.name
    );

    // The agent's request arrives with the bundle's credential, not the agent's.
    let answer = get(&base, "/v1/models?x=1", "X-Api-Key: the-agents-guess\r\n");
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{}: {answer}",
        engine.name
    );
    let heads = upstream.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        heads[0].starts_with("get /base/v1/models?x=1 http/1.1\r\n"),
        "{}",
        heads[0]
    );
    assert!(
        heads[0].contains(&format!("x-api-key: {}\r\n", canary.to_ascii_lowercase())),
        "{}",
        heads[0]
    );
    assert!(!heads[0].contains("the-agents-guess"), "{}", heads[0]);

    // A request that carries the secret is refused; the upstream sees nothing more.
    let smuggled = get(&base, &format!("/v1/p?k={canary}"), "");
    assert!(
        smuggled.starts_with("HTTP/1.1 403"),
        "{}: {smuggled}",
        engine.name
    );
    assert_eq!(
        upstream.heads().len(),
        1,
        "the smuggling request reached the upstream"
    );

    // Nor through the egress proxy to an allowed host: refused before any connection.
    let proxy = report["env"]["HTTP_PROXY"].as_str().expect("HTTP_PROXY");
    let through = send(
        proxy.trim_start_matches("http://").trim_end_matches('/'),
        &format!(
            "GET http://{gateway}:{port}/upload?k={canary} HTTP/1.1\r\nHost: {gateway}:{port}\r\n\
             Connection: close\r\n\r\n"
        ),
    );
    assert!(
        through.starts_with("HTTP/1.1 403"),
        "{}: {through}",
        engine.name
    );
    assert!(through.contains(KEY), "{through}");
    assert_eq!(
        upstream.heads().len(),
        1,
        "the proxy let the secret through"
    );

    // The secret is in no output.
    let outputs = [
        up.stdout.clone(),
        up.stderr.clone(),
        engine
            .run(prefix, &["env", "svc", "--output", "json"])
            .ok()
            .stdout,
        engine.run(prefix, &["ps", "--output", "json"]).ok().stdout,
        engine.run(prefix, &["logs", "svc"]).ok().stdout,
    ];
    for out in &outputs {
        assert!(
            !out.contains(&canary),
            "{}: an output holds the secret: {out}",
            engine.name
        );
    }
    assert!(outputs[2].contains("API_BASE_URL"), "env: {}", outputs[2]);
    engine.run(prefix, &["--quiet", "down", "svc"]).ok();
    let _ = std::fs::remove_dir_all(&dir);
}
