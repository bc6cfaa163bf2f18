//! What the host itself shows as taken, whichever engine (or tool) took it: subnets of its
//! routes and loopback addresses something listens on.
//!
//! An engine lists only its own networks, so a Docker bottle and a Podman bottle planned from
//! the same pools would each see nothing of the other. Both engines leave traces on the host:
//! a bridge's route once the network has an interface (Docker: at create; netavark: at the
//! first container start), and a listening socket on the published address (Docker's proxy,
//! Podman's conmon, rootless Podman's `rootlessport`). Linux only; elsewhere nothing is read.
//!
//! What this cannot see: a rootless Podman network lives in its user's rootless network
//! namespace, so it never has a route here (and a rootful netavark network has none until its
//! first container starts). A launch on that same engine sees such networks in the engine's
//! listing, which the lifecycle reads anyway; a launch on another engine or by another user need
//! not avoid their subnets (another namespace), only their published loopback addresses, which
//! `rootlessport` binds in the host's namespace and `/proc/net/tcp` shows once the bundle has
//! started. Before that, a launch's reservation is visible only to launches that share its
//! allocation lock (the same `$XDG_RUNTIME_DIR`, so the same user).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Routes broader than this are not a bridge's (a VPN's `10.0.0.0/8`, the default route) and
/// do not take subnets away from the pool.
const NARROWEST_IGNORED: u8 = 15;

/// Subnets and loopback addresses in use on this host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HostTaken {
    pub subnets: Vec<Ipv4Net>,
    pub loopbacks: BTreeSet<Ipv4Addr>,
}

/// Reads the host's routes and listening TCP sockets (nothing off Linux, or when unreadable).
pub(crate) fn taken() -> HostTaken {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    if !cfg!(target_os = "linux") {
        return HostTaken::default();
    }
    HostTaken {
        subnets: routes(&read("/proc/net/route")),
        loopbacks: listening_loopbacks(&read("/proc/net/tcp")),
    }
}

/// The destinations of `/proc/net/route` no broader than a /16.
fn routes(table: &str) -> Vec<Ipv4Net> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let dest = hex_addr(cols.get(1)?)?;
            let mask = hex_addr(cols.get(7)?)?;
            let prefix = u32::from(mask).count_ones() as u8;
            (prefix > NARROWEST_IGNORED)
                .then(|| Ipv4Net::new(dest, prefix).ok())
                .flatten()
                .map(|n| n.trunc())
        })
        .collect()
}

/// The loopback addresses of `/proc/net/tcp` sockets in the LISTEN state.
fn listening_loopbacks(table: &str) -> BTreeSet<Ipv4Addr> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if *cols.get(3)? != LISTEN {
                return None;
            }
            let (addr, _port) = cols.get(1)?.split_once(':')?;
            hex_addr(addr).filter(Ipv4Addr::is_loopback)
        })
        .collect()
}

/// An address as the kernel prints it in `/proc/net`: the network-order bytes read as a
/// native-endian number, in hex.
fn hex_addr(hex: &str) -> Option<Ipv4Addr> {
    u32::from_str_radix(hex, 16)
        .ok()
        .map(|v| Ipv4Addr::from(v.to_ne_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/net` prints addresses in the machine's byte order: build a line the same way.
    fn hex(addr: Ipv4Addr) -> String {
        format!("{:08X}", u32::from_ne_bytes(addr.octets()))
    }

    #[test]
    fn bridge_routes_are_taken_and_broad_routes_are_not() {
        let row = |iface: &str, dest: &str, mask: &str| {
            format!(
                "{iface}\t{}\t00000000\t0001\t0\t0\t0\t{}\t0\t0\t0",
                hex(dest.parse().unwrap()),
                hex(mask.parse().unwrap())
            )
        };
        let table = [
            "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT"
                .to_string(),
            row("eth0", "0.0.0.0", "0.0.0.0"),
            row("tun0", "10.0.0.0", "255.0.0.0"),
            row("br-1", "10.213.7.0", "255.255.255.0"),
            row("podman1", "10.213.9.0", "255.255.255.0"),
            row("docker0", "172.17.0.0", "255.255.0.0"),
        ]
        .join("\n");
        let want: Vec<Ipv4Net> = ["10.213.7.0/24", "10.213.9.0/24", "172.17.0.0/16"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(routes(&table), want);
    }

    #[test]
    fn only_listening_loopback_sockets_count() {
        let row = |addr: &str, port: u16, state: &str| {
            format!(
                "   0: {}:{port:04X} 00000000:0000 {state} 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0",
                hex(addr.parse().unwrap())
            )
        };
        let table = [
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode".to_string(),
            row("127.77.0.5", 40001, "0A"),
            row("127.77.0.6", 40002, "01"),
            row("0.0.0.0", 22, "0A"),
            row("10.213.7.1", 53, "0A"),
            row("127.0.0.1", 631, "0A"),
        ]
        .join("\n");
        let want: BTreeSet<Ipv4Addr> = ["127.0.0.1", "127.77.0.5"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(listening_loopbacks(&table), want);
    }

    #[test]
    fn a_listener_of_this_process_is_seen() {
        let listener = std::net::TcpListener::bind("127.93.4.5:0").unwrap();
        if cfg!(target_os = "linux") {
            assert!(taken().loopbacks.contains(&Ipv4Addr::new(127, 93, 4, 5)));
        }
        drop(listener);
    }
}
