//! `bottle-sidecars health`: the image's health check. Healthy means every daemon the bundle was
//! asked to run accepts a TCP connection on its port.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use bottle_core::Catalog;

use crate::catalog::{port_of, selected_from_env};

/// How long one daemon may take to accept; the engine's own timeout is longer.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(800);

/// Probes every selected daemon on 127.0.0.1; the error names each one that did not answer.
pub fn check(catalog: &Catalog) -> Result<String, String> {
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for def in selected_from_env(catalog)? {
        let port = port_of(&def)?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(_) => ok.push(format!("{} on {addr}", def.name)),
            Err(e) => failed.push(format!("{} on {addr}: {e}", def.name)),
        }
    }
    if failed.is_empty() {
        Ok(format!("healthy: {}", ok.join(", ")))
    } else {
        Err(format!(
            "unhealthy: {}; see the bundle's log for why the daemon is not serving",
            failed.join("; ")
        ))
    }
}
