//! The lifecycle against `InMemoryRuntime`: validation before any engine call, rollback at
//! every step, secrets kept out of everything but the bundle's environment, and endpoints that
//! refuse a dead bundle.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bottle_core::catalog::Catalog;
use bottle_core::lifecycle::{Lifecycle, LifecycleConfig, NoProgress, Timeouts};
use bottle_core::memory::Op;
use bottle_core::plan::Pools;
use bottle_core::runtime::{Limits, LogOptions, Mount};
use bottle_core::spec::{BottleSpec, EnvEntry, LoopbackChoice};
use bottle_core::{
    labels, Advice, ContainerRuntime, Error, ErrorKind, InMemoryRuntime, PortForwarding,
    RuntimeError,
};

const IMAGE: &str = "bottle-sidecars:latest";
const CANARY: &str = "canary-7f3d9e1b-secret-value";

fn engine() -> InMemoryRuntime {
    let rt = InMemoryRuntime::new();
    rt.add_image(
        IMAGE,
        [(labels::CATALOG.to_string(), Catalog::seed().to_json())].into(),
    );
    rt
}

/// A lifecycle over `rt` with its own prefix and pools, and a launcher environment that has
/// `TOKEN` set to the canary.
fn lifecycle(rt: &InMemoryRuntime, prefix: &str) -> Lifecycle {
    Lifecycle::new(
        Arc::new(rt.clone()),
        LifecycleConfig {
            pools: Pools {
                prefix: prefix.into(),
                subnet_pool: "10.220.0.0/16".parse().unwrap(),
                loopback: LoopbackChoice::Pool("127.90.0.0/16".parse().unwrap()),
            },
            default_image: IMAGE.into(),
            lock_path: None,
            timeouts: Timeouts {
                readiness: Duration::from_millis(300),
                host_ports: Duration::from_millis(300),
                ..Timeouts::default()
            },
            env_lookup: Arc::new(|k| (k == "TOKEN").then(|| CANARY.to_string())),
            ..LifecycleConfig::default()
        },
    )
}

fn env(entry: &str) -> EnvEntry {
    EnvEntry::parse(entry).unwrap()
}

fn mount(host: &str, container: &str) -> Mount {
    Mount {
        host_path: PathBuf::from(host),
        container_path: PathBuf::from(container),
        read_only: true,
    }
}

/// `up` of `spec` fails on the rule of `field` before any engine call (or, for rules that need
/// the image's catalog, before any call that changes the engine).
#[track_caller]
fn check_invalid(spec: BottleSpec, field: &str, message_part: &str) {
    let rt = engine();
    let lc = lifecycle(&rt, "bt-val");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = runtime.block_on(lc.up(&spec, &NoProgress)).unwrap_err();
    let Error::Invalid(v) = &err else {
        panic!("expected a validation error for {field}, got {err}");
    };
    assert_eq!(v.field(), field, "{err}");
    assert!(
        err.to_string().contains(message_part),
        "{err:?} lacks {message_part:?}"
    );
    assert!(!err.to_string().contains(CANARY), "{err}");
    let catalog_rule = field == "daemons";
    if catalog_rule {
        assert_eq!(
            rt.mutating_calls(),
            0,
            "{field}: nothing changed on the engine"
        );
    } else {
        assert_eq!(rt.total_calls(), 0, "{field}: no engine call at all");
    }
    assert!(rt.is_empty());
}

fn spec(slug: &str) -> BottleSpec {
    BottleSpec::new(slug)
}

#[test]
fn every_rule_is_checked_before_the_engine_is_touched() {
    check_invalid(spec(""), "slug", "must not be empty");
    check_invalid(spec("Upper"), "slug", "uppercase");
    check_invalid(spec("a.b"), "slug", "other than a-z");
    check_invalid(spec("a/b"), "slug", "other than a-z");
    check_invalid(spec("-lead"), "slug", "starts or ends");
    check_invalid(spec(&"x".repeat(200)), "slug", "200 characters");
    check_invalid(
        BottleSpec {
            image: "bad image".into(),
            ..spec("i")
        },
        "image",
        "not a valid image",
    );
    check_invalid(
        BottleSpec {
            env: vec![EnvEntry::Inherit { key: "A=B".into() }],
            ..spec("e")
        },
        "env",
        "is invalid",
    );
    check_invalid(
        BottleSpec {
            env: vec![EnvEntry::Inherit {
                key: "WITH SPACE".into(),
            }],
            ..spec("e")
        },
        "env",
        "is invalid",
    );
    check_invalid(
        BottleSpec {
            env: vec![EnvEntry::Inherit {
                key: "NUL\0".into(),
            }],
            ..spec("e")
        },
        "env",
        "is invalid",
    );
    check_invalid(
        BottleSpec {
            env: vec![EnvEntry::Inherit {
                key: "NEW\nLINE".into(),
            }],
            ..spec("e")
        },
        "env",
        "is invalid",
    );
    check_invalid(
        BottleSpec {
            env: vec![env("A=1"), env("A=2")],
            ..spec("e")
        },
        "env",
        "given twice",
    );
    check_invalid(
        BottleSpec {
            env: vec![env("BOTTLE_DAEMONS=x")],
            ..spec("e")
        },
        "env",
        "set by bottle",
    );
    check_invalid(
        BottleSpec {
            env: vec![env("NOT_IN_LAUNCHER_ENV")],
            ..spec("e")
        },
        "env",
        "not set in the launcher",
    );
    check_invalid(
        BottleSpec {
            env: vec![EnvEntry::Value {
                key: "V".into(),
                value: "a\0b".into(),
            }],
            ..spec("e")
        },
        "env",
        "NUL",
    );
    check_invalid(
        BottleSpec {
            mounts: vec![mount("relative/path", "/data")],
            ..spec("m")
        },
        "mounts",
        "relative",
    );
    check_invalid(
        BottleSpec {
            mounts: vec![mount("/tmp/../etc", "/data")],
            ..spec("m")
        },
        "mounts",
        "..",
    );
    check_invalid(
        BottleSpec {
            mounts: vec![mount("/does/not/exist/anywhere", "/data")],
            ..spec("m")
        },
        "mounts",
        "does not exist",
    );
    check_invalid(
        BottleSpec {
            mounts: vec![mount("/tmp", "data")],
            ..spec("m")
        },
        "mounts",
        "relative",
    );
    check_invalid(
        BottleSpec {
            mounts: vec![mount("/tmp", "/data"), mount("/", "/data")],
            ..spec("m")
        },
        "mounts",
        "mounted twice",
    );
    check_invalid(
        BottleSpec {
            egress_allow: vec!["https://x.test/".into()],
            ..spec("a")
        },
        "egress_allow",
        "not a URL",
    );
    check_invalid(
        BottleSpec {
            egress_allow: vec!["*.com".into()],
            ..spec("a")
        },
        "egress_allow",
        "two labels",
    );
    check_invalid(
        BottleSpec {
            git_upstreams: vec!["not a url".into()],
            ..spec("g")
        },
        "git_upstreams",
        "whitespace",
    );
    check_invalid(
        BottleSpec {
            git_upstreams: vec!["ftp-ish".into()],
            ..spec("g")
        },
        "git_upstreams",
        "not a git URL",
    );
    check_invalid(
        BottleSpec {
            loopback: Some(LoopbackChoice::Fixed("10.0.0.1".parse().unwrap())),
            ..spec("l")
        },
        "loopback",
        "not inside 127.0.0.0/8",
    );
    check_invalid(
        BottleSpec {
            loopback: Some(LoopbackChoice::Pool("10.0.0.0/16".parse().unwrap())),
            ..spec("l")
        },
        "loopback",
        "not inside 127.0.0.0/8",
    );
    check_invalid(
        BottleSpec {
            subnet_pool: Some("8.8.0.0/16".parse().unwrap()),
            ..spec("s")
        },
        "subnet_pool",
        "private",
    );
    check_invalid(
        BottleSpec {
            subnet_pool: Some("10.1.1.0/25".parse().unwrap()),
            ..spec("s")
        },
        "subnet_pool",
        "smaller than a /24",
    );
    check_invalid(
        BottleSpec {
            subnet_pool: Some("10.1.1.7/16".parse().unwrap()),
            ..spec("s")
        },
        "subnet_pool",
        "host bits",
    );
    check_invalid(
        BottleSpec {
            limits: Limits {
                memory_bytes: Some(1024),
                pids: None,
            },
            ..spec("x")
        },
        "memory_bytes",
        "outside",
    );
    check_invalid(
        BottleSpec {
            limits: Limits {
                memory_bytes: None,
                pids: Some(0),
            },
            ..spec("x")
        },
        "pids",
        "outside",
    );
    check_invalid(
        BottleSpec {
            limits: Limits {
                memory_bytes: None,
                pids: Some(i64::MAX),
            },
            ..spec("x")
        },
        "pids",
        "outside",
    );
    check_invalid(
        BottleSpec {
            daemons: vec!["nope".into()],
            ..spec("d")
        },
        "daemons",
        "unknown daemon",
    );
    check_invalid(
        BottleSpec {
            daemons: vec!["egress".into()],
            ..spec("d")
        },
        "daemons",
        "always runs",
    );
}

#[tokio::test]
async fn a_fault_at_every_step_of_up_leaves_nothing_and_returns_the_original_error() {
    let steps = [
        (Op::Image, 1),
        (Op::ListNetworks, 1),
        (Op::ListContainers, 1),
        (Op::CreateNetwork, 1),
        (Op::CreateContainer, 1),
        (Op::StartContainer, 1),
        (Op::InspectContainer, 1),
        (Op::InspectContainer, 2),
    ];
    for (op, nth) in steps {
        let rt = engine();
        rt.delay_host_ports(1);
        let lc = lifecycle(&rt, "bt-fault");
        rt.fail_nth(op, nth, move || RuntimeError::Engine {
            engine: "memory".into(),
            operation: format!("{op:?}"),
            target: "x".into(),
            message: format!("injected at {op:?} #{nth}"),
            source: None,
        });
        let err = lc.up(&spec("f"), &NoProgress).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Engine, "{op:?} #{nth}: {err}");
        assert!(
            err.to_string()
                .contains(&format!("injected at {op:?} #{nth}")),
            "{err}"
        );
        assert!(rt.is_empty(), "{op:?} #{nth}: left {:?}", rt.object_names());
        // And the same slug comes up cleanly afterwards.
        lc.up(&spec("f"), &NoProgress)
            .await
            .expect("up after the fault");
        lc.down("f", &NoProgress).await.unwrap();
        assert!(rt.is_empty());
    }
}

#[tokio::test]
async fn a_failed_cleanup_is_reported_with_the_original_error_and_gc_finishes_it() {
    let rt = engine();
    let lc = lifecycle(&rt, "bt-cleanup");
    rt.fail_nth(Op::StartContainer, 1, || {
        RuntimeError::engine("memory", "starting", "c", "start broke")
    });
    rt.fail_nth(Op::RemoveContainer, 1, || {
        RuntimeError::engine("memory", "removing", "c", "remove broke")
    });
    let err = lc.up(&spec("c"), &NoProgress).await.unwrap_err();
    let Error::CleanupFailed { original, cleanup } = &err else {
        panic!("expected CleanupFailed, got {err}");
    };
    assert!(original.to_string().contains("start broke"));
    assert_eq!(
        cleanup.len(),
        2,
        "container removal failed, so did the network's: {cleanup:?}"
    );
    assert_eq!(err.advice(), Advice::CollectGarbage, "{err:?}");
    assert!(!rt.is_empty());
    let removed = lc.gc(false).await.unwrap();
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(rt.is_empty());
}

#[tokio::test]
async fn daemons_that_never_answer_fail_up_naming_the_daemon_and_roll_back() {
    // Behind a proxy that accepts and closes, and behind kernel forwarding that refuses.
    for forwarding in [PortForwarding::Proxied, PortForwarding::Direct] {
        let rt = engine();
        rt.set_port_forwarding(forwarding);
        rt.daemons_never_ready(true);
        let lc = lifecycle(&rt, "bt-ready");
        let err = lc.up(&spec("slow"), &NoProgress).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotReady, "{forwarding:?}: {err}");
        assert!(
            matches!(&err, Error::NotReady { slug, daemon, .. } if slug == "slow" && daemon == "pipelock"),
            "{err:?}"
        );
        assert_eq!(
            err.advice(),
            Advice::ReadLogs {
                slug: "slow".into()
            }
        );
        assert!(rt.is_empty());
    }
}

#[tokio::test]
async fn a_port_published_beyond_loopback_is_refused_and_rolled_back() {
    let rt = engine();
    rt.publish_on_wildcard(true);
    let lc = lifecycle(&rt, "bt-wild");
    let err = lc.up(&spec("wide"), &NoProgress).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PublishedBeyondLoopback, "{err}");
    assert!(rt.is_empty());
}

#[tokio::test]
async fn host_ports_not_yet_assigned_are_read_again() {
    let rt = engine();
    rt.delay_host_ports(3);
    let lc = lifecycle(&rt, "bt-late");
    let bottle = lc.up(&spec("late"), &NoProgress).await.unwrap();
    assert_eq!(bottle.endpoints.daemons.len(), 1);
    assert!(rt.calls(Op::InspectContainer) >= 4);
    lc.down("late", &NoProgress).await.unwrap();
}

#[tokio::test]
async fn a_bare_key_secret_reaches_only_the_bundle_environment() {
    let rt = engine();
    let lc = lifecycle(&rt, "bt-secret");
    let s = BottleSpec {
        env: vec![env("TOKEN"), env("MODE=open")],
        ..spec("sec")
    };
    let plan = lc.plan(&s).await.unwrap();
    let plan_json = serde_json::to_string(&plan).unwrap();
    assert!(!plan_json.contains(CANARY) && !format!("{plan:?}").contains(CANARY));
    let bottle = lc.up(&s, &NoProgress).await.unwrap();
    assert!(!serde_json::to_string(&bottle).unwrap().contains(CANARY));
    let env = rt.container_env(&bottle.plan.container_name).unwrap();
    assert!(env.contains(&format!("TOKEN={CANARY}")), "{env:?}");
    let listed = format!("{:?}", lc.list().await.unwrap());
    assert!(!listed.contains(CANARY));
    for c in bottle
        .plan
        .container_labels
        .values()
        .chain(bottle.plan.network_labels.values())
    {
        assert!(!c.contains(CANARY));
    }
    lc.down("sec", &NoProgress).await.unwrap();
}

#[tokio::test]
async fn endpoints_refuse_a_dead_daemon_or_a_stopped_bundle() {
    let rt = engine();
    let lc = lifecycle(&rt, "bt-dead");
    let bottle = lc.up(&spec("d"), &NoProgress).await.unwrap();
    assert_eq!(lc.endpoints("d").await.unwrap().env, bottle.endpoints.env);
    rt.kill_daemon(&bottle.plan.container_name, 8888);
    let listed = lc.list().await.unwrap();
    assert_eq!(
        listed[0].unreachable,
        vec!["pipelock".to_string()],
        "{listed:?}"
    );
    assert!(!listed[0].is_complete());
    assert!(
        lc.gc(true).await.unwrap().is_empty(),
        "gc leaves a running bundle to `down`"
    );
    let err = lc.endpoints("d").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotUsable, "{err}");
    assert!(err.to_string().contains("pipelock"), "{err}");

    rt.stop_container(&bottle.plan.container_name);
    let err = lc.endpoints("d").await.unwrap_err();
    assert!(err.to_string().contains("exited"), "{err}");
    let listed = lc.list().await.unwrap();
    assert!(!listed[0].is_complete());
    let err = lc.endpoints("nothing-here").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotUp, "{err}");
    assert_eq!(lc.gc(false).await.unwrap().len(), 2);
    assert!(rt.is_empty());
}

#[tokio::test]
async fn concurrent_ups_of_the_same_slug_yield_exactly_one_bottle() {
    let rt = engine();
    let lc = lifecycle(&rt, "bt-race");
    let s = spec("same");
    let results = futures_like_join(&lc, &s, 4).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "{results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.kind(), ErrorKind::AlreadyUp, "{r}");
    }
    assert_eq!(rt.object_names().len(), 2, "{:?}", rt.object_names());
    lc.down("same", &NoProgress).await.unwrap();
    assert!(rt.is_empty());
}

/// Launches plan one at a time but create their networks in parallel: with the engine holding
/// every network create, eight launches all reach it (serialised creates would stop at one), and
/// once released each gets its own subnet and address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launches_create_their_networks_in_parallel_with_distinct_allocations() {
    let rt = engine();
    rt.hold(Op::CreateNetwork);
    let lc = lifecycle(&rt, "bt-par");
    let mut set = tokio::task::JoinSet::new();
    for i in 0..8 {
        let lc = lc.clone();
        set.spawn(async move { lc.up(&spec(&format!("par{i}")), &NoProgress).await });
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while rt.held(Op::CreateNetwork) < 8 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of 8 network creates were in flight at once",
            rt.held(Op::CreateNetwork)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    rt.release(Op::CreateNetwork);
    let bottles: Vec<_> = set
        .join_all()
        .await
        .into_iter()
        .map(|r| r.expect("up"))
        .collect();
    let subnets: std::collections::BTreeSet<_> = bottles.iter().map(|b| b.plan.subnet).collect();
    let loopbacks: std::collections::BTreeSet<_> =
        bottles.iter().map(|b| b.endpoints.loopback).collect();
    assert_eq!(subnets.len(), 8, "{subnets:?}");
    assert_eq!(loopbacks.len(), 8, "{loopbacks:?}");
    for i in 0..8 {
        lc.down(&format!("par{i}"), &NoProgress).await.unwrap();
    }
    assert!(rt.is_empty());
}

/// A second launch of a slug whose network is still being created is refused before it
/// creates anything, and the first one completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_of_a_slug_whose_network_is_being_created_is_refused() {
    let rt = engine();
    rt.hold(Op::CreateNetwork);
    let lc = lifecycle(&rt, "bt-pend");
    let first = {
        let lc = lc.clone();
        tokio::spawn(async move { lc.up(&spec("same"), &NoProgress).await })
    };
    while rt.held(Op::CreateNetwork) < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let err = lc.up(&spec("same"), &NoProgress).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyUp, "{err}");
    assert!(
        err.to_string().contains("another launch is creating"),
        "{err}"
    );
    assert_eq!(
        rt.held(Op::CreateNetwork),
        1,
        "the second launch created nothing"
    );
    rt.release(Op::CreateNetwork);
    first.await.unwrap().expect("the first launch completes");
    lc.down("same", &NoProgress).await.unwrap();
    assert!(rt.is_empty());
}

/// Two engines on one host (each lists only its own networks): a bottle on the second engine
/// does not get the loopback address a bottle of the first one listens on, even with the same
/// slug and pools, because the host shows the address in use. (Subnets are the same story
/// through the host's routes, which only real bridges make: see the CLI's engine tests.)
#[tokio::test]
async fn a_second_engine_does_not_hand_out_an_address_the_first_one_publishes_on() {
    let (docker, podman) = (engine(), engine());
    let on_docker = lifecycle(&docker, "bt-two");
    let on_podman = lifecycle(&podman, "bt-two");
    let a = on_docker.up(&spec("twin"), &NoProgress).await.unwrap();
    let b = on_podman.up(&spec("twin"), &NoProgress).await.unwrap();
    assert_ne!(a.endpoints.loopback, b.endpoints.loopback);
    on_docker.down("twin", &NoProgress).await.unwrap();
    on_podman.down("twin", &NoProgress).await.unwrap();
}

/// `gc` while a launch is half-way (its network made, its bundle not yet) leaves that launch
/// alone, and the launch completes; a half bottle nobody is launching is collected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_leaves_a_launch_in_progress_alone() {
    let rt = engine();
    let lc = lifecycle(&rt, "bt-gcrace");
    // A bottle whose launch died after its network: a network without its bundle.
    let stray = lc.plan(&spec("stray")).await.unwrap();
    rt.create_network(&bottle_core::runtime::NetworkSpec {
        name: stray.network_name.clone(),
        subnet: stray.subnet,
        gateway: stray.gateway,
        labels: stray.network_labels.clone(),
    })
    .await
    .unwrap();
    rt.hold(Op::CreateContainer);
    let launch = {
        let lc = lc.clone();
        tokio::spawn(async move { lc.up(&spec("busy"), &NoProgress).await })
    };
    while rt.held(Op::CreateContainer) < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let removed = lc.gc(false).await.unwrap();
    let slugs: Vec<&str> = removed.iter().map(|r| r.slug.as_str()).collect();
    assert_eq!(slugs, ["stray"], "{removed:?}");
    rt.release(Op::CreateContainer);
    launch.await.unwrap().expect("the launch completes");
    lc.down("busy", &NoProgress).await.unwrap();
    assert!(rt.is_empty(), "{:?}", rt.object_names());
}

async fn futures_like_join(
    lc: &Lifecycle,
    s: &BottleSpec,
    n: usize,
) -> Vec<Result<bottle_core::lifecycle::Bottle, Error>> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (lc, s) = (lc.clone(), s.clone());
        set.spawn(async move { lc.up(&s, &NoProgress).await });
    }
    set.join_all().await
}

#[tokio::test]
async fn the_image_catalog_is_planned_with_and_a_missing_daemon_is_refused_before_creation() {
    let rt = InMemoryRuntime::new();
    let egress_only = Catalog::from_toml(
        "[[daemon]]\nname = \"egress\"\nport = 9099\nfacing = \"agent\"\nvars = [\"HTTPS_PROXY\", \"HTTP_PROXY\"]\n",
    )
    .unwrap();
    rt.add_image(
        IMAGE,
        [(labels::CATALOG.to_string(), egress_only.to_json())].into(),
    );
    let lc = lifecycle(&rt, "bt-img");
    let bottle = lc.up(&spec("e"), &NoProgress).await.unwrap();
    assert_eq!(bottle.endpoints.daemons[0].daemon, "egress");
    assert!(bottle.endpoints.env["HTTPS_PROXY"].starts_with("http://127.90."));
    lc.down("e", &NoProgress).await.unwrap();

    let calls = rt.mutating_calls();
    let err = lc
        .up(
            &BottleSpec {
                supervise: true,
                ..spec("s")
            },
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ImageLacksDaemon, "{err}");
    assert!(
        err.to_string().contains("supervise") && err.to_string().contains(IMAGE),
        "{err}"
    );
    assert_eq!(rt.mutating_calls(), calls, "nothing created");

    let err = lc
        .up(
            &BottleSpec {
                image: "absent:1".into(),
                ..spec("a")
            },
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ImageMissing, "{err}");
    assert!(
        matches!(&err, Error::ImageMissing { image, .. } if image == "absent:1"),
        "{err:?}"
    );
    assert!(
        matches!(err.advice(), Advice::LoadImage { image, .. } if image == "absent:1"),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_interrupted_up_removes_what_it_created() {
    let rt = engine();
    rt.daemons_never_ready(true);
    let lc = lifecycle(&rt, "bt-int");
    let interrupt = async {
        // Interrupt once the bundle exists and up is waiting for its daemons.
        while rt.calls(Op::StartContainer) == 0 {
            tokio::task::yield_now().await;
        }
    };
    let err = lc
        .up_until(&spec("int"), &NoProgress, interrupt)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Interrupted, "{err}");
    assert!(rt.is_empty(), "{:?}", rt.object_names());
}

/// Interrupted while a create is in flight (the engine acted, its answer not back yet): what
/// the create made is removed too.
#[tokio::test]
async fn an_up_interrupted_during_a_create_removes_what_the_create_made() {
    for op in [Op::CreateNetwork, Op::CreateContainer] {
        let rt = engine();
        rt.hold_answer(op);
        let lc = lifecycle(&rt, "bt-inflight");
        let interrupt = async {
            while rt.held_answers(op) == 0 {
                tokio::task::yield_now().await;
            }
        };
        let err = lc
            .up_until(&spec("fly"), &NoProgress, interrupt)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Interrupted, "{op:?}: {err}");
        assert!(rt.is_empty(), "{op:?}: {:?}", rt.object_names());
        rt.release(op);
    }
}

#[tokio::test]
async fn status_and_logs_find_one_bottle_by_its_labels() {
    let rt = engine();
    let lc = lifecycle(&rt, "bt-one");
    let one = lc.up(&spec("one"), &NoProgress).await.unwrap();
    let two = lc.up(&spec("two"), &NoProgress).await.unwrap();
    // The same slug under another prefix is another lifecycle's bottle.
    let other = lifecycle(&rt, "bt-other");
    other.up(&spec("one"), &NoProgress).await.unwrap();

    let status = lc.status("one").await.unwrap();
    assert_eq!(status.slug, "one");
    assert_eq!(
        status.container.as_deref(),
        Some(one.plan.container_name.as_str())
    );
    assert_eq!(
        status.network.as_deref(),
        Some(one.plan.network_name.as_str())
    );
    assert_eq!(status.loopback, Some(one.plan.loopback));
    assert!(status.is_complete(), "{status:?}");

    // A dead daemon of one bottle shows in its own status, not in another's.
    let facing = two.plan.agent_facing().next().unwrap();
    rt.kill_daemon(&two.plan.container_name, facing.port);
    assert_eq!(
        lc.status("two").await.unwrap().unreachable,
        std::slice::from_ref(&facing.name)
    );
    assert!(lc.status("one").await.unwrap().is_complete());
    assert_eq!(lc.list().await.unwrap().len(), 2);

    let err = lc.status("none").await.unwrap_err();
    assert!(
        matches!(&err, Error::NotUp { slug } if slug == "none"),
        "{err:?}"
    );
    let err = lc.status("Bad").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err:?}");

    let mut lines = Vec::new();
    lc.logs("one", LogOptions::default(), &mut |l| {
        lines.push(l);
        true
    })
    .await
    .unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[init] starting daemons")),
        "{lines:?}"
    );
    let err = lc
        .logs("none", LogOptions::default(), &mut |_| true)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotUp { slug } if slug == "none"),
        "{err:?}"
    );
}
