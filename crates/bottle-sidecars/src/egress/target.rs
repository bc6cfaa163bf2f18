//! Where a request wants to go: the target of `CONNECT host:port` or of an absolute-form
//! `http://host[:port]/...` request, and the `Host` header checked against it.
//!
//! Authorities are split and their ports parsed here, strictly, rather than through the `http`
//! crate's lenient accessors (which read `host:99999` and `host:+80` as "no port", and a
//! missing port must never become a default one).

use bottle_core::allowlist::{parse_port, Host};

/// A request's target: canonical host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub host: Host,
    pub port: u16,
}

impl Target {
    /// `host:port`, bracketing IPv6 addresses.
    pub fn host_port(&self) -> String {
        host_port(&self.host, self.port)
    }

    /// The `Host` header value the upstream gets: the port is left out when it is the scheme's.
    pub fn host_header(&self, default_port: u16) -> String {
        if self.port == default_port {
            bracketed(&self.host)
        } else {
            self.host_port()
        }
    }
}

/// `host:port`, bracketing an IPv6 address.
pub fn host_port(host: &Host, port: u16) -> String {
    format!("{}:{port}", bracketed(host))
}

fn bracketed(host: &Host) -> String {
    match host {
        Host::Ip(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
        other => other.to_string(),
    }
}

/// Why an authority was refused (the client gets a 400 saying so).
pub type BadTarget = String;

/// Reads `host[:port]`. `default_port` is used only when no `:` follows the host; a `:` with
/// anything but 1-65535 after it is an error. Userinfo is refused.
pub fn parse_authority(text: &str, default_port: Option<u16>) -> Result<Target, BadTarget> {
    if text.contains('@') {
        return Err(format!(
            "{text:?} carries userinfo; credentials do not go in a target"
        ));
    }
    let (host, port) = split_host_port(text);
    let port = match (port, default_port) {
        (Some(p), _) => {
            parse_port(p).ok_or_else(|| format!("{text:?} has a port that is not 1-65535"))?
        }
        (None, Some(d)) => d,
        (None, None) => return Err(format!("{text:?} needs a port (host:port)")),
    };
    let host = Host::parse(host).ok_or_else(|| format!("{text:?} has an invalid host"))?;
    Ok(Target { host, port })
}

/// Splits off the port at the last `:`, unless the host is a bare IPv6 address.
fn split_host_port(text: &str) -> (&str, Option<&str>) {
    if text.starts_with('[') {
        return match text.rsplit_once("]:") {
            Some((h, p)) => (&text[..h.len() + 1], Some(p)),
            None => (text, None),
        };
    }
    match text.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (text, None),
    }
}

/// Whether a `Host` header value names `target` (same host in any spelling, same port;
/// `default_port` is what a port-less value means, `None` for CONNECT where it means any).
pub fn host_matches(
    value: &str,
    target: &Target,
    default_port: Option<u16>,
) -> Result<bool, BadTarget> {
    let parsed =
        parse_authority(value, Some(0)).map_err(|_| format!("unreadable Host header {value:?}"))?;
    let port_ok = match (parsed.port, default_port) {
        (0, None) => true,
        (0, Some(d)) => d == target.port,
        (p, _) => p == target.port,
    };
    Ok(parsed.host == target.host && port_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, default: Option<u16>, expect: Result<&str, &str>) {
        let got = parse_authority(text, default).map(|t| t.host_port());
        match (got, expect) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{text}"),
            (Err(e), Err(part)) => assert!(e.contains(part), "{text}: {e}"),
            (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn authorities() {
        check("a.test:443", None, Ok("a.test:443"));
        check("A.Test.:443", None, Ok("a.test:443"));
        check("a.test", Some(80), Ok("a.test:80"));
        check("a.test", None, Err("needs a port"));
        check("a.test:", Some(80), Err("port"));
        check("a.test:0", Some(80), Err("port"));
        check("a.test:65536", Some(80), Err("port"));
        check("a.test:99999", Some(80), Err("port"));
        check("a.test:+80", Some(80), Err("port"));
        check("a.test:8_0", Some(80), Err("port"));
        check("[::1]:443", None, Ok("[::1]:443"));
        check("[::1]", Some(80), Ok("[::1]:80"));
        check("[::ffff:127.0.0.1]:80", None, Ok("127.0.0.1:80"));
        check("2130706433:80", None, Ok("127.0.0.1:80"));
        check("user@a.test:443", None, Err("userinfo"));
        check("a.test:443:443", Some(443), Err("invalid host"));
        check("[::1]x:443", Some(443), Err("invalid host"));
    }

    #[test]
    fn host_headers() {
        let t = parse_authority("a.test:80", None).unwrap();
        assert!(host_matches("a.test", &t, Some(80)).unwrap());
        assert!(host_matches("A.TEST.:80", &t, Some(80)).unwrap());
        assert!(!host_matches("a.test:8080", &t, Some(80)).unwrap());
        assert!(!host_matches("b.test", &t, Some(80)).unwrap());
        assert!(host_matches("x y", &t, Some(80)).is_err());
        let c = parse_authority("a.test:443", None).unwrap();
        assert!(host_matches("a.test", &c, None).unwrap());
        assert!(!host_matches("a.test:80", &c, None).unwrap());
    }
}
