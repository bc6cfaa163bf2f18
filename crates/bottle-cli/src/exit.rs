//! Errors of the command line: exit code, one line saying what failed on what, and a hint line
//! saying what to do. The one place that maps `bottle_core` error kinds to exit codes.

use std::fmt;
use std::process::ExitCode;

use bottle_core::{Error, ErrorKind};

/// Any failure that is neither bad input nor a missing engine.
pub const FAILURE: u8 = 1;
/// Bad input: arguments, bottle file, or a rule of the spec. Nothing was touched.
pub const BAD_INPUT: u8 = 2;
/// No engine answered.
pub const ENGINE_UNAVAILABLE: u8 = 3;

/// A failed command, ready to print. Never holds a secret's value.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    /// What failed, on what (printed after `error: `).
    pub message: String,
    /// What to do about it (printed after `  hint: `).
    pub hint: Option<String>,
}

impl Failure {
    /// Bad input (exit 2).
    pub fn input(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Failure {
            code: BAD_INPUT,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// No engine answered (exit 3).
    pub fn unavailable(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Failure {
            code: ENGINE_UNAVAILABLE,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// The exit code of a core error kind.
pub fn code_of(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Invalid => BAD_INPUT,
        ErrorKind::EngineUnavailable => ENGINE_UNAVAILABLE,
        _ => FAILURE,
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        let code = code_of(error.kind());
        // Variants whose message ends in advice are split into the two lines; the rest keep
        // core's message and get a hint by kind.
        let (message, hint) = match &error {
            Error::Invalid(v) => (
                v.to_string(),
                Some(format!(
                    "fix `{}` on the command line or in the bottle file (see `bottle up --help`)",
                    v.field()
                )),
            ),
            Error::EngineUnavailable {
                engine,
                tried,
                hint,
                ..
            } => (
                format!("cannot reach the {engine} engine at {tried}"),
                Some(hint.clone()),
            ),
            Error::AlreadyUp { slug, found } => (
                format!("bottle {slug} is already up ({found})"),
                Some(format!(
                    "use it (`bottle env {slug}`), or remove it with `bottle down {slug}`; `bottle gc` removes what crashed launches left"
                )),
            ),
            Error::NotUp { slug } => (
                format!("bottle {slug} is not up"),
                Some(format!("start it with `bottle up {slug}`")),
            ),
            Error::ImageMissing { image, engine } => (
                format!("image {image} is not present on the {engine} engine"),
                Some(format!(
                    "load it with `bottle image load --runtime {engine}` (build the archive with `cargo xtask image`)"
                )),
            ),
            Error::PoolExhausted { .. }
            | Error::NotUsable { .. }
            | Error::ImageLacksDaemon { .. }
            | Error::PublishedBeyondLoopback { .. }
            | Error::PortNotAssigned { .. }
            | Error::NotReady { .. }
            | Error::CleanupFailed { .. }
            | Error::Interrupted { .. } => (error.to_string(), None),
            _ => (
                error.to_string(),
                Some("run again with -vv for the engine's details, and `bottle doctor`".into()),
            ),
        };
        Failure {
            code,
            message,
            hint,
        }
    }
}
