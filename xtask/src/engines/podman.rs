//! Makes the Podman API service reachable: uses one that answers, or installs Debian's `podman`
//! and `runc`, writes the `containers.conf` settings these machines need (see
//! `../shared/ENGINES.md`) and starts `podman system service` in the background.
//!
//! Idempotent: a second run finds the service answering and does nothing else.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{root, run, show};

/// The rootful socket the service listens on, and where the adapter looks first.
const SOCKET: &str = "/run/podman/podman.sock";
/// The engine-wide configuration file Podman reads at service start.
const CONTAINERS_CONF: &str = "/etc/containers/containers.conf";
/// How long the service may take to answer after start.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Debian packages: the engine; `runc`, because the default `crun` fails on these hosts
/// (cgroups in hybrid mode); the netavark network stack with its DNS and firewall tools.
const PACKAGES: &[&str] = &["podman", "runc", "netavark", "aardvark-dns", "iptables"];

/// Uses a Podman service that answers, or installs, configures and starts one; then, as root,
/// the test user's rootless service (see [`super::rootless`]).
pub fn ensure() -> Result<(), String> {
    ensure_rootful()?;
    if is_root()? {
        super::rootless::ensure()?;
    } else {
        eprintln!("podman: not root, so no rootless test user is set up");
    }
    Ok(())
}

/// The rootful service: one that answers, or a new one.
fn ensure_rootful() -> Result<(), String> {
    if let Some(host) = std::env::var("CONTAINER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
    {
        return match ping(&host) {
            Ok(()) => {
                eprintln!("podman: using the service at CONTAINER_HOST={host}");
                Ok(())
            }
            Err(e) => Err(format!(
                "podman: CONTAINER_HOST={host} does not answer ({e}): start that service, or unset CONTAINER_HOST to let xtask start one on {SOCKET}"
            )),
        };
    }
    let url = format!("unix://{SOCKET}");
    if ping(&url).is_ok() {
        eprintln!("podman: service already answers on {SOCKET}");
        return Ok(());
    }
    if !is_root()? {
        return Err(format!(
            "podman: no service answers on {SOCKET} and xtask is not root: run `cargo xtask engines` as root, or start `podman system service` yourself and set CONTAINER_HOST"
        ));
    }
    install()?;
    configure()?;
    start()
}

/// Installs the packages that are missing, with `apt-get`.
fn install() -> Result<(), String> {
    install_packages("podman", PACKAGES)
}

/// Installs those of `packages` that are missing, in one transaction; `what` names the caller
/// in what is printed.
pub(super) fn install_packages(what: &str, packages: &[&str]) -> Result<(), String> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|package| !package_installed(package))
        .collect();
    if missing.is_empty() {
        eprintln!("{what}: {} are installed", packages.join(", "));
        return Ok(());
    }
    eprintln!(
        "{what}: installing {} (missing: {})",
        packages.join(" "),
        missing.join(", ")
    );
    if !apt_lists_present() {
        run(apt().arg("update"))?;
    }
    // Both `podman` and `runc` in one transaction: apt then satisfies podman's
    // `crun | runc` dependency with runc instead of pulling crun in.
    let install = || {
        let mut cmd = apt();
        cmd.args(["install", "-y"]).args(packages);
        run(&mut cmd)
    };
    if install().is_err() {
        // Stale package lists are the usual cause on a fresh machine: refresh once and retry.
        run(apt().arg("update"))?;
        install()?;
    }
    Ok(())
}

fn apt() -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

/// Whether apt has package lists at all (a fresh image often ships without).
fn apt_lists_present() -> bool {
    fs::read_dir("/var/lib/apt/lists").is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains("_Packages"))
    })
}

/// Whether dpkg has `package` installed. Asked of dpkg rather than `PATH` because some of the
/// binaries (netavark) live in `/usr/lib/podman`.
fn package_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "install ok installed")
}

pub(super) fn is_root() -> Result<bool, String> {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| format!("cannot run `id -u` to check for root: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// The hard limit of a resource from `/proc/self/limits` (`None` when unlimited or unreadable).
fn hard_limit(resource: &str) -> Option<u64> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with(resource))?;
    // Columns: name (several words), soft, hard, units.
    let rest = line[resource.len()..]
        .split_whitespace()
        .collect::<Vec<_>>();
    rest.get(1)?.parse().ok()
}

/// The `key = value` settings `containers.conf` needs, by section.
fn wanted_settings() -> Result<Vec<(&'static str, &'static str, String)>, String> {
    // The runtime refuses a nofile limit above the hard limit of the process that starts
    // the container (the service, which inherits ours), so read it rather than assume it.
    let nofile = hard_limit("Max open files").ok_or_else(|| {
        "cannot read the hard `Max open files` limit from /proc/self/limits (needed for containers.conf default_ulimits)".to_string()
    })?;
    let nproc = hard_limit("Max processes").map_or(4096, |hard| hard.min(4096));
    Ok(vec![
        (
            "containers",
            "default_ulimits",
            format!("[\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]"),
        ),
        ("engine", "runtime", "\"runc\"".into()),
        ("engine", "cgroup_manager", "\"cgroupfs\"".into()),
        ("engine", "events_logger", "\"file\"".into()),
    ])
}

/// Writes the settings into `containers.conf`, keeping whatever else the file holds.
fn configure() -> Result<(), String> {
    let path = Path::new(CONTAINERS_CONF);
    let wanted = wanted_settings()?;
    let old = match fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let (new, changes) = apply_settings(old.as_deref().unwrap_or(""), &wanted);
    if changes.is_empty() {
        eprintln!("podman: {} already has the needed settings", path.display());
        return Ok(());
    }
    if let Some(old) = old.as_deref().filter(|t| !t.trim().is_empty()) {
        let backup = path.with_extension("conf.bottle-backup");
        fs::write(&backup, old).map_err(|e| {
            format!(
                "cannot back up {} to {}: {e}",
                path.display(),
                backup.display()
            )
        })?;
        eprintln!(
            "podman: {} has other content; kept it, saved the original as {}",
            path.display(),
            backup.display()
        );
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    fs::write(path, new).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    for change in changes {
        eprintln!("podman: {}: {change}", path.display());
    }
    Ok(())
}

/// Sets each `(section, key, value)` in a TOML text, line by line: replaces a key's existing
/// value (also a multi-line array), else adds it at the end of its section, else
/// appends the section. Returns the new text and what changed.
fn apply_settings(text: &str, wanted: &[(&str, &str, String)]) -> (String, Vec<String>) {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let mut changes = Vec::new();
    for (section, key, value) in wanted {
        let want_line = format!("{key} = {value}");
        let header = lines
            .iter()
            .position(|l| l.trim() == format!("[{section}]"));
        let Some(header) = header else {
            if lines.last().is_some_and(|l| !l.trim().is_empty()) {
                lines.push(String::new());
            }
            lines.push(format!("[{section}]"));
            lines.push(want_line);
            changes.push(format!("added [{section}] {key} = {value}"));
            continue;
        };
        let end = lines[header + 1..]
            .iter()
            .position(|l| l.trim_start().starts_with('['))
            .map_or(lines.len(), |i| header + 1 + i);
        let found = (header + 1..end).find(|&i| {
            let l = lines[i].trim_start();
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        });
        match found {
            Some(i) => {
                // A multi-line array continues until the line that closes it.
                let mut last = i;
                let opens = lines[i].matches('[').count();
                let closes = lines[i].matches(']').count();
                if opens > closes {
                    while last + 1 < lines.len() && !lines[last].contains(']') {
                        last += 1;
                    }
                }
                let current = lines[i..=last].join("\n");
                if normalise(&current) != normalise(&want_line) {
                    changes.push(format!(
                        "set [{section}] {key} = {value} (was: {})",
                        current.trim()
                    ));
                    lines.splice(i..=last, [want_line]);
                }
            }
            None => {
                // At the end of the section, before the blank lines that separate it.
                let mut at = end;
                while at > header + 1 && lines[at - 1].trim().is_empty() {
                    at -= 1;
                }
                lines.insert(at, want_line);
                changes.push(format!("added [{section}] {key} = {value}"));
            }
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    (out, changes)
}

/// A setting line without whitespace, for comparing values written differently.
fn normalise(line: &str) -> String {
    line.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Starts `podman system service` detached, logging to `target/engines/podman.log`, and waits
/// until it answers.
fn start() -> Result<(), String> {
    let socket = Path::new(SOCKET);
    if let Some(dir) = socket.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    start_service(Command::new("podman"), socket, "podman.log", None)
}

/// Starts `podman` (`cmd`, run as the service's user) as `podman system service` on the unix
/// socket `socket`, detached, logging to `target/engines/<log_name>`, and waits until it
/// answers. `owner` names the service's user in messages (`None`: root's).
pub(super) fn start_service(
    mut cmd: Command,
    socket: &Path,
    log_name: &str,
    owner: Option<&str>,
) -> Result<(), String> {
    // A socket file left by a service that died refuses the new one's bind.
    if socket.exists() {
        fs::remove_file(socket)
            .map_err(|e| format!("cannot remove the stale socket {}: {e}", socket.display()))?;
    }
    let log_dir = root().join("target").join("engines");
    fs::create_dir_all(&log_dir)
        .map_err(|e| format!("cannot create {}: {e}", log_dir.display()))?;
    let log_path = log_dir.join(log_name);
    let log = fs::File::create(&log_path)
        .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("cannot reuse {} for stderr: {e}", log_path.display()))?;
    let url = format!("unix://{}", socket.display());
    cmd.args(["system", "service", "--time=0", &url])
        .stdin(Stdio::null())
        // Not the workspace: a long-lived service should not hold a checkout's directory.
        .current_dir("/")
        .stdout(log)
        .stderr(log_err)
        // Its own process group: a Ctrl-C aimed at xtask or cargo does not reach it, and it
        // outlives xtask (there is no systemd to own it).
        .process_group(0);
    eprintln!("$ {} > {} 2>&1 &", show(&cmd), log_path.display());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", show(&cmd)))?;
    let (tag, service, api) = match owner {
        None => (
            "podman".to_string(),
            "podman system service".to_string(),
            "the API service".to_string(),
        ),
        Some(user) => (
            "podman (rootless)".to_string(),
            format!("{user}'s podman system service"),
            format!("{user}'s API service"),
        ),
    };
    let started = Instant::now();
    loop {
        match ping(&url) {
            Ok(()) => {
                eprintln!(
                    "{tag}: started {api} on {} (pid {}, log {}) in {:.1?}",
                    socket.display(),
                    child.id(),
                    log_path.display(),
                    started.elapsed()
                );
                return Ok(());
            }
            Err(e) => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "{service} exited ({status}) before answering on {}: read {}",
                        socket.display(),
                        log_path.display()
                    ));
                }
                if started.elapsed() > START_TIMEOUT {
                    return Err(format!(
                        "{service} (pid {}) did not answer on {} within {START_TIMEOUT:?} ({e}): read {}",
                        child.id(),
                        socket.display(),
                        log_path.display()
                    ));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends `GET /_ping` to a `unix://` or `tcp://` service URL and expects `200 OK`.
pub(super) fn ping(url: &str) -> Result<(), String> {
    const REQUEST: &[u8] = b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n";
    let timeout = Some(Duration::from_secs(2));
    let mut response = Vec::new();
    if let Some(path) = url.strip_prefix("unix://") {
        let mut s = std::os::unix::net::UnixStream::connect(path).map_err(|e| e.to_string())?;
        s.set_read_timeout(timeout).map_err(|e| e.to_string())?;
        s.write_all(REQUEST).map_err(|e| e.to_string())?;
        s.read_to_end(&mut response).map_err(|e| e.to_string())?;
    } else if let Some(addr) = url
        .strip_prefix("tcp://")
        .or_else(|| url.strip_prefix("http://"))
    {
        let mut s =
            std::net::TcpStream::connect(addr.trim_end_matches('/')).map_err(|e| e.to_string())?;
        s.set_read_timeout(timeout).map_err(|e| e.to_string())?;
        s.write_all(REQUEST).map_err(|e| e.to_string())?;
        s.read_to_end(&mut response).map_err(|e| e.to_string())?;
    } else {
        return Err(format!(
            "unsupported URL {url} (expected unix:// or tcp://)"
        ));
    }
    let status = String::from_utf8_lossy(&response);
    let status = status.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(format!("unexpected answer {status:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::apply_settings;

    fn wanted() -> Vec<(&'static str, &'static str, String)> {
        vec![
            ("containers", "default_ulimits", "[\"nofile=10:10\"]".into()),
            ("engine", "runtime", "\"runc\"".into()),
        ]
    }

    #[track_caller]
    fn check(before: &str, after: &str, changes: usize) {
        let (text, made) = apply_settings(before, &wanted());
        assert_eq!(text, after);
        assert_eq!(made.len(), changes, "{made:?}");
        let (again, none) = apply_settings(&text, &wanted());
        assert_eq!(again, text, "idempotent");
        assert!(none.is_empty(), "{none:?}");
    }

    #[test]
    fn settings_are_merged_into_existing_text() {
        check(
            "",
            "[containers]\ndefault_ulimits = [\"nofile=10:10\"]\n\n[engine]\nruntime = \"runc\"\n",
            2,
        );
        check(
            "# mine\n[engine]\nruntime = \"crun\"\nnum_locks = 4\n",
            "# mine\n[engine]\nruntime = \"runc\"\nnum_locks = 4\n\n[containers]\ndefault_ulimits = [\"nofile=10:10\"]\n",
            2,
        );
        check(
            "[containers]\ndefault_ulimits = [\n  \"nofile=1:1\",\n]\nlog_size_max = 1\n[engine]\n runtime=\"runc\"\n",
            "[containers]\ndefault_ulimits = [\"nofile=10:10\"]\nlog_size_max = 1\n[engine]\n runtime=\"runc\"\n",
            1,
        );
        check(
            "[engine]\nnum_locks = 4\n\n[machine]\ncpus = 1\n",
            "[engine]\nnum_locks = 4\nruntime = \"runc\"\n\n[machine]\ncpus = 1\n\n[containers]\ndefault_ulimits = [\"nofile=10:10\"]\n",
            2,
        );
    }
}
