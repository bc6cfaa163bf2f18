//! `bottle env`: the agent's variables of a running bottle, re-read from the engine.

use crate::commands::{check_slug, Context};
use crate::exit::Failure;
use crate::json;
use crate::output;

pub async fn run(ctx: &Context, slug: &str) -> Result<(), Failure> {
    check_slug(slug)?;
    let (lifecycle, engine) = ctx.lifecycle().await?;
    let endpoints = lifecycle.endpoints(slug).await?;
    let status = lifecycle.list().await?.into_iter().find(|b| b.slug == slug);
    let mut report = json::Endpoints::new(&endpoints, engine.engine.name(), &ctx.global.prefix);
    if let Some(status) = status {
        report.subnet = status.subnet;
        report.network = status.network;
        report.container = status.container;
    }
    ctx.write(|out| output::endpoints(out, ctx.global.output, &report));
    Ok(())
}
