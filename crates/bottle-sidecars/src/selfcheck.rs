//! The `selfcheck` daemon: answers each TCP connection with what the container really is, as
//! one JSON [`Report`] (see [`bottle_core::selfcheck`]), and closes it.
//!
//! Everything is read from the kernel's view of the container: PID 1's `/proc/1/status`
//! (ids, capabilities, `NoNewPrivs`) and environment, this process's mount table, and the
//! cgroup files mounted at `/sys/fs/cgroup` (v2, else v1). No environment value is ever written:
//! only its hash.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bottle_core::selfcheck::{value_hash, Report};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// Serves the report on `listener`. Runs until dropped.
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            // Out of descriptors, most likely: back off rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let text = serde_json::to_string(&report()).unwrap_or_default();
        tokio::spawn(async move {
            let _ = stream.write_all(text.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// The report of the container this process runs in.
pub fn report() -> Report {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let environ = std::fs::read("/proc/1/environ")
        .or_else(|_| std::fs::read("/proc/self/environ"))
        .unwrap_or_default();
    let mut report = report_from(
        &read("/proc/1/status"),
        &read("/proc/self/mountinfo"),
        &environ,
    );
    let cgroup = Path::new("/sys/fs/cgroup");
    let file = |p: &str| std::fs::read_to_string(cgroup.join(p)).ok();
    if cgroup.join("cgroup.controllers").exists() {
        report.cgroup = "v2".into();
        report.memory_limit = memory_limit();
        report.memory_swap = file("memory.swap.max").and_then(|v| limit(&v));
        report.pids_limit = file("pids.max").and_then(|v| limit(&v));
    } else {
        report.cgroup = "v1".into();
        report.memory_limit = memory_limit();
        let with_swap = file("memory/memory.memsw.limit_in_bytes").and_then(|v| limit(&v));
        report.memory_swap = match (report.memory_limit, with_swap) {
            (Some(memory), Some(both)) => Some(both.saturating_sub(memory)),
            _ => None,
        };
        report.pids_limit = file("pids/pids.max").and_then(|v| limit(&v));
    }
    report
}

/// The memory limit of this process's cgroup (v2, else v1); `None` when there is none or it
/// cannot be read. A tmpfs's pages count against it.
pub fn memory_limit() -> Option<u64> {
    let cgroup = Path::new("/sys/fs/cgroup");
    let file = |p: &str| std::fs::read_to_string(cgroup.join(p)).ok();
    if cgroup.join("cgroup.controllers").exists() {
        file("memory.max").and_then(|v| limit(&v))
    } else {
        file("memory/memory.limit_in_bytes").and_then(|v| limit(&v))
    }
}

/// A cgroup limit: `None` for `max` and for v1's "unlimited" (a page-rounded `i64::MAX`).
fn limit(value: &str) -> Option<u64> {
    let v: u64 = value.trim().parse().ok()?;
    (v < 1 << 62).then_some(v)
}

/// The parts of the report read from PID 1's status, the mount table and PID 1's environment.
pub fn report_from(status: &str, mountinfo: &str, environ: &[u8]) -> Report {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .unwrap_or("")
            .trim()
    };
    // `Uid:` and `Gid:` list real, effective, saved and filesystem ids.
    let effective = |name: &str| {
        field(name)
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(u32::MAX)
    };
    let caps = |name: &str| u64::from_str_radix(field(name), 16).unwrap_or(u64::MAX);
    let mut report = Report {
        uid: effective("Uid"),
        gid: effective("Gid"),
        cap_effective: caps("CapEff"),
        cap_bounding: caps("CapBnd"),
        no_new_privs: field("NoNewPrivs") == "1",
        ..Report::default()
    };
    let mut tmpfs = BTreeMap::new();
    for line in mountinfo.lines() {
        // id parent major:minor root mount-point mount-options [optional...] - type source super
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (Some(point), Some(options)) = (left.get(4), left.get(5)) else {
            continue;
        };
        if *point == "/" {
            // The last mount on `/` is the one the container sees.
            report.root_read_only = options.split(',').any(|o| o == "ro");
        }
        if right.first() == Some(&"tmpfs") {
            let mut all: Vec<String> = options.split(',').map(String::from).collect();
            for o in right.get(2).map_or("", |s| s).split(',') {
                if !o.is_empty() && !all.iter().any(|a| a == o) {
                    all.push(o.to_string());
                }
            }
            tmpfs.insert(point.replace("\\040", " "), all);
        }
    }
    report.tmpfs = tmpfs;
    report.env = environ
        .split(|b| *b == 0)
        .filter(|kv| !kv.is_empty())
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), value_hash(v)))
        })
        .collect();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tinit\nUid:\t65532\t65534\t65534\t65534\nGid:\t65532\t65533\t65533\t65533\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000400\nNoNewPrivs:\t1\n";
    const MOUNTS: &str = "\
600 500 0:50 / / ro,relatime master:1 - overlay overlay rw,lowerdir=/a
601 600 0:51 / /tmp rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,size=16384k,mode=1777
602 600 0:52 / /proc rw,nosuid - proc proc rw
";

    #[test]
    fn reads_identity_capabilities_and_mounts() {
        let r = report_from(STATUS, MOUNTS, b"A=1\0SECRET=s3cret\0");
        assert_eq!((r.uid, r.gid), (65534, 65533), "effective ids");
        assert_eq!(r.cap_effective, 0);
        assert_eq!(r.cap_bounding, 1 << 10);
        assert!(r.no_new_privs);
        assert!(r.root_read_only);
        assert_eq!(
            r.tmpfs["/tmp"],
            [
                "rw",
                "nosuid",
                "nodev",
                "noexec",
                "relatime",
                "size=16384k",
                "mode=1777"
            ]
        );
        assert_eq!(r.tmpfs.len(), 1);
        assert_eq!(r.env["SECRET"], value_hash("s3cret"));
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("s3cret"), "{json}");
    }

    #[test]
    fn limits() {
        assert_eq!(limit("max\n"), None);
        assert_eq!(limit("9223372036854771712\n"), None);
        assert_eq!(limit("67108864\n"), Some(64 << 20));
    }
}
