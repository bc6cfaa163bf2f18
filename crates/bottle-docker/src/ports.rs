//! Reads published ports from what Docker reports, defensively: the lifecycle decides what a
//! binding means (see `bottle_core::lifecycle::resolve_host_ports`), so this reports every
//! binding it sees and never drops a suspicious one.

use std::net::IpAddr;

use bollard::models::{PortMap, PortSummary};
use bottle_core::runtime::PortBinding;

/// Every binding of an inspect's `NetworkSettings.Ports`.
///
/// - `"9099/tcp": null` is a port the image exposes but nobody published: no binding;
/// - several bindings of one port (`0.0.0.0` and `::` of a wildcard publish) are one
///   [`PortBinding`] each;
/// - an empty or missing `HostIp` is `host_ip: None`, a wildcard (the lifecycle refuses it),
///   and so is an address that does not parse, so that it is refused rather than dropped;
/// - an empty, missing or `"0"` `HostPort` is `host_port: None`, not assigned yet.
///
/// TCP bindings come first, then by container port, so the result is stable.
pub fn from_port_map(ports: &PortMap) -> Vec<PortBinding> {
    let mut out: Vec<(bool, PortBinding)> = Vec::new();
    for (key, bindings) in ports {
        let Some((container_port, tcp)) = parse_port_key(key) else {
            tracing::debug!(key, "ignoring a port key that is not <port>/<protocol>");
            continue;
        };
        for b in bindings.iter().flatten() {
            out.push((
                !tcp,
                PortBinding {
                    container_port,
                    host_ip: host_ip(b.host_ip.as_deref()),
                    host_port: host_port(b.host_port.as_deref()),
                },
            ));
        }
    }
    out.sort_by_key(|(not_tcp, b)| (*not_tcp, b.container_port));
    out.into_iter().map(|(_, b)| b).collect()
}

/// The published ports of a container listing (`GET /containers/json`), which summarises:
/// exposed ports without a host port are left out, like `null` entries of an inspect.
pub fn from_summary(ports: &[PortSummary]) -> Vec<PortBinding> {
    let mut out: Vec<PortBinding> = ports
        .iter()
        .filter_map(|p| {
            let public = p.public_port?;
            Some(PortBinding {
                container_port: p.private_port,
                host_ip: host_ip(p.ip.as_deref()),
                host_port: (public != 0).then_some(public),
            })
        })
        .collect();
    out.sort_by_key(|b| b.container_port);
    out
}

/// `"9099/tcp"` -> `(9099, true)`; a key without a protocol is TCP, as Docker reads it.
fn parse_port_key(key: &str) -> Option<(u16, bool)> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    Some((port.trim().parse().ok()?, proto.eq_ignore_ascii_case("tcp")))
}

fn host_ip(ip: Option<&str>) -> Option<IpAddr> {
    ip.map(str::trim)
        .filter(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
}

fn host_port(port: Option<&str>) -> Option<u16> {
    port.and_then(|p| p.trim().parse().ok()).filter(|p| *p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `json` as `NetworkSettings.Ports` and compares the bindings with `expect`, one
    /// `port host_ip host_port` per line (`-` for `None`).
    #[track_caller]
    fn check(json: &str, expect: &str) {
        let ports: PortMap = serde_json::from_str(json).expect("valid PortMap JSON");
        let got: Vec<String> = from_port_map(&ports)
            .iter()
            .map(|b| {
                format!(
                    "{} {} {}",
                    b.container_port,
                    b.host_ip.map_or("-".into(), |i| i.to_string()),
                    b.host_port.map_or("-".into(), |p| p.to_string())
                )
            })
            .collect();
        let want: Vec<String> = expect
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        assert_eq!(got, want, "bindings of {json}");
    }

    #[test]
    fn one_binding_on_the_requested_loopback_address() {
        check(
            r#"{"9099/tcp": [{"HostIp": "127.79.3.4", "HostPort": "49153"}]}"#,
            "9099 127.79.3.4 49153",
        );
    }

    #[test]
    fn exposed_but_not_published_is_no_binding() {
        check(r#"{"9099/tcp": null}"#, "");
        check(
            r#"{"9099/tcp": null, "9100/tcp": [{"HostIp": "127.79.0.9", "HostPort": "40000"}]}"#,
            "9100 127.79.0.9 40000",
        );
        check(r#"{"9099/tcp": []}"#, "");
        check(r#"{}"#, "");
    }

    #[test]
    fn several_bindings_of_one_port_are_one_each() {
        check(
            r#"{"9099/tcp": [
                {"HostIp": "0.0.0.0", "HostPort": "49153"},
                {"HostIp": "::", "HostPort": "49153"}
            ]}"#,
            "9099 0.0.0.0 49153
             9099 :: 49153",
        );
    }

    #[test]
    fn empty_or_missing_host_ip_is_a_wildcard() {
        check(
            r#"{"9099/tcp": [{"HostIp": "", "HostPort": "49153"}]}"#,
            "9099 - 49153",
        );
        check(r#"{"9099/tcp": [{"HostPort": "49153"}]}"#, "9099 - 49153");
        check(
            r#"{"9099/tcp": [{"HostIp": "not-an-address", "HostPort": "1"}]}"#,
            "9099 - 1",
        );
    }

    #[test]
    fn empty_or_zero_host_port_is_not_assigned_yet() {
        check(
            r#"{"9099/tcp": [{"HostIp": "127.79.3.4", "HostPort": ""}]}"#,
            "9099 127.79.3.4 -",
        );
        check(
            r#"{"9099/tcp": [{"HostIp": "127.79.3.4", "HostPort": "0"}]}"#,
            "9099 127.79.3.4 -",
        );
        check(
            r#"{"9099/tcp": [{"HostIp": "127.79.3.4"}]}"#,
            "9099 127.79.3.4 -",
        );
    }

    #[test]
    fn tcp_first_then_by_port_and_odd_keys_skipped() {
        check(
            r#"{
                "9418/tcp": [{"HostIp": "127.79.0.2", "HostPort": "3"}],
                "53/udp": [{"HostIp": "127.79.0.2", "HostPort": "4"}],
                "9099": [{"HostIp": "127.79.0.2", "HostPort": "1"}],
                "nonsense/tcp": [{"HostIp": "127.79.0.2", "HostPort": "9"}]
            }"#,
            "9099 127.79.0.2 1
             9418 127.79.0.2 3
             53 127.79.0.2 4",
        );
    }

    #[test]
    fn summary_skips_unpublished_ports() {
        let ports: Vec<PortSummary> = serde_json::from_str(
            r#"[
                {"PrivatePort": 9099, "Type": "tcp"},
                {"IP": "127.79.0.2", "PrivatePort": 9100, "PublicPort": 40001, "Type": "tcp"},
                {"IP": "", "PrivatePort": 9418, "PublicPort": 40002, "Type": "tcp"}
            ]"#,
        )
        .expect("valid summary JSON");
        assert_eq!(
            from_summary(&ports),
            vec![
                PortBinding {
                    container_port: 9100,
                    host_ip: Some("127.79.0.2".parse().unwrap()),
                    host_port: Some(40001),
                },
                PortBinding {
                    container_port: 9418,
                    host_ip: None,
                    host_port: Some(40002),
                },
            ]
        );
    }
}
