//! The decision: is this target allowed, where does it resolve, and is every address it
//! resolves to one the agent may reach.
//!
//! A name is resolved once, as an absolute name (a trailing dot: the resolver's search list and
//! `ndots` never apply), and every address is checked before any is connected to; the proxy
//! then connects only to those addresses, so a second, different answer (DNS rebinding) has
//! nothing to act on.

use std::net::{IpAddr, SocketAddr};

use bottle_core::allowlist::{special_class, AddrClass, Allowlist, Host};
use ipnet::IpNet;

use super::target::Target;

/// The networks and addresses of the proxy's own interfaces (read once at start).
#[derive(Debug, Clone, Default)]
pub struct LocalNets {
    /// Networks of non-loopback interfaces: the bundle's network, with its gateway (the host).
    pub networks: Vec<IpNet>,
    /// Addresses of non-loopback interfaces.
    pub addrs: Vec<IpAddr>,
}

impl LocalNets {
    /// Reads this network namespace's interfaces: every address of every interface is the
    /// proxy's own; the networks of non-loopback interfaces are the bundle's (a loopback
    /// interface's "network" is the machine itself, already refused as loopback or own).
    pub fn read() -> LocalNets {
        let mut local = LocalNets::default();
        let Ok(ifaces) = nix::ifaddrs::getifaddrs() else {
            return local;
        };
        for iface in ifaces {
            let loopback = iface
                .flags
                .contains(nix::net::if_::InterfaceFlags::IFF_LOOPBACK);
            let (Some(addr), Some(mask)) = (iface.address, iface.netmask) else {
                continue;
            };
            let ip_and_prefix = if let (Some(a), Some(m)) =
                (addr.as_sockaddr_in(), mask.as_sockaddr_in())
            {
                let ip = IpAddr::V4(a.ip());
                Some((ip, u32::from(m.ip()).count_ones() as u8))
            } else if let (Some(a), Some(m)) = (addr.as_sockaddr_in6(), mask.as_sockaddr_in6()) {
                Some((IpAddr::V6(a.ip()), u128::from(m.ip()).count_ones() as u8))
            } else {
                None
            };
            if let Some((ip, prefix)) = ip_and_prefix {
                local.addrs.push(ip);
                if loopback {
                    continue;
                }
                if let Ok(net) = IpNet::new(ip, prefix) {
                    local.networks.push(net.trunc());
                }
            }
        }
        local
    }

    fn class(&self, ip: IpAddr) -> Option<AddrClass> {
        if self.addrs.contains(&ip) {
            Some(AddrClass::Own)
        } else if self.networks.iter().any(|n| n.contains(&ip)) {
            Some(AddrClass::BundleNetwork)
        } else {
            None
        }
    }
}

/// What the proxy decides with.
#[derive(Debug, Clone)]
pub struct Policy {
    pub allow: Allowlist,
    pub local: LocalNets,
}

/// Why a target was not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No rule names this host and port (403).
    NotAllowed,
    /// The target is, or resolves to, an address of a refused class (403).
    Address {
        class: AddrClass,
        ip: IpAddr,
        resolved: bool,
    },
    /// The name does not resolve (502: the policy allowed it).
    Unresolved(String),
}

impl Denial {
    /// The reason, as logged and shown.
    pub fn reason(&self) -> String {
        match self {
            Denial::NotAllowed => "not in allowlist".into(),
            Denial::Address {
                class,
                ip,
                resolved: true,
            } => format!("resolves to {} {class} address {ip}", article(*class)),
            Denial::Address { class, ip, .. } => {
                format!("is {} {class} address {ip}", article(*class))
            }
            Denial::Unresolved(why) => why.clone(),
        }
    }
}

fn article(class: AddrClass) -> &'static str {
    match class {
        AddrClass::Unspecified | AddrClass::Own => "an",
        _ => "a",
    }
}

impl Policy {
    /// Whether a rule allows the target (no resolution).
    pub fn allows(&self, target: &Target) -> bool {
        self.allow.allows_host(&target.host, target.port)
    }

    /// The addresses to connect to for an allowed target, every one checked.
    pub async fn resolve(&self, target: &Target) -> Result<Vec<SocketAddr>, Denial> {
        let ips: Vec<IpAddr> = match &target.host {
            Host::Ip(ip) => vec![*ip],
            Host::Name(name) => {
                // The root dot makes the name absolute: no search domain is ever appended.
                let absolute = format!("{name}.");
                let found = tokio::net::lookup_host((absolute.as_str(), target.port))
                    .await
                    .map_err(|e| Denial::Unresolved(format!("cannot resolve {name}: {e}")))?;
                let mut ips: Vec<IpAddr> = Vec::new();
                for sa in found {
                    let ip = bottle_core::allowlist::host::canonical(sa.ip());
                    if !ips.contains(&ip) {
                        ips.push(ip);
                    }
                }
                if ips.is_empty() {
                    return Err(Denial::Unresolved(format!(
                        "cannot resolve {name}: no address"
                    )));
                }
                ips
            }
        };
        let resolved = matches!(target.host, Host::Name(_));
        for ip in &ips {
            self.check_address(*ip, target.port, resolved)?;
        }
        Ok(ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, target.port))
            .collect())
    }

    /// Refuses an address of a refused class unless a rule names it explicitly.
    pub fn check_address(&self, ip: IpAddr, port: u16, resolved: bool) -> Result<(), Denial> {
        if self.allow.names_address(ip, port) {
            return Ok(());
        }
        match special_class(ip).or_else(|| self.local.class(ip)) {
            Some(class) => Err(Denial::Address {
                class,
                ip,
                resolved,
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &str) -> Policy {
        Policy {
            allow: Allowlist::parse(allow).unwrap(),
            local: LocalNets {
                networks: vec!["198.51.100.0/24".parse().unwrap()],
                addrs: vec!["198.51.100.2".parse().unwrap()],
            },
        }
    }

    #[track_caller]
    fn check(allow: &str, ip: &str, port: u16, expect: Result<(), &str>) {
        let got = policy(allow)
            .check_address(ip.parse().unwrap(), port, true)
            .map_err(|d| d.reason());
        match (got, expect) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(part)) => assert!(e.contains(part), "{ip}: {e}"),
            (got, want) => panic!("{ip}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn addresses() {
        check("a.test", "203.0.113.9", 443, Ok(()));
        check(
            "a.test",
            "10.0.0.7",
            443,
            Err("resolves to a private address 10.0.0.7"),
        );
        check(
            "a.test",
            "169.254.169.254",
            80,
            Err("link-local address 169.254.169.254"),
        );
        check(
            "a.test",
            "198.51.100.1",
            443,
            Err("bundle-network address 198.51.100.1"),
        );
        check("a.test", "198.51.100.2", 443, Err("an own address"));
        check("a.test", "0.0.0.0", 443, Err("an unspecified address"));
        check("a.test, 10.0.0.7", "10.0.0.7", 443, Ok(()));
        check("a.test, 10.0.0.7:22", "10.0.0.7", 443, Err("private"));
        check("a.test, 10.0.0.0/8:*", "10.1.2.3", 9, Ok(()));
        check("a.test, 198.51.100.1:8080", "198.51.100.1", 8080, Ok(()));
    }
}
