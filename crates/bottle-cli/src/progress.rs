//! Progress on stderr: one spinner line per step of `up`, `down` and `image load`, silent when
//! stderr is not a terminal or with `--quiet`.
//!
//! Also the testing aid `BOTTLE_DEBUG_PAUSE_AT=<step>` (see the crate docs): at that step the
//! process says so on stderr and stops until it is killed, so a test can kill it at an exact
//! point between two engine calls.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bottle_core::lifecycle::{Progress, Step};
use indicatif::{ProgressBar, ProgressStyle};

/// A spinner per step; each finished step stays on screen as a `✓` line with its duration.
#[derive(Debug)]
pub struct Spinner {
    enabled: bool,
    current: Mutex<Option<Current>>,
}

#[derive(Debug)]
struct Current {
    bar: ProgressBar,
    message: String,
    started: Instant,
}

/// A warning on stderr, whatever `--quiet` says: it tells the user of a weaker guarantee.
pub fn warn(line: &str) {
    eprintln!("warning: {line}");
}

impl Current {
    /// Replaces the spinner with a permanent line. indicatif leaves a finished bar's line
    /// without a newline, so the next output would run on; this line ends properly.
    fn done(self) {
        self.bar.finish_and_clear();
        eprintln!("✓ {} ({:.1?})", self.message, self.started.elapsed());
    }
}

impl Spinner {
    /// A spinner that draws only when `wanted` and stderr is a terminal.
    pub fn new(wanted: bool) -> Self {
        Spinner {
            enabled: wanted && std::io::stderr().is_terminal(),
            current: Mutex::new(None),
        }
    }

    /// Ends the current step and starts a spinner for `message`.
    pub fn begin(&self, message: String) {
        if !self.enabled {
            return;
        }
        let mut current = self.current.lock().expect("spinner lock");
        if let Some(previous) = current.take() {
            previous.done();
        }
        let bar = ProgressBar::new_spinner().with_message(message.clone());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed:.dim}")
                .expect("valid template")
                .tick_strings(&["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏", "✓"]),
        );
        bar.enable_steady_tick(Duration::from_millis(80));
        *current = Some(Current {
            bar,
            message,
            started: Instant::now(),
        });
    }

    /// Ends the current step, leaving its line on screen.
    pub fn finish(&self) {
        if let Some(current) = self.current.lock().expect("spinner lock").take() {
            current.done();
        }
    }

    /// Removes the current step's line (it did not finish: an error follows).
    pub fn clear(&self) {
        if let Some(current) = self.current.lock().expect("spinner lock").take() {
            current.bar.finish_and_clear();
        }
    }
}

/// The environment variable naming the step to pause at (a testing aid).
pub const PAUSE_ENV: &str = "BOTTLE_DEBUG_PAUSE_AT";

/// The kebab-case name of a step, as `BOTTLE_DEBUG_PAUSE_AT` takes it.
pub fn step_name(step: &Step) -> &'static str {
    match step {
        Step::CheckingImage { .. } => "checking-image",
        Step::Allocating => "allocating",
        Step::CreatingNetwork { .. } => "creating-network",
        Step::CreatingContainer { .. } => "creating-container",
        Step::Starting { .. } => "starting",
        Step::DiscoveringPorts => "discovering-ports",
        Step::WaitingReady { .. } => "waiting-ready",
        Step::Ready => "ready",
        Step::RollingBack { .. } => "rolling-back",
        Step::Removing { .. } => "removing",
        _ => "other",
    }
}

/// Stops this process for good when `BOTTLE_DEBUG_PAUSE_AT` names `step`, after a marker line
/// on stderr. Each step is reported as it *starts*, so pausing at `creating-container` stops
/// after the network exists and before the container is created. The whole (single-threaded)
/// runtime stops with it: nothing else of this process runs until it is killed.
fn pause_if_asked(slug: &str, step: &Step) {
    let Some(wanted) = std::env::var_os(PAUSE_ENV) else {
        return;
    };
    let name = step_name(step);
    if wanted.to_str() != Some(name) {
        return;
    }
    eprintln!("bottle: paused at {name} of {slug} ({PAUSE_ENV}); waiting to be killed");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

impl Progress for Spinner {
    fn step(&self, slug: &str, step: &Step) {
        pause_if_asked(slug, step);
        match step {
            Step::Ready => self.finish(),
            other => self.begin(other.to_string()),
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.clear();
    }
}
