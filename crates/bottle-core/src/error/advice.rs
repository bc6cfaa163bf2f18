//! Errors as data for a front end: why a bottle is not usable ([`Unusable`]) and what the
//! caller can do about an [`Error`] ([`Advice`]), which a front end words with its own
//! commands and flags.

use super::{Error, RuntimeError};
use crate::runtime::ContainerState;

/// Why a bottle that exists cannot hand out endpoints ([`Error::NotUsable`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unusable {
    /// The bundle is not running.
    #[error("bundle {container} is {state}")]
    NotRunning {
        container: String,
        state: ContainerState,
    },
    /// The bundle stopped right after `up` started it.
    #[error("bundle {container} stopped right after start")]
    StoppedAtStart { container: String },
    /// The bundle exited while `up` waited for one of its daemons.
    #[error("bundle {container} exited while waiting for {daemon}")]
    ExitedWhileWaiting { container: String, daemon: String },
    /// An agent-facing daemon of a running bundle does not accept connections.
    #[error("daemon {daemon} does not accept connections on {address}")]
    NotAnswering { daemon: String, address: String },
    /// A label the lifecycle reads the bundle by is missing (`loopback`, `catalog`).
    #[error("bundle {container} has no {label} label")]
    MissingLabel {
        container: String,
        label: &'static str,
    },
    /// A published port of the bundle has no host port.
    #[error("bundle {container} has unassigned ports")]
    UnassignedPorts { container: String },
}

/// What the caller can do about an [`Error`], as data: a front end words it, with the commands
/// and flags it has (bottle's CLI adds its `--runtime` and `--prefix`). Nothing here names a
/// command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Advice {
    /// Nothing to suggest beyond the message.
    None,
    /// Fix the named input field ([`ValidationError::field`](crate::ValidationError::field)).
    FixInput { field: String },
    /// Start the engine, or point at the one that runs; `hint` is the adapter's word on what
    /// it needs.
    StartEngine { engine: String, hint: String },
    /// Load the image into the engine (or pull it where a registry is reachable).
    LoadImage { image: String, engine: String },
    /// Free a pool's candidates (tear down unused bottles, collect debris) or configure a
    /// larger pool.
    FreePool { what: &'static str },
    /// The bottle is up: use it, or remove it; debris of a crashed launch is collected by gc.
    UseOrRemoveBottle { slug: String },
    /// Bring the bottle up.
    StartBottle { slug: String },
    /// Take the bottle down and bring it up again.
    RecreateBottle { slug: String },
    /// Read the bundle's output.
    ReadLogs { slug: String },
    /// Read the bundle's output, then take the bottle down and bring it up again.
    ReadLogsThenRecreate { slug: String },
    /// Objects were left behind: collect them (gc).
    CollectGarbage,
    /// Look at the engine's own details (more verbose logs, the engine's diagnostics).
    Diagnose,
}

impl Error {
    /// What the caller can do about it, as data (see [`Advice`]).
    pub fn advice(&self) -> Advice {
        match self {
            Error::Invalid(v) => Advice::FixInput {
                field: v.field().to_string(),
            },
            Error::Runtime(RuntimeError::EngineUnavailable { engine, hint, .. }) => {
                Advice::StartEngine {
                    engine: engine.clone(),
                    hint: hint.clone(),
                }
            }
            Error::Runtime(_) | Error::Io { .. } => Advice::Diagnose,
            Error::PoolExhausted { what, .. } => Advice::FreePool { what },
            Error::AlreadyUp { slug, .. } => Advice::UseOrRemoveBottle { slug: slug.clone() },
            Error::NotUp { slug } => Advice::StartBottle { slug: slug.clone() },
            Error::NotUsable { slug, reason } => {
                let slug = slug.clone();
                match reason {
                    Unusable::NotRunning { .. }
                    | Unusable::MissingLabel { .. }
                    | Unusable::UnassignedPorts { .. } => Advice::RecreateBottle { slug },
                    Unusable::StoppedAtStart { .. } | Unusable::ExitedWhileWaiting { .. } => {
                        Advice::ReadLogs { slug }
                    }
                    Unusable::NotAnswering { .. } => Advice::ReadLogsThenRecreate { slug },
                }
            }
            Error::ImageMissing { image, engine } => Advice::LoadImage {
                image: image.clone(),
                engine: engine.clone(),
            },
            Error::NotReady { slug, .. } => Advice::ReadLogs { slug: slug.clone() },
            Error::CleanupFailed { .. } => Advice::CollectGarbage,
            Error::ImageLacksDaemon { .. }
            | Error::PublishedBeyondLoopback { .. }
            | Error::PortNotAssigned { .. }
            | Error::Interrupted { .. } => Advice::None,
        }
    }

    /// The slug of the bottle the error is about, when it is about one.
    pub fn slug(&self) -> Option<&str> {
        match self {
            Error::AlreadyUp { slug, .. }
            | Error::NotUp { slug }
            | Error::NotUsable { slug, .. }
            | Error::NotReady { slug, .. }
            | Error::Interrupted { slug } => Some(slug),
            Error::CleanupFailed { original, .. } => original.slug(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::error::ErrorKind;

    /// One of each lifecycle variant with a slug, and what it advises.
    fn cases() -> Vec<(Error, Advice)> {
        let slug = || "s".to_string();
        vec![
            (
                Error::PoolExhausted {
                    what: "subnet",
                    pool: "10.0.0.0/16".into(),
                },
                Advice::FreePool { what: "subnet" },
            ),
            (
                Error::AlreadyUp {
                    slug: slug(),
                    found: "network n exists".into(),
                },
                Advice::UseOrRemoveBottle { slug: slug() },
            ),
            (
                Error::NotUp { slug: slug() },
                Advice::StartBottle { slug: slug() },
            ),
            (
                Error::NotUsable {
                    slug: slug(),
                    reason: Unusable::NotRunning {
                        container: "c".into(),
                        state: ContainerState::Exited,
                    },
                },
                Advice::RecreateBottle { slug: slug() },
            ),
            (
                Error::NotUsable {
                    slug: slug(),
                    reason: Unusable::NotAnswering {
                        daemon: "d".into(),
                        address: "127.0.0.1:1".into(),
                    },
                },
                Advice::ReadLogsThenRecreate { slug: slug() },
            ),
            (
                Error::ImageMissing {
                    image: "i".into(),
                    engine: "docker".into(),
                },
                Advice::LoadImage {
                    image: "i".into(),
                    engine: "docker".into(),
                },
            ),
            (
                Error::NotReady {
                    slug: slug(),
                    daemon: "d".into(),
                    address: "127.0.0.1:1".into(),
                    waited: Duration::from_secs(1),
                },
                Advice::ReadLogs { slug: slug() },
            ),
            (
                Error::CleanupFailed {
                    original: Box::new(Error::NotUp { slug: slug() }),
                    cleanup: vec![RuntimeError::not_supported("memory", "removing")],
                },
                Advice::CollectGarbage,
            ),
        ]
    }

    #[test]
    fn every_error_carries_its_advice_as_data_and_names_no_command() {
        for (error, advice) in cases() {
            assert_eq!(error.advice(), advice, "{error:?}");
            let text = error.to_string();
            assert!(
                !text.contains('`') && !text.contains("xtask"),
                "the message of {error:?} gives no command: {text}"
            );
        }
    }

    #[test]
    fn the_slug_of_an_error_is_found_through_a_failed_cleanup() {
        let (error, _) = cases().pop().expect("a cleanup case");
        assert_eq!(error.slug(), Some("s"));
        assert_eq!(error.kind(), ErrorKind::NotUp);
    }
}
