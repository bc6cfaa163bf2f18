//! Concurrent launches from separate `bottle` processes on the real Docker and Podman engines.
//!
//! - Eight processes launching eight different bottles at the same moment, every one of them
//!   wanting the *same* first-choice subnet and loopback address, in a pool of exactly eight
//!   subnets: all succeed, and no two share a subnet or a loopback address (allocation is
//!   serialised across processes by the lock file, and the engine's own conflicts are retried).
//! - Two processes launching the same slug at once: exactly one succeeds, the other says
//!   "already up", and exactly one bottle's objects exist afterwards.
//!
//! - Docker and Podman launching from the *same* pools on one host (each engine lists only its
//!   own networks): no two bottles share a subnet or a loopback address, because launches see
//!   each other's bridges (routes) and published addresses (listening sockets) on the host.
//!
//! Each test has its own `--prefix` and its own part of this suite's pools (its rows
//! `cli-concurrency` of `bottle_core::conformance::harness::POOLS`, and 10.251.0.0/21 and
//! 127.111.0.0/28 for both engines at once), so it runs beside every other test.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use bottle_core::conformance::harness::pools;
use bottle_core::plan::{allocate_loopback, first_choice_subnet};
use bottle_core::LoopbackChoice;
use common::{assert_nothing_left, engine_objects, finish, spawn_bottle, DownOnDrop, Engine};
use ipnet::Ipv4Net;
use serde_json::Value;

const DOCKER: Engine = Engine::of(pools("cli-concurrency", "docker"));

const PODMAN: Engine = Engine::of(pools("cli-concurrency", "podman"));

/// How many processes race in one round.
const RACERS: usize = 8;
/// How many rounds of racers.
const ROUNDS: usize = 2;

/// The pools of the different-slugs race: exactly [`RACERS`] subnets, a handful more loopback
/// addresses than racers (a /28 has 14 usable ones), so any double allocation shows.
fn race_pools(engine: Engine) -> (Ipv4Net, Ipv4Net) {
    let second = if engine.name == "docker" { 240 } else { 241 };
    (
        format!("10.{second}.0.0/21").parse().expect("pool"),
        format!("127.{}.0.0/28", second - 140)
            .parse()
            .expect("pool"),
    )
}

/// Groups of [`RACERS`] slugs whose first-choice subnet and loopback address are the same, so
/// that every racer of a round wants what every other one wants.
fn colliding_slugs(subnets: &Ipv4Net, loopbacks: &Ipv4Net, groups: usize) -> Vec<Vec<String>> {
    let choice = LoopbackChoice::Pool(*loopbacks);
    let mut by_choice: BTreeMap<(Ipv4Net, std::net::Ipv4Addr), Vec<String>> = BTreeMap::new();
    let mut found = Vec::new();
    for i in 0.. {
        let slug = format!("race-{i}");
        let subnet = first_choice_subnet(&slug, subnets);
        let loopback = allocate_loopback(&slug, &choice, &BTreeSet::new()).expect("a free address");
        let group = by_choice.entry((subnet, loopback)).or_default();
        group.push(slug);
        if group.len() == RACERS {
            found.push(std::mem::take(group));
            if found.len() == groups {
                return found;
            }
        }
    }
    unreachable!("the loop returns")
}

/// `bottle up <slug>` with JSON output, from the given pools.
fn up_args<'a>(slug: &'a str, subnet_pool: &'a str, loopback_pool: &'a str) -> Vec<&'a str> {
    vec![
        "--quiet",
        "up",
        slug,
        "--output",
        "json",
        "--subnet-pool",
        subnet_pool,
        "--loopback-pool",
        loopback_pool,
    ]
}

/// The subnet and loopback address an `up` report says the bottle got.
fn allocation(report: &Value) -> (Ipv4Net, std::net::Ipv4Addr) {
    let field = |key: &str| {
        report[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key}: {report}"))
    };
    (
        field("subnet").parse().expect("a subnet"),
        field("loopback").parse().expect("an address"),
    )
}

fn different_slugs_never_share_an_address(engine: Engine) {
    if !engine.ready() {
        return;
    }
    let prefix = format!("bt-race-{}", engine.name);
    let prefix = prefix.as_str();
    let _cleanup = engine.clean_slate(prefix);
    let (subnets, loopbacks) = race_pools(engine);
    let (subnet_flag, loopback_flag) = (subnets.to_string(), loopbacks.to_string());
    for (round, slugs) in colliding_slugs(&subnets, &loopbacks, ROUNDS)
        .into_iter()
        .enumerate()
    {
        eprintln!(
            "{}: round {round}: {RACERS} processes launch {slugs:?} at once, all wanting {} and {}",
            engine.name,
            first_choice_subnet(&slugs[0], &subnets),
            allocate_loopback(
                &slugs[0],
                &LoopbackChoice::Pool(loopbacks),
                &BTreeSet::new()
            )
            .expect("address")
        );
        let args: Vec<Vec<&str>> = slugs
            .iter()
            .map(|slug| up_args(slug, &subnet_flag, &loopback_flag))
            .collect();
        // Spawned back to back, then waited for: they run at the same time.
        let children: Vec<_> = args
            .iter()
            .map(|a| spawn_bottle(engine.name, prefix, a, &[]))
            .collect();
        let runs: Vec<_> = children
            .into_iter()
            .zip(&args)
            .map(|(child, a)| finish(child, a))
            .collect();

        let mut subnets_seen = BTreeSet::new();
        let mut loopbacks_seen = BTreeSet::new();
        for run in runs {
            let report = run.ok().json();
            let (subnet, loopback) = allocation(&report);
            assert!(subnets.contains(&subnet), "{subnet} is in {subnets}");
            assert!(
                loopbacks.contains(&loopback),
                "{loopback} is in {loopbacks}"
            );
            assert!(
                subnets_seen.insert(subnet),
                "{}: two bottles got subnet {subnet}",
                engine.name
            );
            assert!(
                loopbacks_seen.insert(loopback),
                "{}: two bottles got loopback {loopback}",
                engine.name
            );
            for d in report["daemons"].as_array().expect("daemons") {
                let port = d["host_port"].as_u64().expect("port") as u16;
                let addr = SocketAddr::new(IpAddr::V4(loopback), port);
                TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap_or_else(|e| {
                    panic!("{} of {} at {addr}: {e}", d["daemon"], report["slug"])
                });
            }
        }

        // The engine agrees: one network per bottle, each with the subnet reported.
        let ps = engine.ps(prefix);
        assert_eq!(ps.len(), RACERS, "{ps:?}");
        let mut engine_subnets = BTreeSet::new();
        for entry in &ps {
            assert_eq!(entry["complete"], true, "{entry}");
            let network = entry["network"].as_str().expect("network");
            let inspected = common::inspect(engine.name, "network", network);
            engine_subnets.extend(network_subnets(&inspected));
        }
        assert_eq!(
            engine_subnets, subnets_seen,
            "the engine's networks have the reported subnets"
        );

        engine.run(prefix, &["--quiet", "down", "--all"]).ok();
        assert_nothing_left(engine.name, prefix, "down --all");
    }
}

/// Four launches on Docker at once, then four on Podman at once, all wanting the same subnet
/// and address from one pool of eight subnets.
#[test]
fn docker_and_podman_launches_from_one_pool_never_share_an_address() {
    if !DOCKER.ready() || !PODMAN.ready() {
        return;
    }
    let prefix = "bt-mixed";
    let subnets: Ipv4Net = "10.251.0.0/21".parse().expect("pool");
    let loopbacks: Ipv4Net = "127.111.0.0/28".parse().expect("pool");
    let (subnet_flag, loopback_flag) = (subnets.to_string(), loopbacks.to_string());
    let engines = [DOCKER, PODMAN];
    for engine in engines {
        engine.run(prefix, &["--quiet", "down", "--all"]).ok();
    }
    let _cleanup = engines.map(|engine| DownOnDrop {
        engine,
        prefix: prefix.to_string(),
    });
    let slugs = colliding_slugs(&subnets, &loopbacks, 1).remove(0);
    let launches: Vec<(Engine, Vec<&str>)> = slugs
        .iter()
        .enumerate()
        .map(|(i, slug)| (engines[i % 2], up_args(slug, &subnet_flag, &loopback_flag)))
        .collect();
    // Docker's four at once, then Podman's four at once: Podman's launches see Docker's
    // bottles only on the host (their reservations are gone by then).
    let mut runs = Vec::new();
    for engine in engines {
        let mine: Vec<_> = launches
            .iter()
            .filter(|(e, _)| e.name == engine.name)
            .collect();
        let children: Vec<_> = mine
            .iter()
            .map(|(e, args)| spawn_bottle(e.name, prefix, args, &[]))
            .collect();
        for (child, (e, args)) in children.into_iter().zip(mine) {
            runs.push((e.name, finish(child, args).ok().json()));
        }
    }
    let mut subnets_seen = BTreeMap::new();
    let mut loopbacks_seen = BTreeMap::new();
    for (engine, report) in runs {
        let slug = report["slug"].as_str().expect("slug").to_string();
        let (subnet, loopback) = allocation(&report);
        let who = format!("{slug} on {engine}");
        if let Some(other) = subnets_seen.insert(subnet, who.clone()) {
            panic!("{who} and {other} both got subnet {subnet}");
        }
        if let Some(other) = loopbacks_seen.insert(loopback, who.clone()) {
            panic!("{who} and {other} both got loopback {loopback}");
        }
    }
    assert_eq!(subnets_seen.len(), RACERS);
    for engine in engines {
        engine.run(prefix, &["--quiet", "down", "--all"]).ok();
        assert_nothing_left(engine.name, prefix, "down --all");
    }
}

/// The IPv4 subnets of a network, from either engine's `network inspect`.
fn network_subnets(inspected: &Value) -> Vec<Ipv4Net> {
    let docker = inspected["IPAM"]["Config"].as_array();
    let podman = inspected["subnets"].as_array();
    docker
        .into_iter()
        .chain(podman)
        .flatten()
        .filter_map(|c| c["Subnet"].as_str().or(c["subnet"].as_str()))
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn same_slug_exactly_one_wins(engine: Engine) {
    if !engine.ready() {
        return;
    }
    let prefix = format!("bt-same-{}", engine.name);
    let prefix = prefix.as_str();
    let _cleanup = engine.clean_slate(prefix);
    // A part of the engine's pools that the different-slugs race does not use.
    let second = if engine.name == "docker" { 240 } else { 241 };
    let subnets = format!("10.{second}.16.0/20");
    let loopbacks = format!("127.{}.1.0/24", second - 140);
    let slug = "twin";
    let args = up_args(slug, &subnets, &loopbacks);
    for round in 0..3 {
        let a = spawn_bottle(engine.name, prefix, &args, &[]);
        let b = spawn_bottle(engine.name, prefix, &args, &[]);
        let runs = [finish(a, &args), finish(b, &args)];
        let winners: Vec<_> = runs.iter().filter(|r| r.code == 0).collect();
        assert_eq!(
            winners.len(),
            1,
            "{} round {round}: exactly one of two launches of {slug} succeeds: {runs:#?}",
            engine.name
        );
        let loser = runs.iter().find(|r| r.code != 0).expect("a loser");
        assert_eq!(loser.code, 1, "{loser:#?}");
        assert!(
            loser
                .stderr
                .contains(&format!("bottle {slug} is already up")),
            "the loser says the bottle is already up: {}",
            loser.stderr
        );
        assert!(loser.stdout.is_empty(), "{loser:#?}");

        // Exactly the winner's two objects exist, and they work.
        assert_eq!(
            engine_objects(engine.name, prefix),
            [
                format!("container {prefix}-sidecars-{slug}"),
                format!("network {prefix}-bundle-{slug}"),
            ],
            "{} round {round}",
            engine.name
        );
        let report = winners[0].json();
        let env = engine
            .run(prefix, &["env", slug, "--output", "json"])
            .ok()
            .json();
        assert_eq!(common::env_map(&env), common::env_map(&report));
        let ps = engine.ps(prefix);
        assert_eq!(ps.len(), 1, "{ps:?}");
        assert_eq!(ps[0]["complete"], true, "{ps:?}");

        engine.run(prefix, &["--quiet", "down", slug]).ok();
        assert_nothing_left(engine.name, prefix, "down");
    }
}

#[test]
fn docker_racing_launches_get_distinct_subnets_and_loopbacks() {
    different_slugs_never_share_an_address(DOCKER);
}

#[test]
fn podman_racing_launches_get_distinct_subnets_and_loopbacks() {
    different_slugs_never_share_an_address(PODMAN);
}

#[test]
fn docker_same_slug_launched_twice_at_once_one_wins() {
    same_slug_exactly_one_wins(DOCKER);
}

#[test]
fn podman_same_slug_launched_twice_at_once_one_wins() {
    same_slug_exactly_one_wins(PODMAN);
}
