//! Egress allowlist patterns: exact hosts and `*.suffix` patterns, each with an optional port.
//!
//! The planner validates them and the bundle's egress proxy enforces them with the same code, so
//! what `bottle plan` accepts is exactly what the proxy allows.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// The host part of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Exactly this host name or IP literal (lowercase, no trailing dot).
    Exact(String),
    /// Any host strictly below this domain: `*.example.com` is `Subdomains("example.com")` and
    /// matches `a.example.com`, not `example.com` and not `evilexample.com`.
    Subdomains(String),
}

/// One allowlist entry: a host pattern and an optional port (any port when `None`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AllowRule {
    pub host: HostPattern,
    pub port: Option<u16>,
}

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("allowlist entry {pattern:?} {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: &'static str,
}

/// Lowercases a host and drops one trailing dot; `None` if it is not a valid DNS name or IP.
pub fn normalize_host(host: &str) -> Option<String> {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    if let Some(inner) = bracketed {
        return inner
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|ip| ip.to_string());
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip.to_string());
    }
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    valid.then_some(host)
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
        if trimmed.contains("://") || trimmed.contains('/') {
            return Err(err(
                "must be a host, not a URL (write example.com or example.com:443)",
            ));
        }
        // Split off a port: the last `:` unless the host is a bracketed or bare IPv6 literal.
        let (host, port) = match trimmed.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.ends_with(']') => {
                let port: u16 = p
                    .parse()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| err("has a port that is not 1-65535"))?;
                (h, Some(port))
            }
            _ => (trimmed, None),
        };
        let rule_host = if let Some(suffix) = host.strip_prefix("*.") {
            let suffix = normalize_host(suffix).ok_or_else(|| err("has an invalid domain"))?;
            if suffix.parse::<IpAddr>().is_ok() || !suffix.contains('.') {
                return Err(err("must name a domain with at least two labels after *."));
            }
            HostPattern::Subdomains(suffix)
        } else if host.contains('*') {
            return Err(err("may use * only as a leading *. label"));
        } else {
            HostPattern::Exact(normalize_host(host).ok_or_else(|| err("has an invalid host"))?)
        };
        Ok(AllowRule {
            host: rule_host,
            port,
        })
    }
}

impl AllowRule {
    /// Whether a request to `host:port` (host already normalized) is allowed by this rule.
    /// An IP literal matches only an exact rule naming that literal.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match &self.host {
            HostPattern::Exact(h) => h == host,
            HostPattern::Subdomains(suffix) => {
                host.parse::<IpAddr>().is_err()
                    && host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
        }
    }
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostPattern::Exact(h) if h.contains(':') => write!(f, "[{h}]")?,
            HostPattern::Exact(h) => f.write_str(h)?,
            HostPattern::Subdomains(s) => write!(f, "*.{s}")?,
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
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

    /// Whether `host:port` is allowed. `host` may be in any case and have a trailing dot.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        match normalize_host(host) {
            Some(h) => self.rules.iter().any(|r| r.matches(&h, port)),
            None => false,
        }
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
        check("example.com", "a.example.com", 443, false);
        check("example.com:443", "example.com", 80, false);
        check("*.example.com", "a.example.com", 443, true);
        check("*.example.com", "a.b.example.com", 443, true);
        check("*.example.com", "example.com", 443, false);
        check("*.example.com", "evilexample.com", 443, false);
        check("*.example.com", "example.com.evil.test", 443, false);
        check("allowed.com", "allowed.com.evil.test", 443, false);
        check("allowed.com", "evilallowed.com", 443, false);
        check("example.com", "93.184.216.34", 443, false);
        check("10.0.0.1", "10.0.0.1", 443, true);
        check("[::1]:80", "[::1]", 80, true);
        check("*.example.com", "bad host", 443, false);
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
        check_err("example.com:0", "port");
        check_err("example.com:99999", "port");
        check_err("*.com", "two labels");
        check_err("a*.example.com", "leading");
        check_err("exa mple.com", "invalid host");
        check_err("*.1.2.3.4", "domain");
    }
}
