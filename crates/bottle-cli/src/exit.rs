//! Errors of the command line: exit code, one line saying what failed on what, and a hint line
//! saying what to do. The one place that maps `bottle_core` error kinds to exit codes.

use std::fmt;
use std::process::ExitCode;

use bottle_core::{Advice, Error, ErrorKind, RuntimeError};

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

    /// Makes every `` `bottle ...` `` command the message and hint suggest carry this run's
    /// engine and prefix (unless the command names its own), so it can be pasted as is.
    pub fn for_run(mut self, runtime: Option<&str>, prefix: &str) -> Self {
        self.message = with_globals(&self.message, runtime, prefix);
        self.hint = self
            .hint
            .as_deref()
            .map(|h| with_globals(h, runtime, prefix));
        self
    }
}

/// `text` with `--runtime` and `--prefix` (when not the default) added to each backquoted
/// `bottle` command that does not already give them.
fn with_globals(text: &str, runtime: Option<&str>, prefix: &str) -> String {
    const START: &str = "`bottle ";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(START) {
        let command = &rest[at + START.len()..];
        let end = command.find('`').unwrap_or(command.len());
        let given = &command[..end];
        out.push_str(&rest[..at + START.len()]);
        if let Some(engine) = runtime.filter(|_| !given.contains("--runtime")) {
            out.push_str(&format!("--runtime {engine} "));
        }
        if prefix != DEFAULT_PREFIX && !given.contains("--prefix") {
            out.push_str(&format!("--prefix {prefix} "));
        }
        rest = command;
    }
    out.push_str(rest);
    out
}

/// The prefix `--prefix` defaults to.
pub const DEFAULT_PREFIX: &str = "bottle";

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// The error's message, then what to do about it (worded from [`Error::advice`]) after a colon.
fn with_advice(error: &Error) -> String {
    if let Error::CleanupFailed { original, cleanup } = error {
        let cleanup: Vec<String> = cleanup.iter().map(ToString::to_string).collect();
        return format!(
            "{}; cleanup also failed, leaving objects behind ({}): run `bottle gc`",
            with_advice(original),
            cleanup.join("; ")
        );
    }
    let advice = match error.advice() {
        Advice::FreePool { .. } => {
            "tear down unused bottles (`bottle down`, `bottle gc`) or configure a larger pool"
                .to_string()
        }
        Advice::ReadLogs { slug } => format!("read the bundle's output with `bottle logs {slug}`"),
        Advice::RecreateBottle { slug } => {
            format!("bring it back with `bottle down {slug}` then `bottle up {slug}`")
        }
        Advice::ReadLogsThenRecreate { slug } => {
            format!("read `bottle logs {slug}`, then `bottle down {slug}` and `bottle up {slug}`")
        }
        Advice::CollectGarbage => "run `bottle gc`".to_string(),
        _ => return error.to_string(),
    };
    format!("{error}: {advice}")
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
            Error::Runtime(RuntimeError::EngineUnavailable {
                engine,
                tried,
                hint,
                ..
            }) => (
                format!("cannot reach the {engine} engine at {tried}"),
                Some(format!(
                    "{hint}; `bottle doctor` shows which engines answer, `--runtime` picks one"
                )),
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
            | Error::Interrupted { .. } => (with_advice(&error), None),
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

#[cfg(test)]
mod tests {
    use super::with_globals;

    #[test]
    fn suggested_commands_carry_the_runs_engine_and_prefix() {
        let text = "remove it with `bottle down x`; `bottle gc` removes the rest";
        assert_eq!(with_globals(text, None, "bottle"), text);
        assert_eq!(
            with_globals(text, Some("podman"), "bt-a"),
            "remove it with `bottle --runtime podman --prefix bt-a down x`; `bottle --runtime podman --prefix bt-a gc` removes the rest"
        );
        assert_eq!(
            with_globals(
                "load it with `bottle image load --runtime docker`",
                Some("docker"),
                "bottle"
            ),
            "load it with `bottle image load --runtime docker`"
        );
        assert_eq!(
            with_globals("no command here", Some("docker"), "p"),
            "no command here"
        );
    }
}
