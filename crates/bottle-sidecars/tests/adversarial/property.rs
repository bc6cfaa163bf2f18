//! The property: whatever request target an attacker writes (any method, scheme, userinfo,
//! host spelling, port, path, `Host` header, and for `CONNECT` any ClientHello), the proxy of
//! the `main` group logs a decision line for it, connects only to a destination its allowlist
//! allows and only after an allowed decision line naming that destination, never looks a name
//! up through the search list, and keeps running. Targets are drawn by proptest from the same
//! hosts as the table (rebinding names, numeric spellings, literals of every class) mangled at
//! random, plus random strings of URL characters; a failure is shrunk to a minimal request.
//! `rebind-own-lo.test` is left out of the pool: the table asserts it on its own.
//!
//! A second property, on the same proxy: an IPv4 address in any spelling the C resolver reads
//! reaches that address (status 200, one connection to it) when a rule allows it, and reaches
//! nothing otherwise.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::cases::{hello, zone, GROUPS};
use super::harness::{exchange, is_client, show_req, since, start, Env, Req};

const HOSTS: &[&str] = &[
    "allowed.test",
    "www.wild.test",
    "wild.test",
    "evil.test",
    "evilallowed.test",
    "port.test",
    "any.test",
    "v6.test",
    "mixed.test",
    "mixed6.test",
    "leak.test",
    "intranet",
    "localhost",
    "nx.test",
    "rebind-loop.test",
    "rebind-priv.test",
    "rebind-ll.test",
    "rebind-shared.test",
    "rebind-ula.test",
    "rebind-mapped.test",
    "rebind-compat.test",
    "rebind-bundle.test",
    "rebind-own.test",
    "rebind.wild.test",
    "198.51.100.20",
    "3325256724",
    "0xc6336414",
    "198.51.100.21",
    "203.0.113.9",
    "127.0.0.1",
    "0x7f000001",
    "0177.0.0.1",
    "2130706433",
    "127.1",
    "0",
    "10.0.0.7",
    "169.254.169.254",
    "100.64.0.1",
    "192.0.2.1",
    "192.0.2.2",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:a00:7]",
    "[fd00::7]",
    "[fe80::1%25bt0]",
    "[2001:db8:ffff::10]",
    "[2001:db8:ffff:1::10]",
    "1.2.3.4.5",
];

/// The destinations the `main` allowlist allows (what its names resolve to, on their ports).
fn allowed(a: SocketAddr) -> bool {
    let web = matches!(a.port(), 80 | 443);
    match a.ip().to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            let pub_ = |last: u8| v4 == Ipv4Addr::new(198, 51, 100, last);
            ((pub_(10) || pub_(11) || pub_(20)) && web)
                || (pub_(14) && a.port() == 8080)
                || pub_(15)
                || (o[..3] == [203, 0, 113] && web)
        }
        IpAddr::V6(v6) => v6.segments()[..4] == [0x2001, 0xdb8, 0xffff, 0] && web,
    }
}

/// Addresses to spell: allowed by an IP or CIDR rule of `main`, or refused (not named, or of
/// a refused class).
const SPELLED: &[[u8; 4]] = &[
    [198, 51, 100, 20],
    [203, 0, 113, 9],
    [198, 51, 100, 21],
    [127, 0, 0, 1],
    [10, 0, 0, 7],
    [169, 254, 169, 254],
    [192, 0, 2, 2],
    [0, 0, 0, 0],
];

/// An IPv4 address and one of the spellings the C resolver reads as it: dotted with each
/// label in decimal, hex or octal; one 32-bit number; `a.b.c` and `a.b` with a wide last part;
/// IPv4-mapped IPv6, dotted or in hex.
fn spelling() -> impl Strategy<Value = (Ipv4Addr, String)> {
    (
        select(SPELLED),
        0u8..6,
        proptest::collection::vec(0u8..3, 4),
    )
        .prop_map(|(o, form, bases)| {
            let ip = Ipv4Addr::from(o);
            let n = u32::from(ip);
            let num = |v: u32, base: u8| match base {
                0 => v.to_string(),
                1 => format!("0x{v:x}"),
                _ => format!("0{v:o}"),
            };
            let host = match form {
                0 => (0..4)
                    .map(|i| num(o[i].into(), bases[i]))
                    .collect::<Vec<_>>()
                    .join("."),
                1 => num(n, bases[0]),
                2 => format!(
                    "{}.{}.{}",
                    num(o[0].into(), bases[0]),
                    num(o[1].into(), bases[1]),
                    num(n & 0xffff, bases[2])
                ),
                3 => format!(
                    "{}.{}",
                    num(o[0].into(), bases[0]),
                    num(n & 0xff_ffff, bases[1])
                ),
                4 => format!("[::ffff:{ip}]"),
                _ => format!("[::ffff:{:x}:{:x}]", n >> 16, n & 0xffff),
            };
            (ip, host)
        })
}

/// One way of spoiling a host name.
fn mangle(host: &str, how: u8) -> String {
    match how {
        0 => host.to_ascii_uppercase(),
        1 => format!("{host}."),
        2 => host.replacen('.', "%2e", 1),
        3 => format!("{host}.evil.test"),
        4 => format!("evil.{host}"),
        5 => format!("{host}%00"),
        6 => host.replace('.', ".."),
        _ => format!("{host}\\@evil.test"),
    }
}

/// Hosts the `main` allowlist allows, drawn often so that many attempts get through and the
/// rest of each attempt (port, userinfo, `Host`, SNI) is what decides.
const ALLOWED_HOSTS: &[&str] = &[
    "allowed.test",
    "www.wild.test",
    "any.test",
    "port.test",
    "v6.test",
    "198.51.100.20",
    "203.0.113.9",
    "[2001:db8:ffff::10]",
];

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(ALLOWED_HOSTS).prop_map(String::from),
        4 => select(HOSTS).prop_map(String::from),
        2 => (select(HOSTS), 0u8..8).prop_map(|(h, m)| mangle(h, m)),
        1 => "[a-z0-9.%:@_\\[\\]-]{0,24}",
    ]
}

#[derive(Debug, Clone)]
struct Attempt {
    method: &'static str,
    scheme: &'static str,
    userinfo: &'static str,
    host: String,
    port: &'static str,
    path: &'static str,
    host_header: u8,
    sni: u8,
}

fn attempt() -> impl Strategy<Value = Attempt> {
    (
        select(&["GET", "POST", "DELETE", "CONNECT", "CONNECT"][..]),
        prop_oneof![
            6 => Just("http://"),
            1 => select(&["https://", "HTTP://", "", "//", "ftp://"][..]),
        ],
        prop_oneof![
            6 => Just(""),
            1 => select(&["a@", "allowed.test@", "u:p@"][..]),
        ],
        host(),
        prop_oneof![
            6 => select(&["", ":80", ":443", ":8080", ":22"][..]),
            1 => select(&[":0", ":1", ":65535", ":99999", ":+80", ":", ":080"][..]),
        ],
        prop_oneof![
            6 => select(&["/", "/a?b"][..]),
            1 => select(&["", "#@evil.test/", "?@evil.test"][..]),
        ],
        prop_oneof![4 => Just(0u8), 1 => 1u8..5],
        0u8..3,
    )
        .prop_map(
            |(method, scheme, userinfo, host, port, path, host_header, sni)| Attempt {
                method,
                scheme,
                userinfo,
                host,
                port,
                path,
                host_header,
                sni,
            },
        )
}

impl Attempt {
    fn req(&self) -> Req {
        let authority = format!("{}{}{}", self.userinfo, self.host, self.port);
        if self.method == "CONNECT" {
            // CONNECT without a port is a case of its own in the table; here, 443.
            let authority = if self.port.is_empty() {
                format!("{authority}:443")
            } else {
                authority
            };
            let sni = match self.sni {
                0 => None,
                1 => Some(self.host.as_str()),
                _ => Some("evil.test"),
            };
            return Req::Connect(authority, vec![hello(sni)]);
        }
        let target = format!("{}{authority}{}", self.scheme, self.path);
        let host = format!("{}{}", self.host, self.port);
        let headers = match self.host_header {
            0 => format!("Host: {host}\r\n"),
            1 => "Host: evil.test\r\n".to_string(),
            2 => String::new(),
            3 => format!("Host: {host}\r\nHost: {host}\r\n"),
            _ => format!("Host: {}\r\n", host.to_ascii_uppercase()),
        };
        Req::Raw(format!("{} {target} HTTP/1.1\r\n{headers}\r\n", self.method).into_bytes())
    }
}

/// Runs the property; panics with the minimal failing request.
pub fn run() {
    let Some(mut env) = start("p", GROUPS, zone()) else {
        return;
    };
    assert!(
        env.setup_errors.is_empty(),
        "proxies did not start: {:?}",
        env.setup_errors
    );
    let Env {
        proxies,
        w,
        rt,
        net,
        groups,
        ..
    } = &mut env;
    let main = proxies.iter().position(|p| p.group == "main").unwrap();
    let proxy = tokio::sync::Mutex::new(&mut proxies[main]);
    let mut runner = TestRunner::new(Config {
        cases: 200,
        failure_persistence: None,
        max_shrink_iters: 64,
        max_shrink_time: 30_000,
        ..Config::default()
    });
    // How many attempts reached an upstream: a property that never connects proves nothing.
    let reached = AtomicUsize::new(0);
    let result = runner.run(&attempt(), |a| {
        let req = a.req();
        rt.block_on(async {
            let (far0, dns0, lines0) = (
                w.far.lock().unwrap().len(),
                w.dns.lock().unwrap().len(),
                w.lines.lock().unwrap().len(),
            );
            let mut p = proxy.lock().await;
            let port = p.port;
            let (_, client) = exchange(w, port, &req, far0)
                .await
                .map_err(TestCaseError::fail)?;
            // Every request is logged: wait (bounded) for its decision line.
            let decisions = || -> Vec<serde_json::Value> {
                since(&w.lines, lines0)
                    .into_iter()
                    .filter(|(p, v)| {
                        *p == port && is_client(v, &client) && v["event"] == "decision"
                    })
                    .map(|(_, v)| v)
                    .collect()
            };
            for _ in 0..100 {
                if !decisions().is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let decisions = decisions();
            let mut errs = Vec::new();
            if decisions.is_empty() {
                errs.push(format!("no decision line with client {client}"));
            }
            let conns = since(&w.far, far0);
            if !conns.is_empty() {
                reached.fetch_add(1, Ordering::Relaxed);
            }
            for c in conns {
                if !allowed(c.local) {
                    errs.push(format!(
                        "connected to {} ({} bytes)",
                        c.local,
                        c.bytes.len()
                    ));
                }
                // No connection without an allowed decision naming it.
                let logged = decisions.iter().any(|d| {
                    d["decision"] == "allowed"
                        && d["addr"]
                            .as_str()
                            .and_then(|a| a.parse::<SocketAddr>().ok())
                            .is_some_and(|a| {
                                SocketAddr::new(a.ip().to_canonical(), a.port()) == c.local
                            })
                });
                if !logged {
                    errs.push(format!(
                        "connected to {} without an allowed decision line naming it: {decisions:?}",
                        c.local
                    ));
                }
            }
            for q in since(&w.dns, dns0) {
                if q.to_ascii_lowercase().contains("corp.example") {
                    errs.push(format!("search-list lookup {q:?}"));
                }
            }
            if let Some(exit) = Env::restart_if_dead(w, net, groups, &mut p, &mut errs).await {
                errs.push(format!("the proxy exited ({exit})"));
            }
            if errs.is_empty() {
                Ok(())
            } else {
                Err(TestCaseError::fail(format!(
                    "{}: {}",
                    show_req(&req),
                    errs.join("; ")
                )))
            }
        })
    });
    // The second property: any spelling of an address reaches it exactly when a rule names it.
    let mut runner = TestRunner::new(Config {
        cases: 150,
        failure_persistence: None,
        max_shrink_iters: 64,
        max_shrink_time: 30_000,
        ..Config::default()
    });
    let spelled = runner.run(&spelling(), |(ip, host)| {
        let req =
            Req::Raw(format!("GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes());
        rt.block_on(async {
            let far0 = w.far.lock().unwrap().len();
            let port = proxy.lock().await.port;
            let (seen, _) = exchange(w, port, &req, far0)
                .await
                .map_err(TestCaseError::fail)?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let conns: Vec<SocketAddr> = since(&w.far, far0).iter().map(|c| c.local).collect();
            let want = SocketAddr::new(IpAddr::V4(ip), 80);
            let ok = if allowed(want) {
                seen.status == Some(200) && conns == [want]
            } else {
                conns.is_empty() && seen.status != Some(200)
            };
            if ok {
                Ok(())
            } else {
                Err(TestCaseError::fail(format!(
                    "{host} (= {ip}): status {:?}, connected to {conns:?}",
                    seen.status
                )))
            }
        })
    });
    let stderr = env.stderr_tail();
    drop(env);
    if let Err(e) = result {
        panic!("random targets: {e}\n\nthe proxies' stderr (last lines):\n{stderr}");
    }
    if let Err(e) = spelled {
        panic!("spelled addresses: {e}\n\nthe proxies' stderr (last lines):\n{stderr}");
    }
    let reached = reached.into_inner();
    assert!(
        reached >= 5,
        "only {reached} random requests reached an upstream: the generator no longer tries allowed targets"
    );
    eprintln!("random targets: every connection allowed; {reached} attempts reached an upstream");
}
