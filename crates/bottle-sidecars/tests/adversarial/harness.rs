//! The far side of the adversarial suite: two network namespaces, a DNS responder, upstreams
//! that log every connection, the proxies under test, and the checks. See `adversarial.rs`.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};
use serde_json::Value;
use simple_dns::rdata::{RData, A, AAAA};
use simple_dns::{Packet, PacketFlag, ResourceRecord, CLASS, QTYPE, RCODE, TYPE};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::process::{Child, Command as TokioCommand};
use tokio::time::{sleep, timeout};

/// The proxy's namespace: `lo`, and `bt0` (the bundle network 192.0.2.0/24 and
/// 2001:db8:1::/64) to the far namespace, whose end is the gateway 192.0.2.2 / 2001:db8:1::2.
const BUNDLE_V4: &str = "192.0.2.1/24";
const BUNDLE_V6: &str = "2001:db8:1::1/64";
const GATEWAY_V4: &str = "192.0.2.2";
const GATEWAY_V6: &str = "2001:db8:1::2";
/// An address of the proxy's own `lo` that is public by class: only the `own` rule refuses it.
const OWN_LO: &str = "198.18.0.1/32";
/// Everything routed from the proxy's namespace to the far one, where each range is local to
/// `lo` (a `local` route), so that a connection to *any* address in it reaches an upstream and
/// is logged: the public documentation ranges, and every private class the proxy must never
/// reach, so a proxy that wrongly connects is seen doing it (not saved by a missing route).
const FAR_V4: &[&str] = &[
    "198.51.100.0/24",
    "203.0.113.0/24",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
];
const FAR_V6: &[&str] = &[
    "2001:db8:ffff::/48",
    "fc00::/7",
    "fec0::/10",
    "64:ff9b::/96",
];
/// Ports every upstream listens on, in both namespaces (dual-stack, any address).
pub const UPSTREAM_PORTS: &[u16] = &[22, 25, 80, 443, 8080, 8443, 9099, 65535];
/// First port of the proxies under test (one per allowlist group).
const PROXY_PORT_BASE: u16 = 19100;
/// Every read and wait of the suite is bounded by one of these.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const LINE_TIMEOUT: Duration = Duration::from_secs(4);
const TUNNEL_WAIT: Duration = Duration::from_millis(1500);
const SETTLE: Duration = Duration::from_millis(150);

// ---------------------------------------------------------------------------------------------
// The cases' vocabulary.

/// One allowlist (one proxy process) and its extra environment.
#[derive(Debug)]
pub struct Group {
    pub name: &'static str,
    pub allow: &'static str,
    pub env: &'static [(&'static str, &'static str)],
}

/// What the attacker sends.
#[derive(Debug)]
pub enum Req {
    /// Raw bytes, then read one response.
    Raw(Vec<u8>),
    /// `CONNECT authority` (with a matching `Host`), then on `200` these chunks in the tunnel,
    /// as separate writes 200 ms apart.
    Connect(String, Vec<Vec<u8>>),
    /// Two requests on one connection, the second sent after the first's response; the
    /// status and decision asserted are the second's.
    Two(Vec<u8>, Vec<u8>),
    /// This many connections held open first, each having sent the first bytes and read a
    /// response (say a `CONNECT` whose tunnel stays open), then the second bytes on one more.
    Crowd(usize, Vec<u8>, Vec<u8>),
    /// The bytes one at a time, this many milliseconds apart (slowloris), then read a response.
    Drip(Vec<u8>, u64),
    /// `CONNECT authority`, then nothing: the proxy must close the tunnel within this many
    /// seconds (the idle timeout).
    Silent(String, u64),
}

impl Req {
    /// The bytes of a raw request.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Req::Raw(b) => b,
            other => unreachable!("not a raw request: {other:?}"),
        }
    }
}

/// The status the attacker gets.
#[derive(Debug)]
pub enum St {
    Code(u16),
    /// Any of these (where the spec leaves the choice open); `0` stands for `Closed`.
    OneOf(&'static [u16]),
    /// No response at all: the connection is closed (or times out) first.
    Closed,
}

/// The decision line (and for `Refused`, the close line). Reasons are case-insensitive
/// substrings; `a|b` accepts either; `""` checks nothing.
#[derive(Debug)]
pub enum Dec {
    Allowed(&'static str),
    Denied(&'static str),
    /// A tunnel decided `allowed` (200) and then closed by the proxy; the close line's reason.
    Refused(&'static str),
    /// Nothing asserted about the log lines (where the spec says nothing).
    Any,
}

/// What the far side saw. Addresses are `ip:port` as the upstream was connected to.
#[derive(Debug)]
pub enum Far {
    /// No connection to any upstream in either namespace.
    Nothing,
    /// Connections only to this upstream, at least one.
    Conn(&'static str),
    /// Connections (if any) only to this upstream, and zero bytes reached it.
    Zero(&'static str),
    /// Exactly one connection, to this upstream, whose request head has exactly one `Host`
    /// header, equal (case-insensitively) to this.
    Host(&'static str, &'static str),
    /// Connections only to this upstream, whose bytes contain this (case-insensitively).
    Saw(&'static str, &'static str),
}

#[derive(Debug)]
pub struct Case {
    pub name: &'static str,
    pub group: &'static str,
    pub req: Req,
    pub status: St,
    pub dec: Dec,
    pub far: Far,
    /// The `host` the decision line must name (the canonical form), when set.
    pub log_host: Option<&'static str>,
}

impl Case {
    /// Also asserts the decision line's `host` (the canonical form of what was asked).
    pub fn logs_host(mut self, host: &'static str) -> Case {
        self.log_host = Some(host);
        self
    }
}

/// One line of the table.
pub fn c(
    name: &'static str,
    group: &'static str,
    req: Req,
    status: St,
    dec: Dec,
    far: Far,
) -> Case {
    Case {
        name,
        group,
        req,
        status,
        dec,
        far,
        log_host: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Namespaces.

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .or_else(|_| Command::new("/usr/sbin/ip").args(args).output())
        .map_err(|e| format!("cannot run ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The two namespaces and the resolver files; deleted on drop, whatever happened.
#[derive(Debug)]
pub struct Netns {
    pub ns: String,
    pub far: String,
    created: Vec<String>,
    etc: Option<std::path::PathBuf>,
    home: Option<File>,
}

impl Netns {
    /// `tag` tells apart the worlds of tests running at once in one process.
    pub fn create(tag: &str) -> Result<Netns, String> {
        let pid = std::process::id();
        let mut n = Netns {
            ns: format!("bt-adv-{pid}-{tag}"),
            far: format!("bt-adv-{pid}-{tag}-far"),
            created: Vec::new(),
            etc: None,
            home: None,
        };
        for name in [n.ns.clone(), n.far.clone()] {
            // A namespace of this name can only be a leftover of a crashed run whose pid was
            // ours: remove it first.
            let _ = ip(&["netns", "del", &name]);
            ip(&["netns", "add", &name])?;
            n.created.push(name);
        }
        let (ns, far) = (n.ns.as_str(), n.far.as_str());
        let mut steps: Vec<Vec<&str>> = vec![
            vec!["-n", ns, "link", "set", "lo", "up"],
            vec!["-n", far, "link", "set", "lo", "up"],
            vec![
                "-n", ns, "link", "add", "bt0", "type", "veth", "peer", "name", "bt1", "netns", far,
            ],
            vec!["-n", ns, "addr", "add", BUNDLE_V4, "dev", "bt0"],
            vec!["-n", ns, "addr", "add", BUNDLE_V6, "dev", "bt0", "nodad"],
            vec!["-n", ns, "addr", "add", OWN_LO, "dev", "lo"],
            vec!["-n", far, "addr", "add", "192.0.2.2/24", "dev", "bt1"],
            vec![
                "-n",
                far,
                "addr",
                "add",
                "2001:db8:1::2/64",
                "dev",
                "bt1",
                "nodad",
            ],
            vec!["-n", ns, "link", "set", "bt0", "up"],
            vec!["-n", far, "link", "set", "bt1", "up"],
        ];
        for net in FAR_V4 {
            steps.push(vec!["-n", ns, "route", "add", net, "via", GATEWAY_V4]);
            steps.push(vec!["-n", far, "route", "add", "local", net, "dev", "lo"]);
        }
        for net in FAR_V6 {
            steps.push(vec!["-n", ns, "-6", "route", "add", net, "via", GATEWAY_V6]);
            steps.push(vec![
                "-n", far, "-6", "route", "add", "local", net, "dev", "lo",
            ]);
        }
        for s in steps {
            ip(&s)?;
        }
        // What `ip netns exec` bind-mounts over /etc for the proxy: our resolver, with a search
        // list and ndots that would make a relative lookup visible.
        let etc = std::path::PathBuf::from("/etc/netns").join(&n.ns);
        std::fs::create_dir_all(&etc).map_err(|e| format!("cannot create {etc:?}: {e}"))?;
        n.etc = Some(etc.clone());
        for (file, text) in [
            (
                "resolv.conf",
                "nameserver 127.0.0.1\nsearch corp.example\noptions ndots:5 timeout:1 attempts:1\n",
            ),
            ("hosts", "127.0.0.1 localhost\n::1 localhost\n"),
            ("nsswitch.conf", "hosts: files dns\n"),
        ] {
            std::fs::write(etc.join(file), text)
                .map_err(|e| format!("cannot write {file}: {e}"))?;
        }
        n.home = Some(
            File::open("/proc/thread-self/ns/net")
                .map_err(|e| format!("cannot open this thread's namespace: {e}"))?,
        );
        Ok(n)
    }

    /// Moves this thread (and the threads it creates afterwards) into namespace `name`.
    pub fn enter(&self, name: &str) -> Result<(), String> {
        let f = File::open(format!("/run/netns/{name}"))
            .map_err(|e| format!("cannot open namespace {name}: {e}"))?;
        setns(&f, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns {name}: {e}"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(home) = &self.home {
            let _ = setns(home, CloneFlags::CLONE_NEWNET);
        }
        for name in self.created.iter().rev() {
            let _ = ip(&["netns", "del", name]);
        }
        if let Some(etc) = &self.etc {
            let _ = std::fs::remove_dir_all(etc);
            // /etc/netns itself, only if no one else has anything in it.
            if let Some(parent) = etc.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

/// Listeners created in one namespace before the runtime exists (a socket stays in the
/// namespace it was created in).
#[derive(Debug)]
pub struct Sockets {
    pub tcp: Vec<(&'static str, std::net::TcpListener)>,
    pub dns: Option<std::net::UdpSocket>,
}

/// Binds the upstream listeners of the current namespace, labelled `side`.
pub fn bind_upstreams(side: &'static str, into: &mut Sockets) -> Result<(), String> {
    for port in UPSTREAM_PORTS {
        let l = std::net::TcpListener::bind(("::", *port))
            .map_err(|e| format!("{side}: cannot listen on [::]:{port}: {e}"))?;
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
        into.tcp.push((side, l));
    }
    Ok(())
}

pub fn bind_dns(into: &mut Sockets) -> Result<(), String> {
    let u = std::net::UdpSocket::bind("127.0.0.1:53")
        .map_err(|e| format!("cannot bind the DNS responder: {e}"))?;
    u.set_nonblocking(true).map_err(|e| e.to_string())?;
    into.dns = Some(u);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The far side: upstreams and DNS, both logging.

#[derive(Debug, Clone)]
pub struct FarConn {
    pub side: &'static str,
    pub local: SocketAddr,
    pub bytes: Vec<u8>,
}

type Shared<T> = Arc<Mutex<Vec<T>>>;

fn canon(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// Accepts forever; records each connection and every byte it receives; answers anything
/// that looks like HTTP with 200 and the request head it got as the body.
pub fn spawn_upstream(side: &'static str, l: std::net::TcpListener, log: Shared<FarConn>) {
    tokio::spawn(async move {
        let l = TcpListener::from_std(l).unwrap();
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                sleep(Duration::from_millis(10)).await; // never a busy loop
                continue;
            };
            let local = canon(s.local_addr().unwrap());
            let idx = {
                let mut g = log.lock().unwrap();
                g.push(FarConn {
                    side,
                    local,
                    bytes: Vec::new(),
                });
                g.len() - 1
            };
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let deadline = Instant::now() + IO_TIMEOUT;
                let mut answered = false;
                while Instant::now() < deadline {
                    let n = match timeout(IO_TIMEOUT, s.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => n,
                        _ => break,
                    };
                    let head = {
                        let mut g = log.lock().unwrap();
                        g[idx].bytes.extend_from_slice(&buf[..n]);
                        g[idx].bytes.clone()
                    };
                    let http = head.first().is_some_and(|b| b.is_ascii_alphabetic());
                    if http && !answered {
                        if let Some(end) = find(&head, b"\r\n\r\n") {
                            let body = &head[..end + 4];
                            let resp = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            );
                            let _ = s.write_all(resp.as_bytes()).await;
                            let _ = s.write_all(body).await;
                            let _ = s.shutdown().await;
                            answered = true;
                        }
                    }
                }
            });
        }
    });
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The DNS table: lower-case name without the final dot to its addresses. A name not in it
/// is NXDOMAIN; a name in it without an address of the asked family is an empty NOERROR.
pub type Zone = BTreeMap<&'static str, Vec<IpAddr>>;

/// Answers A/AAAA from `zone` on the bound UDP socket; logs every query name as asked.
pub fn spawn_dns(u: std::net::UdpSocket, zone: Arc<Zone>, log: Shared<String>) {
    tokio::spawn(async move {
        let u = UdpSocket::from_std(u).unwrap();
        let mut buf = [0u8; 1500];
        let mut asked = std::collections::HashSet::new();
        loop {
            let Ok((n, from)) = u.recv_from(&mut buf).await else {
                sleep(Duration::from_millis(10)).await; // never a busy loop
                continue;
            };
            let Some(reply) = answer(&buf[..n], &zone, &log, &mut asked) else {
                continue;
            };
            let _ = u.send_to(&reply, from).await;
        }
    });
}

/// Logs `name TYPE`. A `flip.` name rebinds: its zone addresses on the first query of each
/// type, private ones (10.0.0.7, fd00::7) on every later query, so a proxy that looks a name
/// up again after checking it connects where the far side sees it.
fn answer(
    query: &[u8],
    zone: &Zone,
    log: &Shared<String>,
    asked_before: &mut std::collections::HashSet<String>,
) -> Option<Vec<u8>> {
    let q = Packet::parse(query).ok()?;
    let mut r = Packet::new_reply(q.id());
    r.set_flags(PacketFlag::AUTHORITATIVE_ANSWER | PacketFlag::RECURSION_AVAILABLE);
    if q.has_flags(PacketFlag::RECURSION_DESIRED) {
        r.set_flags(PacketFlag::RECURSION_DESIRED);
    }
    let question = q.questions.first()?.clone();
    let asked = question.qname.to_string();
    let entry = format!("{asked} {:?}", question.qtype);
    log.lock().unwrap().push(entry.clone());
    let key = asked.trim_end_matches('.').to_ascii_lowercase();
    if key.starts_with("silent.") {
        return None; // a resolver that never answers
    }
    let flipped: Vec<IpAddr> = vec![[10, 0, 0, 7].into(), "fd00::7".parse().unwrap()];
    let again = !asked_before.insert(entry.to_ascii_lowercase());
    let found = match zone.get(key.as_str()) {
        Some(_) if again && key.starts_with("flip") => Some(&flipped),
        other => other,
    };
    match found {
        None => *r.rcode_mut() = RCODE::NameError,
        Some(addrs) => {
            for a in addrs {
                let rdata = match (a, question.qtype) {
                    (IpAddr::V4(v4), QTYPE::TYPE(TYPE::A)) => RData::A(A {
                        address: u32::from(*v4),
                    }),
                    (IpAddr::V6(v6), QTYPE::TYPE(TYPE::AAAA)) => RData::AAAA(AAAA {
                        address: u128::from(*v6),
                    }),
                    _ => continue,
                };
                r.answers.push(ResourceRecord::new(
                    question.qname.clone(),
                    CLASS::IN,
                    5,
                    rdata,
                ));
            }
        }
    }
    r.questions.push(question);
    r.build_bytes_vec_compressed().ok()
}

// ---------------------------------------------------------------------------------------------
// The proxies.

#[derive(Debug)]
pub struct Proxy {
    pub group: &'static str,
    pub port: u16,
    child: Child,
}

type Lines = Shared<(u16, Value)>;

/// Starts `bottle-sidecars daemon egress` in namespace `ns` (so our resolv.conf is its), and
/// waits for its `listening on` line.
pub async fn spawn_proxy(
    ns: &str,
    group: &Group,
    port: u16,
    lines: Lines,
    stderr: Shared<String>,
) -> Result<Proxy, String> {
    let mut cmd = TokioCommand::new("ip");
    cmd.args(["netns", "exec", ns, &proxy_bin(), "daemon", "egress"])
        .env("BOTTLE_EGRESS_ALLOW", group.allow)
        .env("BOTTLE_EGRESS_PORT", port.to_string())
        .env("BOTTLE_EGRESS_HEADER_TIMEOUT_SECS", "2")
        .envs(group.env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the proxy of group {}: {e}", group.name))?;
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let mut err = BufReader::new(err).lines();
    let started = timeout(Duration::from_secs(15), async {
        while let Ok(Some(l)) = err.next_line().await {
            stderr.lock().unwrap().push(format!("[{}] {l}", group.name));
            if l.contains("listening on") {
                return true;
            }
        }
        false
    })
    .await;
    if started != Ok(true) {
        let _ = child.kill().await;
        return Err(format!(
            "the proxy of group {} (allow {:?}) did not say `listening on`; stderr: {:?}",
            group.name,
            group.allow,
            stderr.lock().unwrap()
        ));
    }
    let name = group.name;
    tokio::spawn(async move {
        while let Ok(Some(l)) = err.next_line().await {
            stderr.lock().unwrap().push(format!("[{name}] {l}"));
        }
    });
    tokio::spawn(async move {
        let mut out = BufReader::new(out).lines();
        while let Ok(Some(l)) = out.next_line().await {
            let v = serde_json::from_str(&l).unwrap_or(Value::String(format!("NOT JSON: {l}")));
            lines.lock().unwrap().push((port, v));
        }
    });
    Ok(Proxy {
        group: group.name,
        port,
        child,
    })
}

/// The proxy binary under test: the one this crate builds, or the one named by
/// `BOTTLE_ADVERSARIAL_PROXY` (to run the suite against another build of it).
fn proxy_bin() -> String {
    std::env::var("BOTTLE_ADVERSARIAL_PROXY")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_bottle-sidecars").to_string())
}

/// A proxy given `allow` must exit non-zero at once, without ever listening.
async fn refuses_to_start(ns: &str, allow: &str) -> Result<(), String> {
    let mut child = TokioCommand::new("ip")
        .args(["netns", "exec", ns, &proxy_bin(), "daemon", "egress"])
        .env("BOTTLE_EGRESS_ALLOW", allow)
        .env("BOTTLE_EGRESS_PORT", (PROXY_PORT_BASE + 99).to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the proxy: {e}"))?;
    let mut err = String::new();
    let mut pipe = child.stderr.take().unwrap();
    let waited = timeout(Duration::from_secs(10), async {
        let _ = pipe.read_to_string(&mut err).await;
        child.wait().await
    })
    .await;
    match waited {
        Ok(Ok(st)) if !st.success() && !err.contains("listening on") => Ok(()),
        Ok(Ok(st)) => Err(format!("it exited with {st}; stderr {err:?}")),
        Ok(Err(e)) => Err(format!("waiting for it failed: {e}")),
        Err(_) => {
            let _ = child.kill().await;
            Err(format!("it was still running after 10 s; stderr {err:?}"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The attacker's side.

#[derive(Debug, Default)]
pub struct Seen {
    pub status: Option<u16>,
    pub head: String,
    /// For `Silent`: whether the proxy closed the connection in time.
    pub closed: bool,
}

/// Reads one response head (and its Content-Length body); `status: None` if the connection
/// closed or stayed silent first.
async fn read_response(s: &mut TcpStream) -> Seen {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut buf = Vec::new();
    let mut b = [0u8; 1024];
    let end = loop {
        if let Some(e) = find(&buf, b"\r\n\r\n") {
            break e + 4;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, s.read(&mut b)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&b[..n]),
            _ => return Seen::default(),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok());
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut have = buf.len() - end;
    while have < len.min(1 << 20) {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, s.read(&mut b)).await {
            Ok(Ok(n)) if n > 0 => have += n,
            _ => break,
        }
    }
    Seen {
        status,
        head,
        closed: false,
    }
}

/// Everything the suite shares while it runs.
#[derive(Debug)]
pub struct World {
    pub far: Shared<FarConn>,
    pub dns: Shared<String>,
    pub lines: Lines,
    pub stderr: Shared<String>,
}

/// Whether log line `v` is about the connection from `client` (`ip:port`, any IPv4 spelling:
/// an IPv4-mapped `[::ffff:127.0.0.1]:p` is the same client).
pub fn is_client(v: &Value, client: &str) -> bool {
    let parse = |s: &str| s.parse::<SocketAddr>().ok().map(canon);
    match (v["client"].as_str().and_then(parse), parse(client)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

pub fn since<T: Clone>(v: &Shared<T>, from: usize) -> Vec<T> {
    v.lock().unwrap()[from..].to_vec()
}

fn reason_matches(got: &Value, want: &str) -> bool {
    if want.is_empty() {
        return true;
    }
    let got = got.as_str().unwrap_or("").to_ascii_lowercase();
    want.split('|')
        .any(|w| got.contains(&w.to_ascii_lowercase()))
}

/// Sends `req` to the proxy on `port` as the attacker; returns the response seen and the
/// client address the proxy's lines name.
pub async fn exchange(
    w: &World,
    port: u16,
    req: &Req,
    far0: usize,
) -> Result<(Seen, String), String> {
    let mut s = match timeout(IO_TIMEOUT, TcpStream::connect(("127.0.0.1", port))).await {
        Ok(Ok(s)) => s,
        other => return Err(format!("cannot connect to the proxy: {other:?}")),
    };
    let client = s.local_addr().unwrap().to_string();
    let mut crowd = Vec::new();
    let seen = match req {
        Req::Raw(bytes) => {
            let _ = s.write_all(bytes).await;
            read_response(&mut s).await
        }
        Req::Two(first, second) => {
            let _ = s.write_all(first).await;
            let _ = read_response(&mut s).await;
            let _ = s.write_all(second).await;
            read_response(&mut s).await
        }
        Req::Crowd(n, opener, bytes) => {
            // `s` is the first of the crowd; the request goes on the one after it.
            crowd.push(s);
            for _ in 1..*n {
                if let Ok(Ok(c)) =
                    timeout(IO_TIMEOUT, TcpStream::connect(("127.0.0.1", port))).await
                {
                    crowd.push(c);
                }
            }
            for c in &mut crowd {
                let _ = c.write_all(opener).await;
                let _ = read_response(c).await;
            }
            sleep(Duration::from_millis(200)).await;
            s = match timeout(IO_TIMEOUT, TcpStream::connect(("127.0.0.1", port))).await {
                Ok(Ok(s)) => s,
                other => return Err(format!("cannot connect to the proxy: {other:?}")),
            };
            let _ = s.write_all(bytes).await;
            read_response(&mut s).await
        }
        Req::Drip(bytes, ms) => {
            // Bounded by the byte count; stops at the first failed write (the proxy closed).
            for b in bytes {
                if s.write_all(&[*b]).await.is_err() {
                    break;
                }
                sleep(Duration::from_millis(*ms)).await;
            }
            read_response(&mut s).await
        }
        Req::Silent(authority, secs) => {
            let head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
            let _ = s.write_all(head.as_bytes()).await;
            let mut seen = read_response(&mut s).await;
            let mut b = [0u8; 64];
            seen.closed = matches!(
                timeout(Duration::from_secs(*secs), s.read(&mut b)).await,
                Ok(Ok(0)) | Ok(Err(_))
            );
            seen
        }
        Req::Connect(authority, then) => {
            let head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
            let _ = s.write_all(head.as_bytes()).await;
            let seen = read_response(&mut s).await;
            if seen.status == Some(200) {
                for (i, chunk) in then.iter().enumerate() {
                    if i > 0 {
                        sleep(Duration::from_millis(200)).await;
                    }
                    let _ = s.write_all(chunk).await;
                }
                // Until the proxy closes the tunnel, or the far side got bytes, or time is up.
                let deadline = Instant::now() + TUNNEL_WAIT;
                let mut b = [0u8; 1024];
                while Instant::now() < deadline {
                    if since(&w.far, far0).iter().any(|c| !c.bytes.is_empty()) {
                        break;
                    }
                    match timeout(Duration::from_millis(100), s.read(&mut b)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        _ => {}
                    }
                }
            }
            seen
        }
    };
    let client = s.local_addr().map_or(client, |a| a.to_string());
    drop(s);
    if !crowd.is_empty() {
        drop(crowd);
        // Let the proxy see the crowd leave before the next case.
        sleep(Duration::from_millis(300)).await;
    }
    Ok((seen, client))
}

/// Runs one case against the proxy on `port`; every mismatch is one string.
pub async fn run_case(w: &World, port: u16, case: &Case) -> Vec<String> {
    let mut errs = Vec::new();
    let (far0, dns0, lines0) = (
        w.far.lock().unwrap().len(),
        w.dns.lock().unwrap().len(),
        w.lines.lock().unwrap().len(),
    );
    let (seen, client) = match exchange(w, port, &case.req, far0).await {
        Ok(r) => r,
        Err(e) => return vec![e],
    };

    if matches!(case.req, Req::Silent(..)) && !seen.closed {
        errs.push("the silent tunnel was still open after the idle timeout".into());
    }

    // The status.
    let ok = match (&case.status, seen.status) {
        (St::Code(want), Some(got)) => *want == got,
        (St::OneOf(want), got) => want.contains(&got.unwrap_or(0)),
        (St::Closed, None) => true,
        _ => false,
    };
    if !ok {
        errs.push(format!(
            "status: want {:?}, got {} ({:?})",
            case.status,
            seen.status
                .map_or("no response (closed or silent)".into(), |s| s.to_string()),
            seen.head.lines().next().unwrap_or("")
        ));
    }

    // The decision line (and the close line of a refused tunnel).
    let plain = matches!(case.req, Req::Raw(_) | Req::Two(..));
    let want_close = matches!(case.dec, Dec::Refused(_))
        || (plain && matches!(case.dec, Dec::Allowed(_)) && seen.status == Some(200));
    let want_lines = match (&case.dec, &case.req) {
        (Dec::Any, _) => 0,
        (_, Req::Two(..)) if seen.status.is_none() => 0,
        (_, Req::Two(..)) => 2,
        _ => 1,
    };
    let deadline = Instant::now() + LINE_TIMEOUT;
    let mine = |ev: &str| -> Vec<Value> {
        since(&w.lines, lines0)
            .into_iter()
            .filter(|(p, v)| *p == port && is_client(v, &client) && v["event"] == ev)
            .map(|(_, v)| v)
            .collect()
    };
    while Instant::now() < deadline
        && (mine("decision").len() < want_lines || (want_close && mine("close").is_empty()))
    {
        sleep(Duration::from_millis(20)).await;
    }
    sleep(SETTLE).await;
    let decisions = mine("decision");
    match (decisions.len(), decisions.last()) {
        (_, _) if want_lines == 0 => {}
        (0, _) | (_, None) => errs.push(format!("no decision line with client {client}")),
        (n, Some(d)) if n == want_lines => check_decision(d, case, seen.status, &mut errs),
        (n, _) => errs.push(format!(
            "{n} decision lines, want {want_lines}: {decisions:?}"
        )),
    }
    for l in mine("close") {
        for field in ["bytes_up", "bytes_down", "duration_ms"] {
            if !l[field].is_u64() {
                errs.push(format!("close line: {field} is not a number: {l}"));
            }
        }
    }
    if want_close && !matches!(case.dec, Dec::Refused(_)) {
        match mine("close").last() {
            None => errs.push("no close line for the allowed exchange".into()),
            Some(l) if l["status"] != 200 => {
                errs.push(format!("close line status: want 200 (the upstream's): {l}"))
            }
            Some(_) => {}
        }
    }
    if let Dec::Refused(why) = case.dec {
        match mine("close").first() {
            None => errs.push("no close line for the refused tunnel".into()),
            Some(l) if !reason_matches(&l["reason"], why) => {
                errs.push(format!("close reason: want {why:?}, got {}", l["reason"]))
            }
            Some(_) => {}
        }
    }
    for (p, v) in since(&w.lines, lines0) {
        if p == port && !v.is_object() {
            errs.push(format!("a log line that is not a JSON object: {v}"));
        }
    }

    // The far side; and no connection without an allowed decision line naming it.
    let conns = since(&w.far, far0);
    check_far(&case.far, &conns, &mut errs);
    let allowed_addrs: Vec<SocketAddr> = since(&w.lines, lines0)
        .into_iter()
        .filter(|(p, v)| *p == port && v["event"] == "decision" && v["decision"] == "allowed")
        .filter_map(|(_, v)| v["addr"].as_str()?.parse().ok())
        .map(canon)
        .collect();
    for c in &conns {
        if !allowed_addrs.contains(&c.local) {
            errs.push(format!(
                "far side: {} was connected to without an allowed decision line naming it",
                c.local
            ));
        }
    }

    // The resolver.
    let queries = since(&w.dns, dns0);
    // One request (not two, not a crowd) looks each name up once.
    let single = !matches!(case.req, Req::Two(..) | Req::Crowd(..));
    let mut once = std::collections::HashSet::new();
    for q in &queries {
        if !once.insert(q.to_ascii_lowercase()) && single {
            errs.push(format!(
                "looked up twice (a second lookup is a rebinding window): {q}"
            ));
        }
    }
    if let Some(q) = queries
        .iter()
        .find(|q| q.to_ascii_lowercase().contains("corp.example"))
    {
        errs.push(format!("search-list leak: the resolver was asked {q:?}"));
    }
    let resolves = match case.dec {
        Dec::Denied(r) => r.contains("resolves to"),
        _ => true,
    };
    if !resolves && matches!(case.far, Far::Nothing) && !queries.is_empty() {
        errs.push(format!(
            "denied before resolution, but names were looked up: {queries:?}"
        ));
    }
    errs
}

fn check_decision(d: &Value, case: &Case, status: Option<u16>, errs: &mut Vec<String>) {
    for field in ["time", "client", "method", "host"] {
        if !d[field].is_string() {
            errs.push(format!("decision line: {field} is not a string: {d}"));
        }
    }
    if d["daemon"] != "egress" || !d["conn"].is_u64() || !d["port"].is_u64() {
        errs.push(format!("decision line: bad daemon/conn/port: {d}"));
    }
    let (want, why) = match case.dec {
        Dec::Allowed(w) => ("allowed", w),
        Dec::Denied(w) => ("denied", w),
        Dec::Refused(_) => ("allowed", ""),
        Dec::Any => return,
    };
    if d["decision"] != want {
        errs.push(format!(
            "decision: want {want}, got {} (reason {})",
            d["decision"], d["reason"]
        ));
    }
    if let Some(h) = case.log_host {
        if d["host"] != h {
            errs.push(format!("decision host: want {h:?}, got {}", d["host"]));
        }
    }
    if !reason_matches(&d["reason"], why) {
        errs.push(format!("reason: want {why:?}, got {}", d["reason"]));
    }
    // A refusal's line carries the status the attacker got; so does a tunnel's 200.
    let tunnel = matches!(case.req, Req::Connect(..) | Req::Silent(..));
    if (want == "denied" || tunnel || status == Some(502)) && status.is_some() {
        let got = d["status"].as_u64();
        if got != status.map(u64::from) {
            errs.push(format!(
                "decision line status {:?}, but the client got {status:?}",
                got
            ));
        }
    }
    let far = match case.far {
        Far::Conn(a) | Far::Zero(a) | Far::Host(a, _) | Far::Saw(a, _) => Some(a),
        Far::Nothing => None,
    };
    if let (Some(a), "allowed") = (far, want) {
        let got = d["addr"]
            .as_str()
            .and_then(|s| s.parse::<SocketAddr>().ok());
        if got.map(canon) != a.parse::<SocketAddr>().ok() {
            errs.push(format!("decision addr: want {a}, got {}", d["addr"]));
        }
    }
}

fn check_far(far: &Far, conns: &[FarConn], errs: &mut Vec<String>) {
    let show = |cs: &[FarConn]| -> String {
        cs.iter()
            .map(|c| {
                format!(
                    "{}:{} got {} bytes {:?}",
                    c.side,
                    c.local,
                    c.bytes.len(),
                    String::from_utf8_lossy(&c.bytes[..c.bytes.len().min(80)])
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let want = match far {
        Far::Nothing => {
            if !conns.is_empty() {
                errs.push(format!("far side: want no connection, saw {}", show(conns)));
            }
            return;
        }
        Far::Conn(a) | Far::Zero(a) | Far::Host(a, _) | Far::Saw(a, _) => {
            a.parse::<SocketAddr>().unwrap()
        }
    };
    let elsewhere: Vec<FarConn> = conns.iter().filter(|c| c.local != want).cloned().collect();
    if !elsewhere.is_empty() {
        errs.push(format!(
            "far side: connections other than to {want}: {}",
            show(&elsewhere)
        ));
    }
    let here: Vec<&FarConn> = conns.iter().filter(|c| c.local == want).collect();
    let lower = |c: &FarConn| String::from_utf8_lossy(&c.bytes).to_ascii_lowercase();
    match far {
        Far::Zero(_) if here.iter().any(|c| !c.bytes.is_empty()) => {
            errs.push(format!("far side: bytes reached {want}: {}", show(conns)));
        }
        Far::Conn(_) if here.is_empty() => errs.push(format!("far side: {want} saw no connection")),
        Far::Saw(_, s)
            if !here
                .iter()
                .any(|c| lower(c).contains(&s.to_ascii_lowercase())) =>
        {
            errs.push(format!(
                "far side: {want} did not get {s:?}: {}",
                show(conns)
            ))
        }
        Far::Host(_, h) => match here.as_slice() {
            [one] => {
                let head = lower(one);
                let hosts: Vec<&str> = head
                    .split("\r\n")
                    .skip(1)
                    .take_while(|l| !l.is_empty())
                    .filter_map(|l| l.strip_prefix("host:"))
                    .map(str::trim)
                    .collect();
                if hosts != [h.to_ascii_lowercase()] {
                    errs.push(format!("far side: Host headers {hosts:?}, want [{h:?}]"));
                }
            }
            _ => errs.push(format!(
                "far side: want one connection to {want}, saw {}",
                show(conns)
            )),
        },
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// The run.

/// Whether the suite can run here: root, `ip`, network namespaces. Outside CI it skips with a
/// note when it cannot; in CI (`CI` set) that is a failure.
fn skip(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("the adversarial suite cannot run: {why}");
    }
    eprintln!("adversarial suite skipped: {why} (it needs root and iproute2)");
}

/// A running world: the namespaces, the far side, one proxy per group. Fields drop in this
/// order: the proxies (killed), the runtime, the namespaces (deleted).
#[derive(Debug)]
pub struct Env {
    pub proxies: Vec<Proxy>,
    pub w: World,
    pub rt: tokio::runtime::Runtime,
    pub net: Netns,
    pub groups: &'static [Group],
    /// Proxies that did not start.
    pub setup_errors: Vec<String>,
}

/// Makes the world for `groups`; `None` when it cannot be made here outside CI (skipped).
pub fn start(tag: &str, groups: &'static [Group], zone: Zone) -> Option<Env> {
    let net = match Netns::create(tag) {
        Ok(n) => n,
        // The guard of a half-made setup is dropped here, deleting what it made.
        Err(e) => {
            skip(&e);
            return None;
        }
    };
    let mut sockets = Sockets {
        tcp: Vec::new(),
        dns: None,
    };
    let setup = net
        .enter(&net.far)
        .and_then(|()| bind_upstreams("far", &mut sockets))
        .and_then(|()| net.enter(&net.ns))
        .and_then(|()| bind_upstreams("proxy-ns", &mut sockets))
        .and_then(|()| bind_dns(&mut sockets));
    if let Err(e) = setup {
        panic!("setting up the namespaces failed: {e}");
    }
    // Built in the proxy's namespace: its worker threads, and every socket made from here
    // on, are in it. Two workers keep the far side serving between `block_on` calls.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let w = World {
        far: Arc::default(),
        dns: Arc::default(),
        lines: Arc::default(),
        stderr: Arc::default(),
    };
    let mut setup_errors = Vec::new();
    let proxies = rt.block_on(async {
        for (side, l) in sockets.tcp {
            spawn_upstream(side, l, w.far.clone());
        }
        spawn_dns(sockets.dns.unwrap(), Arc::new(zone), w.dns.clone());
        let mut proxies = Vec::new();
        for (i, g) in groups.iter().enumerate() {
            let port = PROXY_PORT_BASE + i as u16;
            match spawn_proxy(&net.ns, g, port, w.lines.clone(), w.stderr.clone()).await {
                Ok(p) => proxies.push(p),
                Err(e) => setup_errors.push(e),
            }
        }
        proxies
    });
    Some(Env {
        proxies,
        w,
        rt,
        net,
        groups,
        setup_errors,
    })
}

impl Env {
    /// Runs `case` on its group's proxy; restarts a proxy that exited. A proxy killed from
    /// outside (SIGTERM or SIGKILL, which it never sends itself) gets the case run again once;
    /// any other exit fails the case.
    pub async fn run_one(
        w: &World,
        net: &Netns,
        groups: &[Group],
        proxies: &mut [Proxy],
        case: &Case,
    ) -> Vec<String> {
        let Some(i) = proxies.iter().position(|p| p.group == case.group) else {
            return vec!["no proxy for this group".into()];
        };
        let mut errs = Vec::new();
        for _ in 0..2 {
            errs = run_case(w, proxies[i].port, case).await;
            let Some(exit) =
                Self::restart_if_dead(w, net, groups, &mut proxies[i], &mut errs).await
            else {
                break;
            };
            if !matches!(exit.signal(), Some(15) | Some(9)) {
                errs.push(format!("the proxy exited ({exit}); restarted it"));
                break;
            }
            let note = format!(
                "[{}] killed from outside ({exit}): restarted, {:?} run again",
                case.group, case.name
            );
            w.stderr.lock().unwrap().push(note);
        }
        errs
    }

    /// Restarts `p` if it has exited; returns how it exited.
    pub async fn restart_if_dead(
        w: &World,
        net: &Netns,
        groups: &[Group],
        p: &mut Proxy,
        errs: &mut Vec<String>,
    ) -> Option<std::process::ExitStatus> {
        let exit = p.child.try_wait().ok()??;
        let g = groups.iter().find(|g| g.name == p.group).unwrap();
        match spawn_proxy(&net.ns, g, p.port, w.lines.clone(), w.stderr.clone()).await {
            Ok(new) => *p = new,
            Err(e) => errs.push(e),
        }
        Some(exit)
    }

    /// The last lines the proxies wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        let err = self.w.stderr.lock().unwrap();
        err[err.len().saturating_sub(20)..].join("\n")
    }
}

/// The table: every case, then one failure listing all that failed.
pub fn run(groups: &'static [Group], zone: Zone, cases: Vec<Case>, bad_allowlists: &[&str]) {
    let Some(mut env) = start("t", groups, zone) else {
        return;
    };
    let mut failures = std::mem::take(&mut env.setup_errors);
    let Env {
        proxies,
        w,
        rt,
        net,
        groups,
        ..
    } = &mut env;
    rt.block_on(async {
        for allow in bad_allowlists {
            if let Err(e) = refuses_to_start(&net.ns, allow).await {
                failures.push(format!(
                    "allowlist {allow:?} must be refused at start\n  - {e}"
                ));
            }
        }
        for case in &cases {
            let errs = Env::run_one(w, net, groups, proxies, case).await;
            if !errs.is_empty() {
                failures.push(format!(
                    "{} [{}] {}\n  - {}",
                    case.name,
                    case.group,
                    show_req(&case.req),
                    errs.join("\n  - ")
                ));
            }
        }
    });
    let stderr = env.stderr_tail();
    drop(env);
    let total = cases.len() + bad_allowlists.len();
    if !failures.is_empty() {
        panic!(
            "{} of {total} adversarial cases failed:\n\n{}\n\nthe proxies' stderr (last lines):\n{stderr}",
            failures.len(),
            failures.join("\n\n")
        );
    }
    eprintln!("{total} adversarial cases passed");
}

/// A request as a short readable string for failure messages.
pub fn show_req(r: &Req) -> String {
    let text = |b: &[u8]| {
        let s: String = String::from_utf8_lossy(&b[..b.len().min(160)]).into_owned();
        format!("{s:?}")
    };
    match r {
        Req::Raw(b) => text(b),
        Req::Connect(a, then) => format!("CONNECT {a} then {}", text(&then.concat())),
        Req::Two(a, b) => format!("{} then {}", text(a), text(b)),
        Req::Drip(b, ms) => format!("{} a byte every {ms} ms", text(b)),
        Req::Silent(a, secs) => format!("CONNECT {a} then {secs} s of silence"),
        Req::Crowd(n, o, b) => format!("{n} connections sending {}, then {}", text(o), text(b)),
    }
}
