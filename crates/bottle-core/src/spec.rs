//! What a caller asks for (`BottleSpec`) and the rules it must meet before any engine call.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::allowlist::{AllowRule, PatternError};
use crate::catalog::{
    Catalog, When, DAEMONS_ENV, EGRESS_ALLOW_ENV, GIT_UPSTREAMS_ENV, SECRET_KEYS_ENV,
};
use crate::runtime::{Limits, Mount};

mod rules;

pub use rules::{is_valid_env_key, validate_loopback, validate_slug, validate_subnet_pool};
use rules::{validate_container_path, validate_env_key, validate_host_path};

/// The longest slug: it becomes part of engine object names (`bottle-sidecars-<slug>`).
pub const MAX_SLUG_LEN: usize = 40;
/// The smallest memory limit engines accept for a container (Docker refuses less than 6 MiB).
pub const MIN_MEMORY_BYTES: u64 = 6 * 1024 * 1024;
/// The largest memory limit we accept: beyond this the limit means nothing.
pub const MAX_MEMORY_BYTES: u64 = 1 << 40;
/// The pids limit range: fewer than 8 cannot start the daemons; more than 4 Mi is not a limit.
pub const PIDS_RANGE: std::ops::RangeInclusive<i64> = 8..=4_194_304;

/// One environment entry of the bundle. In a bottle file it is a string: `"KEY=VALUE"` or
/// `"KEY"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum EnvEntry {
    /// `KEY=VALUE`: the value is stored in the spec and may be shown.
    Value { key: String, value: String },
    /// A bare `KEY`: the value is read from the launcher's environment when the bundle is
    /// created, and never stored, logged, labelled or shown.
    Inherit { key: String },
}

impl EnvEntry {
    /// Parses `KEY=VALUE` or a bare `KEY`. The error never contains the value.
    pub fn parse(entry: &str) -> Result<Self, ValidationError> {
        let parsed = match entry.split_once('=') {
            Some((key, value)) => EnvEntry::Value {
                key: key.to_string(),
                value: value.to_string(),
            },
            None => EnvEntry::Inherit {
                key: entry.to_string(),
            },
        };
        validate_env_key(parsed.key())?;
        Ok(parsed)
    }

    pub fn key(&self) -> &str {
        match self {
            EnvEntry::Value { key, .. } | EnvEntry::Inherit { key } => key,
        }
    }
}

impl TryFrom<String> for EnvEntry {
    type Error = ValidationError;

    fn try_from(entry: String) -> Result<Self, Self::Error> {
        EnvEntry::parse(&entry)
    }
}

impl From<EnvEntry> for String {
    fn from(entry: EnvEntry) -> String {
        match entry {
            EnvEntry::Value { key, value } => format!("{key}={value}"),
            EnvEntry::Inherit { key } => key,
        }
    }
}

/// Where the bottle's agent-facing ports are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoopbackChoice {
    /// A free address of this pool (inside 127.0.0.0/8), one per bottle.
    Pool(Ipv4Net),
    /// Exactly this address, shared with whatever else uses it.
    Fixed(Ipv4Addr),
}

/// Everything a caller asks for when bringing a bottle up.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BottleSpec {
    /// The bottle's name: 1-40 of `a-z`, `0-9`, `-`, starting and ending with a letter or digit.
    /// A bottle file may leave it out and have the command line give it.
    #[serde(default)]
    pub slug: String,
    /// The bundle image; empty means the lifecycle's default image. A bottle file leaves it
    /// out for the default: `image = ""` there is refused.
    #[serde(default, deserialize_with = "non_empty")]
    pub image: String,
    /// Bundle environment entries.
    #[serde(default)]
    pub env: Vec<EnvEntry>,
    /// Bind mounts into the bundle.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Egress allowlist patterns (`example.com`, `*.example.com:443`).
    #[serde(default)]
    pub egress_allow: Vec<String>,
    /// Git upstreams (a URL or a table each); declaring any turns the git gate on.
    #[serde(default)]
    pub git_upstreams: Vec<crate::git::GitUpstreamSpec>,
    /// Turns the supervise daemon on.
    #[serde(default)]
    pub supervise: bool,
    /// Daemons the catalog marks `when = "requested"` that this bottle wants.
    #[serde(default)]
    pub daemons: Vec<String>,
    /// Where to publish; `None` uses the lifecycle's default pool.
    #[serde(default)]
    pub loopback: Option<LoopbackChoice>,
    /// The pool of /24 subnets to allocate from; `None` uses the lifecycle's default.
    #[serde(default)]
    pub subnet_pool: Option<Ipv4Net>,
    #[serde(default)]
    pub limits: Limits,
    /// APIs the agent calls through the bundle, which adds their credentials.
    #[serde(default)]
    pub services: Vec<crate::service::ServiceSpec>,
}

/// A string that a bottle file gives must not be empty where empty would silently mean "not
/// given" (the image; an empty slug is refused by validation). The error is serde's, so the file's parser names the field and line.
fn non_empty<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let value = String::deserialize(deserializer)?;
    if value.is_empty() {
        return Err(serde::de::Error::custom(
            "must not be empty (leave the field out to use the default image)",
        ));
    }
    Ok(value)
}

/// A rule the input broke. Every variant names the field; none contains a secret's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    #[error("slug: must not be empty (use 1-{MAX_SLUG_LEN} characters of a-z, 0-9 and -)")]
    SlugEmpty,
    #[error("slug: is {len} characters long, the limit is {MAX_SLUG_LEN} (it becomes part of engine object names)")]
    SlugTooLong { len: usize },
    #[error(
        "slug: {slug:?} {reason} (use a-z, 0-9 and -, starting and ending with a letter or digit)"
    )]
    SlugCharset { slug: String, reason: &'static str },
    #[error("image: {image:?} is not a valid image reference")]
    Image { image: String },
    #[error("env: key {key:?} is invalid (use letters, digits and _, not starting with a digit)")]
    EnvKey { key: String },
    #[error("env: key {key} is given twice")]
    EnvDuplicate { key: String },
    #[error("env: key {key} is set by bottle itself and cannot be overridden")]
    EnvReserved { key: String },
    #[error("env: bare key {key} is not set in the launcher's environment (export it, or pass {key}=VALUE)")]
    EnvInheritMissing { key: String },
    #[error("env: value of {key} contains a NUL byte")]
    EnvValueNul { key: String },
    #[error("mounts: host path {path:?} {reason}")]
    MountHostPath { path: PathBuf, reason: &'static str },
    #[error("mounts: container path {path:?} {reason}")]
    MountContainerPath { path: PathBuf, reason: &'static str },
    #[error("mounts: container path {path:?} is mounted twice")]
    MountDuplicate { path: PathBuf },
    #[error("egress_allow: {0}")]
    Allow(#[from] PatternError),
    /// `part` is the upstream's key (`url`, `name`, `token`, `push`, `ca_file`).
    #[error("git_upstreams[{index}].{part}: {reason}")]
    GitUpstream {
        index: usize,
        part: &'static str,
        reason: String,
    },
    #[error("daemons: unknown daemon {name:?} (known: {known})")]
    UnknownDaemon { name: String, known: String },
    #[error("daemons: {name} runs on its own condition ({reason}); do not list it")]
    DaemonNotRequestable { name: String, reason: &'static str },
    #[error("loopback: {address} is not inside 127.0.0.0/8 (the bottle must be published on loopback only)")]
    LoopbackNotLoopback { address: String },
    #[error("loopback: pool {pool} {reason}")]
    LoopbackPool { pool: String, reason: &'static str },
    #[error("subnet_pool: {pool} {reason}")]
    SubnetPool { pool: String, reason: &'static str },
    #[error("limits.{field}: {reason}")]
    Limit { field: &'static str, reason: String },
    #[error("catalog: {reason}")]
    Catalog { reason: String },
    #[error("{field}: {reason}")]
    Other { field: String, reason: String },
}

impl ValidationError {
    /// The name of the field the rule is about, as in the bottle file.
    pub fn field(&self) -> &str {
        use ValidationError::*;
        match self {
            SlugEmpty | SlugTooLong { .. } | SlugCharset { .. } => "slug",
            Image { .. } => "image",
            EnvKey { .. }
            | EnvDuplicate { .. }
            | EnvReserved { .. }
            | EnvInheritMissing { .. }
            | EnvValueNul { .. } => "env",
            MountHostPath { .. } | MountContainerPath { .. } | MountDuplicate { .. } => "mounts",
            Allow(_) => "egress_allow",
            GitUpstream { .. } => "git_upstreams",
            UnknownDaemon { .. } | DaemonNotRequestable { .. } => "daemons",
            LoopbackNotLoopback { .. } | LoopbackPool { .. } => "loopback",
            SubnetPool { .. } => "subnet_pool",
            Limit { field, .. } => field,
            Catalog { .. } => "catalog",
            Other { field, .. } => field,
        }
    }
}

/// Checks an image reference loosely: no whitespace or control characters, not empty.
fn validate_image(image: &str) -> Result<(), ValidationError> {
    let ok = !image.is_empty()
        && image.len() <= 512
        && !image.starts_with(['-', ':', '@', '/'])
        && image
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "./:@_-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::Image {
            image: image.escape_debug().to_string(),
        })
    }
}

fn validate_limits(limits: &Limits) -> Result<(), ValidationError> {
    if let Some(m) = limits.memory_bytes {
        if !(MIN_MEMORY_BYTES..=MAX_MEMORY_BYTES).contains(&m) {
            return Err(ValidationError::Limit {
                field: "memory_bytes",
                reason: format!(
                    "{m} bytes is outside {MIN_MEMORY_BYTES}..={MAX_MEMORY_BYTES} (engines refuse less than 6 MiB)"
                ),
            });
        }
    }
    if let Some(p) = limits.pids {
        if !PIDS_RANGE.contains(&p) {
            return Err(ValidationError::Limit {
                field: "pids",
                reason: format!(
                    "{p} is outside {}..={} (the daemons need a few processes)",
                    PIDS_RANGE.start(),
                    PIDS_RANGE.end()
                ),
            });
        }
    }
    Ok(())
}

impl BottleSpec {
    /// A spec with this slug and every other field at its default.
    pub fn new(slug: impl Into<String>) -> Self {
        BottleSpec {
            slug: slug.into(),
            ..Default::default()
        }
    }

    /// Checks every rule that needs neither an engine nor a catalog: slug, image, env (a bare
    /// key must be present in `env_lookup`), mounts, allowlist, git upstreams, loopback, subnet
    /// pool and limits. [`BottleSpec::check_daemons`] checks the rest once the catalog is known.
    pub fn validate(
        &self,
        env_lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ValidationError> {
        validate_slug(&self.slug)?;
        if !self.image.is_empty() {
            validate_image(&self.image)?;
        }

        let mut keys = BTreeSet::new();
        for entry in &self.env {
            let key = entry.key();
            validate_env_key(key)?;
            if [
                DAEMONS_ENV,
                EGRESS_ALLOW_ENV,
                GIT_UPSTREAMS_ENV,
                SECRET_KEYS_ENV,
                crate::service::SERVICES_ENV,
            ]
            .contains(&key)
            {
                return Err(ValidationError::EnvReserved { key: key.into() });
            }
            if !keys.insert(key) {
                return Err(ValidationError::EnvDuplicate { key: key.into() });
            }
            let value = match entry {
                EnvEntry::Value { value, .. } => Some(value.clone()),
                EnvEntry::Inherit { key } => Some(
                    env_lookup(key)
                        .ok_or_else(|| ValidationError::EnvInheritMissing { key: key.clone() })?,
                ),
            };
            if value.is_some_and(|v| v.contains('\0')) {
                return Err(ValidationError::EnvValueNul { key: key.into() });
            }
        }

        let mut targets = BTreeSet::new();
        for m in &self.mounts {
            validate_host_path(&m.host_path)?;
            validate_container_path(&m.container_path)?;
            if !targets.insert(&m.container_path) {
                return Err(ValidationError::MountDuplicate {
                    path: m.container_path.clone(),
                });
            }
        }

        crate::service::validate(&self.services, &keys)?;
        for (i, service) in self.services.iter().enumerate() {
            for (j, inject) in service.inject.iter().enumerate() {
                let field = format!("services[{i}].inject[{j}].secret");
                let valued = self
                    .env
                    .iter()
                    .any(|e| matches!(e, EnvEntry::Value { key, .. } if *key == inject.secret));
                if valued {
                    return Err(ValidationError::Other {
                        field,
                        reason: format!(
                            "{} has a value in env; a secret must be a bare key, its value read \
                             from the launcher's environment",
                            inject.secret
                        ),
                    });
                }
                if env_lookup(&inject.secret).is_none() {
                    return Err(ValidationError::Other {
                        field,
                        reason: format!(
                            "{} is not set in the launcher's environment (export it)",
                            inject.secret
                        ),
                    });
                }
            }
        }

        for pattern in &self.egress_allow {
            pattern.parse::<AllowRule>()?;
        }
        crate::git::validate(&self.git_upstreams, &self.env, env_lookup)?;
        if let Some(choice) = &self.loopback {
            validate_loopback(choice)?;
        }
        if let Some(pool) = &self.subnet_pool {
            validate_subnet_pool(pool)?;
        }
        validate_limits(&self.limits)
    }

    /// Checks the requested daemons against `catalog`: each is known and runs on request.
    pub fn check_daemons(&self, catalog: &Catalog) -> Result<(), ValidationError> {
        let mut requested = BTreeSet::new();
        for name in &self.daemons {
            let daemon = catalog
                .get(name)
                .ok_or_else(|| ValidationError::UnknownDaemon {
                    name: name.escape_debug().to_string(),
                    known: catalog.names(),
                })?;
            let reason = match daemon.when {
                When::Requested => None,
                When::Always => Some("it always runs"),
                When::GitUpstreams => Some("it runs when git_upstreams are declared"),
                When::Supervise => Some("it runs when supervise = true"),
                When::Services => Some("it runs when services are declared"),
            };
            if let Some(reason) = reason {
                return Err(ValidationError::DaemonNotRequestable {
                    name: name.clone(),
                    reason,
                });
            }
            if !requested.insert(name) {
                return Err(ValidationError::Other {
                    field: "daemons".into(),
                    reason: format!("daemon {name} is listed twice"),
                });
            }
        }
        Ok(())
    }
}
