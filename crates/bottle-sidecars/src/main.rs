//! The `bottle-sidecars` binary: the bundle image's entrypoint (`init`), each daemon
//! (`daemon <name>`), its health check (`health`) and its catalog (`catalog`); run through a
//! link named `pre-receive`, the git gate's pre-receive hook.

// The binary's whole interface is its output: usage, the catalog JSON, health results.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use bottle_sidecars::{catalog, daemon, gitgate, health, init};

const USAGE: &str = "\
bottle-sidecars [init]         start the daemons named in BOTTLE_DAEMONS (the default)
bottle-sidecars daemon <name>  run one daemon in the foreground
bottle-sidecars health         exit 0 when every selected daemon accepts connections
bottle-sidecars catalog        print the catalog JSON this image provides

Environment:
  BOTTLE_DAEMONS             daemons to start, comma-separated (unset: those that always run)
  BOTTLE_EGRESS_ALLOW        egress allowlist patterns, comma-separated
  BOTTLE_EGRESS_ALLOW_FILE   allowlist file (default /etc/bottle/egress-allow, if present)
  BOTTLE_<NAME>_PORT         move a daemon's port (BOTTLE_EGRESS_PORT, BOTTLE_GIT_GATE_PORT)
  BOTTLE_SECRET_KEYS         names of variables whose values no request may carry out
  BOTTLE_EGRESS_MAX_CONNECTIONS, BOTTLE_EGRESS_IDLE_TIMEOUT_SECS,
  BOTTLE_EGRESS_HEADER_TIMEOUT_SECS, BOTTLE_EGRESS_THREADS
                             the proxy's limits (1024, 300, 10) and worker threads (cores, <= 4)
  BOTTLE_GIT_UPSTREAMS       the git gate's upstreams (JSON, written by the planner)
  BOTTLE_GIT_GATE_DIR        the git gate's mirrors and hook link (default /tmp/git-gate)
  BOTTLE_GIT_GATE_GIT        the git binary the gate runs (default /usr/bin/git)
  BOTTLE_GIT_GATE_MAX_BLOB_BYTES, BOTTLE_GIT_GATE_MAX_PUSH_BYTES,
  BOTTLE_GIT_GATE_MAX_CONNECTIONS, BOTTLE_GIT_GATE_SESSION_TIMEOUT_SECS
                             the gate's limits (10 MiB, 1 GiB, 32, 1800)
";

fn main() -> ExitCode {
    // git receive-pack runs the gate's hook through a link named after it.
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if std::path::Path::new(&argv0).file_name() == Some(gitgate::hook::HOOK_NAME.as_ref()) {
        return gitgate::hook::main();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let provided = catalog::provided();
    match args.as_slice() {
        [] | ["init"] => match init::run(&provided) {
            Ok(code) => ExitCode::from(code as u8),
            Err(e) => fail("init", &e),
        },
        ["daemon", name] => match daemon::run(name) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(name, &e),
        },
        ["health"] => match health::check(&provided) {
            Ok(msg) => {
                println!("{msg}");
                ExitCode::SUCCESS
            }
            Err(e) => fail("health", &e),
        },
        ["catalog"] => {
            println!("{}", provided.to_json());
            ExitCode::SUCCESS
        }
        ["help" | "-h" | "--help"] => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprint!("bottle-sidecars: unknown arguments {args:?}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn fail(what: &str, e: &str) -> ExitCode {
    eprintln!("bottle-sidecars {what}: {e}");
    ExitCode::FAILURE
}
