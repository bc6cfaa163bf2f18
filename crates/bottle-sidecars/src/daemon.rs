//! `bottle-sidecars daemon <name>`: one daemon in its own process, as the init starts it.
//!
//! Each daemon runs on a single-threaded Tokio runtime: the bundle's traffic is one agent's, and
//! one thread keeps the bundle's memory small.

use std::net::{Ipv4Addr, SocketAddr};

use nix::sys::signal::{SigSet, Signal};
use tokio::net::TcpListener;

use crate::catalog::{port_of, provided, EGRESS, SUPERVISE};
use crate::egress;

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
    // If the init dies without stopping us (SIGKILL, a crash), die with it rather than keep a
    // port bound with no one reaping or restarting us.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);

    let port = port_of(def)?;
    // Allowlist errors are found before binding, so a bad list never looks healthy.
    let allow = if name == EGRESS {
        Some(egress::allowlist_from_env()?)
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime of daemon {name}: {e}"))?;
    runtime.block_on(async {
        let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            format!(
                "daemon {name} cannot listen on {addr}: {e}; free the port or move it with {}",
                crate::catalog::port_env(name)
            )
        })?;
        match (name, allow) {
            (EGRESS, Some(allow)) => {
                note(&format!(
                    "listening on {addr} with {} allowlist rule(s){}",
                    allow.rules.len(),
                    if allow.rules.is_empty() {
                        ": every request will be denied"
                    } else {
                        ""
                    }
                ));
                egress::serve(listener, allow).await;
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

/// A diagnostic line on stderr; the init prefixes it with the daemon's name.
fn note(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
}
