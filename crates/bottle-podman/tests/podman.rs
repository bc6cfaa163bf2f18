//! Podman-specific checks beyond the conformance suite, against a real Podman: every hardening
//! setting of a bottle as inspect shows it, publishing only on the bottle's loopback address,
//! cleanup after `down` and after a launch killed half-way, removal without a grace period,
//! secrets kept out of errors; plus port parsing over recorded inspect JSON.

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use bottle_core::conformance::harness::{log_lines, say};
use bottle_core::conformance::{image_archive, Fixture};
use bottle_core::lifecycle::{NoProgress, Readiness};
use bottle_core::runtime::{
    ContainerSpec, EnvValue, EnvVar, LabelSelector, Limits, LogOptions, NetworkSpec, PortBinding,
    Secret, Security,
};
use bottle_core::{BottleSpec, ContainerRuntime, ErrorKind, Lifecycle};
use bottle_podman::inspect::port_bindings;
use bottle_podman::PodmanRuntime;
use podman_api::opts::{ContainerListOpts, NetworkListOpts};

/// Names of every container and network on the engine whose name starts with `prefix`,
/// read without label filters: what `down` must leave empty.
async fn objects_named(rt: &PodmanRuntime, prefix: &str) -> Vec<String> {
    let podman = rt.client();
    let containers = podman
        .containers()
        .list(&ContainerListOpts::builder().all(true).build())
        .await
        .expect("list containers");
    let networks = podman
        .networks()
        .list(&NetworkListOpts::builder().build())
        .await
        .expect("list networks");
    containers
        .into_iter()
        .flat_map(|c| c.names.unwrap_or_default())
        .map(|n| format!("container {n}"))
        .chain(
            networks
                .into_iter()
                .filter_map(|n| n.name)
                .map(|n| format!("network {n}")),
        )
        .filter(|n| {
            n.split_once(' ')
                .is_some_and(|(_, name)| name.starts_with(prefix))
        })
        .collect()
}

/// A lifecycle for `case` with nothing of it left from an earlier run.
async fn fresh(
    rt: &Arc<dyn ContainerRuntime>,
    fx: &Fixture,
    case: &str,
    slugs: &[&str],
) -> Lifecycle {
    let lc = fx.lifecycle(rt.clone(), case);
    for slug in slugs {
        lc.down(slug, &NoProgress)
            .await
            .expect("down before the test");
    }
    lc
}

fn cap_name(c: &str) -> String {
    let c = c.to_ascii_uppercase();
    if c.starts_with("CAP_") {
        c
    } else {
        format!("CAP_{c}")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hardening_setting_of_a_bottle_shows_in_inspect() {
    let Some((rt, podman, fx)) = common::setup("hardening").await else {
        return;
    };
    say("podman: hardening of a bottle from Lifecycle::up, read back with inspect");
    let lc = fresh(&rt, &fx, "harden", &["hard"]).await;
    let bottle = lc
        .up(&BottleSpec::new("hard"), &NoProgress)
        .await
        .expect("up");
    let plan = &bottle.plan;
    // The planner asks for all of it, so each check below checks something.
    let sec = &plan.security;
    assert!(
        sec.no_new_privileges && sec.drop_all_capabilities && sec.read_only_rootfs,
        "{sec:?}"
    );
    assert!(!sec.tmpfs.is_empty(), "{sec:?}");
    let (Some(memory), Some(pids)) = (plan.limits.memory_bytes, plan.limits.pids) else {
        panic!("the planner sets memory and pids limits: {:?}", plan.limits);
    };

    let d = podman
        .client()
        .containers()
        .get(&plan.container_name)
        .inspect()
        .await
        .expect("inspect");
    let host = d.host_config.as_ref().expect("HostConfig");
    let security_opt = host.security_opt.clone().unwrap_or_default();
    assert!(
        security_opt.iter().any(|o| o == "no-new-privileges"),
        "no-new-privileges in SecurityOpt {security_opt:?}"
    );
    let allowed: BTreeSet<String> = sec.cap_add.iter().map(|c| cap_name(c)).collect();
    for (what, caps) in [
        ("EffectiveCaps", &d.effective_caps),
        ("BoundingCaps", &d.bounding_caps),
    ] {
        let caps: BTreeSet<String> = caps
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|c| cap_name(c))
            .collect();
        assert!(
            caps.is_subset(&allowed),
            "{what} {caps:?} beyond the image's {allowed:?}"
        );
    }
    assert!(
        !host.cap_drop.clone().unwrap_or_default().is_empty(),
        "CapDrop lists the dropped capabilities"
    );
    assert_eq!(
        host.readonly_rootfs,
        Some(true),
        "read-only root filesystem"
    );
    let tmpfs = host.tmpfs.clone().unwrap_or_default();
    for path in &sec.tmpfs {
        let options = tmpfs
            .get(path)
            .unwrap_or_else(|| panic!("tmpfs on {path}: {tmpfs:?}"));
        assert!(
            options.contains("noexec") && options.contains("nosuid"),
            "{path}: {options}"
        );
    }
    assert_eq!(host.pids_limit, Some(pids), "pids limit");
    assert_eq!(
        host.memory.and_then(|m| u64::try_from(m).ok()),
        Some(memory),
        "memory limit"
    );
    let user = d
        .config
        .as_ref()
        .and_then(|c| c.user.clone())
        .unwrap_or_default();
    let uid = user.split(':').next().unwrap_or_default();
    assert!(
        !matches!(uid, "" | "0" | "root"),
        "runs as a non-root user, not {user:?}"
    );
    let state = d.state.as_ref().and_then(|s| s.status.clone());
    assert_eq!(state.as_deref(), Some("running"));

    lc.down("hard", &NoProgress).await.expect("down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bottle_answers_on_its_loopback_address_only_and_keeps_its_pinned_ip() {
    let Some((rt, _, fx)) = common::setup("loopback").await else {
        return;
    };
    say("podman: published ports answer on the bottle's loopback, not on 127.0.0.1");
    let lc = fresh(&rt, &fx, "lo", &["only"]).await;
    let bottle = lc
        .up(&BottleSpec::new("only"), &NoProgress)
        .await
        .expect("up");
    let ep = &bottle.endpoints;
    assert_ne!(
        ep.loopback,
        Ipv4Addr::LOCALHOST,
        "a bottle gets its own loopback address"
    );
    assert!(!ep.daemons.is_empty());
    for d in &ep.daemons {
        let on_bottle = SocketAddr::new(IpAddr::V4(ep.loopback), d.host_port);
        assert!(
            Readiness::any_runtime().probe(on_bottle).await,
            "{} answers on {on_bottle}",
            d.daemon
        );
        let on_localhost = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), d.host_port);
        assert!(
            TcpStream::connect_timeout(&on_localhost, Duration::from_secs(1)).is_err(),
            "{} must not answer on {on_localhost}",
            d.daemon
        );
    }
    let info = rt
        .inspect_container(&bottle.plan.container_name)
        .await
        .expect("inspect");
    assert_eq!(
        info.networks.get(&bottle.plan.network_name),
        Some(&bottle.plan.bundle_ip),
        "pinned IP"
    );
    assert!(!info.ports.is_empty());
    for b in &info.ports {
        assert_eq!(b.host_ip, Some(IpAddr::V4(ep.loopback)), "{b:?}");
    }
    // The bundle's output, whole, tailed, and cut short by the sink.
    let name = &bottle.plan.container_name;
    let all = log_lines(&*rt, name, LogOptions::default(), None).await;
    assert!(!all.is_empty(), "the bundle says something when it starts");
    assert!(all.iter().all(|l| !l.contains('\n')), "{all:?}");
    let tail = LogOptions {
        tail: Some(1),
        follow: false,
    };
    let last = log_lines(&*rt, name, tail, None).await;
    assert_eq!(
        last.as_slice(),
        &all[all.len() - 1..],
        "tail 1 is the last line"
    );
    let first = log_lines(&*rt, name, LogOptions::default(), Some(1)).await;
    assert_eq!(
        first.len(),
        1,
        "a sink that returns false gets no more lines"
    );
    lc.down("only", &NoProgress).await.expect("down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bottles_up_at_once_are_distinct_and_both_answer() {
    let Some((rt, podman, fx)) = common::setup("two").await else {
        return;
    };
    say("podman: two bottles up at once");
    let lc = fresh(&rt, &fx, "both", &["east", "west"]).await;
    let (east, west) = (BottleSpec::new("east"), BottleSpec::new("west"));
    let (a, b) = tokio::join!(lc.up(&east, &NoProgress), lc.up(&west, &NoProgress));
    let (a, b) = (a.expect("up east"), b.expect("up west"));
    assert_ne!(a.plan.subnet, b.plan.subnet);
    assert_ne!(a.plan.bundle_ip, b.plan.bundle_ip);
    assert_ne!(a.endpoints.loopback, b.endpoints.loopback);
    assert_ne!(a.plan.container_name, b.plan.container_name);
    for bottle in [&a, &b] {
        for d in &bottle.endpoints.daemons {
            let addr = SocketAddr::new(IpAddr::V4(bottle.endpoints.loopback), d.host_port);
            assert!(
                Readiness::any_runtime().probe(addr).await,
                "{} of {} on {addr}",
                d.daemon,
                bottle.plan.slug
            );
        }
    }
    assert_eq!(lc.list().await.expect("list").len(), 2);
    for slug in ["east", "west"] {
        lc.down(slug, &NoProgress).await.expect("down");
    }
    let left = objects_named(&podman, &format!("{}-both", fx.prefix)).await;
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_leaves_nothing_and_a_second_down_succeeds() {
    let Some((rt, podman, fx)) = common::setup("down").await else {
        return;
    };
    say("podman: down removes everything; down again is a no-op");
    let lc = fresh(&rt, &fx, "gone", &["bye"]).await;
    lc.up(&BottleSpec::new("bye"), &NoProgress)
        .await
        .expect("up");
    let prefix = format!("{}-gone", fx.prefix);
    assert_eq!(
        objects_named(&podman, &prefix).await.len(),
        2,
        "a network and a container"
    );
    let removed = lc.down("bye", &NoProgress).await.expect("down");
    assert_eq!(removed.len(), 2, "{removed:?}");
    let left = objects_named(&podman, &prefix).await;
    assert!(left.is_empty(), "left behind: {left:?}");
    let again = lc.down("bye", &NoProgress).await.expect("second down");
    assert!(again.is_empty(), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_recovers_a_launch_killed_between_network_and_container() {
    let Some((rt, podman, fx)) = common::setup("killed").await else {
        return;
    };
    say("podman: a launch killed after creating its network is cleaned up by down");
    let lc = fresh(&rt, &fx, "killed", &["half"]).await;
    // What a launcher killed right after its network step leaves: the planned network, with
    // its labels, and no container.
    let plan = lc.plan(&BottleSpec::new("half")).await.expect("plan");
    rt.create_network(&NetworkSpec {
        name: plan.network_name.clone(),
        subnet: plan.subnet,
        gateway: plan.gateway,
        labels: plan.network_labels.clone(),
    })
    .await
    .expect("the network of the killed launch");
    let listed = lc.list().await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(!listed[0].is_complete(), "{listed:?}");
    let removed = lc.down("half", &NoProgress).await.expect("down");
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(removed[0].name, plan.network_name);
    let left = objects_named(&podman, &format!("{}-killed", fx.prefix)).await;
    assert!(left.is_empty(), "left behind: {left:?}");
    // And the slug can be brought up again.
    lc.up(&BottleSpec::new("half"), &NoProgress)
        .await
        .expect("up after recovery");
    lc.down("half", &NoProgress).await.expect("down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_running_container_is_complete_when_the_call_returns() {
    let Some((rt, podman, fx)) = common::setup("remove").await else {
        return;
    };
    say("podman: removing a running container whose PID 1 ignores SIGTERM");
    let image = common::sigterm_deaf_image(&podman).await;
    let name = format!("{}-rm-c", fx.prefix);
    let net = NetworkSpec {
        name: format!("{}-rm-n", fx.prefix),
        subnet: "10.216.100.0/24".parse().expect("subnet"),
        gateway: Ipv4Addr::new(10, 216, 100, 1),
        labels: [("io.bottle.test".to_string(), "remove".to_string())].into(),
    };
    rt.remove_container(&name).await.expect("clean container");
    rt.remove_network(&net.name).await.expect("clean network");
    rt.create_network(&net).await.expect("network");
    let spec = ContainerSpec {
        name: name.clone(),
        image,
        network: net.name.clone(),
        ipv4: Ipv4Addr::new(10, 216, 100, 9),
        env: Vec::new(),
        mounts: Vec::new(),
        publish: Vec::new(),
        labels: net.labels.clone(),
        security: Security {
            no_new_privileges: true,
            drop_all_capabilities: true,
            cap_add: Vec::new(),
            read_only_rootfs: true,
            tmpfs: Vec::new(),
            user: Some("65534".into()),
        },
        limits: Limits {
            memory_bytes: Some(32 << 20),
            pids: Some(8),
        },
    };
    rt.create_container(&spec).await.expect("create");
    rt.start_container(&name).await.expect("start");
    let running = rt.inspect_container(&name).await.expect("inspect");
    assert_eq!(running.state.to_string(), "running");

    rt.remove_container(&name).await.expect("remove running");
    // Gone at once: not inspectable, not listed, and its network is free to remove.
    let err = rt
        .inspect_container(&name)
        .await
        .expect_err("inspect after remove");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let sel = LabelSelector::all().eq("io.bottle.test", "remove");
    assert!(rt.list_containers(&sel).await.expect("list").is_empty());
    rt.remove_network(&net.name)
        .await
        .expect("network removable right away");
    assert!(objects_named(&podman, &format!("{}-rm-", fx.prefix))
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_env_values_stay_out_of_errors() {
    let Some((rt, _, fx)) = common::setup("secrets").await else {
        return;
    };
    let secret = "bt-podman-s3cret-value-7f3a";
    let spec = ContainerSpec {
        name: format!("{}-secret-c", fx.prefix),
        image: "bt-podman-absent:never".into(),
        network: format!("{}-secret-missing-net", fx.prefix),
        ipv4: Ipv4Addr::new(10, 216, 101, 2),
        env: vec![EnvVar {
            key: "TOKEN".into(),
            value: EnvValue::Secret(Secret::new(secret)),
        }],
        mounts: Vec::new(),
        publish: Vec::new(),
        labels: Default::default(),
        security: Security::default(),
        limits: Limits::default(),
    };
    let err = rt
        .create_container(&spec)
        .await
        .expect_err("create must fail");
    let mut text = format!("{err} {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        text.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    assert!(!text.contains(secret), "secret in the error: {text}");
    assert!(
        text.contains(&spec.name) || text.contains(&spec.network) || text.contains(&spec.image),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_and_image_loading() {
    let Some((_, podman, fx)) = common::setup("info").await else {
        return;
    };
    say("podman: info, and loading the reference archive again");
    let info = podman.info().await.expect("info");
    assert_eq!(info.engine, "podman");
    assert!(
        !info.version.is_empty() && !info.api_version.is_empty(),
        "{info:?}"
    );
    assert_eq!(info.endpoint, podman.endpoint());
    // Loading an image that is present is harmless and reports it by the name users give.
    let names = podman
        .load_image(&image_archive(env!("CARGO_MANIFEST_DIR")))
        .await
        .expect("load");
    assert!(names.contains(&fx.image), "{names:?} includes {}", fx.image);
    let image = podman
        .image(&fx.image)
        .await
        .expect("lookup")
        .expect("present");
    assert!(
        !image.user.is_empty(),
        "the reference image runs as a non-root user"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_on_a_missing_container_are_not_found() {
    let Some((rt, _, fx)) = common::setup("missing").await else {
        return;
    };
    let name = format!("{}-never-created", fx.prefix);
    let start = rt.start_container(&name).await.expect_err("start");
    assert_eq!(start.kind(), ErrorKind::NotFound, "{start}");
    let logs = rt
        .logs(&name, LogOptions::default(), &mut |_| true)
        .await
        .expect_err("logs");
    assert_eq!(
        logs.kind(),
        ErrorKind::NotFound,
        "{logs} {:?}",
        std::error::Error::source(&logs)
    );
    assert!(logs.to_string().contains(&name), "{logs}");
    assert!(rt
        .image("bt-podman-absent:never")
        .await
        .expect("lookup")
        .is_none());
}

#[tokio::test]
async fn an_engine_that_does_not_answer_is_engine_unavailable() {
    let url = "unix:///nonexistent/bt-podman/podman.sock";
    let err = PodmanRuntime::connect_to(url)
        .await
        .expect_err("nothing listens there");
    assert_eq!(err.kind(), ErrorKind::EngineUnavailable, "{err}");
    let text = err.to_string();
    assert!(text.contains(url), "names what was tried: {text}");
    assert!(
        text.contains("podman system service"),
        "says what to do: {text}"
    );
    assert!(std::error::Error::source(&err).is_some(), "keeps the cause");
}

#[track_caller]
fn check(ports_json: &str, expect: &[(u16, Option<&str>, Option<u16>)]) {
    let json: serde_json::Value = serde_json::from_str(ports_json).expect("test JSON");
    let got = port_bindings(&json);
    let want: Vec<PortBinding> = expect
        .iter()
        .map(|&(container_port, ip, host_port)| PortBinding {
            container_port,
            host_ip: ip.map(|ip| ip.parse().expect("test IP")),
            host_port,
        })
        .collect();
    assert_eq!(got, want, "{ports_json}");
}

#[test]
fn port_bindings_from_inspect_json() {
    // What Podman shows for a loopback publish.
    check(
        r#"{"9099/tcp": [{"HostIp": "127.80.255.5", "HostPort": "40123"}]}"#,
        &[(9099, Some("127.80.255.5"), Some(40123))],
    );
    // A port without bindings, as `null` or missing.
    check(r#"{"9099/tcp": null, "9100/tcp": []}"#, &[]);
    // Podman's wildcard bind: an empty HostIp is no address, which the lifecycle refuses.
    check(
        r#"{"9099/tcp": [{"HostIp": "", "HostPort": "40123"}]}"#,
        &[(9099, None, Some(40123))],
    );
    check(
        r#"{"9099/tcp": [{"HostPort": "40123"}]}"#,
        &[(9099, None, Some(40123))],
    );
    // Not assigned yet: empty, zero or missing host port.
    check(
        r#"{"9099/tcp": [{"HostIp": "127.0.0.9", "HostPort": ""}],
            "9100/tcp": [{"HostIp": "127.0.0.9", "HostPort": "0"}],
            "9418/tcp": [{"HostIp": "127.0.0.9"}]}"#,
        &[
            (9099, Some("127.0.0.9"), None),
            (9100, Some("127.0.0.9"), None),
            (9418, Some("127.0.0.9"), None),
        ],
    );
    // Several bindings of one port, IPv6 too, numbers as ports: all reported, sorted.
    check(
        r#"{"9099/tcp": [{"HostIp": "::", "HostPort": 40124}, {"HostIp": "0.0.0.0", "HostPort": "40123"}]}"#,
        &[
            (9099, Some("0.0.0.0"), Some(40123)),
            (9099, Some("::"), Some(40124)),
        ],
    );
    check(
        r#"{"9099/tcp": [{"HostIp": "[::1]", "HostPort": "1"}]}"#,
        &[(9099, Some("::1"), Some(1))],
    );
    // An address that does not parse is no address (refused), never trusted.
    check(
        r#"{"9099/tcp": [{"HostIp": "localhost", "HostPort": "1"}]}"#,
        &[(9099, None, Some(1))],
    );
    // TCP first within a port; a key without protocol is TCP; junk keys and shapes are skipped.
    check(
        r#"{"53/udp": [{"HostIp": "127.0.0.9", "HostPort": "2"}],
            "53": [{"HostIp": "127.0.0.9", "HostPort": "1"}],
            "http/tcp": [{"HostIp": "127.0.0.9", "HostPort": "3"}],
            "80/tcp": {"HostIp": "127.0.0.9"}}"#,
        &[
            (53, Some("127.0.0.9"), Some(1)),
            (53, Some("127.0.0.9"), Some(2)),
        ],
    );
    check(
        r#"{"9099/tcp": [{"HostIp": "127.0.0.9", "HostPort": "70000"}]}"#,
        &[(9099, Some("127.0.0.9"), None)],
    );
    check("null", &[]);
    check("[]", &[]);
}
