//! `CONNECT host:port`: decided, connected, answered `200`, then the two streams spliced until
//! either side ends or the tunnel idles out; one close line with the bytes each way.
//!
//! A tunnel to a TLS port (443, or one a rule marks `/tls`) is held until the client's first
//! flight is read: it must be a TLS ClientHello naming the tunnel's host ([`super::tls`]), or
//! the tunnel is closed before a byte reaches the upstream. `CONNECT` to port 80 is refused: plain HTTP goes through the
//! proxy in absolute form, where its `Host` is checked.

use std::sync::Arc;
use std::time::Instant;

use bottle_core::allowlist::Host;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::io::{Activity, Tracked};
use super::target::{parse_authority, Target};
use super::tls::{parse_client_hello, MAX_HELLO};
use super::{Body, Conn, EventKind, Proxy, Record, Refusal, Verdict};

/// Ports whose tunnels must carry TLS.
pub const TLS_PORTS: [u16; 1] = [443];
/// Copy buffers for each direction of a tunnel: large enough for bulk transfers to move in
/// few system calls, small enough that a thousand idle tunnels cost little.
const TUNNEL_BUF: usize = 64 * 1024;

impl Proxy {
    pub(super) async fn tunnel(
        &self,
        conn: &Arc<Conn>,
        record: &mut Record,
        mut req: Request<Incoming>,
    ) -> Result<Response<Body>, Refusal> {
        // Authority-form only (RFC 9110 §9.3.6): a scheme or a path is another request's target.
        let uri = req.uri();
        if uri.scheme().is_some() || uri.path_and_query().is_some() {
            return Err(Refusal::bad_request(format!(
                "CONNECT needs a host:port target, got {:?}",
                uri.to_string()
            )));
        }
        let authority = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .ok_or_else(|| {
                Refusal::bad_request(format!(
                    "CONNECT needs a host:port target, got {:?}",
                    req.uri().to_string()
                ))
            })?;
        let target = parse_authority(&authority, None).map_err(Refusal::bad_request)?;
        record.set_target(&target);
        Self::check_host_header(&req, &target, None)?;
        if target.port == 80 {
            return Err(Refusal::forbidden(
                "CONNECT to port 80 is refused: send plain HTTP as an absolute-form request".into(),
                format!(
                    "bottle egress: CONNECT to {} refused: send plain HTTP through the proxy \
                     as an absolute-form request (GET http://{}/...), where its Host is checked\n",
                    target.host_port(),
                    target.host_header(80)
                ),
            ));
        }
        let addrs = self.decide(&record.method, &target, &[]).await?;
        let (upstream, addr) = self.dial(&target, &addrs).await?;
        let mut decided = record.decision(Verdict::Allowed, Some(200), None);
        decided.addr = Some(addr);
        (self.log)(decided);

        let on_upgrade = hyper::upgrade::on(&mut req);
        let log = self.log.clone();
        let mut close = record.event(EventKind::Close);
        close.addr = Some(addr);
        close.status = Some(200);
        let conn = conn.clone();
        let limits = self.limits.clone();
        // Port 443, or a port a rule marks `/tls`: the first flight must be a ClientHello.
        let tls = TLS_PORTS.contains(&target.port)
            || self.policy.allow.requires_tls(&target.host, target.port);
        tokio::spawn(async move {
            let started = Instant::now();
            // The client's side keeps the connection's activity; the upstream's adds to it.
            let activity: Activity = conn.activity.clone();
            let mut up = Tracked::new(upstream, activity.clone());
            let outcome = match on_upgrade.await {
                // Our own client socket under hyper's upgrade: tunnelled with splice(2).
                Ok(client) => match client.downcast::<TokioIo<Tracked<TcpStream>>>() {
                    Ok(parts) => {
                        let mut client = parts.io.into_inner();
                        let early = parts.read_buf.to_vec();
                        carry_spliced(
                            &mut client,
                            early,
                            &mut up,
                            &target,
                            tls,
                            &activity,
                            &limits,
                        )
                        .await
                    }
                    Err(client) => {
                        let mut client = TokioIo::new(client);
                        carry(&mut client, &mut up, &target, tls, &activity, &limits).await
                    }
                },
                Err(e) => Err(format!("client left before the tunnel opened: {e}")),
            };
            close.reason = outcome.err();
            close.bytes_up = Some(up.written.load(std::sync::atomic::Ordering::Relaxed));
            close.bytes_down = Some(up.read.load(std::sync::atomic::Ordering::Relaxed));
            close.duration_ms = Some(started.elapsed().as_millis() as u64);
            log(close);
            // Hold the connection's slot under the cap until the tunnel is over.
            drop(conn);
        });
        Ok(Response::new(super::empty()))
    }
}

/// Checks a TLS port's first flight, then splices until either side ends or nothing moves for
/// the idle timeout. `Err` carries why the tunnel ended abnormally.
async fn carry<C>(
    client: &mut C,
    up: &mut Tracked<TcpStream>,
    target: &Target,
    tls: bool,
    activity: &Activity,
    limits: &super::Limits,
) -> Result<(), String>
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if tls {
        let first = tokio::time::timeout(
            limits.header_timeout,
            read_hello(client, Vec::new(), target),
        )
        .await
        .map_err(|_| {
            format!(
                "tunnel closed: no TLS ClientHello within {} s",
                limits.header_timeout.as_secs()
            )
        })??;
        up.write_all(&first)
            .await
            .map_err(|e| format!("tunnel ended: {e}"))?;
    }
    let splice = tokio::io::copy_bidirectional_with_sizes(client, up, TUNNEL_BUF, TUNNEL_BUF);
    tokio::select! {
        r = splice => r.map(drop).map_err(|e| format!("tunnel ended: {e}")),
        () = activity.idle(limits.idle_timeout) => Err(format!(
            "tunnel closed: idle for {} s", limits.idle_timeout.as_secs()
        )),
    }
}

/// [`carry`] for a client that is our own socket: the bytes hyper read past the CONNECT head
/// (`early`) and the ClientHello check first, then splice(2) both ways.
async fn carry_spliced(
    client: &mut Tracked<TcpStream>,
    early: Vec<u8>,
    up: &mut Tracked<TcpStream>,
    target: &Target,
    tls: bool,
    activity: &Activity,
    limits: &super::Limits,
) -> Result<(), String> {
    let first = if tls {
        tokio::time::timeout(limits.header_timeout, read_hello(client, early, target))
            .await
            .map_err(|_| {
                format!(
                    "tunnel closed: no TLS ClientHello within {} s",
                    limits.header_timeout.as_secs()
                )
            })??
    } else {
        early
    };
    up.write_all(&first)
        .await
        .map_err(|e| format!("tunnel ended: {e}"))?;
    let (sent, received) = (&up.written, &up.read);
    let splice = super::splice::both_ways(client.get_ref(), up.get_ref(), sent, received, activity);
    tokio::select! {
        r = splice => r.map_err(|e| format!("tunnel ended: {e}")),
        () = activity.idle(limits.idle_timeout) => Err(format!(
            "tunnel closed: idle for {} s", limits.idle_timeout.as_secs()
        )),
    }
}

/// Reads the client's ClientHello (after the `early` bytes already read) and checks its server
/// name; returns the bytes read, which go to the upstream unchanged.
async fn read_hello<C>(client: &mut C, early: Vec<u8>, target: &Target) -> Result<Vec<u8>, String>
where
    C: tokio::io::AsyncRead + Unpin,
{
    let mut buf = early;
    let mut chunk = [0u8; 4096];
    loop {
        match parse_client_hello(&buf) {
            Ok(Some(hello)) => {
                return match hello.sni {
                    None => Ok(buf),
                    Some(sni) if sni_names(&sni, &target.host) => Ok(buf),
                    Some(sni) => Err(format!(
                        "tunnel closed: SNI {sni} does not match the CONNECT host {}",
                        target.host
                    )),
                }
            }
            Ok(None) if buf.len() < MAX_HELLO + 5 => {}
            Ok(None) => return Err("tunnel closed: TLS ClientHello too large".into()),
            Err(why) => return Err(format!("tunnel closed: {why}")),
        }
        let n = client
            .read(&mut chunk)
            .await
            .map_err(|e| format!("tunnel ended before a TLS ClientHello: {e}"))?;
        if n == 0 {
            return Err("tunnel ended before a TLS ClientHello".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Whether an SNI names `host`: the same name in any case, with or without a trailing dot.
fn sni_names(sni: &str, host: &Host) -> bool {
    Host::parse(sni).is_some_and(|h| h == *host)
}
