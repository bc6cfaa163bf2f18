//! Streams that count their bytes and remember when they last moved, and the watchdog that
//! closes a connection that has been idle too long.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// When a connection last carried a byte, shared by everything that carries its bytes, and
/// which way its last bytes went.
#[derive(Debug, Clone)]
pub struct Activity {
    start: Instant,
    /// Milliseconds since `start` of the last byte.
    last_ms: Arc<AtomicU64>,
    /// Order of the last read and the last write: 0 for never, else a growing count.
    seq: Arc<AtomicU64>,
    last_read: Arc<AtomicU64>,
    last_write: Arc<AtomicU64>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity::new()
    }
}

impl Activity {
    pub fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: Arc::default(),
            seq: Arc::new(AtomicU64::new(1)),
            last_read: Arc::default(),
            last_write: Arc::default(),
        }
    }

    pub fn touch(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(now, Ordering::Relaxed);
    }

    fn mark(&self, which: &AtomicU64) {
        which.store(self.seq.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
        self.touch();
    }

    /// Whether the peer sent bytes after our last write: a request was begun and not answered.
    /// An idle keep-alive connection (our answer was the last thing sent) has none.
    pub fn input_pending(&self) -> bool {
        self.last_read.load(Ordering::Relaxed) > self.last_write.load(Ordering::Relaxed)
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }

    /// Completes once nothing has moved for `timeout`.
    pub async fn idle(&self, timeout: Duration) {
        loop {
            let idle = self.idle_for();
            if idle >= timeout {
                return;
            }
            tokio::time::sleep(timeout - idle).await;
        }
    }
}

/// A stream that counts the bytes read from and written to it and touches an [`Activity`].
#[derive(Debug)]
pub struct Tracked<S> {
    inner: S,
    activity: Activity,
    pub read: Arc<AtomicU64>,
    pub written: Arc<AtomicU64>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, activity: Activity) -> Self {
        Tracked {
            inner,
            activity,
            read: Arc::default(),
            written: Arc::default(),
        }
    }

    /// The stream itself, for I/O that bypasses the counters (they are then the caller's).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.read.fetch_add(n as u64, Ordering::Relaxed);
            self.activity.mark(&self.activity.last_read);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll {
            if *n > 0 {
                self.written.fetch_add(*n as u64, Ordering::Relaxed);
                self.activity.mark(&self.activity.last_write);
            }
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &poll {
            if *n > 0 {
                self.written.fetch_add(*n as u64, Ordering::Relaxed);
                self.activity.mark(&self.activity.last_write);
            }
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_the_last_byte() {
        let a = Activity::new();
        let t = Duration::from_secs(10);
        tokio::time::sleep(Duration::from_secs(6)).await;
        a.touch();
        let started = tokio::time::Instant::now();
        a.idle(t).await;
        // Paused time: exactly the remaining idle period after the touch.
        assert!(started.elapsed() >= Duration::from_secs(10));
    }
}
