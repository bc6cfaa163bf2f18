//! `bottle down`: tear bottles down; a bottle that is not up is not an error.

use crate::cli::Output;
use crate::commands::{check_slug, Context};
use crate::exit::Failure;
use crate::output;
use crate::progress::Spinner;

pub async fn run(ctx: &Context, slugs: &[String], all: bool) -> Result<(), Failure> {
    output::refuse_env(ctx.global.output, "down")?;
    slugs.iter().try_for_each(|s| check_slug(s))?;
    let (lifecycle, _) = ctx.lifecycle().await?;
    let slugs = if all {
        lifecycle
            .list()
            .await?
            .into_iter()
            .map(|b| b.slug)
            .collect()
    } else {
        slugs.to_vec()
    };
    let spinner = Spinner::new(ctx.show_progress());
    let mut removed = Vec::new();
    for slug in &slugs {
        let of_slug = lifecycle.down(slug, &spinner).await?;
        if of_slug.is_empty() && ctx.global.output == Output::Text && !ctx.global.quiet {
            output::emit(&format!("bottle {slug} was not up\n"));
        }
        removed.extend(of_slug);
    }
    spinner.finish();
    output::removed(ctx.global.output, &removed, "removed");
    Ok(())
}
