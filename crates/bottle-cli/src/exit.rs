//! Errors of the command line: exit code, one line saying what failed on what, and a hint line
//! saying what to do (worded in [`crate::hint`] from the error's data). The one place that maps
//! `bottle_core` error kinds to exit codes.

use std::fmt;
use std::process::ExitCode;

use bottle_core::{Error, ErrorKind, RuntimeError};

use crate::hint::{Globals, Hint};

pub use crate::hint::DEFAULT_PREFIX;

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
    pub hint: Option<Hint>,
}

impl Failure {
    /// Bad input (exit 2).
    pub fn input(message: impl Into<String>, hint: impl Into<Hint>) -> Self {
        Failure {
            code: BAD_INPUT,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// No engine answered (exit 3).
    pub fn unavailable(message: impl Into<String>, hint: impl Into<Hint>) -> Self {
        Failure {
            code: ENGINE_UNAVAILABLE,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code)
    }

    /// The `error:` line and the `  hint:` line, the hint's commands carrying `globals`.
    pub fn render(&self, globals: Globals<'_>) -> String {
        let mut out = format!("error: {}", self.message);
        if let Some(hint) = &self.hint {
            out.push_str(&format!("\n  hint: {}", hint.render(globals)));
        }
        out
    }
}

/// As printed by a run without `--runtime` and `--prefix`.
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(Globals::default()))
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

impl From<RuntimeError> for Failure {
    fn from(error: RuntimeError) -> Self {
        Error::from(error).into()
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        let message = match &error {
            // The adapter's word on what the engine needs goes to the hint line.
            Error::Runtime(RuntimeError::EngineUnavailable { engine, tried, .. }) => {
                format!("cannot reach the {engine} engine at {tried}")
            }
            _ => error.to_string(),
        };
        Failure {
            code: code_of(error.kind()),
            message,
            hint: Hint::of(&error.advice()),
        }
    }
}
