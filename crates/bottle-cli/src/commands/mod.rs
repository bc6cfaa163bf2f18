//! One module per command, each a handful of lines over `bottle_core`; this module holds what
//! they share: the global options, the engine connection and the lifecycle.

mod completions;
mod doctor;
mod down;
mod env;
mod gc;
mod image;
mod logs;
mod plan;
mod ps;
mod up;

use bottle_core::{Lifecycle, LifecycleConfig};

use crate::cli::{Cli, Command, Global, ImageCommand};
use crate::exit::Failure;
use crate::runtime::{self, Connected};

/// What every command gets.
#[derive(Debug)]
pub struct Context {
    pub global: Global,
}

impl Context {
    /// Whether to draw progress on stderr.
    pub fn show_progress(&self) -> bool {
        !self.global.quiet
    }

    /// Connects to the engine (`--runtime` or the first that answers).
    pub async fn connect(&self) -> Result<Connected, Failure> {
        runtime::select(&self.global).await
    }

    /// Connects and builds the lifecycle of `--prefix`.
    pub async fn lifecycle(&self) -> Result<(Lifecycle, Connected), Failure> {
        let connected = self.connect().await?;
        let mut config = LifecycleConfig::default();
        config.pools.prefix = self.global.prefix.clone();
        Ok((Lifecycle::new(connected.runtime.clone(), config), connected))
    }
}

/// Settles the loopback address choice of `spec` for this host (see `bottle_core::loopback`):
/// per bottle from the pool where the pool's addresses exist, else the shared 127.0.0.1 with a
/// warning on stderr that says what isolation is lost and how to get it back. Before any engine
/// is contacted: a fixed address this host lacks is bad input.
pub fn settle_loopback(
    spec: &mut bottle_core::BottleSpec,
) -> Result<bottle_core::loopback::Detected, Failure> {
    let choice = spec
        .loopback
        .unwrap_or_else(|| bottle_core::Pools::default().loopback);
    let detected = bottle_core::loopback::detect(&choice).map_err(|msg| {
        Failure::input(
            msg,
            "run `bottle doctor` to see the loopback mode of this host",
        )
    })?;
    if let Some(warning) = detected.warning() {
        eprintln!("warning: {warning}");
    }
    spec.loopback = Some(detected.apply(&choice));
    Ok(detected)
}

/// Checks a slug before any engine is contacted (bad input exits 2 with nothing touched).
pub fn check_slug(slug: &str) -> Result<(), Failure> {
    bottle_core::spec::validate_slug(slug).map_err(|e| Failure::from(bottle_core::Error::from(e)))
}

/// Checks `--prefix`: it becomes part of engine object names, under the slug's rules.
fn check_prefix(prefix: &str) -> Result<(), Failure> {
    bottle_core::spec::validate_slug(prefix).map_err(|e| {
        Failure::input(
            format!("--prefix: {}", e.to_string().trim_start_matches("slug: ")),
            "use 1-40 characters of a-z, 0-9 and - (or unset BOTTLE_PREFIX)",
        )
    })
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    check_prefix(&cli.global.prefix)?;
    let ctx = Context { global: cli.global };
    match cli.command {
        Command::Up(args) => up::run(&ctx, &args).await,
        Command::Down { slugs, all } => down::run(&ctx, &slugs, all).await,
        Command::Ps => ps::run(&ctx).await,
        Command::Env { slug } => env::run(&ctx, &slug).await,
        Command::Plan(args) => plan::run(&ctx, &args).await,
        Command::Gc { dry_run } => gc::run(&ctx, dry_run).await,
        Command::Logs { slug, follow, tail } => logs::run(&ctx, &slug, follow, tail).await,
        Command::Image(ImageCommand::Load { archive }) => image::load(&ctx, archive).await,
        Command::Doctor => doctor::run(&ctx).await,
        Command::Completions { shell } => completions::run(shell),
    }
}
