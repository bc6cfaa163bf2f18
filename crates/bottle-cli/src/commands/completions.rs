//! `bottle completions`: a shell completion script on stdout.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::exit::Failure;

pub fn run(shell: clap_complete::Shell) -> Result<(), Failure> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "bottle", &mut script);
    crate::output::emit(&String::from_utf8_lossy(&script));
    Ok(())
}
