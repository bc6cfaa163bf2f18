//! A local `sshd` for the tests of `ssh://` Docker contexts: Debian's `openssh-server`
//! (installed when absent), started with a configuration of its own that listens on
//! [`ADDR`] only and takes keys only, with a host key, a client key and the client's
//! `known_hosts` line made here in [`DIR`]. The system's own `sshd` configuration and service
//! are not touched.
//!
//! Idempotent: a second run finds it answering and does nothing else.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::run;

/// The key pairs, configuration, pid file and log of the test `sshd`.
pub const DIR: &str = "/etc/bottle-engines/sshd";
/// Where it listens: loopback only.
pub const ADDR: &str = "127.0.0.1:2222";
/// How long it gets to answer after start.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Makes the test `sshd` answer on [`ADDR`].
pub fn ensure() -> Result<(), String> {
    if banner().is_ok() {
        eprintln!("sshd: answers on {ADDR}; nothing to do");
        return Ok(());
    }
    let sshd = Path::new("/usr/sbin/sshd");
    if !sshd.is_file() {
        install()?;
    }
    let dir = Path::new(DIR);
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {DIR}: {e}"))?;
    // sshd refuses key files and directories others can write (StrictModes).
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("setting the mode of {DIR}: {e}"))?;
    keygen("host_key")?;
    keygen("client_key")?;
    let public = |name: &str| {
        std::fs::read_to_string(dir.join(format!("{name}.pub")))
            .map_err(|e| format!("reading {DIR}/{name}.pub: {e}"))
    };
    // The client key may only forward (the tests forward the engine's socket), nothing else.
    let authorized = format!("restrict,port-forwarding {}", public("client_key")?);
    write(&dir.join("authorized_keys"), &authorized)?;
    let (host, port) = ADDR.split_once(':').unwrap_or((ADDR, "22"));
    write(
        &dir.join("known_hosts"),
        &format!("[{host}]:{port} {}", public("host_key")?),
    )?;
    write(&dir.join("sshd_config"), &config(host, port))?;
    // The privilege separation directory, which Debian's service script would otherwise make.
    std::fs::create_dir_all("/run/sshd").map_err(|e| format!("creating /run/sshd: {e}"))?;
    let log = format!("{DIR}/sshd.log");
    // sshd forks into the background itself once it listens; its parent's exit status says
    // whether the configuration was accepted.
    run(Command::new(sshd)
        .args(["-f", &format!("{DIR}/sshd_config"), "-E", &log])
        .stdin(Stdio::null()))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match banner() {
            Ok(()) => break,
            Err(e) if Instant::now() >= deadline => {
                return Err(format!(
                    "sshd did not answer on {ADDR} within {START_TIMEOUT:?} ({e}); see {log}"
                ))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    eprintln!("sshd: started on {ADDR} (keys only), keys in {DIR}");
    Ok(())
}

/// The test server's settings: loopback, keys only, forwarding of local streams only.
fn config(host: &str, port: &str) -> String {
    format!(
        "# Written by cargo xtask engines: the sshd of the tests of ssh:// Docker contexts.
ListenAddress {host}
Port {port}
HostKey {DIR}/host_key
PidFile {DIR}/sshd.pid
AuthorizedKeysFile {DIR}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
AllowStreamLocalForwarding local
# Local forwarding of unix sockets is also gated by this one (`no` denies `-L sock:sock`); the
# authorized key's `restrict,port-forwarding` and the loopback listener bound it.
AllowTcpForwarding local
AllowAgentForwarding no
X11Forwarding no
PermitTTY no
"
    )
}

/// Makes an ed25519 key pair `name` in [`DIR`] unless it exists.
fn keygen(name: &str) -> Result<(), String> {
    let path = format!("{DIR}/{name}");
    if Path::new(&path).is_file() {
        return Ok(());
    }
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", &path])
        .stdin(Stdio::null()))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Installs Debian's `openssh-server` (which brings `ssh-keygen` and the client). Debian's
/// package would start the system service on every address; where `policy-rc.d` forbids it (as
/// in containers) it does not, and this module never starts it.
fn install() -> Result<(), String> {
    eprintln!("sshd: installing Debian's openssh-server");
    let install = || {
        run(Command::new("apt-get")
            .args([
                "install",
                "-y",
                "--no-install-recommends",
                "openssh-server",
                "openssh-client",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null()))
    };
    if install().is_err() {
        run(Command::new("apt-get").arg("update").stdin(Stdio::null()))?;
        install()?;
    }
    Ok(())
}

/// Reads the server's `SSH-2.0-...` greeting from [`ADDR`].
fn banner() -> Result<(), String> {
    let addr: SocketAddr = ADDR.parse().map_err(|e| format!("{ADDR}: {e}"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .map_err(|e| format!("connecting: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 8];
    stream
        .read_exact(&mut buf)
        .map_err(|e| format!("reading the greeting: {e}"))?;
    if buf.starts_with(b"SSH-2.0") {
        Ok(())
    } else {
        Err(format!(
            "something else listens there: {:?}",
            String::from_utf8_lossy(&buf)
        ))
    }
}
