//! Cases on networks and containers through the trait alone: exclusive creates, idempotent
//! removes, subnet conflicts, missing objects, pinned addresses, loopback-only publishing,
//! readiness of an empty port, labels and image lookup.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::inside::fixture_catalog;
use super::{host, remove_all, Fixture};
use crate::error::{ErrorKind, ObjectKind, Result, RuntimeError};
use crate::labels;
use crate::lifecycle::{resolve_host_ports, Readiness};
use crate::runtime::{ContainerInfo, ContainerRuntime, EnvValue, EnvVar, LabelSelector};

/// Creating a network twice is `AlreadyExists` and keeps the first; removing twice succeeds.
pub async fn network_create_is_exclusive_and_remove_idempotent(
    rt: &Arc<dyn ContainerRuntime>,
    fx: &Fixture,
) {
    let case = "netx";
    remove_all(rt, fx, case).await;
    let spec = fx.network(case, "n", fx.subnet(0));
    let created = rt.create_network(&spec).await.expect("create network");
    assert_eq!(created.name, spec.name);
    assert_eq!(created.subnets, vec![spec.subnet], "{created:?}");
    assert!(!created.id.is_empty(), "{created:?}");
    for (k, v) in &spec.labels {
        assert_eq!(created.labels.get(k), Some(v), "label {k}: {created:?}");
    }
    let mut again = spec.clone();
    again.subnet = fx.subnet(1);
    again.gateway = host(again.subnet, 1);
    let err = rt
        .create_network(&again)
        .await
        .expect_err("second create must fail");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    let listed = rt
        .list_networks(&LabelSelector::all().eq("io.bottle.conformance.case", case))
        .await
        .expect("list");
    let ours: Vec<_> = listed.iter().filter(|n| n.name == spec.name).collect();
    assert_eq!(ours.len(), 1, "exactly one network named {}", spec.name);
    assert_eq!(
        ours[0].subnets,
        vec![spec.subnet],
        "the first network is kept"
    );
    rt.remove_network(&spec.name).await.expect("remove");
    rt.remove_network(&spec.name)
        .await
        .expect("second remove succeeds");
    let listed = rt.list_networks(&LabelSelector::all()).await.expect("list");
    assert!(
        listed.iter().all(|n| n.name != spec.name),
        "network is gone"
    );
}

/// A subnet that overlaps an existing network's is `SubnetConflict`, naming the subnet.
pub async fn overlapping_subnet_is_subnet_conflict(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    let case = "overlap";
    remove_all(rt, fx, case).await;
    let a = fx.network(case, "a", fx.subnet(2));
    rt.create_network(&a).await.expect("create a");
    let b = fx.network(case, "b", fx.subnet(2));
    let err = rt.create_network(&b).await.expect_err("overlap must fail");
    assert!(
        matches!(err, RuntimeError::SubnetConflict { subnet, .. } if subnet == fx.subnet(2)),
        "SubnetConflict naming {}: {err:?}",
        fx.subnet(2)
    );
    assert!(err.to_string().contains(&fx.subnet(2).to_string()), "{err}");
    let left = rt.list_networks(&LabelSelector::all()).await.expect("list");
    assert!(
        left.iter().all(|n| n.name != b.name),
        "no network b was made"
    );
    rt.remove_network(&a.name).await.expect("remove a");
}

/// Removing missing objects succeeds; inspecting a missing container is `NotFound`.
pub async fn missing_objects(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    let name = fx.name("missing", "never-created");
    rt.remove_container(&name)
        .await
        .expect("remove missing container");
    rt.remove_network(&name)
        .await
        .expect("remove missing network");
    let err = rt
        .inspect_container(&name)
        .await
        .expect_err("inspect missing");
    assert!(
        matches!(&err, RuntimeError::NotFound { kind: ObjectKind::Container, name: n, .. } if *n == name),
        "NotFound naming the container: {err:?}"
    );
    assert!(
        err.to_string().contains(&name),
        "the message names it: {err}"
    );
}

/// Creating a container whose name exists is `AlreadyExists`.
pub async fn container_name_is_exclusive(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    let case = "ctrx";
    remove_all(rt, fx, case).await;
    let net = fx.network(case, "n", fx.subnet(3));
    rt.create_network(&net).await.expect("create network");
    let spec = fx.container(case, &net, &[]);
    rt.create_container(&spec).await.expect("create container");
    let first = rt.inspect_container(&spec.name).await.expect("inspect");
    let err = rt.create_container(&spec).await.expect_err("second create");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    let kept = rt
        .inspect_container(&spec.name)
        .await
        .expect("the first container is still there");
    assert_eq!(
        kept.id, first.id,
        "the first container is kept, not replaced"
    );
    remove_all(rt, fx, case).await;
}

/// The container's address on the network is the pinned one.
pub async fn pinned_ip_is_honoured(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    let case = "pin";
    remove_all(rt, fx, case).await;
    let net = fx.network(case, "n", fx.subnet(4));
    rt.create_network(&net).await.expect("create network");
    let mut spec = fx.container(case, &net, &[]);
    spec.ipv4 = host(net.subnet, 77);
    rt.create_container(&spec).await.expect("create");
    rt.start_container(&spec.name).await.expect("start");
    let info = rt.inspect_container(&spec.name).await.expect("inspect");
    assert_eq!(info.networks.get(&net.name), Some(&spec.ipv4), "{info:?}");
    remove_all(rt, fx, case).await;
}

/// Reads host ports until assigned (bounded), checking the loopback-only rule on each read.
pub(super) async fn host_ports(
    rt: &Arc<dyn ContainerRuntime>,
    name: &str,
    loopback: Ipv4Addr,
    wanted: &[u16],
) -> Result<(BTreeMap<u16, u16>, ContainerInfo)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = rt.inspect_container(name).await?;
        if let Some(ports) = resolve_host_ports(name, loopback, wanted, &info.ports)? {
            return Ok((ports, info));
        }
        assert!(
            Instant::now() < deadline,
            "host ports never assigned: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every binding is on the requested loopback address, each port gets its own host port.
pub async fn ports_published_only_on_loopback_with_distinct_host_ports(
    rt: &Arc<dyn ContainerRuntime>,
    fx: &Fixture,
) {
    let case = "ports";
    remove_all(rt, fx, case).await;
    let net = fx.network(case, "n", fx.subnet(5));
    rt.create_network(&net).await.expect("create network");
    let lo = fx.loopback(5);
    let spec = fx.container(case, &net, &[(9099, lo), (9100, lo), (9418, lo)]);
    rt.create_container(&spec).await.expect("create");
    rt.start_container(&spec.name).await.expect("start");
    let (ports, info) = host_ports(rt, &spec.name, lo, &[9099, 9100, 9418])
        .await
        .expect("ports only on loopback");
    assert_eq!(ports.len(), 3, "{info:?}");
    let distinct: std::collections::BTreeSet<_> = ports.values().collect();
    assert_eq!(distinct.len(), 3, "distinct host ports: {ports:?}");
    for b in &info.ports {
        assert_eq!(
            b.host_ip,
            Some(IpAddr::V4(lo)),
            "binding {b:?} is on {lo} only"
        );
    }
    remove_all(rt, fx, case).await;
}

/// A published port with no daemon behind it never passes the lifecycle's readiness rule for
/// this runtime, while the daemon's port beside it does; a runtime that reports
/// [`PortForwarding::Direct`](crate::runtime::PortForwarding::Direct) refuses connections there.
pub async fn port_without_daemon_never_passes_readiness(
    rt: &Arc<dyn ContainerRuntime>,
    fx: &Fixture,
) {
    use crate::runtime::PortForwarding;
    let case = "empty-port";
    remove_all(rt, fx, case).await;
    let catalog = fixture_catalog(rt, fx).await;
    let daemon = crate::plan::agent_facing(&catalog.daemons)
        .next()
        .expect("an agent-facing daemon");
    // A port no daemon of the image listens on.
    let empty = (9000..)
        .find(|p| catalog.daemons.iter().all(|d| d.port != *p))
        .expect("a free port number");
    let net = fx.network(case, "n", fx.subnet(8));
    rt.create_network(&net).await.expect("create network");
    let lo = fx.loopback(8);
    let mut spec = fx.container(case, &net, &[(daemon.port, lo), (empty, lo)]);
    spec.env.push(EnvVar {
        key: crate::catalog::DAEMONS_ENV.into(),
        value: EnvValue::Plain(daemon.name.clone()),
    });
    rt.create_container(&spec).await.expect("create");
    rt.start_container(&spec.name).await.expect("start");
    let (ports, _) = host_ports(rt, &spec.name, lo, &[daemon.port, empty])
        .await
        .expect("ports");
    let readiness = Readiness::of(rt.port_forwarding());
    let at = |port: u16| SocketAddr::new(IpAddr::V4(lo), ports[&port]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !readiness.probe(at(daemon.port)).await {
        assert!(
            Instant::now() < deadline,
            "daemon {} never answered at {}",
            daemon.name,
            at(daemon.port)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The daemon answers, so the bundle runs: the empty port must still not pass, every time.
    for _ in 0..5 {
        assert!(
            !readiness.probe(at(empty)).await,
            "port {empty} (no daemon behind it) passed the readiness rule at {}",
            at(empty)
        );
        if rt.port_forwarding() == PortForwarding::Direct {
            let connect = tokio::net::TcpStream::connect(at(empty)).await;
            assert!(
                connect.is_err(),
                "{} reports direct port forwarding, but {} accepted a connection with no daemon behind it",
                rt.name(),
                at(empty)
            );
        }
    }
    remove_all(rt, fx, case).await;
}

/// Labels come back as set, and selection by label finds exactly the labelled objects.
pub async fn labels_round_trip_and_select(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    let case = "labels";
    remove_all(rt, fx, case).await;
    let mut net = fx.network(case, "n", fx.subnet(6));
    net.labels
        .insert("io.bottle.test.value".into(), "a=b,c d".into());
    rt.create_network(&net).await.expect("create network");
    let mut spec = fx.container(case, &net, &[]);
    spec.labels
        .insert("io.bottle.test.value".into(), "x".into());
    rt.create_container(&spec).await.expect("create");

    let sel = LabelSelector::all().eq("io.bottle.conformance.case", case);
    let nets = rt.list_networks(&sel).await.expect("list networks");
    assert_eq!(nets.len(), 1, "{nets:?}");
    for (k, v) in &net.labels {
        assert_eq!(nets[0].labels.get(k), Some(v), "network label {k}");
    }
    let ctrs = rt.list_containers(&sel).await.expect("list containers");
    assert_eq!(ctrs.len(), 1, "one container, running or not: {ctrs:?}");
    for (k, v) in &spec.labels {
        assert_eq!(ctrs[0].labels.get(k), Some(v), "container label {k}");
    }
    let miss = sel.clone().eq("io.bottle.test.value", "y");
    assert!(rt.list_containers(&miss).await.expect("list").is_empty());
    let hit = sel.eq("io.bottle.test.value", "x");
    assert_eq!(rt.list_containers(&hit).await.expect("list").len(), 1);
    remove_all(rt, fx, case).await;
}

/// A running container is removed by one call, and is gone afterwards.
pub async fn remove_running_container(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    let case = "rmrun";
    remove_all(rt, fx, case).await;
    let net = fx.network(case, "n", fx.subnet(7));
    rt.create_network(&net).await.expect("create network");
    let spec = fx.container(case, &net, &[]);
    rt.create_container(&spec).await.expect("create");
    rt.start_container(&spec.name).await.expect("start");
    rt.remove_container(&spec.name)
        .await
        .expect("remove running");
    let err = rt.inspect_container(&spec.name).await.expect_err("gone");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    rt.remove_network(&net.name)
        .await
        .expect("network removable after");
}

/// The fixture image is found with its catalog label; an absent image is `None`.
pub async fn image_lookup(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    let info = rt.image(&fx.image).await.expect("image").expect("present");
    assert!(info.labels.contains_key(labels::CATALOG), "{info:?}");
    let absent = rt
        .image("bottle-conformance-absent:never")
        .await
        .expect("lookup of an absent image");
    assert!(absent.is_none());
}
