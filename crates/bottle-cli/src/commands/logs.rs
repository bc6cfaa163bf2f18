//! `bottle logs`: the bundle container's output.

use bottle_core::runtime::LogOptions;

use crate::cli::Output;
use crate::commands::{check_slug, Context};
use crate::exit::Failure;
use crate::json;

pub async fn run(
    ctx: &Context,
    slug: &str,
    follow: bool,
    tail: Option<usize>,
) -> Result<(), Failure> {
    check_slug(slug)?;
    let (lifecycle, _) = ctx.lifecycle().await?;
    let as_json = ctx.global.output == Output::Json;
    // A closed pipe (`bottle logs x | head`) ends the stream.
    let mut sink = |line: String| {
        ctx.write(|out| {
            if as_json {
                let line = serde_json::to_string(&json::LogLine { line })
                    .expect("a line always serializes");
                writeln!(out, "{line}")
            } else {
                writeln!(out, "{line}")
            }
        })
    };
    // Only this bottle's bundle, found by labels (never a stray container named like one).
    lifecycle
        .logs(slug, LogOptions { tail, follow }, &mut sink)
        .await?;
    Ok(())
}
