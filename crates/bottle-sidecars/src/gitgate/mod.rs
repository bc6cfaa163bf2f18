//! The git gate: the agent's only way to its git upstreams. It speaks the git protocol
//! (`git://`, v2 and v0) on its agent-facing port, one repository per declared upstream at
//! `/<name>.git`, holds the upstreams' credentials, and checks every push before forwarding it.
//!
//! Each upstream has a bare mirror in the gate's directory (on the bundle's `/tmp` tmpfs).
//! - Fetch and clone: the mirror is refreshed from the upstream (its refs asked for, fetched
//!   only when they differ), then `git upload-pack --strict` serves it with the agent's socket
//!   as its stdin and stdout.
//! - Push: the mirror is refreshed, then `git receive-pack` takes the push into quarantine and
//!   runs the pre-receive [`hook`], which checks it and forwards it to the upstream; the
//!   agent's push succeeds only when the upstream accepted it.
//!
//! Work on one mirror is serialized (a push holds its mirror until it ends; a fetch only while
//! refreshing). The gate is bounded: a cap on connections, a time limit on the first message,
//! an idle limit on the socket, a limit on a whole session (the git child is killed past it)
//! and on each exchange with the upstream. One audit line per fetch and push decision goes to
//! stdout ([`audit`]).
//!
//! The modules: [`pktline`] reads the first message and writes refusals, [`rules`] says which
//! refs a push may update, [`upstream`] talks to the upstream and keeps the mirror, [`hook`]
//! checks and forwards a push, [`audit`] writes the log.

pub mod audit;
pub mod hook;
pub mod pktline;
pub mod rules;
pub mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bottle_core::git::{PlannedGitUpstream, GIT_UPSTREAMS_ENV};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

use self::audit::{Event, Log};
use self::pktline::Service;
use self::upstream::{Git, Mirror, Upstream};
use crate::leak::Scanner;

/// The gate's working directory (mirrors, the hook link, git's empty home).
pub const DIR_ENV: &str = "BOTTLE_GIT_GATE_DIR";
/// The git binary the gate runs.
pub const GIT_ENV: &str = "BOTTLE_GIT_GATE_GIT";
/// The largest blob a push may bring, in bytes.
pub const MAX_BLOB_ENV: &str = "BOTTLE_GIT_GATE_MAX_BLOB_BYTES";
/// The largest push (its pack), in bytes.
pub const MAX_PUSH_ENV: &str = "BOTTLE_GIT_GATE_MAX_PUSH_BYTES";
/// The most connections served at once.
pub const MAX_CONNECTIONS_ENV: &str = "BOTTLE_GIT_GATE_MAX_CONNECTIONS";
/// The longest a fetch or push may take, in seconds.
pub const SESSION_TIMEOUT_ENV: &str = "BOTTLE_GIT_GATE_SESSION_TIMEOUT_SECS";

/// The defaults: the directory on the bundle's one writable mount, and Debian's git.
pub const DEFAULT_DIR: &str = "/tmp/git-gate";
pub const DEFAULT_GIT: &str = "/usr/bin/git";

/// The gate's limits.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    /// For the client's first message.
    pub header_timeout: Duration,
    /// The most a socket stays silent while git waits on it.
    pub idle_timeout: Duration,
    /// The most a whole fetch or push takes.
    pub session_timeout: Duration,
    /// The most one exchange with the upstream takes (asking its refs, a fetch).
    pub upstream_timeout: Duration,
    pub max_blob_bytes: u64,
    pub max_push_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 32,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            session_timeout: Duration::from_secs(1800),
            upstream_timeout: Duration::from_secs(600),
            max_blob_bytes: 10 * 1024 * 1024,
            max_push_bytes: 1024 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// The most a push may bring under a memory limit of `memory` bytes: a quarter of it, at
    /// least 8 MiB. A push is received into the bundle's tmpfs, whose pages count against the
    /// limit, before the hook checks it; receive-pack stops reading past this size, so an agent's
    /// oversized push is refused instead of pressing the bundle (the proxy included) into the
    /// OOM killer. The mirrors need the rest.
    pub fn fit_memory(mut self, memory: Option<u64>) -> Limits {
        if let Some(memory) = memory {
            self.max_push_bytes = self.max_push_bytes.min((memory / 4).max(8 << 20));
        }
        self
    }

    /// The defaults, fitted to the bundle's memory limit (see [`Limits::fit_memory`]), with the
    /// variables above applied; a bad value is an error naming it.
    pub fn from_env() -> Result<Limits, String> {
        let mut l = Limits::default().fit_memory(crate::selfcheck::memory_limit());
        let read = |var: &str, min: u64, max: u64| -> Result<Option<u64>, String> {
            match std::env::var(var) {
                Ok(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .map(Some)
                    .ok_or_else(|| format!("{var}={v:?} is not a number from {min} to {max}")),
                Err(_) => Ok(None),
            }
        };
        if let Some(n) = read(MAX_CONNECTIONS_ENV, 1, 4096)? {
            l.max_connections = n as usize;
        }
        if let Some(n) = read(SESSION_TIMEOUT_ENV, 1, 86_400)? {
            l.session_timeout = Duration::from_secs(n);
        }
        if let Some(n) = read(MAX_BLOB_ENV, 1, u64::MAX)? {
            l.max_blob_bytes = n;
        }
        if let Some(n) = read(MAX_PUSH_ENV, 1024, u64::MAX)? {
            l.max_push_bytes = n;
        }
        Ok(l)
    }
}

/// What the gate serves.
#[derive(Clone)]
pub struct Config {
    pub upstreams: Vec<Upstream>,
    pub dir: PathBuf,
    pub git: PathBuf,
    pub limits: Limits,
    /// The bundle's secrets (key, value), passed to the hook to scan for.
    pub secrets: Vec<(String, String)>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secrets' keys, never their values.
        f.debug_struct("Config")
            .field("upstreams", &self.upstreams)
            .field("dir", &self.dir)
            .field("git", &self.git)
            .field("limits", &self.limits)
            .field(
                "secrets",
                &self.secrets.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Config {
    /// From the bundle's environment: [`GIT_UPSTREAMS_ENV`], the tokens and secrets it names,
    /// and the variables above. Errors say which variable and what to do.
    pub fn from_env() -> Result<Config, String> {
        let json = std::env::var(GIT_UPSTREAMS_ENV).map_err(|_| {
            format!("{GIT_UPSTREAMS_ENV} is not set: the git gate has no upstream to serve")
        })?;
        let planned = PlannedGitUpstream::list_from_json(&json)
            .map_err(|e| format!("{GIT_UPSTREAMS_ENV} is not a list of git upstreams: {e}"))?;
        if planned.is_empty() {
            return Err(format!("{GIT_UPSTREAMS_ENV} lists no upstream"));
        }
        let mut upstreams: Vec<Upstream> = Vec::new();
        for p in planned {
            if upstreams.iter().any(|u| u.name() == p.name) {
                return Err(format!(
                    "{GIT_UPSTREAMS_ENV} names upstream {} twice; give each a distinct name",
                    p.name
                ));
            }
            upstreams.push(Upstream::new(p, |k| std::env::var(k).ok())?);
        }
        Ok(Config {
            upstreams,
            dir: std::env::var_os(DIR_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(|| DEFAULT_DIR.into()),
            git: std::env::var_os(GIT_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(|| DEFAULT_GIT.into()),
            limits: Limits::from_env()?,
            secrets: crate::leak::secrets_from_env(),
        })
    }
}

/// The running gate.
struct Gate {
    config: Config,
    git: Git,
    hooks: PathBuf,
    locks: HashMap<String, Arc<Mutex<()>>>,
    scanner: Scanner,
    log: Log,
    next_conn: AtomicU64,
    served: String,
}

/// Serves the gate on `listener`, logging to stdout, until dropped. Fails only at setup.
pub async fn serve(listener: TcpListener, config: Config) -> Result<(), String> {
    serve_with_log(listener, config, audit::stdout_log()).await
}

/// [`serve`] with the audit lines sent to `log`.
pub async fn serve_with_log(listener: TcpListener, config: Config, log: Log) -> Result<(), String> {
    let gate = Arc::new(setup(config, log)?);
    let slots = Arc::new(Semaphore::new(gate.config.limits.max_connections));
    loop {
        let (mut stream, client) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                note(&format!("accepting a connection failed: {e}; retrying"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let id = gate.next_conn.fetch_add(1, Ordering::Relaxed);
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(gate.clone().connection(stream, client, id, permit));
            }
            Err(_) => {
                let max = gate.config.limits.max_connections;
                let msg =
                    format!("the git gate is busy (all {max} of its connections are in use); try again shortly");
                let mut event = Event::new("request", id, client, "");
                event.decision = "denied";
                event.reason = Some(msg.clone());
                (gate.log)(event);
                tokio::spawn(async move {
                    // The request is read first: closing with it unread would reset the
                    // connection, and the client might never see the message.
                    let _ = tokio::time::timeout(
                        Duration::from_secs(2),
                        pktline::read_pkt(&mut stream),
                    )
                    .await;
                    refuse(&mut stream, &msg).await;
                });
            }
        }
    }
}

/// Makes the gate's directory: `mirrors/`, `hooks/pre-receive` (a link to this binary),
/// `home/` (git's, empty) and `decisions/` (the hook's answers).
fn setup(config: Config, log: Log) -> Result<Gate, String> {
    let dir = &config.dir;
    for sub in ["mirrors", "hooks", "home", "decisions"] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| {
            format!(
                "cannot make the git gate's directory {}: {e}; set {DIR_ENV} to a writable place",
                d.display()
            )
        })?;
    }
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find this binary for the pre-receive hook: {e}"))?;
    let hooks = dir.join("hooks");
    let link = hooks.join(hook::HOOK_NAME);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&exe, &link)
        .map_err(|e| format!("cannot link the pre-receive hook {}: {e}", link.display()))?;
    let mut secrets = config.secrets.clone();
    for u in &config.upstreams {
        if let (Some(k), Some(t)) = (&u.planned.token_key, u.token()) {
            secrets.push((k.clone(), t.to_string()));
        }
    }
    let scanner = Scanner::new(secrets);
    let locks = config
        .upstreams
        .iter()
        .map(|u| (u.name().to_string(), Arc::default()))
        .collect();
    let served = config
        .upstreams
        .iter()
        .map(|u| format!("{}.git", u.name()))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(Gate {
        git: Git {
            bin: config.git.clone(),
            home: dir.join("home"),
        },
        hooks,
        locks,
        scanner,
        log,
        next_conn: AtomicU64::new(1),
        served,
        config,
    })
}

impl Gate {
    fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.config.upstreams.iter().find(|u| u.name() == name)
    }

    fn log(&self, mut event: Event) {
        event.withhold(&self.scanner);
        (self.log)(event)
    }

    async fn connection(
        self: Arc<Self>,
        mut stream: TcpStream,
        client: SocketAddr,
        id: u64,
        _permit: OwnedSemaphorePermit,
    ) {
        let limits = &self.config.limits;
        let first = tokio::time::timeout(limits.header_timeout, pktline::read_pkt(&mut stream))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no request within {} s",
                    limits.header_timeout.as_secs()
                ))
            });
        let request = match first {
            Ok(None) => return,
            Ok(Some(data)) => pktline::parse_request(&data),
            Err(e) => Err(e),
        };
        let request = match request {
            Ok(r) => r,
            Err(msg) => {
                let mut event = Event::new("request", id, client, "");
                event.decision = "denied";
                event.reason = Some(msg.clone());
                self.log(event);
                refuse(&mut stream, &msg).await;
                return;
            }
        };
        let kind = match request.service {
            Service::UploadPack => "fetch",
            Service::ReceivePack => "push",
        };
        let name =
            match pktline::repo_name(&request.path, |n| self.upstream(n).is_some(), &self.served) {
                Ok(n) => n.to_string(),
                Err(msg) => {
                    let mut event = Event::new(kind, id, client, &request.path);
                    event.decision = "denied";
                    event.reason = Some(msg.clone());
                    self.log(event);
                    refuse(&mut stream, &msg).await;
                    return;
                }
            };
        let upstream = self.upstream(&name).expect("checked above").clone();
        let mut event = Event::new(kind, id, client, &name);
        let mirror = Mirror {
            path: self.config.dir.join("mirrors").join(format!("{name}.git")),
        };
        let lock = self.locks[&name].clone();
        let guard = lock.clone().lock_owned().await;
        let refreshed = match mirror
            .ensure(
                &self.git,
                &self.hooks,
                limits.max_push_bytes,
                limits.upstream_timeout,
            )
            .await
        {
            Ok(()) => {
                mirror
                    .refresh(&self.git, &upstream, limits.upstream_timeout)
                    .await
            }
            Err(e) => Err(e),
        };
        let refreshed = match refreshed {
            Ok(r) => r,
            Err(msg) => {
                // git's words about the upstream are relayed; an upstream could echo anything.
                let msg = match self.scanner.scan(msg.as_bytes()) {
                    Some(found) => format!(
                        "the gate could not refresh {name} from its upstream (the error is \
                         withheld: it carries {found})"
                    ),
                    None => msg,
                };
                event.decision = "failed";
                event.reason = Some(msg.clone());
                self.log(event);
                refuse(&mut stream, &msg).await;
                return;
            }
        };
        // A fetch serves what the mirror has now; later refreshes do not disturb it.
        let guard = match request.service {
            Service::UploadPack => {
                drop(guard);
                None
            }
            Service::ReceivePack => Some(guard),
        };
        let decision_file = self
            .config
            .dir
            .join("decisions")
            .join(format!("{}-{id}.json", std::process::id()));
        let _ = std::fs::remove_file(&decision_file);
        let mut cmd = self.git.command();
        match request.service {
            Service::UploadPack => {
                event.refs = refreshed.changes;
                cmd.args(["upload-pack", "--strict"])
                    .arg(format!("--timeout={}", limits.idle_timeout.as_secs()))
                    .arg(&mirror.path);
                if let Some(v @ 1..) = request.version {
                    cmd.env("GIT_PROTOCOL", format!("version={v}"));
                }
            }
            Service::ReceivePack => {
                let job = hook::Job {
                    upstream: upstream.planned.clone(),
                    git: self.git.clone(),
                    default_branch: refreshed.default_branch,
                    max_blob_bytes: limits.max_blob_bytes,
                    decision: decision_file.clone(),
                };
                cmd.arg("receive-pack").arg(&mirror.path).env(
                    hook::JOB_ENV,
                    serde_json::to_string(&job).unwrap_or_default(),
                );
                // The hook scans for the bundle's secrets and pushes with the token: both reach
                // it in the environment, as they reached the gate.
                let keys: Vec<&str> = self
                    .config
                    .secrets
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect();
                cmd.env(crate::leak::SECRET_KEYS_ENV, keys.join(","));
                for (k, v) in &self.config.secrets {
                    cmd.env(k, v);
                }
                if let (Some(k), Some(t)) = (&upstream.planned.token_key, upstream.token()) {
                    cmd.env(k, t);
                }
            }
        }
        let fetched = !event.refs.is_empty();
        let served = self.run_git(cmd, stream).await;
        match request.service {
            Service::UploadPack => {
                if let Err(e) = served {
                    event.decision = "failed";
                    event.reason = Some(e);
                }
            }
            Service::ReceivePack => {
                let decided = std::fs::read(&decision_file)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<hook::Decision>(&b).ok());
                let _ = std::fs::remove_file(&decision_file);
                match decided {
                    Some(d) => {
                        event.decision = match d.decision.as_str() {
                            "allowed" => "allowed",
                            "denied" => "denied",
                            _ => "failed",
                        };
                        event.reason = d.reason;
                        event.refs = d.refs;
                    }
                    // No hook ran: nothing was pushed, because the client sent no update, or
                    // because git refused what it sent before the checks (too large, malformed).
                    None => {
                        (event.decision, event.reason) = match served {
                            // receive-pack says nothing and exits 0 in both cases.
                            Ok(None) => ("allowed", Some(NO_UPDATE.into())),
                            Ok(Some(said)) => {
                                ("failed", Some(format!("git refused the push: {said}")))
                            }
                            Err(e) => ("failed", Some(e)),
                        };
                    }
                }
            }
        }
        self.log(event);
        // A push or a fetch that brought objects added a pack: tidy up before letting go of
        // the mirror (a fetch takes it again, once its client is served).
        match &guard {
            Some(_) => mirror.tidy(&self.git, limits.upstream_timeout).await,
            None if fetched => {
                let _held = lock.lock().await;
                mirror.tidy(&self.git, limits.upstream_timeout).await;
            }
            None => {}
        }
        drop(guard);
    }

    /// Runs the git child with the agent's socket as its stdin and stdout, bounded by the
    /// idle limit (on the socket) and the session limit (the child is killed past it). A git
    /// that succeeded may still have complained (receive-pack exits 0 after refusing a pack
    /// over `receive.maxInputSize`): its last line on stderr comes back with the success.
    async fn run_git(
        &self,
        mut cmd: std::process::Command,
        stream: TcpStream,
    ) -> Result<Option<String>, String> {
        let limits = &self.config.limits;
        let socket = stream
            .into_std()
            .and_then(|s| {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(limits.idle_timeout))?;
                s.set_write_timeout(Some(limits.idle_timeout))?;
                Ok(s)
            })
            .map_err(|e| format!("cannot hand the connection to git: {e}"))?;
        let fd = std::os::fd::OwnedFd::from(socket);
        let input = fd
            .try_clone()
            .map_err(|e| format!("cannot hand the connection to git: {e}"))?;
        cmd.stdin(Stdio::from(input))
            .stdout(Stdio::from(fd))
            .stderr(Stdio::piped());
        // Its own process group, so that past the session limit the hook and the git
        // processes it started go with it.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.git.bin.display()))?;
        // Our copies of the socket went with `cmd`: the agent's connection now ends with git.
        drop(cmd);
        // git's own complaints (not the hook's: receive-pack sends those to the agent) go to
        // our stderr as before, and the last one explains a failure in the audit line.
        let said = child.stderr.take().map(|stderr| {
            tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt;
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                let mut last = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    note(&line);
                    if !line.trim().is_empty() {
                        last = Some(line.chars().take(300).collect::<String>());
                    }
                }
                last
            })
        });
        let waited = tokio::time::timeout(limits.session_timeout, child.wait()).await;
        let last = match (&waited, said) {
            (Ok(Ok(_)), Some(task)) => task.await.ok().flatten(),
            _ => None,
        };
        match waited {
            Ok(Ok(status)) if status.success() => Ok(last),
            Ok(Ok(status)) => Err(match last {
                Some(line) => format!("git ended with {status}: {line}"),
                None => format!("git ended with {status}"),
            }),
            Ok(Err(e)) => Err(format!("cannot wait for git: {e}")),
            Err(_) => {
                if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let _ = child.kill().await;
                Err(format!(
                    "stopped after {} s (the session limit)",
                    limits.session_timeout.as_secs()
                ))
            }
        }
    }
}

/// The audit reason of a push in which no hook ran and git said nothing.
const NO_UPDATE: &str = "no ref was updated: the client sent no update, or git refused its pack \
    before the checks (over BOTTLE_GIT_GATE_MAX_PUSH_BYTES, or malformed)";

/// Sends the agent `msg` as an `ERR` packet (bounded in time) and ends the connection.
async fn refuse(stream: &mut TcpStream, msg: &str) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        stream.write_all(&pktline::err_pkt(msg)).await?;
        stream.shutdown().await
    })
    .await;
}

/// A diagnostic line on stderr; the init prefixes it with the daemon's name.
fn note(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
}

#[cfg(test)]
mod tests {
    use super::Limits;

    #[test]
    fn a_push_may_bring_a_quarter_of_the_memory_limit() {
        let default = Limits::default().max_push_bytes;
        let fit = |memory| Limits::default().fit_memory(memory).max_push_bytes;
        assert_eq!(fit(None), default, "no limit: the default");
        assert_eq!(
            fit(Some(128 << 20)),
            32 << 20,
            "the default bottle's 128 MiB"
        );
        assert_eq!(fit(Some(16 << 20)), 8 << 20, "never below 8 MiB");
        assert_eq!(fit(Some(64 << 30)), default, "never above the default");
    }
}
