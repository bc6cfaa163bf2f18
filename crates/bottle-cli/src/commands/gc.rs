//! `bottle gc`: remove our objects that no complete bottle owns.

use crate::commands::Context;
use crate::exit::Failure;
use crate::json;
use crate::output;

pub async fn run(ctx: &Context, dry_run: bool) -> Result<(), Failure> {
    let (lifecycle, _) = ctx.lifecycle().await?;
    let removed: Vec<json::Removed> = lifecycle
        .gc(dry_run)
        .await?
        .iter()
        .map(json::Removed::from)
        .collect();
    if removed.is_empty() && ctx.says() {
        ctx.emit("nothing to remove\n");
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    ctx.write(|out| output::removed(out, ctx.global.output, &removed, verb));
    Ok(())
}
