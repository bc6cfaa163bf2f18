//! `bottle-sidecars init`: PID 1 of the bundle. Starts the daemons `BOTTLE_DAEMONS` selects, each
//! as a child process of this binary, prefixes their output with their names, reaps every child
//! (orphans included), restarts a daemon that dies, and stops everything quickly on SIGTERM.
//!
//! The design is the classic synchronous init: the signals it cares about are blocked and taken
//! one at a time with `sigwait`, so there are no signal handlers and no races between a handler
//! and the main loop. Output is copied by one small thread per daemon stream, through bounded
//! queues ([`crate::outq`]): a reader of our stdout that stops reading costs dropped (and
//! counted) lines, never a stalled daemon.
//!
//! Why children rather than tasks: a daemon that panics or is killed (for example by the memory
//! limit) takes only itself down; the agent keeps its other daemons.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bottle_core::{Catalog, DaemonDef};
use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{alarm, Pid};

use crate::catalog::selected_from_env;
use crate::outq::OutQueue;

/// Tells a daemon the init started it (the init's pid), so it dies with the init.
pub const PARENT_ENV: &str = "BOTTLE_INIT_PID";
/// How long daemons get between SIGTERM and SIGKILL. Ours exit on SIGTERM at once; the original's
/// 8 s grace made every teardown slow when a daemon ignored it.
pub const GRACE: Duration = Duration::from_millis(300);
/// The first restart delay of a daemon that exited; doubled on each quick exit.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest restart delay, so a daemon that keeps crashing costs little but is retried.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A daemon that ran this long before exiting was healthy; its backoff starts over.
const HEALTHY_RUN: Duration = Duration::from_secs(10);
/// The longest line copied as one; longer output is split, so a daemon cannot grow our memory.
const MAX_LINE: u64 = 16 * 1024;

struct Slot {
    def: DaemonDef,
    pid: Option<Pid>,
    started: Instant,
    backoff: Duration,
    restart_at: Option<Instant>,
}

/// Runs the init until SIGTERM or SIGINT; returns the exit code. An error is a startup error.
pub fn run(catalog: &Catalog) -> Result<i32, String> {
    let daemons = selected_from_env(catalog)?;

    // Blocked before any thread exists, so every thread inherits the mask and the signals wait
    // for `sigwait` below. Children get a clean mask: std resets it when it spawns.
    let mut signals = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGCHLD,
        Signal::SIGALRM,
    ] {
        signals.add(s);
    }
    signals
        .thread_block()
        .map_err(|e| format!("cannot block signals for the init: {e}"))?;
    // As PID 1 we inherit orphans anyway; elsewhere (tests, a shell) this makes us their reaper
    // too, so behaviour is the same. Failure only matters outside a container.
    let _ = nix::sys::prctl::set_child_subreaper(true);

    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find this binary to start the daemons from: {e}"))?;
    let mut init = Init {
        exe,
        slots: daemons
            .into_iter()
            .map(|def| Slot {
                def,
                pid: None,
                started: Instant::now(),
                backoff: FIRST_BACKOFF,
                restart_at: None,
            })
            .collect(),
        pumps: Vec::new(),
        stopping: false,
    };
    if init.slots.is_empty() {
        say("no daemons selected; idling until stopped");
    } else if std::env::var_os(bottle_core::catalog::DAEMONS_ENV).is_none() {
        say(&format!(
            "{} is unset; starting the daemons that always run",
            bottle_core::catalog::DAEMONS_ENV
        ));
    }
    for i in 0..init.slots.len() {
        init.start(i);
    }
    init.arm_alarm();

    loop {
        let sig = match signals.wait() {
            Ok(sig) => sig,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(format!("waiting for signals failed: {e}")),
        };
        match sig {
            Signal::SIGCHLD => {
                init.reap();
                init.arm_alarm();
            }
            Signal::SIGALRM => {
                let now = Instant::now();
                for i in 0..init.slots.len() {
                    if init.slots[i].restart_at.is_some_and(|t| t <= now) {
                        init.start(i);
                    }
                }
                init.arm_alarm();
            }
            Signal::SIGTERM | Signal::SIGINT => {
                init.shutdown(sig);
                return Ok(0);
            }
            _ => {}
        }
    }
}

struct Init {
    exe: std::path::PathBuf,
    slots: Vec<Slot>,
    pumps: Vec<JoinHandle<()>>,
    stopping: bool,
}

impl Init {
    /// Starts slot `i`'s daemon; a failure schedules a retry like an exit would.
    fn start(&mut self, i: usize) {
        let name = self.slots[i].def.name.clone();
        self.slots[i].restart_at = None;
        self.slots[i].started = Instant::now();
        let spawned = Command::new(&self.exe)
            .args(["daemon", &name])
            .env(PARENT_ENV, std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let delay = self.schedule_restart(i);
                say(&format!(
                    "cannot start {name} from {}: {e}; retrying in {} s",
                    self.exe.display(),
                    delay.as_secs()
                ));
                return;
            }
        };
        // The pid is the handle from here on: the Child is dropped without waiting, since the
        // init reaps every child itself with waitpid(-1).
        let pid = Pid::from_raw(child.id() as i32);
        self.slots[i].pid = Some(pid);
        if let Some(out) = child.stdout.take() {
            self.pumps.extend(pump(&name, out, false));
        }
        if let Some(err) = child.stderr.take() {
            self.pumps.extend(pump(&name, err, true));
        }
        say(&format!("started {name} pid {pid}"));
    }

    /// Reaps every exited child without blocking; logs and reschedules the daemons among them.
    fn reap(&mut self) {
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(status) => status,
                Err(Errno::EINTR) => continue,
                // ECHILD: no children left at all.
                Err(_) => break,
            };
            let (pid, how) = match status {
                WaitStatus::Exited(pid, code) => (pid, format!("exited with status {code}")),
                WaitStatus::Signaled(pid, sig, _) => (pid, format!("was killed by {sig}")),
                _ => continue,
            };
            // Anything else is an orphan reparented to us: reaping it is all it needs.
            let Some(i) = self.slots.iter().position(|s| s.pid == Some(pid)) else {
                continue;
            };
            self.slots[i].pid = None;
            let name = self.slots[i].def.name.clone();
            if self.stopping {
                say(&format!("{name} {how}"));
            } else {
                let delay = self.schedule_restart(i);
                say(&format!(
                    "{name} (pid {pid}) {how}; the other daemons keep serving; restarting it in {} s",
                    delay.as_secs()
                ));
            }
        }
        self.pumps.retain(|p| !p.is_finished());
    }

    /// Schedules slot `i`'s restart and returns the delay: short after a healthy run, doubling
    /// while the daemon keeps dying quickly, so a crash loop never spins.
    fn schedule_restart(&mut self, i: usize) -> Duration {
        let slot = &mut self.slots[i];
        if slot.started.elapsed() >= HEALTHY_RUN {
            slot.backoff = FIRST_BACKOFF;
        }
        let delay = slot.backoff;
        slot.restart_at = Some(Instant::now() + delay);
        slot.backoff = (delay * 2).min(MAX_BACKOFF);
        delay
    }

    /// Sets SIGALRM for the earliest pending restart (whole seconds, at least one).
    fn arm_alarm(&self) {
        let next = self.slots.iter().filter_map(|s| s.restart_at).min();
        match next {
            Some(t) => {
                let wait = t.saturating_duration_since(Instant::now());
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                alarm::set(secs.clamp(1, u64::from(u32::MAX)) as u32);
            }
            None => {
                alarm::cancel();
            }
        }
    }

    /// SIGTERM to every daemon, SIGKILL to what is left after [`GRACE`], reap, flush output.
    fn shutdown(&mut self, sig: Signal) {
        self.stopping = true;
        alarm::cancel();
        say(&format!("{sig}: stopping"));
        for pid in self.live() {
            let _ = kill(pid, Signal::SIGTERM);
        }
        let deadline = Instant::now() + GRACE;
        while !self.live().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            self.reap();
        }
        for s in &self.slots {
            if let Some(pid) = s.pid {
                say(&format!(
                    "{} did not stop within {} ms; killing it",
                    s.def.name,
                    GRACE.as_millis()
                ));
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
        // SIGKILL cannot be ignored; the bound only guards against a child stuck in the kernel.
        let deadline = Instant::now() + Duration::from_millis(300);
        while !self.live().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            self.reap();
        }
        // Let the copiers write the daemons' last lines; their pipes close as the daemons die.
        let deadline = Instant::now() + Duration::from_millis(100);
        while self.pumps.iter().any(|p| !p.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        say("stopped");
        let out = outputs();
        let _ = out.stderr.drain(Duration::from_millis(100));
        let _ = out.stdout.drain(Duration::from_millis(100));
    }

    fn live(&self) -> Vec<Pid> {
        self.slots.iter().filter_map(|s| s.pid).collect()
    }
}

/// How many lines may wait for each of stdout and stderr before daemon output is dropped.
const OUT_QUEUE: usize = 1024;

/// The init's stdout and stderr: bounded queues to writer threads, so neither the init nor a
/// daemon ever blocks on output nobody reads (a daemon whose pipe is full would stall).
struct Outputs {
    stdout: OutQueue<Vec<u8>>,
    stderr: OutQueue<Vec<u8>>,
}

fn outputs() -> &'static Outputs {
    static OUT: OnceLock<Outputs> = OnceLock::new();
    OUT.get_or_init(|| {
        // Lines dropped while the queue was full are announced before the next line written.
        fn render(line: Vec<u8>, dropped: u64) -> Vec<u8> {
            if dropped == 0 {
                return line;
            }
            let mut out =
                format!("[init] dropped {dropped} line(s) of output nobody read in time\n")
                    .into_bytes();
            out.extend_from_slice(&line);
            out
        }
        let spawn = |name: &str, w: Box<dyn Write + Send>| {
            OutQueue::spawn(name, w, OUT_QUEUE, render).expect("the init's output threads start")
        };
        Outputs {
            stdout: spawn("init-stdout", Box::new(std::io::stdout())),
            stderr: spawn("init-stderr", Box::new(std::io::stderr())),
        }
    })
}

/// An init message on stdout, prefixed `[init] ` like the daemons' lines are with their names.
fn say(msg: &str) {
    outputs()
        .stdout
        .push(format!("[init] {msg}\n").into_bytes());
}

/// Copies `src` line by line to our stdout (or stderr), each line prefixed `[name] `.
fn pump(name: &str, src: impl Read + Send + 'static, to_stderr: bool) -> Option<JoinHandle<()>> {
    let prefix = format!("[{name}] ");
    let out = if to_stderr {
        outputs().stderr.clone()
    } else {
        outputs().stdout.clone()
    };
    std::thread::Builder::new()
        .name(format!("{name}-out"))
        // Copying lines needs little stack; the default 2 MiB would be reserved per stream.
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut reader = BufReader::with_capacity(8 * 1024, src);
            loop {
                let mut line = Vec::with_capacity(256);
                line.extend_from_slice(prefix.as_bytes());
                match (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
                if line.last() != Some(&b'\n') {
                    line.push(b'\n');
                }
                // One item per line, so lines of different daemons never interleave.
                out.push(line);
            }
        })
        .ok()
}
