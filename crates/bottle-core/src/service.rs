//! Service endpoints: APIs an agent calls through its bundle, which adds the credentials the
//! agent never holds.
//!
//! A bottle declares services (`[[services]]` in a bottle file). Each becomes an agent-facing
//! daemon of the bundle, published like the others: the agent speaks plain HTTP to
//! `http://<loopback>:<port>` (its `agent_env` variable), and the bundle forwards each request
//! to the upstream over TLS, with the configured headers set from secrets that live in the
//! bundle's environment only. The bundle learns its services from [`SERVICES_ENV`]: the
//! [`PlannedService`]s as JSON, naming secrets by key, never by value.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::spec::{is_valid_env_key, ValidationError};

/// The environment variable carrying the bundle's services (JSON of [`PlannedService`]s).
pub const SERVICES_ENV: &str = "BOTTLE_SERVICES";
/// Where a service's `ca_file` is mounted in the bundle (`<dir>/<name>.pem`).
pub const CA_DIR: &str = "/etc/bottle/services";
/// The most services one bottle declares.
pub const MAX_SERVICES: usize = 32;
/// Agent variables the bundle's own daemons fill; a service may not take them.
pub const RESERVED_AGENT_VARS: [&str; 5] = [
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "MCP_SUPERVISE_URL",
    "GIT_GATE_URL",
];

/// One header the bundle sets on every request to the upstream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inject {
    /// The header's name (`x-api-key`, `authorization`).
    pub header: String,
    /// A bare env key: the value comes from the launcher's environment into the bundle's.
    pub secret: String,
    /// The header's value, with `{}` where the secret goes (`Bearer {}`); the secret alone when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// A service as a bottle declares it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// 1-20 of `a-z`, `0-9`, `-`: the daemon is `svc-<name>`.
    pub name: String,
    /// `https://host[:port][/base/path]`.
    pub upstream: String,
    /// The agent variable that gets `http://<loopback>:<port>`.
    pub agent_env: String,
    #[serde(default)]
    pub inject: Vec<Inject>,
    /// Optional allowlist of request paths (`/v1/*`, `/v1/messages`), each optionally
    /// preceded by a method (`POST /v1/*`). Empty: every path.
    #[serde(default)]
    pub paths: Vec<String>,
    /// A PEM file of CA certificates the upstream's certificate must chain to, for private
    /// upstreams (host path; mounted read-only). Absent: the built-in web PKI roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Allow an `http://` upstream (plaintext: for tests and upstreams on the bundle's own
    /// network only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_http: bool,
}

/// A service as the bundle runs it: its port, and where its CA file is inside the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedService {
    pub name: String,
    pub port: u16,
    pub upstream: String,
    pub inject: Vec<Inject>,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub insecure_http: bool,
}

impl ServiceSpec {
    /// The daemon name of this service.
    pub fn daemon(&self) -> String {
        format!("svc-{}", self.name)
    }

    /// Where the CA file is mounted in the bundle.
    pub fn ca_path(&self) -> Option<String> {
        self.ca_file
            .as_ref()
            .map(|_| format!("{CA_DIR}/{}.pem", self.name))
    }
}

/// The parts of an upstream URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The base path, without a trailing `/` (empty for none).
    pub base: String,
}

/// Reads `https://host[:port][/base]` (or `http://` when `insecure_http`).
pub fn parse_upstream(url: &str) -> Result<Upstream, &'static str> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err("must be an https:// URL");
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if path.contains(['?', '#']) {
        return Err("must not have a query or fragment");
    }
    if authority.contains('@') {
        return Err("must not carry credentials: put the secret in inject");
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => (
            h,
            crate::allowlist::parse_port(p).ok_or("has a port that is not 1-65535")?,
        ),
        _ => (authority, if tls { 443 } else { 80 }),
    };
    let host = crate::allowlist::normalize_host(host).ok_or("has an invalid host")?;
    Ok(Upstream {
        tls,
        host,
        port,
        base: path.trim_end_matches('/').to_string(),
    })
}

/// Whether `name` is an HTTP header name (RFC 9110 token characters).
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Checks the services of a spec; `other_vars` are the bottle's own env keys.
pub fn validate(
    services: &[ServiceSpec],
    env_keys: &BTreeSet<&str>,
) -> Result<(), ValidationError> {
    let err = |i: usize, field: &str, reason: String| ValidationError::Other {
        field: format!("services[{i}].{field}"),
        reason,
    };
    if services.len() > MAX_SERVICES {
        return Err(ValidationError::Other {
            field: "services".into(),
            reason: format!("{} services, the most is {MAX_SERVICES}", services.len()),
        });
    }
    let (mut names, mut vars) = (BTreeSet::new(), BTreeSet::new());
    for (i, s) in services.iter().enumerate() {
        let name_ok = !s.name.is_empty()
            && s.name.len() <= 20
            && s.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.name.starts_with('-')
            && !s.name.ends_with('-');
        if !name_ok {
            return Err(err(
                i,
                "name",
                format!("{:?} must be 1-20 characters of a-z, 0-9 and -", s.name),
            ));
        }
        if !names.insert(s.name.as_str()) {
            return Err(err(i, "name", format!("{} is declared twice", s.name)));
        }
        let up = parse_upstream(&s.upstream)
            .map_err(|why| err(i, "upstream", format!("{:?} {why}", s.upstream)))?;
        if !up.tls && !s.insecure_http {
            return Err(err(
                i,
                "upstream",
                format!("{:?} is plain http: use https, or set insecure_http = true for an upstream on a trusted network", s.upstream),
            ));
        }
        if !is_valid_env_key(&s.agent_env) {
            return Err(err(
                i,
                "agent_env",
                format!("{:?} is not a valid variable name", s.agent_env),
            ));
        }
        if RESERVED_AGENT_VARS.contains(&s.agent_env.as_str())
            || env_keys.contains(s.agent_env.as_str())
        {
            return Err(err(
                i,
                "agent_env",
                format!("{} is already a variable of this bottle", s.agent_env),
            ));
        }
        if !vars.insert(s.agent_env.as_str()) {
            return Err(err(
                i,
                "agent_env",
                format!("{} is given to two services", s.agent_env),
            ));
        }
        let mut headers = BTreeSet::new();
        for (j, inject) in s.inject.iter().enumerate() {
            if !is_header_name(&inject.header) {
                return Err(err(
                    i,
                    &format!("inject[{j}].header"),
                    format!("{:?} is not a header name", inject.header),
                ));
            }
            if !headers.insert(inject.header.to_ascii_lowercase()) {
                return Err(err(
                    i,
                    &format!("inject[{j}].header"),
                    format!("{} is injected twice", inject.header),
                ));
            }
            if !is_valid_env_key(&inject.secret) {
                return Err(err(
                    i,
                    &format!("inject[{j}].secret"),
                    format!("{:?} is not a bare env key", inject.secret),
                ));
            }
            if let Some(f) = &inject.format {
                if f.matches("{}").count() != 1 || f.contains(['\r', '\n']) {
                    return Err(err(
                        i,
                        &format!("inject[{j}].format"),
                        "must hold {} exactly once, on one line".into(),
                    ));
                }
            }
        }
        for (j, p) in s.paths.iter().enumerate() {
            let path = p.rsplit(' ').next().unwrap_or("");
            if !path.starts_with('/') || p.split(' ').count() > 2 {
                return Err(err(
                    i,
                    &format!("paths[{j}]"),
                    format!("{p:?} must be /path or METHOD /path (a trailing * matches any rest)"),
                ));
            }
        }
        if let Some(ca) = &s.ca_file {
            if !ca.starts_with('/') {
                return Err(err(
                    i,
                    "ca_file",
                    format!("{ca:?} must be an absolute path"),
                ));
            }
        }
    }
    Ok(())
}

/// Whether `method path` is allowed by `paths` (empty: all). A pattern's trailing `*` matches
/// any rest; a pattern without a method matches every method.
pub fn path_allowed(paths: &[String], method: &str, path: &str) -> bool {
    paths.is_empty()
        || paths.iter().any(|p| {
            let (m, pattern) = match p.split_once(' ') {
                Some((m, pat)) => (Some(m), pat),
                None => (None, p.as_str()),
            };
            let method_ok = m.is_none_or(|m| m.eq_ignore_ascii_case(method));
            let path_ok = match pattern.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => path == pattern,
            };
            method_ok && path_ok
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, upstream: &str, var: &str) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            upstream: upstream.into(),
            agent_env: var.into(),
            inject: vec![Inject {
                header: "x-api-key".into(),
                secret: "API_KEY".into(),
                format: None,
            }],
            paths: vec![],
            ca_file: None,
            insecure_http: false,
        }
    }

    #[track_caller]
    fn check(services: &[ServiceSpec], expect: Result<(), &str>) {
        let env = BTreeSet::from(["TOKEN"]);
        match (validate(services, &env), expect) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(part)) => assert!(e.to_string().contains(part), "{e}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn validation_names_the_field() {
        let ok = svc(
            "anthropic",
            "https://api.anthropic.test",
            "ANTHROPIC_BASE_URL",
        );
        check(std::slice::from_ref(&ok), Ok(()));
        check(
            &[ok.clone(), ok.clone()],
            Err("services[1].name: anthropic is declared twice"),
        );
        let mut other = svc("b", "https://b.test/v1/", "ANTHROPIC_BASE_URL");
        check(&[ok.clone(), other.clone()], Err("services[1].agent_env"));
        other.agent_env = "TOKEN".into();
        check(
            &[other.clone()],
            Err("services[0].agent_env: TOKEN is already"),
        );
        other.agent_env = "HTTPS_PROXY".into();
        check(&[other], Err("already a variable"));
        check(
            &[svc("A", "https://a.test", "A_URL")],
            Err("services[0].name"),
        );
        check(&[svc("a", "http://a.test", "A_URL")], Err("plain http"));
        let mut insecure = svc("a", "http://a.test:8080", "A_URL");
        insecure.insecure_http = true;
        check(&[insecure], Ok(()));
        check(&[svc("a", "ftp://a.test", "A_URL")], Err("https:// URL"));
        check(
            &[svc("a", "https://u:p@a.test", "A_URL")],
            Err("credentials"),
        );
        check(&[svc("a", "https://a.test:0", "A_URL")], Err("port"));
        let mut bad = svc("a", "https://a.test", "A_URL");
        bad.inject[0].header = "x api".into();
        check(&[bad.clone()], Err("services[0].inject[0].header"));
        bad.inject[0].header = "x-api".into();
        bad.inject[0].secret = "API=x".into();
        check(&[bad.clone()], Err("inject[0].secret"));
        bad.inject[0].secret = "API".into();
        bad.inject[0].format = Some("Bearer".into());
        check(&[bad.clone()], Err("inject[0].format"));
        bad.inject[0].format = Some("Bearer {}".into());
        bad.paths = vec!["v1/*".into()];
        check(&[bad], Err("paths[0]"));
    }

    #[test]
    fn upstreams() {
        let u = parse_upstream("https://API.test:8443/v1/").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.base.as_str()),
            (true, "api.test", 8443, "/v1")
        );
        let u = parse_upstream("https://[::1]").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 443));
        assert!(parse_upstream("https://a.test/?x").is_err());
    }

    #[test]
    fn paths() {
        let p = vec!["POST /v1/*".to_string(), "/health".to_string()];
        assert!(path_allowed(&p, "POST", "/v1/messages"));
        assert!(!path_allowed(&p, "GET", "/v1/messages"));
        assert!(path_allowed(&p, "GET", "/health"));
        assert!(!path_allowed(&p, "GET", "/healthz"));
        assert!(path_allowed(&[], "DELETE", "/x"));
    }
}
