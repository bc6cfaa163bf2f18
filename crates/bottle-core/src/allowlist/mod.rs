//! Egress allowlist rules: exact hosts, `*.suffix` patterns, IP addresses and CIDRs, each with
//! an optional port.
//!
//! The planner validates them and the bundle's egress proxy enforces them with the same code, so
//! what `bottle plan` accepts is exactly what the proxy allows.
//!
//! - [`host`]: hosts in one canonical spelling (numeric IPv4 spellings are addresses);
//! - [`addr`]: the address classes the proxy refuses unless an IP or CIDR rule names them.
//!
//! A rule without a port allows the web ports 80 and 443 only; `:*` allows every port. A
//! `/tls` suffix (`git.example.com:8443/tls`) makes the tunnels it allows carry TLS.

pub mod addr;
pub mod host;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

pub use addr::{special_class, AddrClass};
pub use host::{parse_port, Host};

/// The ports a rule without a port allows.
pub const WEB_PORTS: [u16; 2] = [80, 443];

/// The host part of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Exactly this DNS name (lowercase, no trailing dot).
    Exact(String),
    /// Any name strictly below this domain: `*.example.com` is `Subdomains("example.com")` and
    /// matches `a.example.com`, not `example.com` and not `evilexample.com`.
    Subdomains(String),
    /// An IP address (a /32 or /128) or a CIDR: the addresses a rule names explicitly.
    Net(IpNet),
}

/// The port part of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortPattern {
    /// No port written: [`WEB_PORTS`].
    Web,
    /// `:*`.
    Any,
    /// `:N`.
    One(u16),
}

impl PortPattern {
    pub fn allows(self, port: u16) -> bool {
        match self {
            PortPattern::Web => WEB_PORTS.contains(&port),
            PortPattern::Any => true,
            PortPattern::One(p) => p == port,
        }
    }
}

/// One allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AllowRule {
    pub host: HostPattern,
    pub port: PortPattern,
    /// Written with a `/tls` suffix: a tunnel this rule allows must carry TLS, as one to port
    /// 443 always must (the proxy checks the ClientHello and its server name).
    pub tls: bool,
}

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("allowlist entry {pattern:?} {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: &'static str,
}

/// Lowercases a host and drops one trailing dot; `None` if it is not a valid DNS name or IP.
/// Numeric spellings of an IPv4 address come back as the dotted address they spell.
pub fn normalize_host(host: &str) -> Option<String> {
    Host::parse(host).map(|h| h.to_string())
}

impl FromStr for AllowRule {
    type Err = PatternError;

    fn from_str(pattern: &str) -> Result<Self, Self::Err> {
        let err = |reason| PatternError {
            pattern: pattern.to_string(),
            reason,
        };
        let trimmed = pattern.trim();
        if trimmed.is_empty() {
            return Err(err("is empty"));
        }
        if trimmed.contains("://") {
            return Err(err(
                "must be a host, not a URL (write example.com or example.com:443)",
            ));
        }
        let (trimmed, tls) = match trimmed.strip_suffix("/tls") {
            Some(rest) => (rest, true),
            None => (trimmed, false),
        };
        let (host, port) = split_port(trimmed);
        let port = match port {
            None => PortPattern::Web,
            Some("*") => PortPattern::Any,
            Some(p) => PortPattern::One(
                parse_port(p).ok_or_else(|| err("has a port that is not 1-65535 or *"))?,
            ),
        };
        let host = if host.contains('/') {
            let inner = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            let net: IpNet = inner.parse().map_err(|_| {
                err("must be a host, IP address or CIDR, not a URL (write 10.0.0.0/8 or example.com:443)")
            })?;
            HostPattern::Net(net.trunc())
        } else if let Some(suffix) = host.strip_prefix("*.") {
            match Host::parse(suffix) {
                Some(Host::Name(s)) if s.contains('.') => HostPattern::Subdomains(s),
                Some(Host::Name(_)) => {
                    return Err(err("must name a domain with at least two labels after *."))
                }
                Some(Host::Ip(_)) => {
                    return Err(err("must name a domain after *., not an address"))
                }
                None => return Err(err("has an invalid domain")),
            }
        } else if host.contains('*') {
            return Err(err("may use * only as a leading *. label"));
        } else {
            match Host::parse(host).ok_or_else(|| err("has an invalid host"))? {
                Host::Name(n) => HostPattern::Exact(n),
                Host::Ip(ip) => HostPattern::Net(IpNet::from(ip)),
            }
        };
        if tls && port == PortPattern::Web {
            return Err(err(
                "marks TLS without a port: write host:8443/tls (443 always carries TLS)",
            ));
        }
        Ok(AllowRule { host, port, tls })
    }
}

/// Splits `host[:port]`: the last `:` unless the host is a bare IPv6 address (several colons
/// and not bracketed).
fn split_port(text: &str) -> (&str, Option<&str>) {
    match text.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => (h, Some(p)),
        _ => (text, None),
    }
}

impl AllowRule {
    /// Whether a request to `host:port` is allowed by this rule. A name never matches an
    /// address rule and an address never matches a name rule.
    pub fn matches(&self, host: &Host, port: u16) -> bool {
        if !self.port.allows(port) {
            return false;
        }
        match (&self.host, host) {
            (HostPattern::Exact(h), Host::Name(n)) => h == n,
            (HostPattern::Subdomains(suffix), Host::Name(n)) => {
                n.len() > suffix.len() + 1
                    && n.ends_with(suffix.as_str())
                    && n.as_bytes()[n.len() - suffix.len() - 1] == b'.'
            }
            (HostPattern::Net(net), Host::Ip(ip)) => net.contains(ip),
            _ => false,
        }
    }

    /// Whether this rule names `ip` (on `port`) explicitly, as an address or in a CIDR.
    pub fn names_address(&self, ip: IpAddr, port: u16) -> bool {
        matches!(&self.host, HostPattern::Net(net) if net.contains(&ip)) && self.port.allows(port)
    }
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostPattern::Exact(h) => f.write_str(h)?,
            HostPattern::Subdomains(s) => write!(f, "*.{s}")?,
            HostPattern::Net(net) if net.prefix_len() == net.max_prefix_len() => match net.addr() {
                IpAddr::V4(a) => write!(f, "{a}")?,
                IpAddr::V6(a) => write!(f, "[{a}]")?,
            },
            HostPattern::Net(IpNet::V6(net)) => write!(f, "[{net}]")?,
            HostPattern::Net(net) => write!(f, "{net}")?,
        }
        match self.port {
            PortPattern::Web => {}
            PortPattern::Any => f.write_str(":*")?,
            PortPattern::One(p) => write!(f, ":{p}")?,
        }
        if self.tls {
            f.write_str("/tls")?;
        }
        Ok(())
    }
}

/// A list of rules; a request is allowed when any rule matches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Allowlist {
    pub rules: Vec<AllowRule>,
}

impl Allowlist {
    /// Parses comma- or newline-separated patterns; `#` starts a comment in a line.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let rules = text
            .lines()
            .map(|line| line.split('#').next().unwrap_or(""))
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        Ok(Allowlist { rules })
    }

    /// Whether `host:port` is allowed by a rule.
    pub fn allows_host(&self, host: &Host, port: u16) -> bool {
        self.rules.iter().any(|r| r.matches(host, port))
    }

    /// Whether `host:port` is allowed; `host` in any spelling [`Host::parse`] reads.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        Host::parse(host).is_some_and(|h| self.allows_host(&h, port))
    }

    /// Whether a tunnel to `host:port` must carry TLS because a rule that allows it says so.
    pub fn requires_tls(&self, host: &Host, port: u16) -> bool {
        self.rules.iter().any(|r| r.tls && r.matches(host, port))
    }

    /// Whether a rule names `ip` on `port` explicitly (an address or CIDR rule), which lets a
    /// request reach it even when it is of a refused [`AddrClass`].
    pub fn names_address(&self, ip: IpAddr, port: u16) -> bool {
        let ip = host::canonical(ip);
        self.rules.iter().any(|r| r.names_address(ip, port))
    }

    /// The comma-separated form the bundle's environment carries.
    pub fn to_csv(&self) -> String {
        self.rules
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(list: &str, host: &str, port: u16, expect: bool) {
        let list = Allowlist::parse(list).unwrap();
        assert_eq!(list.allows(host, port), expect, "{list:?} vs {host}:{port}");
    }

    #[test]
    fn matching() {
        check("example.com", "example.com", 443, true);
        check("example.com", "EXAMPLE.com.", 80, true);
        check("example.com", "example.com", 8080, false);
        check("example.com", "example.com", 22, false);
        check("example.com:*", "example.com", 22, true);
        check("example.com:22", "example.com", 22, true);
        check("example.com:22", "example.com", 443, false);
        check("example.com", "a.example.com", 443, false);
        check("example.com:443", "example.com", 80, false);
        check("*.example.com", "a.example.com", 443, true);
        check("*.example.com", "a.b.example.com", 443, true);
        check("*.example.com", "a.example.com", 8443, false);
        check("*.example.com", "example.com", 443, false);
        check("*.example.com", "evilexample.com", 443, false);
        check("*.example.com", "example.com.evil.test", 443, false);
        check("allowed.com", "allowed.com.evil.test", 443, false);
        check("allowed.com", "evilallowed.com", 443, false);
        check("example.com", "93.184.216.34", 443, false);
        check("10.0.0.1", "10.0.0.1", 443, true);
        check("10.0.0.1", "10.0.0.1", 5432, false);
        check("10.0.0.1:*", "10.0.0.1", 5432, true);
        check("10.0.0.0/8:5432", "10.9.8.7", 5432, true);
        check("10.0.0.0/8:5432", "11.9.8.7", 5432, false);
        check("[::1]:80", "[::1]", 80, true);
        check("[fd00::/64]:*", "[fd00::5]", 9, true);
        check("fd00::/64", "[fd00::5]", 443, true);
        check("*.example.com", "bad host", 443, false);
        // Numeric spellings are the address they spell, in rules and in requests.
        check("127.0.0.1:80", "2130706433", 80, true);
        check("127.0.0.1:80", "0x7f000001", 80, true);
        check("127.0.0.1:80", "0177.0.0.1", 80, true);
        check("127.0.0.1:80", "127.1", 80, true);
        check("127.0.0.1:80", "[::ffff:127.0.0.1]", 80, true);
        check("2130706433:80", "127.0.0.1", 80, true);
        check("example.com", "1.2.3.4.5", 443, false);
    }

    #[track_caller]
    fn check_err(pattern: &str, reason_part: &str) {
        let e = pattern.parse::<AllowRule>().unwrap_err();
        assert!(e.to_string().contains(reason_part), "{e}");
    }

    #[test]
    fn refused_patterns() {
        check_err("", "empty");
        check_err("https://example.com", "URL");
        check_err("example.com/path", "not a URL");
        check_err("example.com:0", "port");
        check_err("example.com:99999", "port");
        check_err("example.com:65536", "port");
        check_err("example.com:+80", "port");
        check_err("example.com:", "port");
        check_err("*.com", "two labels");
        check_err("a*.example.com", "leading");
        check_err("*", "leading");
        check_err("exa mple.com", "invalid host");
        check_err("*.1.2.3.4", "address");
        check_err("*.0.0.1", "address");
        check_err("1.2.3.4.5", "invalid host");
        check_err("08.0.0.1", "invalid host");
        check_err("10.0.0.0/33", "CIDR");
        check_err("example.com/tls", "marks TLS without a port");
        check_err("example.com:8443/tcp", "port");
    }

    #[test]
    fn canonical_forms_round_trip() {
        for (pattern, canonical) in [
            ("Example.COM.", "example.com"),
            ("example.com:*", "example.com:*"),
            ("*.Example.com:8443", "*.example.com:8443"),
            ("2130706433:80", "127.0.0.1:80"),
            ("[::1]", "[::1]"),
            ("::1", "[::1]"),
            ("10.1.2.3/8", "10.0.0.0/8"),
            ("[fd00::1/64]:443", "[fd00::/64]:443"),
            ("fd00::/64", "[fd00::/64]"),
            ("Git.Example.com:8443/tls", "git.example.com:8443/tls"),
            ("*.example.com:*/tls", "*.example.com:*/tls"),
        ] {
            let rule: AllowRule = pattern.parse().unwrap();
            assert_eq!(rule.to_string(), canonical, "{pattern}");
            assert_eq!(canonical.parse::<AllowRule>().unwrap(), rule, "{canonical}");
        }
    }

    #[test]
    fn tls_marks() {
        let list = Allowlist::parse("a.test:8443/tls, b.test:8443, *.c.test:*/tls").unwrap();
        let host = |h: &str| Host::parse(h).unwrap();
        assert!(list.requires_tls(&host("a.test"), 8443));
        assert!(!list.requires_tls(&host("b.test"), 8443));
        assert!(list.requires_tls(&host("x.c.test"), 9000));
        assert!(!list.requires_tls(&host("a.test"), 443));
    }

    #[test]
    fn explicit_addresses() {
        let list = Allowlist::parse("example.com, 10.0.0.7, 172.16.0.0/12:5432").unwrap();
        assert!(list.names_address("10.0.0.7".parse().unwrap(), 443));
        assert!(!list.names_address("10.0.0.7".parse().unwrap(), 22));
        assert!(list.names_address("172.17.0.1".parse().unwrap(), 5432));
        assert!(list.names_address("::ffff:10.0.0.7".parse().unwrap(), 80));
        assert!(!list.names_address("10.0.0.8".parse().unwrap(), 443));
    }
}
