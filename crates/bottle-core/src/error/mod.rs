//! Errors by meaning, in two layers: [`RuntimeError`], the kinds a [`ContainerRuntime`](crate::ContainerRuntime)
//! operation can return, which every adapter maps its engine's errors
//! into; and [`Error`], everything the lifecycle can return: a runtime error, or one of the
//! lifecycle's own kinds (already up, not ready, pool exhausted, ...) that no adapter returns.
//! `advice`: what the caller can do about an [`Error`], as data ([`Advice`], [`Unusable`]).

use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::spec::ValidationError;

mod advice;

pub use advice::{Advice, Unusable};

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
