//! Host-wide allocation of subnets and loopback addresses.
//!
//! A launch plans under a lock (an in-process mutex, then an advisory lock file shared by
//! every `bottle` process of the host), records what it planned as a *reservation*, and
//! releases the lock before it asks the engine for the network. Later launches see the
//! reservation until the bottle's network and published ports exist, and from then on the
//! engine's listing (and the host) shows them. So launches plan one at a time but create their
//! networks in parallel, and a slow or hung network create holds up nobody else.
//!
//! Reservations of this process live in memory; with a lock file, each is also a small file in
//! a directory beside it (`alloc.pending/`), locked by its owner for as long as the
//! reservation lives. A file whose lock can be taken belongs to a launch that died: it is
//! removed, and what it reserved is free again.
//!
//! Readers take reservations first and list the engine's networks (and read the host's routes
//! and listening sockets, for bottles of other engines) second: a reservation is dropped only
//! after its network exists and its ports are published, so one of them always shows what a
//! launch took.
//!
//! The lock file lives under the user's `$XDG_RUNTIME_DIR`, so launches of other users (root's
//! Docker bottles next to a user's rootless Podman ones) do not see each other's reservation
//! files. A reservation therefore also holds a TCP listener on its loopback address (kernel-chosen
//! port, nothing accepted): the host read of listening loopback addresses (`host.rs`) shows the
//! address as taken to every launch on the host, whichever user or lock file, from the moment
//! it is reserved until the bundle's own published ports take over.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ipnet::Ipv4Net;
use tracing::debug;

use crate::error::{Error, Result};

/// What one launch took before its network exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    /// The network it is about to create.
    pub network: String,
    pub subnet: Ipv4Net,
    pub loopback: Ipv4Addr,
}

impl Pending {
    fn to_line(&self) -> String {
        format!("{} {} {}\n", self.network, self.subnet, self.loopback)
    }

    fn from_line(line: &str) -> Option<Self> {
        let mut it = line.split_whitespace();
        Some(Pending {
            network: it.next()?.to_string(),
            subnet: it.next()?.parse().ok()?,
            loopback: it.next()?.parse().ok()?,
        })
    }
}

/// The allocation lock and the reservations of one [`Lifecycle`](crate::Lifecycle), shared by
/// its clones.
#[derive(Debug)]
pub(crate) struct Allocator {
    local: Arc<tokio::sync::Mutex<()>>,
    reserved: Mutex<Vec<(u64, Pending)>>,
    next_id: AtomicU64,
    lock_path: Option<PathBuf>,
}

impl Allocator {
    pub(crate) fn new(lock_path: Option<PathBuf>) -> Arc<Self> {
        Arc::new(Allocator {
            local: Arc::new(tokio::sync::Mutex::new(())),
            reserved: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            lock_path,
        })
    }

    /// Waits for the allocation lock of this process, then for the host's.
    pub(crate) async fn lock(self: &Arc<Self>) -> Result<Planning> {
        let local = self.local.clone().lock_owned().await;
        let file = match &self.lock_path {
            Some(path) => Some(FileLock::acquire(path.clone()).await?),
            None => None,
        };
        Ok(Planning {
            allocator: self.clone(),
            _file: file,
            _local: local,
        })
    }

    /// `alloc.lock` -> `alloc.pending/`.
    fn pending_dir(&self) -> Option<PathBuf> {
        self.lock_path.as_ref().map(|p| p.with_extension("pending"))
    }

    fn reserved(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Pending)>> {
        self.reserved.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The allocation lock, held: read what is reserved, reserve what was planned. Dropping it
/// releases the lock; reservations outlive it.
#[derive(Debug)]
pub(crate) struct Planning {
    allocator: Arc<Allocator>,
    // Released in declaration order: the host's lock, then this process's.
    _file: Option<FileLock>,
    _local: tokio::sync::OwnedMutexGuard<()>,
}

impl Planning {
    /// What launches of this process and of live processes on the host have reserved.
    /// Reservations of dead processes are removed on the way.
    pub(crate) fn pending(&self) -> Result<Vec<Pending>> {
        let mut out: Vec<Pending> = self
            .allocator
            .reserved()
            .iter()
            .map(|(_, p)| p.clone())
            .collect();
        let Some(dir) = self.allocator.pending_dir() else {
            return Ok(out);
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_error("reading reservations in", &dir, e)),
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if let Some(p) = read_live(&path)? {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        Ok(out)
    }

    /// Reserves `pending` until the returned reservation is dropped.
    pub(crate) fn reserve(&self, pending: Pending) -> Result<Reservation> {
        let allocator = &self.allocator;
        let id = allocator.next_id.fetch_add(1, Ordering::Relaxed);
        let file = match allocator.pending_dir() {
            Some(dir) => Some(write_reservation(&dir, id, &pending)?),
            None => None,
        };
        let marker = mark(pending.loopback);
        allocator.reserved().push((id, pending));
        Ok(Reservation {
            allocator: allocator.clone(),
            id,
            file,
            _marker: marker,
        })
    }
}

/// A reservation, held until the bottle it is for has its network and published ports (or
/// will not have them).
#[derive(Debug)]
pub(crate) struct Reservation {
    allocator: Arc<Allocator>,
    id: u64,
    /// The reservation's file and the handle that keeps it locked.
    file: Option<(PathBuf, File)>,
    /// A listener on the reserved loopback address, which other users' launches see.
    _marker: Option<std::net::TcpListener>,
}

/// A listener on `loopback` (any port) that marks it as taken host-wide; `None` for the shared
/// `127.0.0.1` (never allocated from a pool) or where it cannot be bound (best effort: the
/// files still serialise launches of this user).
fn mark(loopback: Ipv4Addr) -> Option<std::net::TcpListener> {
    if loopback == Ipv4Addr::LOCALHOST || !loopback.is_loopback() {
        return None;
    }
    std::net::TcpListener::bind((loopback, 0))
        .map_err(|e| debug!(%loopback, error = %e, "cannot mark the reserved loopback address"))
        .ok()
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.allocator.reserved().retain(|(id, _)| *id != self.id);
        if let Some((path, file)) = self.file.take() {
            // Unlinked while still locked: a reader that opened it before sees a live
            // reservation, which is only conservative.
            let _ = std::fs::remove_file(&path);
            drop(file);
        }
    }
}

/// Writes and locks the file of reservation `id` of this process.
fn write_reservation(dir: &Path, id: u64, pending: &Pending) -> Result<(PathBuf, File)> {
    std::fs::create_dir_all(dir).map_err(|e| io_error("creating", dir, e))?;
    let path = dir.join(format!("{}-{id}", std::process::id()));
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(|e| io_error("creating reservation", &path, e))?;
    // Nobody else reads the directory while the allocation lock is held, so this cannot block.
    file.lock()
        .map_err(|e| io_error("locking reservation", &path, e))?;
    file.write_all(pending.to_line().as_bytes())
        .map_err(|e| io_error("writing reservation", &path, e))?;
    Ok((path, file))
}

/// The reservation in `path` when its owner still holds it; removes it when the owner is gone.
fn read_live(path: &Path) -> Result<Option<Pending>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        // Its owner removed it since the directory was read.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("opening reservation", path, e)),
    };
    match file.try_lock_shared() {
        Ok(()) => {
            debug!(path = %path.display(), "removing the reservation of a launch that is gone");
            let _ = std::fs::remove_file(path);
            Ok(None)
        }
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            file.read_to_string(&mut text)
                .map_err(|e| io_error("reading reservation", path, e))?;
            Ok(Pending::from_line(&text))
        }
        Err(TryLockError::Error(e)) => Err(io_error("locking reservation", path, e)),
    }
}

fn io_error(what: &str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        what: format!("{what} {} (allocation)", path.display()),
        source,
    }
}

/// An exclusive advisory lock on a file, held until dropped.
#[derive(Debug)]
struct FileLock(File);

impl FileLock {
    async fn acquire(path: PathBuf) -> Result<Self> {
        tokio::task::spawn_blocking(move || {
            let io = |what: &str, source| Error::Io {
                what: format!("{what} allocation lock {}", path.display()),
                source,
            };
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| io("creating the directory of", e))?;
            }
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| io("opening", e))?;
            file.lock().map_err(|e| io("locking", e))?;
            Ok(FileLock(file))
        })
        .await
        .expect("the lock task does not panic")
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(n: u8) -> Pending {
        Pending {
            network: format!("bt-alloc-{n}-net"),
            subnet: format!("10.221.{n}.0/24").parse().unwrap(),
            loopback: Ipv4Addr::new(127, 91, 0, n),
        }
    }

    fn lock_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bottle-alloc-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("alloc.lock")
    }

    /// Launches with other lock files (other users) see a reserved loopback address in the host
    /// read, for as long as the reservation lives.
    #[tokio::test]
    async fn a_reserved_address_is_seen_by_launches_with_other_lock_files() {
        let mine = Allocator::new(Some(lock_path("marked-mine")));
        let addr = Ipv4Addr::new(127, 91, 7, 9);
        let mut p = pending(7);
        p.loopback = addr;
        let held = mine.lock().await.unwrap().reserve(p).unwrap();
        if cfg!(target_os = "linux") {
            assert!(crate::host::taken().loopbacks.contains(&addr));
        }
        drop(held);
        assert!(!crate::host::taken().loopbacks.contains(&addr));
        // The shared address is never marked.
        let mut p = pending(8);
        p.loopback = Ipv4Addr::LOCALHOST;
        let shared = mine.lock().await.unwrap().reserve(p).unwrap();
        assert!(shared._marker.is_none());
    }

    #[tokio::test]
    async fn a_reservation_is_seen_until_dropped_by_every_allocator_of_the_host() {
        let path = lock_path("seen");
        let mine = Allocator::new(Some(path.clone()));
        // Another process's allocator: it shares only the files.
        let other = Allocator::new(Some(path.clone()));
        let held = mine.lock().await.unwrap().reserve(pending(1)).unwrap();
        assert_eq!(
            other.lock().await.unwrap().pending().unwrap(),
            vec![pending(1)]
        );
        assert_eq!(
            mine.lock().await.unwrap().pending().unwrap(),
            vec![pending(1)]
        );
        drop(held);
        assert!(other.lock().await.unwrap().pending().unwrap().is_empty());
        assert!(mine.lock().await.unwrap().pending().unwrap().is_empty());
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[tokio::test]
    async fn the_reservation_of_a_dead_launch_is_removed() {
        let path = lock_path("dead");
        let dir = path.with_extension("pending");
        std::fs::create_dir_all(&dir).unwrap();
        // Written by a process that died: nobody holds its lock.
        std::fs::write(dir.join("1-0"), pending(2).to_line()).unwrap();
        let alloc = Allocator::new(Some(path.clone()));
        assert!(alloc.lock().await.unwrap().pending().unwrap().is_empty());
        assert!(!dir.join("1-0").exists());
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[tokio::test]
    async fn without_a_lock_file_reservations_stay_in_the_process() {
        let alloc = Allocator::new(None);
        let a = alloc.lock().await.unwrap().reserve(pending(3)).unwrap();
        let b = alloc.lock().await.unwrap().reserve(pending(4)).unwrap();
        assert_eq!(
            alloc.lock().await.unwrap().pending().unwrap(),
            vec![pending(3), pending(4)]
        );
        drop(a);
        assert_eq!(
            alloc.lock().await.unwrap().pending().unwrap(),
            vec![pending(4)]
        );
        drop(b);
    }
}
