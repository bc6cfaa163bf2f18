//! The daemon catalog as data: which daemons a bundle can run, on which ports, and which agent
//! variables each one fills.
//!
//! The default catalog is the original system's. Another catalog (for example one where egress
//! is the agent-facing proxy) is a TOML file or an image label, never a code change.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::spec::{is_valid_env_key, ValidationError};

/// The environment variable that tells the bundle's init which daemons to start (a CSV).
pub const DAEMONS_ENV: &str = "BOTTLE_DAEMONS";
/// The environment variable that carries the egress allowlist (comma-separated patterns).
pub const EGRESS_ALLOW_ENV: &str = "BOTTLE_EGRESS_ALLOW";
/// The environment variable that carries the git upstreams (JSON; see [`crate::git`]).
pub use crate::git::GIT_UPSTREAMS_ENV;
/// The environment variable naming the bundle's secrets: the keys of the bottle's bare env
/// entries, comma-separated (names only). The bundle reads their values from its own
/// environment and refuses to carry them out.
pub const SECRET_KEYS_ENV: &str = "BOTTLE_SECRET_KEYS";

/// Whether a daemon's port is published for the agent or stays inside the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Facing {
    /// Published on the bottle's loopback address; the agent gets its URL.
    Agent,
    /// Never published.
    #[default]
    Internal,
}

/// When a daemon runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum When {
    /// In every bottle.
    #[default]
    Always,
    /// When the bottle declares git upstreams.
    GitUpstreams,
    /// When the bottle enables supervise.
    Supervise,
    /// When the bottle names it in its `daemons` list.
    Requested,
    /// When the bottle declares services: a template the planner turns into one daemon per
    /// service (`svc-<name>`, on this port and the next ones), all served by the template's
    /// process.
    Services,
}

/// One daemon of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonDef {
    /// The daemon's name, as the bundle's init knows it.
    pub name: String,
    /// The port it listens on inside the bundle.
    pub port: u16,
    #[serde(default)]
    pub facing: Facing,
    /// The URL scheme of the agent's URL (`http`, `git`).
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// A path appended to the agent's URL (`/` for an HTTP endpoint that wants one).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// The agent variables this daemon's URL fills.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vars: Vec<String>,
    #[serde(default)]
    pub when: When,
}

fn default_scheme() -> String {
    "http".into()
}

/// A set of daemons with distinct names and ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    #[serde(rename = "daemon")]
    pub daemons: Vec<DaemonDef>,
}

impl Catalog {
    /// The original system's catalog: pipelock is the agent-facing proxy, egress is internal.
    pub fn seed() -> Self {
        let d =
            |name: &str, port, facing, scheme: &str, path: &str, vars: &[&str], when| DaemonDef {
                name: name.into(),
                port,
                facing,
                scheme: scheme.into(),
                path: path.into(),
                vars: vars.iter().map(|v| v.to_string()).collect(),
                when,
            };
        Catalog {
            daemons: vec![
                d(
                    "pipelock",
                    8888,
                    Facing::Agent,
                    "http",
                    "",
                    &["HTTPS_PROXY", "HTTP_PROXY"],
                    When::Always,
                ),
                d(
                    "egress",
                    9099,
                    Facing::Internal,
                    "http",
                    "",
                    &[],
                    When::Always,
                ),
                d(
                    "git-gate",
                    9418,
                    Facing::Agent,
                    "git",
                    "",
                    &["GIT_GATE_URL"],
                    When::GitUpstreams,
                ),
                d(
                    "supervise",
                    9100,
                    Facing::Agent,
                    "http",
                    "/",
                    &["MCP_SUPERVISE_URL"],
                    When::Supervise,
                ),
            ],
        }
    }

    /// Parses a catalog from TOML (`[[daemon]]` tables) and validates it.
    pub fn from_toml(text: &str) -> Result<Self, ValidationError> {
        let catalog: Catalog = toml::from_str(text).map_err(|e| ValidationError::Catalog {
            reason: e.message().to_string(),
        })?;
        catalog.validate()?;
        Ok(catalog)
    }

    /// Parses a catalog from the JSON an image label or bundle label carries, and validates it.
    pub fn from_json(text: &str) -> Result<Self, ValidationError> {
        let catalog: Catalog =
            serde_json::from_str(text).map_err(|e| ValidationError::Catalog {
                reason: e.to_string(),
            })?;
        catalog.validate()?;
        Ok(catalog)
    }

    /// The compact JSON form used in labels.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a catalog always serializes")
    }

    /// Checks names, ports, schemes and variable names.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let bad = |reason: String| Err(ValidationError::Catalog { reason });
        if self.daemons.is_empty() {
            return bad("a catalog needs at least one daemon".into());
        }
        let mut names = BTreeSet::new();
        let mut ports = BTreeSet::new();
        for d in &self.daemons {
            let name_ok = !d.name.is_empty()
                && d.name.len() <= 32
                && d.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !name_ok {
                return bad(format!(
                    "daemon name {:?} must be 1-32 characters of a-z, 0-9 and -",
                    d.name
                ));
            }
            if !names.insert(d.name.as_str()) {
                return bad(format!("daemon {} is listed twice", d.name));
            }
            if d.port == 0 {
                return bad(format!("daemon {} has port 0", d.name));
            }
            if !ports.insert(d.port) {
                return bad(format!(
                    "port {} is used by two daemons (daemon {})",
                    d.port, d.name
                ));
            }
            let scheme_ok = !d.scheme.is_empty()
                && d.scheme
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            if !scheme_ok {
                return bad(format!("daemon {} has bad scheme {:?}", d.name, d.scheme));
            }
            if !(d.path.is_empty() || d.path.starts_with('/')) {
                return bad(format!("daemon {} path must start with /", d.name));
            }
            if let Some(v) = d.vars.iter().find(|v| !is_valid_env_key(v)) {
                return bad(format!("daemon {} fills invalid variable {v:?}", d.name));
            }
            if d.facing == Facing::Internal && !d.vars.is_empty() {
                return bad(format!(
                    "daemon {} is internal but fills agent variables",
                    d.name
                ));
            }
        }
        Ok(())
    }

    /// The daemon named `name`.
    pub fn get(&self, name: &str) -> Option<&DaemonDef> {
        self.daemons.iter().find(|d| d.name == name)
    }

    /// The names of every daemon, comma-separated, for messages.
    pub fn names(&self) -> String {
        self.daemons
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The first daemon that runs on `when`.
    pub fn first_when(&self, when: When) -> Option<&DaemonDef> {
        self.daemons.iter().find(|d| d.when == when)
    }
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog::seed()
    }
}
