//! What the adapter says about the service it reached, checked against what that service does:
//! how it was found, whether it runs rootless, how a published port behaves before a daemon
//! listens (rootless `rootlessport` accepts, rootful DNAT refuses), and, on a rootless service
//! of a cgroup v1 host, that resource limits are refused with the reason rather than dropped.
//!
//! Runs against whichever service `PodmanRuntime::connect` finds: the rootful one as root, the
//! user's rootless one as a user (CI runs this file both ways).

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bottle_core::catalog::DAEMONS_ENV;
use bottle_core::runtime::{
    ContainerSpec, EnvValue, EnvVar, LabelSelector, Limits, NetworkSpec, PublishSpec, Security,
};
use bottle_core::{ContainerRuntime, PortForwarding};
use bottle_podman::PodmanRuntime;
use tokio::io::AsyncReadExt;

const LABEL: &str = "io.bottle.test.rootless";

/// A network and a container of this file, on addresses no other Podman test uses, with the
/// reference image running `selfcheck` (an internal daemon) and publishing `published`.
fn objects(
    case: &str,
    third: u8,
    image: &str,
    published: &[u16],
    limits: Limits,
) -> (NetworkSpec, ContainerSpec) {
    let name = format!("{}-rootless-{case}", common::SUITE.prefix);
    let labels: bottle_core::runtime::Labels = [(LABEL.to_string(), case.to_string())].into();
    let network = NetworkSpec {
        name: name.clone(),
        subnet: format!("10.216.{third}.0/24").parse().expect("subnet"),
        gateway: Ipv4Addr::new(10, 216, third, 1),
        labels: labels.clone(),
    };
    let container = ContainerSpec {
        name,
        image: image.to_string(),
        network: network.name.clone(),
        ipv4: Ipv4Addr::new(10, 216, third, 2),
        env: vec![EnvVar {
            key: DAEMONS_ENV.into(),
            value: EnvValue::Plain("selfcheck".into()),
        }],
        mounts: Vec::new(),
        publish: published
            .iter()
            .map(|&container_port| PublishSpec {
                container_port,
                host_ip: Ipv4Addr::new(127, 80, third, 9),
            })
            .collect(),
        labels,
        security: Security {
            no_new_privileges: true,
            drop_all_capabilities: true,
            read_only_rootfs: true,
            tmpfs: vec!["/tmp".into()],
            ..Security::default()
        },
        limits,
    };
    (network, container)
}

async fn remove(rt: &PodmanRuntime, case: &str) {
    let sel = LabelSelector::all().eq(LABEL, case);
    for c in rt.list_containers(&sel).await.expect("list containers") {
        rt.remove_container(&c.name)
            .await
            .expect("remove container");
    }
    for n in rt.list_networks(&sel).await.expect("list networks") {
        rt.remove_network(&n.name).await.expect("remove network");
    }
}

/// The host's cgroup hierarchy is the unified one (v2).
fn cgroup_v2() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_says_how_it_was_found_and_who_runs_it() {
    let Some(rt) = common::engine("discovery").await else {
        return;
    };
    let found = rt.discovered();
    assert_eq!(found.uri, rt.endpoint());
    assert!(!found.source.is_empty(), "{found:?}");
    if let Some(path) = found.uri.strip_prefix("unix://") {
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(path).expect("the socket exists").uid();
        assert_eq!(found.rootless, Some(owner != 0), "{found:?}");
        assert_eq!(
            rt.port_forwarding(),
            if owner == 0 {
                PortForwarding::Direct
            } else {
                PortForwarding::Proxied
            }
        );
    }
    // Discovery without connecting agrees when the socket it names is the one that answered.
    let first = bottle_podman::discover().expect("discover");
    if first.uri == found.uri {
        assert_eq!(first, *found);
    }
    bottle_core::conformance::harness::say(&format!(
        "podman: connected to {} ({}), rootless: {:?}",
        found.uri, found.source, found.rootless
    ));
}

/// A port published with nothing listening behind it: the rootful service's kernel DNAT refuses
/// the connection (so `Direct` is true of it), the rootless service's `rootlessport` accepts it
/// and then closes it (so only `Proxied` is true of it). The adapter's report must match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_port_behaves_as_reported() {
    let Some((_, rt, fx)) = common::setup("published_port_behaves_as_reported").await else {
        return;
    };
    let case = "forwarding";
    remove(&rt, case).await;
    // No limits: this check must also run where a rootless service cannot apply them.
    let (net, spec) = objects(case, 110, &fx.image, &[9999], Limits::default());
    rt.create_network(&net).await.expect("create network");
    rt.create_container(&spec).await.expect("create container");
    rt.start_container(&spec.name).await.expect("start");
    let lo = spec.publish[0].host_ip;
    let deadline = Instant::now() + Duration::from_secs(30);
    let port = loop {
        let info = rt.inspect_container(&spec.name).await.expect("inspect");
        if let Some(p) = info.ports.iter().find_map(|b| b.host_port) {
            break p;
        }
        assert!(Instant::now() < deadline, "no host port for 9999: {info:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let at = SocketAddr::new(IpAddr::V4(lo), port);
    let accepted = match tokio::net::TcpStream::connect(at).await {
        Ok(mut stream) => {
            // Whatever accepted must not pretend to be a daemon: it closes without a byte.
            let mut buf = [0u8; 16];
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
            assert!(
                matches!(read, Ok(Ok(0)) | Ok(Err(_))),
                "{at} (nothing behind it) answered {read:?}"
            );
            true
        }
        Err(_) => false,
    };
    let reported = rt.port_forwarding();
    remove(&rt, case).await;
    match reported {
        PortForwarding::Direct => assert!(
            !accepted,
            "the adapter reports Direct, but {at} accepted with nothing behind it"
        ),
        PortForwarding::Proxied => {
            if rt.rootless() == Some(true) {
                assert!(
                    accepted,
                    "rootless: expected rootlessport to accept on {at} before a daemon listens"
                );
            }
        }
    }
    bottle_core::conformance::harness::say(&format!(
        "podman: rootless {:?}: a published port without a daemon was {}; reported {reported:?}",
        rt.rootless(),
        if accepted { "accepted" } else { "refused" }
    ));
}

/// Limits a rootless service on cgroup v1 would drop: the create fails, names the limits and the
/// reason, and leaves nothing behind. Elsewhere the limits take effect (the conformance suite
/// checks them from inside the container) and the create succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_take_effect_or_the_create_says_why_not() {
    let Some((_, rt, fx)) = common::setup("limits_take_effect_or_the_create_says_why_not").await
    else {
        return;
    };
    let case = "limits";
    remove(&rt, case).await;
    let limits = Limits {
        memory_bytes: Some(64 * 1024 * 1024),
        pids: Some(64),
    };
    let (net, spec) = objects(case, 111, &fx.image, &[], limits);
    rt.create_network(&net).await.expect("create network");
    let created = rt.create_container(&spec).await;
    let left = rt
        .list_containers(&LabelSelector::all().eq(LABEL, case))
        .await
        .expect("list");
    remove(&rt, case).await;
    let applies = rt.applies_limits().await.expect("libpod info");
    assert_eq!(applies, rt.rootless() != Some(true) || cgroup_v2());
    if !applies {
        let err = created.expect_err("a rootless service on cgroup v1 drops limits");
        let msg = err.to_string();
        for want in ["memory limit", "pids limit", "cgroup v2", "removed"] {
            assert!(msg.contains(want), "{want:?} missing from: {msg}");
        }
        assert!(left.is_empty(), "a refused create left {left:?}");
        bottle_core::conformance::harness::say(&format!(
            "podman: rootless on cgroup v1 refuses limits: {msg}"
        ));
    } else {
        created.expect("limits are applied here");
        assert_eq!(left.len(), 1, "{left:?}");
    }
}

/// The host read of taken subnets sees routes, and a network of this service has none before a
/// container starts on it (netavark makes the bridge then; a rootless service makes it in the
/// user's rootless network namespace, never on the host): planning must still avoid its subnet
/// and its bottle's loopback address, from the engine's own listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_avoid_this_services_networks_that_the_host_cannot_see() {
    let Some((runtime, rt, fx)) =
        common::setup("plans_avoid_this_services_networks_that_the_host_cannot_see").await
    else {
        return;
    };
    let case = "unrouted";
    remove(&rt, case).await;
    let (mut net, _) = objects(case, 112, &fx.image, &[], Limits::default());
    let taken_lo = Ipv4Addr::new(127, 80, 112, 9);
    net.labels
        .insert(bottle_core::labels::MANAGED.into(), "true".into());
    net.labels
        .insert(bottle_core::labels::LOOPBACK.into(), taken_lo.to_string());
    rt.create_network(&net).await.expect("create network");
    let routes = std::fs::read_to_string("/proc/net/route").expect("read /proc/net/route");
    let hex = format!("{:08X}", u32::from_ne_bytes(net.subnet.network().octets()));
    let routed = routes
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(hex.as_str()));

    let lifecycle = fx.lifecycle(runtime, "unrouted");
    let mut spec = bottle_core::BottleSpec::new("unrouted");
    spec.subnet_pool = Some(net.subnet);
    let subnet_refused = lifecycle.plan(&spec).await;
    let mut spec = bottle_core::BottleSpec::new("unrouted");
    spec.loopback = Some(bottle_core::LoopbackChoice::Pool(
        "127.80.112.8/30".parse().expect("pool"),
    ));
    let lo_plan = lifecycle.plan(&spec).await;
    remove(&rt, case).await;

    assert!(
        !routed,
        "{} has a host route before any container",
        net.subnet
    );
    let err = subnet_refused.expect_err("the only subnet of the pool is taken on the engine");
    assert_eq!(err.kind(), bottle_core::ErrorKind::PoolExhausted, "{err}");
    let lo_plan = lo_plan.expect("plan");
    assert_ne!(lo_plan.loopback, taken_lo, "{lo_plan:?}");
}
