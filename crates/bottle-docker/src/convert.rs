//! Pure translations between bottle's runtime types and Docker's API models: what to send for a
//! network or container, and what the engine's answers mean. No IO, so all of it is testable
//! without an engine.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerSummary, EndpointIpamConfig,
    EndpointSettings, HealthStatusEnum, HostConfig, Ipam, IpamConfig, Mount as DockerMount,
    MountType, Network, NetworkCreateRequest, NetworkingConfig, PortBinding as DockerPortBinding,
};
use bottle_core::error::{RuntimeError, RuntimeResult as Result};
use bottle_core::runtime::{
    ContainerInfo, ContainerSpec, ContainerState, Health, LabelSelector, Labels, NetworkInfo,
    NetworkSpec,
};
use bottle_core::ObjectKind;
use ipnet::Ipv4Net;

use crate::errors::ENGINE;
use crate::ports;

/// Mount options of each tmpfs the image asks for: writable, nothing executable or set-uid on
/// it ([`bottle_core::runtime::TMPFS_OPTIONS`]). No size of its own, as Podman gives none: what a
/// tmpfs holds is charged to the container's memory limit, which bounds it (the git gate's
/// mirrors live there, so a fixed small size would cap the repositories it can serve).
pub const TMPFS_OPTIONS: &str = "rw,nosuid,nodev,noexec";

/// The request that creates the network of `spec`.
pub fn network_request(spec: &NetworkSpec) -> NetworkCreateRequest {
    NetworkCreateRequest {
        name: spec.name.clone(),
        driver: Some("bridge".into()),
        ipam: Some(Ipam {
            driver: Some("default".into()),
            config: Some(vec![IpamConfig {
                subnet: Some(spec.subnet.to_string()),
                gateway: Some(spec.gateway.to_string()),
                ..Default::default()
            }]),
            options: None,
        }),
        enable_ipv6: Some(false),
        labels: Some(hash_map(&spec.labels)),
        ..Default::default()
    }
}

/// The body that creates the container of `spec`. It holds the environment, secrets included:
/// hand it to the engine only, never to a log or a message.
pub fn container_body(spec: &ContainerSpec) -> Result<ContainerCreateBody> {
    let port_key = |port: u16| format!("{port}/tcp");
    let port_bindings: HashMap<String, Option<Vec<DockerPortBinding>>> = spec
        .publish
        .iter()
        .map(|p| {
            (
                port_key(p.container_port),
                Some(vec![DockerPortBinding {
                    host_ip: Some(p.host_ip.to_string()),
                    // Empty: the engine picks a free host port.
                    host_port: Some(String::new()),
                }]),
            )
        })
        .collect();
    // Mounts rather than `Binds`: a host path may contain `:`, which the `host:container:ro`
    // syntax of `Binds` cannot carry.
    let mounts = spec
        .mounts
        .iter()
        .map(|m| {
            let path = |p: &std::path::Path, which: &str| {
                p.to_str().map(String::from).ok_or_else(|| RuntimeError::Engine {
                    engine: ENGINE.into(),
                    operation: "creating container".into(),
                    target: spec.name.clone(),
                    message: format!(
                        "the {which} path of a mount, {}, is not UTF-8, which the Docker API cannot carry: use a UTF-8 path",
                        p.display()
                    ),
                    source: None,
                })
            };
            Ok(DockerMount {
                source: Some(path(&m.host_path, "host")?),
                target: Some(path(&m.container_path, "container")?),
                typ: Some(MountType::BIND),
                read_only: Some(m.read_only),
                ..Default::default()
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let sec = &spec.security;
    let memory = spec
        .limits
        .memory_bytes
        .map(|m| i64::try_from(m).unwrap_or(i64::MAX));
    let host_config = HostConfig {
        network_mode: Some(spec.network.clone()),
        port_bindings: Some(port_bindings),
        mounts: (!mounts.is_empty()).then_some(mounts),
        security_opt: sec
            .no_new_privileges
            .then(|| vec!["no-new-privileges".to_string()]),
        cap_drop: sec.drop_all_capabilities.then(|| vec!["ALL".to_string()]),
        cap_add: (!sec.cap_add.is_empty()).then(|| sec.cap_add.clone()),
        readonly_rootfs: Some(sec.read_only_rootfs),
        tmpfs: (!sec.tmpfs.is_empty()).then(|| {
            sec.tmpfs
                .iter()
                .map(|p| (p.clone(), TMPFS_OPTIONS.to_string()))
                .collect()
        }),
        memory,
        // Memory plus swap equal to memory: no swap on top of the limit. Left unset, Docker
        // allows as much swap again as the limit.
        memory_swap: memory,
        pids_limit: spec.limits.pids,
        ..Default::default()
    };
    Ok(ContainerCreateBody {
        image: Some(spec.image.clone()),
        user: sec.user.clone(),
        env: Some(spec.env.iter().map(|e| e.to_engine_string()).collect()),
        labels: Some(hash_map(&spec.labels)),
        exposed_ports: Some(
            spec.publish
                .iter()
                .map(|p| port_key(p.container_port))
                .collect(),
        ),
        host_config: Some(host_config),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                spec.network.clone(),
                EndpointSettings {
                    ipam_config: Some(EndpointIpamConfig {
                        ipv4_address: Some(spec.ipv4.to_string()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    })
}

/// Docker's list filters for `selector`: `label=key` or `label=key=value`, all of which must
/// match. Empty for a selector that selects everything.
pub fn label_filters(selector: &LabelSelector) -> HashMap<String, Vec<String>> {
    let labels = selector.label_filters();
    if labels.is_empty() {
        HashMap::new()
    } else {
        HashMap::from([("label".to_string(), labels)])
    }
}

/// A network of a listing.
pub fn network_info(n: Network) -> NetworkInfo {
    let subnets = n
        .ipam
        .and_then(|i| i.config)
        .unwrap_or_default()
        .iter()
        // Networks may have IPv6 subnets too, or none; only IPv4 matters for allocation.
        .filter_map(|c| c.subnet.as_deref()?.parse::<Ipv4Net>().ok())
        .collect();
    NetworkInfo {
        name: n.name.unwrap_or_default(),
        id: n.id.unwrap_or_default(),
        subnets,
        labels: btree_map(n.labels),
    }
}

/// An inspected container.
pub fn container_info(c: ContainerInspectResponse) -> ContainerInfo {
    let config = c.config.unwrap_or_default();
    let state = c.state.unwrap_or_default();
    let settings = c.network_settings.unwrap_or_default();
    ContainerInfo {
        name: c
            .name
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_default(),
        id: c.id.unwrap_or_default(),
        // The reference the container was created from, not the image ID.
        image: config.image.or(c.image).unwrap_or_default(),
        state: state.status.map_or_else(
            || ContainerState::Other("unknown".into()),
            |s| ContainerState::parse(s.as_ref()),
        ),
        health: state.health.and_then(|h| h.status).and_then(|s| match s {
            HealthStatusEnum::STARTING => Some(Health::Starting),
            HealthStatusEnum::HEALTHY => Some(Health::Healthy),
            HealthStatusEnum::UNHEALTHY => Some(Health::Unhealthy),
            HealthStatusEnum::NONE | HealthStatusEnum::EMPTY => None,
        }),
        labels: btree_map(config.labels),
        networks: endpoint_addresses(settings.networks),
        ports: settings
            .ports
            .as_ref()
            .map(ports::from_port_map)
            .unwrap_or_default(),
        created: c
            .created
            .map(SystemTime::from)
            .filter(|t| *t > SystemTime::UNIX_EPOCH),
    }
}

/// A container of a listing. Docker summarises there: ports without a host port are left out
/// and, before API 1.50, health is only in the status text.
pub fn container_summary(c: ContainerSummary) -> ContainerInfo {
    let health = c
        .health
        .and_then(|h| h.status)
        .and_then(|s| match s.to_string().as_str() {
            "starting" => Some(Health::Starting),
            "healthy" => Some(Health::Healthy),
            "unhealthy" => Some(Health::Unhealthy),
            _ => None,
        })
        .or_else(|| c.status.as_deref().and_then(health_of_status));
    ContainerInfo {
        name: c
            .names
            .unwrap_or_default()
            .first()
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_default(),
        id: c.id.unwrap_or_default(),
        image: c.image.unwrap_or_default(),
        state: c.state.map_or_else(
            || ContainerState::Other("unknown".into()),
            |s| ContainerState::parse(s.as_ref()),
        ),
        health,
        labels: btree_map(c.labels),
        networks: endpoint_addresses(c.network_settings.and_then(|n| n.networks)),
        ports: ports::from_summary(c.ports.as_deref().unwrap_or_default()),
        created: c
            .created
            .and_then(|s| u64::try_from(s).ok())
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s)),
    }
}

/// Health from a listing's status text: `Up 3 seconds (healthy)`, `(health: starting)`.
fn health_of_status(status: &str) -> Option<Health> {
    if status.contains("(healthy)") {
        Some(Health::Healthy)
    } else if status.contains("(unhealthy)") {
        Some(Health::Unhealthy)
    } else if status.contains("(health: starting)") {
        Some(Health::Starting)
    } else {
        None
    }
}

/// The IPv4 address on each network. A container that is not running has no `IPAddress`
/// yet; its pinned address (the IPAM config) is the one it will get, so report that.
fn endpoint_addresses(
    networks: Option<HashMap<String, EndpointSettings>>,
) -> BTreeMap<String, Ipv4Addr> {
    networks
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, ep)| {
            let live = ep.ip_address.as_deref().filter(|a| !a.is_empty());
            let pinned = ep
                .ipam_config
                .as_ref()
                .and_then(|c| c.ipv4_address.as_deref());
            let addr = live.or(pinned)?.parse().ok()?;
            Some((name, addr))
        })
        .collect()
}

fn hash_map(labels: &Labels) -> HashMap<String, String> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn btree_map(labels: Option<HashMap<String, String>>) -> Labels {
    labels.unwrap_or_default().into_iter().collect()
}

/// Parses the RFC 3339 timestamps Docker writes (`2024-05-07T21:09:36.123456789Z`, or with a
/// `+02:00` offset). `None` for anything else and for times before 1970, such as Docker's
/// zero time `0001-01-01T00:00:00Z`. bollard's models carry parsed times (its `time` feature is
/// on); this reads the same text for callers that hold it unparsed.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: u32 = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let digits = s.get(start..i)?;
        if digits.is_empty() {
            return None;
        }
        // Nanosecond precision: pad or cut to 9 digits.
        let nine: String = digits
            .chars()
            .chain(std::iter::repeat('0'))
            .take(9)
            .collect();
        nanos = nine.parse().ok()?;
    }
    let offset_secs = match s.get(i..)? {
        "Z" | "z" => 0,
        off if off.len() == 6 && (off.starts_with('+') || off.starts_with('-')) => {
            if off.as_bytes()[3] != b':' {
                return None;
            }
            let h = num(i + 1..i + 3)?;
            let m = num(i + 4..i + 6)?;
            let sign = if off.starts_with('-') { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Warnings of a container create that mean a requested setting will not take effect: Docker
/// creates the container anyway and says "... limit discarded" (a kernel without the pids or
/// memory cgroup). Other warnings (swap cannot be limited, say) are only worth a log line.
pub fn discarding_warnings(warnings: &[String]) -> Vec<&str> {
    warnings
        .iter()
        .map(String::as_str)
        .filter(|w| w.to_ascii_lowercase().contains("discarded"))
        .collect()
}

/// Names the kind of object a 404 on container creation is about, from the engine's message:
/// the image or the network can be missing as well as the container.
pub fn missing_on_create(message: &str) -> ObjectKind {
    let m = message.to_ascii_lowercase();
    if m.contains("no such image") {
        ObjectKind::Image
    } else if m.contains("network") {
        ObjectKind::Network
    } else {
        ObjectKind::Container
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bottle_core::runtime::{EnvValue, EnvVar, Limits, Mount, PublishSpec, Secret, Security};

    #[track_caller]
    fn check_time(s: &str, expect: Option<(u64, u32)>) {
        let got = parse_rfc3339(s).map(|t| {
            let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
            (d.as_secs(), d.subsec_nanos())
        });
        assert_eq!(got, expect, "{s}");
    }

    #[test]
    fn rfc3339_timestamps() {
        check_time("1970-01-01T00:00:00Z", Some((0, 0)));
        check_time(
            "2024-05-07T21:09:36.123456789Z",
            Some((1_715_116_176, 123_456_789)),
        );
        check_time(
            "2024-05-07T21:09:36.12Z",
            Some((1_715_116_176, 120_000_000)),
        );
        check_time("2024-05-07T23:09:36+02:00", Some((1_715_116_176, 0)));
        check_time(
            "2000-02-29T12:00:00.5-01:30",
            Some((951_831_000, 500_000_000)),
        );
        check_time("0001-01-01T00:00:00Z", None);
        check_time("2024-13-01T00:00:00Z", None);
        check_time("yesterday", None);
        check_time("2024-05-07T21:09:36", None);
    }

    fn spec() -> ContainerSpec {
        let lo: Ipv4Addr = "127.79.1.2".parse().unwrap();
        ContainerSpec {
            name: "bt-c".into(),
            image: "img:1".into(),
            network: "bt-n".into(),
            ipv4: "10.215.9.2".parse().unwrap(),
            env: vec![
                EnvVar {
                    key: "PLAIN".into(),
                    value: EnvValue::Plain("p".into()),
                },
                EnvVar {
                    key: "TOKEN".into(),
                    value: EnvValue::Secret(Secret::new("s3cret")),
                },
            ],
            mounts: vec![Mount {
                host_path: "/srv/with:colon".into(),
                container_path: "/data".into(),
                read_only: true,
            }],
            publish: vec![
                PublishSpec {
                    container_port: 9099,
                    host_ip: lo,
                },
                PublishSpec {
                    container_port: 9418,
                    host_ip: lo,
                },
            ],
            labels: Labels::from([("io.bottle.managed".into(), "true".into())]),
            security: Security {
                no_new_privileges: true,
                drop_all_capabilities: true,
                cap_add: vec!["NET_BIND_SERVICE".into()],
                read_only_rootfs: true,
                tmpfs: vec!["/tmp".into(), "/run".into()],
                user: Some("65532".into()),
            },
            limits: Limits {
                memory_bytes: Some(128 << 20),
                pids: Some(256),
            },
        }
    }

    #[test]
    fn container_body_carries_every_setting() {
        let body = container_body(&spec()).unwrap();
        let hc = body.host_config.as_ref().unwrap();
        assert_eq!(hc.security_opt, Some(vec!["no-new-privileges".to_string()]));
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(hc.cap_add, Some(vec!["NET_BIND_SERVICE".to_string()]));
        assert_eq!(hc.readonly_rootfs, Some(true));
        assert_eq!(hc.memory, Some(128 << 20));
        assert_eq!(hc.memory_swap, Some(128 << 20), "no swap beyond the limit");
        assert_eq!(hc.pids_limit, Some(256));
        assert_eq!(hc.network_mode.as_deref(), Some("bt-n"));
        let tmpfs = hc.tmpfs.as_ref().unwrap();
        assert_eq!(tmpfs.len(), 2);
        assert_eq!(tmpfs["/tmp"], TMPFS_OPTIONS);
        let pb = hc.port_bindings.as_ref().unwrap();
        assert_eq!(pb.len(), 2);
        let b = &pb["9099/tcp"].as_ref().unwrap()[0];
        assert_eq!(b.host_ip.as_deref(), Some("127.79.1.2"));
        assert_eq!(b.host_port.as_deref(), Some(""));
        let m = &hc.mounts.as_ref().unwrap()[0];
        assert_eq!(m.source.as_deref(), Some("/srv/with:colon"));
        assert_eq!(m.read_only, Some(true));
        assert_eq!(body.user.as_deref(), Some("65532"));
        let mut exposed = body.exposed_ports.clone().unwrap();
        exposed.sort();
        assert_eq!(exposed, vec!["9099/tcp", "9418/tcp"]);
        assert_eq!(
            body.env.as_deref(),
            Some(&["PLAIN=p".to_string(), "TOKEN=s3cret".to_string()][..])
        );
        let ep = &body
            .networking_config
            .as_ref()
            .unwrap()
            .endpoints_config
            .as_ref()
            .unwrap()["bt-n"];
        assert_eq!(
            ep.ipam_config.as_ref().unwrap().ipv4_address.as_deref(),
            Some("10.215.9.2")
        );
    }

    #[test]
    fn unset_hardening_sends_nothing() {
        let mut s = spec();
        s.security = Security::default();
        s.limits = Limits::default();
        let body = container_body(&s).unwrap();
        let hc = body.host_config.unwrap();
        assert_eq!(hc.security_opt, None);
        assert_eq!(hc.cap_drop, None);
        assert_eq!(hc.tmpfs, None);
        assert_eq!(hc.memory, None);
        assert_eq!(hc.pids_limit, None);
        assert_eq!(body.user, None, "the image's user is kept");
    }

    #[test]
    fn selectors_become_label_filters() {
        let sel = LabelSelector::all().has("a").eq("b", "x=y");
        assert_eq!(
            label_filters(&sel),
            HashMap::from([(
                "label".to_string(),
                vec!["a".to_string(), "b=x=y".to_string()]
            )])
        );
        assert!(label_filters(&LabelSelector::all()).is_empty());
    }

    #[test]
    fn inspect_of_a_created_container_reports_the_pinned_address() {
        let json = r#"{
            "Id": "abc", "Name": "/bt-c", "Image": "sha256:1",
            "Created": "2024-05-07T21:09:36.5Z",
            "State": {"Status": "created", "Health": {"Status": "starting"}},
            "Config": {"Image": "img:1", "Labels": {"k": "v"}},
            "NetworkSettings": {
                "Ports": {"9099/tcp": null},
                "Networks": {"bt-n": {"IPAMConfig": {"IPv4Address": "10.215.9.2"}, "IPAddress": ""}}
            }
        }"#;
        let info = container_info(serde_json::from_str(json).unwrap());
        assert_eq!(info.name, "bt-c");
        assert_eq!(info.image, "img:1");
        assert_eq!(info.state, ContainerState::Created);
        assert_eq!(info.health, Some(Health::Starting));
        assert_eq!(
            info.networks["bt-n"],
            "10.215.9.2".parse::<Ipv4Addr>().unwrap()
        );
        assert!(info.ports.is_empty());
        assert_eq!(info.labels["k"], "v");
        assert!(info.created.is_some());
    }

    #[test]
    fn listing_health_comes_from_the_status_text() {
        for (status, health) in [
            ("Up 3 seconds (healthy)", Some(Health::Healthy)),
            ("Up 3 seconds (unhealthy)", Some(Health::Unhealthy)),
            ("Up 1 second (health: starting)", Some(Health::Starting)),
            ("Up 3 seconds", None),
            ("Exited (0) 2 minutes ago", None),
        ] {
            assert_eq!(health_of_status(status), health, "{status}");
        }
    }

    #[test]
    fn warnings_that_discard_a_setting_are_told_apart() {
        let w = [
            "Your kernel does not support pids limit capabilities or the cgroup is not mounted. PIDs limit discarded.".to_string(),
            "Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap.".to_string(),
        ];
        assert_eq!(discarding_warnings(&w), vec![w[0].as_str()]);
        assert!(discarding_warnings(&[]).is_empty());
    }

    #[test]
    fn a_404_on_create_names_what_is_missing() {
        assert_eq!(missing_on_create("No such image: img:1"), ObjectKind::Image);
        assert_eq!(
            missing_on_create("network bt-n not found"),
            ObjectKind::Network
        );
        assert_eq!(missing_on_create("something else"), ObjectKind::Container);
    }
}
