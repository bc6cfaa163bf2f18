//! `bottle env`: the agent's variables of a running bottle, re-read from the engine.

use bottle_core::Error;

use crate::commands::{check_slug, Context};
use crate::exit::Failure;
use crate::json;
use crate::output;

pub async fn run(ctx: &Context, slug: &str) -> Result<(), Failure> {
    check_slug(slug)?;
    let (lifecycle, engine) = ctx.lifecycle().await?;
    let endpoints = lifecycle.endpoints(slug).await?;
    let mut report = json::Endpoints::new(&endpoints, engine.engine.name(), &ctx.global.prefix);
    // This bottle's names only (never a scan of every bottle); gone since is not an error.
    match lifecycle.status(slug).await {
        Ok(status) => {
            report.subnet = status.subnet;
            report.network = status.network;
            report.container = status.container;
        }
        Err(Error::NotUp { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    ctx.write(|out| output::endpoints(out, ctx.global.output, &report));
    Ok(())
}
