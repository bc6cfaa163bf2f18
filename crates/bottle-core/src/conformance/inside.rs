//! Cases that read the container from the inside (the reference image's `selfcheck` report):
//! every security setting and limit took effect, and secrets reach the container's environment
//! and nowhere else.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::objects::host_ports;
use super::{remove_all, Fixture};
use crate::error::{ErrorKind, RuntimeError};
use crate::runtime::{
    ContainerRuntime, ContainerSpec, EnvValue, EnvVar, LabelSelector, Limits, LogOptions,
    NetworkSpec, Security,
};
use crate::selfcheck::{self, Report};

/// Clears what an earlier run of `case` left, then creates the case's network on the `index`-th
/// /24 of the pool.
pub(super) async fn fresh_network(
    rt: &Arc<dyn ContainerRuntime>,
    fx: &Fixture,
    case: &str,
    index: u32,
) -> NetworkSpec {
    remove_all(rt, fx, case).await;
    let net = fx.network(case, "n", fx.subnet(index));
    rt.create_network(&net).await.expect("create network");
    net
}

/// The catalog the fixture image declares in its label.
pub(super) async fn fixture_catalog(
    rt: &Arc<dyn ContainerRuntime>,
    fx: &Fixture,
) -> crate::Catalog {
    let image = rt.image(&fx.image).await.expect("image").expect("present");
    crate::plan::ImageProfile::from_image(&fx.image, &image)
        .expect("catalog label")
        .catalog
        .expect("the fixture image declares a catalog")
}

/// The port of the fixture image's `selfcheck` daemon, from the image's catalog.
pub(super) async fn selfcheck_port(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) -> u16 {
    fixture_catalog(rt, fx)
        .await
        .get(selfcheck::DAEMON)
        .unwrap_or_else(|| {
            panic!(
                "the fixture image {} must provide the {} daemon (the reference image does)",
                fx.image,
                selfcheck::DAEMON
            )
        })
        .port
}

/// A container of the fixture image on a network of its own, running only the `selfcheck`
/// daemon, published on a loopback address; `edit` changes the spec before it is created.
pub(super) async fn selfcheck_spec(
    rt: &Arc<dyn ContainerRuntime>,
    fx: &Fixture,
    case: &str,
    index: u32,
) -> (ContainerSpec, Ipv4Addr, u16) {
    let port = selfcheck_port(rt, fx).await;
    let net = fresh_network(rt, fx, case, index).await;
    let lo = fx.loopback(index);
    let mut spec = fx.container(case, &net, &[(port, lo)]);
    spec.env.push(EnvVar {
        key: crate::catalog::DAEMONS_ENV.into(),
        value: EnvValue::Plain(selfcheck::DAEMON.into()),
    });
    (spec, lo, port)
}

/// Creates and starts `spec` and returns the report its `selfcheck` daemon gives (bounded).
pub(super) async fn start_and_read_report(
    rt: &Arc<dyn ContainerRuntime>,
    spec: &ContainerSpec,
    lo: Ipv4Addr,
    port: u16,
) -> Report {
    use tokio::io::AsyncReadExt;
    rt.create_container(spec).await.expect("create");
    rt.start_container(&spec.name).await.expect("start");
    let (ports, _) = host_ports(rt, &spec.name, lo, &[port])
        .await
        .expect("the selfcheck port, on loopback only");
    let addr = SocketAddr::new(IpAddr::V4(lo), ports[&port]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    loop {
        let read = async {
            let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
            let mut text = String::new();
            stream.read_to_string(&mut text).await.ok()?;
            Some(text)
        };
        if let Ok(Some(text)) = tokio::time::timeout(Duration::from_secs(5), read).await {
            match serde_json::from_str::<Report>(&text) {
                Ok(report) => return report,
                Err(e) => last = format!("{e}: {text:?}"),
            }
        }
        assert!(
            Instant::now() < deadline,
            "the selfcheck daemon of {} never reported at {addr} (last answer: {last})",
            spec.name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every field of [`Security`] shows up inside the container: the user and group, the
/// capabilities (bounding set: only those added back), no-new-privileges, the read-only root,
/// and each tmpfs, mounted `rw,nosuid,nodev,noexec`.
pub async fn selfcheck_shows_every_security_setting(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    let case = "sec";
    let (mut spec, lo, port) = selfcheck_spec(rt, fx, case, 9).await;
    spec.security = Security {
        no_new_privileges: true,
        drop_all_capabilities: true,
        cap_add: vec!["NET_BIND_SERVICE".into()],
        read_only_rootfs: true,
        tmpfs: vec!["/tmp".into()],
        user: Some("65534:65534".into()),
    };
    let r = start_and_read_report(rt, &spec, lo, port).await;
    assert_eq!((r.uid, r.gid), (65534, 65534), "user 65534:65534: {r:?}");
    let asked = selfcheck::capability_set(["NET_BIND_SERVICE"]);
    assert_eq!(
        r.cap_bounding,
        asked,
        "every capability dropped, NET_BIND_SERVICE added back; bounding set is {:?}",
        selfcheck::capability_names(r.cap_bounding)
    );
    assert_eq!(
        r.cap_effective & !asked,
        0,
        "effective capabilities beyond those asked: {:?}",
        selfcheck::capability_names(r.cap_effective & !asked)
    );
    assert!(r.no_new_privs, "no-new-privileges: {r:?}");
    assert!(r.root_read_only, "read-only root: {r:?}");
    let tmp = r
        .tmpfs
        .get("/tmp")
        .unwrap_or_else(|| panic!("/tmp is a tmpfs: {:?}", r.tmpfs));
    for option in TMPFS_OPTIONS {
        assert!(
            tmp.iter().any(|o| o == option),
            "tmpfs /tmp has option {option}: {tmp:?}"
        );
    }
    remove_all(rt, fx, case).await;
}

pub use crate::runtime::TMPFS_OPTIONS;

/// The memory and pids limits show up in the container's cgroup, with no swap on top of the
/// memory limit.
pub async fn selfcheck_shows_limits_without_swap(rt: &Arc<dyn ContainerRuntime>, fx: &Fixture) {
    let case = "limits";
    let (mut spec, lo, port) = selfcheck_spec(rt, fx, case, 10).await;
    spec.limits = Limits {
        memory_bytes: Some(96 * 1024 * 1024),
        pids: Some(48),
    };
    let r = start_and_read_report(rt, &spec, lo, port).await;
    assert_eq!(r.memory_limit, spec.limits.memory_bytes, "memory: {r:?}");
    assert_eq!(
        r.memory_swap,
        Some(0),
        "no swap beyond the memory limit (cgroup {}): {r:?}",
        r.cgroup
    );
    assert_eq!(r.pids_limit, Some(48), "pids: {r:?}");
    remove_all(rt, fx, case).await;
}

/// Whether `needle` shows up anywhere in `err`: its message, its `Debug`, or any source's.
pub(super) fn error_mentions(err: &RuntimeError, needle: &str) -> bool {
    let mut texts = vec![err.to_string(), format!("{err:?}")];
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        texts.push(s.to_string());
        source = s.source();
    }
    texts.iter().any(|t| t.contains(needle))
}

/// Plain and secret values reach the container's environment (seen as hashes from inside), and
/// a secret value shows up nowhere else: not in labels, `inspect` or `list` output, error
/// messages of a refused or failed create, or logs.
pub async fn env_reaches_the_container_and_secrets_nowhere_else(
    rt: &Arc<dyn ContainerRuntime>,
    fx: &Fixture,
) {
    let case = "secret";
    let (mut spec, lo, port) = selfcheck_spec(rt, fx, case, 11).await;
    let secret = format!("s3cret-{}-{}", fx.prefix, std::process::id());
    spec.env.push(EnvVar {
        key: "BT_PLAIN".into(),
        value: EnvValue::Plain("visible value".into()),
    });
    spec.env.push(EnvVar {
        key: "BT_SECRET".into(),
        value: EnvValue::Secret(crate::runtime::Secret::new(secret.clone())),
    });
    let r = start_and_read_report(rt, &spec, lo, port).await;
    assert_eq!(
        r.env.get("BT_PLAIN"),
        Some(&selfcheck::value_hash("visible value")),
        "{:?}",
        r.env
    );
    assert_eq!(
        r.env.get("BT_SECRET"),
        Some(&selfcheck::value_hash(&secret)),
        "the secret reaches the container's environment: {:?}",
        r.env
    );
    let info = rt.inspect_container(&spec.name).await.expect("inspect");
    assert!(
        !format!("{info:?}").contains(&secret),
        "inspect shows the secret: {info:?}"
    );
    let sel = LabelSelector::all().eq("io.bottle.conformance.case", case);
    let listed = rt.list_containers(&sel).await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(
        !format!("{listed:?}").contains(&secret),
        "list shows the secret: {listed:?}"
    );
    let refused = rt.create_container(&spec).await.expect_err("name taken");
    assert!(
        !error_mentions(&refused, &secret),
        "the error of a refused create carries the secret: {refused:?}"
    );
    let mut lost = spec.clone();
    lost.name = fx.name(case, "lost");
    lost.network = fx.name(case, "no-such-network");
    let failed = rt.create_container(&lost).await.expect_err("no network");
    assert!(
        !error_mentions(&failed, &secret),
        "the error of a failed create carries the secret: {failed:?}"
    );
    let mut lines = Vec::new();
    match rt
        .logs(&spec.name, LogOptions::default(), &mut |l| {
            lines.push(l);
            true
        })
        .await
    {
        Ok(()) => assert!(
            lines.iter().all(|l| !l.contains(&secret)),
            "the logs show the secret"
        ),
        Err(e) => assert_eq!(e.kind(), ErrorKind::NotSupported, "{e}"),
    }
    remove_all(rt, fx, case).await;
}
