//! `bottle image load`: load the reference image archive into the engine.

use std::path::{Path, PathBuf};

use crate::cli::Output;
use crate::commands::Context;
use crate::exit::Failure;
use crate::json;
use crate::progress::Spinner;

/// The archive's file name that `cargo xtask image` writes into `target/`.
const ARCHIVE: &str = "bottle-sidecars.tar";

pub async fn load(ctx: &Context, archive: Option<PathBuf>) -> Result<(), Failure> {
    let archive = find_archive(archive)?;
    let engine = ctx.connect().await?;
    let spinner = Spinner::new(ctx.show_progress());
    spinner.begin(format!(
        "loading {} into {}",
        archive.display(),
        engine.engine.name()
    ));
    let images = engine.runtime.load_image(&archive).await?;
    spinner.finish();
    let loaded = json::ImageLoaded {
        runtime: engine.engine.name().into(),
        archive: archive.clone(),
        images,
    };
    match ctx.global.output {
        Output::Json | Output::Env => ctx.emit_json(&loaded),
        Output::Text => ctx.emit(&format!(
            "loaded {} into {} from {}\n",
            loaded.images.join(", "),
            loaded.runtime,
            archive.display()
        )),
    }
    Ok(())
}

/// The first of: `--archive`, `$BOTTLE_IMAGE_ARCHIVE`, `target/bottle-sidecars.tar` in the
/// current directory or a parent, `bottle-sidecars.tar` in the parent of the executable's
/// directory. A path given explicitly must exist; the others are searched.
fn find_archive(explicit: Option<PathBuf>) -> Result<PathBuf, Failure> {
    let given = explicit.map(|p| (p, "--archive")).or_else(|| {
        std::env::var_os("BOTTLE_IMAGE_ARCHIVE").map(|p| (p.into(), "BOTTLE_IMAGE_ARCHIVE"))
    });
    if let Some((path, from)) = given {
        return match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(path),
            Ok(_) => Err(Failure::input(
                format!("{from}: {} is not a file", path.display()),
                "give the path of an image archive (`docker save` format)",
            )),
            Err(e) => Err(Failure::input(
                format!("{from}: cannot read {}: {e}", path.display()),
                "build the archive with `cargo xtask image`, or give its path",
            )),
        };
    }
    let mut candidates = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        candidates.extend(cwd.ancestors().map(|d| d.join("target").join(ARCHIVE)));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf))
    {
        candidates.push(dir.join(ARCHIVE));
    }
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        Failure::input(
            format!(
                "image archive {ARCHIVE} not found (looked for target/{ARCHIVE} from the current directory up, and next to the executable's directory)"
            ),
            "build it with `cargo xtask image`, or pass --archive PATH (or set BOTTLE_IMAGE_ARCHIVE)",
        )
    })
}
