//! The `ssh` child that reaches an `ssh://` engine: `ssh -N -L <private socket>:<engine
//! socket> host` forwards a unix socket in a private directory of this host to the engine's
//! socket on the remote host, and the runtime talks to the local end.
//!
//! bollard's own `ssh` transport starts an ssh master per connection and cannot take ssh
//! options; one forwarding `ssh` per runtime is cheaper and uses the system's ssh with the
//! user's keys, agent and `~/.ssh/config` (or the destination's own config file, from
//! `BOTTLE_SSH_CONFIG`, passed as `ssh -F`).
//!
//! The tunnel must not outlive this process, even one that is killed: `ssh` runs under a small
//! `sh` whose standard input is a pipe from here. When the runtime drops the tunnel, or this
//! process dies, the pipe closes and the shell stops `ssh`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::debug;

use crate::endpoint::{SshDestination, REMOTE_SOCKET};

/// How long `ssh` gets to log in and set up the forward.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs `ssh "$@"` in the background and, when standard input closes, stops it and removes
/// the private directory (which a killed process could not). The reader is a background job,
/// whose standard input a POSIX shell replaces with `/dev/null` unless it is redirected
/// explicitly: hence the copy on fd 3.
const SCRIPT: &str = r#"exec 3<&0
ssh "$@" </dev/null 2>"$BOTTLE_TUNNEL_DIR/ssh.log" &
pid=$!
( read -r _ <&3; kill "$pid" 2>/dev/null; rm -rf "$BOTTLE_TUNNEL_DIR" ) &
wait "$pid"
"#;

/// A running forward; dropping it stops `ssh` and removes the private directory.
#[derive(Debug)]
pub(crate) struct Tunnel {
    /// The shell that runs `ssh`; it exits when `ssh` does.
    shell: Child,
    /// The shell's standard input: closing it stops `ssh`.
    lifeline: Option<ChildStdin>,
    dir: PathBuf,
    socket: PathBuf,
}

impl Tunnel {
    /// Starts `ssh` to `dest` and waits until the local end of the forward exists.
    /// The error says what `ssh` said.
    pub(crate) async fn open(dest: &SshDestination) -> Result<Tunnel, String> {
        let dir = private_dir()?;
        let socket = dir.join("docker.sock");
        let log = dir.join("ssh.log");
        let mut args: Vec<String> = [
            "-n",
            "-N",
            "-T",
            "-o",
            "BatchMode=yes",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "ServerAliveInterval=15",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(config) = &dest.config {
            args.push("-F".into());
            args.push(config.to_string_lossy().into_owned());
        }
        if let Some(port) = dest.port {
            args.extend(["-p".into(), port.to_string()]);
        }
        if let Some(user) = &dest.user {
            args.extend(["-l".into(), user.clone()]);
        }
        args.push("-L".into());
        args.push(format!("{}:{REMOTE_SOCKET}", socket.display()));
        args.push("--".into());
        args.push(dest.host.clone());
        let spawned = Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("bottle-ssh-tunnel")
            .args(&args)
            .env("BOTTLE_TUNNEL_DIR", &dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut shell = match spawned {
            Ok(shell) => shell,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!("cannot start sh to run ssh: {e}"));
            }
        };
        let lifeline = shell.stdin.take();
        let mut tunnel = Tunnel {
            shell,
            lifeline,
            dir,
            socket,
        };
        let deadline = Instant::now() + OPEN_TIMEOUT;
        loop {
            if tunnel.socket.exists() {
                debug!(socket = %tunnel.socket.display(), host = %dest.host, "ssh tunnel open");
                return Ok(tunnel);
            }
            if let Ok(Some(status)) = tunnel.shell.try_wait() {
                let said = read_log(&log);
                return Err(format!("ssh exited ({status}): {said}"));
            }
            if Instant::now() >= deadline {
                let said = read_log(&log);
                return Err(format!(
                    "ssh did not set up the forward within {OPEN_TIMEOUT:?}: {said}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The local end of the forward.
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        // Closing the pipe makes the shell stop ssh; it then exits.
        drop(self.lifeline.take());
        let deadline = Instant::now() + Duration::from_secs(2);
        while matches!(self.shell.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(self.shell.try_wait(), Ok(None)) {
            let _ = self.shell.kill();
            let _ = self.shell.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        debug!(dir = %self.dir.display(), "ssh tunnel closed");
    }
}

/// A new directory only this user can enter, for the forward's socket and ssh's log.
fn private_dir() -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir();
    for _ in 0..16 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("bottle-ssh-{}-{n}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
        }
    }
    Err(format!(
        "cannot create a private directory in {}",
        base.display()
    ))
}

/// What ssh wrote on stderr, trimmed (it never holds a secret: keys are never printed).
fn read_log(log: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(log) {
        let _ = f.read_to_string(&mut text);
    }
    let text = text.trim();
    if text.is_empty() {
        "no message".into()
    } else {
        text.lines().collect::<Vec<_>>().join("; ")
    }
}
