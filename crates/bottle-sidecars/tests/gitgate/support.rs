//! The git gate's test world: upstream repositories served by `git http-backend` (CGI) behind
//! a small HTTP server on loopback that checks a token with basic auth, the gate binary run
//! on the host against them, and the host's `git` as the agent.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// The git the gate runs (Debian's, as in the image) and the upstream's CGI.
pub const GATE_GIT: &str = "/usr/bin/git";
/// The upstream's token: the gate holds it, the agent never sees it.
pub const TOKEN: &str = "gate-token-Q7v2Lp9Xw4Zk";
/// A secret of the bottle that no push may carry.
pub const CANARY: &str = "canary-sk-8Fj3Kq2Lm9Zx";
pub const CANARY_KEY: &str = "BOTTLE_TEST_CANARY";
pub const TOKEN_KEY: &str = "APP_GIT_TOKEN";

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A directory removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "bottle-gitgate-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs git (`bin`) in `dir` with a clean, fixed identity; panics on failure.
pub fn git_in(bin: &str, dir: &Path, args: &[&str]) -> String {
    let out = git_out(bin, dir, args);
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn git_out(bin: &str, dir: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .current_dir(dir)
        .args(args)
        .env_remove("GIT_DIR")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Agent")
        .env("GIT_AUTHOR_EMAIL", "agent@example.invalid")
        .env("GIT_COMMITTER_NAME", "Agent")
        .env("GIT_COMMITTER_EMAIL", "agent@example.invalid")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}; the git gate tests need git"))
}

/// The upstream: bare repositories under `root`, served over HTTP on loopback.
pub struct Upstream {
    pub addr: SocketAddr,
    pub root: TempDir,
    /// Each request's method, path and query.
    pub requests: Arc<Mutex<Vec<String>>>,
    _thread: std::thread::JoinHandle<()>,
}

impl Upstream {
    /// Serves `root` with `git http-backend`; every request must carry `token` (basic auth,
    /// the password) when it is set.
    pub fn start(token: Option<&'static str>) -> Upstream {
        Upstream::start_with(token, None)
    }

    /// [`Upstream::start`], over TLS with `tls` when given.
    pub fn start_with(
        token: Option<&'static str>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Upstream {
        let root = TempDir::new("upstream");
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let (dir, reqs) = (root.0.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let (dir, reqs, tls) = (dir.clone(), reqs.clone(), tls.clone());
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            handle(req, dir.clone(), token, reqs.clone())
                        });
                        let http = hyper::server::conn::http1::Builder::new();
                        match tls {
                            Some(config) => {
                                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                                if let Ok(stream) = acceptor.accept(tcp).await {
                                    let _ =
                                        http.serve_connection(TokioIo::new(stream), service).await;
                                }
                            }
                            None => {
                                let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                            }
                        }
                    });
                }
            })
        });
        Upstream {
            addr,
            root,
            requests,
            _thread: thread,
        }
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}.git", self.addr)
    }

    pub fn https_url(&self, name: &str) -> String {
        format!("https://{}/{name}.git", self.addr)
    }

    pub fn repo(&self, name: &str) -> PathBuf {
        self.root.0.join(format!("{name}.git"))
    }

    /// Makes repository `name` with `commits` commits on `main` (its default branch).
    pub fn create(&self, name: &str, commits: usize) {
        let bare = self.repo(name);
        git_in(
            GATE_GIT,
            &self.root.0,
            &["init", "--bare", "-q", "-b", "main", bare.to_str().unwrap()],
        );
        git_in(GATE_GIT, &bare, &["config", "http.receivepack", "true"]);
        let work = TempDir::new("seed");
        git_in(GATE_GIT, &work.0, &["init", "-q", "-b", "main"]);
        for i in 0..commits {
            std::fs::write(work.0.join("README"), format!("line {i}\n")).unwrap();
            git_in(GATE_GIT, &work.0, &["add", "README"]);
            git_in(
                GATE_GIT,
                &work.0,
                &["commit", "-q", "-m", &format!("commit {i}")],
            );
        }
        git_in(
            GATE_GIT,
            &work.0,
            &["push", "-q", bare.to_str().unwrap(), "main"],
        );
    }

    /// The repository's refs and their ids.
    pub fn refs(&self, name: &str) -> BTreeMap<String, String> {
        git_in(
            GATE_GIT,
            &self.repo(name),
            &["for-each-ref", "--format=%(refname) %(objectname)"],
        )
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(r, id)| (r.to_string(), id.to_string()))
        .collect()
    }

    /// How many requests so far asked for the receive-pack service (a push reaching it).
    pub fn pushes_seen(&self) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.contains("git-receive-pack") && r.starts_with("POST"))
            .count()
    }
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    root: PathBuf,
    token: Option<&'static str>,
    requests: Arc<Mutex<Vec<String>>>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    requests
        .lock()
        .unwrap()
        .push(format!("{method} {path}?{query}"));
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if let Some(token) = token {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"))
        );
        if header("authorization").as_deref() != Some(expected.as_str()) {
            let mut resp = Response::new(Full::new(Bytes::from("credential required\n")));
            *resp.status_mut() = StatusCode::UNAUTHORIZED;
            resp.headers_mut()
                .insert("www-authenticate", "Basic realm=\"git\"".parse().unwrap());
            return Ok(resp);
        }
    }
    let content_type = header("content-type").unwrap_or_default();
    let encoding = header("content-encoding").unwrap_or_default();
    let protocol = header("git-protocol").unwrap_or_default();
    let body = req.into_body().collect().await?.to_bytes();
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(GATE_GIT)
            .arg("http-backend")
            .env_clear()
            .env("GIT_PROJECT_ROOT", &root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", &root)
            .env("REQUEST_METHOD", &method)
            .env("PATH_INFO", &path)
            .env("QUERY_STRING", &query)
            .env("CONTENT_TYPE", &content_type)
            .env("CONTENT_LENGTH", body.len().to_string())
            .env("HTTP_CONTENT_ENCODING", &encoding)
            .env("GIT_PROTOCOL", &protocol)
            .env("REMOTE_USER", "gate")
            .env("REMOTE_ADDR", "127.0.0.1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("git http-backend runs");
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
        let mut out = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
        let _ = child.wait();
        let _ = writer.join();
        out
    })
    .await
    .unwrap();
    // CGI: headers, a blank line, the body.
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| {
            out.windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, i + 2))
        })
        .unwrap_or((out.len(), out.len()));
    let head = String::from_utf8_lossy(&out[..split.0]).into_owned();
    let mut resp = Response::new(Full::new(Bytes::copy_from_slice(&out[split.1..])));
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("status") {
            let code = v
                .split(' ')
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(500);
            *resp.status_mut() = StatusCode::from_u16(code).unwrap();
        } else if let (Ok(k), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(k.trim().as_bytes()),
            v.parse(),
        ) {
            resp.headers_mut().append(k, v);
        }
    }
    Ok(resp)
}

/// The gate binary, run on the host.
pub struct Gate {
    pub port: u16,
    child: Child,
    /// The gate's directory (mirrors), removed with the gate.
    _dir: TempDir,
    pub stdout: Arc<Mutex<String>>,
    pub stderr: Arc<Mutex<String>>,
}

impl Gate {
    /// Starts the gate for `upstreams` (JSON) with extra `env`; waits until it listens.
    pub fn start(upstreams: &serde_json::Value, env: &[(&str, &str)]) -> Gate {
        let dir = TempDir::new("gate");
        let port = StdListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bottle-sidecars"));
        cmd.args(["daemon", "git-gate"])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("BOTTLE_GIT_GATE_PORT", port.to_string())
            .env("BOTTLE_GIT_UPSTREAMS", upstreams.to_string())
            .env("BOTTLE_GIT_GATE_DIR", &dir.0)
            .env("BOTTLE_GIT_GATE_GIT", GATE_GIT)
            .env("BOTTLE_SECRET_KEYS", format!("{CANARY_KEY},{TOKEN_KEY}"))
            .env(CANARY_KEY, CANARY)
            .env(TOKEN_KEY, TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the gate binary runs");
        let stdout: Arc<Mutex<String>> = Arc::default();
        let stderr: Arc<Mutex<String>> = Arc::default();
        for (pipe, sink) in [
            (
                Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
                stdout.clone(),
            ),
            (Box::new(child.stderr.take().unwrap()), stderr.clone()),
        ] {
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let mut s = sink.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while StdStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                panic!("the gate exited ({status}): {}", stderr.lock().unwrap());
            }
            assert!(
                Instant::now() < deadline,
                "the gate did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Gate {
            port,
            child,
            _dir: dir,
            stdout,
            stderr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("git://127.0.0.1:{}{path}", self.port)
    }

    /// The audit lines so far, parsed (waits briefly for `at_least` lines of `event`).
    pub fn audit(&self, event: &str, at_least: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lines: Vec<serde_json::Value> = self
                .stdout
                .lock()
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
                .collect();
            let n = lines.iter().filter(|l| l["event"] == event).count();
            if n >= at_least || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The agent: the host's git in a working directory of its own.
pub struct Agent {
    pub dir: TempDir,
    /// Everything git printed for the agent, to check that no secret reached it.
    pub seen: Arc<Mutex<String>>,
}

impl Agent {
    pub fn new(seen: Arc<Mutex<String>>) -> Agent {
        Agent {
            dir: TempDir::new("agent"),
            seen,
        }
    }

    /// The clone's directory.
    pub fn work(&self) -> PathBuf {
        self.dir.0.join("work")
    }

    /// Runs the agent's git (`git` from PATH) in `dir`; the output, success or not.
    pub fn git(&self, dir: &Path, args: &[&str]) -> Output {
        let out = git_out("git", dir, args);
        let mut seen = self.seen.lock().unwrap();
        seen.push_str(&String::from_utf8_lossy(&out.stdout));
        seen.push_str(&String::from_utf8_lossy(&out.stderr));
        out
    }

    /// Like [`Agent::git`], panicking on failure.
    pub fn ok(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.git(dir, args);
        assert!(
            out.status.success(),
            "agent: git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Clones `url` into [`Agent::work`].
    pub fn clone_from(&self, url: &str) {
        let work = self.work();
        self.ok(&self.dir.0, &["clone", "-q", url, work.to_str().unwrap()]);
    }

    /// Commits `files` (path, content) in the clone.
    pub fn commit(&self, files: &[(&str, &[u8])], message: &str) -> String {
        let work = self.work();
        for (path, content) in files {
            let p = work.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
            self.ok(&work, &["add", path]);
        }
        self.ok(&work, &["commit", "-q", "--allow-empty", "-m", message]);
        self.ok(&work, &["rev-parse", "HEAD"]).trim().to_string()
    }
}

impl Agent {
    /// One commit in a repository outside [`Agent::work`].
    pub fn commit_in(&self, dir: &Path) {
        std::fs::write(dir.join("f"), b"x\n").unwrap();
        self.ok(dir, &["add", "f"]);
        self.ok(dir, &["commit", "-q", "-m", "x"]);
    }
}

/// A CA (its PEM) and a TLS server configuration for 127.0.0.1 signed by it.
pub fn tls_for_loopback() -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::from(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    (ca.pem(), Arc::new(config))
}
