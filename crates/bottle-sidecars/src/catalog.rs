//! The daemons this binary provides, as a [`Catalog`], and how the bundle's environment selects
//! them and moves their ports.
//!
//! The image declares this catalog in its `io.bottle.catalog` label, so the planner learns from
//! the image alone which daemons exist and which agent variables they fill. Daemons the binary
//! does not implement (pipelock) are absent rather than faked: a bottle that asks for
//! them is refused at plan time instead of getting a stand-in that enforces nothing.

use bottle_core::catalog::DAEMONS_ENV;
use bottle_core::{Catalog, DaemonDef, Facing, When};

/// The name of the egress proxy daemon.
pub const EGRESS: &str = "egress";
/// The name of the supervise daemon.
pub const SUPERVISE: &str = "supervise";
/// The name of the services daemon: one process for every service of the bottle, each on
/// its own port from this one up (the planner names them `svc-<name>`).
pub const SERVICES: &str = "services";
/// The name of the git gate daemon.
pub const GIT_GATE: &str = "git-gate";

/// The catalog the image provides: egress is the agent-facing proxy, supervise is optional,
/// services serves the bottle's service endpoints, git-gate the bottle's git upstreams, selfcheck (internal, only when named)
/// reports what the container is.
pub fn provided() -> Catalog {
    Catalog {
        daemons: vec![
            DaemonDef {
                name: EGRESS.into(),
                port: 9099,
                facing: Facing::Agent,
                scheme: "http".into(),
                path: String::new(),
                vars: vec!["HTTPS_PROXY".into(), "HTTP_PROXY".into()],
                when: When::Always,
            },
            DaemonDef {
                name: SUPERVISE.into(),
                port: 9100,
                facing: Facing::Agent,
                scheme: "http".into(),
                path: "/".into(),
                vars: vec!["MCP_SUPERVISE_URL".into()],
                when: When::Supervise,
            },
            DaemonDef {
                name: SERVICES.into(),
                port: 9300,
                facing: Facing::Agent,
                scheme: "http".into(),
                path: String::new(),
                vars: vec![],
                when: When::Services,
            },
            DaemonDef {
                name: GIT_GATE.into(),
                port: 9418,
                facing: Facing::Agent,
                scheme: "git".into(),
                path: String::new(),
                vars: vec!["GIT_GATE_URL".into()],
                when: When::GitUpstreams,
            },
            bottle_core::selfcheck::daemon_def(),
        ],
    }
}

/// The environment variable that moves daemon `name`'s port (`BOTTLE_EGRESS_PORT`), so tests and
/// several bundles sharing one network namespace do not collide.
pub fn port_env(name: &str) -> String {
    format!(
        "BOTTLE_{}_PORT",
        name.to_ascii_uppercase().replace('-', "_")
    )
}

/// The port daemon `def` listens on: its override variable when set, else the catalog's port.
pub fn port_of(def: &DaemonDef) -> Result<u16, String> {
    let var = port_env(&def.name);
    match std::env::var(&var) {
        Ok(v) => v
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| {
                format!(
                "{var}={v:?} is not a port for daemon {}: set it to 1-65535 or unset it to use {}",
                def.name, def.port
            )
            }),
        Err(_) => Ok(def.port),
    }
}

/// The daemons a bundle runs, from the CSV in [`DAEMONS_ENV`] (`None` when it is unset).
///
/// Unset means every daemon that runs [`When::Always`], so the image does something useful when
/// started by hand; an empty value means none. An unknown name is an error naming the known ones,
/// because silently skipping it would leave the agent without a daemon it was promised.
pub fn selected(catalog: &Catalog, csv: Option<&str>) -> Result<Vec<DaemonDef>, String> {
    let Some(csv) = csv else {
        return Ok(catalog
            .daemons
            .iter()
            .filter(|d| d.when == When::Always)
            .cloned()
            .collect());
    };
    let mut picked: Vec<DaemonDef> = Vec::new();
    for name in csv.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let def = catalog.get(name).ok_or_else(|| {
            format!(
                "{DAEMONS_ENV} names daemon {name:?}, which this image does not provide; \
                 known daemons: {}. Remove it from {DAEMONS_ENV} or use an image that provides it",
                catalog.names()
            )
        })?;
        if !picked.iter().any(|d| d.name == def.name) {
            picked.push(def.clone());
        }
    }
    Ok(picked)
}

/// [`selected`] over the process environment.
pub fn selected_from_env(catalog: &Catalog) -> Result<Vec<DaemonDef>, String> {
    selected(catalog, std::env::var(DAEMONS_ENV).ok().as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provided_catalog_round_trips_through_the_label_parser() {
        let json = provided().to_json();
        assert_eq!(Catalog::from_json(&json).unwrap(), provided());
    }

    #[track_caller]
    fn check(csv: Option<&str>, expect: Result<&[&str], &str>) {
        let got = selected(&provided(), csv);
        match (got, expect) {
            (Ok(got), Ok(names)) => {
                let got: Vec<&str> = got.iter().map(|d| d.name.as_str()).collect();
                assert_eq!(got, names, "{csv:?}");
            }
            (Err(e), Err(part)) => assert!(e.contains(part), "{csv:?}: {e}"),
            (got, expect) => panic!("{csv:?}: got {got:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn selection() {
        check(None, Ok(&["egress"]));
        check(Some(""), Ok(&[]));
        check(Some("egress"), Ok(&["egress"]));
        check(Some(" supervise , egress,"), Ok(&["supervise", "egress"]));
        check(Some("egress,egress"), Ok(&["egress"]));
        check(
            Some("egress,pipelock"),
            Err("known daemons: egress, supervise"),
        );
    }

    #[test]
    fn port_variable_names() {
        assert_eq!(port_env("egress"), "BOTTLE_EGRESS_PORT");
        assert_eq!(port_env("git-gate"), "BOTTLE_GIT_GATE_PORT");
    }
}
