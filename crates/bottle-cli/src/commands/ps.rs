//! `bottle ps`: the bottles of this prefix on the engine, found by labels.

use crate::commands::Context;
use crate::exit::Failure;
use crate::output;

pub async fn run(ctx: &Context) -> Result<(), Failure> {
    output::refuse_env(ctx.global.output, "ps")?;
    let (lifecycle, _) = ctx.lifecycle().await?;
    output::bottles(ctx.global.output, &lifecycle.list().await?);
    Ok(())
}
