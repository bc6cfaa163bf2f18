//! Security properties of bottles on the real Docker and Podman engines, each checked on the
//! engine (through its own client's `inspect`, the kernel's `/proc`, and real connections),
//! never on our own reports alone. docs/SECURITY.md lists what each check proves.
//!
//! Two bottles, A and B, each with both reference daemons (egress and supervise):
//!
//! - every published port is bound only on its bottle's loopback address, and nothing answers
//!   on `127.0.0.1`, `::1`, the other bottle's loopback address or any other address of this
//!   machine;
//! - A's agent allowlist (`<loopback A>/32`) holds no port of B;
//! - a canary secret planted as a bare env key of A is in A's environment and nowhere else:
//!   not in labels, command lines, `inspect` (but `Config.Env`), the engine's log, nor any
//!   output of `bottle up -vv`, `ps`, `env`, `logs`, `plan` or `down -vv`;
//! - the bundle runs as a non-root user with no-new-privileges, no capabilities and a read-only
//!   root filesystem, in `inspect` and in the kernel's view of its processes;
//! - the original's escape attacks, played from the host as A's agent through A's published
//!   egress port, are each denied, and the upstreams they aim at see nothing.
//!
//! The upstreams are TCP listeners of this test process on host addresses the bundle can reach
//! and nothing else can: the gateways of the bottles' own bridge networks. Each counts every
//! connection it accepts. The allowed one (`U`, on B's gateway) is in A's allowlist as an IP
//! and port, so a request that gets through is seen; the target (`T`, on A's gateway) is never
//! in A's allowlist in any form, and a third bottle that does allow it shows at the end that it
//! was reachable all along. Denied names are under `.test` and are refused before any lookup, so
//! no packet leaves this machine.
//!
//! Pools: /24s 1-3 of the subnet pools and the loopback pools of its rows `cli-security` of the shared harness's pool table
//! (`bottle_core::conformance::harness::POOLS`).

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bottle_core::conformance::harness::pools;
use common::{assert_nothing_left, env_map, inspect, Engine};
use serde_json::Value;

const DOCKER: Engine = Engine::of(pools("cli-security", "docker"));

const PODMAN: Engine = Engine::of(pools("cli-security", "podman"));

const CANARY_KEY: &str = "BOTTLE_SECURITY_CANARY";

/// Every upstream of this test binary: the Docker and Podman tests run at once, and each other's
/// listeners are on addresses of this machine too.
static LISTENERS: Mutex<Vec<SocketAddr>> = Mutex::new(Vec::new());

/// A TCP server of this test that counts the connections it accepts and answers HTTP with 200.
struct Upstream {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    fn start(ip: Ipv4Addr) -> Upstream {
        let listener = TcpListener::bind((ip, 0))
            .unwrap_or_else(|e| panic!("listen on {ip} (a gateway of a bottle network): {e}"));
        let addr = listener.local_addr().expect("address");
        LISTENERS.lock().expect("listeners").push(addr);
        let hits = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (h, r) = (hits.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                h.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                std::thread::spawn(move || {
                    let head = read_head(&mut stream);
                    r.lock()
                        .expect("requests")
                        .push(head.lines().next().unwrap_or("").to_string());
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\nupstream-ok",
                    );
                });
            }
        });
        Upstream {
            addr,
            hits,
            requests,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Reads a message head (up to the blank line), or what arrives before EOF or a pause.
fn read_head(stream: &mut TcpStream) -> String {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Sends `request` to the proxy and returns the response head.
fn ask(proxy: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect_timeout(&proxy, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to the egress proxy at {proxy}: {e}"));
    stream.write_all(request.as_bytes()).expect("send");
    read_head(&mut stream)
}

fn status(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"))
}

/// Every IPv4 address of this machine outside 127/8 (the kernel's local routes), and ::1.
fn host_addresses() -> Vec<IpAddr> {
    let trie = std::fs::read_to_string("/proc/net/fib_trie").expect("read /proc/net/fib_trie");
    let lines: Vec<&str> = trie.lines().collect();
    let mut found = BTreeSet::new();
    for pair in lines.windows(2) {
        if pair[1].trim() == "/32 host LOCAL" {
            if let Some(ip) = pair[0]
                .trim()
                .trim_start_matches("|--")
                .trim()
                .parse::<Ipv4Addr>()
                .ok()
                .filter(|ip| !ip.is_loopback())
            {
                found.insert(IpAddr::V4(ip));
            }
        }
    }
    assert!(
        !found.is_empty(),
        "this machine has addresses besides loopback"
    );
    found.insert(IpAddr::V6(Ipv6Addr::LOCALHOST));
    found.into_iter().collect()
}

/// Nothing accepts a connection at `addr`.
#[track_caller]
fn refused(addr: SocketAddr, what: &str) {
    if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
        let mut buf = [0u8; 1];
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        panic!(
            "{what}: {addr} accepted a connection (read: {:?})",
            s.read(&mut buf)
        );
    }
}

/// The published ports of a container as `inspect` reports them: (container port, host IP,
/// host port), from `NetworkSettings.Ports` (what is bound) and `HostConfig.PortBindings` (what
/// was asked for; its host port is empty when the engine was to choose one).
fn bindings(c: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (map, bound) in [
        (&c["NetworkSettings"]["Ports"], true),
        (&c["HostConfig"]["PortBindings"], false),
    ] {
        for (port, binds) in map.as_object().into_iter().flatten() {
            for b in binds.as_array().into_iter().flatten() {
                let host_port = b["HostPort"].as_str().unwrap_or("").to_string();
                assert!(
                    !bound || !host_port.is_empty(),
                    "{port} is bound to a host port: {b}"
                );
                out.push((
                    port.clone(),
                    b["HostIp"].as_str().unwrap_or("").to_string(),
                    host_port,
                ));
            }
        }
    }
    out
}

/// `/proc/<pid>/status` as key -> value.
fn proc_status(pid: i64) -> std::collections::BTreeMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"))
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// The bundle's processes on the host: its init and the init's children.
fn bundle_pids(init: i64) -> Vec<i64> {
    std::iter::once(init)
        .chain(common::children(init).into_iter().map(|(pid, _)| pid))
        .collect()
}

/// One bottle as `bottle up --output json` reported it.
struct Bottle {
    report: Value,
    loopback: Ipv4Addr,
    gateway: Ipv4Addr,
    container: String,
    network: String,
}

impl Bottle {
    fn up(
        engine: Engine,
        prefix: &str,
        slug: &str,
        subnet: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> (Bottle, common::Run) {
        let mut args = vec![
            "-vv",
            "up",
            slug,
            "--supervise",
            "--output",
            "json",
            "--subnet-pool",
            subnet,
            "--loopback-pool",
            engine.loopback_pool,
        ];
        args.extend_from_slice(extra);
        let run = engine.run_env(prefix, &args, env).ok();
        let report = run.json();
        let net: ipnet::Ipv4Net = report["subnet"].as_str().expect("subnet").parse().unwrap();
        let bottle = Bottle {
            loopback: report["loopback"]
                .as_str()
                .expect("loopback")
                .parse()
                .unwrap(),
            gateway: Ipv4Addr::from(u32::from(net.network()) + 1),
            container: report["container"].as_str().expect("container").into(),
            network: report["network"].as_str().expect("network").into(),
            report,
        };
        (bottle, run)
    }

    fn ports(&self) -> Vec<u16> {
        self.report["daemons"]
            .as_array()
            .expect("daemons")
            .iter()
            .map(|d| d["host_port"].as_u64().expect("host_port") as u16)
            .collect()
    }

    fn proxy(&self) -> SocketAddr {
        let url = env_map(&self.report)["HTTP_PROXY"].clone();
        url.trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|e| panic!("HTTP_PROXY {url}: {e}"))
    }
}

fn security(engine: Engine) {
    if !engine.ready() {
        return;
    }
    let prefix = format!("bt-sec-{}", engine.name);
    let prefix = prefix.as_str();
    let _cleanup = engine.clean_slate(prefix);
    // One /24 each, so their gateways are known before they exist.
    let second = if engine.name == "docker" { 246 } else { 247 };
    let (subnet_a, subnet_b) = (format!("10.{second}.1.0/24"), format!("10.{second}.2.0/24"));
    let canary = format!("canary-{}-{}-7f3a", engine.name, std::process::id());
    let canary_env = [(CANARY_KEY, canary.as_str())];

    let (b, up_b) = Bottle::up(engine, prefix, "sec-b", &subnet_b, &[], &[]);
    let allowed = Upstream::start(b.gateway);
    let allow_u = allowed.addr.to_string();
    let (a, up_a) = Bottle::up(
        engine,
        prefix,
        "sec-a",
        &subnet_a,
        &[
            "-e",
            CANARY_KEY,
            "--allow",
            &allow_u,
            "--allow",
            "allowed.test",
            "--allow",
            "*.wild.test",
        ],
        &canary_env,
    );
    let target = Upstream::start(a.gateway);
    eprintln!(
        "{}: A on {} (gateway {}), B on {} (gateway {}); upstream U {} (allowed), T {} (never allowed)",
        engine.name, a.loopback, a.gateway, b.loopback, b.gateway, allowed.addr, target.addr
    );

    // 1. Every published port is bound only on its bottle's loopback address. (The upstreams
    // listen on some of this machine's addresses; a port number they happen to share is theirs.)
    let others = host_addresses();
    for (me, other) in [(&a, &b), (&b, &a)] {
        let c = inspect(engine.name, "container", &me.container);
        let binds = bindings(&c);
        assert!(
            !binds.is_empty(),
            "{}: no bindings in inspect",
            me.container
        );
        let mut container_ports = BTreeSet::new();
        for (port, ip, _) in &binds {
            assert_eq!(
                ip,
                &me.loopback.to_string(),
                "{}: {port} is published on {ip:?}, not only on its loopback address",
                me.container
            );
            container_ports.insert(port.clone());
        }
        assert_eq!(
            container_ports,
            BTreeSet::from(["9099/tcp".to_string(), "9100/tcp".to_string()]),
            "exactly the agent-facing ports are published"
        );
        for port in me.ports() {
            let own = SocketAddr::new(IpAddr::V4(me.loopback), port);
            TcpStream::connect_timeout(&own, Duration::from_secs(2))
                .unwrap_or_else(|e| panic!("{own} answers: {e}"));
            let elsewhere = [
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            ];
            for ip in elsewhere.into_iter().chain(others.iter().copied()) {
                let addr = SocketAddr::new(ip, port);
                if !LISTENERS.lock().expect("listeners").contains(&addr) {
                    refused(addr, &format!("{}'s port {port} elsewhere", me.container));
                }
            }
            // The other bottle's address answers only on the other bottle's own ports (an
            // engine may hand two addresses the same port number).
            if !other.ports().contains(&port) {
                refused(
                    SocketAddr::new(IpAddr::V4(other.loopback), port),
                    &format!(
                        "{}'s port {port} on the other bottle's address",
                        me.container
                    ),
                );
            }
        }
    }

    // 2. A's allowlist is its loopback address alone, and holds no port of B.
    assert_eq!(
        a.report["allow_cidrs"],
        serde_json::json!([format!("{}/32", a.loopback)])
    );
    let a_net: ipnet::Ipv4Net = format!("{}/32", a.loopback).parse().unwrap();
    assert_ne!(a.loopback, b.loopback);
    for d in b.report["daemons"].as_array().expect("daemons") {
        let url = d["url"].as_str().expect("url");
        let host: Ipv4Addr = url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split(':').next())
            .and_then(|h| h.parse().ok())
            .unwrap_or_else(|| panic!("B's URL {url} names an address"));
        assert!(!a_net.contains(&host), "A's allowlist {a_net} holds {url}");
    }
    for (port, ip, _) in bindings(&inspect(engine.name, "container", &b.container)) {
        let ip: Ipv4Addr = ip.parse().expect("B's binding is an IPv4 address");
        assert!(
            !a_net.contains(&ip),
            "A's allowlist {a_net} holds B's {port} on {ip}"
        );
    }

    // 3. The canary is in A's environment and nowhere else.
    check_canary(engine, prefix, &a, &canary, &[&up_a, &up_b]);

    // 4. Hardening, as inspect and the kernel report it.
    for bottle in [&a, &b] {
        check_hardening(engine, bottle);
    }

    // 5. The escape attacks.
    escapes(engine, prefix, &a, &allowed, &target);

    // The target was reachable all along: a third bottle that allowlists it gets through, so
    // "the target saw nothing" above was A's proxy refusing, not an unreachable address.
    let t = target.addr.to_string();
    let subnet_c = format!("10.{second}.3.0/24");
    let (c, _) = Bottle::up(engine, prefix, "sec-c", &subnet_c, &["--allow", &t], &[]);
    let head = ask(
        c.proxy(),
        &format!("GET http://{t}/ HTTP/1.1\r\nHost: {t}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(
        status(&head),
        200,
        "a bottle that allows the target reaches it: {head}"
    );
    assert_eq!(target.hits(), 1, "the target saw exactly that request");

    // Down (with -vv: its log must not carry the canary either) leaves nothing.
    let down = engine.run(prefix, &["-vv", "down", "--all"]).ok();
    assert!(
        !down.stdout.contains(&canary) && !down.stderr.contains(&canary),
        "down -vv printed the canary"
    );
    assert_nothing_left(engine.name, prefix, "down --all");
}

fn check_canary(engine: Engine, prefix: &str, a: &Bottle, canary: &str, runs: &[&common::Run]) {
    let entry = format!("{CANARY_KEY}={canary}");
    let c = inspect(engine.name, "container", &a.container);
    let env: Vec<&str> = c["Config"]["Env"]
        .as_array()
        .expect("Config.Env")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        env.iter().filter(|e| **e == entry).count(),
        1,
        "the bundle's environment holds the secret once (so the checks below can fail)"
    );
    let mut without_env = c.clone();
    without_env["Config"]["Env"] = Value::Null;
    let text = without_env.to_string();
    assert!(
        !text.contains(canary),
        "{} inspect shows the secret outside Config.Env",
        engine.name
    );
    for field in ["Labels", "Cmd", "Entrypoint"] {
        assert!(!c["Config"][field].to_string().contains(canary), "{field}");
    }
    for field in ["Path", "Args"] {
        assert!(!c[field].to_string().contains(canary), "{field}");
    }
    let net = inspect(engine.name, "network", &a.network);
    assert!(!net.to_string().contains(canary), "network inspect");

    // The processes: in the environment of the init (so the daemons get it), in no command line.
    let init = c["State"]["Pid"].as_i64().expect("State.Pid");
    let environ = std::fs::read(format!("/proc/{init}/environ")).expect("environ of the init");
    assert!(
        String::from_utf8_lossy(&environ).contains(&entry),
        "the init has the secret"
    );
    for pid in bundle_pids(init) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(canary),
            "command line of bundle process {pid}"
        );
    }
    let engine_log = std::process::Command::new(engine.name)
        .args(["logs", &a.container])
        .output()
        .expect("engine logs");
    assert!(
        !String::from_utf8_lossy(&engine_log.stdout).contains(canary)
            && !String::from_utf8_lossy(&engine_log.stderr).contains(canary),
        "{} logs",
        engine.name
    );

    // Every output of ours.
    let env = [(CANARY_KEY, canary)];
    let slug = "sec-a";
    let mut outputs: Vec<common::Run> = vec![
        engine.run(prefix, &["ps"]).ok(),
        engine.run(prefix, &["ps", "-o", "json"]).ok(),
        engine.run(prefix, &["-vv", "env", slug]).ok(),
        engine.run(prefix, &["env", slug, "-o", "json"]).ok(),
        engine.run(prefix, &["env", slug, "-o", "env"]).ok(),
        engine.run(prefix, &["logs", slug]).ok(),
        engine.run(prefix, &["logs", slug, "-o", "json"]).ok(),
        engine.run(prefix, &["gc", "--dry-run"]).ok(),
    ];
    let mut plan = vec!["-vv", "plan", "sec-plan", "-e", CANARY_KEY, "--supervise"];
    plan.extend(engine.pools());
    outputs.push(engine.run_env(prefix, &plan, &env).ok());
    plan.extend(["-o", "json"]);
    let plan_json = engine.run_env(prefix, &plan, &env).ok();
    assert!(
        plan_json.stdout.contains(CANARY_KEY),
        "the plan names the key"
    );
    outputs.push(plan_json);
    // A second up of A fails: its error must not carry the value either.
    let mut again = vec!["-vv", "up", slug, "-e", CANARY_KEY];
    again.extend(engine.pools());
    let again = engine.run_env(prefix, &again, &env);
    assert_ne!(again.code, 0);
    outputs.push(again);
    for run in runs.iter().copied().chain(outputs.iter()) {
        assert!(
            !run.stdout.contains(canary) && !run.stderr.contains(canary),
            "bottle {:?} printed the secret",
            run.args
        );
    }
}

fn check_hardening(engine: Engine, bottle: &Bottle) {
    let c = inspect(engine.name, "container", &bottle.container);
    let name = &bottle.container;
    let user = c["Config"]["User"].as_str().unwrap_or("");
    let uid = user.split(':').next().unwrap_or("");
    assert!(
        !matches!(uid, "" | "0" | "root"),
        "{name} runs as a non-root user, not {user:?}"
    );
    let hc = &c["HostConfig"];
    let opts: Vec<&str> = hc["SecurityOpt"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        opts.iter()
            .any(|o| *o == "no-new-privileges" || *o == "no-new-privileges:true"),
        "{name}: no-new-privileges in SecurityOpt {opts:?}"
    );
    assert_eq!(hc["ReadonlyRootfs"], true, "{name}: read-only root");
    assert_ne!(hc["Privileged"], true, "{name}: not privileged");
    assert!(
        hc["CapAdd"].as_array().is_none_or(|a| a.is_empty()),
        "{name}: no capability added: {}",
        hc["CapAdd"]
    );
    match engine.name {
        "docker" => assert_eq!(hc["CapDrop"], serde_json::json!(["ALL"]), "{name}: CapDrop"),
        _ => {
            assert!(
                c["EffectiveCaps"].as_array().is_none_or(|a| a.is_empty()),
                "{name}: EffectiveCaps {}",
                c["EffectiveCaps"]
            );
            assert!(
                c["BoundingCaps"].as_array().is_none_or(|a| a.is_empty()),
                "{name}: BoundingCaps {}",
                c["BoundingCaps"]
            );
        }
    }

    // The kernel's view of every process of the bundle.
    let init = c["State"]["Pid"].as_i64().expect("State.Pid");
    let pids = bundle_pids(init);
    assert!(pids.len() >= 3, "the init and its two daemons: {pids:?}");
    for pid in pids {
        let st = proc_status(pid);
        for uid in st["Uid"].split_whitespace() {
            assert_ne!(uid, "0", "{name} process {pid}: uid {}", st["Uid"]);
        }
        assert_eq!(st["NoNewPrivs"], "1", "{name} process {pid}: NoNewPrivs");
        for caps in ["CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh"] {
            assert_eq!(st[caps], "0000000000000000", "{name} process {pid}: {caps}");
        }
    }
}

/// One attack: a raw request from the agent to its proxy, and the status that refuses it.
struct Attack {
    what: &'static str,
    request: String,
    status: u16,
}

fn escapes(engine: Engine, prefix: &str, a: &Bottle, allowed: &Upstream, target: &Upstream) {
    let proxy = a.proxy();
    let u = allowed.addr;
    let t = target.addr;
    let (tp, up) = (t.port(), u.port());
    let t_ip = match t.ip() {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(_) => unreachable!("listeners are on IPv4 gateways"),
    };
    let t_u32 = u32::from(t_ip);
    let [o1, o2, o3, o4] = t_ip.octets();

    // The positive controls: through the proxy to U, in plain HTTP and through a tunnel. They
    // show that a request that gets through is seen, so "seen nothing" below means something.
    let get_u = format!("GET http://{u}/ HTTP/1.1\r\nHost: {u}\r\nConnection: close\r\n\r\n");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let head = ask(proxy, &get_u);
        if status(&head) == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}: the allowed request to {u} never succeeded: {head}",
            engine.name
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut tunnel = TcpStream::connect(proxy).expect("connect to the proxy");
    write!(tunnel, "CONNECT {u} HTTP/1.1\r\nHost: {u}\r\n\r\n").expect("send");
    let head = read_head(&mut tunnel);
    assert_eq!(
        status(&head),
        200,
        "CONNECT to the allowed upstream: {head}"
    );
    write!(
        tunnel,
        "GET /through-the-tunnel HTTP/1.1\r\nHost: {u}\r\nConnection: close\r\n\r\n"
    )
    .expect("send through the tunnel");
    let inner = read_head(&mut tunnel);
    assert_eq!(status(&inner), 200, "through the tunnel: {inner}");
    drop(tunnel);
    let seen_before = allowed.hits();
    assert!(
        seen_before >= 2,
        "U saw the allowed requests: {seen_before}"
    );
    assert_eq!(target.hits(), 0);

    let connect =
        |target: &str, host: &str| format!("CONNECT {target} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let get = |url: &str, host: &str| {
        format!("GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    };
    let mut attacks = vec![
        // 1. Hosts that are not allowlisted.
        Attack {
            what: "CONNECT to a host not in the allowlist",
            request: connect("evil.test:443", "evil.test:443"),
            status: 403,
        },
        Attack {
            what: "GET of a host not in the allowlist",
            request: get("http://evil.test/", "evil.test"),
            status: 403,
        },
        Attack {
            what: "CONNECT to the target by its address",
            request: connect(&t.to_string(), &t.to_string()),
            status: 403,
        },
        Attack {
            what: "GET of the target by its address",
            request: get(&format!("http://{t}/"), &t.to_string()),
            status: 403,
        },
        Attack {
            what: "CONNECT to the allowed upstream on another port",
            request: connect(&format!("{}:{tp}", u.ip()), &format!("{}:{tp}", u.ip())),
            status: 403,
        },
    ];
    // 2. IP literals: other spellings of the target's address, which a resolver would accept.
    for spelled in [
        format!("{t_u32}"),
        format!("0x{t_u32:08x}"),
        format!("0x{o1:02x}.0x{o2:02x}.0x{o3:02x}.0x{o4:02x}"),
        format!("0{o1:o}.0{o2:o}.0{o3:o}.0{o4:o}"),
        format!("{o1}.{o2}.{}", u32::from(o3) * 256 + u32::from(o4)),
        format!("{t_ip}."),
        format!("[::ffff:{t_ip}]"),
    ] {
        attacks.push(Attack {
            what: "CONNECT to an IP literal spelling of the target",
            request: connect(&format!("{spelled}:{tp}"), &format!("{spelled}:{tp}")),
            status: 403,
        });
        attacks.push(Attack {
            what: "GET of an IP literal spelling of the target",
            request: get(
                &format!("http://{spelled}:{tp}/"),
                &format!("{spelled}:{tp}"),
            ),
            status: 403,
        });
    }
    // (Another spelling of the allowed upstream's address is that address, and reaches it:
    // checked after the attacks, since U counts what it sees.)
    let u_ip = match u.ip() {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(_) => unreachable!(),
    };
    // 3. A Host header that differs from the CONNECT target or the absolute URL.
    attacks.extend([
        Attack {
            what: "CONNECT to the allowed upstream, Host naming another host",
            request: connect(&u.to_string(), "evil.test"),
            status: 403,
        },
        Attack {
            what: "CONNECT to the allowed upstream, Host naming the target",
            request: connect(&u.to_string(), &t.to_string()),
            status: 403,
        },
        Attack {
            what: "CONNECT to the target, Host naming the allowed upstream",
            request: connect(&t.to_string(), &u.to_string()),
            status: 403,
        },
        Attack {
            what: "GET of the allowed upstream, Host naming another host",
            request: get(&format!("http://{u}/"), "evil.test"),
            status: 403,
        },
        Attack {
            what: "GET of the allowed upstream, Host on another port",
            request: get(&format!("http://{u}/"), &format!("{}:{tp}", u.ip())),
            status: 403,
        },
        Attack {
            what: "GET of the target, Host naming the allowed upstream",
            request: get(&format!("http://{t}/"), &u.to_string()),
            status: 403,
        },
        Attack {
            what: "GET of the allowed upstream with a second Host header",
            request: format!(
                "GET http://{u}/ HTTP/1.1\r\nHost: {u}\r\nHost: {t}\r\nConnection: close\r\n\r\n"
            ),
            status: 400,
        },
        Attack {
            what: "origin-form GET relying on Host alone",
            request: get("/", &u.to_string()),
            status: 400,
        },
        Attack {
            what: "GET with userinfo naming the allowed upstream",
            request: get(&format!("http://{u}@{t}/"), &t.to_string()),
            status: 400,
        },
        Attack {
            what: "HTTP/1.1 GET of the allowed upstream without Host",
            request: format!("GET http://{u}/ HTTP/1.1\r\nConnection: close\r\n\r\n"),
            status: 400,
        },
    ]);
    // 4. Subdomain tricks against `allowed.test` and `*.wild.test`.
    for name in [
        "allowed.test.evil.test",
        "evilallowed.test",
        "xallowed.test",
        "allowed.testevil.test",
        "ALLOWED.TEST.evil.test",
        "allowed.test-evil.test",
        "wild.test",
        "wild.test.evil.test",
        "evilwild.test",
        "a.wild.test.evil.test",
        "a.wild.testx",
    ] {
        attacks.push(Attack {
            what: "CONNECT to a look-alike of an allowed name",
            request: connect(&format!("{name}:{up}"), &format!("{name}:{up}")),
            status: 403,
        });
        attacks.push(Attack {
            what: "GET of a look-alike of an allowed name",
            request: get(&format!("http://{name}:{up}/"), &format!("{name}:{up}")),
            status: 403,
        });
    }
    attacks.push(Attack {
        what: "CONNECT to a look-alike, Host naming the allowed name",
        request: connect("allowed.test.evil.test:443", "allowed.test:443"),
        status: 403,
    });

    for attack in &attacks {
        let head = ask(proxy, &attack.request);
        let line = attack.request.lines().next().unwrap_or("");
        assert_eq!(
            status(&head),
            attack.status,
            "{}: {} ({line}) is refused: {head}",
            engine.name,
            attack.what
        );
    }
    // The upstreams saw nothing of it.
    assert_eq!(
        target.hits(),
        0,
        "{}: the target saw {:?}",
        engine.name,
        target.requests.lock().unwrap()
    );
    assert_eq!(
        allowed.hits(),
        seen_before,
        "{}: the allowed upstream saw more than the allowed requests: {:?}",
        engine.name,
        allowed.requests.lock().unwrap()
    );

    // The proxy decided each one before dialling or resolving anything: its log has a denial
    // per attack and no failed connection (a lookup or dial would have logged one).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let logs = engine.run(prefix, &["logs", "sec-a"]).ok().stdout;
        let denied = logs.matches("\"decision\":\"denied\"").count();
        if denied >= attacks.len() {
            assert!(
                !logs.contains("cannot connect") && !logs.contains("no connection within"),
                "the proxy dialled for a denied request:\n{logs}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} denials logged for {} attacks:\n{logs}",
            denied,
            attacks.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "{}: {} escape attempts refused; the target saw 0 connections, the allowed upstream only the {} allowed ones",
        engine.name,
        attacks.len(),
        seen_before
    );

    // Numeric spellings are read as the address they spell (as the C resolver would): another
    // spelling of the allowed address goes exactly where the dotted form goes, and nowhere else.
    for spelled in [format!("{}", u32::from(u_ip)), format!("[::ffff:{u_ip}]")] {
        let head = ask(
            proxy,
            &connect(&format!("{spelled}:{up}"), &format!("{spelled}:{up}")),
        );
        assert_eq!(
            status(&head),
            200,
            "{}: CONNECT {spelled}:{up}: {head}",
            engine.name
        );
    }
    assert_eq!(
        target.hits(),
        0,
        "{}: a spelling of U reached T",
        engine.name
    );
}

#[test]
fn docker_security_properties() {
    security(DOCKER);
}

#[test]
fn podman_security_properties() {
    security(PODMAN);
}
