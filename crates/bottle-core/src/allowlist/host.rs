//! Hosts as the egress proxy sees them: a DNS name or an IP address, in one canonical spelling.
//!
//! The C resolver accepts many spellings of an IPv4 address that look like names
//! (`0x7f000001`, `0177.0.0.1`, `2130706433`, `127.1`). A host whose last label is numeric is
//! therefore parsed the way the resolver (and the WHATWG URL standard) would parse it, and is
//! the address it spells or nothing: it never reaches the matcher as a name.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A host in canonical form: a lowercase DNS name without a trailing dot, or an IP address
/// (an IPv4-mapped IPv6 address is its IPv4 address).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Name(String),
    Ip(IpAddr),
}

impl Host {
    /// Parses a host as written in a request target, a `Host` header or an allowlist rule.
    /// IPv6 addresses may be bracketed. `None` when it is neither a valid name nor an address.
    pub fn parse(text: &str) -> Option<Host> {
        if let Some(inner) = text.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            return inner
                .parse::<Ipv6Addr>()
                .ok()
                .map(|ip| Host::Ip(canonical(ip.into())));
        }
        let host = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Some(Host::Ip(canonical(ip)));
        }
        if ends_in_number(&host) {
            return parse_ipv4_loose(&host).map(|ip| Host::Ip(IpAddr::V4(ip)));
        }
        valid_name(&host).then_some(Host::Name(host))
    }

    /// The name, for a name.
    pub fn name(&self) -> Option<&str> {
        match self {
            Host::Name(n) => Some(n),
            Host::Ip(_) => None,
        }
    }
}

impl fmt::Display for Host {
    /// The canonical spelling; an IPv6 address unbracketed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is the IPv4 address it maps: both reach the
/// same host, so rules and checks see one form.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Whether the last label is a number (decimal, or `0x` hex), which makes the whole host an
/// attempt at an IPv4 address (WHATWG URL "ends in a number").
fn ends_in_number(host: &str) -> bool {
    let last = host.rsplit('.').next().unwrap_or("");
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    last.strip_prefix("0x")
        .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The IPv4 parser of `inet_aton` and the WHATWG URL standard: one to four parts, each decimal,
/// octal (leading `0`) or hex (`0x`); the last part fills the remaining bytes.
fn parse_ipv4_loose(host: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let numbers: Vec<u64> = parts.iter().map(|p| parse_part(p)).collect::<Option<_>>()?;
    let (last, init) = numbers.split_last()?;
    if init.iter().any(|n| *n > 255) {
        return None;
    }
    let rest_bits = 8 * (5 - numbers.len() as u32);
    if *last >= 1u64 << rest_bits {
        return None;
    }
    let mut value = *last;
    for (i, n) in init.iter().enumerate() {
        value += n << (8 * (3 - i as u32));
    }
    u32::try_from(value).ok().map(Ipv4Addr::from)
}

fn parse_part(part: &str) -> Option<u64> {
    if part.is_empty() || part.len() > 12 {
        return None;
    }
    let (digits, radix) = if let Some(hex) = part.strip_prefix("0x") {
        (hex, 16)
    } else if part.len() > 1 && part.starts_with('0') {
        (&part[1..], 8)
    } else {
        (part, 10)
    };
    if digits.is_empty() {
        // `0x` alone is zero, as the resolver reads it.
        return (radix == 16).then_some(0);
    }
    if !digits.bytes().all(|b| (b as char).is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// A DNS name of letters, digits, `-` and `_`, in labels of 1 to 63 bytes, at most 253 bytes.
fn valid_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A port as written after a host: 1 to 5 ASCII digits, 1-65535. No sign, no spaces.
pub fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|p| *p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, expect: Option<&str>) {
        let got = Host::parse(text).map(|h| h.to_string());
        assert_eq!(got.as_deref(), expect, "{text:?}");
    }

    #[test]
    fn spellings() {
        check("Example.COM.", Some("example.com"));
        check("a_b.example", Some("a_b.example"));
        check("127.0.0.1", Some("127.0.0.1"));
        check("127.0.0.1.", Some("127.0.0.1"));
        check("0x7f000001", Some("127.0.0.1"));
        check("0X7F000001", Some("127.0.0.1"));
        check("0177.0.0.1", Some("127.0.0.1"));
        check("2130706433", Some("127.0.0.1"));
        check("127.1", Some("127.0.0.1"));
        check("10.1.258", Some("10.1.1.2"));
        check("0x", Some("0.0.0.0"));
        check("[::ffff:127.0.0.1]", Some("127.0.0.1"));
        check("::ffff:7f00:1", Some("127.0.0.1"));
        check("[::1]", Some("::1"));
        check("[FE80::1]", Some("fe80::1"));
        check("1.2.3.4.5", None);
        check("08.0.0.1", None);
        check("256.0.0.1", None);
        check("1.2.3.256", None);
        check("4294967296", None);
        check("1.example.2", None);
        check("example.123", None);
        check("123.example", Some("123.example"));
        check("[fe80::1%25eth0]", None);
        check("127%2e0.0.1", None);
        check("", None);
        check(".", None);
        check("a..b", None);
        check("-a.b", None);
        check("a b", None);
        check("[127.0.0.1]", None);
    }

    #[test]
    fn ports() {
        for (text, expect) in [
            ("80", Some(80)),
            ("065535", None),
            ("65535", Some(65535)),
            ("65536", None),
            ("99999", None),
            ("+80", None),
            ("-1", None),
            ("0", None),
            ("", None),
            (" 80", None),
        ] {
            assert_eq!(parse_port(text), expect, "{text:?}");
        }
    }
}
