//! One hundred bottles on one engine, launched concurrently (at most [`PARALLEL`] at a time)
//! through the library, on the real Docker and on the real Podman: all come up with distinct
//! subnets and loopback addresses and every agent-facing port answering; then all go down and
//! nothing of ours is left, asked of the engine by label (the adapter) and by name (the engine's
//! own client). Prints how long all-up and all-down took on each engine.
//!
//! It takes minutes, so a plain `cargo test` skips it (with one line saying so) unless
//! `BOTTLE_SCALE_TESTS=1`; CI (`CI=true`, which `cargo xtask ci` sets along with
//! `BOTTLE_SCALE_TESTS=1`) always runs it. The two engines take turns, so neither's figures
//! include the other's load.
//!
//! Pools: its rows `cli-scale` of the shared harness's pool table
//! (`bottle_core::conformance::harness::POOLS`).

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bottle_core::conformance::harness::pools;
use bottle_core::conformance::{ensure_reference_image, require_engine};
use bottle_core::lifecycle::{probe, Bottle, NoProgress};
use bottle_core::plan::Pools;
use bottle_core::runtime::{ContainerState, Health, LabelSelector};
use bottle_core::{
    labels, BottleSpec, ContainerRuntime, Lifecycle, LifecycleConfig, LoopbackChoice,
};
use common::{assert_nothing_left, DownOnDrop, Engine};
use futures_util::stream::{self, StreamExt};

/// How many bottles.
const BOTTLES: usize = 100;
/// How many launches (and teardowns) run at once.
const PARALLEL: usize = 8;

const DOCKER: Engine = Engine::of(pools("cli-scale", "docker"));

const PODMAN: Engine = Engine::of(pools("cli-scale", "podman"));

/// The engines take turns: each one's figures are its own.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn connect(engine: Engine) -> Option<Arc<dyn ContainerRuntime>> {
    match engine.name {
        "docker" => require_engine("docker", bottle_docker::DockerRuntime::connect().await)
            .map(|rt| Arc::new(rt) as Arc<dyn ContainerRuntime>),
        _ => require_engine("podman", bottle_podman::PodmanRuntime::connect().await)
            .map(|rt| Arc::new(rt) as Arc<dyn ContainerRuntime>),
    }
}

async fn hundred_bottles(engine: Engine) {
    if !common::opted_in("BOTTLE_SCALE_TESTS", "the 100-bottle scale test") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(rt) = connect(engine).await else {
        return;
    };
    let image = ensure_reference_image(rt.as_ref(), env!("CARGO_MANIFEST_DIR")).await;
    let prefix = format!("bt-scale-{}", engine.name);
    let config = LifecycleConfig {
        pools: Pools {
            prefix: prefix.clone(),
            subnet_pool: engine.subnet_pool.parse().expect("pool"),
            loopback: LoopbackChoice::Pool(engine.loopback_pool.parse().expect("pool")),
        },
        default_image: image,
        ..LifecycleConfig::default()
    };
    let lc = Lifecycle::new(rt.clone(), config);
    // A run that was stopped half-way leaves its bottles; they are not this run's.
    for b in lc.list().await.expect("list") {
        lc.down(&b.slug, &NoProgress)
            .await
            .expect("down a leftover");
    }
    // Whatever happens below, the engine is left clean (through the CLI: a drop cannot await).
    let _cleanup = DownOnDrop {
        engine,
        prefix: prefix.clone(),
    };

    let slugs: Vec<String> = (0..BOTTLES).map(|i| format!("scale-{i:03}")).collect();
    common::say(&format!(
        "{}: bringing {BOTTLES} bottles up, {PARALLEL} at a time",
        engine.name
    ));
    let started = Instant::now();
    let results: Vec<(String, bottle_core::Result<Bottle>)> = stream::iter(&slugs)
        .map(|slug| {
            let lc = &lc;
            async move {
                (
                    slug.clone(),
                    lc.up(&BottleSpec::new(slug), &NoProgress).await,
                )
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let all_up = started.elapsed();
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(slug, r)| r.as_ref().err().map(|e| format!("{slug}: {e}")))
        .collect();
    assert!(
        failed.is_empty(),
        "{}: {} of {BOTTLES} launches failed: {failed:#?}",
        engine.name,
        failed.len()
    );
    let bottles: Vec<Bottle> = results.into_iter().filter_map(|(_, r)| r.ok()).collect();

    // Distinct subnets and loopback addresses, each inside its pool.
    let subnets: BTreeSet<_> = bottles.iter().map(|b| b.plan.subnet).collect();
    let loopbacks: BTreeSet<Ipv4Addr> = bottles.iter().map(|b| b.endpoints.loopback).collect();
    assert_eq!(subnets.len(), BOTTLES, "{}: distinct subnets", engine.name);
    assert_eq!(
        loopbacks.len(),
        BOTTLES,
        "{}: distinct loopbacks",
        engine.name
    );
    assert!(subnets
        .iter()
        .all(|s| s.to_string().starts_with(&engine.subnet_prefix())));
    assert!(loopbacks
        .iter()
        .all(|l| l.to_string().starts_with(&engine.loopback_prefix())));

    // Every agent-facing port of every bottle answers, all of them at once.
    let ports: Vec<(String, SocketAddr)> = bottles
        .iter()
        .flat_map(|b| {
            b.endpoints.daemons.iter().map(|d| {
                (
                    format!("{} {}", b.plan.slug, d.daemon),
                    SocketAddr::new(IpAddr::V4(b.endpoints.loopback), d.host_port),
                )
            })
        })
        .collect();
    assert!(ports.len() >= BOTTLES);
    let answers = futures_util::future::join_all(
        ports
            .iter()
            .map(|(_, addr)| probe(*addr, bottle_core::lifecycle::IDLE_WINDOW)),
    )
    .await;
    let silent: Vec<&String> = ports
        .iter()
        .zip(&answers)
        .filter(|(_, ok)| !**ok)
        .map(|((what, _), _)| what)
        .collect();
    assert!(
        silent.is_empty(),
        "{}: ports that do not answer: {silent:?}",
        engine.name
    );

    // The engine lists all of them: network and bundle present, running, every daemon
    // answering (list probes the ports once more).
    let listed = lc.list().await.expect("list");
    assert_eq!(listed.len(), BOTTLES, "{}: listed", engine.name);
    let broken: Vec<_> = listed
        .iter()
        .filter(|b| {
            b.network.is_none()
                || b.container.is_none()
                || b.state != Some(ContainerState::Running)
                || !b.unreachable.is_empty()
        })
        .collect();
    assert!(broken.is_empty(), "{}: {broken:#?}", engine.name);
    // The engine's own health checks are reported, not required: Docker runs the image's check
    // (an exec every 2 s) in every bundle, and with 100 bundles on a small machine those execs
    // can time out under their own load, marking a bundle whose daemons answer "unhealthy".
    let health = |h: Option<Health>| listed.iter().filter(|b| b.health == h).count();
    let engine_health = format!(
        "engine health: {} healthy, {} starting, {} unhealthy, {} none",
        health(Some(Health::Healthy)),
        health(Some(Health::Starting)),
        health(Some(Health::Unhealthy)),
        health(None)
    );
    common::say(&format!(
        "{}: all {BOTTLES} running and answering; {engine_health}",
        engine.name
    ));

    eprintln!("{}: tearing {BOTTLES} bottles down", engine.name);
    let started = Instant::now();
    let downs: Vec<(String, bottle_core::Result<_>)> = stream::iter(&slugs)
        .map(|slug| {
            let lc = &lc;
            async move { (slug.clone(), lc.down(slug, &NoProgress).await) }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let all_down = started.elapsed();
    let failed: Vec<String> = downs
        .iter()
        .filter_map(|(slug, r)| r.as_ref().err().map(|e| format!("{slug}: {e}")))
        .collect();
    assert!(failed.is_empty(), "{}: {failed:#?}", engine.name);
    let removed: usize = downs
        .iter()
        .map(|(_, r)| r.as_ref().map_or(0, Vec::len))
        .sum();
    assert_eq!(removed, 2 * BOTTLES, "a bundle and a network each");

    // Nothing of ours is left: by label through the adapter, by label and name through the
    // engine's own client.
    let ours = LabelSelector::all().eq(labels::PREFIX, &prefix);
    assert!(rt.list_containers(&ours).await.expect("list").is_empty());
    assert!(rt.list_networks(&ours).await.expect("list").is_empty());
    let name = engine.name;
    let prefix_for_cli = prefix.clone();
    tokio::task::spawn_blocking(move || assert_nothing_left(name, &prefix_for_cli, "all down"))
        .await
        .expect("the check ran");

    let line = format!(
        "{}: {BOTTLES} bottles, {PARALLEL} at a time: all up in {:.1} s ({:.2} s per bottle), all down in {:.1} s ({:.2} s per bottle); {engine_health}",
        engine.name,
        all_up.as_secs_f64(),
        all_up.as_secs_f64() / BOTTLES as f64,
        all_down.as_secs_f64(),
        all_down.as_secs_f64() / BOTTLES as f64,
    );
    common::say(&line);
    // Also where a person can find it after the run.
    let figures = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("scale-figures.txt");
    let mut text = std::fs::read_to_string(&figures).unwrap_or_default();
    text.push_str(&line);
    text.push('\n');
    let _ = std::fs::write(&figures, text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_hundred_bottles_up_and_down() {
    hundred_bottles(DOCKER).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_hundred_bottles_up_and_down() {
    hundred_bottles(PODMAN).await;
}
