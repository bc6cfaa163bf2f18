//! Zero-copy tunnels: bytes move socket to pipe to socket inside the kernel (`splice(2)`),
//! never through the proxy's memory. Measured in `cargo xtask bench proxy`; the copying path
//! (`tokio::io::copy_bidirectional`) remains for streams that are not plain sockets.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{splice, OFlag, SpliceFFlags};
use nix::sys::socket::{shutdown, Shutdown};
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::io::Activity;

/// The pipe each direction uses, and so the most one `splice` call moves: larger than the
/// default 64 KiB so a bulk transfer takes fewer calls, small enough that a few hundred open
/// tunnels stay within the kernel's per-user pipe budget (when the kernel refuses the size,
/// the pipe keeps its default).
const CHUNK: usize = 256 * 1024;

/// Moves bytes both ways until both directions have ended (each side's end is passed on as a
/// half-close), counting them into `up` (client to upstream) and `down`.
pub async fn both_ways(
    client: &TcpStream,
    upstream: &TcpStream,
    up: &AtomicU64,
    down: &AtomicU64,
    activity: &Activity,
) -> io::Result<()> {
    let to_upstream = one_way(client, upstream, up, activity);
    let to_client = one_way(upstream, client, down, activity);
    let (a, b) = tokio::join!(to_upstream, to_client);
    a.and(b)
}

/// Moves bytes from `from` to `to` until `from` ends, then half-closes `to`.
async fn one_way(
    from: &TcpStream,
    to: &TcpStream,
    count: &AtomicU64,
    activity: &Activity,
) -> io::Result<()> {
    let (pipe_out, pipe_in) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    let _ = nix::fcntl::fcntl(&pipe_in, nix::fcntl::FcntlArg::F_SETPIPE_SZ(CHUNK as i32));
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    loop {
        let n = fill(from, &pipe_in, flags).await?;
        if n == 0 {
            // The peer is done sending: pass its end on, keep the other way open.
            let _ = shutdown(std::os::fd::AsRawFd::as_raw_fd(to), Shutdown::Write);
            return Ok(());
        }
        drain(&pipe_out, to, n, flags).await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
        activity.touch();
    }
}

/// Socket to pipe: waits for the socket to be readable, then moves what it has.
async fn fill(from: &TcpStream, pipe_in: &OwnedFd, flags: SpliceFFlags) -> io::Result<usize> {
    loop {
        from.readable().await?;
        match from.try_io(Interest::READABLE, || {
            splice(from, None, pipe_in, None, CHUNK, flags).map_err(io::Error::from)
        }) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Pipe to socket: moves all `n` bytes the pipe holds, as the socket takes them.
async fn drain(
    pipe_out: &OwnedFd,
    to: &TcpStream,
    mut n: usize,
    flags: SpliceFFlags,
) -> io::Result<()> {
    while n > 0 {
        to.writable().await?;
        match to.try_io(Interest::WRITABLE, || {
            splice(pipe_out, None, to, None, n, flags).map_err(io::Error::from)
        }) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(m) => n -= m,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
