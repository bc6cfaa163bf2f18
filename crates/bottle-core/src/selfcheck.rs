//! The self-check report: what a container really is, seen from inside it.
//!
//! The reference image's `selfcheck` daemon (run it by naming it in `BOTTLE_DAEMONS` and
//! publishing [`PORT`]) answers every TCP connection with one [`Report`] as JSON and closes the
//! connection. The conformance suite starts a container from a
//! [`ContainerSpec`](crate::runtime::ContainerSpec), reads the report through the published port
//! and compares it with what was asked, so the suite checks every engine from the inside
//! through the trait alone. `InMemoryRuntime` answers the same report, derived from the spec it
//! was given.
//!
//! The report never holds an environment value: only each key with [`value_hash`] of its value
//! (FNV-1a, 64 bit). That hash tells values apart; it is no protection for a guessable secret,
//! which is why the daemon runs only when asked for and is internal (never published by the
//! planner).

use std::collections::BTreeMap;

use crate::catalog::{DaemonDef, Facing, When};

/// The daemon's name in the catalog and in `BOTTLE_DAEMONS`.
pub const DAEMON: &str = "selfcheck";

/// The port it listens on in the container.
pub const PORT: u16 = 9200;

/// The catalog entry of the daemon: internal, run only when named.
pub fn daemon_def() -> DaemonDef {
    DaemonDef {
        name: DAEMON.into(),
        port: PORT,
        facing: Facing::Internal,
        scheme: "tcp".into(),
        path: String::new(),
        vars: Vec::new(),
        when: When::Requested,
    }
}

/// What a container is, as its PID 1 and its cgroup show it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// Effective user and group ids of PID 1.
    pub uid: u32,
    pub gid: u32,
    /// PID 1's effective capabilities (`CapEff`), one bit per capability number.
    pub cap_effective: u64,
    /// PID 1's bounding set (`CapBnd`).
    pub cap_bounding: u64,
    /// PID 1's `NoNewPrivs`.
    pub no_new_privs: bool,
    /// Whether `/` is mounted read-only.
    pub root_read_only: bool,
    /// Every tmpfs mount point, with its mount and superblock options (`rw`, `nosuid`,
    /// `size=16384k`, ...).
    pub tmpfs: BTreeMap<String, Vec<String>>,
    /// `v1` or `v2`, or `memory` from `InMemoryRuntime`.
    pub cgroup: String,
    /// The memory limit in bytes; `None` when unlimited.
    pub memory_limit: Option<u64>,
    /// Swap allowed on top of the memory limit, in bytes; `None` when unlimited or unknown
    /// (cgroup v1 without swap accounting).
    pub memory_swap: Option<u64>,
    /// The pids limit; `None` when unlimited.
    pub pids_limit: Option<u64>,
    /// Each environment variable of PID 1: key -> [`value_hash`] of its value.
    pub env: BTreeMap<String, String>,
}

/// The hash of an environment value in a [`Report`]: `fnv1a64:` and 16 hex digits.
pub fn value_hash(value: &str) -> String {
    format!("fnv1a64:{:016x}", crate::plan::stable_hash(value))
}

/// The capabilities by number, as `capabilities(7)` names them without `CAP_`.
pub const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The capabilities Docker and Podman give a container by default.
pub const ENGINE_DEFAULT_CAPABILITIES: [&str; 11] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// The bit of capability `name` (`NET_BIND_SERVICE` or `CAP_NET_BIND_SERVICE`, any case).
pub fn capability_bit(name: &str) -> Option<u64> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    CAPABILITIES
        .iter()
        .position(|c| *c == bare)
        .map(|i| 1u64 << i)
}

/// The set of capabilities `names`, as bits.
pub fn capability_set<'a>(names: impl IntoIterator<Item = &'a str>) -> u64 {
    names
        .into_iter()
        .filter_map(capability_bit)
        .fold(0, |set, bit| set | bit)
}

/// The names of the capabilities in `set`, for messages.
pub fn capability_names(set: u64) -> Vec<&'static str> {
    CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(i, _)| set & (1u64 << i) != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// `uid[:gid]` as numbers; a missing group is 0, as engines make it.
pub fn parse_user(user: &str) -> Option<(u32, u32)> {
    let (uid, gid) = user.split_once(':').unwrap_or((user, "0"));
    Some((uid.parse().ok()?, gid.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_by_name() {
        assert_eq!(capability_bit("NET_BIND_SERVICE"), Some(1 << 10));
        assert_eq!(capability_bit("cap_chown"), Some(1));
        assert_eq!(capability_bit("NOPE"), None);
        let set = capability_set(["CHOWN", "KILL"]);
        assert_eq!(capability_names(set), vec!["CHOWN", "KILL"]);
    }

    #[test]
    fn hashes_hide_values_and_tell_them_apart() {
        let h = value_hash("s3cret");
        assert!(!h.contains("s3cret"));
        assert_ne!(h, value_hash("s3cret2"));
        assert_eq!(h, value_hash("s3cret"));
    }

    #[test]
    fn users() {
        assert_eq!(parse_user("65534:65534"), Some((65534, 65534)));
        assert_eq!(parse_user("1000"), Some((1000, 0)));
        assert_eq!(parse_user("nobody"), None);
    }
}
