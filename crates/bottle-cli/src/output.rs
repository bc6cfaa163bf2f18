//! Formatting of results: text tables for people, JSON with stable field names for scripts
//! (the types of [`crate::json`], documented in `docs/OUTPUT.md`), and `export` lines for
//! `eval`. Every renderer writes to any [`Write`]; the binary gives it stdout.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::SystemTime;

use bottle_core::BottleStatus;
use serde::Serialize;

use crate::cli::Output;
use crate::json::{self, health_word};

/// Pretty JSON and a newline.
pub fn write_json<T: Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> io::Result<()> {
    let mut text = serde_json::to_string_pretty(value).expect("reports always serialize");
    text.push('\n');
    out.write_all(text.as_bytes())
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
    let Some(secs) = json::age_seconds(created, now) else {
        return "-".into();
    };
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Writes endpoints in the chosen format.
pub fn endpoints(out: &mut dyn Write, output: Output, report: &json::Endpoints) -> io::Result<()> {
    match output {
        Output::Json => write_json(out, report),
        Output::Env => out.write_all(exports(&report.env).as_bytes()),
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
            out.write_all(s.as_bytes())
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

/// Writes `ps`.
pub fn bottles(out: &mut dyn Write, output: Output, bottles: &[BottleStatus]) -> io::Result<()> {
    let now = SystemTime::now();
    match output {
        Output::Json | Output::Env => {
            let entries: Vec<json::Bottle> =
                bottles.iter().map(|b| json::Bottle::new(b, now)).collect();
            write_json(out, &entries)
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
            let text = table(
                &[
                    "SLUG", "STATE", "HEALTH", "LOOPBACK", "SUBNET", "DAEMONS", "AGE",
                ],
                &rows,
            );
            out.write_all(text.as_bytes())
        }
    }
}

/// Writes what `down` or `gc` removed (or would remove).
pub fn removed(
    out: &mut dyn Write,
    output: Output,
    removed: &[json::Removed],
    verb: &str,
) -> io::Result<()> {
    match output {
        Output::Json | Output::Env => write_json(out, removed),
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
            out.write_all(text.as_bytes())
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
