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

use std::io::Write;
use std::sync::Mutex;

use bottle_core::{Lifecycle, LifecycleConfig};
use serde::Serialize;

use crate::cli::{Cli, Command, Global, ImageCommand, Output};
use crate::exit::Failure;
use crate::output;
use crate::runtime::{self, Connected};

/// What every command gets: the global options and where results go.
pub struct Context {
    pub global: Global,
    out: Mutex<Box<dyn Write + Send>>,
    /// An engine connected by the caller, used instead of selecting one.
    engine: Option<Connected>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("global", &self.global)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context whose results go to `out` (the binary gives it stdout).
    pub fn new(global: Global, out: Box<dyn Write + Send>) -> Self {
        Context {
            global,
            out: Mutex::new(out),
            engine: None,
        }
    }

    /// Whether to draw progress on stderr.
    pub fn show_progress(&self) -> bool {
        !self.global.quiet
    }

    /// Whether informational text lines are wanted (text output without `--quiet`).
    pub fn says(&self) -> bool {
        self.global.output == Output::Text && !self.global.quiet
    }

    /// Runs a renderer on the output and flushes it. A closed pipe (`bottle ps | head -1`)
    /// is not an error worth reporting; the caller learns of it from the result.
    pub fn write(&self, render: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> bool {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        render(&mut **out).and_then(|()| out.flush()).is_ok()
    }

    /// Writes text.
    pub fn emit(&self, text: &str) {
        self.write(|out| out.write_all(text.as_bytes()));
    }

    /// Writes a report as pretty JSON.
    pub fn emit_json<T: Serialize + ?Sized>(&self, value: &T) {
        self.write(|out| output::write_json(out, value));
    }

    /// Connects to the engine (`--runtime` or the first that answers), or hands out the one
    /// the caller connected.
    pub async fn connect(&self) -> Result<Connected, Failure> {
        match &self.engine {
            Some(connected) => Ok(connected.clone()),
            None => runtime::select(&self.global).await,
        }
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
        crate::progress::warn(&warning);
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
    use bottle_core::spec::{ValidationError, MAX_SLUG_LEN};
    bottle_core::spec::validate_slug(prefix).map_err(|e| {
        // The slug's rules, worded for the flag.
        let why = match e {
            ValidationError::SlugEmpty => {
                format!("must not be empty (use 1-{MAX_SLUG_LEN} characters of a-z, 0-9 and -)")
            }
            ValidationError::SlugTooLong { len } => format!(
                "is {len} characters long, the limit is {MAX_SLUG_LEN} (it becomes part of engine object names)"
            ),
            ValidationError::SlugCharset { slug, reason } => format!(
                "{slug:?} {reason} (use a-z, 0-9 and -, starting and ending with a letter or digit)"
            ),
            other => other.to_string(),
        };
        Failure::input(
            format!("--prefix: {why}"),
            format!("use 1-{MAX_SLUG_LEN} characters of a-z, 0-9 and - (or unset BOTTLE_PREFIX)"),
        )
    })
}

/// Refuses `--output env` for a command that prints no variables: the one check for every
/// command (only `up` and `env` print variables).
fn refuse_env(command: &Command, output: Output) -> Result<(), Failure> {
    if output != Output::Env || matches!(command, Command::Up(_) | Command::Env { .. }) {
        return Ok(());
    }
    Err(Failure::input(
        format!(
            "--output env: `bottle {}` prints no variables",
            command.name()
        ),
        "use --output text or --output json; `bottle up` and `bottle env` print variables",
    ))
}

/// Runs the parsed command line, writing results to `out`.
pub async fn run(cli: Cli, out: Box<dyn Write + Send>) -> Result<(), Failure> {
    run_on(cli, out, None).await
}

/// [`run`] on an engine the caller connected (any `ContainerRuntime`, the in-memory one
/// included, standing in for `connected.engine`), or on the one the command line selects.
pub async fn run_on(
    cli: Cli,
    out: Box<dyn Write + Send>,
    engine: Option<Connected>,
) -> Result<(), Failure> {
    check_prefix(&cli.global.prefix)?;
    refuse_env(&cli.command, cli.global.output)?;
    let mut ctx = Context::new(cli.global, out);
    ctx.engine = engine;
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
        Command::Completions { shell } => completions::run(&ctx, shell),
    }
}
