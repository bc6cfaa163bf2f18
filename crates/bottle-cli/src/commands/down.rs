//! `bottle down`: tear bottles down; a bottle that is not up is not an error.

use crate::commands::{check_slug, Context};
use crate::exit::Failure;
use crate::json;
use crate::output;
use crate::progress::Spinner;

pub async fn run(ctx: &Context, slugs: &[String], all: bool) -> Result<(), Failure> {
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
        if of_slug.is_empty() && ctx.says() {
            ctx.emit(&format!("bottle {slug} was not up\n"));
        }
        removed.extend(of_slug.iter().map(json::Removed::from));
    }
    spinner.finish();
    ctx.write(|out| output::removed(out, ctx.global.output, &removed, "removed"));
    Ok(())
}
