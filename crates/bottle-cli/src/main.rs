//! `bottle`: brings a sandboxed agent's sidecar bundle up and down on Docker or Podman.
//!
//! Thin glue over `bottle_core`: argument types in `cli`, one module per command in
//! `commands`, runtime selection in `runtime`, flags + bottle file in `spec_input`, formatting
//! in `output`, exit codes in `exit`. Only this crate knows about terminals and exit codes.
//!
//! # Exit codes
//!
//! 0 ok; 1 any other failure; 2 bad input (arguments, bottle file, a rule of the spec, an
//! engine this build lacks): nothing was touched; 3 no engine answered.
//!
//! # JSON output (`--output json`)
//!
//! Field names are stable; new fields may be added.
//!
//! `up` and `env` print one object:
//!
//! - `slug` (string), `runtime` (`"docker"` | `"podman"`), `prefix` (the resource-name prefix);
//! - `loopback` (string): the address every agent-facing port is published on;
//! - `subnet` (string, CIDR), `network` (string), `container` (string): the bottle's network
//!   and bundle container; `null` in `env` output when the engine no longer reports them;
//! - `env` (object, string to string): the agent's variables (`HTTPS_PROXY`, `HTTP_PROXY`,
//!   `NO_PROXY`, `GIT_GATE_URL`, `MCP_SUPERVISE_URL`, ... as the catalog says);
//! - `allow_cidrs` (array of string): the agent's network allowlist, `["<loopback>/32"]`;
//! - `daemons` (array): one object per agent-facing daemon: `daemon` (name),
//!   `container_port`, `host_port` (numbers) and `url` (string).
//!
//! `ps` prints an array (empty when there are no bottles), one object per bottle: `slug`;
//! `state` (`"running"`, `"exited"`, ...; `null` when the bundle is missing); `health`
//! (`"starting"` | `"healthy"` | `"unhealthy"` | `null`); `loopback`, `subnet`, `network`,
//! `container` (string or `null`); `daemons` (array of names); `created` (Unix seconds or
//! `null`); `age_seconds` (number or `null`); `unreachable` (array of the names of agent-facing
//! daemons of a running bundle that do not accept connections on their published port: `ps`
//! probes them, so a dead daemon shows even where the engine runs no health checks; empty
//! otherwise); `complete` (bool: network and bundle present, bundle running and not unhealthy,
//! `unreachable` empty). In text output such a bottle's HEALTH reads `unhealthy (egress down)`.
//!
//! `down` and `gc` print an array of removed objects (`gc --dry-run`: objects it would
//! remove): `kind` (`"container"` | `"network"`), `name`, `slug`, `reason`.
//!
//! `plan` prints the core's `BundlePlan`: `slug`, `image`, `network_name`, `container_name`,
//! `subnet`, `gateway`, `bundle_ip`, `loopback`, `daemons` (catalog entries: `name`, `port`,
//! `facing`, `scheme`, `path`, `vars`, `when`), `env` (array of `{"source": "value", "key",
//! "value"}` or `{"source": "inherit", "key"}`: a bare key's value is never in a plan),
//! `mounts` (`host_path`, `container_path`, `read_only`), `publish` (`container_port`,
//! `host_ip`), `network_labels`, `container_labels` (objects), `limits` (`memory_bytes`,
//! `pids`).
//!
//! `image load` prints `{"runtime", "archive", "images": [names loaded]}`.
//!
//! `doctor` prints `{"selected": "docker" | "podman" | null, "engines": [...]}`, one entry per
//! engine: `engine`, `answers` (bool), `version`, `api_version`, `endpoint` (string or
//! `null`), `chosen_by` (how the endpoint was chosen: `"--context ci"`, `"DOCKER_HOST"`,
//! `"DOCKER_CONTEXT=ci"`, `"context ci from ~/.docker/config.json"`, `"default socket"`, ...),
//! `locality` (`"local"`, `"this-host"`: tcp:// or ssh:// to this host, `"remote"`: another
//! host, which other commands refuse), `remote` (bool), `rootless` (bool), `applies_limits`
//! (bool: `false` for rootless Podman on a cgroup v1 host, where `up` refuses bundles),
//! `loopback_mode` (`"per-bottle"` | `"shared"`) and `loopback_reason` (string), each `null`
//! where not known;
//! `image_present` (bool, `null` when the engine does not answer), `problems` (array of
//! `{"problem", "hint"}`).
//!
//! `logs` prints one `{"line": "..."}` object per line (JSON Lines).
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

// The CLI is where terminal output belongs; the workspace lints flag printing elsewhere.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod commands;
mod exit;
mod output;
mod progress;
mod runtime;
mod spec_input;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_tracing(cli.global.verbose);
    let tokio = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let runtime = cli.global.runtime.map(cli::Engine::name);
    let prefix = cli.global.prefix.clone();
    match tokio.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let failure = failure.for_run(runtime, &prefix);
            eprintln!("{failure}");
            failure.exit_code()
        }
    }
}

/// Diagnostics on stderr: off by default, `-v` info, `-vv` debug, `-vvv` trace for bottle's
/// own crates; other crates stay at warn. `RUST_LOG` overrides all of it.
fn init_tracing(verbose: u8) {
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
