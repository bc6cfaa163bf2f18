//! The libpod container-create body for a [`ContainerSpec`], and the check that Podman applied
//! every hardening setting of it.

use std::collections::BTreeSet;

use bottle_core::runtime::{ContainerSpec, Limits, Security};
use podman_api::models::{
    ContainerMount, InspectContainerData, LinuxMemory, LinuxPids, LinuxResources, Namespace,
    PerNetworkOptions, PortMapping,
};
use podman_api::opts::ContainerCreateOpts;
use serde_json::Value;

/// Options of every tmpfs: writable, but no device files, setuid binaries or executables.
use bottle_core::runtime::TMPFS_OPTIONS;

/// The JSON body of `POST /libpod/containers/create` for `spec`.
///
/// Built with podman-api's builder, then `no_new_privileges` is added by hand: the builder only
/// offers the misspelt `no_new_privilages`, which Podman silently ignores.
///
/// The body holds the container's environment, secrets included: hand it to the engine only.
pub(crate) fn body(spec: &ContainerSpec) -> Result<Value, podman_api::Error> {
    let sec = &spec.security;
    let pinned = spec.ipv4.to_string();
    let mut b = ContainerCreateOpts::builder()
        .name(&spec.name)
        .image(&spec.image)
        .net_namespace(Namespace {
            nsmode: Some("bridge".into()),
            value: None,
        })
        .networks([(
            spec.network.clone(),
            PerNetworkOptions {
                aliases: None,
                interface_name: None,
                static_ips: Some(vec![spec.ipv4.to_string()]),
                static_mac: None,
            },
        )])
        // No host port: Podman picks a free one on the requested address.
        .portmappings(spec.publish.iter().map(|p| PortMapping {
            container_port: Some(p.container_port),
            host_ip: Some(p.host_ip.to_string()),
            host_port: None,
            protocol: Some("tcp".into()),
            range: None,
        }))
        .env(spec.env.iter().map(|e| (e.key.as_str(), e.value.expose())))
        .labels(
            spec.labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .chain([(crate::inspect::PINNED_IPV4_LABEL, pinned.as_str())]),
        )
        .mounts(mounts(spec))
        .read_only_fs(sec.read_only_rootfs);
    if sec.drop_all_capabilities {
        b = b.drop_capabilities(["ALL"]);
    }
    if !sec.cap_add.is_empty() {
        b = b.add_capabilities(sec.cap_add.iter());
    }
    if let Some(user) = &sec.user {
        b = b.user(user);
    }
    if let Some(resources) = resources(spec.limits) {
        b = b.resource_limits(resources);
    }
    let mut body: Value = serde_json::from_slice(&b.build().serialize_vec()?)?;
    if sec.no_new_privileges {
        if let Some(map) = body.as_object_mut() {
            map.insert("no_new_privileges".into(), Value::Bool(true));
        }
    }
    Ok(body)
}

fn mounts(spec: &ContainerSpec) -> Vec<ContainerMount> {
    let binds = spec.mounts.iter().map(|m| ContainerMount {
        destination: Some(m.container_path.display().to_string()),
        source: Some(m.host_path.display().to_string()),
        _type: Some("bind".into()),
        options: Some(vec![
            "rbind".into(),
            if m.read_only { "ro" } else { "rw" }.into(),
        ]),
        uid_mappings: None,
        gid_mappings: None,
    });
    let tmpfs = spec.security.tmpfs.iter().map(|path| ContainerMount {
        destination: Some(path.clone()),
        source: Some("tmpfs".into()),
        _type: Some("tmpfs".into()),
        options: Some(TMPFS_OPTIONS.iter().map(|o| o.to_string()).collect()),
        uid_mappings: None,
        gid_mappings: None,
    });
    binds.chain(tmpfs).collect()
}

fn resources(limits: Limits) -> Option<LinuxResources> {
    if limits.memory_bytes.is_none() && limits.pids.is_none() {
        return None;
    }
    Some(LinuxResources {
        block_io: None,
        cpu: None,
        devices: None,
        hugepage_limits: None,
        memory: limits.memory_bytes.map(|bytes| LinuxMemory {
            disable_oom_killer: None,
            kernel: None,
            kernel_tcp: None,
            // Beyond i64::MAX is no limit at all; saturate rather than wrap to a negative.
            limit: Some(i64::try_from(bytes).unwrap_or(i64::MAX)),
            reservation: None,
            // Memory plus swap equal to memory: no swap on top of the limit (unset, the
            // container may swap as much again as its limit).
            swap: Some(i64::try_from(bytes).unwrap_or(i64::MAX)),
            swappiness: None,
            use_hierarchy: None,
        }),
        network: None,
        pids: limits.pids.map(|limit| LinuxPids { limit: Some(limit) }),
        rdma: None,
        unified: None,
    })
}

/// Capability names as Podman reports them (`CAP_NET_BIND_SERVICE`), upper case.
fn cap_name(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// Every requested hardening setting or limit that the created container does not show, as
/// readable descriptions; empty when all took effect.
pub(crate) fn missing_settings(
    security: &Security,
    limits: Limits,
    d: &InspectContainerData,
) -> Vec<String> {
    let mut missing = Vec::new();
    let host = d.host_config.as_ref();
    let security_opt = host
        .and_then(|h| h.security_opt.clone())
        .unwrap_or_default();
    if security.no_new_privileges
        && !security_opt
            .iter()
            .any(|o| matches!(o.as_str(), "no-new-privileges" | "no-new-privileges:true"))
    {
        missing.push(format!(
            "no-new-privileges (SecurityOpt is {security_opt:?})"
        ));
    }
    if security.read_only_rootfs && host.and_then(|h| h.readonly_rootfs) != Some(true) {
        missing.push("read-only root filesystem".into());
    }
    if security.drop_all_capabilities {
        let allowed: BTreeSet<String> = security.cap_add.iter().map(|c| cap_name(c)).collect();
        let bounding = d.bounding_caps.clone().unwrap_or_default();
        let extra: Vec<&String> = bounding
            .iter()
            .filter(|c| !allowed.contains(&cap_name(c)))
            .collect();
        if !extra.is_empty() {
            missing.push(format!(
                "all capabilities dropped except {allowed:?} (still has {extra:?})"
            ));
        }
    }
    let tmpfs = host.and_then(|h| h.tmpfs.clone()).unwrap_or_default();
    for path in &security.tmpfs {
        if !tmpfs.contains_key(path) {
            missing.push(format!("tmpfs on {path}"));
        }
    }
    if let Some(user) = &security.user {
        let have = d.config.as_ref().and_then(|c| c.user.as_deref());
        if have != Some(user.as_str()) {
            missing.push(format!("user {user} (runs as {have:?})"));
        }
    }
    if let Some(pids) = limits.pids {
        let have = host.and_then(|h| h.pids_limit);
        if have != Some(pids) {
            missing.push(format!("pids limit {pids} (is {have:?})"));
        }
    }
    if let Some(bytes) = limits.memory_bytes {
        let have = host.and_then(|h| h.memory);
        if have.and_then(|m| u64::try_from(m).ok()) != Some(bytes) {
            missing.push(format!("memory limit {bytes} bytes (is {have:?})"));
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;
    use bottle_core::runtime::{EnvValue, EnvVar, Mount, PublishSpec, Secret};
    use serde_json::json;

    fn spec() -> ContainerSpec {
        ContainerSpec {
            name: "bt-c".into(),
            image: "bottle-sidecars:latest".into(),
            network: "bt-n".into(),
            ipv4: "10.1.2.3".parse().unwrap(),
            env: vec![EnvVar {
                key: "TOKEN".into(),
                value: EnvValue::Secret(Secret::new("s3cret")),
            }],
            mounts: vec![Mount {
                host_path: "/srv/x".into(),
                container_path: "/x".into(),
                read_only: true,
            }],
            publish: vec![PublishSpec {
                container_port: 9099,
                host_ip: "127.0.0.9".parse().unwrap(),
            }],
            labels: [("k".to_string(), "v".to_string())].into(),
            security: Security {
                no_new_privileges: true,
                drop_all_capabilities: true,
                cap_add: vec!["NET_BIND_SERVICE".into()],
                read_only_rootfs: true,
                tmpfs: vec!["/tmp".into()],
                user: Some("65532".into()),
            },
            limits: Limits {
                memory_bytes: Some(1 << 27),
                pids: Some(64),
            },
        }
    }

    #[test]
    fn the_body_carries_every_setting_with_libpod_spelling() {
        let b = body(&spec()).unwrap();
        assert_eq!(b["no_new_privileges"], json!(true));
        assert!(b.get("no_new_privilages").is_none(), "{b}");
        assert_eq!(b["cap_drop"], json!(["ALL"]));
        assert_eq!(b["cap_add"], json!(["NET_BIND_SERVICE"]));
        assert_eq!(b["read_only_filesystem"], json!(true));
        assert_eq!(b["user"], json!("65532"));
        assert_eq!(b["env"], json!({"TOKEN": "s3cret"}));
        assert_eq!(b["Networks"], json!({"bt-n": {"static_ips": ["10.1.2.3"]}}));
        assert_eq!(b["netns"], json!({"nsmode": "bridge"}));
        assert_eq!(
            b["portmappings"],
            json!([{"container_port": 9099, "host_ip": "127.0.0.9", "protocol": "tcp"}])
        );
        assert_eq!(
            b["resource_limits"]["memory"],
            json!({"limit": 1 << 27, "swap": 1 << 27}),
            "no swap beyond the limit"
        );
        assert_eq!(b["resource_limits"]["pids"], json!({"limit": 64}));
        assert_eq!(
            b["mounts"],
            json!([
                {"destination": "/x", "source": "/srv/x", "type": "bind", "options": ["rbind", "ro"]},
                {"destination": "/tmp", "source": "tmpfs", "type": "tmpfs", "options": ["rw", "nosuid", "nodev", "noexec"]}
            ])
        );
    }

    #[test]
    fn settings_missing_from_inspect_are_named() {
        let s = spec();
        let hardened = json!({
            "BoundingCaps": ["CAP_NET_BIND_SERVICE"],
            "Config": {"User": "65532"},
            "HostConfig": {
                "SecurityOpt": ["no-new-privileges"],
                "ReadonlyRootfs": true,
                "Tmpfs": {"/tmp": "rw,nosuid,nodev,noexec"},
                "PidsLimit": 64,
                "Memory": 1 << 27
            }
        });
        let check = |inspect: serde_json::Value| {
            let d: InspectContainerData = serde_json::from_value(inspect).unwrap();
            missing_settings(&s.security, s.limits, &d)
        };
        assert!(check(hardened.clone()).is_empty());

        let mut ignored = hardened.clone();
        ignored["HostConfig"]["SecurityOpt"] = json!([]);
        ignored["HostConfig"]["ReadonlyRootfs"] = json!(false);
        ignored["HostConfig"]["Tmpfs"] = json!({});
        ignored["HostConfig"]["PidsLimit"] = json!(0);
        ignored["HostConfig"]["Memory"] = json!(0);
        ignored["BoundingCaps"] = json!(["CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN"]);
        ignored["Config"]["User"] = json!("");
        let missing = check(ignored);
        assert_eq!(missing.len(), 7, "{missing:#?}");
        assert!(missing[0].starts_with("no-new-privileges"), "{missing:#?}");
        assert!(
            missing.iter().any(|m| m.contains("CAP_SYS_ADMIN")),
            "{missing:#?}"
        );
    }
}
