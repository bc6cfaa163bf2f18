//! The cases, as data: the allowlist groups, the DNS zone the attacker controls, and one line
//! per attack. Columns: name, group, what is sent, the status, the decision line, what the far
//! side saw. See `harness.rs` for what each column asserts.

use std::net::IpAddr;

use super::harness::{
    c, Case, Dec, Dec::Allowed as A, Dec::Denied as D, Dec::Refused as R, Far::Conn, Far::Host,
    Far::Nothing as N, Far::Saw, Far::Zero, Group, Req, St, St::Closed, St::OneOf, Zone,
};

/// The allowlists, one proxy each.
pub const GROUPS: &[Group] = &[
    Group {
        name: "main",
        allow: "allowed.test, *.wild.test, port.test:8080, any.test:*, v6.test, nx.test, \
                leak.test, intranet, localhost, mixed.test, mixed6.test, \
                rebind-loop.test, rebind-priv.test, rebind-172.test, rebind-192.test, \
                rebind-ll.test, rebind-shared.test, rebind-zero.test, rebind-mcast.test, \
                rebind-bcast.test, rebind-ula.test, rebind-ll6.test, rebind-loop6.test, \
                rebind-mapped.test, rebind-mapped-loop.test, rebind-compat.test, \
                rebind-bundle.test, rebind-own.test, rebind-own-lo.test, rebind-unspec6.test, \
                rebind-mcast6.test, rebind-nat64.test, rebind-nat64-loop.test, \
                rebind-sitelocal.test, rebind-zero8.test, rebind-bundle6.test, many.test, unroutable.test, silent.test, \
                flip.test, flip2.test, 198.51.100.20, 203.0.113.0/24, [2001:db8:ffff::/64]",
        env: &[],
    },
    // Addresses in rules, in other spellings; explicit rules for otherwise refused classes.
    Group {
        name: "literal",
        allow: "127.0.0.1:8080, 10.0.0.8, [fd00::8], 0x0a000009:8443, 192.0.2.2:8080",
        env: &[],
    },
    Group {
        name: "empty",
        allow: "",
        env: &[],
    },
    // Room for three clients only.
    Group {
        name: "crowded",
        allow: "allowed.test, any.test:*",
        env: &[("BOTTLE_EGRESS_MAX_CONNECTIONS", "3")],
    },
    // Short idle timeout.
    Group {
        name: "idle",
        allow: "any.test:*",
        env: &[("BOTTLE_EGRESS_IDLE_TIMEOUT_SECS", "1")],
    },
    // A careless wide rule: rebinding must still be refused, on every port.
    Group {
        name: "wide",
        allow: "*.wide.test:*",
        env: &[],
    },
];

/// Allowlists the proxy must refuse to start with (each is one case).
pub const BAD_ALLOWLISTS: &[&str] = &[
    "*.0.0.1",
    "*.1",
    "1.2.3.4.5",
    "08.0.0.1",
    "allowed.test:0",
    "allowed.test:65536",
    "allowed.test:99999",
    "allowed.test:+80",
    "allowed.test:",
    "10.0.0.0/33",
    "[fd00::/129]",
    "http://allowed.test",
    "allowed.test/path",
];

/// The attacker's DNS. Names not here are NXDOMAIN. The `.corp.example` names exist only to
/// catch a proxy that applies the search list.
pub fn zone() -> Zone {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let mut z = Zone::new();
    for (name, addrs) in [
        ("allowed.test", &["198.51.100.10"][..]),
        ("www.wild.test", &["198.51.100.11"]),
        ("deep.a.wild.test", &["198.51.100.11"]),
        ("wild.test", &["198.51.100.12"]),
        ("evil.test", &["198.51.100.13"]),
        ("evilallowed.test", &["198.51.100.13"]),
        ("allowed.test.evil.test", &["198.51.100.13"]),
        ("evil.wild.test", &["198.51.100.13"]),
        ("port.test", &["198.51.100.14"]),
        ("any.test", &["198.51.100.15"]),
        ("v6.test", &["2001:db8:ffff::10"]),
        ("mixed.test", &["198.51.100.16", "10.0.0.7"]),
        ("mixed6.test", &["198.51.100.16", "fd00::7"]),
        ("leak.test.corp.example", &["198.51.100.66"]),
        ("intranet.corp.example", &["198.51.100.66"]),
        ("nx.test.corp.example", &["198.51.100.66"]),
        ("nothere.test.corp.example", &["198.51.100.66"]),
        ("rebind-loop.test", &["127.0.0.1"]),
        ("rebind-priv.test", &["10.0.0.7"]),
        ("rebind-172.test", &["172.16.0.5"]),
        ("rebind-192.test", &["192.168.1.5"]),
        ("rebind-ll.test", &["169.254.169.254"]),
        ("rebind-shared.test", &["100.64.0.1"]),
        ("rebind-zero.test", &["0.0.0.0"]),
        ("rebind-mcast.test", &["224.0.0.1"]),
        ("rebind-bcast.test", &["255.255.255.255"]),
        ("rebind-ula.test", &["fd00::7"]),
        ("rebind-ll6.test", &["fe80::1"]),
        ("rebind-loop6.test", &["::1"]),
        ("rebind-mapped.test", &["::ffff:10.0.0.7"]),
        ("rebind-mapped-loop.test", &["::ffff:127.0.0.1"]),
        ("rebind-compat.test", &["::10.0.0.7"]),
        ("rebind-bundle.test", &["192.0.2.2"]),
        ("rebind-own.test", &["192.0.2.1"]),
        ("rebind-own-lo.test", &["198.18.0.1"]),
        ("rebind-unspec6.test", &["::"]),
        ("rebind-mcast6.test", &["ff02::1"]),
        ("rebind.wild.test", &["10.0.0.7"]),
        ("rebind-nat64.test", &["64:ff9b::a00:7"]),
        ("rebind-nat64-loop.test", &["64:ff9b::7f00:1"]),
        ("rebind-sitelocal.test", &["fec0::7"]),
        ("rebind-zero8.test", &["0.1.2.3"]),
        ("rebind-bundle6.test", &["2001:db8:1::2"]),
        (
            "many.test",
            &[
                "198.51.100.100",
                "198.51.100.101",
                "198.51.100.102",
                "198.51.100.103",
                "198.51.100.104",
                "198.51.100.105",
                "198.51.100.106",
                "198.51.100.107",
                "198.51.100.108",
                "198.51.100.109",
                "198.51.100.110",
                "198.51.100.111",
                "198.51.100.112",
                "198.51.100.113",
                "198.51.100.114",
                "10.0.0.7",
            ],
        ),
        ("localhost", &["127.0.0.1"]),
        ("unroutable.test", &["198.18.5.5"]),
        ("flip.test", &["198.51.100.18"]),
        ("flip2.test", &["198.51.100.18"]),
        ("pub.wide.test", &["198.51.100.17"]),
        ("rebind-loop.wide.test", &["127.0.0.1"]),
        ("rebind-priv.wide.test", &["10.0.0.7"]),
        ("nothere.wide.test.corp.example", &["198.51.100.66"]),
    ] {
        z.insert(name, addrs.iter().map(|a| ip(a)).collect());
    }
    z
}

/// `GET target` with the `Host` a well-behaved client would send (the target's authority).
fn get(target: &str) -> Req {
    let authority = target
        .split_once("://")
        .map_or(target, |(_, rest)| rest.split('/').next().unwrap_or(rest));
    raw(&format!(
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\n\r\n"
    ))
}

fn raw(s: &str) -> Req {
    Req::Raw(s.as_bytes().to_vec())
}

fn connect(authority: &str, then: Vec<u8>) -> Req {
    Req::Connect(authority.to_string(), vec![then])
}

/// `CONNECT`, then `then` in two writes split at `at`.
fn split(authority: &str, then: Vec<u8>, at: usize) -> Req {
    Req::Connect(
        authority.to_string(),
        vec![then[..at].to_vec(), then[at..].to_vec()],
    )
}

/// Two requests on one connection.
fn two(first: Req, second: Req) -> Req {
    match (first, second) {
        (Req::Raw(a), Req::Raw(b)) => Req::Two(a, b),
        _ => unreachable!("two() takes two raw requests"),
    }
}

/// A ClientHello split over two TLS records at byte `at` of the handshake message.
fn fragmented(sni: &str, at: usize) -> Vec<u8> {
    let h = hello(Some(sni));
    let hs = &h[5..];
    let mut out = Vec::new();
    for part in [&hs[..at], &hs[at..]] {
        out.extend([0x16, 0x03, 0x01]);
        out.extend((part.len() as u16).to_be_bytes());
        out.extend(part);
    }
    out
}

fn s(code: u16) -> St {
    St::Code(code)
}

/// 32 bytes of ClientHello random that the far side can recognise.
const RANDOM: &[u8; 32] = b"bottle adversarial client random";

/// A syntactically valid TLS 1.3 ClientHello, with a server_name extension when `sni` is set.
pub fn hello(sni: Option<&str>) -> Vec<u8> {
    match sni {
        Some(name) => hello_sni(&[&[name]]),
        None => hello_sni(&[]),
    }
}

/// A ClientHello with one server_name extension per element of `exts`, each listing those
/// host names (an attacker's: the RFC allows one extension with one host name).
fn hello_sni(exts: &[&[&str]]) -> Vec<u8> {
    let mut ext = Vec::new();
    for names in exts {
        let mut list = Vec::new();
        for name in *names {
            list.push(0); // host_name
            list.extend((name.len() as u16).to_be_bytes());
            list.extend(name.as_bytes());
        }
        ext.extend(0u16.to_be_bytes()); // server_name
        ext.extend((list.len() as u16 + 2).to_be_bytes());
        ext.extend((list.len() as u16).to_be_bytes()); // server_name_list
        ext.extend(list);
    }
    ext.extend([0x00, 0x2b, 0x00, 0x05, 0x04, 0x03, 0x04, 0x03, 0x03]); // supported_versions
    let mut body = vec![0x03, 0x03];
    body.extend(RANDOM);
    body.push(0); // session id
    body.extend([0x00, 0x02, 0x13, 0x01]); // one cipher suite
    body.extend([0x01, 0x00]); // null compression
    body.extend((ext.len() as u16).to_be_bytes());
    body.extend(ext);
    let mut hs = vec![0x01]; // client_hello
    hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend((hs.len() as u16).to_be_bytes());
    rec.extend(hs);
    rec
}

/// What the far side sees of any of our ClientHellos.
const MARK: &str = "bottle adversarial";

fn bytes(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// A head of many small headers, well under 64 KiB in all.
fn many_headers(n: usize) -> Req {
    let headers: String = (0..n).map(|i| format!("X-H{i}: v\r\n")).collect();
    raw(&format!(
        "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n{headers}\r\n"
    ))
}

/// A request head larger than the 64 KiB limit.
fn oversized() -> Req {
    let pad = "a".repeat(70 * 1024);
    raw(&format!(
        "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nX-Pad: {pad}\r\n\r\n"
    ))
}

const U10: &str = "198.51.100.10:80";
const NOT: &str = "not in allowlist";
const NOT_OR_CLASS: &str = "not in allowlist|is a ";
const PARSE: St = St::OneOf(&[400]);
const REFUSED_NAME: St = St::OneOf(&[400, 403]);

#[rustfmt::skip]
pub fn all() -> Vec<Case> {
    vec![
        // The allowlist, by name.
        c("allowed name", "main", get("http://allowed.test/"), s(200), A(""), Host(U10, "allowed.test")),
        c("an @ in the path is not userinfo", "main", get("http://allowed.test/@evil.test"), s(200), A(""), Host(U10, "allowed.test")),
        c("path and query are carried", "main", get("http://allowed.test/a/b?c=d"), s(200), A(""), Saw(U10, "GET /a/b?c=d HTTP/1.1")),
        c("name not in allowlist", "main", get("http://evil.test/"), s(403), D(NOT), N),
        c("allowed name as a suffix of another label", "main", get("http://evilallowed.test/"), s(403), D(NOT), N),
        c("allowed name as a prefix of another domain", "main", get("http://allowed.test.evil.test/"), s(403), D(NOT), N),
        c("subdomain of a plain rule", "main", get("http://www.allowed.test/"), s(403), D(NOT), N),
        c("wildcard, one label", "main", get("http://www.wild.test/"), s(200), A(""), Host("198.51.100.11:80", "www.wild.test")),
        c("wildcard, two labels", "main", get("http://deep.a.wild.test/"), s(200), A(""), Conn("198.51.100.11:80")),
        c("wildcard, bare domain", "main", get("http://wild.test/"), s(403), D(NOT), N),
        c("wildcard, label suffix", "main", get("http://evilwild.test/"), s(403), D(NOT), N),
        c("wildcard domain as a prefix", "main", get("http://wild.test.evil.test/"), s(403), D(NOT), N),
        c("upper case name", "main", get("http://ALLOWED.TEST/"), s(200), A(""), Conn(U10)).logs_host("allowed.test"),
        c("trailing dot", "main", get("http://allowed.test./"), s(200), A(""), Conn(U10)).logs_host("allowed.test"),
        c("trailing dot, not allowed", "main", get("http://evil.test./"), s(403), D(NOT), N),
        c("two trailing dots", "main", get("http://allowed.test../"), REFUSED_NAME, D(""), N),
        c("percent-encoded dot", "main", get("http://allowed%2etest/"), REFUSED_NAME, D(""), N),
        c("percent-encoded NUL before an allowed suffix", "main", get("http://evil.test%00.allowed.test/"), REFUSED_NAME, D(""), N),
        c("query after a denied host", "main", get("http://evil.test?.allowed.test/"), REFUSED_NAME, D(""), N),
        c("fragment after a denied host", "main", raw("GET http://evil.test#.allowed.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n"), REFUSED_NAME, D(""), N),
        c("backslash before an allowed name", "main", raw("GET http://evil.test\\@allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n"), REFUSED_NAME, D(""), N),
        c("zone id on a link-local literal", "main", get("http://[fe80::1%25bt0]/"), REFUSED_NAME, D(""), N),
        c("zone id on a unique-local literal", "main", get("http://[fd00::7%25lo]/"), REFUSED_NAME, D(""), N),
        c("empty allowlist", "empty", get("http://allowed.test/"), s(403), D(NOT), N),
        c("empty allowlist, CONNECT", "empty", connect("allowed.test:443", hello(Some("allowed.test"))), s(403), D(NOT), N),
        c("empty allowlist, loopback literal", "empty", get("http://127.0.0.1/"), s(403), D(NOT_OR_CLASS), N),

        // Target forms and userinfo.
        c("userinfo", "main", get("http://user:pass@allowed.test/"), s(400), D(""), N),
        c("userinfo naming the allowed host", "main", get("http://allowed.test@evil.test/"), s(400), D(""), N),
        c("userinfo in CONNECT", "main", connect("allowed.test@evil.test:443", hello(Some("evil.test"))), s(400), D(""), N),
        c("https absolute-form", "main", get("https://allowed.test/"), s(400), D(""), N),
        c("other scheme", "main", get("ftp://allowed.test/"), REFUSED_NAME, D(""), N),
        c("origin-form", "main", raw("GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n"), s(400), D(""), N),
        c("asterisk-form", "main", raw("OPTIONS * HTTP/1.1\r\nHost: allowed.test\r\n\r\n"), s(400), D(""), N),
        c("CONNECT with an absolute URI", "main", raw("CONNECT http://allowed.test:443/ HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n"), s(400), D(""), N),

        // Ports.
        c("no port rule: 8080 refused", "main", get("http://allowed.test:8080/"), s(403), D(NOT), N),
        c("no port rule: 22 refused", "main", get("http://allowed.test:22/"), s(403), D(NOT), N),
        c("no port rule: plain HTTP to 443", "main", get("http://allowed.test:443/"), s(200), A(""), Host("198.51.100.10:443", "allowed.test:443")),
        c("explicit :80 is port 80", "main", get("http://allowed.test:80/"), s(200), A(""), Conn(U10)),
        c("port rule :8080", "main", get("http://port.test:8080/"), s(200), A(""), Host("198.51.100.14:8080", "port.test:8080")),
        c("port rule :8080, port 80 refused", "main", get("http://port.test/"), s(403), D(NOT), N),
        c("port rule :8080, 443 refused", "main", connect("port.test:443", hello(Some("port.test"))), s(403), D(NOT), N),
        c("port rule :8080, opaque tunnel", "main", connect("port.test:8080", bytes("opaque bytes\r\n")), s(200), A(""), Saw("198.51.100.14:8080", "opaque bytes")),
        c("port rule :8080, a ClientHello with another SNI is opaque", "main", connect("port.test:8080", hello(Some("evil.test"))), s(200), A(""), Saw("198.51.100.14:8080", MARK)),
        c("port :*, ssh", "main", connect("any.test:22", bytes("SSH-2.0-attacker\r\n")), s(200), A(""), Saw("198.51.100.15:22", "SSH-2.0-attacker")),
        c("port :*, 65535", "main", get("http://any.test:65535/"), s(200), A(""), Conn("198.51.100.15:65535")),
        c("port 0", "main", get("http://allowed.test:0/"), s(400), D(""), N),
        c("port 65536", "main", get("http://allowed.test:65536/"), s(400), D(""), N),
        c("port 99999", "main", get("http://allowed.test:99999/"), s(400), D(""), N),
        c("port +80", "main", get("http://allowed.test:+80/"), s(400), D(""), N),
        c("two ports", "main", get("http://allowed.test:80:80/"), s(400), D(""), N),
        c("full-width digits in the port", "main", get("http://allowed.test:\u{ff18}\u{ff10}/"), REFUSED_NAME, D(""), N),
        c("IPv6 literal without brackets", "main", get("http://::1/"), REFUSED_NAME, D(""), N),
        c("port -1", "main", get("http://allowed.test:-1/"), s(400), D(""), N),
        c("empty port", "main", get("http://allowed.test:/"), s(400), D(""), N),
        c("port :*, port 0", "main", get("http://any.test:0/"), s(400), D(""), N),
        c("CONNECT port 0", "main", connect("allowed.test:0", vec![]), s(400), D(""), N),
        c("CONNECT port 65536", "main", connect("allowed.test:65536", vec![]), s(400), D(""), N),
        c("CONNECT port 99999", "main", connect("any.test:99999", vec![]), s(400), D(""), N),
        c("CONNECT port +443", "main", connect("allowed.test:+443", vec![]), s(400), D(""), N),
        c("CONNECT empty port", "main", connect("allowed.test:", vec![]), s(400), D(""), N),
        c("CONNECT without a port", "main", connect("allowed.test", vec![]), s(400), D(""), N),
        c("CONNECT to port 80", "main", connect("allowed.test:80", bytes("GET / HTTP/1.1\r\n\r\n")), s(403), D("CONNECT to port 80"), N),
        c("CONNECT to port 80 under :*", "main", connect("any.test:80", bytes("GET / HTTP/1.1\r\n\r\n")), s(403), D("CONNECT to port 80"), N),

        // The Host header.
        c("Host of another host", "main", raw("GET http://allowed.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n"), s(403), D("Host header"), N),
        c("Host of another port", "main", raw("GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test:8080\r\n\r\n"), s(403), D("Host header"), N),
        c("Host with the default port", "main", raw("GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test:80\r\n\r\n"), s(200), A(""), Conn(U10)),
        c("Host in upper case arrives as the target", "main", raw("GET http://allowed.test/ HTTP/1.1\r\nHost: ALLOWED.TEST\r\n\r\n"), s(200), A(""), Host(U10, "allowed.test")),
        c("two Host headers, one other", "main", raw("GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nHost: evil.test\r\n\r\n"), s(400), D(""), N),
        c("two equal Host headers", "main", raw("GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nHost: allowed.test\r\n\r\n"), s(400), D(""), N),
        c("empty Host", "main", raw("GET http://allowed.test/ HTTP/1.1\r\nHost: \r\n\r\n"), REFUSED_NAME, D(""), N),
        c("Host with userinfo", "main", raw("GET http://allowed.test/ HTTP/1.1\r\nHost: evil.test@allowed.test\r\n\r\n"), REFUSED_NAME, D(""), N),
        c("HTTP/1.1 without Host", "main", raw("GET http://allowed.test/ HTTP/1.1\r\n\r\n"), s(400), D(""), N),
        c("HTTP/1.0 without Host gets the target's", "main", raw("GET http://allowed.test/ HTTP/1.0\r\n\r\n"), s(200), A(""), Host(U10, "allowed.test")),
        c("Connection: host cannot strip Host", "main", raw("GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nConnection: host\r\n\r\n"), s(200), A(""), Host(U10, "allowed.test")),
        c("HTTP/1.0, Connection: host, no Host", "main", raw("GET http://allowed.test/ HTTP/1.0\r\nConnection: host\r\n\r\n"), s(200), A(""), Host(U10, "allowed.test")),
        c("CONNECT with the Host of another host", "main", raw("CONNECT allowed.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n"), s(403), D("Host header"), N),
        c("Host naming an allowed host for a denied target", "main", raw("GET http://evil.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n"), s(403), D("Host header|not in allowlist"), N),

        // DNS rebinding: an allowlisted name resolving to each refused class.
        c("rebinding to loopback", "main", get("http://rebind-loop.test/"), s(403), D("resolves to a loopback address"), N),
        c("rebinding to 10/8", "main", get("http://rebind-priv.test/"), s(403), D("resolves to a private address"), N),
        c("rebinding to 172.16/12", "main", get("http://rebind-172.test/"), s(403), D("resolves to a private address"), N),
        c("rebinding to 192.168/16", "main", get("http://rebind-192.test/"), s(403), D("resolves to a private address"), N),
        c("rebinding to the metadata address", "main", get("http://rebind-ll.test/"), s(403), D("resolves to a link-local address"), N),
        c("rebinding to shared space", "main", get("http://rebind-shared.test/"), s(403), D("resolves to a shared address"), N),
        c("rebinding to 0.0.0.0", "main", get("http://rebind-zero.test/"), s(403), D("resolves to a unspecified address|resolves to an unspecified address"), N),
        c("rebinding to multicast", "main", get("http://rebind-mcast.test/"), s(403), D("resolves to a multicast address"), N),
        c("rebinding to broadcast", "main", get("http://rebind-bcast.test/"), s(403), D("resolves to a broadcast address"), N),
        c("rebinding to unique-local", "main", get("http://rebind-ula.test/"), s(403), D("resolves to a unique-local address"), N),
        c("rebinding to IPv6 link-local", "main", get("http://rebind-ll6.test/"), s(403), D("resolves to a link-local address|resolves to a bundle-network address"), N),
        c("rebinding to ::1", "main", get("http://rebind-loop6.test/"), s(403), D("resolves to a loopback address"), N),
        c("rebinding to ::", "main", get("http://rebind-unspec6.test/"), s(403), D("resolves to a unspecified address|resolves to an unspecified address"), N),
        c("rebinding to IPv6 multicast", "main", get("http://rebind-mcast6.test/"), s(403), D("resolves to a multicast address"), N),
        c("rebinding to IPv4-mapped private", "main", get("http://rebind-mapped.test/"), s(403), D("resolves to a private address"), N),
        c("rebinding to IPv4-mapped loopback", "main", get("http://rebind-mapped-loop.test/"), s(403), D("resolves to a loopback address"), N),
        c("rebinding to IPv4-compatible private", "main", get("http://rebind-compat.test/"), s(403), D("resolves to a private address"), N),
        c("rebinding to the bundle network's gateway", "main", get("http://rebind-bundle.test/"), s(403), D("resolves to a bundle-network address"), N),
        c("rebinding to the bundle network's IPv6 gateway", "main", get("http://rebind-bundle6.test/"), s(403), D("resolves to a bundle-network address"), N),
        c("rebinding to the proxy's own bundle address", "main", get("http://rebind-own.test/"), s(403), D("resolves to a own address|resolves to an own address|resolves to a bundle-network address"), N),
        c("rebinding to an own address on lo", "main", get("http://rebind-own-lo.test/"), s(403), D("resolves to a own address|resolves to an own address"), N),
        c("rebinding to NAT64 of a private address", "main", get("http://rebind-nat64.test/"), s(403), D("resolves to a private address"), N),
        c("rebinding to NAT64 of loopback", "main", get("http://rebind-nat64-loop.test/"), s(403), D("resolves to a loopback address"), N),
        c("rebinding to IPv6 site-local", "main", get("http://rebind-sitelocal.test/"), s(403), D("resolves to a private address"), N),
        c("rebinding to 0.0.0.0/8", "main", get("http://rebind-zero8.test/"), s(403), D("resolves to a unspecified address|resolves to an unspecified address"), N),
        c("rebinding under a wildcard", "main", get("http://rebind.wild.test/"), s(403), D("resolves to a private address"), N),
        c("localhost", "main", get("http://localhost/"), s(403), D("resolves to a loopback address"), N),
        c("one public and one private address", "main", get("http://mixed.test/"), s(403), D("resolves to a private address 10.0.0.7"), N),
        c("fifteen public addresses and one private", "main", get("http://many.test/"), s(403), D("resolves to a private address 10.0.0.7"), N),
        c("public A and unique-local AAAA", "main", get("http://mixed6.test/"), s(403), D("resolves to a unique-local address"), N),
        c("CONNECT rebinding to loopback", "main", connect("rebind-loop.test:443", hello(Some("rebind-loop.test"))), s(403), D("resolves to a loopback address"), N),
        c("CONNECT rebinding to the metadata address", "main", connect("rebind-ll.test:443", hello(Some("rebind-ll.test"))), s(403), D("resolves to a link-local address"), N),
        c("wide rule: rebinding to loopback on 22", "wide", connect("rebind-loop.wide.test:22", bytes("SSH-2.0-x\r\n")), s(403), D("resolves to a loopback address"), N),
        c("wide rule: rebinding to 10/8 on 8080", "wide", get("http://rebind-priv.wide.test:8080/"), s(403), D("resolves to a private address"), N),
        c("wide rule: opaque tunnel to a public name", "wide", connect("pub.wide.test:22", bytes("SSH-2.0-x\r\n")), s(200), A(""), Saw("198.51.100.17:22", "SSH-2.0-x")),
        c("wide rule: bare suffix", "wide", get("http://wide.test/"), s(403), D(NOT), N),
        c("wide rule: an IP literal is not a name under it", "wide", connect("198.51.100.10:22", vec![]), s(403), D(NOT_OR_CLASS), N),
        c("rebinding between check and connect (one lookup only)", "main", get("http://flip.test/"), s(200), A(""), Conn("198.51.100.18:80")),
        c("rebinding between check and connect, CONNECT", "main", connect("flip2.test:443", hello(Some("flip2.test"))), s(200), A(""), Saw("198.51.100.18:443", MARK)),
        c("IPv6-only name", "main", get("http://v6.test/"), s(200), A(""), Conn("[2001:db8:ffff::10]:80")),

        // Resolution: absolute names only, missing names.
        c("NXDOMAIN", "main", get("http://nx.test/"), s(502), A("cannot resolve"), N),
        c("NXDOMAIN over CONNECT", "main", connect("nx.test:443", hello(Some("nx.test"))), s(502), A("cannot resolve"), N),
        c("search list must not apply", "main", get("http://leak.test/"), s(502), A("cannot resolve"), N),
        c("single-label name must not get the search domain", "main", get("http://intranet/"), s(502), A("cannot resolve"), N),
        c("wide rule: NXDOMAIN", "wide", get("http://nothere.wide.test:8080/"), s(502), A("cannot resolve"), N),

        // IP literals and their spellings.
        c("allowed IPv4 literal", "main", get("http://198.51.100.20/"), s(200), A(""), Host("198.51.100.20:80", "198.51.100.20")),
        c("IPv4 literal not in allowlist", "main", get("http://198.51.100.21/"), s(403), D(NOT), N),
        c("literal in an allowed CIDR", "main", get("http://203.0.113.5/"), s(200), A(""), Conn("203.0.113.5:80")),
        c("IPv6 literal in an allowed CIDR", "main", get("http://[2001:db8:ffff::10]/"), s(200), A(""), Conn("[2001:db8:ffff::10]:80")),
        c("IPv6 literal outside the CIDR", "main", get("http://[2001:db8:ffff:1::10]/"), s(403), D(NOT), N),
        c("allowed literal as one decimal number", "main", get("http://3325256724/"), s(200), A(""), Conn("198.51.100.20:80")).logs_host("198.51.100.20"),
        c("allowed literal in hex", "main", get("http://0xc6336414/"), s(200), A(""), Conn("198.51.100.20:80")).logs_host("198.51.100.20"),
        c("allowed literal in octal", "main", get("http://0306.063.0144.024/"), s(200), A(""), Conn("198.51.100.20:80")).logs_host("198.51.100.20"),
        c("allowed literal as a.b.c", "main", get("http://198.51.25620/"), s(200), A(""), Conn("198.51.100.20:80")),
        c("allowed literal IPv4-mapped", "main", get("http://[::ffff:198.51.100.20]/"), s(200), A(""), Conn("198.51.100.20:80")).logs_host("198.51.100.20"),
        c("leading zeros are octal, not padding", "main", get("http://198.051.100.020/"), s(403), D(NOT), N),
        c("hex spelling of a literal not allowed", "main", get("http://0xc6336415/"), s(403), D(NOT), N),
        c("loopback literal", "main", get("http://127.0.0.1/"), s(403), D(NOT_OR_CLASS), N),
        c("loopback in hex", "main", get("http://0x7f000001/"), s(403), D(NOT_OR_CLASS), N).logs_host("127.0.0.1"),
        c("loopback in octal", "main", get("http://0177.0.0.1/"), s(403), D(NOT_OR_CLASS), N),
        c("loopback as one number", "main", get("http://2130706433/"), s(403), D(NOT_OR_CLASS), N),
        c("loopback short form", "main", get("http://127.1/"), s(403), D(NOT_OR_CLASS), N).logs_host("127.0.0.1"),
        c("loopback IPv4-mapped", "main", get("http://[::ffff:127.0.0.1]/"), s(403), D(NOT_OR_CLASS), N),
        c("IPv6 loopback", "main", get("http://[::1]/"), s(403), D(NOT_OR_CLASS), N),
        c("zero address", "main", get("http://0/"), s(403), D(NOT_OR_CLASS), N),
        c("private literal", "main", get("http://10.0.0.7/"), s(403), D(NOT_OR_CLASS), N),
        c("metadata literal", "main", get("http://169.254.169.254/"), s(403), D(NOT_OR_CLASS), N),
        c("unique-local literal", "main", get("http://[fd00::7]/"), s(403), D(NOT_OR_CLASS), N),
        c("shared-space literal", "main", get("http://100.64.0.1/"), s(403), D(NOT_OR_CLASS), N),
        c("the gateway literal", "main", get("http://192.0.2.2/"), s(403), D(NOT_OR_CLASS), N),
        c("CONNECT to a scoped link-local literal", "main", connect("[fe80::1%bt0]:443", hello(None)), REFUSED_NAME, D(""), N),
        c("CONNECT to mapped loopback", "main", connect("[::ffff:127.0.0.1]:443", hello(None)), s(403), D(NOT_OR_CLASS), N),
        c("the proxy itself", "main", connect("127.0.0.1:19100", vec![]), s(403), D(NOT_OR_CLASS), N),
        c("five numeric labels", "main", get("http://1.2.3.4.5/"), REFUSED_NAME, D(""), N),
        c("invalid octal label", "main", get("http://08.0.0.1/"), REFUSED_NAME, D(""), N),
        c("label over 255", "main", get("http://256.0.0.1/"), REFUSED_NAME, D(""), N),
        c("rule 127.0.0.1:8080", "literal", get("http://127.0.0.1:8080/"), s(200), A(""), Conn("127.0.0.1:8080")),
        c("rule 127.0.0.1:8080, hex request", "literal", get("http://0x7f000001:8080/"), s(200), A(""), Conn("127.0.0.1:8080")),
        c("rule 127.0.0.1:8080, decimal request", "literal", get("http://2130706433:8080/"), s(200), A(""), Conn("127.0.0.1:8080")),
        c("rule 127.0.0.1:8080, octal request", "literal", get("http://0177.0.0.1:8080/"), s(200), A(""), Conn("127.0.0.1:8080")),
        c("rule 127.0.0.1:8080, short request", "literal", get("http://127.1:8080/"), s(200), A(""), Conn("127.0.0.1:8080")),
        c("rule 127.0.0.1:8080, mapped request", "literal", get("http://[::ffff:127.0.0.1]:8080/"), s(200), A(""), Conn("127.0.0.1:8080")),
        c("rule 127.0.0.1:8080, port 80", "literal", get("http://127.0.0.1/"), s(403), D(NOT), N),
        c("rule 127.0.0.1:8080, other loopback address", "literal", get("http://127.0.0.2:8080/"), s(403), D(NOT_OR_CLASS), N),
        c("explicit private rule", "literal", get("http://10.0.0.8/"), s(200), A(""), Conn("10.0.0.8:80")),
        c("explicit private rule, neighbour", "literal", get("http://10.0.0.9/"), s(403), D(NOT_OR_CLASS), N),
        c("explicit unique-local rule", "literal", get("http://[fd00::8]/"), s(200), A(""), Conn("[fd00::8]:80")),
        c("explicit private rule, octal request", "literal", get("http://012.0.0.8/"), s(200), A(""), Conn("10.0.0.8:80")),
        c("explicit private rule, hex-label request", "literal", get("http://0x0a.0.0.8/"), s(200), A(""), Conn("10.0.0.8:80")),
        c("explicit private rule, decimal request", "literal", get("http://167772168/"), s(200), A(""), Conn("10.0.0.8:80")),
        c("explicit private rule, mapped request", "literal", get("http://[::ffff:10.0.0.8]/"), s(200), A(""), Conn("10.0.0.8:80")),
        c("explicit private rule, mapped hex request", "literal", get("http://[::ffff:a00:8]/"), s(200), A(""), Conn("10.0.0.8:80")),
        c("explicit unique-local rule, upper case", "literal", get("http://[FD00::8]/"), s(200), A(""), Conn("[fd00::8]:80")),
        c("explicit unique-local rule, long form", "literal", get("http://[fd00:0:0:0::8]/"), s(200), A(""), Conn("[fd00::8]:80")),
        c("explicit unique-local rule, neighbour", "literal", get("http://[fd00::9]/"), s(403), D(NOT_OR_CLASS), N),
        c("explicit rule for the bundle network's gateway", "literal", get("http://192.0.2.2:8080/"), s(200), A(""), Conn("192.0.2.2:8080")),
        c("explicit gateway rule, other port", "literal", get("http://192.0.2.2/"), s(403), D(NOT_OR_CLASS), N),
        c("rule spelled in hex", "literal", get("http://10.0.0.9:8443/"), s(200), A(""), Conn("10.0.0.9:8443")),

        // CONNECT to 443: the first bytes must be a ClientHello for the CONNECT host.
        c("ClientHello with matching SNI", "main", connect("allowed.test:443", hello(Some("allowed.test"))), s(200), A(""), Saw("198.51.100.10:443", MARK)),
        c("ClientHello with SNI in other case", "main", connect("allowed.test:443", hello(Some("ALLOWED.Test"))), s(200), A(""), Saw("198.51.100.10:443", MARK)),
        c("ClientHello with SNI and a trailing dot", "main", connect("allowed.test:443", hello(Some("allowed.test."))), s(200), A(""), Saw("198.51.100.10:443", MARK)),
        c("ClientHello without SNI", "main", connect("allowed.test:443", hello(None)), s(200), A(""), Saw("198.51.100.10:443", MARK)),
        c("ClientHello to an allowed literal", "main", connect("198.51.100.20:443", hello(None)), s(200), A(""), Saw("198.51.100.20:443", MARK)),
        c("ClientHello under a wildcard", "main", connect("www.wild.test:443", hello(Some("www.wild.test"))), s(200), A(""), Saw("198.51.100.11:443", MARK)),
        c("CONNECT host in upper case, SNI in lower", "main", connect("ALLOWED.TEST:443", hello(Some("allowed.test"))), s(200), A(""), Saw("198.51.100.10:443", MARK)),
        c("CONNECT host with a trailing dot", "main", connect("allowed.test.:443", hello(Some("allowed.test"))), s(200), A(""), Saw("198.51.100.10:443", MARK)),
        c("CONNECT to an IPv6 literal in an allowed CIDR", "main", connect("[2001:db8:ffff::10]:443", hello(None)), s(200), A(""), Saw("[2001:db8:ffff::10]:443", MARK)),
        c("CONNECT to an IPv6-only name", "main", connect("v6.test:443", hello(Some("v6.test"))), s(200), A(""), Saw("[2001:db8:ffff::10]:443", MARK)),
        c("SNI of the upstream's address", "main", connect("allowed.test:443", hello(Some("198.51.100.10"))), s(200), R("does not match"), Zero("198.51.100.10:443")),
        c("two server_name extensions, the allowed one first", "main", connect("allowed.test:443", hello_sni(&[&["allowed.test"], &["evil.test"]])), s(200), R(""), Zero("198.51.100.10:443")),
        c("two names in one server_name list, the allowed one first", "main", connect("allowed.test:443", hello_sni(&[&["allowed.test", "evil.test"]])), s(200), R(""), Zero("198.51.100.10:443")),
        c("SNI of another host", "main", connect("allowed.test:443", hello(Some("evil.test"))), s(200), R("does not match"), Zero("198.51.100.10:443")),
        c("SNI with the allowed name as prefix", "main", connect("allowed.test:443", hello(Some("allowed.test.evil.test"))), s(200), R("does not match"), Zero("198.51.100.10:443")),
        c("SNI with the allowed name as suffix", "main", connect("allowed.test:443", hello(Some("evilallowed.test"))), s(200), R("does not match"), Zero("198.51.100.10:443")),
        c("SNI of a subdomain", "main", connect("allowed.test:443", hello(Some("www.allowed.test"))), s(200), R("does not match"), Zero("198.51.100.10:443")),
        c("SNI with a NUL", "main", connect("allowed.test:443", hello(Some("allowed.test\0.evil.test"))), s(200), R("does not match|not a TLS ClientHello"), Zero("198.51.100.10:443")),
        c("SNI of a sibling under the same wildcard", "main", connect("www.wild.test:443", hello(Some("evil.wild.test"))), s(200), R("does not match"), Zero("198.51.100.11:443")),
        c("SNI on a CONNECT to a literal", "main", connect("198.51.100.20:443", hello(Some("evil.test"))), s(200), R("does not match"), Zero("198.51.100.20:443")),
        c("plain HTTP in a 443 tunnel", "main", connect("allowed.test:443", bytes("GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n")), s(200), R("not a TLS ClientHello"), Zero("198.51.100.10:443")),
        c("SSH in a 443 tunnel", "main", connect("allowed.test:443", bytes("SSH-2.0-attacker\r\n")), s(200), R("not a TLS ClientHello"), Zero("198.51.100.10:443")),
        c("TLS application data first", "main", connect("allowed.test:443", vec![0x17, 0x03, 0x03, 0x00, 0x05, 1, 2, 3, 4, 5]), s(200), R("not a TLS ClientHello"), Zero("198.51.100.10:443")),
        c("a ServerHello instead", "main", connect("allowed.test:443", { let mut h = hello(Some("allowed.test")); h[5] = 2; h }), s(200), R("not a TLS ClientHello"), Zero("198.51.100.10:443")),

        // Heads the parser rejects: a denied line with the client address, nothing connected.
        c("space in the target", "main", raw("GET http://allo wed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n"), PARSE, D(""), N),
        c("unclosed IPv6 bracket", "main", raw("GET http://[::1/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n"), PARSE, D(""), N),
        c("control byte in a header name", "main", raw("GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nX-B\x01d: y\r\n\r\n"), PARSE, D(""), N),
        c("NUL in the Host header", "main", raw("GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\0evil.test\r\n\r\n"), PARSE, D(""), N),
        c("obs-fold continuing Host", "main", raw("GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n evil.test\r\n\r\n"), PARSE, D(""), N),
        // Read by its Transfer-Encoding (RFC 9112 §6.3) and framed anew: the upstream gets one
        // framing (here: an empty body, so none at all), never the agent's two.
        c("Content-Length with Transfer-Encoding", "main", raw("POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), s(200), A(""), Saw(U10, "POST / HTTP/1.1\r\nhost: allowed.test\r\n\r\n")),
        c("two different Content-Lengths", "main", raw("POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"), PARSE, D(""), N),
        c("Transfer-Encoding not ending in chunked", "main", raw("POST http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"), PARSE, D(""), N),
        c("oversized head", "main", oversized(), s(431), D(""), N),
        c("HTTP/2 preface", "main", raw("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), OneOf(&[400, 505, 0]), D(""), N),
        c("HTTP/0.9 request line", "main", raw("GET http://allowed.test/\r\n\r\n"), PARSE, D(""), N),
        c("binary garbage", "main", Req::Raw(vec![0, 1, 2, 0xff, 0xfe, b'\r', b'\n', b'\r', b'\n']), PARSE, D(""), N),
        c("150 headers", "main", many_headers(150), OneOf(&[400, 431]), D(""), N),
        c("a 70 KiB target", "main", get(&format!("http://allowed.test/{}", "a".repeat(70 * 1024))), OneOf(&[400, 414, 431]), D(""), N),
        c("a Host header forging a log line", "main", raw("GET http://allowed.test/ HTTP/1.1\r\nHost: evil.test\",\"decision\":\"allowed\r\n\r\n"), REFUSED_NAME, D(""), N),
        c("a non-UTF-8 byte in Host", "main", Req::Raw([&b"GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test"[..], &[0xff], b"\r\n\r\n"].concat()), REFUSED_NAME, D(""), N),
        c("head never finished (header timeout)", "main", raw("GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n"), Closed, D(""), N),
        c("a head dripped a byte at a time (slowloris) is cut at the header timeout", "main", Req::Drip(bytes("GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n"), 100), OneOf(&[408, 0]), D(""), N),
        c("non-ASCII host", "main", raw("GET http://\u{430}llowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n"), REFUSED_NAME, D(""), N),
        c("lower-case connect is not CONNECT", "main", raw("connect allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n"), REFUSED_NAME, D(""), N),
        c("GET in authority-form", "main", raw("GET allowed.test:80 HTTP/1.1\r\nHost: allowed.test:80\r\n\r\n"), s(400), D(""), N),

        // Names a wildcard must not take.
        c("empty label under a wildcard", "main", get("http://.wild.test/"), REFUSED_NAME, D(""), N),
        c("empty inner label under a wildcard", "main", get("http://www..wild.test/"), REFUSED_NAME, D(""), N),
        c("a literal star under a wildcard", "main", get("http://*.wild.test/"), REFUSED_NAME, D(""), N),
        c("a name over 253 characters under a wildcard", "main", get(&format!("http://{}.wild.test/", vec!["a".repeat(60); 5].join("."))), OneOf(&[400, 403, 502]), Dec::Any, N),

        // Upstream failures are the proxy's 502, and nothing else is tried.
        c("connection refused", "main", get("http://any.test:1/"), s(502), A(""), N),
        c("connection refused over CONNECT", "main", connect("any.test:1", vec![]), s(502), A(""), N),
        c("no route to a public address", "main", get("http://unroutable.test/"), s(502), A(""), N),
        c("DNS never answers", "main", get("http://silent.test/"), s(502), A("cannot resolve"), N),

        // A ClientHello in pieces: the SNI must be found wherever it is.
        c("ClientHello in two writes", "main", split("allowed.test:443", hello(Some("allowed.test")), 3), s(200), A(""), Saw("198.51.100.10:443", MARK)),
        c("ClientHello in two writes, bad SNI in the second", "main", split("allowed.test:443", hello(Some("evil.test")), 60), s(200), R("does not match"), Zero("198.51.100.10:443")),
        c("ClientHello over two TLS records, bad SNI in the second", "main", connect("allowed.test:443", fragmented("evil.test", 60)), s(200), R("does not match|not a TLS ClientHello"), Zero("198.51.100.10:443")),
        c("ClientHello record shorter than it says, then closed", "main", connect("allowed.test:443", hello(Some("allowed.test"))[..40].to_vec()), s(200), R(""), Zero("198.51.100.10:443")),

        // The second request on a kept-alive connection is decided on its own.
        c("denied, then rebinding on the same connection", "main", two(get("http://evil.test/"), get("http://rebind-priv.test/")), s(403), D("resolves to a private address"), N),
        c("denied, then Host spoofing on the same connection", "main", two(get("http://evil.test/"), raw("GET http://allowed.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n")), s(403), D("Host header"), N),
        c("allowed, then a denied name on the same connection", "main", two(get("http://allowed.test/"), get("http://evil.test/")), OneOf(&[403, 0]), D(NOT), Conn(U10)),
        c("allowed, then rebinding on the same connection", "main", two(get("http://allowed.test/"), get("http://rebind-loop.test/")), OneOf(&[403, 0]), D("resolves to a loopback address"), Conn(U10)),

        // The connection cap.
        c("over the connection cap (three open tunnels)", "crowded", Req::Crowd(3, bytes("CONNECT any.test:22 HTTP/1.1\r\nHost: any.test:22\r\n\r\n"), get("http://allowed.test/").into_bytes()), s(503), Dec::Any, Conn("198.51.100.15:22")),
        c("a silent tunnel is closed at the idle timeout", "idle", Req::Silent("any.test:22".into(), 4), s(200), R(""), Zero("198.51.100.15:22")),
        c("under the cap again once the crowd left", "crowded", get("http://allowed.test/"), s(200), A(""), Conn(U10)),
    ]
}
