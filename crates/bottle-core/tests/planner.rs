//! Data-driven tests of the pure planner: each case is a spec, what is in use, and the plan
//! rendered as text.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use bottle_core::catalog::Catalog;
use bottle_core::plan::{self, ImageProfile, InUse, PlannedEnv, Pools};
use bottle_core::spec::{BottleSpec, EnvEntry, LoopbackChoice};

/// Renders the parts of a plan a reader checks, one per line.
fn render(p: &plan::BundlePlan) -> String {
    let env: Vec<String> = p
        .env
        .iter()
        .map(|e| match e {
            PlannedEnv::Value { key, value } => format!("{key}={value}"),
            PlannedEnv::Inherit { key } => format!("{key} (inherited)"),
        })
        .collect();
    let publish: Vec<String> = p
        .publish
        .iter()
        .map(|s| format!("{}:{}", s.host_ip, s.container_port))
        .collect();
    format!(
        "network {} {} gw {} bundle {}\ncontainer {}\nloopback {}\ndaemons {}\npublish {}\nenv {}",
        p.network_name,
        p.subnet,
        p.gateway,
        p.bundle_ip,
        p.container_name,
        p.loopback,
        p.daemons
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
            .join(","),
        publish.join(" "),
        env.join(" "),
    )
}

#[track_caller]
fn check(spec: BottleSpec, in_use: InUse, expect: &str) {
    let catalog = Catalog::seed();
    let p = plan::plan(
        &spec,
        "img:1",
        &catalog,
        &ImageProfile::default(),
        &Pools::default(),
        &in_use,
    )
    .expect("plan");
    let got = render(&p);
    assert_eq!(got.trim(), expect.trim(), "\n--- got ---\n{got}\n");
}

fn spec(slug: &str) -> BottleSpec {
    BottleSpec::new(slug)
}

#[test]
fn plans() {
    check(
        spec("demo"),
        InUse::default(),
        "
network bottle-bundle-demo 10.213.150.0/24 gw 10.213.150.1 bundle 10.213.150.2
container bottle-sidecars-demo
loopback 127.77.90.146
daemons pipelock,egress
publish 127.77.90.146:8888
env BOTTLE_DAEMONS=pipelock,egress",
    );
    // The first choice is taken: the next free /24 is used.
    check(
        spec("demo"),
        InUse {
            subnets: vec!["10.213.150.0/24".parse().unwrap()],
            loopbacks: BTreeSet::from(["127.77.90.146".parse().unwrap()]),
        },
        "
network bottle-bundle-demo 10.213.151.0/24 gw 10.213.151.1 bundle 10.213.151.2
container bottle-sidecars-demo
loopback 127.77.90.147
daemons pipelock,egress
publish 127.77.90.147:8888
env BOTTLE_DAEMONS=pipelock,egress",
    );
    // A larger network that covers the first choice blocks it too.
    check(
        spec("demo"),
        InUse {
            subnets: vec!["10.213.128.0/19".parse().unwrap()],
            loopbacks: BTreeSet::new(),
        },
        "
network bottle-bundle-demo 10.213.160.0/24 gw 10.213.160.1 bundle 10.213.160.2
container bottle-sidecars-demo
loopback 127.77.90.146
daemons pipelock,egress
publish 127.77.90.146:8888
env BOTTLE_DAEMONS=pipelock,egress",
    );
    // Git upstreams turn git-gate on, supervise turns supervise on; both are published.
    check(
        BottleSpec {
            git_upstreams: vec!["https://git.example.test/repo.git".into()],
            supervise: true,
            egress_allow: vec!["API.example.test:443".into(), "*.pkg.example.test".into()],
            env: vec![
                EnvEntry::parse("MODE=strict").unwrap(),
                EnvEntry::parse("TOKEN").unwrap(),
            ],
            ..spec("full")
        },
        InUse::default(),
        "
network bottle-bundle-full 10.213.124.0/24 gw 10.213.124.1 bundle 10.213.124.2
container bottle-sidecars-full
loopback 127.77.155.152
daemons pipelock,egress,git-gate,supervise
publish 127.77.155.152:8888 127.77.155.152:9418 127.77.155.152:9100
env BOTTLE_DAEMONS=pipelock,egress,git-gate,supervise BOTTLE_EGRESS_ALLOW=api.example.test:443,*.pkg.example.test BOTTLE_GIT_UPSTREAMS=[{\"name\":\"repo\",\"url\":\"https://git.example.test/repo.git\",\"token_key\":null,\"push\":null,\"ca_file\":null,\"insecure_http\":false}] MODE=strict TOKEN (inherited) BOTTLE_SECRET_KEYS=TOKEN",
    );
    // A fixed loopback address is used as given.
    check(
        BottleSpec {
            loopback: Some(LoopbackChoice::Fixed(Ipv4Addr::LOCALHOST)),
            ..spec("fixed")
        },
        InUse::default(),
        "
network bottle-bundle-fixed 10.213.185.0/24 gw 10.213.185.1 bundle 10.213.185.2
container bottle-sidecars-fixed
loopback 127.0.0.1
daemons pipelock,egress
publish 127.0.0.1:8888
env BOTTLE_DAEMONS=pipelock,egress",
    );
}

#[test]
fn labels_mark_every_resource_and_carry_no_secret() {
    let spec = BottleSpec {
        env: vec![EnvEntry::parse("SECRET_TOKEN").unwrap()],
        ..spec("lab")
    };
    let p = plan::plan(
        &spec,
        "img:1",
        &Catalog::seed(),
        &ImageProfile::default(),
        &Pools::default(),
        &InUse::default(),
    )
    .unwrap();
    for labels in [&p.network_labels, &p.container_labels] {
        assert_eq!(labels["io.bottle.managed"], "true");
        assert_eq!(labels["io.bottle.slug"], "lab");
        assert_eq!(labels["io.bottle.loopback"], p.loopback.to_string());
        assert!(labels.values().all(|v| !v.contains("SECRET_TOKEN")));
    }
    assert_eq!(p.network_labels["io.bottle.role"], "network");
    assert_eq!(p.container_labels["io.bottle.role"], "bundle");
    let catalog = Catalog::from_json(&p.container_labels["io.bottle.catalog"]).unwrap();
    assert_eq!(
        catalog.daemons, p.daemons,
        "the bundle label carries its daemons"
    );
}

#[test]
fn an_image_catalog_without_a_daemon_refuses_the_bottle_that_needs_it() {
    let image_catalog = Catalog::from_toml(
        r#"
[[daemon]]
name = "egress"
port = 9099
facing = "agent"
vars = ["HTTPS_PROXY", "HTTP_PROXY"]
"#,
    )
    .unwrap();
    let needs_git = BottleSpec {
        git_upstreams: vec!["https://git.example.test/r.git".into()],
        ..spec("g")
    };
    let err =
        plan::select_daemons(&needs_git, &image_catalog, "bottle-sidecars:latest").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("bottle-sidecars:latest") && msg.contains("git-gate"),
        "{msg}"
    );
    let plain = plan::select_daemons(&spec("p"), &image_catalog, "img").unwrap();
    assert_eq!(plain.len(), 1);
    assert_eq!(plain[0].name, "egress");
}

#[test]
fn a_thousand_slugs_get_a_thousand_distinct_subnets_and_loopbacks() {
    let pools = Pools {
        subnet_pool: "10.64.0.0/12".parse().unwrap(),
        ..Pools::default()
    };
    let mut in_use = InUse::default();
    let mut firsts = BTreeSet::new();
    let mut first_collisions = 0;
    for i in 0..1000 {
        let slug = format!("agent-{i}");
        if !firsts.insert(plan::first_choice_subnet(&slug, &pools.subnet_pool)) {
            first_collisions += 1;
        }
        let p = plan::plan(
            &spec(&slug),
            "img",
            &Catalog::seed(),
            &ImageProfile::default(),
            &pools,
            &in_use,
        )
        .unwrap();
        assert!(
            !in_use.subnets.contains(&p.subnet),
            "{slug} got a taken subnet"
        );
        assert!(
            in_use.loopbacks.insert(p.loopback),
            "{slug} got a taken loopback"
        );
        in_use.subnets.push(p.subnet);
    }
    let distinct: BTreeSet<_> = in_use.subnets.iter().collect();
    assert_eq!(distinct.len(), 1000);
    assert_eq!(in_use.loopbacks.len(), 1000);
    // The hash alone is not enough: its first choices collide (birthday problem), which is
    // exactly what the original system's subnet-per-hash scheme ran into.
    assert!(
        first_collisions > 0,
        "first choices collided {first_collisions} times"
    );
}

#[test]
fn the_default_pool_holds_its_256_bottles_then_says_it_is_full() {
    let pools = Pools::default();
    let mut in_use = InUse::default();
    for i in 0..256 {
        let p = plan::plan(
            &spec(&format!("b{i}")),
            "img",
            &Catalog::seed(),
            &ImageProfile::default(),
            &pools,
            &in_use,
        )
        .unwrap();
        in_use.subnets.push(p.subnet);
        in_use.loopbacks.insert(p.loopback);
    }
    let err = plan::plan(
        &spec("one-too-many"),
        "img",
        &Catalog::seed(),
        &ImageProfile::default(),
        &pools,
        &in_use,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("no free subnet left in pool 10.213.0.0/16"),
        "{err}"
    );
}

#[test]
fn loopback_addresses_avoid_network_broadcast_and_localhost() {
    let taken = BTreeSet::new();
    for i in 0..2000 {
        let a = plan::allocate_loopback(
            &format!("s{i}"),
            &LoopbackChoice::Pool("127.0.0.0/16".parse().unwrap()),
            &taken,
        )
        .unwrap();
        let last = a.octets()[3];
        assert!(last != 0 && last != 255 && a != Ipv4Addr::LOCALHOST, "{a}");
    }
}

#[test]
fn catalogs_load_from_toml_and_refuse_bad_ones() {
    let ok = Catalog::from_toml(
        r#"
[[daemon]]
name = "egress"
port = 9099
facing = "agent"
vars = ["HTTPS_PROXY"]
[[daemon]]
name = "audit"
port = 9200
when = "requested"
"#,
    )
    .unwrap();
    assert_eq!(ok.daemons.len(), 2);
    assert_eq!(Catalog::from_json(&ok.to_json()).unwrap(), ok);
    for (toml, part) in [
        (
            "[[daemon]]\nname = \"a\"\nport = 1\n[[daemon]]\nname = \"b\"\nport = 1\n",
            "port 1",
        ),
        (
            "[[daemon]]\nname = \"a\"\nport = 1\n[[daemon]]\nname = \"a\"\nport = 2\n",
            "twice",
        ),
        ("[[daemon]]\nname = \"A\"\nport = 1\n", "daemon name"),
        (
            "[[daemon]]\nname = \"a\"\nport = 1\ncolour = \"red\"\n",
            "unknown field",
        ),
        (
            "[[daemon]]\nname = \"a\"\nport = 1\nvars = [\"X\"]\n",
            "internal",
        ),
        ("daemon = []\n", "at least one"),
    ] {
        let err = Catalog::from_toml(toml).unwrap_err().to_string();
        assert!(err.contains(part), "{toml:?}: {err}");
        assert!(err.starts_with("catalog:"), "{err}");
    }
}

/// Services become one agent-facing daemon each, served by the image's services template: the
/// init starts the template once, the bundle learns the services (secrets by key only), and
/// each service's secret is a bare key of the bundle and one of its secret keys.
#[test]
fn services_are_daemons_of_their_own() {
    use bottle_core::service::{Inject, ServiceSpec};
    use bottle_core::{DaemonDef, Facing, When};
    let mut catalog = Catalog::seed();
    let service = ServiceSpec {
        name: "anthropic".into(),
        upstream: "https://api.anthropic.test/v1".into(),
        agent_env: "ANTHROPIC_BASE_URL".into(),
        inject: vec![Inject {
            header: "x-api-key".into(),
            secret: "ANTHROPIC_API_KEY".into(),
            format: None,
        }],
        paths: vec![],
        ca_file: Some("/srv/ca.pem".into()),
        insecure_http: false,
    };
    let spec = BottleSpec {
        services: vec![service],
        ..spec("svc")
    };
    let planned = |catalog: &Catalog| {
        plan::plan(
            &spec,
            "img:1",
            catalog,
            &ImageProfile::default(),
            &Pools::default(),
            &InUse::default(),
        )
    };
    let lacking = planned(&catalog).unwrap_err().to_string();
    assert!(lacking.contains("services"), "{lacking}");

    catalog.daemons.push(DaemonDef {
        name: "services".into(),
        port: 9300,
        facing: Facing::Agent,
        scheme: "http".into(),
        path: String::new(),
        vars: vec![],
        when: When::Services,
    });
    let p = planned(&catalog).unwrap();
    let got = render(&p);
    let expect = "daemons pipelock,egress,svc-anthropic";
    assert!(got.contains(expect), "{got}");
    assert!(got.contains(":9300"), "published: {got}");
    assert!(
        got.contains("BOTTLE_DAEMONS=pipelock,egress,services "),
        "{got}"
    );
    assert!(got.contains("ANTHROPIC_API_KEY (inherited)"), "{got}");
    assert!(
        got.contains("BOTTLE_SECRET_KEYS=ANTHROPIC_API_KEY"),
        "{got}"
    );
    assert!(
        got.contains(r#"BOTTLE_SERVICES=[{"name":"anthropic","port":9300,"upstream":"https://api.anthropic.test/v1","inject":[{"header":"x-api-key","secret":"ANTHROPIC_API_KEY"}],"paths":[],"ca_file":"/etc/bottle/services/anthropic.pem","insecure_http":false}]"#),
        "{got}"
    );
    assert_eq!(p.mounts.len(), 1);
    assert!(p.mounts[0].read_only);
    let svc = p
        .daemons
        .iter()
        .find(|d| d.name == "svc-anthropic")
        .unwrap();
    assert_eq!(svc.vars, ["ANTHROPIC_BASE_URL"]);
}

#[test]
fn git_upstreams_reach_the_gate_as_json_and_their_tokens_as_secret_keys() {
    use bottle_core::git::{GitUpstreamSpec, PlannedGitUpstream, GIT_UPSTREAMS_ENV};
    let spec = BottleSpec {
        git_upstreams: vec![
            GitUpstreamSpec::parse_arg("https://git.example.test/org/lib.git"),
            GitUpstreamSpec {
                name: Some("app".into()),
                url: "https://git.example.test/org/app.git/".into(),
                token: Some("APP_GIT_TOKEN".into()),
                push: Some(vec!["refs/heads/agent/*".into()]),
                ca_file: Some("/srv/ca.pem".into()),
                insecure_http: false,
            },
        ],
        env: vec![EnvEntry::parse("OTHER").unwrap()],
        ..spec("git")
    };
    let p = plan::plan(
        &spec,
        "img:1",
        &Catalog::seed(),
        &ImageProfile::default(),
        &Pools::default(),
        &InUse::default(),
    )
    .unwrap();
    let value = |k: &str| {
        p.env.iter().find_map(|e| match e {
            PlannedEnv::Value { key, value } if key == k => Some(value.clone()),
            _ => None,
        })
    };
    let planned = PlannedGitUpstream::list_from_json(&value(GIT_UPSTREAMS_ENV).unwrap()).unwrap();
    assert_eq!(
        planned,
        vec![
            PlannedGitUpstream {
                name: "lib".into(),
                url: "https://git.example.test/org/lib.git".into(),
                token_key: None,
                push: None,
                ca_file: None,
                insecure_http: false,
            },
            PlannedGitUpstream {
                name: "app".into(),
                url: "https://git.example.test/org/app.git".into(),
                token_key: Some("APP_GIT_TOKEN".into()),
                push: Some(vec!["refs/heads/agent/*".into()]),
                ca_file: Some("/etc/bottle/git/app.pem".into()),
                insecure_http: false,
            },
        ]
    );
    // The token is a bare key of the bundle and one of its secrets; its value is in no plan.
    assert!(p
        .env
        .iter()
        .any(|e| matches!(e, PlannedEnv::Inherit { key } if key == "APP_GIT_TOKEN")));
    assert_eq!(
        value("BOTTLE_SECRET_KEYS").as_deref(),
        Some("OTHER,APP_GIT_TOKEN")
    );
    let ca = p
        .mounts
        .iter()
        .find(|m| m.container_path.to_str() == Some("/etc/bottle/git/app.pem"))
        .expect("the CA file is mounted");
    assert!(ca.read_only);
    assert_eq!(ca.host_path.to_str(), Some("/srv/ca.pem"));
    assert!(p.daemons.iter().any(|d| d.name == "git-gate"));
}
