//! Whether this host has the per-bottle loopback addresses bottles are published on, and the
//! shared fallback when it does not.
//!
//! On Linux every `127.x.y.z` is an address of `lo`, so each bottle gets its own and an agent's
//! one-address allowlist (`<loopback>/32`) reaches its own bundle only. On macOS (Docker
//! Desktop, Podman machine, Colima, OrbStack, Rancher Desktop publish on the Mac's loopback)
//! only `127.0.0.1` exists on `lo0` unless aliased, and publishing on `127.77.x.y` fails. There
//! the bottle falls back to the shared `127.0.0.1` ([`LoopbackMode::Shared`]): it works, but
//! every bottle's agent-facing ports share one address, so an agent's allowlist reaches the
//! other bottles' published ports and whatever else listens on `127.0.0.1`. Aliasing the
//! pool's addresses on the loopback interface (`sudo ifconfig lo0 alias 127.77.0.2`, one per
//! address, with a pool as small as the bottles need: `--loopback-pool 127.77.0.0/28`) brings
//! per-bottle addresses back.
//!
//! The test is the one that fails on such a host: binding a TCP socket to the pool's first and
//! last usable addresses on this host. [`MODE_ENV`] overrides it.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};

use ipnet::Ipv4Net;

use crate::spec::LoopbackChoice;

/// `per-bottle`, `shared`, or `auto` (the default: probe this host).
pub const MODE_ENV: &str = "BOTTLE_LOOPBACK_MODE";

/// The address every bottle shares in [`LoopbackMode::Shared`].
pub const SHARED_ADDRESS: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// How bottles are published on this host's loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoopbackMode {
    /// One address per bottle from the pool: an agent reaches its own bundle only.
    PerBottle,
    /// Every bottle on `127.0.0.1`: the pool's addresses do not exist on this host.
    Shared,
}

impl LoopbackMode {
    /// `per-bottle` or `shared`, as [`MODE_ENV`] and `doctor` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            LoopbackMode::PerBottle => "per-bottle",
            LoopbackMode::Shared => "shared",
        }
    }
}

/// The mode in force and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Detected {
    pub mode: LoopbackMode,
    /// In words, for `doctor` and the warning: what was tested or who said so.
    pub reason: String,
}

impl Detected {
    /// The choice to plan with: a pool becomes [`SHARED_ADDRESS`] in the shared mode; a fixed
    /// address stays what was asked.
    pub fn apply(&self, choice: &LoopbackChoice) -> LoopbackChoice {
        match (self.mode, choice) {
            (LoopbackMode::Shared, LoopbackChoice::Pool(_)) => {
                LoopbackChoice::Fixed(SHARED_ADDRESS)
            }
            _ => *choice,
        }
    }

    /// The warning of the shared mode (`None` per bottle): what isolation is lost and how to
    /// get it back.
    pub fn warning(&self) -> Option<String> {
        (self.mode == LoopbackMode::Shared).then(|| {
            format!(
                "publishing on the shared {SHARED_ADDRESS}: {}. Bottles are not isolated from each other on this host: an agent's allowlist ({SHARED_ADDRESS}/32) reaches every bottle's agent-facing ports and anything else listening on {SHARED_ADDRESS}. To get one address per bottle back, alias the loopback pool's addresses (macOS: `sudo ifconfig lo0 alias 127.77.0.2` for each, with a small pool such as --loopback-pool 127.77.0.0/28), or set {MODE_ENV}=per-bottle once they exist",
                self.reason
            )
        })
    }
}

/// Whether a TCP socket can be bound to `addr` on this host (port chosen by the kernel, closed
/// at once).
pub fn bindable(addr: Ipv4Addr) -> bool {
    TcpListener::bind(SocketAddrV4::new(addr, 0)).is_ok()
}

/// The mode for `choice` on this host: [`MODE_ENV`] when set, else per bottle when the pool's
/// first and last usable addresses can be bound here, else shared. A fixed address is used as
/// asked, and is an error when it does not exist here.
pub fn detect(choice: &LoopbackChoice) -> Result<Detected, String> {
    detect_with(choice, std::env::var(MODE_ENV).ok().as_deref(), &bindable)
}

/// [`detect`] with the override and the bind test given (for tests).
pub fn detect_with(
    choice: &LoopbackChoice,
    env: Option<&str>,
    bindable: &dyn Fn(Ipv4Addr) -> bool,
) -> Result<Detected, String> {
    let said = |mode| Detected {
        mode,
        reason: format!("{MODE_ENV}={}", env.unwrap_or_default()),
    };
    match env.map(str::trim).filter(|v| !v.is_empty()) {
        None | Some("auto") => {}
        Some("per-bottle") => return Ok(said(LoopbackMode::PerBottle)),
        Some("shared") => return Ok(said(LoopbackMode::Shared)),
        Some(other) => {
            return Err(format!(
                "{MODE_ENV}={other} is not one of per-bottle, shared, auto"
            ))
        }
    }
    match choice {
        LoopbackChoice::Fixed(addr) => {
            if bindable(*addr) {
                Ok(Detected {
                    mode: LoopbackMode::PerBottle,
                    reason: format!("the fixed address {addr} exists on this host"),
                })
            } else {
                Err(format!(
                    "loopback: {addr} is not an address of this host's loopback interface (publishing on it would fail): alias it (macOS: `sudo ifconfig lo0 alias {addr}`) or choose another"
                ))
            }
        }
        LoopbackChoice::Pool(pool) => {
            let missing: Vec<Ipv4Addr> =
                probes(pool).into_iter().filter(|a| !bindable(*a)).collect();
            Ok(match missing.first() {
                None => Detected {
                    mode: LoopbackMode::PerBottle,
                    reason: format!("addresses of the pool {pool} can be bound on this host"),
                },
                Some(addr) => Detected {
                    mode: LoopbackMode::Shared,
                    reason: format!(
                        "{addr} of the loopback pool {pool} cannot be bound on this host (only {SHARED_ADDRESS} exists on its loopback, as on macOS)"
                    ),
                },
            })
        }
    }
}

/// The pool's first and last usable addresses (not `.0`, `.255`, or 127.0.0.1).
fn probes(pool: &Ipv4Net) -> Vec<Ipv4Addr> {
    let usable = |a: &Ipv4Addr| {
        let last = a.octets()[3];
        last != 0 && last != 255 && *a != SHARED_ADDRESS
    };
    let first = pool.hosts().find(usable);
    let last = pool.hosts().rev().find(usable);
    first.into_iter().chain(last).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> LoopbackChoice {
        LoopbackChoice::Pool("127.77.0.0/16".parse().unwrap())
    }

    #[test]
    fn a_host_with_the_whole_loopback_net_plans_per_bottle() {
        let d = detect_with(&pool(), None, &|_| true).unwrap();
        assert_eq!(d.mode, LoopbackMode::PerBottle);
        assert_eq!(d.apply(&pool()), pool());
        assert_eq!(d.warning(), None);
    }

    #[test]
    fn a_host_with_only_127_0_0_1_shares_it_and_says_what_is_lost() {
        let only_localhost = |a: Ipv4Addr| a == Ipv4Addr::LOCALHOST;
        let d = detect_with(&pool(), Some("auto"), &only_localhost).unwrap();
        assert_eq!(d.mode, LoopbackMode::Shared);
        assert!(d.reason.contains("127.77.0.1"), "{}", d.reason);
        assert_eq!(d.apply(&pool()), LoopbackChoice::Fixed(SHARED_ADDRESS));
        let w = d.warning().unwrap();
        for want in ["not isolated", "ifconfig lo0 alias", "127.0.0.1/32"] {
            assert!(w.contains(want), "{want:?} missing from {w}");
        }
        // One alias is not the pool: the last address is tested too.
        let one_alias = |a: Ipv4Addr| a == Ipv4Addr::new(127, 77, 0, 1);
        let d = detect_with(&pool(), None, &one_alias).unwrap();
        assert_eq!(d.mode, LoopbackMode::Shared);
        assert!(d.reason.contains("127.77.255.254"), "{}", d.reason);
    }

    #[test]
    fn a_fixed_address_is_kept_or_refused_naming_the_field() {
        let fixed = LoopbackChoice::Fixed(Ipv4Addr::new(127, 5, 5, 5));
        let d = detect_with(&fixed, None, &|_| true).unwrap();
        assert_eq!(d.apply(&fixed), fixed);
        let err = detect_with(&fixed, None, &|_| false).unwrap_err();
        assert!(err.starts_with("loopback: 127.5.5.5"), "{err}");
    }

    #[test]
    fn the_variable_overrides_the_test_and_a_bad_value_is_named() {
        let d = detect_with(&pool(), Some("shared"), &|_| true).unwrap();
        assert_eq!(d.mode, LoopbackMode::Shared);
        assert!(d.reason.contains(MODE_ENV));
        let d = detect_with(&pool(), Some("per-bottle"), &|_| false).unwrap();
        assert_eq!(d.mode, LoopbackMode::PerBottle);
        let err = detect_with(&pool(), Some("sometimes"), &|_| true).unwrap_err();
        assert!(err.contains("BOTTLE_LOOPBACK_MODE=sometimes"), "{err}");
    }

    #[test]
    fn this_host_binds_what_its_loopback_has() {
        assert!(bindable(Ipv4Addr::LOCALHOST));
        if cfg!(target_os = "linux") {
            assert!(bindable(Ipv4Addr::new(127, 77, 3, 4)));
            assert!(
                !bindable(Ipv4Addr::new(192, 0, 2, 1)),
                "TEST-NET-1 is no address here"
            );
        }
    }
}
