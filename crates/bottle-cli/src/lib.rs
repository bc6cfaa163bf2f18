//! The `bottle` command as a library: brings a sandboxed agent's sidecar bundle up and down on
//! Docker or Podman. The binary (`main.rs`) only parses, sets up tracing and runs [`run`].
//!
//! Thin glue over `bottle_core`: argument types in [`cli`], one module per command in
//! [`commands`], engine selection and connection in [`runtime`], flags + bottle file in
//! [`spec_input`], the JSON reports' types in [`json`], formatting (to any `Write`) in
//! [`output`], hints worded from data in [`hint`], exit codes in [`exit`]. Only this crate knows
//! about terminals and exit codes; the benchmark and the tests use its engine selection, image
//! name and reports instead of copies, and [`commands::run_on`] runs a command line on an
//! engine the caller connected (the in-memory one in tests).
//!
//! # Exit codes
//!
//! 0 ok; 1 any other failure; 2 bad input (arguments, bottle file, a rule of the spec, an
//! engine this build lacks): nothing was touched; 3 no engine answered.
//!
//! # JSON output (`--output json`)
//!
//! Every report has a type in [`json`]; `docs/OUTPUT.md` documents each field, its type and
//! its stability. Field names are stable; new fields may be added.
//!
//! # Testing aid: `BOTTLE_DEBUG_PAUSE_AT`
//!
//! With `BOTTLE_DEBUG_PAUSE_AT=<step>` in its environment, `up` (and `down`) stops for good when
//! it reaches that step, after printing `bottle: paused at <step> ...` on stderr, and waits to be
//! killed. Steps are reported as they start, so each pauses between two engine calls:
//! `checking-image`, `allocating`, `creating-network` (holding a reservation, nothing
//! created), `creating-container` (the network exists), `starting` (the container exists, not
//! started), `discovering-ports` (started), `waiting-ready` (host ports known, daemons not yet
//! probed), `rolling-back`, `removing`. The crash tests (`tests/crashes.rs`) SIGKILL the process
//! there and check what `up`, `gc` and `down` make of the debris. It is not for production use.
//!
//! # `--output env`
//!
//! `up` and `env` print `export KEY='value'` lines, single-quoted for POSIX `sh`, for
//! `eval "$(bottle env demo -o env)"`. Other commands refuse it (exit 2).

// The CLI is where terminal output belongs (progress and the pause aid on stderr).
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod cli;
pub mod commands;
pub mod exit;
pub mod hint;
pub mod json;
pub mod output;
pub mod progress;
pub mod runtime;
pub mod spec_input;

use std::io::Write;
use std::process::ExitCode;

/// The reference bundle image `up` uses unless told otherwise.
pub use bottle_core::lifecycle::DEFAULT_IMAGE;

/// Runs a parsed command line on a current-thread runtime, results to `out`; a failure is
/// written to `err` as `error:` and `hint:` lines. Returns the exit code.
pub fn run(cli: cli::Cli, out: Box<dyn Write + Send>, err: &mut dyn Write) -> ExitCode {
    let tokio = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(err, "error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let runtime = cli.global.runtime.map(cli::Engine::name);
    let prefix = cli.global.prefix.clone();
    let context = cli.global.context.clone();
    match tokio.block_on(commands::run(cli, out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let globals = hint::Globals {
                runtime,
                prefix: &prefix,
                context: context.as_deref(),
            };
            let _ = writeln!(err, "{}", failure.render(globals));
            failure.exit_code()
        }
    }
}

/// Diagnostics on stderr: off by default, `-v` info, `-vv` debug, `-vvv` trace for bottle's
/// own crates; other crates stay at warn. `RUST_LOG` overrides all of it.
pub fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let level = match verbose {
        0 => return init_with(EnvFilter::try_from_default_env().ok()),
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let ours = [
        "bottle",
        "bottle_core",
        "bottle_cli",
        "bottle_docker",
        "bottle_podman",
    ];
    let directives = std::iter::once("warn".to_string())
        .chain(ours.iter().map(|c| format!("{c}={level}")))
        .collect::<Vec<_>>()
        .join(",");
    init_with(Some(
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives)),
    ));
}

fn init_with(filter: Option<tracing_subscriber::EnvFilter>) {
    let Some(filter) = filter else { return };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
