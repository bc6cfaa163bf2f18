//! Where the Docker engine is, found the way the `docker` CLI finds it, and how it was chosen.
//!
//! Precedence, as the CLI has it: the `--context` flag, then `DOCKER_HOST`, then
//! `DOCKER_CONTEXT`, then the `currentContext` of `$DOCKER_CONFIG/config.json` (default
//! `~/.docker/config.json`), then the default socket. The context named `default` is
//! `DOCKER_HOST` (with `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH`) or the default socket. Any
//! other context is read from the CLI's context store: its endpoint from
//! `contexts/meta/<sha256 of the name>/meta.json`, its TLS material from
//! `contexts/tls/<sha256 of the name>/docker/{ca,cert,key}.pem`.
//!
//! Discovery reads files and the environment only; nothing here talks to an engine. Its
//! inputs are a plain [`Sources`] value, so precedence is tested without touching the process
//! environment.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The socket `dockerd` listens on by default.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Where an `ssh://` engine's socket is on its host (the tunnel forwards to it).
pub const REMOTE_SOCKET: &str = "/var/run/docker.sock";

/// The name of the context that means "`DOCKER_HOST`, else the default socket".
pub const DEFAULT_CONTEXT: &str = "default";

/// Everything discovery reads, gathered once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    /// `--context NAME`.
    pub context_flag: Option<String>,
    /// `DOCKER_HOST`.
    pub docker_host: Option<String>,
    /// `DOCKER_CONTEXT`.
    pub docker_context: Option<String>,
    /// Whether `DOCKER_TLS_VERIFY` is set to something other than the empty string.
    pub tls_verify: bool,
    /// `DOCKER_CERT_PATH`.
    pub cert_path: Option<PathBuf>,
    /// `DOCKER_CONFIG`, else `~/.docker`.
    pub config_dir: PathBuf,
    /// `HOME`, to show paths under it as `~/...`.
    pub home: Option<PathBuf>,
    /// [`SSH_CONFIG_VAR`]: an ssh configuration file for `ssh://` engines.
    pub ssh_config: Option<PathBuf>,
}

/// The variable naming an ssh configuration file to use instead of `~/.ssh/config` (passed to
/// `ssh` as `-F`).
pub const SSH_CONFIG_VAR: &str = "BOTTLE_SSH_CONFIG";

impl Sources {
    /// The process environment, with `context_flag` from the command line.
    pub fn from_env(context_flag: Option<&str>) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let home = var("HOME").map(PathBuf::from);
        let config_dir = var("DOCKER_CONFIG").map(PathBuf::from).unwrap_or_else(|| {
            home.clone()
                .unwrap_or_else(|| PathBuf::from("/"))
                .join(".docker")
        });
        Sources {
            context_flag: context_flag.map(str::to_string),
            docker_host: var("DOCKER_HOST"),
            docker_context: var("DOCKER_CONTEXT"),
            tls_verify: var("DOCKER_TLS_VERIFY").is_some(),
            cert_path: var("DOCKER_CERT_PATH").map(PathBuf::from),
            config_dir,
            home,
            ssh_config: var(SSH_CONFIG_VAR).map(PathBuf::from),
        }
    }

    /// `path` shown with `~` for the home directory.
    fn show(&self, path: &Path) -> String {
        match self.home.as_deref().and_then(|h| path.strip_prefix(h).ok()) {
            Some(rest) => format!("~/{}", rest.display()),
            None => path.display().to_string(),
        }
    }
}

/// An engine's address and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The address as given (`unix:///…`, `tcp://host:port`, `ssh://user@host:port`).
    pub host: String,
    pub transport: Transport,
    /// How it was chosen: `--context ci`, `DOCKER_HOST`, `DOCKER_CONTEXT=ci`, `context ci
    /// from ~/.docker/config.json`, `default socket`.
    pub chosen_by: String,
}

/// How the engine's API is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A unix socket on this host.
    Unix(PathBuf),
    /// HTTP over TCP at `addr` (`host:port`), with TLS when `tls` is there.
    Tcp { addr: String, tls: Option<TlsFiles> },
    /// The engine's socket on another host, forwarded through `ssh`.
    Ssh(SshDestination),
}

/// The CA that signs the engine's certificate, and the client's certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `ssh://[user@]host[:port]`, and the ssh configuration file to use, if not the user's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshDestination {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub config: Option<PathBuf>,
}

/// Whose loopback a bottle's published ports are on, seen from this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locality {
    /// A unix socket: the engine's host is this one (or a VM this host forwards for).
    Local,
    /// `tcp://` or `ssh://` to an address of this host: a remote transport, the same host.
    ThisHost,
    /// Another host: its loopback is not this one's.
    Remote,
}

impl Locality {
    /// `"local"`, `"this-host"`, `"remote"`, as `doctor` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Locality::Local => "local",
            Locality::ThisHost => "this-host",
            Locality::Remote => "remote",
        }
    }
}

impl Endpoint {
    /// Where the engine runs, judged from the address alone (a name is resolved; an address
    /// counts as this host's when it is loopback or a socket can be bound to it).
    pub fn locality(&self) -> Locality {
        match &self.transport {
            Transport::Unix(_) => Locality::Local,
            Transport::Tcp { addr, .. } => host_locality(split_port(addr).0),
            Transport::Ssh(d) => host_locality(&ssh_hostname(d).unwrap_or_else(|| d.host.clone())),
        }
    }

    /// Whether the address travels over a network transport (`tcp://`, `ssh://`).
    pub fn is_remote_transport(&self) -> bool {
        !matches!(self.transport, Transport::Unix(_))
    }
}

/// The host `ssh` would connect to for `dest`, after the user's ssh config (`Host` aliases,
/// `HostName`), as `ssh -G` prints it without connecting; `None` when ssh cannot say.
fn ssh_hostname(dest: &SshDestination) -> Option<String> {
    let mut ssh = std::process::Command::new("ssh");
    ssh.arg("-G");
    if let Some(config) = &dest.config {
        ssh.arg("-F").arg(config);
    }
    if let Some(port) = dest.port {
        ssh.args(["-p", &port.to_string()]);
    }
    ssh.args(["--", &dest.host]);
    let out = ssh
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("hostname "))
        .map(|h| h.trim().to_string())
}

fn host_locality(host: &str) -> Locality {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) if host.eq_ignore_ascii_case("localhost") => return Locality::ThisHost,
        Err(_) => match (host, 0).to_socket_addrs() {
            Ok(found) => found.map(|a| a.ip()).collect(),
            Err(_) => Vec::new(),
        },
    };
    let here = |ip: &IpAddr| ip.is_loopback() || UdpSocket::bind((*ip, 0)).is_ok();
    if !addrs.is_empty() && addrs.iter().all(here) {
        Locality::ThisHost
    } else {
        Locality::Remote
    }
}

/// Why no endpoint could be worked out; nothing was sent to any engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointError {
    /// Where the bad value came from: `--context ci`, `DOCKER_HOST`, a file.
    pub source: String,
    pub problem: String,
    pub hint: String,
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.problem)
    }
}

impl std::error::Error for EndpointError {}

fn error(source: impl Into<String>, problem: impl Into<String>, hint: &str) -> EndpointError {
    EndpointError {
        source: source.into(),
        problem: problem.into(),
        hint: hint.into(),
    }
}

/// The engine's endpoint by the CLI's precedence.
pub fn discover(sources: &Sources) -> Result<Endpoint, EndpointError> {
    if let Some(name) = &sources.context_flag {
        return named_context(sources, name, format!("--context {name}"));
    }
    if sources.docker_host.is_some() {
        return default_context(sources, None);
    }
    if let Some(name) = &sources.docker_context {
        return named_context(sources, name, format!("DOCKER_CONTEXT={name}"));
    }
    let config = sources.config_dir.join("config.json");
    if let Some(name) = current_context(&config, sources)? {
        let how = format!("context {name} from {}", sources.show(&config));
        return named_context(sources, &name, how);
    }
    default_context(sources, None)
}

/// `currentContext` of the CLI's config file; `None` when the file or the key is absent.
fn current_context(config: &Path, sources: &Sources) -> Result<Option<String>, EndpointError> {
    #[derive(Deserialize)]
    struct Config {
        #[serde(rename = "currentContext", default)]
        current_context: Option<String>,
    }
    let text = match std::fs::read_to_string(config) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(error(
                sources.show(config),
                format!("cannot read the docker CLI's config file: {e}"),
                "make it readable, or set DOCKER_CONFIG to another directory",
            ))
        }
    };
    let parsed: Config = serde_json::from_str(&text).map_err(|e| {
        error(
            sources.show(config),
            format!("is not valid JSON: {e}"),
            "fix the file, or set DOCKER_CONFIG to another directory",
        )
    })?;
    Ok(parsed.current_context.filter(|c| !c.is_empty()))
}

/// The context `name`, chosen as `how`.
fn named_context(sources: &Sources, name: &str, how: String) -> Result<Endpoint, EndpointError> {
    if name == DEFAULT_CONTEXT {
        return default_context(sources, Some(how));
    }
    let id = context_id(name);
    let contexts = sources.config_dir.join("contexts");
    let meta_path = contexts.join("meta").join(&id).join("meta.json");
    let text = match std::fs::read_to_string(&meta_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(error(
                how,
                format!(
                    "context {name:?} does not exist (no {})",
                    sources.show(&meta_path)
                ),
                "create it with `docker context create`, list them with `docker context ls`, or set DOCKER_CONFIG to the directory that holds it",
            ))
        }
        Err(e) => {
            return Err(error(
                how,
                format!("cannot read {}: {e}", sources.show(&meta_path)),
                "make the context store readable",
            ))
        }
    };
    let docker = parse_meta(&text).map_err(|problem| {
        error(
            &how,
            format!("context {name:?}: {} {problem}", sources.show(&meta_path)),
            "recreate the context with `docker context create`",
        )
    })?;
    if docker.skip_tls_verify {
        return Err(error(
            how,
            format!("context {name:?} sets SkipTLSVerify: bottle does not drive an engine whose certificate it cannot check"),
            "give the context the engine's CA (`docker context update --docker host=...,ca=...,cert=...,key=...`)",
        ));
    }
    let tls_dir = contexts.join("tls").join(&id).join("docker");
    let tls = if tls_dir.is_dir() {
        Some(tls_files(&tls_dir, sources).map_err(|problem| {
            error(
                &how,
                format!("context {name:?}: {problem}"),
                "give the context all three of ca, cert and key (`docker context update --docker ...`)",
            )
        })?)
    } else {
        None
    };
    let transport = parse_host(&docker.host, tls)
        .map_err(|problem| {
            error(
                &how,
                format!("context {name:?} has host {:?}: {problem}", docker.host),
                "recreate the context with a unix://, tcp:// or ssh:// host",
            )
        })
        .map(|t| with_ssh_config(t, sources))?;
    Ok(Endpoint {
        host: docker.host,
        transport,
        chosen_by: how,
    })
}

/// `DOCKER_HOST` (with `DOCKER_TLS_VERIFY`), else the default socket; `how` when a context
/// named `default` was asked for.
fn default_context(sources: &Sources, how: Option<String>) -> Result<Endpoint, EndpointError> {
    let (host, chosen_by) = match &sources.docker_host {
        Some(host) => (
            host.clone(),
            how.map_or_else(
                || "DOCKER_HOST".to_string(),
                |h| format!("{h} (DOCKER_HOST)"),
            ),
        ),
        None => (
            format!("unix://{DEFAULT_SOCKET}"),
            how.map_or_else(
                || "default socket".to_string(),
                |h| format!("{h} (default socket)"),
            ),
        ),
    };
    let tls = if sources.tls_verify && host.starts_with("tcp://") {
        let dir = sources
            .cert_path
            .clone()
            .unwrap_or_else(|| sources.config_dir.clone());
        Some(tls_files(&dir, sources).map_err(|problem| {
            error(
                "DOCKER_TLS_VERIFY",
                problem,
                "put ca.pem, cert.pem and key.pem in DOCKER_CERT_PATH (default: the docker config directory), or unset DOCKER_TLS_VERIFY for a plain tcp:// engine",
            )
        })?)
    } else {
        None
    };
    let transport = parse_host(&host, tls)
        .map_err(|problem| {
            error(
                "DOCKER_HOST",
                format!("{host:?}: {problem}"),
                "set DOCKER_HOST to a unix://, tcp:// or ssh:// address, or unset it",
            )
        })
        .map(|t| with_ssh_config(t, sources))?;
    Ok(Endpoint {
        host,
        transport,
        chosen_by,
    })
}

/// `transport` with the ssh configuration of `sources` when it goes through ssh.
fn with_ssh_config(transport: Transport, sources: &Sources) -> Transport {
    match transport {
        Transport::Ssh(dest) => Transport::Ssh(SshDestination {
            config: sources.ssh_config.clone(),
            ..dest
        }),
        other => other,
    }
}

/// The directory name of a context in the store: the hex SHA-256 of its name.
pub fn context_id(name: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, name.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The docker endpoint of a context's `meta.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerMeta {
    pub host: String,
    pub skip_tls_verify: bool,
}

/// Reads the docker endpoint of a context's `meta.json`; the error completes "meta.json …".
pub fn parse_meta(text: &str) -> Result<DockerMeta, String> {
    #[derive(Deserialize)]
    struct Meta {
        #[serde(rename = "Endpoints", default)]
        endpoints: HashMap<String, serde_json::Value>,
    }
    #[derive(Deserialize)]
    struct Docker {
        #[serde(rename = "Host", default)]
        host: Option<String>,
        #[serde(rename = "SkipTLSVerify", default)]
        skip_tls_verify: bool,
    }
    let meta: Meta = serde_json::from_str(text).map_err(|e| format!("is not valid JSON: {e}"))?;
    let docker = meta
        .endpoints
        .get("docker")
        .ok_or("has no docker endpoint")?;
    let docker: Docker = serde_json::from_value(docker.clone())
        .map_err(|e| format!("has a malformed docker endpoint: {e}"))?;
    let host = docker
        .host
        .filter(|h| !h.is_empty())
        .ok_or("has a docker endpoint without a Host")?;
    Ok(DockerMeta {
        host,
        skip_tls_verify: docker.skip_tls_verify,
    })
}

/// `ca.pem`, `cert.pem` and `key.pem` in `dir`, each required.
fn tls_files(dir: &Path, sources: &Sources) -> Result<TlsFiles, String> {
    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    let missing: Vec<String> = [&files.ca, &files.cert, &files.key]
        .into_iter()
        .filter(|p| !p.is_file())
        .map(|p| sources.show(p))
        .collect();
    if missing.is_empty() {
        Ok(files)
    } else {
        Err(format!("TLS file missing: {}", missing.join(", ")))
    }
}

/// Parses an engine address; the error says what is wrong with it.
pub fn parse_host(host: &str, tls: Option<TlsFiles>) -> Result<Transport, String> {
    if let Some(path) = host.strip_prefix("unix://") {
        if !path.starts_with('/') {
            return Err("a unix:// address needs an absolute socket path".into());
        }
        return Ok(Transport::Unix(PathBuf::from(path)));
    }
    if let Some(rest) = host.strip_prefix("tcp://") {
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') || rest.contains('@') {
            return Err("a tcp:// address is host:port, nothing more".into());
        }
        // The CLI's defaults: 2376 with TLS, 2375 without.
        let addr = match split_port(rest) {
            (_, Some(port)) => {
                port.parse::<u16>()
                    .map_err(|_| format!("port {port:?} is not a number below 65536"))?;
                rest.to_string()
            }
            (h, None) => format!("{h}:{}", if tls.is_some() { 2376 } else { 2375 }),
        };
        return Ok(Transport::Tcp { addr, tls });
    }
    if let Some(rest) = host.strip_prefix("ssh://") {
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err(
                "an ssh:// address takes no path (the engine's socket on that host is used)".into(),
            );
        }
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((user, hostport)) => {
                if user.contains(':') {
                    // Never echo it: what follows the colon is a password.
                    return Err("an ssh:// address carries no password: use a key (ssh-agent or the ssh config)".into());
                }
                (Some(user.to_string()).filter(|u| !u.is_empty()), hostport)
            }
            None => (None, rest),
        };
        let (h, port) = split_port(hostport);
        if h.is_empty() {
            return Err("an ssh:// address needs a host".into());
        }
        let port = port
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|_| format!("port {p:?} is not a number below 65536"))
            })
            .transpose()?;
        return Ok(Transport::Ssh(SshDestination {
            user,
            host: h.trim_start_matches('[').trim_end_matches(']').to_string(),
            port,
            config: None,
        }));
    }
    Err("only unix://, tcp:// and ssh:// addresses are supported".into())
}

/// `host:port` into its parts (`[v6]:port` too); the port is `None` when there is none.
fn split_port(s: &str) -> (&str, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':')),
            None => (s, None),
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the temporary directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("bottle-endpoint-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Writes a context into the store under `config`, as `docker context create` does.
    fn context(config: &Path, name: &str, meta: &str, tls: &[&str]) {
        let id = context_id(name);
        let dir = config.join("contexts/meta").join(&id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("meta.json"), meta).unwrap();
        if !tls.is_empty() {
            let dir = config.join("contexts/tls").join(&id).join("docker");
            std::fs::create_dir_all(&dir).unwrap();
            for f in tls {
                std::fs::write(dir.join(f), "pem").unwrap();
            }
        }
    }

    fn meta(name: &str, host: &str) -> String {
        format!(
            r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#
        )
    }

    /// A config directory with contexts `ci` (tcp with TLS), `sock` (a unix socket) and
    /// `remote` (ssh), and `sock` as the current context.
    fn store() -> TempDir {
        let dir = TempDir::new("store");
        let c = &dir.0;
        context(
            c,
            "ci",
            &meta("ci", "tcp://127.0.0.1:2376"),
            &["ca.pem", "cert.pem", "key.pem"],
        );
        context(
            c,
            "sock",
            &meta("sock", "unix:///run/other/docker.sock"),
            &[],
        );
        context(
            c,
            "remote",
            &meta("remote", "ssh://deploy@build.example:2222"),
            &[],
        );
        std::fs::write(
            c.join("config.json"),
            r#"{"auths":{},"currentContext":"sock"}"#,
        )
        .unwrap();
        dir
    }

    fn sources(config: &Path) -> Sources {
        Sources {
            config_dir: config.to_path_buf(),
            ..Sources::default()
        }
    }

    #[test]
    fn context_ids_are_the_sha256_of_the_name() {
        assert_eq!(
            context_id("ci"),
            "1b158839f8aa339e89bb50b1603e90ec68e0fd5565fe10a7cb32729fddf7070a"
        );
    }

    /// `--context` > `DOCKER_HOST` > `DOCKER_CONTEXT` > `currentContext` > the default socket,
    /// and `default` means `DOCKER_HOST` or the default socket wherever it is named.
    #[test]
    fn precedence_is_the_docker_clis() {
        let dir = store();
        let config_json = dir.0.join("config.json");
        let no_config = TempDir::new("empty");
        // (--context, DOCKER_HOST, DOCKER_CONTEXT, with config.json, host, chosen_by)
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            bool,
            &'a str,
            String,
        );
        let cases: &[Case<'_>] = &[
            (
                Some("ci"),
                Some("unix:///h.sock"),
                Some("remote"),
                true,
                "tcp://127.0.0.1:2376",
                "--context ci".into(),
            ),
            (
                None,
                Some("unix:///h.sock"),
                Some("remote"),
                true,
                "unix:///h.sock",
                "DOCKER_HOST".into(),
            ),
            (
                None,
                None,
                Some("remote"),
                true,
                "ssh://deploy@build.example:2222",
                "DOCKER_CONTEXT=remote".into(),
            ),
            (
                None,
                None,
                None,
                true,
                "unix:///run/other/docker.sock",
                format!("context sock from {}", config_json.display()),
            ),
            (
                None,
                None,
                None,
                false,
                "unix:///var/run/docker.sock",
                "default socket".into(),
            ),
            (
                Some("default"),
                Some("tcp://10.1.2.3:2375"),
                None,
                true,
                "tcp://10.1.2.3:2375",
                "--context default (DOCKER_HOST)".into(),
            ),
            (
                Some("default"),
                None,
                Some("ci"),
                true,
                "unix:///var/run/docker.sock",
                "--context default (default socket)".into(),
            ),
            (
                None,
                None,
                Some("default"),
                true,
                "unix:///var/run/docker.sock",
                "DOCKER_CONTEXT=default (default socket)".into(),
            ),
        ];
        for (flag, host, env_context, with_config, want_host, want_how) in cases {
            let mut s = sources(if *with_config { &dir.0 } else { &no_config.0 });
            s.context_flag = flag.map(String::from);
            s.docker_host = host.map(String::from);
            s.docker_context = env_context.map(String::from);
            let found = discover(&s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
            assert_eq!(found.host, *want_host, "{s:?}");
            assert_eq!(found.chosen_by, *want_how, "{s:?}");
        }
    }

    #[test]
    fn a_context_reads_its_endpoint_and_tls_files() {
        let dir = store();
        let mut s = sources(&dir.0);
        s.context_flag = Some("ci".into());
        let tls_dir = dir
            .0
            .join("contexts/tls")
            .join(context_id("ci"))
            .join("docker");
        assert_eq!(
            discover(&s).unwrap().transport,
            Transport::Tcp {
                addr: "127.0.0.1:2376".into(),
                tls: Some(TlsFiles {
                    ca: tls_dir.join("ca.pem"),
                    cert: tls_dir.join("cert.pem"),
                    key: tls_dir.join("key.pem"),
                }),
            }
        );
        s.context_flag = Some("remote".into());
        s.ssh_config = Some("/srv/ssh/config".into());
        assert_eq!(
            discover(&s).unwrap().transport,
            Transport::Ssh(SshDestination {
                user: Some("deploy".into()),
                host: "build.example".into(),
                port: Some(2222),
                config: Some("/srv/ssh/config".into()),
            })
        );
        s.context_flag = Some("sock".into());
        assert_eq!(
            discover(&s).unwrap().transport,
            Transport::Unix("/run/other/docker.sock".into())
        );
    }

    #[test]
    fn docker_tls_verify_takes_the_files_of_docker_cert_path() {
        let certs = TempDir::new("certs");
        let mut s = sources(&certs.0);
        s.docker_host = Some("tcp://127.0.0.1".into());
        s.tls_verify = true;
        s.cert_path = Some(certs.0.clone());
        let e = discover(&s).expect_err("no files yet");
        assert_eq!(e.source, "DOCKER_TLS_VERIFY");
        assert!(
            e.problem.contains("ca.pem") && e.problem.contains("key.pem"),
            "{e}"
        );
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(certs.0.join(f), "pem").unwrap();
        }
        match discover(&s).unwrap().transport {
            // Without a port, TLS means the CLI's 2376.
            Transport::Tcp {
                addr,
                tls: Some(files),
            } => {
                assert_eq!(addr, "127.0.0.1:2376");
                assert_eq!(files.ca, certs.0.join("ca.pem"));
            }
            other => panic!("{other:?}"),
        }
        s.tls_verify = false;
        assert_eq!(
            discover(&s).unwrap().transport,
            Transport::Tcp {
                addr: "127.0.0.1:2375".into(),
                tls: None
            }
        );
    }

    /// Every bad store names where the value came from and what is wrong.
    #[test]
    fn bad_stores_say_what_and_where() {
        let dir = store();
        context(
            &dir.0,
            "skip",
            r#"{"Name":"skip","Endpoints":{"docker":{"Host":"tcp://1.2.3.4:2376","SkipTLSVerify":true}}}"#,
            &[],
        );
        context(
            &dir.0,
            "halftls",
            &meta("halftls", "tcp://127.0.0.1:2376"),
            &["ca.pem"],
        );
        context(
            &dir.0,
            "nodocker",
            r#"{"Name":"nodocker","Endpoints":{}}"#,
            &[],
        );
        context(&dir.0, "broken", "{not json", &[]);
        context(
            &dir.0,
            "pipe",
            &meta("pipe", "npipe:////./pipe/docker_engine"),
            &[],
        );
        // (context, words the problem must contain)
        let cases: &[(&str, &[&str])] = &[
            ("nope", &["\"nope\" does not exist", "meta.json"]),
            ("skip", &["SkipTLSVerify"]),
            ("halftls", &["TLS file missing", "cert.pem", "key.pem"]),
            ("nodocker", &["no docker endpoint"]),
            ("broken", &["not valid JSON"]),
            ("pipe", &["only unix://, tcp:// and ssh://"]),
        ];
        for (name, words) in cases {
            let mut s = sources(&dir.0);
            s.context_flag = Some(name.to_string());
            let e = discover(&s).expect_err(name);
            assert_eq!(e.source, format!("--context {name}"));
            for w in *words {
                assert!(e.problem.contains(w), "{name}: {e}");
            }
            assert!(!e.hint.is_empty());
        }
        std::fs::write(dir.0.join("config.json"), "{").unwrap();
        let e = discover(&sources(&dir.0)).expect_err("bad config.json");
        assert!(
            e.source.ends_with("config.json") && e.problem.contains("JSON"),
            "{e}"
        );
        // currentContext naming a missing context is an error, not a silent default.
        std::fs::write(dir.0.join("config.json"), r#"{"currentContext":"gone"}"#).unwrap();
        let e = discover(&sources(&dir.0)).expect_err("missing current context");
        assert!(e.source.starts_with("context gone from"), "{e}");
    }

    #[test]
    fn host_addresses() {
        // (address, Ok(transport) or Err(words))
        let ok: &[(&str, Transport)] = &[
            (
                "unix:///var/run/docker.sock",
                Transport::Unix("/var/run/docker.sock".into()),
            ),
            (
                "tcp://10.0.0.1:2375/",
                Transport::Tcp {
                    addr: "10.0.0.1:2375".into(),
                    tls: None,
                },
            ),
            (
                "tcp://[::1]:2375",
                Transport::Tcp {
                    addr: "[::1]:2375".into(),
                    tls: None,
                },
            ),
            (
                "tcp://docker.internal",
                Transport::Tcp {
                    addr: "docker.internal:2375".into(),
                    tls: None,
                },
            ),
            (
                "ssh://host",
                Transport::Ssh(SshDestination {
                    user: None,
                    host: "host".into(),
                    port: None,
                    config: None,
                }),
            ),
            (
                "ssh://me@[::1]:22",
                Transport::Ssh(SshDestination {
                    user: Some("me".into()),
                    host: "::1".into(),
                    port: Some(22),
                    config: None,
                }),
            ),
        ];
        for (host, want) in ok {
            assert_eq!(parse_host(host, None).as_ref(), Ok(want), "{host}");
        }
        let bad: &[(&str, &str)] = &[
            ("unix://relative.sock", "absolute"),
            ("tcp://", "host:port"),
            ("tcp://h:2375/path", "host:port"),
            ("tcp://h:99999", "not a number"),
            ("ssh://me@host/path", "no path"),
            ("ssh://", "needs a host"),
            ("ssh://h:port", "not a number"),
            ("fd://", "only unix://"),
            ("/var/run/docker.sock", "only unix://"),
        ];
        for (host, word) in bad {
            let e = parse_host(host, None).expect_err(host);
            assert!(e.contains(word), "{host}: {e}");
        }
        let e = parse_host("ssh://me:hunter2@host", None).expect_err("password");
        assert!(e.contains("no password") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn locality_of_addresses() {
        let at = |host: &str| Endpoint {
            host: host.into(),
            transport: parse_host(host, None).unwrap(),
            chosen_by: "test".into(),
        };
        assert_eq!(
            at("unix:///var/run/docker.sock").locality(),
            Locality::Local
        );
        assert_eq!(at("tcp://127.0.0.1:2376").locality(), Locality::ThisHost);
        assert_eq!(
            at("ssh://root@127.0.0.1:2222").locality(),
            Locality::ThisHost
        );
        assert_eq!(at("ssh://root@localhost").locality(), Locality::ThisHost);
        assert_eq!(at("tcp://[::1]:2376").locality(), Locality::ThisHost);
        // TEST-NET-3: never an address of this host.
        assert_eq!(at("tcp://203.0.113.7:2376").locality(), Locality::Remote);
        assert_eq!(at("ssh://me@203.0.113.7").locality(), Locality::Remote);
        assert!(!at("unix:///x.sock").is_remote_transport());

        // An ssh alias is judged by the host ssh would connect to. That needs ssh's client,
        // which CI installs (`cargo xtask engines`); elsewhere its absence skips this part.
        let has_ssh = std::process::Command::new("ssh")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !has_ssh && std::env::var("CI").as_deref() != Ok("true") {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("skipping the ssh alias part: no ssh client");
            }
            return;
        }
        let dir = TempDir::new("ssh");
        let config = dir.0.join("ssh_config");
        std::fs::write(
            &config,
            "Host builder\n  HostName 127.0.0.1\nHost far\n  HostName 203.0.113.7\n",
        )
        .unwrap();
        let dest = |host: &str| SshDestination {
            user: None,
            host: host.into(),
            port: None,
            config: Some(config.clone()),
        };
        let named = |host: &str| ssh_hostname(&dest(host));
        assert_eq!(named("builder").as_deref(), Some("127.0.0.1"));
        assert_eq!(named("far").as_deref(), Some("203.0.113.7"));
        assert_eq!(
            host_locality(&named("builder").unwrap()),
            Locality::ThisHost
        );
        assert_eq!(host_locality(&named("far").unwrap()), Locality::Remote);
        assert!(at("ssh://h").is_remote_transport());
    }
}
