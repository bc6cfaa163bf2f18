//! Where the Podman API service is looked for, and how an endpoint URL is understood.
//!
//! The order is the one Podman's own tools use (`podman --remote`, `podman-remote`), with one
//! difference: where Podman takes the local default of the user it runs as, bottle tries the
//! user's rootless socket and then the rootful one, because root's and a user's services are
//! both local and either can run bottles.
//!
//! 1. `CONTAINER_CONNECTION`: a connection by name, from the connection config below;
//! 2. `CONTAINER_HOST`: a URL;
//! 3. the default connection: `Connection.Default` of `podman-connections.json` (Podman 5,
//!    `$PODMAN_CONNECTIONS_CONF`, else `$XDG_CONFIG_HOME/containers/`, for root
//!    `/etc/containers/`), else `[engine] active_service` naming one of
//!    `[engine.service_destinations.*]` in the merged `containers.conf` files (`$CONTAINERS_CONF`
//!    alone when set);
//! 4. `$XDG_RUNTIME_DIR/podman/podman.sock`, the user's rootless service;
//! 5. `/run/podman/podman.sock`, the rootful service.
//!
//! The first two and the third, when configured, are the only candidate: a user who names an
//! engine means that one. Everything here is read from files and the environment, never by
//! running `podman`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bottle_core::PortForwarding;

/// The rootful service socket.
pub(crate) const ROOTFUL_SOCKET: &str = "/run/podman/podman.sock";

/// What to tell a user when no service answers.
pub(crate) const HINT: &str =
    "no `podman system service` listens there; CONTAINER_HOST names another socket";

/// One place a Podman API service may listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Unix(PathBuf),
    /// `host:port`, plain HTTP.
    Tcp(String),
}

impl Endpoint {
    /// Parses `unix:///path`, `tcp://host:port` or `http://host:port`.
    pub(crate) fn parse(url: &str) -> Option<Self> {
        if let Some(path) = url.strip_prefix("unix://") {
            return (!path.is_empty()).then(|| Endpoint::Unix(PathBuf::from(path)));
        }
        let host = url
            .strip_prefix("tcp://")
            .or_else(|| url.strip_prefix("http://"))?
            .trim_end_matches('/');
        (!host.is_empty()).then(|| Endpoint::Tcp(host.to_string()))
    }

    pub(crate) fn url(&self) -> String {
        match self {
            Endpoint::Unix(path) => format!("unix://{}", path.display()),
            Endpoint::Tcp(host) => format!("tcp://{host}"),
        }
    }

    /// Whether the service behind this endpoint runs rootless: a unix socket not owned by root
    /// (a rootless service cannot make a root-owned one). `None` for a TCP endpoint, whose
    /// owner cannot be seen from here, and for a socket that does not exist.
    pub(crate) fn rootless(&self) -> Option<bool> {
        use std::os::unix::fs::MetadataExt;
        match self {
            Endpoint::Unix(path) => std::fs::metadata(path).ok().map(|m| m.uid() != 0),
            Endpoint::Tcp(_) => None,
        }
    }

    /// How the service behind this endpoint forwards published ports. A rootful service puts
    /// bridge networks on netavark or CNI, which forward ports with kernel DNAT, so a
    /// connection to a published port is refused until a daemon listens. A rootless service
    /// publishes through `rootlessport`, a user-space forwarder that listens on the host
    /// address itself and accepts before anything listens in the container (the adapter's test
    /// `published_port_behaves_as_reported` checks both against the engine). A TCP endpoint
    /// says nothing about its owner: `Proxied`, the safe answer.
    pub(crate) fn port_forwarding(&self) -> PortForwarding {
        match self.rootless() {
            Some(false) => PortForwarding::Direct,
            Some(true) | None => PortForwarding::Proxied,
        }
    }

    pub(crate) fn podman(
        &self,
        version: podman_api::ApiVersion,
    ) -> Result<podman_api::Podman, podman_api::Error> {
        match self {
            Endpoint::Unix(path) => Ok(podman_api::Podman::unix_versioned(path, version)),
            Endpoint::Tcp(host) => podman_api::Podman::tcp_versioned(host, version),
        }
    }
}

/// A Podman endpoint as discovery found it: where, and why this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodmanEndpoint {
    /// `unix:///run/user/1000/podman/podman.sock`, `tcp://host:port`.
    pub uri: String,
    /// How it was chosen, in words, for `doctor`: `CONTAINER_HOST`, `default connection "dev"
    /// in /etc/containers/containers.conf`, `$XDG_RUNTIME_DIR/podman/podman.sock (the user's
    /// rootless service)`, `/run/podman/podman.sock (the rootful service)`.
    pub source: String,
    /// Whether the service runs rootless (a unix socket not owned by root); `None` when that
    /// cannot be seen from here (a TCP endpoint, a socket that does not exist yet).
    pub rootless: Option<bool>,
}

/// A candidate: the endpoint and why it is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub endpoint: Endpoint,
    pub source: String,
}

impl Candidate {
    pub(crate) fn describe(&self) -> PodmanEndpoint {
        PodmanEndpoint {
            uri: self.endpoint.url(),
            source: self.source.clone(),
            rootless: self.endpoint.rootless(),
        }
    }
}

/// The environment discovery reads, gathered so that tests can give their own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Env {
    pub container_connection: Option<String>,
    pub container_host: Option<String>,
    pub containers_conf: Option<String>,
    pub podman_connections_conf: Option<String>,
    pub xdg_config_home: Option<String>,
    pub xdg_runtime_dir: Option<String>,
    pub home: Option<String>,
    /// Whether the process runs as root (Podman reads root's config from `/etc` only).
    pub root: bool,
}

impl Env {
    /// This process's environment.
    pub(crate) fn current() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Env {
            container_connection: var("CONTAINER_CONNECTION"),
            container_host: var("CONTAINER_HOST"),
            containers_conf: var("CONTAINERS_CONF"),
            podman_connections_conf: var("PODMAN_CONNECTIONS_CONF"),
            xdg_config_home: var("XDG_CONFIG_HOME"),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            home: var("HOME"),
            root: nix::unistd::geteuid().is_root(),
        }
    }

    /// The user's configuration directory of the container tools (`~/.config/containers`).
    fn user_config_dir(&self) -> Option<PathBuf> {
        self.xdg_config_home
            .as_ref()
            .map(PathBuf::from)
            .or_else(|| self.home.as_ref().map(|h| Path::new(h).join(".config")))
            .map(|d| d.join("containers"))
    }
}

/// What discovery reads from the file system, so that tests can give their own.
pub(crate) trait Files {
    /// The file's text, `None` when it cannot be read.
    fn read(&self, path: &Path) -> Option<String>;
    /// The `*.conf` files of a directory, sorted by name (empty when it cannot be read).
    fn conf_dir(&self, dir: &Path) -> Vec<PathBuf>;
}

/// The real file system.
pub(crate) struct RealFiles;

impl Files for RealFiles {
    fn read(&self, path: &Path) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }

    fn conf_dir(&self, dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }
}

/// The connections configured for Podman: name -> (URI, the file that says so), and the
/// default connection's name with its file.
#[derive(Debug, Default)]
struct Connections {
    named: BTreeMap<String, (String, PathBuf)>,
    default: Option<(String, PathBuf)>,
}

impl Connections {
    /// `containers.conf` files in the order Podman merges them (a later one wins), then
    /// `podman-connections.json`, whose entries and default win over all of them as in Podman 5.
    fn read(env: &Env, files: &dyn Files) -> Result<Self, String> {
        let mut out = Connections::default();
        let confs: Vec<PathBuf> = match &env.containers_conf {
            Some(only) => vec![PathBuf::from(only)],
            None => {
                let mut v = vec![
                    PathBuf::from("/usr/share/containers/containers.conf"),
                    PathBuf::from("/etc/containers/containers.conf"),
                ];
                v.extend(files.conf_dir(Path::new("/etc/containers/containers.conf.d")));
                if !env.root {
                    if let Some(dir) = env.user_config_dir() {
                        v.push(dir.join("containers.conf"));
                        v.extend(files.conf_dir(&dir.join("containers.conf.d")));
                    }
                }
                v
            }
        };
        for path in confs {
            let Some(text) = files.read(&path) else {
                continue;
            };
            let table: toml::Table = text
                .parse()
                .map_err(|e| format!("{} is not valid TOML: {e}", path.display()))?;
            let Some(engine) = table.get("engine").and_then(|e| e.as_table()) else {
                continue;
            };
            if let Some(dests) = engine
                .get("service_destinations")
                .and_then(|d| d.as_table())
            {
                for (name, dest) in dests {
                    if let Some(uri) = dest.get("uri").and_then(|u| u.as_str()) {
                        out.named
                            .insert(name.clone(), (uri.to_string(), path.clone()));
                    }
                }
            }
            if let Some(active) = engine.get("active_service").and_then(|a| a.as_str()) {
                out.default = (!active.is_empty()).then(|| (active.to_string(), path.clone()));
            }
        }
        let json_path = match (&env.podman_connections_conf, env.root) {
            (Some(p), _) => Some(PathBuf::from(p)),
            (None, true) => Some(PathBuf::from("/etc/containers/podman-connections.json")),
            (None, false) => env
                .user_config_dir()
                .map(|d| d.join("podman-connections.json")),
        };
        if let Some(path) = json_path {
            if let Some(text) = files.read(&path) {
                let json: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?;
                let conn = &json["Connection"];
                if let Some(map) = conn["Connections"].as_object() {
                    for (name, c) in map {
                        if let Some(uri) = c["URI"].as_str() {
                            out.named
                                .insert(name.clone(), (uri.to_string(), path.clone()));
                        }
                    }
                }
                if let Some(name) = conn["Default"].as_str().filter(|n| !n.is_empty()) {
                    out.default = Some((name.to_string(), path.clone()));
                }
            }
        }
        Ok(out)
    }

    /// The endpoint of connection `name`, chosen because of `why`.
    fn endpoint(&self, name: &str, why: &str) -> Result<Candidate, String> {
        let (uri, file) = self
            .named
            .get(name)
            .ok_or_else(|| format!("{why} names connection \"{name}\", which no containers.conf or podman-connections.json defines (`podman system connection list` shows the defined ones)"))?;
        let endpoint = Endpoint::parse(uri).ok_or_else(|| {
            format!(
                "{why}: connection \"{name}\" in {} is {uri}; bottle reaches Podman over unix:// or tcp:// only (for a Podman machine, set CONTAINER_HOST=unix://<its API socket>, which `podman machine inspect` shows)",
                file.display()
            )
        })?;
        Ok(Candidate {
            endpoint,
            source: format!("{why}: connection \"{name}\" in {}", file.display()),
        })
    }
}

/// The endpoints to try, in order (see the module docs).
pub(crate) fn candidates(env: &Env, files: &dyn Files) -> Result<Vec<Candidate>, String> {
    if let Some(name) = &env.container_connection {
        let conns = Connections::read(env, files)?;
        return conns
            .endpoint(name, "CONTAINER_CONNECTION")
            .map(|c| vec![c]);
    }
    if let Some(url) = &env.container_host {
        return Endpoint::parse(url)
            .map(|endpoint| {
                vec![Candidate {
                    endpoint,
                    source: "CONTAINER_HOST".into(),
                }]
            })
            .ok_or_else(|| {
                format!("CONTAINER_HOST={url} is not a unix:///path or tcp://host:port URL")
            });
    }
    let conns = Connections::read(env, files)?;
    if let Some((name, file)) = &conns.default {
        let why = format!("the default connection of {}", file.display());
        return conns.endpoint(name, &why).map(|c| vec![c]);
    }
    let mut out = Vec::new();
    if let Some(dir) = &env.xdg_runtime_dir {
        out.push(Candidate {
            endpoint: Endpoint::Unix(Path::new(dir).join("podman").join("podman.sock")),
            source: "$XDG_RUNTIME_DIR/podman/podman.sock (the user's rootless service)".into(),
        });
    }
    out.push(Candidate {
        endpoint: Endpoint::Unix(PathBuf::from(ROOTFUL_SOCKET)),
        source: format!("{ROOTFUL_SOCKET} (the rootful service)"),
    });
    Ok(out)
}

/// The endpoint [`PodmanRuntime::connect`](crate::PodmanRuntime::connect) would try first
/// without contacting anything: the named one, else the first local socket that exists, else
/// the rootful socket. For `bottle doctor`; once connected,
/// [`PodmanRuntime::discovered`](crate::PodmanRuntime::discovered) says which one answered.
///
/// Fails with a message naming the variable or file when the configuration names something
/// bottle cannot use (an unknown connection, an `ssh://` one, a malformed URL or file).
pub fn discover() -> Result<PodmanEndpoint, String> {
    let all = candidates(&Env::current(), &RealFiles)?;
    let found = all
        .iter()
        .find(|c| match &c.endpoint {
            Endpoint::Unix(path) => path.exists(),
            Endpoint::Tcp(_) => true,
        })
        .or(all.last())
        .expect("candidates always holds the rootful socket");
    Ok(found.describe())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Files held in memory.
    #[derive(Default)]
    struct Fake(HashMap<PathBuf, String>);

    impl Fake {
        fn with(mut self, path: &str, text: &str) -> Self {
            self.0.insert(PathBuf::from(path), text.to_string());
            self
        }
    }

    impl Files for Fake {
        fn read(&self, path: &Path) -> Option<String> {
            self.0.get(path).cloned()
        }
        fn conf_dir(&self, dir: &Path) -> Vec<PathBuf> {
            let mut v: Vec<PathBuf> = self
                .0
                .keys()
                .filter(|p| p.parent() == Some(dir))
                .cloned()
                .collect();
            v.sort();
            v
        }
    }

    fn user() -> Env {
        Env {
            home: Some("/var/lib/u".into()),
            xdg_runtime_dir: Some("/run/user/1000".into()),
            ..Env::default()
        }
    }

    const SYSTEM_CONF: &str = "/etc/containers/containers.conf";
    const USER_CONF: &str = "/var/lib/u/.config/containers/containers.conf";
    const USER_JSON: &str = "/var/lib/u/.config/containers/podman-connections.json";

    const CONF_DEV: &str = r#"
[engine]
active_service = "dev"
[engine.service_destinations.dev]
uri = "unix:///srv/dev/podman.sock"
[engine.service_destinations.prod]
uri = "tcp://127.0.0.1:8080"
"#;

    const JSON_MACHINE: &str = r#"{"Connection":{"Default":"local","Connections":{
        "local":{"URI":"unix:///run/user/1000/other.sock","Identity":"","IsMachine":false},
        "machine":{"URI":"ssh://core@127.0.0.1:50000/run/user/501/podman/podman.sock","Identity":"/k","IsMachine":true}}},"Farm":{}}"#;

    /// (case, environment, files, expected URIs in order or the error's start).
    #[allow(clippy::type_complexity)]
    fn cases() -> Vec<(
        &'static str,
        Env,
        Fake,
        Result<Vec<&'static str>, &'static str>,
    )> {
        let env = |f: fn(&mut Env)| {
            let mut e = user();
            f(&mut e);
            e
        };
        vec![
            (
                "nothing configured: the user's socket, then the rootful one",
                user(),
                Fake::default(),
                Ok(vec!["unix:///run/user/1000/podman/podman.sock", "unix:///run/podman/podman.sock"]),
            ),
            (
                "no XDG_RUNTIME_DIR: the rootful socket only",
                env(|e| e.xdg_runtime_dir = None),
                Fake::default(),
                Ok(vec!["unix:///run/podman/podman.sock"]),
            ),
            (
                "CONTAINER_HOST alone, over every configured connection",
                env(|e| e.container_host = Some("tcp://127.0.0.1:8888/".into())),
                Fake::default().with(SYSTEM_CONF, CONF_DEV),
                Ok(vec!["tcp://127.0.0.1:8888"]),
            ),
            (
                "CONTAINER_CONNECTION wins over CONTAINER_HOST",
                env(|e| {
                    e.container_host = Some("unix:///tmp/x.sock".into());
                    e.container_connection = Some("prod".into());
                }),
                Fake::default().with(SYSTEM_CONF, CONF_DEV),
                Ok(vec!["tcp://127.0.0.1:8080"]),
            ),
            (
                "an unknown connection name is an error",
                env(|e| e.container_connection = Some("nope".into())),
                Fake::default().with(SYSTEM_CONF, CONF_DEV),
                Err("CONTAINER_CONNECTION names connection \"nope\""),
            ),
            (
                "ssh:// in CONTAINER_HOST is an error",
                env(|e| e.container_host = Some("ssh://core@host/run/podman/podman.sock".into())),
                Fake::default(),
                Err("CONTAINER_HOST=ssh://"),
            ),
            (
                "containers.conf active_service",
                user(),
                Fake::default().with(SYSTEM_CONF, CONF_DEV),
                Ok(vec!["unix:///srv/dev/podman.sock"]),
            ),
            (
                "the user's containers.conf overrides the system's default",
                user(),
                Fake::default()
                    .with(SYSTEM_CONF, CONF_DEV)
                    .with(USER_CONF, "[engine]\nactive_service = \"prod\"\n"),
                Ok(vec!["tcp://127.0.0.1:8080"]),
            ),
            (
                "a drop-in of containers.conf.d comes after containers.conf",
                user(),
                Fake::default()
                    .with(SYSTEM_CONF, CONF_DEV)
                    .with("/etc/containers/containers.conf.d/50-x.conf", "[engine]\nactive_service = \"prod\"\n"),
                Ok(vec!["tcp://127.0.0.1:8080"]),
            ),
            (
                "root does not read a user's containers.conf",
                env(|e| e.root = true),
                Fake::default()
                    .with(SYSTEM_CONF, CONF_DEV)
                    .with(USER_CONF, "[engine]\nactive_service = \"prod\"\n"),
                Ok(vec!["unix:///srv/dev/podman.sock"]),
            ),
            (
                "CONTAINERS_CONF replaces every other containers.conf",
                env(|e| e.containers_conf = Some("/tmp/only.conf".into())),
                Fake::default()
                    .with(SYSTEM_CONF, CONF_DEV)
                    .with("/tmp/only.conf", "[engine]\nnum_locks = 4\n"),
                Ok(vec!["unix:///run/user/1000/podman/podman.sock", "unix:///run/podman/podman.sock"]),
            ),
            (
                "podman-connections.json's default wins over containers.conf's",
                user(),
                Fake::default().with(SYSTEM_CONF, CONF_DEV).with(USER_JSON, JSON_MACHINE),
                Ok(vec!["unix:///run/user/1000/other.sock"]),
            ),
            (
                "XDG_CONFIG_HOME moves the user's files",
                env(|e| e.xdg_config_home = Some("/cfg".into())),
                Fake::default().with("/cfg/containers/podman-connections.json", JSON_MACHINE),
                Ok(vec!["unix:///run/user/1000/other.sock"]),
            ),
            (
                "PODMAN_CONNECTIONS_CONF names the json file",
                env(|e| e.podman_connections_conf = Some("/tmp/c.json".into())),
                Fake::default().with("/tmp/c.json", JSON_MACHINE),
                Ok(vec!["unix:///run/user/1000/other.sock"]),
            ),
            (
                "root's json file is under /etc",
                env(|e| e.root = true),
                Fake::default()
                    .with(USER_JSON, JSON_MACHINE)
                    .with("/etc/containers/podman-connections.json", JSON_MACHINE.replace("other.sock", "root.sock").as_str()),
                Ok(vec!["unix:///run/user/1000/root.sock"]),
            ),
            (
                "a default ssh:// connection (a Podman machine) is an error naming the fix",
                user(),
                Fake::default().with(USER_JSON, &JSON_MACHINE.replace("\"Default\":\"local\"", "\"Default\":\"machine\"")),
                Err("the default connection of /var/lib/u/.config/containers/podman-connections.json: connection \"machine\""),
            ),
            (
                "a default naming an undefined connection is an error",
                user(),
                Fake::default().with(SYSTEM_CONF, "[engine]\nactive_service = \"gone\"\n"),
                Err("the default connection of /etc/containers/containers.conf names connection \"gone\""),
            ),
            (
                "a malformed containers.conf is an error naming the file",
                user(),
                Fake::default().with(USER_CONF, "[engine\n"),
                Err("/var/lib/u/.config/containers/containers.conf is not valid TOML"),
            ),
        ]
    }

    #[test]
    fn discovery_follows_podmans_order() {
        for (case, env, files, want) in cases() {
            let got = candidates(&env, &files);
            match (got, want) {
                (Ok(got), Ok(want)) => {
                    let uris: Vec<String> = got.iter().map(|c| c.endpoint.url()).collect();
                    assert_eq!(uris, want, "{case}");
                }
                (Err(got), Err(want)) => assert!(got.starts_with(want), "{case}: {got}"),
                (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn each_candidate_says_why_it_was_chosen() {
        let got = candidates(&user(), &Fake::default().with(SYSTEM_CONF, CONF_DEV)).unwrap();
        assert_eq!(
            got[0].source,
            "the default connection of /etc/containers/containers.conf: connection \"dev\" in /etc/containers/containers.conf"
        );
        let got = candidates(&user(), &Fake::default()).unwrap();
        assert!(got[0].source.contains("rootless"), "{:?}", got[0]);
        assert!(got[1].source.contains("rootful"), "{:?}", got[1]);
    }

    #[test]
    fn only_a_root_owned_socket_means_kernel_forwarding() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir();
        let mine = std::fs::metadata(&dir).map(|m| m.uid()).unwrap_or(0);
        let (rootless, expected) = if mine == 0 {
            (Some(false), PortForwarding::Direct)
        } else {
            (Some(true), PortForwarding::Proxied)
        };
        assert_eq!(Endpoint::Unix(dir.clone()).rootless(), rootless);
        assert_eq!(Endpoint::Unix(dir).port_forwarding(), expected);
        let absent = Endpoint::Unix(PathBuf::from("/nonexistent/bottle/podman.sock"));
        assert_eq!(absent.rootless(), None);
        assert_eq!(absent.port_forwarding(), PortForwarding::Proxied);
        let tcp = Endpoint::Tcp("127.0.0.1:8888".into());
        assert_eq!(tcp.port_forwarding(), PortForwarding::Proxied);
    }
}
