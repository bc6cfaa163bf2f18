//! Formatting of results on stdout: text tables for people, JSON with stable field names for
//! scripts, and `export` lines for `eval`. The JSON shapes are documented in the crate docs
//! (`main.rs`); renaming a field is a breaking change.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::SystemTime;

use bottle_core::lifecycle::{BottleStatus, Removed};
use bottle_core::plan::{AgentEndpoints, DaemonEndpoint};
use serde::Serialize;

use crate::cli::Output;
use crate::exit::Failure;

/// Writes to stdout. A closed pipe (`bottle ps | head -1`) is not an error worth reporting.
pub fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Pretty JSON and a newline.
pub fn emit_json<T: Serialize + ?Sized>(value: &T) {
    let mut text = serde_json::to_string_pretty(value).expect("reports always serialize");
    text.push('\n');
    emit(&text);
}

/// Refuses `--output env` for commands that print no variables.
pub fn refuse_env(output: Output, command: &str) -> Result<(), Failure> {
    if output == Output::Env {
        return Err(Failure::input(
            format!("--output env: `bottle {command}` prints no variables"),
            "use --output text or --output json; `bottle up` and `bottle env` print variables",
        ));
    }
    Ok(())
}

/// A left-aligned table with a header row; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        let cells: Vec<&str> = cells.collect();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// Quotes `value` for POSIX `sh`: single quotes, with each `'` written as `'\''`.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// `export KEY='value'` lines, sorted by key. Keys are valid variable names by construction
/// (the catalog validates them); any other key is skipped rather than risk a broken `eval`.
pub fn exports(env: &BTreeMap<String, String>) -> String {
    env.iter()
        .filter(|(k, _)| bottle_core::spec::is_valid_env_key(k))
        .map(|(k, v)| format!("export {k}={}\n", shell_quote(v)))
        .collect()
}

/// A byte count in the largest binary unit that divides it: `64 MiB`, `1 GiB`, `1000 bytes`.
pub fn size(bytes: u64) -> String {
    let units = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
    units
        .iter()
        .find(|(shift, _)| bytes >= 1 << shift && bytes.is_multiple_of(1 << shift))
        .map_or_else(
            || format!("{bytes} bytes"),
            |(shift, unit)| format!("{} {unit}", bytes >> shift),
        )
}

/// A short age: `42s`, `5m`, `3h`, `2d`; `-` when unknown.
pub fn age(created: Option<SystemTime>, now: SystemTime) -> String {
    let Some(secs) = age_seconds(created, now) else {
        return "-".into();
    };
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

pub fn age_seconds(created: Option<SystemTime>, now: SystemTime) -> Option<u64> {
    created.map(|c| now.duration_since(c).map_or(0, |d| d.as_secs()))
}

/// What `up` and `env` print: the agent's endpoints and where the bottle lives.
#[derive(Debug, Serialize)]
pub struct EndpointsReport<'a> {
    pub slug: &'a str,
    pub runtime: &'a str,
    pub prefix: &'a str,
    pub loopback: String,
    pub subnet: Option<String>,
    pub network: Option<String>,
    pub container: Option<String>,
    pub env: &'a BTreeMap<String, String>,
    pub allow_cidrs: &'a [String],
    pub daemons: &'a [DaemonEndpoint],
}

impl<'a> EndpointsReport<'a> {
    pub fn new(endpoints: &'a AgentEndpoints, runtime: &'a str, prefix: &'a str) -> Self {
        EndpointsReport {
            slug: &endpoints.slug,
            runtime,
            prefix,
            loopback: endpoints.loopback.to_string(),
            subnet: None,
            network: None,
            container: None,
            env: &endpoints.env,
            allow_cidrs: &endpoints.allow_cidrs,
            daemons: &endpoints.daemons,
        }
    }
}

/// Prints endpoints in the chosen format.
pub fn endpoints(output: Output, report: &EndpointsReport<'_>) {
    match output {
        Output::Json => emit_json(report),
        Output::Env => emit(&exports(report.env)),
        Output::Text => {
            let mut s = format!(
                "bottle {} on {} (loopback {}",
                report.slug, report.runtime, report.loopback
            );
            if let Some(subnet) = &report.subnet {
                s.push_str(&format!(", subnet {subnet}"));
            }
            s.push_str(")\n\n");
            let daemons: Vec<Vec<String>> = report
                .daemons
                .iter()
                .map(|d| vec![d.daemon.clone(), d.url.clone()])
                .collect();
            s.push_str(&table(&["DAEMON", "URL"], &daemons));
            s.push('\n');
            let vars: Vec<Vec<String>> = report
                .env
                .iter()
                .map(|(k, v)| vec![k.clone(), v.clone()])
                .collect();
            s.push_str(&table(&["VARIABLE", "VALUE"], &vars));
            s.push_str(&format!(
                "\nallow_cidrs: {}\n",
                report.allow_cidrs.join(", ")
            ));
            emit(&s);
        }
    }
}

/// One bottle of `ps --output json`.
#[derive(Debug, Serialize)]
pub struct PsEntry<'a> {
    pub slug: &'a str,
    /// `running`, `exited`, ...; `null` when the bundle container is missing.
    pub state: Option<String>,
    /// `starting`, `healthy`, `unhealthy`; `null` when the engine reports none.
    pub health: Option<String>,
    pub loopback: Option<String>,
    pub subnet: Option<&'a str>,
    pub daemons: &'a [String],
    pub network: Option<&'a str>,
    pub container: Option<&'a str>,
    /// Seconds since the Unix epoch when the bundle was created.
    pub created: Option<u64>,
    pub age_seconds: Option<u64>,
    /// Agent-facing daemons of a running bundle that do not accept connections (found by
    /// probing their published ports; empty otherwise).
    pub unreachable: &'a [String],
    /// Network and bundle present, bundle running and not unhealthy, every agent-facing
    /// daemon answering.
    pub complete: bool,
}

impl<'a> PsEntry<'a> {
    pub fn new(b: &'a BottleStatus, now: SystemTime) -> Self {
        PsEntry {
            slug: &b.slug,
            state: b.state.as_ref().map(ToString::to_string),
            health: b.health.map(|h| health_word(h).to_string()),
            loopback: b.loopback.map(|l| l.to_string()),
            subnet: b.subnet.as_deref(),
            daemons: &b.daemons,
            network: b.network.as_deref(),
            container: b.container.as_deref(),
            created: b.created.and_then(|c| {
                c.duration_since(SystemTime::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_secs())
            }),
            age_seconds: age_seconds(b.created, now),
            unreachable: &b.unreachable,
            complete: b.is_complete(),
        }
    }
}

/// The HEALTH column of `ps`: a daemon that does not answer makes the bottle unhealthy
/// whatever the engine says (Podman here runs no health checks at all), else the engine's word.
pub fn health_cell(b: &BottleStatus) -> String {
    if !b.unreachable.is_empty() {
        return format!("unhealthy ({} down)", b.unreachable.join(", "));
    }
    b.health
        .map_or_else(|| "-".to_string(), |h| health_word(h).to_string())
}

pub fn health_word(h: bottle_core::runtime::Health) -> &'static str {
    use bottle_core::runtime::Health;
    match h {
        Health::Starting => "starting",
        Health::Healthy => "healthy",
        Health::Unhealthy => "unhealthy",
    }
}

/// Prints `ps`.
pub fn bottles(output: Output, bottles: &[BottleStatus]) {
    let now = SystemTime::now();
    match output {
        Output::Json | Output::Env => {
            let entries: Vec<PsEntry<'_>> = bottles.iter().map(|b| PsEntry::new(b, now)).collect();
            emit_json(&entries);
        }
        Output::Text => {
            let dash = || "-".to_string();
            let rows: Vec<Vec<String>> = bottles
                .iter()
                .map(|b| {
                    let state = match (&b.state, &b.network) {
                        (Some(s), Some(_)) => s.to_string(),
                        (Some(s), None) => format!("{s} (no network)"),
                        (None, _) => "no bundle".to_string(),
                    };
                    vec![
                        b.slug.clone(),
                        state,
                        health_cell(b),
                        b.loopback.map_or_else(dash, |l| l.to_string()),
                        b.subnet.clone().unwrap_or_else(dash),
                        if b.daemons.is_empty() {
                            dash()
                        } else {
                            b.daemons.join(",")
                        },
                        age(b.created, now),
                    ]
                })
                .collect();
            emit(&table(
                &[
                    "SLUG", "STATE", "HEALTH", "LOOPBACK", "SUBNET", "DAEMONS", "AGE",
                ],
                &rows,
            ));
        }
    }
}

/// Prints what `down` or `gc` removed (or would remove).
pub fn removed(output: Output, removed: &[Removed], verb: &str) {
    match output {
        Output::Json | Output::Env => emit_json(removed),
        Output::Text => {
            let text: String = removed
                .iter()
                .map(|r| {
                    format!(
                        "{verb} {} {} (bottle {}: {})\n",
                        r.kind, r.name, r.slug, r.reason
                    )
                })
                .collect();
            emit(&text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_quote(value: &str, expect: &str) {
        assert_eq!(shell_quote(value), expect);
    }

    #[test]
    fn quoting() {
        check_quote("http://127.77.0.2:32768", "'http://127.77.0.2:32768'");
        check_quote("", "''");
        check_quote("it's", r"'it'\''s'");
        check_quote("$(rm -rf /)`x`", "'$(rm -rf /)`x`'");
    }

    #[test]
    fn sizes() {
        assert_eq!(size(64 << 20), "64 MiB");
        assert_eq!(size(1 << 30), "1 GiB");
        assert_eq!(size(1536 << 10), "1536 KiB");
        assert_eq!(size(1000), "1000 bytes");
    }

    #[test]
    fn ages() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let ago = |s| Some(now - std::time::Duration::from_secs(s));
        assert_eq!(age(ago(5), now), "5s");
        assert_eq!(age(ago(300), now), "5m");
        assert_eq!(age(ago(7200), now), "2h");
        assert_eq!(age(ago(3 * 86400), now), "3d");
        assert_eq!(age(None, now), "-");
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
    }
}
