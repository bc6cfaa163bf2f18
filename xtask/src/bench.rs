//! `cargo xtask bench`: the benchmarks, in four parts.
//!
//! - The engine part (`cargo xtask bench engines`): bring-up and teardown measured side by side
//!   against the engine's raw API floor and the tools people would use instead. Builds the
//!   reference image archive as `cargo xtask image` does; the engines must answer (`cargo xtask
//!   engines`). Report: `target/bench/latest.md` and the results section of
//!   `docs/BENCHMARKS.md`.
//! - The proxy part (`cargo xtask bench proxy`): bottle's egress proxy (`bottle-sidecars daemon
//!   egress`) against direct, tinyproxy and squid on loopback; no container engine. Installs
//!   Debian's `tinyproxy` and `squid` when absent. Report: `target/bench/proxy.md` and the proxy
//!   results section of `docs/BENCHMARKS.md`.
//! - The service part (`cargo xtask bench service`): a service endpoint against direct TLS to the
//!   same local upstream, and the credential scan's share. Report: `target/bench/service.md`.
//! - The git part (`cargo xtask bench git`): a clone of a generated repository (about 1,000
//!   commits, 50 MB) and a push of 100 commits through a bottle's git gate against directly, to
//!   the same local `git http-backend` upstream. Builds and loads the reference image (the gate
//!   is in it); Podman by default (`--runtime docker`). Report: `target/bench/git.md`.
//!
//! Plain `cargo xtask bench [options]` runs all four: the engine part with the options given,
//! then the proxy, service and git parts with their defaults. Everything the parts run is built in one cargo invocation with the
//! `bench-run` profile (the release profile, unwinding). `--no-doc` leaves `docs/BENCHMARKS.md`
//! alone; `cargo xtask bench --help` lists each part's options.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util::{cargo, root, run as sh, show};

const HELP: &str = "\
cargo xtask bench [engines|proxy|service|git] [options] [--no-doc]

  cargo xtask bench [options]          every part: the engine part with the options given, then
                                       the proxy, service and git parts with their defaults
  cargo xtask bench engines [options]  only the engine part: bottle's up and down against the
                                       engine's raw API floor, bottle's CLI, the engine's CLI and
                                       testcontainers, on Docker and Podman (the engines must
                                       answer: cargo xtask engines)
  cargo xtask bench proxy [options]    only the proxy part: bottle's egress proxy against direct
                                       (no proxy), tinyproxy and squid on loopback; no container
                                       engine; installs Debian's tinyproxy and squid with apt-get
                                       when they are absent
  cargo xtask bench service [options]  only the service part: a service endpoint against direct
                                       TLS to the same local upstream (added latency, time to
                                       first byte, the credential scan's share); no engine
  cargo xtask bench git [options]      only the git part: clone (about 1,000 commits, 50 MB) and
                                       push (100 commits) through a bottle's git gate against
                                       directly, to the same local git http-backend upstream;
                                       builds and loads the reference image; Podman unless
                                       --runtime docker
  --no-doc                             leave docs/BENCHMARKS.md alone (each part otherwise
                                       replaces its own results section there)

Reports: target/bench/latest.md (engines), target/bench/proxy.md (proxy),
target/bench/service.md (service), target/bench/git.md (git).
";

/// Which parts to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parts {
    All,
    Engines,
    Proxy,
    Service,
    Git,
}

impl Parts {
    fn engines(self) -> bool {
        matches!(self, Parts::All | Parts::Engines)
    }
    fn proxy(self) -> bool {
        matches!(self, Parts::All | Parts::Proxy)
    }
    fn service(self) -> bool {
        matches!(self, Parts::All | Parts::Service)
    }
    fn git(self) -> bool {
        matches!(self, Parts::All | Parts::Git)
    }
}

/// Runs the benchmark.
pub fn run(args: &[String]) -> Result<(), String> {
    let (parts, args) = match args.first().map(String::as_str) {
        Some("engines") => (Parts::Engines, &args[1..]),
        Some("proxy") => (Parts::Proxy, &args[1..]),
        Some("service") => (Parts::Service, &args[1..]),
        Some("git") => (Parts::Git, &args[1..]),
        _ => (Parts::All, args),
    };
    let no_doc = args.iter().any(|a| a == "--no-doc");
    let args: Vec<String> = args.iter().filter(|a| *a != "--no-doc").cloned().collect();
    let help = args.iter().any(|a| a == "-h" || a == "--help");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let doc = root().join("docs/BENCHMARKS.md");

    if help {
        print!("{HELP}");
        let built = build(parts)?;
        for bench in [&built.contenders, &built.proxy, &built.service, &built.git]
            .into_iter()
            .flatten()
        {
            println!();
            sh(Command::new(bench).arg("--help"))?;
        }
        return Ok(());
    }

    // The image exactly as `cargo xtask image` builds it (its own feature set).
    let archive = if parts.engines() || parts.git() {
        Some(crate::image::run(&[])?)
    } else {
        None
    };
    if parts.proxy() {
        ensure_peers();
    }
    let built = build(parts)?;
    let shown = |part: &str, args: &[String]| {
        ["cargo xtask bench".to_string()]
            .into_iter()
            .chain((!part.is_empty()).then(|| part.to_string()))
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    };

    let mut engines_result = Ok(());
    if let (Some(bench), Some(bottle), Some(archive)) = (&built.contenders, &built.bottle, &archive)
    {
        let part = if parts == Parts::Engines {
            "engines"
        } else {
            ""
        };
        let mut cmd = Command::new(bench);
        cmd.arg("--bottle-bin")
            .arg(bottle)
            .arg("--archive")
            .arg(archive)
            .arg("--out")
            .arg(target_dir.join("bench/latest.md"))
            .args(["--command", &shown(part, &args)]);
        if !no_doc {
            cmd.arg("--update-doc").arg(&doc);
        }
        cmd.args(&args);
        engines_result = sh(&mut cmd);
        if parts == Parts::All {
            if let Err(e) = &engines_result {
                eprintln!("xtask bench: the engine part failed ({e}); running the other parts");
            }
        }
    }
    if let (Some(bench), Some(sidecars)) = (&built.proxy, &built.sidecars) {
        // Plain `cargo xtask bench` hands its options to the engine part only.
        let (part, proxy_args): (&str, &[String]) = match parts {
            Parts::Proxy => ("proxy", &args),
            _ => ("", &[]),
        };
        let mut cmd = Command::new(bench);
        cmd.arg("--sidecars-bin")
            .arg(sidecars)
            .arg("--out")
            .arg(target_dir.join("bench/proxy.md"))
            .args(["--command", &shown(part, proxy_args)]);
        if !no_doc {
            cmd.arg("--update-doc").arg(&doc);
        }
        cmd.args(proxy_args);
        sh(&mut cmd)?;
    }
    if let Some(bench) = &built.service {
        // Like the proxy part: plain `cargo xtask bench` runs it with its defaults.
        let (part, service_args): (&str, &[String]) = match parts {
            Parts::Service => ("service", &args),
            _ => ("", &[]),
        };
        let mut cmd = Command::new(bench);
        cmd.arg("--out")
            .arg(target_dir.join("bench/service.md"))
            .args(["--command", &shown(part, service_args)]);
        cmd.args(service_args);
        sh(&mut cmd)?;
    }
    if let (Some(bench), Some(bottle), Some(archive)) = (&built.git, &built.bottle, &archive) {
        // Like the proxy part: plain `cargo xtask bench` runs it with its defaults.
        let (part, git_args): (&str, &[String]) = match parts {
            Parts::Git => ("git", &args),
            _ => ("", &[]),
        };
        let mut cmd = Command::new(bench);
        cmd.arg("--bottle-bin")
            .arg(bottle)
            .arg("--archive")
            .arg(archive)
            .arg("--out")
            .arg(target_dir.join("bench/git.md"))
            .arg("--cache")
            .arg(target_dir.join("bench/git-cache"))
            .args(["--command", &shown(part, git_args)]);
        cmd.args(git_args);
        sh(&mut cmd)?;
    }
    engines_result
}

/// A program on `PATH` or in the sbin directories Debian installs daemons to.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    // The real uid, from the kernel's own record (xtask has no dependencies).
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|uids| uids.split_whitespace().next())
            == Some("0")
    })
}

/// Installs Debian's `tinyproxy` and `squid` when absent. Where that cannot be done (not Debian,
/// not root, apt failing) the proxy part leaves the missing peer out and says so in its report.
fn ensure_peers() {
    let missing: Vec<&str> = ["tinyproxy", "squid"]
        .into_iter()
        .filter(|p| find_program(p).is_none())
        .collect();
    if missing.is_empty() {
        return;
    }
    if !Path::new("/etc/debian_version").exists() || !is_root() {
        eprintln!(
            "xtask bench: {} not installed and cannot be installed here (needs root on Debian); the proxy part leaves {} out",
            missing.join(" and "),
            if missing.len() == 1 { "it" } else { "them" }
        );
        return;
    }
    eprintln!(
        "xtask bench: installing Debian's {} for the proxy part",
        missing.join(" and ")
    );
    let install = || {
        sh(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null()))
    };
    // Package lists may be missing or stale on a fresh machine: refresh them only when the
    // install cannot go ahead without.
    let result = install().or_else(|_| {
        sh(Command::new("apt-get").arg("update").stdin(Stdio::null()))?;
        install()
    });
    if let Err(e) = result {
        eprintln!("xtask bench: {e}; the proxy part leaves what is missing out");
    }
}

/// What one cargo invocation built for the parts asked for.
#[derive(Debug, Default)]
struct Built {
    contenders: Option<PathBuf>,
    bottle: Option<PathBuf>,
    proxy: Option<PathBuf>,
    sidecars: Option<PathBuf>,
    service: Option<PathBuf>,
    git: Option<PathBuf>,
}

/// Builds everything the parts run in one invocation and returns the paths (cargo names bench
/// executables with a hash; its JSON messages say which).
fn build(parts: Parts) -> Result<Built, String> {
    let mut build = cargo();
    // `bench-run` (the release profile, unwinding) for all: bench targets and their
    // dependencies always unwind, so building the binaries the same way compiles every shared
    // crate once.
    build.args(["build", "--profile", "bench-run", "-p", "bottle-bench"]);
    if parts.engines() || parts.git() {
        build.args(["-p", "bottle-cli", "--bin", "bottle"]);
    }
    if parts.engines() {
        build.args(["--bench", "contenders"]);
    }
    if parts.proxy() {
        build.args([
            "-p",
            "bottle-sidecars",
            "--bin",
            "bottle-sidecars",
            "--bench",
            "proxy",
        ]);
    }
    if parts.service() {
        build.args(["--bench", "service"]);
    }
    if parts.git() {
        build.args(["--bench", "git"]);
    }
    build.arg("--message-format=json-render-diagnostics");
    eprintln!("$ {}", show(&build));
    let out = build
        .current_dir(root())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", show(&build)))?;
    if !out.status.success() {
        return Err(format!("{} failed ({})", show(&build), out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let executable = |kind: &str, name: &str| {
        stdout
            .lines()
            .filter(|l| {
                l.contains(r#""reason":"compiler-artifact""#)
                    && l.contains(&format!(r#""kind":["{kind}"]"#))
                    && l.contains(&format!(r#""name":"{name}""#))
            })
            .find_map(|l| json_string(l, "executable"))
            .map(PathBuf::from)
            .ok_or_else(|| format!("{} did not report the {name} executable", show(&build)))
    };
    let mut built = Built::default();
    if parts.engines() {
        built.contenders = Some(executable("bench", "contenders")?);
    }
    if parts.engines() || parts.git() {
        built.bottle = Some(executable("bin", "bottle")?);
    }
    if parts.proxy() {
        built.proxy = Some(executable("bench", "proxy")?);
        built.sidecars = Some(executable("bin", "bottle-sidecars")?);
    }
    if parts.service() {
        built.service = Some(executable("bench", "service")?);
    }
    if parts.git() {
        built.git = Some(executable("bench", "git")?);
    }
    Ok(built)
}

/// The string value of `"key":"..."` in one line of cargo's JSON (paths: no escapes but `\\`).
fn json_string(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!(r#""{key}":""#))? + key.len() + 4;
    let rest = &line[start..];
    let end = rest.find('"')?;
    Some(rest[..end].replace(r"\\", r"\"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_executable_is_read_from_a_cargo_message() {
        let line = r#"{"reason":"compiler-artifact","target":{"kind":["bench"],"name":"contenders"},"executable":"/x/target/release/deps/contenders-0a1b","fresh":true}"#;
        assert_eq!(
            super::json_string(line, "executable").as_deref(),
            Some("/x/target/release/deps/contenders-0a1b")
        );
        assert_eq!(super::json_string(line, "missing"), None);
    }
}
