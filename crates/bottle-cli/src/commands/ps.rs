//! `bottle ps`: the bottles of this prefix on the engine, found by labels.

use crate::commands::Context;
use crate::exit::Failure;
use crate::output;

pub async fn run(ctx: &Context) -> Result<(), Failure> {
    let (lifecycle, _) = ctx.lifecycle().await?;
    let bottles = lifecycle.list().await?;
    ctx.write(|out| output::bottles(out, ctx.global.output, &bottles));
    Ok(())
}
