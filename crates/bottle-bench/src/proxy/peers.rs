//! The contenders: direct (no proxy), bottle's egress proxy, tinyproxy and squid, each proxy a
//! process of its own on a free loopback port with a minimal generated configuration.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::upstream::Upstream;

/// How long a proxy may take to accept connections after its start.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a proxy gets to exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Contender {
    Direct,
    Bottle,
    Tinyproxy,
    Squid,
}

impl Contender {
    pub const ALL: [Contender; 4] = [
        Contender::Direct,
        Contender::Bottle,
        Contender::Tinyproxy,
        Contender::Squid,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Contender::Direct => "direct",
            Contender::Bottle => "bottle",
            Contender::Tinyproxy => "tinyproxy",
            Contender::Squid => "squid",
        }
    }

    pub fn parse(s: &str) -> Option<Contender> {
        Contender::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// The programs the proxies are.
#[derive(Debug, Clone, Default)]
pub struct Programs {
    /// `bottle-sidecars` (xtask passes the one it built).
    pub sidecars: Option<PathBuf>,
    pub tinyproxy: Option<PathBuf>,
    pub squid: Option<PathBuf>,
}

/// A program on `PATH`, or in the sbin directories Debian installs daemons to.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl Programs {
    fn of(&self, c: Contender) -> Result<&Path, String> {
        let (p, hint) = match c {
            Contender::Direct => return Err("direct has no program".into()),
            Contender::Bottle => (
                &self.sidecars,
                "pass --sidecars-bin (cargo xtask bench proxy builds and passes it)",
            ),
            Contender::Tinyproxy => (
                &self.tinyproxy,
                "install Debian's tinyproxy (cargo xtask bench proxy does)",
            ),
            Contender::Squid => (
                &self.squid,
                "install Debian's squid (cargo xtask bench proxy does)",
            ),
        };
        p.as_deref()
            .ok_or_else(|| format!("{} is not available: {hint}", c.name()))
    }

    /// The version a contender reports, for the report.
    pub fn version(&self, c: Contender) -> String {
        let Ok(p) = self.of(c) else {
            return String::new();
        };
        let arg = match c {
            Contender::Tinyproxy => "-v",
            Contender::Squid => "-v",
            _ => return tree_version(),
        };
        Command::new(p)
            .arg(arg)
            .stdin(Stdio::null())
            .output()
            .ok()
            .map(|o| {
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                text.lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
            .unwrap_or_default()
    }
}

/// Which state of the proxy's code was measured: the last commit touching it, and whether the
/// working tree differs from it.
fn tree_version() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let paths = ["crates/bottle-sidecars", "crates/bottle-core"];
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(args)
            .args(paths)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["log", "-1", "--format=%h", "--"]);
    let dirty = git(&["status", "--porcelain", "--"]).map(|s| !s.is_empty());
    let tree = match (commit, dirty) {
        (Some(c), Some(d)) if !c.is_empty() => format!(
            "this tree at {c}{}, `bench-run` profile",
            if d { " with uncommitted changes" } else { "" }
        ),
        _ => "this tree, `bench-run` profile".into(),
    };
    // The proxy inherits the benchmark's environment: settings given that way are part of what
    // was measured.
    let settings: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("BOTTLE_EGRESS_") && !SET_BY_BENCH.contains(&k.as_str()))
        .map(|(k, v)| format!("`{k}={v}`"))
        .collect();
    if settings.is_empty() {
        tree
    } else {
        format!("{tree}, with {}", settings.join(" "))
    }
}

/// What the benchmark sets for bottle's proxy itself.
const SET_BY_BENCH: [&str; 2] = ["BOTTLE_EGRESS_PORT", "BOTTLE_EGRESS_ALLOW"];

/// A free loopback port (bound and released: another process could take it in between, which
/// the start's readiness check would then report).
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// A running proxy, stopped on drop.
#[derive(Debug)]
pub struct Proxy {
    pub contender: Contender,
    pub addr: SocketAddr,
    child: Child,
    dir: PathBuf,
}

impl Proxy {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// How the process ended (if it did) and the tail of what it wrote to its diagnostics
    /// files, for an error message.
    pub fn diagnostics(&mut self) -> String {
        let mut out = match self.child.try_wait() {
            Ok(Some(status)) => format!("{status} | "),
            _ => String::new(),
        };
        for name in ["stderr.log", "cache.log"] {
            let p = self.dir.join(format!("{}-{name}", self.contender.name()));
            let mut text = String::new();
            if std::fs::File::open(&p)
                .and_then(|mut f| f.read_to_string(&mut text))
                .is_ok()
            {
                let lines: Vec<&str> = text.lines().collect();
                for l in &lines[lines.len().saturating_sub(5)..] {
                    out.push_str(l);
                    out.push_str(" | ");
                }
            }
        }
        out
    }

    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A file in `dir` anyone may write (squid and tinyproxy drop root for their users).
fn writable(dir: &Path, name: &str) -> Result<std::fs::File, String> {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    let f = std::fs::File::create(&p).map_err(|e| format!("creating {}: {e}", p.display()))?;
    let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666));
    Ok(f)
}

/// tinyproxy's configuration: loopback only, CONNECT to the tunnel port, a log line per
/// connection and request (`LogLevel Connect`) written to /dev/null.
pub fn tinyproxy_conf(port: u16, up: Upstream) -> String {
    format!(
        "User nobody\nGroup nogroup\nPort {port}\nListen 127.0.0.1\nTimeout 600\n\
         MaxClients 1024\nAllow 127.0.0.1\nConnectPort {}\nLogFile \"/dev/null\"\n\
         LogLevel Connect\n",
        up.tunnel.port()
    )
}

/// squid's configuration: loopback only, everything allowed (CONNECT to any port included),
/// nothing cached, an access log line per request written to /dev/null, one worker.
pub fn squid_conf(port: u16, dir: &Path) -> String {
    format!(
        "http_port 127.0.0.1:{port}\nhttp_access allow all\ncache deny all\n\
         access_log stdio:/dev/null\ncache_store_log none\ncache_log {dir}/squid-cache.log\n\
         pid_filename none\ncoredump_dir {dir}\npinger_enable off\nshutdown_lifetime 0 seconds\n\
         visible_hostname bottle-bench\nworkers 1\n",
        dir = dir.display()
    )
}

/// Starts contender `c` (not direct) in front of `up`, with its files in `dir`, and waits until
/// it accepts connections.
pub fn start(c: Contender, programs: &Programs, up: Upstream, dir: &Path) -> Result<Proxy, String> {
    let program = programs.of(c)?;
    let port = free_port()?;
    let stderr = writable(dir, &format!("{}-stderr.log", c.name()))?;
    let mut cmd = Command::new(program);
    cmd.stdin(Stdio::null()).stderr(stderr);
    match c {
        Contender::Direct => unreachable!("direct has no process"),
        Contender::Bottle => {
            // Its decision log (two lines a request) goes where the peers' logs go.
            cmd.args(["daemon", "egress"])
                .env("BOTTLE_EGRESS_PORT", port.to_string())
                .env("BOTTLE_EGRESS_ALLOW", format!("{},{}", up.http, up.tunnel))
                .stdout(Stdio::null());
        }
        Contender::Tinyproxy => {
            let conf = dir.join("tinyproxy.conf");
            std::fs::write(&conf, tinyproxy_conf(port, up))
                .map_err(|e| format!("writing {}: {e}", conf.display()))?;
            cmd.arg("-d").arg("-c").arg(&conf).stdout(Stdio::null());
        }
        Contender::Squid => {
            let conf = dir.join("squid.conf");
            writable(dir, "squid-cache.log")?;
            std::fs::write(&conf, squid_conf(port, dir))
                .map_err(|e| format!("writing {}: {e}", conf.display()))?;
            cmd.arg("-N").arg("-f").arg(&conf).stdout(Stdio::null());
        }
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {} ({}): {e}", c.name(), program.display()))?;
    let mut proxy = Proxy {
        contender: c,
        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        child,
        dir: dir.to_path_buf(),
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if !proxy.running() {
            return Err(format!(
                "{} exited at start: {}",
                c.name(),
                proxy.diagnostics()
            ));
        }
        if TcpStream::connect_timeout(&proxy.addr, Duration::from_millis(200)).is_ok() {
            return Ok(proxy);
        }
        if Instant::now() > deadline {
            let addr = proxy.addr;
            return Err(format!(
                "{} did not accept connections on {addr} within {START_TIMEOUT:?}: {}",
                c.name(),
                proxy.diagnostics()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// CPU seconds (user + system, all threads) a process has used, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux architecture that matters here.
    Some(ticks / 100.0)
}

/// Context switches (voluntary and not) of all of a process's threads, from
/// `/proc/PID/task/*/status`: how often it went to sleep and was woken, or was preempted.
pub fn context_switches(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for t in tasks.flatten() {
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        total += status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Contender::ALL {
            assert_eq!(Contender::parse(c.name()), Some(c));
        }
        assert_eq!(Contender::parse("nginx"), None);
    }

    #[test]
    fn this_process_has_a_cpu_time_and_context_switches() {
        assert!(cpu_seconds(std::process::id()).is_some());
        std::thread::sleep(Duration::from_millis(2));
        assert!(context_switches(std::process::id()).is_some_and(|n| n > 0));
    }

    #[test]
    fn squid_may_tunnel_anywhere_and_caches_nothing() {
        let conf = squid_conf(3999, Path::new("/tmp/x"));
        assert!(conf.contains("http_port 127.0.0.1:3999"));
        assert!(conf.contains("http_access allow all"));
        assert!(conf.contains("cache deny all"));
    }
}
