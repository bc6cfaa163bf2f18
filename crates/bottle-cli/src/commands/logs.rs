//! `bottle logs`: the bundle container's output.

use std::io::Write;

use bottle_core::runtime::LogOptions;
use bottle_core::Error;

use crate::cli::Output;
use crate::commands::{check_slug, Context};
use crate::exit::Failure;
use crate::output;

pub async fn run(
    ctx: &Context,
    slug: &str,
    follow: bool,
    tail: Option<usize>,
) -> Result<(), Failure> {
    output::refuse_env(ctx.global.output, "logs")?;
    check_slug(slug)?;
    let (lifecycle, engine) = ctx.lifecycle().await?;
    // Only a bundle of ours (found by labels), never a stray container named like one.
    let container = lifecycle
        .list()
        .await?
        .into_iter()
        .find(|b| b.slug == slug)
        .and_then(|b| b.container)
        .ok_or_else(|| Error::NotUp { slug: slug.into() })?;
    let json = ctx.global.output == Output::Json;
    let mut sink = |line: String| {
        let mut out = std::io::stdout().lock();
        let written = if json {
            let line = serde_json::json!({ "line": line });
            writeln!(out, "{line}")
        } else {
            writeln!(out, "{line}")
        };
        // A closed pipe (`bottle logs x | head`) ends the stream.
        written.and_then(|()| out.flush()).is_ok()
    };
    engine
        .runtime
        .logs(&container, LogOptions { tail, follow }, &mut sink)
        .await?;
    Ok(())
}
