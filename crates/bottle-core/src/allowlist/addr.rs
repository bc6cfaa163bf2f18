//! Destination addresses the egress proxy refuses unless a rule names them: the ones that lead
//! back into the machine, its private networks or its cloud's metadata service rather than to
//! the public host an allowed name is supposed to be.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not a public destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrClass {
    Loopback,
    Unspecified,
    /// 169.254.0.0/16 (cloud metadata included) and fe80::/10.
    LinkLocal,
    /// RFC 1918.
    Private,
    /// 100.64.0.0/10, carrier-grade NAT.
    Shared,
    /// fc00::/7.
    UniqueLocal,
    Multicast,
    Broadcast,
    /// In the network of one of the proxy's own interfaces: the bundle's network and its
    /// gateway, which is the host.
    BundleNetwork,
    /// One of the proxy's own addresses.
    Own,
}

impl AddrClass {
    /// The word used in denials and logs (`resolves to a private address 10.0.0.7`).
    pub fn as_str(self) -> &'static str {
        match self {
            AddrClass::Loopback => "loopback",
            AddrClass::Unspecified => "unspecified",
            AddrClass::LinkLocal => "link-local",
            AddrClass::Private => "private",
            AddrClass::Shared => "shared",
            AddrClass::UniqueLocal => "unique-local",
            AddrClass::Multicast => "multicast",
            AddrClass::Broadcast => "broadcast",
            AddrClass::BundleNetwork => "bundle-network",
            AddrClass::Own => "own",
        }
    }
}

impl fmt::Display for AddrClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The class of an address that is not a public destination, or `None` for a public one.
/// IPv6 forms that carry an IPv4 address (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`,
/// NAT64 `64:ff9b::a.b.c.d`) are judged by that IPv4 address.
pub fn special_class(ip: IpAddr) -> Option<AddrClass> {
    match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => v6_class(v6),
    }
}

fn v4_class(ip: Ipv4Addr) -> Option<AddrClass> {
    let [a, b, ..] = ip.octets();
    Some(if ip.is_loopback() {
        AddrClass::Loopback
    } else if a == 0 {
        // 0.0.0.0/8, "this network": connecting to it reaches this host.
        AddrClass::Unspecified
    } else if ip.is_link_local() {
        AddrClass::LinkLocal
    } else if ip.is_private() {
        AddrClass::Private
    } else if a == 100 && (b & 0xc0) == 64 {
        AddrClass::Shared
    } else if ip.is_multicast() {
        AddrClass::Multicast
    } else if ip.is_broadcast() {
        AddrClass::Broadcast
    } else {
        return None;
    })
}

fn v6_class(ip: Ipv6Addr) -> Option<AddrClass> {
    if let Some(v4) = embedded_v4(ip) {
        return v4_class(v4);
    }
    let first = ip.segments()[0];
    Some(if ip.is_loopback() {
        AddrClass::Loopback
    } else if ip.is_unspecified() {
        AddrClass::Unspecified
    } else if (first & 0xffc0) == 0xfe80 {
        AddrClass::LinkLocal
    } else if (first & 0xfe00) == 0xfc00 {
        AddrClass::UniqueLocal
    } else if ip.is_multicast() {
        AddrClass::Multicast
    } else if (first & 0xffc0) == 0xfec0 {
        // Deprecated site-local: private by another name.
        AddrClass::Private
    } else {
        return None;
    })
}

/// The IPv4 address an IPv6 address carries, in the forms that reach it: mapped, compatible
/// (not `::` and `::1`, which are IPv6's own) and the NAT64 well-known prefix.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let compatible = s[..6].iter().all(|x| *x == 0) && !ip.is_unspecified() && !ip.is_loopback();
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|x| *x == 0);
    (compatible || nat64).then_some(low)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(ip: &str, expect: Option<AddrClass>) {
        assert_eq!(special_class(ip.parse().unwrap()), expect, "{ip}");
    }

    #[test]
    fn classes() {
        use AddrClass::*;
        check("127.0.0.1", Some(Loopback));
        check("127.255.1.2", Some(Loopback));
        check("0.0.0.0", Some(Unspecified));
        check("0.1.2.3", Some(Unspecified));
        check("169.254.169.254", Some(LinkLocal));
        check("10.0.0.7", Some(Private));
        check("172.16.0.1", Some(Private));
        check("172.31.255.255", Some(Private));
        check("172.32.0.1", None);
        check("192.168.1.1", Some(Private));
        check("100.64.0.1", Some(Shared));
        check("100.127.255.255", Some(Shared));
        check("100.128.0.1", None);
        check("224.0.0.1", Some(Multicast));
        check("255.255.255.255", Some(Broadcast));
        check("198.51.100.10", None);
        check("8.8.8.8", None);
        check("::1", Some(Loopback));
        check("::", Some(Unspecified));
        check("fe80::1", Some(LinkLocal));
        check("fd00::7", Some(UniqueLocal));
        check("fc00::1", Some(UniqueLocal));
        check("ff02::1", Some(Multicast));
        check("fec0::1", Some(Private));
        check("::ffff:127.0.0.1", Some(Loopback));
        check("::ffff:10.0.0.7", Some(Private));
        check("::ffff:169.254.169.254", Some(LinkLocal));
        check("::10.0.0.7", Some(Private));
        check("::127.0.0.1", Some(Loopback));
        check("64:ff9b::a9fe:a9fe", Some(LinkLocal));
        check("::ffff:198.51.100.10", None);
        check("2001:db8::10", None);
        check("2606:4700::1111", None);
    }
}
