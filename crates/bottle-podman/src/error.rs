//! Maps `podman_api` errors into bottle's semantic kinds, naming the operation and the object,
//! keeping the engine's message and the SDK error as the source.

use bottle_core::error::RuntimeError;
use bottle_core::ObjectKind;

use crate::connect::HINT;
use crate::ENGINE;

/// The status and message of an engine answer that was an error, wherever podman-api put it:
/// most calls return `Fault` itself, but a stream (logs) wraps it in an `io::Error` inside a
/// connection error, so the whole chain is searched.
fn fault(e: &(dyn std::error::Error + 'static)) -> Option<(u16, String)> {
    use containers_api::conn::Error as Conn;
    if let Some(p) = e.downcast_ref::<podman_api::Error>() {
        match p {
            podman_api::Error::Fault { code, message } => {
                return Some((code.as_u16(), message.clone()))
            }
            podman_api::Error::Error(inner) => return fault(inner),
            podman_api::Error::IO(io) => return io.get_ref().and_then(|i| fault(i)),
            _ => {}
        }
    }
    if let Some(c) = e.downcast_ref::<Conn>() {
        match c {
            Conn::Fault { code, message } => return Some((code.as_u16(), message.clone())),
            Conn::Any(inner) => return fault(inner.as_ref()),
            Conn::IO(io) => return io.get_ref().and_then(|i| fault(i)),
            _ => {}
        }
    }
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        return io.get_ref().and_then(|i| fault(i));
    }
    e.source().and_then(fault)
}

/// The HTTP status of an engine answer, when the error is one.
pub(crate) fn status(e: &podman_api::Error) -> Option<u16> {
    fault(e).map(|(code, _)| code)
}

/// The engine's message, without the repetition libpod answers carry: podman-api joins the
/// answer's `message` and `cause`, and the message usually ends with the cause already.
pub(crate) fn engine_message(e: &podman_api::Error) -> String {
    let Some((code, message)) = fault(e) else {
        return e.to_string();
    };
    let short = match message.rsplit_once(": ") {
        Some((head, cause)) if head.ends_with(cause) || cause.is_empty() => head,
        _ => message.as_str(),
    };
    format!("{short} (HTTP {code})")
}

/// Whether the engine could not be reached at all: no socket, or nothing listening on it.
fn unreachable(e: &podman_api::Error) -> bool {
    use containers_api::conn::Error as Conn;
    use std::io::ErrorKind;
    match e {
        podman_api::Error::Error(Conn::Hyper(h)) => h.is_connect(),
        podman_api::Error::Error(Conn::IO(io)) | podman_api::Error::IO(io) => matches!(
            io.kind(),
            ErrorKind::NotFound | ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset
        ),
        _ => false,
    }
}

/// One engine call, for error messages: `creating` `container` `bt-x` on `unix:///...`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call<'a> {
    pub endpoint: &'a str,
    pub operation: &'a str,
    pub kind: ObjectKind,
    pub name: &'a str,
}

impl Call<'_> {
    /// 404 is `NotFound`, 409 `AlreadyExists`, an unreachable engine `EngineUnavailable`,
    /// anything else `Engine` with the engine's message.
    pub(crate) fn error(&self, e: podman_api::Error) -> RuntimeError {
        match status(&e) {
            Some(404) => self.not_found(e),
            Some(409) => self.already_exists(e),
            None if unreachable(&e) => RuntimeError::EngineUnavailable {
                engine: ENGINE.into(),
                tried: self.endpoint.to_string(),
                hint: format!(
                    "{HINT} (the engine stopped answering while {} {} {})",
                    self.operation, self.kind, self.name
                ),
                source: Some(Box::new(e)),
            },
            _ => self.engine(e),
        }
    }

    pub(crate) fn engine(&self, e: podman_api::Error) -> RuntimeError {
        RuntimeError::Engine {
            engine: ENGINE.into(),
            operation: self.operation.to_string(),
            target: format!("{} {}", self.kind, self.name),
            message: engine_message(&e),
            source: Some(Box::new(e)),
        }
    }

    pub(crate) fn not_found(&self, e: podman_api::Error) -> RuntimeError {
        RuntimeError::NotFound {
            kind: self.kind,
            name: self.name.to_string(),
            source: Some(Box::new(e)),
        }
    }

    pub(crate) fn already_exists(&self, e: podman_api::Error) -> RuntimeError {
        RuntimeError::AlreadyExists {
            kind: self.kind,
            name: self.name.to_string(),
            source: Some(Box::new(e)),
        }
    }
}
