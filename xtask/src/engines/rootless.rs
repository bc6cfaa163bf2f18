//! A test user with a rootless Podman service, so CI can run the Podman suites once more as a
//! user: what a login manager would otherwise prepare (there is none on these machines).
//!
//! As root, and idempotent: the user [`USER`] with a home, ranges in `/etc/subuid` and
//! `/etc/subgid`, `/dev/net/tun` usable by users (slirp4netns needs it), the user's
//! `XDG_RUNTIME_DIR` (`/run/user/<uid>`, mode 0700), then the user's
//! `podman system service` on `$XDG_RUNTIME_DIR/podman/podman.sock`, and the reference image in
//! the user's storage when its archive exists. The engine-wide `containers.conf` that
//! [`super::podman`] writes applies to rootless services too.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util::{root, run, show};

/// The test user.
pub const USER: &str = "bottle-ci";
/// How many subordinate ids the user gets (what `useradd` gives by default).
const SUB_COUNT: u64 = 65536;
/// Where automatic subordinate ranges start (`SUB_UID_MIN` of `login.defs`).
const SUB_MIN: u64 = 100_000;
/// Packages rootless Podman needs beyond the rootful engine's: `newuidmap`/`newgidmap` and the
/// user-mode network of the rootless network namespace.
const PACKAGES: &[&str] = &["uidmap", "slirp4netns"];

/// The test user's ids and directories.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub uid: u32,
    pub home: PathBuf,
    /// `/run/user/<uid>`.
    pub runtime_dir: PathBuf,
}

impl TestUser {
    /// The user's service socket URL.
    pub fn socket_url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn socket(&self) -> PathBuf {
        self.runtime_dir.join("podman").join("podman.sock")
    }

    /// `runuser -u USER -- env HOME=.. XDG_RUNTIME_DIR=.. <program>`: a command as the user,
    /// with the environment a login would give (and nothing of root's engine variables).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.command_env(program, &[])
    }

    /// [`TestUser::command`] with more `KEY=VALUE` variables.
    pub fn command_env(&self, program: impl AsRef<std::ffi::OsStr>, vars: &[&str]) -> Command {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", USER, "--", "env"])
            .args(["-u", "CONTAINER_HOST", "-u", "DOCKER_HOST"])
            .arg(format!("HOME={}", self.home.display()))
            .arg(format!("XDG_RUNTIME_DIR={}", self.runtime_dir.display()))
            .arg(format!("USER={USER}"))
            .arg(format!("LOGNAME={USER}"))
            .args(vars)
            .arg(program);
        cmd
    }
}

/// The user as set up now, or `None` when it does not exist.
pub fn user() -> Option<TestUser> {
    let out = Command::new("getent")
        .args(["passwd", USER])
        .output()
        .ok()?;
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let cols: Vec<&str> = line.split(':').collect();
    let uid: u32 = cols.get(2)?.parse().ok()?;
    Some(TestUser {
        uid,
        home: PathBuf::from(cols.get(5)?),
        runtime_dir: PathBuf::from(format!("/run/user/{uid}")),
    })
}

/// Sets up the user and starts its service (see the module docs).
pub fn ensure() -> Result<TestUser, String> {
    super::podman::install_packages("podman (rootless)", PACKAGES)?;
    let user = create_user()?;
    ensure_sub_ids(Path::new("/etc/subuid"))?;
    ensure_sub_ids(Path::new("/etc/subgid"))?;
    open_tun()?;
    runtime_dir(&user)?;
    if super::podman::ping(&user.socket_url()).is_ok() {
        eprintln!(
            "podman (rootless): {USER}'s service already answers on {}",
            user.socket().display()
        );
    } else {
        start(&user)?;
    }
    load_image(&user)?;
    Ok(user)
}

fn create_user() -> Result<TestUser, String> {
    if let Some(user) = user() {
        return Ok(user);
    }
    run(Command::new("useradd").args(["--create-home", "--shell", "/bin/sh", USER]))?;
    user().ok_or_else(|| format!("useradd made no user {USER}"))
}

/// Gives the user a range in `path` (`/etc/subuid` or `/etc/subgid`) unless it has one: the
/// first free range above every other.
fn ensure_sub_ids(path: &Path) -> Result<(), String> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if let Some(line) = text.lines().find(|l| l.starts_with(&format!("{USER}:"))) {
        eprintln!("podman (rootless): {} has {line}", path.display());
        return Ok(());
    }
    let start = next_range(&text);
    let mut new = text.clone();
    if !new.is_empty() && !new.ends_with('\n') {
        new.push('\n');
    }
    new.push_str(&format!("{USER}:{start}:{SUB_COUNT}\n"));
    fs::write(path, new).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!(
        "podman (rootless): {}: added {USER}:{start}:{SUB_COUNT}",
        path.display()
    );
    Ok(())
}

/// The start of a range after every range of a subuid/subgid file.
fn next_range(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| {
            let mut cols = l.split(':').skip(1);
            let start: u64 = cols.next()?.trim().parse().ok()?;
            let count: u64 = cols.next()?.trim().parse().ok()?;
            Some(start + count)
        })
        .fold(SUB_MIN, u64::max)
}

/// slirp4netns opens `/dev/net/tun` as the user; these machines ship it root-only.
fn open_tun() -> Result<(), String> {
    let tun = Path::new("/dev/net/tun");
    let meta = fs::metadata(tun).map_err(|e| {
        format!(
            "{} is missing ({e}): rootless Podman's network needs the tun device",
            tun.display()
        )
    })?;
    if meta.mode() & 0o666 == 0o666 {
        return Ok(());
    }
    fs::set_permissions(tun, fs::Permissions::from_mode(0o666))
        .map_err(|e| format!("cannot chmod 0666 {}: {e}", tun.display()))?;
    eprintln!("podman (rootless): {} is now mode 0666", tun.display());
    Ok(())
}

/// `/run/user/<uid>`, owned by the user, mode 0700, as a login manager would make it, with the
/// `podman` directory the service's socket goes in.
fn runtime_dir(user: &TestUser) -> Result<(), String> {
    let dir = &user.runtime_dir;
    let podman = user.socket();
    let podman = podman.parent().expect("the socket is inside a directory");
    fs::create_dir_all(podman).map_err(|e| format!("cannot create {}: {e}", podman.display()))?;
    for d in [dir.as_path(), podman] {
        let meta = fs::metadata(d).map_err(|e| format!("cannot read {}: {e}", d.display()))?;
        if meta.uid() != user.uid {
            run(Command::new("chown").arg(format!("{USER}:")).arg(d))?;
        }
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot chmod 0700 {}: {e}", dir.display()))
}

/// Starts the user's `podman system service` detached, logging to
/// `target/engines/podman-rootless.log`, and waits until it answers.
fn start(user: &TestUser) -> Result<(), String> {
    super::podman::start_service(
        user.command("podman"),
        &user.socket(),
        "podman-rootless.log",
        Some(USER),
    )
}

/// Loads the reference image archive into the user's storage when the archive exists and the
/// image does not (`cargo xtask image` builds the archive; CI runs it after this).
pub fn load_image(user: &TestUser) -> Result<(), String> {
    let archive = root().join("target").join("bottle-sidecars.tar");
    if !archive.exists() {
        eprintln!(
            "podman (rootless): no {} yet; `cargo xtask image` builds it and CI loads it for {USER}",
            archive.display()
        );
        return Ok(());
    }
    let present = user
        .command("podman")
        .args(["image", "exists", "localhost/bottle-sidecars:latest"])
        .current_dir("/")
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        eprintln!("podman (rootless): {USER} has the reference image");
        return Ok(());
    }
    let mut load = user.command("podman");
    load.args(["load", "-q", "-i"])
        .arg(&archive)
        .current_dir("/");
    eprintln!("$ {}", show(&load));
    let status = load
        .status()
        .map_err(|e| format!("cannot run {}: {e}", show(&load)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed ({status}): {USER} must be able to read {}",
            show(&load),
            archive.display()
        ))
    }
}

/// Conformance cases that create no container: the ones a rootless service on a cgroup v1 host
/// can pass (every container of the suite asks for memory and pids limits, which such a
/// service cannot apply; the adapter refuses them, and `rootless.rs` checks that refusal).
const V1_CONFORMANCE: &[&str] = &[
    "network_create_is_exclusive_and_remove_idempotent",
    "overlapping_subnet_is_subnet_conflict",
    "missing_objects",
    "image_lookup",
    "failed_create_is_not_found_and_leaves_nothing",
];

/// One prebuilt test binary run as the user: package, test target, and the libtest filter
/// arguments (empty: every test).
struct Suite {
    package: &'static str,
    target: &'static str,
    filter: Vec<&'static str>,
    /// With `--exact` names: how many tests must have run.
    exact: Option<usize>,
}

/// `cargo xtask ci`'s rootless stage (as root, after the tests stage built everything): the
/// Podman suites and the CLI's Podman end-to-end tests once more, as [`USER`] against its
/// rootless service, from the same test binaries (no second build). On a cgroup v1 host, where
/// a rootless service cannot apply resource limits, only what creates no limited container runs
/// (and says so); `BOTTLE_ROOTLESS_FULL=1` runs everything anyway.
pub fn ci() -> Result<(), String> {
    let user = ensure()?;
    let full = Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
        || std::env::var("BOTTLE_ROOTLESS_FULL").is_ok_and(|v| v == "1");
    // The Podman tests write a small image archive under CARGO_TARGET_TMPDIR.
    let tmp = root().join("target").join("tmp");
    fs::create_dir_all(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777))
        .map_err(|e| format!("cannot chmod 1777 {}: {e}", tmp.display()))?;
    let suites = if full {
        vec![
            Suite {
                package: "bottle-podman",
                target: "rootless",
                filter: vec![],
                exact: None,
            },
            Suite {
                package: "bottle-podman",
                target: "conformance",
                filter: vec![],
                exact: None,
            },
            Suite {
                package: "bottle-cli",
                target: "engines",
                filter: vec!["podman"],
                exact: None,
            },
            Suite {
                package: "bottle-cli",
                target: "bad_input",
                filter: vec!["podman"],
                exact: None,
            },
        ]
    } else {
        eprintln!(
            "rootless: this host has cgroup v1, where rootless Podman cannot apply memory and pids limits and the adapter refuses such containers (checked by bottle-podman's rootless tests): the suite's cases that create containers and the CLI's up/down cycle are not run rootless here (BOTTLE_ROOTLESS_FULL=1 runs them and shows the refusal)"
        );
        let mut conformance = V1_CONFORMANCE.to_vec();
        conformance.push("--exact");
        vec![
            Suite {
                package: "bottle-podman",
                target: "rootless",
                filter: vec![],
                exact: None,
            },
            Suite {
                package: "bottle-podman",
                target: "conformance",
                filter: conformance,
                exact: Some(V1_CONFORMANCE.len()),
            },
            Suite {
                package: "bottle-cli",
                target: "engines",
                filter: vec!["podman_bad_input_exits_2_and_creates_nothing", "--exact"],
                exact: Some(1),
            },
            Suite {
                package: "bottle-cli",
                target: "bad_input",
                filter: vec!["podman"],
                exact: None,
            },
        ]
    };
    let binaries = test_binaries(&suites)?;
    for (suite, binary) in suites.iter().zip(&binaries) {
        // CI=true: a missing engine fails the tests instead of skipping them.
        let mut cmd = user.command_env(binary, &["CI=true"]);
        cmd.arg("--test-threads=4")
            .args(&suite.filter)
            .current_dir(root().join("crates").join(suite.package))
            .stdin(Stdio::null());
        eprintln!("$ {}", show(&cmd));
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run {}: {e}", show(&cmd)))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        print!("{stdout}");
        if !out.status.success() {
            return Err(format!(
                "{} {} as {USER} failed ({})",
                suite.package, suite.target, out.status
            ));
        }
        let passed = stdout
            .lines()
            .filter_map(|l| {
                l.strip_prefix("test result: ok. ")?
                    .split(' ')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .sum::<usize>();
        let enough = suite.exact.map_or(passed > 0, |n| passed == n);
        if !enough {
            return Err(format!(
                "{} {} as {USER}: {passed} tests passed, expected {}: a test was renamed?",
                suite.package,
                suite.target,
                suite.exact.map_or("at least one".into(), |n| n.to_string())
            ));
        }
    }
    Ok(())
}

/// The executables of the suites' test targets, as the tests stage built them (the same cargo
/// arguments, so nothing is rebuilt), in the suites' order.
fn test_binaries(suites: &[Suite]) -> Result<Vec<PathBuf>, String> {
    let mut cmd = crate::util::cargo();
    cmd.args([
        "test",
        "--workspace",
        "--all-features",
        "--no-run",
        "--message-format=json",
    ])
    .current_dir(root())
    .stderr(Stdio::inherit());
    for s in suites {
        cmd.args(["--test", s.target]);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", show(&cmd)))?;
    if !out.status.success() {
        return Err(format!("{} failed ({})", show(&cmd), out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    suites
        .iter()
        .map(|s| {
            text.lines()
                .filter(|l| l.contains(&format!("/crates/{}#", s.package)))
                .filter(|l| l.contains(&format!("\"name\":\"{}\"", s.target)))
                .find_map(|l| {
                    let from = l.find("\"executable\":\"")? + "\"executable\":\"".len();
                    let len = l[from..].find('"')?;
                    Some(PathBuf::from(&l[from..from + len]))
                })
                .ok_or_else(|| {
                    format!(
                        "no test binary {} of {} in cargo's output",
                        s.target, s.package
                    )
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::next_range;

    #[test]
    fn a_new_range_starts_after_every_other() {
        assert_eq!(next_range(""), 100_000);
        assert_eq!(next_range("a:100000:65536\n"), 165_536);
        assert_eq!(
            next_range("a:100000:65536\nb:300000:1000\nbroken\nc:x:1\n"),
            301_000
        );
    }
}
