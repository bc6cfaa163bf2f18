//! The upstream every contender reaches: a hyper HTTP/1.1 server with a tiny fixed response
//! (keep-alive capable), and a raw TCP sink and source for tunnel throughput, both on loopback.
//!
//! It runs in a process of its own (the bench executable as `__upstream`, on a current-thread
//! runtime), so its CPU time can be read apart from the load generator's and the proxy's.
//!
//! The tunnel port speaks a 9-byte header: `U` or `D`, then a big-endian `u64` byte count.
//! `U`: the sink reads that many bytes and answers one byte `K`. `D`: the source writes that many
//! bytes, then waits for the client to close.

use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The body of every response: tiny, as an API's small answer is.
pub const BODY: &[u8] = b"hello from the upstream\n";
/// The path that answers `<connections accepted> <requests served>` instead of [`BODY`].
pub const STATS_PATH: &str = "/__stats";
/// Read and write size of the tunnel sink and source, and of the load generator.
pub const CHUNK: usize = 64 * 1024;
/// How long the source waits for the client to close after the last byte.
const LINGER: Duration = Duration::from_secs(10);

/// Where the upstream listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upstream {
    /// The HTTP server.
    pub http: SocketAddr,
    /// The tunnel sink and source.
    pub tunnel: SocketAddr,
}

impl Upstream {
    /// The line the upstream process prints once both ports listen.
    pub fn line(&self) -> String {
        format!("{} {}", self.http.port(), self.tunnel.port())
    }

    /// Reads [`Upstream::line`].
    pub fn parse(line: &str) -> Option<Upstream> {
        let (h, t) = line.trim().split_once(' ')?;
        Some(Upstream {
            http: SocketAddr::from((Ipv4Addr::LOCALHOST, h.parse().ok()?)),
            tunnel: SocketAddr::from((Ipv4Addr::LOCALHOST, t.parse().ok()?)),
        })
    }
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
}

/// Binds both ports, prints [`Upstream::line`] on stdout, and serves until killed.
pub async fn serve() -> Result<(), String> {
    let bind = || async {
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(|e| format!("upstream cannot bind a loopback port: {e}"))
    };
    let (http, tunnel) = (bind().await?, bind().await?);
    let addr = |l: &TcpListener| l.local_addr().map_err(|e| e.to_string());
    let up = Upstream {
        http: addr(&http)?,
        tunnel: addr(&tunnel)?,
    };
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", up.line());
        let _ = out.flush();
    }
    let counters = Arc::new(Counters::default());
    tokio::spawn(async move {
        loop {
            if let Ok((s, _)) = tunnel.accept().await {
                let _ = s.set_nodelay(true);
                tokio::spawn(async move {
                    let _ = tunnel_conn(s).await;
                });
            }
        }
    });
    loop {
        let Ok((s, _)) = http.accept().await else {
            continue;
        };
        let _ = s.set_nodelay(true);
        counters.connections.fetch_add(1, Ordering::Relaxed);
        let counters = counters.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let counters = counters.clone();
                async move {
                    let n = counters.requests.fetch_add(1, Ordering::Relaxed) + 1;
                    let body = if req.uri().path() == STATS_PATH {
                        Bytes::from(format!(
                            "{} {}\n",
                            counters.connections.load(Ordering::Relaxed),
                            n
                        ))
                    } else {
                        Bytes::from_static(BODY)
                    };
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "text/plain")
                            .body(Full::new(body))
                            .expect("a fixed response is valid"),
                    )
                }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .keep_alive(true)
                .serve_connection(TokioIo::new(s), service)
                .await;
        });
    }
}

/// One tunnel connection: the sink (`U`) or the source (`D`).
async fn tunnel_conn(mut s: TcpStream) -> io::Result<()> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await?;
    let mut n = [0u8; 8];
    n.copy_from_slice(&head[1..]);
    let mut left = u64::from_be_bytes(n);
    let mut buf = vec![0x5a_u8; CHUNK];
    match head[0] {
        b'U' => {
            while left > 0 {
                let k = s.read(&mut buf).await?;
                if k == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                left = left.saturating_sub(k as u64);
            }
            s.write_all(b"K").await?;
            s.flush().await
        }
        b'D' => {
            while left > 0 {
                let k = left.min(CHUNK as u64) as usize;
                s.write_all(&buf[..k]).await?;
                left -= k as u64;
            }
            // The client closes once it has read everything; closing first could lose the tail.
            let _ = tokio::time::timeout(LINGER, s.read(&mut buf)).await;
            Ok(())
        }
        _ => Err(io::ErrorKind::InvalidData.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ports_line_round_trips() {
        let up = Upstream {
            http: "127.0.0.1:4100".parse().unwrap(),
            tunnel: "127.0.0.1:4101".parse().unwrap(),
        };
        assert_eq!(Upstream::parse(&up.line()), Some(up));
        assert_eq!(Upstream::parse("4100"), None);
    }
}
