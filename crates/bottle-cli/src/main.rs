//! `bottle`: brings a sandboxed agent's sidecar bundle up and down on Docker or Podman. The
//! command is the `bottle_cli` library; this is its entry point (see the library's docs for
//! exit codes and output).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = bottle_cli::cli::Cli::parse();
    bottle_cli::init_tracing(cli.global.verbose);
    bottle_cli::run(cli, Box::new(std::io::stdout()), &mut std::io::stderr())
}
