//! Cases on the transaction rules of single operations: removal never waits, a failed create
//! leaves nothing, what is reported is what was asked, concurrent removes, errors keep their
//! source.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::inside::{fresh_network, selfcheck_spec};
use super::objects::host_ports;
use super::{host, remove_all, Fixture};
use crate::error::{ErrorKind, ObjectKind, RuntimeError};
use crate::runtime::{ContainerRuntime, LabelSelector};

/// Removing a running container whose PID 1 ignores SIGTERM kills it at once.
///
/// A remove that stops the container gracefully first waits the engine's grace period (10 s on
/// Docker and Podman) before it kills a process that ignores SIGTERM. Time is the only thing
/// that tells the two apart through the trait, so the bound is relative and wide: removing the
/// running container may take at most 5 s more than removing a created, never started container
/// of the same image (which has no process to stop). A graceful stop exceeds it by half the
/// grace period; a kill stays far below it even on a loaded host.
pub async fn remove_kills_a_sigterm_deaf_container_at_once(
    rt: &Arc<dyn ContainerRuntime>,
    fx: &Fixture,
) {
    let case = "deaf";
    let net = fresh_network(rt, fx, case, 12).await;
    let mut deaf = fx.container(case, &net, &[]);
    deaf.image = fx.sigterm_deaf_image.clone();
    let mut idle = deaf.clone();
    idle.name = fx.name(case, "idle");
    idle.ipv4 = host(net.subnet, 3);
    rt.create_container(&deaf).await.expect("create");
    rt.start_container(&deaf.name).await.expect("start");
    rt.create_container(&idle)
        .await
        .expect("create the idle one");
    let started = Instant::now();
    rt.remove_container(&idle.name).await.expect("remove idle");
    let baseline = started.elapsed();
    let bound = baseline + Duration::from_secs(5);
    let started = Instant::now();
    let removed = tokio::time::timeout(bound, rt.remove_container(&deaf.name)).await;
    assert!(
        removed.is_ok(),
        "removing a running container whose PID 1 ignores SIGTERM took longer than {bound:?} \
         ({baseline:?} for a container never started): remove must kill, not stop gracefully"
    );
    removed.unwrap().expect("remove running");
    let took = started.elapsed();
    let err = rt.inspect_container(&deaf.name).await.expect_err("gone");
    assert_eq!(
        err.kind(),
        ErrorKind::NotFound,
        "gone after {took:?}: {err}"
    );
    remove_all(rt, fx, case).await;
}

/// Creating a container on a missing network, or of a missing image, is `NotFound`, and leaves
/// no container behind.
pub async fn failed_create_is_not_found_and_leaves_nothing(
    rt: &Arc<dyn ContainerRuntime>,
    fx: &Fixture,
) {
    let case = "failcreate";
    remove_all(rt, fx, case).await;
    let net = fx.network(case, "n", fx.subnet(13));
    let mut spec = fx.container(case, &net, &[]);
    let err = rt
        .create_container(&spec)
        .await
        .expect_err("create on a missing network");
    assert_eq!(err.kind(), ErrorKind::NotFound, "missing network: {err}");
    let gone = rt.inspect_container(&spec.name).await.expect_err("nothing");
    assert_eq!(gone.kind(), ErrorKind::NotFound, "{gone}");
    rt.create_network(&net).await.expect("create network");
    spec.image = "bottle-conformance-absent:never".into();
    let err = rt
        .create_container(&spec)
        .await
        .expect_err("create of a missing image");
    assert_eq!(err.kind(), ErrorKind::NotFound, "missing image: {err}");
    let sel = LabelSelector::all().eq("io.bottle.conformance.case", case);
    let left = rt.list_containers(&sel).await.expect("list");
    assert!(left.is_empty(), "a failed create left {left:?}");
    remove_all(rt, fx, case).await;
}

/// A created, not started container reports its image reference as asked, its pinned address
/// and its labels; once started, only the published port is a binding (the image's other
/// exposed ports are not).
pub async fn created_container_reports_what_was_asked(
    rt: &Arc<dyn ContainerRuntime>,
    fx: &Fixture,
) {
    let case = "created";
    let (spec, lo, port) = selfcheck_spec(rt, fx, case, 14).await;
    rt.create_container(&spec).await.expect("create");
    let info = rt.inspect_container(&spec.name).await.expect("inspect");
    assert_eq!(info.name, spec.name);
    assert_eq!(
        info.state,
        crate::runtime::ContainerState::Created,
        "{info:?}"
    );
    assert_eq!(info.image, spec.image, "the image reference as asked");
    assert_eq!(
        info.networks.get(&spec.network),
        Some(&spec.ipv4),
        "the pinned address before start: {info:?}"
    );
    for (k, v) in &spec.labels {
        assert_eq!(info.labels.get(k), Some(v), "label {k}");
    }
    rt.start_container(&spec.name).await.expect("start");
    let (_, info) = host_ports(rt, &spec.name, lo, &[port])
        .await
        .expect("ports");
    assert!(
        info.ports.iter().all(|b| b.container_port == port),
        "only the published port {port} is a binding: {:?}",
        info.ports
    );
    assert_eq!(info.image, spec.image, "the image reference as asked");
    remove_all(rt, fx, case).await;
}

/// Two removes of one container at once both succeed, and so do two of one network.
pub async fn concurrent_removes_both_succeed(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    let case = "rmrace";
    let net = fresh_network(rt, fx, case, 15).await;
    let spec = fx.container(case, &net, &[]);
    rt.create_container(&spec).await.expect("create");
    rt.start_container(&spec.name).await.expect("start");
    let (a, b) = tokio::join!(
        rt.remove_container(&spec.name),
        rt.remove_container(&spec.name)
    );
    a.expect("first remove");
    b.expect("concurrent remove");
    let (a, b) = tokio::join!(rt.remove_network(&net.name), rt.remove_network(&net.name));
    a.expect("first network remove");
    b.expect("concurrent network remove");
    remove_all(rt, fx, case).await;
}

/// An engine's errors keep the engine's own error as their source, and name the object.
pub async fn errors_keep_their_source_and_name_the_object(
    rt: &Arc<dyn ContainerRuntime>,
    fx: &Fixture,
) {
    let case = "source";
    remove_all(rt, fx, case).await;
    let name = fx.name(case, "never-created");
    let err = rt.inspect_container(&name).await.expect_err("missing");
    assert!(
        matches!(&err, RuntimeError::NotFound { kind: ObjectKind::Container, name: n, .. } if *n == name),
        "NotFound naming {name}: {err:?}"
    );
    assert!(
        err.to_string().contains(&name),
        "the message names {name}: {err}"
    );
    assert!(
        std::error::Error::source(&err).is_some(),
        "NotFound keeps the engine's error as its source: {err:?}"
    );
    let net = fx.network(case, "n", fx.subnet(16));
    rt.create_network(&net).await.expect("create network");
    let spec = fx.container(case, &net, &[]);
    rt.create_container(&spec).await.expect("create");
    let err = rt.create_container(&spec).await.expect_err("name taken");
    assert!(
        matches!(&err, RuntimeError::AlreadyExists { kind: ObjectKind::Container, name, .. } if *name == spec.name),
        "AlreadyExists naming {}: {err:?}",
        spec.name
    );
    assert!(
        err.to_string().contains(&spec.name),
        "the message names it: {err}"
    );
    assert!(
        std::error::Error::source(&err).is_some(),
        "AlreadyExists keeps the engine's error as its source: {err:?}"
    );
    remove_all(rt, fx, case).await;
}
