//! Errors by meaning, in two layers: [`RuntimeError`], the kinds a [`ContainerRuntime`](crate::ContainerRuntime)
//! operation can return, which every adapter maps its engine's errors
//! into; and [`Error`], everything the lifecycle can return: a runtime error, or one of the
//! lifecycle's own kinds (already up, not ready, pool exhausted, ...) that no adapter returns.

use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::runtime::ContainerState;
use crate::spec::ValidationError;

/// A boxed error from an engine SDK or the operating system, kept as the source of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The result of a [`ContainerRuntime`](crate::ContainerRuntime) operation.
pub type RuntimeResult<T> = std::result::Result<T, RuntimeError>;

/// Which kind of engine object an error (or a removal) is about. Serialized in lower case, as
/// it is displayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    Network,
    Container,
    Image,
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ObjectKind::Network => "network",
            ObjectKind::Container => "container",
            ObjectKind::Image => "image",
        })
    }
}

/// What a [`ContainerRuntime`](crate::ContainerRuntime) operation can fail with: the kinds an
/// adapter maps its engine's errors into, keeping the engine's error as the source. Messages
/// name the operation and the object, and give no advice about bottle's own commands (an
/// adapter's caller may not be bottle).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// No engine answered. `tried` names the socket or URL; `hint` is the adapter's word on
    /// what the engine needs (a running daemon, a socket variable), never a command of bottle.
    #[error("cannot reach the {engine} engine at {tried} ({hint})")]
    EngineUnavailable {
        engine: String,
        tried: String,
        hint: String,
        #[source]
        source: Option<BoxError>,
    },

    /// The object does not exist.
    #[error("{kind} {name} not found")]
    NotFound {
        kind: ObjectKind,
        name: String,
        #[source]
        source: Option<BoxError>,
    },

    /// An object with that name exists already.
    #[error("{kind} {name} already exists")]
    AlreadyExists {
        kind: ObjectKind,
        name: String,
        #[source]
        source: Option<BoxError>,
    },

    /// The subnet asked for overlaps a network that exists on the engine.
    #[error("subnet {subnet} overlaps a network that already exists on the engine")]
    SubnetConflict {
        subnet: Ipv4Net,
        #[source]
        source: Option<BoxError>,
    },

    /// The runtime does not implement an optional operation.
    #[error("{operation} is not supported by the {engine} runtime")]
    NotSupported { engine: String, operation: String },

    /// Any other engine failure, naming the operation and the object it was on.
    #[error("{engine}: {operation} {target} failed: {message}")]
    Engine {
        engine: String,
        operation: String,
        target: String,
        message: String,
        #[source]
        source: Option<BoxError>,
    },
}

impl RuntimeError {
    /// The semantic kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RuntimeError::EngineUnavailable { .. } => ErrorKind::EngineUnavailable,
            RuntimeError::NotFound { .. } => ErrorKind::NotFound,
            RuntimeError::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            RuntimeError::SubnetConflict { .. } => ErrorKind::SubnetConflict,
            RuntimeError::NotSupported { .. } => ErrorKind::NotSupported,
            RuntimeError::Engine { .. } => ErrorKind::Engine,
        }
    }

    /// A generic engine failure of `operation` on `target`, keeping the engine's error as
    /// source.
    pub fn engine(
        engine: impl Into<String>,
        operation: impl Into<String>,
        target: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        let source = source.into();
        RuntimeError::Engine {
            engine: engine.into(),
            operation: operation.into(),
            target: target.into(),
            message: source.to_string(),
            source: Some(source),
        }
    }

    /// `NotFound` for `kind` named `name`, keeping the engine's error as source.
    pub fn not_found(
        kind: ObjectKind,
        name: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        RuntimeError::NotFound {
            kind,
            name: name.into(),
            source: Some(source.into()),
        }
    }

    /// `AlreadyExists` for `kind` named `name`, keeping the engine's error as source.
    pub fn already_exists(
        kind: ObjectKind,
        name: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        RuntimeError::AlreadyExists {
            kind,
            name: name.into(),
            source: Some(source.into()),
        }
    }

    /// `SubnetConflict` for `subnet`, keeping the engine's error as source.
    pub fn subnet_conflict(subnet: Ipv4Net, source: impl Into<BoxError>) -> Self {
        RuntimeError::SubnetConflict {
            subnet,
            source: Some(source.into()),
        }
    }

    /// `EngineUnavailable`: the `engine` at `tried` did not answer; `hint` says what it needs.
    pub fn unavailable(
        engine: impl Into<String>,
        tried: impl Into<String>,
        hint: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        RuntimeError::EngineUnavailable {
            engine: engine.into(),
            tried: tried.into(),
            hint: hint.into(),
            source: Some(source.into()),
        }
    }

    /// `NotSupported`: the `engine`'s runtime does not implement `operation`.
    pub fn not_supported(engine: impl Into<String>, operation: impl Into<String>) -> Self {
        RuntimeError::NotSupported {
            engine: engine.into(),
            operation: operation.into(),
        }
    }
}

/// Everything that can go wrong, by meaning rather than by engine.
///
/// What the lifecycle returns: a [`RuntimeError`] of an engine operation, or one of its own
/// kinds. Match on [`Error::kind`] to branch without caring which layer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller's input breaks a rule; nothing was sent to the engine.
    #[error(transparent)]
    Invalid(#[from] ValidationError),

    /// An engine operation failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),

    /// Every candidate of a pool is taken.
    #[error("no free {what} left in pool {pool}")]
    PoolExhausted { what: &'static str, pool: String },

    /// The bottle has resources on the engine already.
    #[error("bottle {slug} is already up ({found})")]
    AlreadyUp { slug: String, found: String },

    /// The bottle has no resources on the engine.
    #[error("bottle {slug} is not up")]
    NotUp { slug: String },

    /// The bottle exists but cannot hand out endpoints (stopped, unhealthy or half-created).
    #[error("bottle {slug} is not usable: {reason}")]
    NotUsable { slug: String, reason: Unusable },

    /// The image is not present on the engine.
    #[error("image {image} is not present on the {engine} engine")]
    ImageMissing { image: String, engine: String },

    /// The bottle needs a daemon that its image does not provide.
    #[error("image {image} does not provide daemon {daemon} (it provides: {provided}): use an image that does, or turn off what needs it")]
    ImageLacksDaemon {
        image: String,
        daemon: String,
        provided: String,
    },

    /// The engine published a port beyond the loopback address that was asked for.
    #[error("container {container} publishes port {container_port} on {found} instead of only {expected}: refusing to hand out a bottle reachable beyond loopback")]
    PublishedBeyondLoopback {
        container: String,
        container_port: u16,
        expected: Ipv4Addr,
        found: String,
    },

    /// A published port never got a host port.
    #[error("container {container} port {container_port} has no host port after {waited:?}: check the engine's port publishing (`docker port` / `podman port`)")]
    PortNotAssigned {
        container: String,
        container_port: u16,
        waited: Duration,
    },

    /// A daemon did not accept connections in time.
    #[error("daemon {daemon} did not accept connections on {address} within {waited:?}")]
    NotReady {
        slug: String,
        daemon: String,
        address: String,
        waited: Duration,
    },

    /// A step of `up` failed and so did part of the cleanup that followed.
    ///
    /// `original` is the error that stopped `up`; `cleanup` holds each removal that failed.
    #[error("{original}; cleanup also failed, leaving objects behind ({})", cleanup.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    CleanupFailed {
        original: Box<Error>,
        cleanup: Vec<RuntimeError>,
    },

    /// `up` was interrupted; what it had created was removed.
    #[error("bringing bottle {slug} up was interrupted; what was created is removed")]
    Interrupted { slug: String },

    /// Local IO of the lifecycle (the allocation lock file, reading a catalog).
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

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
    /// Fix the named input field ([`ValidationError::field`]).
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

/// The kind of an [`Error`], for callers that branch on it (exit codes, retries, tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    Invalid,
    EngineUnavailable,
    NotFound,
    AlreadyExists,
    SubnetConflict,
    PoolExhausted,
    AlreadyUp,
    NotUp,
    NotUsable,
    ImageMissing,
    ImageLacksDaemon,
    PublishedBeyondLoopback,
    PortNotAssigned,
    NotReady,
    NotSupported,
    Engine,
    Interrupted,
    Io,
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

    /// The semantic kind. For [`Error::CleanupFailed`] this is the kind of the original error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Invalid(_) => ErrorKind::Invalid,
            Error::Runtime(e) => e.kind(),
            Error::PoolExhausted { .. } => ErrorKind::PoolExhausted,
            Error::AlreadyUp { .. } => ErrorKind::AlreadyUp,
            Error::NotUp { .. } => ErrorKind::NotUp,
            Error::NotUsable { .. } => ErrorKind::NotUsable,
            Error::ImageMissing { .. } => ErrorKind::ImageMissing,
            Error::ImageLacksDaemon { .. } => ErrorKind::ImageLacksDaemon,
            Error::PublishedBeyondLoopback { .. } => ErrorKind::PublishedBeyondLoopback,
            Error::PortNotAssigned { .. } => ErrorKind::PortNotAssigned,
            Error::NotReady { .. } => ErrorKind::NotReady,
            Error::CleanupFailed { original, .. } => original.kind(),
            Error::Interrupted { .. } => ErrorKind::Interrupted,
            Error::Io { .. } => ErrorKind::Io,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
