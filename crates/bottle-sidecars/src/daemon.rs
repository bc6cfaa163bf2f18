//! `bottle-sidecars daemon <name>`: one daemon in its own process, as the init starts it.
//!
//! The egress proxy runs on a multi-threaded Tokio runtime (it carries all of the agent's
//! traffic); the other daemons on a single thread, which keeps the bundle's memory small.

use std::net::{Ipv4Addr, SocketAddr};

use nix::sys::signal::{SigSet, Signal};
use tokio::net::TcpListener;

use crate::catalog::{port_of, provided, EGRESS, GIT_GATE, SERVICES, SUPERVISE};
use crate::egress;

/// The egress proxy's worker threads (default: one per core, at most four).
pub const THREADS_ENV: &str = "BOTTLE_EGRESS_THREADS";

/// Runs daemon `name` until it is killed. Returns only on a startup error.
pub fn run(name: &str) -> Result<(), String> {
    let catalog = provided();
    let def = catalog.get(name).ok_or_else(|| {
        format!(
            "cannot run daemon {name:?}: this binary provides {}",
            catalog.names()
        )
    })?;
    // The init blocks these to wait for them synchronously; std already clears the mask on
    // spawn, and clearing it again keeps a daemon killable however it was started.
    let mut signals = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGCHLD,
        Signal::SIGALRM,
    ] {
        signals.add(s);
    }
    let _ = signals.thread_unblock();
    // Started by our init: if it dies without stopping us (SIGKILL, a crash), die with it
    // rather than keep a port bound with no one reaping or restarting us. Only then: the
    // signal follows the thread that started us, so under another parent (a test, a
    // benchmark spawning from a worker thread) it would kill us when that thread ends.
    let by_init = std::env::var(crate::init::PARENT_ENV)
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
        .is_some_and(|p| p == nix::unistd::getppid().as_raw());
    if by_init {
        let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    }

    let port = port_of(def)?;
    // Configuration errors are found before binding, so a bad list never looks healthy.
    let egress = if name == EGRESS {
        let mut limits = egress::Limits::from_env()?;
        limits.fit_open_files();
        let mut config = egress::Config::new(egress::allowlist_from_env()?);
        config.limits = limits;
        let secrets = crate::leak::secrets_from_env();
        config.scanner = crate::leak::Scanner::new(secrets.iter().map(|(k, v)| (k.as_str(), v)));
        let short: Vec<&str> = secrets
            .iter()
            .filter(|(_, v)| v.len() < crate::leak::MIN_SECRET_LEN)
            .map(|(k, _)| k.as_str())
            .collect();
        if !short.is_empty() {
            note(&format!(
                "not scanning for {} (values under {} bytes would match innocent text)",
                short.join(", "),
                crate::leak::MIN_SECRET_LEN
            ));
        }
        Some(config)
    } else {
        None
    };
    let gate = if name == GIT_GATE {
        Some(crate::gitgate::Config::from_env()?)
    } else {
        None
    };
    // The proxy carries all of the agent's traffic: it gets every core (at most four). The
    // other daemons serve one agent's occasional requests on one thread.
    let runtime = if egress.is_some() {
        let threads = match std::env::var(THREADS_ENV) {
            Ok(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=64).contains(n))
                .ok_or_else(|| format!("{THREADS_ENV}={v:?} is not a number of threads (1-64)"))?,
            Err(_) => std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
        };
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .map_err(|e| format!("cannot start the runtime of daemon {name}: {e}"))?;
    if name == SERVICES {
        return runtime.block_on(serve_services());
    }
    runtime.block_on(async {
        let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            format!(
                "daemon {name} cannot listen on {addr}: {e}; free the port or move it with {}",
                crate::catalog::port_env(name)
            )
        })?;
        if let Some(config) = gate {
            note(&format!(
                "listening on {addr} for {} upstream(s) ({}); mirrors in {}",
                config.upstreams.len(),
                config
                    .upstreams
                    .iter()
                    .map(|u| format!("{} -> {}", u.name(), u.url()))
                    .collect::<Vec<_>>()
                    .join(", "),
                config.dir.display()
            ));
            return crate::gitgate::serve(listener, config).await;
        }
        match (name, egress) {
            (EGRESS, Some(config)) => {
                note(&format!(
                    "listening on {addr} with {} allowlist rule(s){}; at most {} connections, \
                     idle timeout {} s; refusing to carry {} secret(s) and the known credential \
                     formats",
                    config.allow.rules.len(),
                    if config.allow.rules.is_empty() {
                        ": every request will be denied"
                    } else {
                        ""
                    },
                    config.limits.max_connections,
                    config.limits.idle_timeout.as_secs(),
                    config.scanner.keys().len(),
                ));
                egress::serve(listener, config).await;
            }
            (SUPERVISE, _) => {
                note(&format!("listening on {addr}"));
                crate::supervise::serve(listener).await;
            }
            (bottle_core::selfcheck::DAEMON, _) => {
                note(&format!("listening on {addr}"));
                crate::selfcheck::serve(listener).await;
            }
            _ => unreachable!("every daemon of the provided catalog has a branch"),
        }
        Ok(())
    })
}

/// The services daemon: every service of the bottle on its own port, until killed.
async fn serve_services() -> Result<(), String> {
    let services = crate::services::from_env()?;
    let scanner = std::sync::Arc::new(crate::leak::Scanner::new(crate::leak::secrets_from_env()));
    let log = crate::services::stdout_log();
    let mut running = tokio::task::JoinSet::new();
    for service in services {
        let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, service.planned.port));
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            format!(
                "service {} cannot listen on {addr}: {e}",
                service.planned.name
            )
        })?;
        note(&format!(
            "service {} listening on {addr}, forwarding to {}",
            service.planned.name, service.planned.upstream
        ));
        running.spawn(crate::services::serve(
            listener,
            std::sync::Arc::new(service),
            scanner.clone(),
            log.clone(),
        ));
    }
    // The servers run until the process is killed; one ending is a bug worth a restart.
    match running.join_next().await {
        Some(_) => Err("a service stopped serving".into()),
        None => Err(format!(
            "{} lists no service",
            bottle_core::service::SERVICES_ENV
        )),
    }
}

/// A diagnostic line on stderr; the init prefixes it with the daemon's name.
fn note(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
}
