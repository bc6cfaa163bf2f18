//! What a user of the Docker adapter relies on beyond the shared conformance suite, checked on a
//! real engine: every hardening setting shows in `inspect`, published ports answer on the
//! bottle's loopback address only, teardown leaves nothing, removal does not wait for a PID 1
//! that ignores SIGTERM, image loading and logs work.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, KillContainerOptionsBuilder,
};
use bottle_core::labels;
use bottle_core::lifecycle::{Lifecycle, NoProgress, Readiness};
use bottle_core::plan::ImageProfile;
use bottle_core::runtime::{
    ContainerSpec, EnvValue, EnvVar, Health, LabelSelector, Labels, Limits, LogOptions, Mount,
    NetworkSpec, Secret, Security,
};
use bottle_core::{BottleSpec, ContainerRuntime, EnvEntry, ErrorKind};
use bottle_docker::convert::TMPFS_OPTIONS;
use bottle_docker::DockerRuntime;

use bottle_core::conformance::harness::{log_lines, say};
use common::{engine, setup, SUITE};

/// Everything of one lifecycle prefix on the engine, found by label: bottles' networks and
/// containers, whatever their role.
async fn ours(rt: &Arc<dyn ContainerRuntime>, lc: &Lifecycle) -> Vec<String> {
    let sel = LabelSelector::all()
        .eq(labels::MANAGED, "true")
        .eq(labels::PREFIX, &lc.config().pools.prefix);
    let containers = rt.list_containers(&sel).await.expect("list containers");
    let networks = rt.list_networks(&sel).await.expect("list networks");
    containers
        .iter()
        .map(|c| format!("container {}", c.name))
        .chain(networks.iter().map(|n| format!("network {}", n.name)))
        .collect()
}

/// A bottle brought up by `Lifecycle::up` has every hardening setting of its plan, as the
/// engine reports it: a setting the engine silently ignored fails here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_shows_in_inspect() {
    let Some((rt, docker, fx)) = setup("hardening_shows_in_inspect").await else {
        return;
    };
    say("docker: hardening_shows_in_inspect");
    const SECRET: &str = "bt-docker-secret-value-4711";
    let mut config = fx.lifecycle_config("hard");
    config.env_lookup = Arc::new(|k| (k == "BT_DOCKER_TOKEN").then(|| SECRET.to_string()));
    let lc = Lifecycle::new(rt.clone(), config);
    let _ = lc.down("hard", &NoProgress).await;

    let host_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("bt-docker-mount");
    std::fs::create_dir_all(&host_dir).expect("mount source");
    let mut spec = BottleSpec::new("hard");
    spec.env = vec![EnvEntry::Inherit {
        key: "BT_DOCKER_TOKEN".into(),
    }];
    spec.mounts = vec![Mount {
        host_path: host_dir.clone(),
        container_path: "/data".into(),
        read_only: true,
    }];
    let bottle = lc.up(&spec, &NoProgress).await.expect("up");
    let plan = &bottle.plan;

    let c = docker
        .docker()
        .inspect_container(&plan.container_name, None::<InspectContainerOptions>)
        .await
        .expect("inspect");
    let hc = c.host_config.clone().expect("HostConfig");
    let cfg = c.config.clone().expect("Config");
    assert_eq!(
        hc.security_opt.as_deref(),
        Some(&["no-new-privileges".to_string()][..]),
        "no-new-privileges"
    );
    assert_eq!(
        hc.cap_drop.as_deref(),
        Some(&["ALL".to_string()][..]),
        "every capability dropped"
    );
    let cap_add = hc.cap_add.clone().unwrap_or_default();
    assert_eq!(
        cap_add, plan.security.cap_add,
        "only the image's capabilities added"
    );
    assert_eq!(hc.readonly_rootfs, Some(true), "read-only root filesystem");
    let tmpfs = hc.tmpfs.clone().unwrap_or_default();
    assert!(!plan.security.tmpfs.is_empty());
    for path in &plan.security.tmpfs {
        assert_eq!(
            tmpfs.get(path).map(String::as_str),
            Some(TMPFS_OPTIONS),
            "tmpfs {path}"
        );
    }
    assert_eq!(tmpfs.len(), plan.security.tmpfs.len(), "{tmpfs:?}");
    assert_eq!(hc.pids_limit, plan.limits.pids, "pids limit");
    assert!(plan.limits.pids.is_some());
    assert_eq!(
        hc.memory,
        plan.limits.memory_bytes.map(|m| m as i64),
        "memory limit"
    );
    assert_eq!(hc.memory_swap, hc.memory, "no swap beyond the memory limit");
    assert!(plan.limits.memory_bytes.is_some());

    // The user is the image's, and it is not root.
    let image = rt
        .image(&plan.image)
        .await
        .expect("image")
        .expect("present");
    let user = cfg.user.clone().unwrap_or_default();
    assert_eq!(user, image.user, "the image's user");
    let uid = user.split(':').next().unwrap_or_default();
    assert!(
        !uid.is_empty() && uid != "0" && uid != "root",
        "runs as non-root, not {user:?}"
    );
    // Capabilities the image declares are exactly the ones added.
    let profile = ImageProfile::from_image(&plan.image, &image).expect("profile");
    assert_eq!(cap_add, profile.cap_add);

    // The bind is read-only.
    let mounts = c.mounts.clone().unwrap_or_default();
    let data = mounts
        .iter()
        .find(|m| m.destination.as_deref() == Some("/data"))
        .expect("/data mounted");
    assert_eq!(data.source.as_deref(), host_dir.to_str());
    assert_eq!(data.rw, Some(false), "read-only bind");

    // The secret reached the container's environment, and no label.
    let env = cfg.env.clone().unwrap_or_default();
    assert!(
        env.contains(&format!("BT_DOCKER_TOKEN={SECRET}")),
        "secret passed"
    );
    let labels = cfg.labels.clone().unwrap_or_default();
    assert!(
        labels.values().all(|v| !v.contains(SECRET)),
        "no label holds the secret"
    );

    // The image's own health check runs, and both inspect and the listing report it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let info = rt
            .inspect_container(&plan.container_name)
            .await
            .expect("inspect");
        if info.health == Some(Health::Healthy) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the image's health check never passed: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let listed = lc.list().await.expect("list");
    assert_eq!(listed[0].health, Some(Health::Healthy), "{listed:?}");

    lc.down("hard", &NoProgress).await.expect("down");
    assert!(ours(&rt, &lc).await.is_empty());
}

/// Settings the lifecycle does not use with the reference image take effect too: added
/// capabilities, an explicit user, several tmpfs paths, plain and secret variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_requested_setting_takes_effect() {
    let Some(docker) = engine("every_requested_setting_takes_effect").await else {
        return;
    };
    say("docker: every_requested_setting_takes_effect");
    common::sigterm_deaf_image(&docker).await;
    let rt: Arc<dyn ContainerRuntime> = Arc::new(docker.clone());
    // 10.215.100.0/24: away from the conformance cases' subnets (the pool's first 32) and from
    // the first choices of the slugs these tests bring up, so parallel tests do not collide.
    let net = NetworkSpec {
        name: "bt-docker-settings-n".into(),
        subnet: "10.215.100.0/24".parse().unwrap(),
        gateway: "10.215.100.1".parse().unwrap(),
        labels: Labels::from([("io.bottle.conformance".into(), SUITE.prefix.into())]),
    };
    let spec = ContainerSpec {
        name: "bt-docker-settings-c".into(),
        image: SUITE.sigterm_deaf_tag(),
        network: net.name.clone(),
        ipv4: "10.215.100.9".parse().unwrap(),
        env: vec![
            EnvVar {
                key: "PLAIN".into(),
                value: EnvValue::Plain("shown".into()),
            },
            EnvVar {
                key: "TOKEN".into(),
                value: EnvValue::Secret(Secret::new("hidden-4711")),
            },
        ],
        mounts: Vec::new(),
        publish: Vec::new(),
        labels: net.labels.clone(),
        security: Security {
            no_new_privileges: true,
            drop_all_capabilities: true,
            cap_add: vec!["NET_BIND_SERVICE".into(), "CHOWN".into()],
            read_only_rootfs: true,
            tmpfs: vec!["/tmp".into(), "/run".into()],
            user: Some("65533:65533".into()),
        },
        limits: Limits {
            memory_bytes: Some(48 << 20),
            pids: Some(32),
        },
    };
    rt.remove_container(&spec.name).await.expect("clean start");
    rt.remove_network(&net.name).await.expect("clean start");
    rt.create_network(&net).await.expect("network");
    rt.create_container(&spec).await.expect("create");
    rt.start_container(&spec.name).await.expect("start");

    let c = docker
        .docker()
        .inspect_container(&spec.name, None::<InspectContainerOptions>)
        .await
        .expect("inspect");
    let hc = c.host_config.expect("HostConfig");
    let cfg = c.config.expect("Config");
    assert_eq!(
        hc.cap_add,
        Some(vec!["NET_BIND_SERVICE".to_string(), "CHOWN".to_string()])
    );
    assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
    assert_eq!(hc.security_opt, Some(vec!["no-new-privileges".to_string()]));
    assert_eq!(hc.readonly_rootfs, Some(true));
    let tmpfs = hc.tmpfs.unwrap_or_default();
    assert_eq!(tmpfs.len(), 2, "{tmpfs:?}");
    assert!(tmpfs.contains_key("/run") && tmpfs.contains_key("/tmp"));
    assert_eq!(hc.memory, Some(48 << 20));
    assert_eq!(hc.memory_swap, Some(48 << 20), "no swap beyond the limit");
    assert_eq!(hc.pids_limit, Some(32));
    assert_eq!(
        cfg.user.as_deref(),
        Some("65533:65533"),
        "the requested user"
    );
    let env = cfg.env.unwrap_or_default();
    assert!(env.contains(&"PLAIN=shown".to_string()), "{}", env.len());
    assert!(
        env.iter().any(|e| e == "TOKEN=hidden-4711"),
        "secret passed"
    );
    let info = rt.inspect_container(&spec.name).await.expect("inspect");
    assert_eq!(info.networks.get(&net.name), Some(&spec.ipv4));
    assert_eq!(info.state.to_string(), "running");

    // Creating it again is refused, and the refusal never quotes the secret.
    let err = rt.create_container(&spec).await.expect_err("name taken");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert!(!format!("{err} {err:?}").contains("hidden-4711"));

    rt.remove_container(&spec.name).await.expect("remove");
    rt.remove_network(&net.name).await.expect("remove network");
}

/// The bundle has its pinned address, and each published port answers on the bottle's loopback
/// address and nowhere else: not on 127.0.0.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_answer_on_the_bottle_loopback_only() {
    let Some((rt, docker, fx)) = setup("ports_answer_on_the_bottle_loopback_only").await else {
        return;
    };
    say("docker: ports_answer_on_the_bottle_loopback_only");
    let lc = fx.lifecycle(rt.clone(), "lo");
    let _ = lc.down("lo", &NoProgress).await;
    let bottle = lc
        .up(&BottleSpec::new("lo"), &NoProgress)
        .await
        .expect("up");
    let ep = &bottle.endpoints;
    assert_ne!(
        ep.loopback,
        Ipv4Addr::LOCALHOST,
        "the bottle has its own address"
    );

    let info = rt
        .inspect_container(&bottle.plan.container_name)
        .await
        .expect("inspect");
    assert_eq!(
        info.networks.get(&bottle.plan.network_name),
        Some(&bottle.plan.bundle_ip),
        "the pinned address is the container's"
    );
    let raw = docker
        .docker()
        .inspect_container(&bottle.plan.container_name, None::<InspectContainerOptions>)
        .await
        .expect("inspect");
    let live = raw
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default();
    assert_eq!(
        live[&bottle.plan.network_name].ip_address.as_deref(),
        Some(bottle.plan.bundle_ip.to_string().as_str()),
        "the engine's own IPAddress"
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
        let connect = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(on_localhost),
        )
        .await;
        if matches!(connect, Ok(Ok(_))) {
            // Host ports come from the kernel's ephemeral range, which every other program on
            // this host draws from too: something else may hold 127.0.0.1 on the same port.
            // That is no leak; a listener that forwards to this bundle is.
            let owners = local_listeners(d.host_port);
            let ours = format!("-container-ip {}", bottle.plan.bundle_ip);
            assert!(
                !owners.is_empty() && owners.iter().all(|o| !o.contains(&ours)),
                "{} must not answer on {on_localhost}; listeners there: {owners:?}",
                d.daemon
            );
            say(&format!(
                "docker: {on_localhost} is another program's ({owners:?}), not the bundle's"
            ));
        }
    }
    for b in &info.ports {
        assert_eq!(b.host_ip, Some(IpAddr::V4(ep.loopback)), "{b:?}");
    }
    lc.down("lo", &NoProgress).await.expect("down");
    assert!(ours(&rt, &lc).await.is_empty());
}

/// The command lines of the programs listening on TCP `port` of 127.0.0.1 or of every
/// address, read from `/proc`.
fn local_listeners(port: u16) -> Vec<String> {
    const LISTEN: &str = "0A";
    let local = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
        format!("00000000000000000000000000000000:{port:04X}"),
        format!("0000000000000000FFFF00000100007F:{port:04X}"),
    ];
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let f: Vec<&str> = line.split_whitespace().collect();
                    (f.len() > 9 && f[3] == LISTEN && local.iter().any(|l| l == f[1]))
                        .then(|| format!("socket:[{}]", f[9]))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let mut owners = Vec::new();
    for proc_dir in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let fds = std::fs::read_dir(proc_dir.path().join("fd"));
        let holds = fds.into_iter().flatten().flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|t| inodes.iter().any(|i| t.as_os_str() == i.as_str()))
        });
        if holds {
            let cmdline = std::fs::read(proc_dir.path().join("cmdline")).unwrap_or_default();
            owners.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
        }
    }
    owners
}

/// Two bottles brought up at the same time get different subnets, bundle addresses and loopback
/// addresses, and each answers on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bottles_at_once_are_apart() {
    let Some((rt, _, fx)) = setup("two_bottles_at_once_are_apart").await else {
        return;
    };
    say("docker: two_bottles_at_once_are_apart");
    let lc = fx.lifecycle(rt.clone(), "duo");
    for slug in ["east", "west"] {
        let _ = lc.down(slug, &NoProgress).await;
    }
    let (east, west) = (BottleSpec::new("east"), BottleSpec::new("west"));
    let (a, b) = tokio::join!(lc.up(&east, &NoProgress), lc.up(&west, &NoProgress));
    let (a, b) = (a.expect("up east"), b.expect("up west"));
    assert_ne!(a.plan.subnet, b.plan.subnet);
    assert_ne!(a.plan.bundle_ip, b.plan.bundle_ip);
    assert_ne!(a.endpoints.loopback, b.endpoints.loopback);
    for bottle in [&a, &b] {
        let info = rt
            .inspect_container(&bottle.plan.container_name)
            .await
            .expect("inspect");
        let ip = info.networks[&bottle.plan.network_name];
        assert_eq!(ip, bottle.plan.bundle_ip);
        assert!(bottle.plan.subnet.contains(&ip));
        for d in &bottle.endpoints.daemons {
            let addr = SocketAddr::new(IpAddr::V4(bottle.endpoints.loopback), d.host_port);
            assert!(Readiness::any_runtime().probe(addr).await, "{addr}");
        }
    }
    for slug in ["east", "west"] {
        lc.down(slug, &NoProgress).await.expect("down");
    }
    assert!(ours(&rt, &lc).await.is_empty());
}

/// `down` leaves no container and no network with our labels, and a second `down` succeeds
/// with nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_leaves_nothing_and_repeats() {
    let Some((rt, _, fx)) = setup("down_leaves_nothing_and_repeats").await else {
        return;
    };
    say("docker: down_leaves_nothing_and_repeats");
    let lc = fx.lifecycle(rt.clone(), "gone");
    let _ = lc.down("bye", &NoProgress).await;
    let bottle = lc
        .up(&BottleSpec::new("bye"), &NoProgress)
        .await
        .expect("up");
    assert_eq!(ours(&rt, &lc).await.len(), 2, "a container and a network");
    let removed = lc.down("bye", &NoProgress).await.expect("down");
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(ours(&rt, &lc).await.is_empty());
    let err = rt
        .inspect_container(&bottle.plan.container_name)
        .await
        .expect_err("container gone");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let every = rt.list_networks(&LabelSelector::all()).await.expect("list");
    assert!(every.iter().all(|n| n.name != bottle.plan.network_name));
    let again = lc.down("bye", &NoProgress).await.expect("second down");
    assert!(again.is_empty(), "{again:?}");
}

/// A launch killed between creating the network and creating the container leaves a network
/// only; `down` removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_after_a_launch_killed_midway_leaves_nothing() {
    let Some((rt, _, fx)) = setup("down_after_a_launch_killed_midway_leaves_nothing").await else {
        return;
    };
    say("docker: down_after_a_launch_killed_midway_leaves_nothing");
    let lc = fx.lifecycle(rt.clone(), "killed");
    let _ = lc.down("half", &NoProgress).await;
    let plan = lc.plan(&BottleSpec::new("half")).await.expect("plan");
    rt.create_network(&NetworkSpec {
        name: plan.network_name.clone(),
        subnet: plan.subnet,
        gateway: plan.gateway,
        labels: plan.network_labels.clone(),
    })
    .await
    .expect("the network the killed launch made");
    assert_eq!(
        ours(&rt, &lc).await,
        vec![format!("network {}", plan.network_name)]
    );
    let removed = lc.down("half", &NoProgress).await.expect("down");
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(ours(&rt, &lc).await.is_empty());
}

/// Removing a running container whose PID 1 ignores SIGTERM kills it: it is gone when the call
/// returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_kills_a_pid1_that_ignores_sigterm() {
    let Some(docker) = engine("remove_kills_a_pid1_that_ignores_sigterm").await else {
        return;
    };
    let rt: Arc<dyn ContainerRuntime> = Arc::new(docker.clone());
    say("docker: remove_kills_a_pid1_that_ignores_sigterm");
    common::sigterm_deaf_image(&docker).await;
    let name = "bt-docker-sigterm";
    rt.remove_container(name).await.expect("clean start");
    create_sleeper(&docker, name, &["/bin/sleep", "infinity"]).await;
    rt.start_container(name).await.expect("start");

    // The premise: SIGTERM does not stop it.
    docker
        .docker()
        .kill_container(
            name,
            Some(
                KillContainerOptionsBuilder::default()
                    .signal("SIGTERM")
                    .build(),
            ),
        )
        .await
        .expect("send SIGTERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let info = rt.inspect_container(name).await.expect("inspect");
    assert_eq!(info.state.to_string(), "running", "PID 1 ignored SIGTERM");

    let started = Instant::now();
    rt.remove_container(name).await.expect("remove");
    let took = started.elapsed();
    let err = rt.inspect_container(name).await.expect_err("gone");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    say(&format!(
        "docker: removing a SIGTERM-ignoring container took {took:?}"
    ));
}

/// Creates a container of the sleep image with `cmd`, off any network.
async fn create_sleeper(docker: &DockerRuntime, name: &str, cmd: &[&str]) {
    let body = ContainerCreateBody {
        image: Some(SUITE.sigterm_deaf_tag()),
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        labels: Some(HashMap::from([(
            "io.bottle.conformance".to_string(),
            SUITE.prefix.to_string(),
        )])),
        host_config: Some(HostConfig {
            network_mode: Some("none".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    docker
        .docker()
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(name).build()),
            body,
        )
        .await
        .expect("create the sleeper");
}

/// Waits (bounded) until a container has exited.
async fn wait_exited(rt: &Arc<dyn ContainerRuntime>, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = rt.inspect_container(name).await.expect("inspect");
        if info.state.to_string() == "exited" {
            return;
        }
        assert!(Instant::now() < deadline, "{name} never exited: {info:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `docker save` archive loads through the API and reports the names it loaded; the image's
/// labels and user come back from `image`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_image_reports_loaded_names() {
    let Some(docker) = engine("load_image_reports_loaded_names").await else {
        return;
    };
    say("docker: load_image_reports_loaded_names");
    let loaded = docker
        .load_image(&common::sigterm_deaf_archive())
        .await
        .expect("load");
    assert_eq!(loaded, vec![SUITE.sigterm_deaf_tag()]);
    let image = docker
        .image(&SUITE.sigterm_deaf_tag())
        .await
        .expect("image")
        .expect("present");
    assert_eq!(image.user, "65534");
    assert_eq!(
        image.labels.get("io.bottle.test").map(String::as_str),
        Some("sleep")
    );

    let missing = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-such-archive.tar");
    let err = docker
        .load_image(&missing)
        .await
        .expect_err("missing archive");
    assert!(err.to_string().contains("no-such-archive.tar"), "{err}");
}

/// Logs come back line by line from stdout and stderr, and `tail` keeps the last lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_stream_stdout_and_stderr_lines() {
    let Some(docker) = engine("logs_stream_stdout_and_stderr_lines").await else {
        return;
    };
    let rt: Arc<dyn ContainerRuntime> = Arc::new(docker.clone());
    say("docker: logs_stream_stdout_and_stderr_lines");
    common::sigterm_deaf_image(&docker).await;

    let out = "bt-docker-logs-out";
    rt.remove_container(out).await.expect("clean start");
    create_sleeper(&docker, out, &["/bin/sleep", "--version"]).await;
    rt.start_container(out).await.expect("start");
    wait_exited(&rt, out).await;
    let lines = log_lines(&*rt, out, LogOptions::default(), None).await;
    assert!(lines.len() > 1, "{lines:?}");
    assert!(lines[0].starts_with("sleep (GNU coreutils)"), "{lines:?}");
    assert!(lines.iter().all(|l| !l.contains('\n')), "{lines:?}");
    let tail = LogOptions {
        tail: Some(1),
        follow: true,
    };
    // Following the logs of an exited container returns.
    let last = log_lines(&*rt, out, tail, None).await;
    assert_eq!(last.as_slice(), &lines[lines.len() - 1..]);
    let first_only = log_lines(&*rt, out, LogOptions::default(), Some(1)).await;
    assert_eq!(first_only.len(), 1, "the sink stops the stream");
    rt.remove_container(out).await.expect("remove");

    let err_name = "bt-docker-logs-err";
    rt.remove_container(err_name).await.expect("clean start");
    create_sleeper(&docker, err_name, &["/bin/sleep", "bogus"]).await;
    rt.start_container(err_name).await.expect("start");
    wait_exited(&rt, err_name).await;
    let errs = log_lines(&*rt, err_name, LogOptions::default(), None).await;
    assert!(
        errs.iter().any(|l| l.contains("invalid time interval")),
        "stderr is read: {errs:?}"
    );
    rt.remove_container(err_name).await.expect("remove");

    let missing = rt
        .logs(
            "bt-docker-never-created",
            LogOptions::default(),
            &mut |_| true,
        )
        .await
        .expect_err("logs of a missing container");
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");
}

/// The engine's identity names Docker, its version and the API version spoken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_names_the_engine() {
    let Some(docker) = engine("info_names_the_engine").await else {
        return;
    };
    let rt: Arc<dyn ContainerRuntime> = Arc::new(docker.clone());
    let info = rt.info().await.expect("info");
    say(&format!(
        "docker: engine {} (API {}) at {}",
        info.version, info.api_version, info.endpoint
    ));
    assert_eq!(info.engine, "docker");
    assert!(!info.version.is_empty());
    assert!(info.api_version.starts_with("1."), "{info:?}");
    assert_eq!(info.endpoint, docker.endpoint());
}

/// No engine at the address is `EngineUnavailable`, naming the socket and what it needs.
#[tokio::test]
async fn no_engine_is_engine_unavailable() {
    let err = DockerRuntime::connect_to("unix:///nonexistent/bt-docker.sock")
        .await
        .expect_err("no engine there");
    assert_eq!(err.kind(), ErrorKind::EngineUnavailable, "{err}");
    let text = err.to_string();
    assert!(text.contains("/nonexistent/bt-docker.sock"), "{text}");
    assert!(text.contains("DOCKER_HOST"), "{text}");
    assert!(
        !text.contains("xtask"),
        "no advice about this workspace: {text}"
    );
    assert!(
        std::error::Error::source(&err).is_some(),
        "keeps bollard's error"
    );

    let err = DockerRuntime::connect_to("fd://somewhere")
        .await
        .expect_err("unsupported scheme");
    assert_eq!(err.kind(), ErrorKind::EngineUnavailable, "{err}");
    assert!(
        err.to_string().contains("unix://, tcp:// or ssh://"),
        "{err}"
    );
}
