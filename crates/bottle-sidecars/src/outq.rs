//! Output that never blocks the one producing it: items go through a bounded queue to a writer
//! thread; when the queue is full (whoever reads our stdout stopped reading), items are dropped
//! and counted, and the next item written carries the count.
//!
//! The init copies its daemons' output through one, so a daemon never stalls on a full pipe;
//! the egress proxy writes its log through another, so traffic never waits for the log.

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the writer lets lines gather after the first: the most a line waits.
const GATHER: std::time::Duration = std::time::Duration::from_millis(2);
/// The most bytes written at once.
const BATCH: usize = 64 * 1024;

/// The producer's end of a queue to a writer thread.
#[derive(Debug)]
pub struct OutQueue<T> {
    tx: SyncSender<T>,
    dropped: Arc<AtomicU64>,
    /// Items queued and not yet written.
    pending: Arc<AtomicUsize>,
}

impl<T> Clone for OutQueue<T> {
    fn clone(&self) -> Self {
        OutQueue {
            tx: self.tx.clone(),
            dropped: self.dropped.clone(),
            pending: self.pending.clone(),
        }
    }
}

impl<T: Send + 'static> OutQueue<T> {
    /// Starts the writer thread `name` writing to `out` what `render(item, dropped before it)`
    /// makes of each item, with room for `capacity` items in between.
    pub fn spawn(
        name: &str,
        out: impl Write + Send + 'static,
        capacity: usize,
        render: impl Fn(T, u64) -> Vec<u8> + Send + 'static,
    ) -> std::io::Result<OutQueue<T>> {
        let (tx, rx) = sync_channel::<T>(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let pending = Arc::new(AtomicUsize::new(0));
        let (d, p) = (dropped.clone(), pending.clone());
        std::thread::Builder::new()
            .name(name.into())
            .stack_size(128 * 1024)
            .spawn(move || {
                let mut out = out;
                let mut batch = Vec::with_capacity(BATCH);
                while let Ok(item) = rx.recv() {
                    // Let a burst gather, then write whatever is queued at once: under load, one
                    // system call carries many lines, and producers seldom have to wake this
                    // thread (a send to a sleeping receiver costs nothing).
                    std::thread::sleep(GATHER);
                    let mut items = 1;
                    batch.extend_from_slice(&render(item, d.swap(0, Ordering::Relaxed)));
                    while batch.len() < BATCH {
                        let Ok(next) = rx.try_recv() else { break };
                        batch.extend_from_slice(&render(next, d.swap(0, Ordering::Relaxed)));
                        items += 1;
                    }
                    // A closed output is not our problem to solve: keep draining so producers
                    // never wait.
                    let _ = out.write_all(&batch).and_then(|()| out.flush());
                    batch.clear();
                    p.fetch_sub(items, Ordering::Relaxed);
                }
            })?;
        Ok(OutQueue {
            tx,
            dropped,
            pending,
        })
    }

    /// Queues `item`, or drops and counts it when the queue is full. Never blocks.
    pub fn push(&self, item: T) {
        self.pending.fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send(item).is_err() {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits (at most `within`) until every queued item is written; whether they all were.
    pub fn drain(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.pending.load(Ordering::Relaxed) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }
}
