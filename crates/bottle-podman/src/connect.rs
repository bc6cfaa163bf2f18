//! Where the Podman API service is looked for, and how an endpoint URL is understood.

use std::path::PathBuf;

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

    /// How the service behind this endpoint forwards published ports. A rootful service (its
    /// socket owned by root: a rootless one cannot make that) puts bridge networks on netavark
    /// or CNI, which forward ports with kernel DNAT, so a connection to a published port is
    /// refused until a daemon listens. Rootless Podman forwards through a userland process,
    /// and a TCP endpoint says nothing about its owner: both are `Proxied`.
    pub(crate) fn port_forwarding(&self) -> PortForwarding {
        use std::os::unix::fs::MetadataExt;
        match self {
            Endpoint::Unix(path) => match std::fs::metadata(path) {
                Ok(meta) if meta.uid() == 0 => PortForwarding::Direct,
                _ => PortForwarding::Proxied,
            },
            Endpoint::Tcp(_) => PortForwarding::Proxied,
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

/// The endpoints to try, in order: `CONTAINER_HOST` alone when set (a user who names an engine
/// means that one), else the rootful socket, then the user's.
pub(crate) fn candidates(
    container_host: Option<&str>,
    xdg_runtime_dir: Option<&str>,
) -> Result<Vec<Endpoint>, String> {
    if let Some(url) = container_host.filter(|u| !u.is_empty()) {
        return Endpoint::parse(url).map(|e| vec![e]).ok_or_else(|| {
            format!("CONTAINER_HOST={url} is not a unix:///path or tcp://host:port URL")
        });
    }
    let mut out = vec![Endpoint::Unix(PathBuf::from(ROOTFUL_SOCKET))];
    if let Some(dir) = xdg_runtime_dir.filter(|d| !d.is_empty()) {
        out.push(Endpoint::Unix(
            PathBuf::from(dir).join("podman").join("podman.sock"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_root_owned_socket_means_kernel_forwarding() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir();
        let mine = std::fs::metadata(&dir).map(|m| m.uid()).unwrap_or(0);
        let expected = if mine == 0 {
            PortForwarding::Direct
        } else {
            PortForwarding::Proxied
        };
        assert_eq!(Endpoint::Unix(dir).port_forwarding(), expected);
        let absent = Endpoint::Unix(PathBuf::from("/nonexistent/bottle/podman.sock"));
        assert_eq!(absent.port_forwarding(), PortForwarding::Proxied);
        let tcp = Endpoint::Tcp("127.0.0.1:8888".into());
        assert_eq!(tcp.port_forwarding(), PortForwarding::Proxied);
    }

    #[test]
    fn candidates_follow_container_host_then_rootful_then_user() {
        let unix = |p: &str| Endpoint::Unix(PathBuf::from(p));
        assert_eq!(
            candidates(Some("unix:///tmp/p.sock"), Some("/run/user/1")).unwrap(),
            vec![unix("/tmp/p.sock")]
        );
        assert_eq!(
            candidates(Some("tcp://127.0.0.1:8888/"), None).unwrap(),
            vec![Endpoint::Tcp("127.0.0.1:8888".into())]
        );
        assert!(candidates(Some("ssh://host"), None).is_err());
        assert_eq!(
            candidates(Some(""), Some("/run/user/1")).unwrap(),
            vec![unix(ROOTFUL_SOCKET), unix("/run/user/1/podman/podman.sock")]
        );
        assert_eq!(candidates(None, None).unwrap(), vec![unix(ROOTFUL_SOCKET)]);
    }
}
