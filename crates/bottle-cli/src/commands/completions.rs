//! `bottle completions`: a shell completion script on stdout.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::commands::Context;
use crate::exit::Failure;

pub fn run(ctx: &Context, shell: clap_complete::Shell) -> Result<(), Failure> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "bottle", &mut script);
    ctx.write(|out| out.write_all(&script));
    Ok(())
}
