//! Makes a Docker Engine reachable: uses one that answers, else installs Debian's `docker.io`
//! (as root) and starts `dockerd` in the background with its log in `target/engines/`.
//!
//! The engine also listens with TLS on loopback ([`TLS_ADDR`], client certificates required),
//! for the tests of `tcp://` contexts: xtask makes a CA, a server certificate for 127.0.0.1 and
//! a client certificate with `openssl` in [`TLS_DIR`], and names them in `daemon.json`, so every
//! start of a plain `dockerd` (this module's, or a test's that restarts the engine) has the
//! listener. A running `dockerd` without it is restarted once.
//!
//! Whether an engine answers is checked with a raw `GET /_ping` over the socket (or TCP), so
//! this works before any Docker client or `curl` is installed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{root, run};

/// The socket `dockerd` listens on by default, and that clients use without `DOCKER_HOST`.
const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// Where a running `dockerd` records its pid.
const PID_FILE: &str = "/var/run/docker.pid";
/// How long a freshly started `dockerd` gets to answer; it takes a few seconds here.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The engine's configuration file, read at every start of `dockerd`.
const DAEMON_JSON: &str = "/etc/docker/daemon.json";
/// Where the TLS listener's CA, server and client certificates live (the tests read the CA
/// and the client's pair from here).
pub const TLS_DIR: &str = "/etc/bottle-engines/docker-tls";
/// The TLS listener: loopback only, so nothing beyond this host can even try it.
pub const TLS_ADDR: &str = "127.0.0.1:2376";

/// Where the engine is expected to answer.
enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// Uses a Docker Engine that answers, or installs and starts one.
pub fn ensure() -> Result<(), String> {
    if let Some(host) = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()) {
        // Someone chose an engine: starting a local one would not make that one answer.
        let endpoint = parse_host(&host)?;
        return if ping(&endpoint) {
            eprintln!("docker: engine answers at DOCKER_HOST={host}; nothing to do");
            Ok(())
        } else {
            Err(format!(
                "DOCKER_HOST={host} does not answer: start that engine, or unset DOCKER_HOST to use (and start) a local dockerd"
            ))
        };
    }
    let endpoint = Endpoint::Unix(DEFAULT_SOCKET.into());
    let tls = tls_listener()?;
    if ping(&endpoint) {
        if !tls || listens(TLS_ADDR) {
            eprintln!("docker: engine answers at {endpoint}; nothing to do");
            return Ok(());
        }
        return restart_for_tls(&endpoint);
    }
    if let Some(pid) = running_dockerd() {
        // Another run started it a moment ago, or it is shutting down: wait rather than start a
        // second daemon, which would fail on the pid file, and start one if it goes away.
        eprintln!("docker: dockerd (pid {pid}) is running but not answering yet; waiting");
        if wait_until_answering(&endpoint, &mut Watch::Pid(pid))? {
            eprintln!("docker: engine answers at {endpoint}");
            return Ok(());
        }
        eprintln!("docker: dockerd (pid {pid}) exited without answering; starting a new one");
    }
    if find_on_path("dockerd").is_none() {
        install()?;
        // The package's init script may have started the daemon already (where invoke-rc.d
        // lets it); a second dockerd would only fail on the pid file.
        if ping(&endpoint) {
            eprintln!("docker: installed docker.io; its engine answers at {endpoint}");
            return Ok(());
        }
        if let Some(pid) = running_dockerd() {
            eprintln!("docker: installed docker.io; waiting for dockerd (pid {pid}) to answer");
            if wait_until_answering(&endpoint, &mut Watch::Pid(pid))? {
                return Ok(());
            }
        }
    }
    start(&endpoint)
}

/// `unix:///path` or `tcp://host:port` (also `http://`).
fn parse_host(host: &str) -> Result<Endpoint, String> {
    if let Some(path) = host.strip_prefix("unix://") {
        Ok(Endpoint::Unix(path.into()))
    } else if let Some(addr) = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"))
    {
        Ok(Endpoint::Tcp(addr.trim_end_matches('/').to_string()))
    } else {
        Err(format!(
            "DOCKER_HOST={host} is neither unix:// nor tcp://: set it to one of those, or unset it"
        ))
    }
}

/// Whether the engine answers `GET /_ping` with 200 within a second.
fn ping(endpoint: &Endpoint) -> bool {
    const REQUEST: &[u8] = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n";
    let timeout = Some(Duration::from_secs(1));
    let response = match endpoint {
        Endpoint::Unix(path) => UnixStream::connect(path).and_then(|mut s| {
            s.set_read_timeout(timeout)?;
            s.set_write_timeout(timeout)?;
            s.write_all(REQUEST)?;
            let mut buf = String::new();
            s.read_to_string(&mut buf)?;
            Ok(buf)
        }),
        Endpoint::Tcp(addr) => TcpStream::connect(addr).and_then(|mut s| {
            s.set_read_timeout(timeout)?;
            s.set_write_timeout(timeout)?;
            s.write_all(REQUEST)?;
            let mut buf = String::new();
            s.read_to_string(&mut buf)?;
            Ok(buf)
        }),
    };
    response.is_ok_and(|r| {
        r.lines()
            .next()
            .is_some_and(|status| status.split_whitespace().nth(1) == Some("200"))
    })
}

/// The pid of a live `dockerd` according to its pid file.
fn running_dockerd() -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(PID_FILE)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "dockerd").then_some(pid)
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    // The real uid, from the kernel's own record: no libc call (xtask has no dependencies).
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|uids| uids.split_whitespace().next())
            == Some("0")
    })
}

/// Installs Debian's `docker.io` (dockerd, containerd, runc and a client).
fn install() -> Result<(), String> {
    if !Path::new("/etc/debian_version").exists() || !is_root() {
        return Err(
            "no Docker Engine answers at /var/run/docker.sock and dockerd is not installed: install Docker Engine and start it, or set DOCKER_HOST to one that runs (automatic install needs root on Debian)"
                .into(),
        );
    }
    eprintln!("docker: dockerd is not installed; installing Debian's docker.io");
    let install = || {
        run(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "docker.io"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null()))
    };
    // Package lists may be missing or stale on a fresh machine; refresh them only when the
    // install cannot go ahead without.
    if !has_package_lists() || install().is_err() {
        run(Command::new("apt-get").arg("update").stdin(Stdio::null()))?;
        install()?;
    }
    if find_on_path("dockerd").is_none() {
        return Err("docker.io was installed but dockerd is not on PATH nor in /usr/sbin".into());
    }
    Ok(())
}

fn has_package_lists() -> bool {
    std::fs::read_dir("/var/lib/apt/lists").is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with("_Packages"))
    })
}

/// Starts `dockerd` detached, its output in `target/engines/dockerd.log`, and waits until it
/// answers.
fn start(endpoint: &Endpoint) -> Result<(), String> {
    let dockerd = find_on_path("dockerd").ok_or("dockerd is not installed")?;
    let dir = root().join("target").join("engines");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let log_path = dir.join("dockerd.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("opening {}: {e}", log_path.display()))?;
    let err_log = log
        .try_clone()
        .map_err(|e| format!("opening {}: {e}", log_path.display()))?;
    eprintln!("$ {} > {} 2>&1 &", dockerd.display(), log_path.display());
    let child = Command::new(&dockerd)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        // Its own process group: a Ctrl-C in this terminal or the end of this process does not
        // reach the daemon, which must outlive xtask (the tests run after it).
        .process_group(0)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", dockerd.display()))?;
    wait_until_answering(endpoint, &mut Watch::Child(child, log_path))?;
    eprintln!("docker: started dockerd; engine answers at {endpoint}");
    Ok(())
}

/// The daemon a wait is about.
enum Watch {
    /// One that was running already.
    Pid(u32),
    /// The one this run started, and its log.
    Child(std::process::Child, PathBuf),
}

/// Polls until the engine answers (`Ok(true)`). A daemon that was running already and goes
/// away is `Ok(false)`, so the caller starts one; the one this run started exiting is an error
/// showing its log.
fn wait_until_answering(endpoint: &Endpoint, watch: &mut Watch) -> Result<bool, String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if ping(endpoint) {
            return Ok(true);
        }
        match watch {
            Watch::Pid(pid) => {
                if running_dockerd() != Some(*pid) {
                    return Ok(false);
                }
            }
            Watch::Child(child, log) => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "dockerd exited ({status}) before answering at {endpoint}; its log, {}, ends with:\n{}",
                        log.display(),
                        tail(log, 20)
                    ));
                }
            }
        }
        if Instant::now() >= deadline {
            let log = match watch {
                Watch::Child(_, log) => format!("; see {}:\n{}", log.display(), tail(log, 20)),
                Watch::Pid(pid) => format!(" (pid {pid}, started elsewhere)"),
            };
            return Err(format!(
                "dockerd did not answer at {endpoint} within {START_TIMEOUT:?}{log}"
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Makes the TLS material and names it in `daemon.json`; `Ok(false)` when a `daemon.json`
/// that xtask did not write is there (it is left alone, and the listener is not set up).
fn tls_listener() -> Result<bool, String> {
    if !is_root() {
        // Only root can configure (or restart) the engine; the tests of tcp:// contexts say
        // what is missing.
        return Ok(false);
    }
    make_certificates()?;
    let wanted = daemon_json();
    match std::fs::read_to_string(DAEMON_JSON) {
        Ok(found) if found == wanted => Ok(true),
        Ok(_) => {
            eprintln!(
                "docker: {DAEMON_JSON} exists and was not written by xtask: leaving it alone; the engine gets no TLS listener on {TLS_ADDR} (the tcp:// context tests need it: add the hosts and tls settings of xtask/src/engines/docker.rs to that file)"
            );
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all("/etc/docker")
                .map_err(|e| format!("creating /etc/docker: {e}"))?;
            std::fs::write(DAEMON_JSON, wanted)
                .map_err(|e| format!("writing {DAEMON_JSON}: {e}"))?;
            eprintln!("docker: wrote {DAEMON_JSON}: unix socket and TLS on {TLS_ADDR}");
            Ok(true)
        }
        Err(e) => Err(format!("reading {DAEMON_JSON}: {e}")),
    }
}

/// The engine's settings: its default unix socket (unchanged) plus TLS on loopback with client
/// certificates required. `hosts` here and `-H` on the command line exclude each other, so
/// `dockerd` is always started without `-H`.
fn daemon_json() -> String {
    format!(
        r#"{{
  "hosts": ["unix://{DEFAULT_SOCKET}", "tcp://{TLS_ADDR}"],
  "tls": true,
  "tlsverify": true,
  "tlscacert": "{TLS_DIR}/ca.pem",
  "tlscert": "{TLS_DIR}/server-cert.pem",
  "tlskey": "{TLS_DIR}/server-key.pem"
}}
"#
    )
}

/// A CA, a server certificate for 127.0.0.1 and `localhost`, and a client certificate, made
/// once with `openssl` (P-256 keys, ten years: they never leave this host).
fn make_certificates() -> Result<(), String> {
    let dir = Path::new(TLS_DIR);
    let done = [
        "ca.pem",
        "server-cert.pem",
        "server-key.pem",
        "cert.pem",
        "key.pem",
    ]
    .iter()
    .all(|f| dir.join(f).is_file());
    if done {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {TLS_DIR}: {e}"))?;
    let openssl = |args: &[&str]| {
        run(Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null()))
    };
    let key = |name: &str| {
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &format!("{TLS_DIR}/{name}"),
        ])
    };
    key("ca-key.pem")?;
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        &format!("{TLS_DIR}/ca-key.pem"),
        "-days",
        "3650",
        "-subj",
        "/CN=bottle test engines CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-out",
        &format!("{TLS_DIR}/ca.pem"),
    ])?;
    let sign = |key_file: &str, cert: &str, cn: &str, ext: &str| -> Result<(), String> {
        key(key_file)?;
        let csr = format!("{TLS_DIR}/{cert}.csr");
        let ext_file = format!("{TLS_DIR}/{cert}.ext");
        std::fs::write(&ext_file, ext).map_err(|e| format!("writing {ext_file}: {e}"))?;
        openssl(&[
            "req",
            "-new",
            "-key",
            &format!("{TLS_DIR}/{key_file}"),
            "-subj",
            &format!("/CN={cn}"),
            "-out",
            &csr,
        ])?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{TLS_DIR}/ca.pem"),
            "-CAkey",
            &format!("{TLS_DIR}/ca-key.pem"),
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            &ext_file,
            "-out",
            &format!("{TLS_DIR}/{cert}"),
        ])?;
        let _ = std::fs::remove_file(csr);
        let _ = std::fs::remove_file(ext_file);
        Ok(())
    };
    sign(
        "server-key.pem",
        "server-cert.pem",
        "127.0.0.1",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )?;
    // The client's pair under the names the docker CLI looks for in DOCKER_CERT_PATH.
    sign(
        "key.pem",
        "cert.pem",
        "bottle test client",
        "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
    )?;
    eprintln!("docker: made a CA, a server and a client certificate in {TLS_DIR}");
    Ok(())
}

/// Whether something accepts TCP connections at `addr` (the TLS listener cannot be pinged
/// without a TLS client; the tests check the handshake).
fn listens(addr: &str) -> bool {
    addr.parse::<std::net::SocketAddr>()
        .is_ok_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
}

/// Stops the running `dockerd`, which lacks the TLS listener of `daemon.json`, and starts it
/// again the way [`start`] does. Like any restart of Docker without live-restore, it stops the
/// running containers; it happens once per host, when the listener is first configured.
fn restart_for_tls(endpoint: &Endpoint) -> Result<(), String> {
    let Some(pid) = running_dockerd() else {
        return Err(format!(
            "the engine at {endpoint} has no TLS listener on {TLS_ADDR} and was not started by this host's dockerd pid file ({PID_FILE}): restart it with the settings of {DAEMON_JSON}"
        ));
    };
    eprintln!(
        "docker: dockerd (pid {pid}) runs without the TLS listener on {TLS_ADDR}; restarting it once (running containers stop, as on any restart)"
    );
    run(Command::new("kill").args(["-TERM", &pid.to_string()]))?;
    let deadline = Instant::now() + START_TIMEOUT;
    // The pid file goes before the process does: wait for the process itself.
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "dockerd")
    };
    while alive() {
        if Instant::now() >= deadline {
            return Err(format!(
                "dockerd (pid {pid}) did not stop within {START_TIMEOUT:?} after SIGTERM"
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    start(endpoint)?;
    if !listens(TLS_ADDR) {
        return Err(format!(
            "dockerd restarted but nothing listens on {TLS_ADDR}: see target/engines/dockerd.log"
        ));
    }
    Ok(())
}
