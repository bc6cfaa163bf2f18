//! `bottle gc`: remove our objects that no complete bottle owns.

use crate::cli::Output;
use crate::commands::Context;
use crate::exit::Failure;
use crate::output;

pub async fn run(ctx: &Context, dry_run: bool) -> Result<(), Failure> {
    output::refuse_env(ctx.global.output, "gc")?;
    let (lifecycle, _) = ctx.lifecycle().await?;
    let removed = lifecycle.gc(dry_run).await?;
    if removed.is_empty() && ctx.global.output == Output::Text && !ctx.global.quiet {
        output::emit("nothing to remove\n");
    }
    output::removed(
        ctx.global.output,
        &removed,
        if dry_run { "would remove" } else { "removed" },
    );
    Ok(())
}
