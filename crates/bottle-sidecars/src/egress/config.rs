//! The proxy's configuration: the allowlist (environment and file), its limits and where it
//! reads them from.

use std::time::Duration;

use bottle_core::allowlist::Allowlist;
use bottle_core::catalog::EGRESS_ALLOW_ENV;

use super::policy::LocalNets;
use crate::leak::Scanner;

/// The environment variable naming an allowlist file (one or more patterns a line, `#` comments).
pub const ALLOW_FILE_ENV: &str = "BOTTLE_EGRESS_ALLOW_FILE";

/// The allowlist file read when [`ALLOW_FILE_ENV`] is unset and this path exists.
pub const DEFAULT_ALLOW_FILE: &str = "/etc/bottle/egress-allow";

/// Concurrent client connections (see [`Limits::max_connections`]).
pub const MAX_CONNECTIONS_ENV: &str = "BOTTLE_EGRESS_MAX_CONNECTIONS";

/// Seconds a connection or tunnel may carry nothing before it is closed.
pub const IDLE_TIMEOUT_ENV: &str = "BOTTLE_EGRESS_IDLE_TIMEOUT_SECS";

/// Seconds a client may take to send a request head.
pub const HEADER_TIMEOUT_ENV: &str = "BOTTLE_EGRESS_HEADER_TIMEOUT_SECS";

/// File descriptors kept free beyond the connections' own, so accepting (and refusing) new
/// connections, resolving and logging keep working when the connection cap is reached.
pub(super) const FD_RESERVE: u64 = 64;

/// The proxy's resource bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent client connections (a tunnel counts as its client connection); beyond it a
    /// new connection gets a 503 at once and idle keep-alive connections are asked to close.
    pub max_connections: usize,
    /// A keep-alive connection or tunnel that carries nothing for this long is closed.
    pub idle_timeout: Duration,
    /// The time a client has to send a whole request head (and a TLS tunnel's ClientHello).
    pub header_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(300),
            header_timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// The defaults, overridden by [`MAX_CONNECTIONS_ENV`], [`IDLE_TIMEOUT_ENV`] and
    /// [`HEADER_TIMEOUT_ENV`].
    pub fn from_env() -> Result<Limits, String> {
        let mut limits = Limits::default();
        if let Some(n) = env_number(MAX_CONNECTIONS_ENV)? {
            limits.max_connections = n as usize;
        }
        if let Some(n) = env_number(IDLE_TIMEOUT_ENV)? {
            limits.idle_timeout = Duration::from_secs(n);
        }
        if let Some(n) = env_number(HEADER_TIMEOUT_ENV)? {
            limits.header_timeout = Duration::from_secs(n);
        }
        Ok(limits)
    }

    /// Lowers the connection cap to what the open-files limit can hold (two descriptors a
    /// connection, client and upstream, plus a reserve), after raising the soft limit to the
    /// hard one. Returns the cap in force.
    pub fn fit_open_files(&mut self) -> usize {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
            let soft = if hard > soft && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            };
            let fit = (soft.saturating_sub(FD_RESERVE) / 2).max(1);
            self.max_connections = self.max_connections.min(fit as usize);
        }
        self.max_connections
    }
}

fn env_number(var: &str) -> Result<Option<u64>, String> {
    match std::env::var(var) {
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| format!("{var}={v:?} is not a positive whole number")),
        Err(_) => Ok(None),
    }
}

/// Reads the allowlist from [`EGRESS_ALLOW_ENV`] and the allowlist file, merged.
///
/// The file is [`ALLOW_FILE_ENV`] when set (it must then exist: a missing file the operator named
/// is a mistake, not an empty list), else [`DEFAULT_ALLOW_FILE`] if it exists.
pub fn allowlist_from_env() -> Result<Allowlist, String> {
    let mut allow = match std::env::var(EGRESS_ALLOW_ENV) {
        Ok(csv) => Allowlist::parse(&csv).map_err(|e| {
            format!("cannot use {EGRESS_ALLOW_ENV}: {e}; fix the bottle's egress_allow")
        })?,
        Err(_) => Allowlist::default(),
    };
    let (path, required) = match std::env::var(ALLOW_FILE_ENV) {
        Ok(p) => (p, true),
        Err(_) => (DEFAULT_ALLOW_FILE.to_string(), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let file = Allowlist::parse(&text)
                .map_err(|e| format!("cannot use allowlist file {path}: {e}; fix that line"))?;
            allow.rules.extend(file.rules);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {}
        Err(e) => {
            return Err(format!(
                "cannot read allowlist file {path} (named by {ALLOW_FILE_ENV}): {e}; \
                 mount it or unset {ALLOW_FILE_ENV}"
            ))
        }
    }
    Ok(allow)
}

/// Everything the proxy runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub allow: Allowlist,
    pub limits: Limits,
    /// The proxy's own interfaces, refused as destinations.
    pub local: LocalNets,
    /// The credentials no request may carry out (the bottle's secrets and the known formats).
    pub scanner: Scanner,
}

impl Config {
    /// `allow` with the default limits, this namespace's interfaces and a scanner for the
    /// known credential formats only.
    pub fn new(allow: Allowlist) -> Config {
        Config {
            allow,
            limits: Limits::default(),
            local: LocalNets::read(),
            scanner: Scanner::new(Vec::<(String, String)>::new()),
        }
    }
}
