//! Git upstreams: the repositories an agent reaches through its bundle's git gate, which holds
//! the upstream's credential and checks every push before forwarding it.
//!
//! A bottle declares upstreams (`git_upstreams` in a bottle file: a plain URL or a table per
//! entry; `--git-upstream [NAME=]URL` on the command line). Declaring any turns the `git-gate`
//! daemon on; the agent gets `GIT_GATE_URL=git://<loopback>:<port>` (no credential) and clones
//! `$GIT_GATE_URL/<name>.git`. The bundle learns its upstreams from [`GIT_UPSTREAMS_ENV`]: the
//! [`PlannedGitUpstream`]s as JSON, naming the token by its env key, never by its value.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::spec::{is_valid_env_key, EnvEntry, ValidationError};

/// The environment variable carrying the bundle's git upstreams (JSON array of
/// [`PlannedGitUpstream`]).
pub const GIT_UPSTREAMS_ENV: &str = "BOTTLE_GIT_UPSTREAMS";
/// Where an upstream's `ca_file` is mounted in the bundle (`<dir>/<name>.pem`).
pub const CA_DIR: &str = "/etc/bottle/git";
/// The most upstreams one bottle declares.
pub const MAX_GIT_UPSTREAMS: usize = 32;
/// The longest repository name.
pub const MAX_NAME_LEN: usize = 64;

/// An upstream as the bundle's gate runs it. The JSON of a list of these is the contract
/// between the planner and the gate.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PlannedGitUpstream {
    /// The repository's name: the agent reaches it at `/<name>.git` (or `/<name>`).
    pub name: String,
    /// `https://host[:port]/path` (or `http://` when `insecure_http`), without credentials.
    pub url: String,
    /// The bare env key of the bundle holding the upstream's token; `None`: no credential.
    pub token_key: Option<String>,
    /// Ref patterns the agent may update; `None`: the gate's default (any branch except the
    /// upstream's default branch, no tags).
    pub push: Option<Vec<String>>,
    /// The CA file's path inside the bundle.
    pub ca_file: Option<String>,
    /// Whether an `http://` upstream is allowed.
    pub insecure_http: bool,
}

impl PlannedGitUpstream {
    /// Reads the value of [`GIT_UPSTREAMS_ENV`].
    pub fn list_from_json(json: &str) -> Result<Vec<Self>, serde_json::Error> {
        serde_json::from_str(json)
    }
}

/// An upstream as a bottle declares it. In a bottle file: a URL string, or a table with `url`
/// and the optional keys below.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Default)]
pub struct GitUpstreamSpec {
    /// The repository's name; absent: the URL's last path segment without `.git`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `https://host[:port]/path`; `http://` only with `insecure_http`. No credentials.
    pub url: String,
    /// A bare env key whose value the gate sends upstream (HTTP basic auth); it is a secret of
    /// the bundle, never shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Ref patterns (`refs/heads/agent/*`) the agent may update; absent: any branch except the
    /// upstream's default branch, no tags; empty: no push at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<Vec<String>>,
    /// A PEM file of CA certificates for a private upstream (host path; mounted read-only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Allow an `http://` upstream (plaintext: for tests and upstreams on a trusted network).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_http: bool,
}

/// The table form in a bottle file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    #[serde(default)]
    name: Option<String>,
    url: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    push: Option<Vec<String>>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    insecure_http: bool,
}

impl<'de> Deserialize<'de> for GitUpstreamSpec {
    // A hand-written visitor rather than `#[serde(untagged)]`, so a table with a wrong key says
    // which key, instead of "did not match any variant".
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = GitUpstreamSpec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a git URL or a table with url (and name, token, push, ca_file, insecure_http)",
                )
            }

            fn visit_str<E: de::Error>(self, url: &str) -> Result<Self::Value, E> {
                Ok(GitUpstreamSpec::from(url))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let t = Table::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(GitUpstreamSpec {
                    name: t.name,
                    url: t.url,
                    token: t.token,
                    push: t.push,
                    ca_file: t.ca_file,
                    insecure_http: t.insecure_http,
                })
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl From<&str> for GitUpstreamSpec {
    fn from(url: &str) -> Self {
        GitUpstreamSpec {
            url: url.to_string(),
            ..Default::default()
        }
    }
}

impl From<String> for GitUpstreamSpec {
    fn from(url: String) -> Self {
        GitUpstreamSpec {
            url,
            ..Default::default()
        }
    }
}

impl GitUpstreamSpec {
    /// Reads the command line's `[NAME=]URL`. A `=` counts as the name's end only when what
    /// precedes it has no `:` or `/` (so a URL is never split).
    pub fn parse_arg(arg: &str) -> Self {
        match arg.split_once('=') {
            Some((name, url)) if !name.contains([':', '/']) => GitUpstreamSpec {
                name: Some(name.to_string()),
                ..GitUpstreamSpec::from(url)
            },
            _ => GitUpstreamSpec::from(arg),
        }
    }

    /// The repository's name: the given one, or the one the URL implies.
    pub fn name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| name_from_url(&self.url))
    }

    /// Where the CA file is mounted in the bundle.
    pub fn ca_path(&self) -> Option<String> {
        self.ca_file
            .as_ref()
            .map(|_| format!("{CA_DIR}/{}.pem", self.name()))
    }

    /// The upstream as the gate runs it.
    pub fn planned(&self) -> PlannedGitUpstream {
        PlannedGitUpstream {
            name: self.name(),
            url: self.url.trim_end_matches('/').to_string(),
            token_key: self.token.clone(),
            push: self.push.clone(),
            ca_file: self.ca_path(),
            insecure_http: self.insecure_http,
        }
    }
}

/// The URL's last path segment without a trailing `.git` (`https://h/org/app.git` -> `app`).
pub fn name_from_url(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let path = path.split_once("://").map_or(path, |(_, rest)| rest);
    let last = path
        .split_once('/')
        .map_or("", |(_, p)| p)
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("");
    last.strip_suffix(".git").unwrap_or(last).to_string()
}

/// Whether `name` is a repository name: 1-64 of letters, digits, `-`, `_` and `.`, starting
/// with a letter or digit, without `..` and not ending in `.git` (the gate adds that).
pub fn is_valid_name(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !name.contains("..")
        && !name.ends_with(".git")
}

/// Whether `pattern` is a push rule: `refs/...`, the characters of a git ref name, with `*`
/// as a wildcard.
pub fn is_valid_push_pattern(pattern: &str) -> bool {
    pattern.starts_with("refs/")
        && pattern.len() > "refs/".len()
        && !pattern.contains("..")
        && !pattern.contains("//")
        && !pattern.contains("@{")
        && !pattern.ends_with(['/', '.'])
        && !pattern
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "~^:?[\\".contains(c))
}

/// Checks an upstream URL; the reason says what to write instead.
fn check_url(url: &str, insecure_http: bool) -> Result<(), String> {
    if url.is_empty() {
        return Err("is empty (give the upstream's https:// URL)".into());
    }
    // The URL is quoted in messages only once it is known to carry no credential.
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or a control character".into());
    }
    if let Some((_, rest)) = url.split_once("://") {
        if rest
            .split(['/', '?', '#'])
            .next()
            .unwrap_or("")
            .contains('@')
        {
            return Err(
                "carries credentials (user:password@ or token@): remove them from the URL and \
                 put the token's env key in token = \"KEY\" (ssh is not supported: use https://)"
                    .into(),
            );
        }
    }
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("https") => {}
        Some("http") if insecure_http => {}
        Some("http") => {
            return Err(format!(
                "{url:?} is plain http: use https, or set insecure_http = true for an upstream \
                 on a trusted network"
            ))
        }
        Some("ssh") => {
            return Err(format!(
                "{url:?}: ssh is not supported; the gate reaches upstreams over https:// with a \
                 token (use the host's https URL and token = \"KEY\")"
            ))
        }
        Some("git") => {
            return Err(format!(
                "{url:?}: git:// is neither authenticated nor encrypted; use the host's \
                 https:// URL"
            ))
        }
        _ if !url.contains("://") && url.contains('@') && url.contains(':') => {
            return Err(
                "is an ssh address (user@host:path): ssh is not supported; use the host's \
                 https:// URL and token = \"KEY\""
                    .into(),
            )
        }
        _ => {
            return Err(format!(
                "{:?} is not a git URL: use https://host/path (http:// with insecure_http = \
                 true; ssh is not supported)",
                url.escape_debug().to_string()
            ))
        }
    }
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let https = format!("https://{rest}");
    let parsed = crate::service::parse_upstream(&https).map_err(|why| format!("{url:?} {why}"))?;
    if parsed.base.is_empty() {
        return Err(format!("{url:?} has no repository path"));
    }
    Ok(())
}

fn check_host_file(path: &Path) -> Result<(), &'static str> {
    if !path.is_absolute() {
        return Err("is relative (use an absolute path)");
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err("contains .. (use the resolved path)");
    }
    if path.as_os_str().as_encoded_bytes().contains(&b',') {
        return Err("contains a comma, which engines' mount syntax cannot carry");
    }
    if !path.is_file() {
        return Err("is not a file on this host");
    }
    Ok(())
}

/// Checks the upstreams of a spec. `env` is the bottle's env (a token may not have a value
/// there); `env_lookup` reads the launcher's environment (a token must be set there). No
/// message carries a token's value or a URL's credential.
pub fn validate(
    upstreams: &[GitUpstreamSpec],
    env: &[EnvEntry],
    env_lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ValidationError> {
    let err = |index: usize, part: &'static str, reason: String| ValidationError::GitUpstream {
        index,
        part,
        reason,
    };
    if upstreams.len() > MAX_GIT_UPSTREAMS {
        return Err(ValidationError::Other {
            field: "git_upstreams".into(),
            reason: format!(
                "{} upstreams, the most is {MAX_GIT_UPSTREAMS}",
                upstreams.len()
            ),
        });
    }
    let mut names = BTreeSet::new();
    for (i, u) in upstreams.iter().enumerate() {
        check_url(&u.url, u.insecure_http).map_err(|why| err(i, "url", why))?;
        let name = u.name();
        if !is_valid_name(&name) {
            let what = match &u.name {
                Some(_) => format!("{:?}", name.escape_debug().to_string()),
                None => format!(
                    "{:?} (taken from the URL; give name = \"...\" or --git-upstream NAME=URL)",
                    name.escape_debug().to_string()
                ),
            };
            return Err(err(
                i,
                "name",
                format!(
                    "{what} must be 1-{MAX_NAME_LEN} of letters, digits, -, _ and ., starting \
                     with a letter or digit, without .. and not ending in .git"
                ),
            ));
        }
        if !names.insert(name.to_ascii_lowercase()) {
            return Err(err(
                i,
                "name",
                format!("{name} is declared twice (names are compared ignoring case)"),
            ));
        }
        if let Some(key) = &u.token {
            if !is_valid_env_key(key) {
                return Err(err(
                    i,
                    "token",
                    // Not quoted: a token pasted here by mistake is a secret.
                    "is not a bare env key: name the variable that holds the token (letters, \
                     digits and _), not the token"
                        .into(),
                ));
            }
            let valued = env
                .iter()
                .any(|e| matches!(e, EnvEntry::Value { key: k, .. } if k == key));
            if valued {
                return Err(err(
                    i,
                    "token",
                    format!(
                        "{key} has a value in env; a token must be a bare key, its value read \
                         from the launcher's environment"
                    ),
                ));
            }
            if env_lookup(key).is_none() {
                return Err(err(
                    i,
                    "token",
                    format!("{key} is not set in the launcher's environment (export it)"),
                ));
            }
        }
        for (j, p) in u.push.iter().flatten().enumerate() {
            if !is_valid_push_pattern(p) {
                return Err(ValidationError::GitUpstream {
                    index: i,
                    part: "push",
                    reason: format!(
                        "[{j}] {:?} must be a ref pattern starting with refs/ (refs/heads/agent/*)",
                        p.escape_debug().to_string()
                    ),
                });
            }
        }
        if let Some(ca) = &u.ca_file {
            check_host_file(ca).map_err(|why| err(i, "ca_file", format!("{ca:?} {why}")))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
