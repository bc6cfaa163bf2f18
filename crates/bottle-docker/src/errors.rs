//! Maps bollard's errors into bottle's semantic kinds, keeping bollard's error (and so the
//! engine's own message) as the source.

use bollard::errors::Error as BollardError;
use bottle_core::error::BoxError;
use bottle_core::error::RuntimeError;
use bottle_core::ObjectKind;

/// The engine name in every error and in `ContainerRuntime::name`.
pub(crate) const ENGINE: &str = "docker";

/// How to get an engine, for `EngineUnavailable`.
pub(crate) const HINT: &str =
    "dockerd is not running there; DOCKER_HOST, DOCKER_CONTEXT or --context names another engine";

/// The HTTP status the engine answered with, when it answered.
pub(crate) fn status(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The engine's own message, when it answered with an error.
pub(crate) fn message(e: &BollardError) -> &str {
    match e {
        BollardError::DockerResponseServerError { message, .. } => message,
        _ => "",
    }
}

/// Whether the engine could not be reached at all, as opposed to answering with an error.
pub(crate) fn unreachable(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::SocketNotFoundError(_)
            | BollardError::HyperLegacyError { .. }
            | BollardError::HyperResponseError { .. }
            | BollardError::IOError { .. }
            | BollardError::RequestTimeoutError
    )
}

/// `EngineUnavailable` for the engine at `endpoint`.
pub(crate) fn unavailable(endpoint: &str, hint: &str, source: Option<BoxError>) -> RuntimeError {
    RuntimeError::EngineUnavailable {
        engine: ENGINE.into(),
        tried: endpoint.into(),
        hint: hint.into(),
        source,
    }
}

/// Maps a failed `operation` (`"inspecting container"`) on the object `name` of `kind`: an
/// unreachable engine is `EngineUnavailable`, 404 is `NotFound`, anything else `Engine`.
///
/// Status codes other than 404 mean different things per endpoint (409 is a name conflict on
/// create but "removal in progress" on delete), so callers map those themselves first.
pub(crate) fn map(
    endpoint: &str,
    operation: &str,
    kind: ObjectKind,
    name: &str,
    e: BollardError,
) -> RuntimeError {
    if unreachable(&e) {
        return unavailable(endpoint, HINT, Some(Box::new(e)));
    }
    match status(&e) {
        Some(404) => RuntimeError::NotFound {
            kind,
            name: name.into(),
            source: Some(Box::new(e)),
        },
        _ => RuntimeError::engine(ENGINE, operation, name, e),
    }
}

/// Maps a failed `operation` on `target` that is about no one object (a listing, the version):
/// an unreachable engine is `EngineUnavailable`, anything else `Engine`.
pub(crate) fn other(
    endpoint: &str,
    operation: &str,
    target: &str,
    e: BollardError,
) -> RuntimeError {
    if unreachable(&e) {
        unavailable(endpoint, HINT, Some(Box::new(e)))
    } else {
        RuntimeError::engine(ENGINE, operation, target, e)
    }
}

/// `AlreadyExists` for `kind` named `name`, keeping the engine's error.
pub(crate) fn already_exists(kind: ObjectKind, name: &str, e: BollardError) -> RuntimeError {
    RuntimeError::AlreadyExists {
        kind,
        name: name.into(),
        source: Some(Box::new(e)),
    }
}

/// A message of the engine standing in for bollard's error as a source: one with secret
/// values cut out, or a warning the engine answered a success with.
#[derive(Debug)]
pub(crate) struct EngineMessage(pub(crate) String);

impl std::fmt::Display for EngineMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EngineMessage {}

/// `e` boxed, or an [`EngineMessage`] copy when its message contains any of `secrets`: the engine
/// may quote a rejected environment entry back, and secrets never reach an error.
pub(crate) fn scrub<'a>(e: BollardError, secrets: impl Iterator<Item = &'a str>) -> BoxError {
    let text = e.to_string();
    let mut redacted = text.clone();
    for s in secrets.filter(|s| !s.is_empty()) {
        redacted = redacted.replace(s, "<redacted>");
    }
    if redacted == text {
        Box::new(e)
    } else {
        Box::new(EngineMessage(redacted))
    }
}
