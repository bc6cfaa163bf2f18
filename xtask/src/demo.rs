//! `cargo xtask demo`: one bottle end to end on a real engine. Makes the engine reachable,
//! loads the reference image, brings a bottle up, runs an upstream server in a container on
//! the bottle's network, then plays the agent from the host: one request through the bottle's
//! egress proxy to the upstream (allowed) and one to a host outside the allowlist (denied,
//! without any lookup or connection: nothing leaves the machine). Prints the endpoints and
//! tears everything down.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{cargo, root, run as sh, show};

const SLUG: &str = "demo";
/// A pool of exactly one /24, so the upstream's address is known before the bottle is up.
const SUBNET_POOL: &str = "10.199.0.0/24";
const UPSTREAM_IP: &str = "10.199.0.3";
/// The upstream is the reference image's supervise daemon: it answers `GET /` with 200.
const UPSTREAM_PORT: u16 = 9100;
const UPSTREAM_NAME: &str = "bottle-demo-upstream";

/// Runs the demo; `--runtime docker|podman` picks the engine (default docker).
pub fn run(args: &[String]) -> Result<(), String> {
    let runtime = match args {
        [] => "docker".to_string(),
        [flag, value] if flag == "--runtime" => value.clone(),
        _ => return Err("usage: cargo xtask demo [--runtime docker|podman]".into()),
    };
    if runtime != "docker" && runtime != "podman" {
        return Err(format!("unknown runtime {runtime:?}: use docker or podman"));
    }
    crate::engines::run(&[])?;
    crate::image::run(&[])?;
    sh(cargo().args(["build", "--quiet", "-p", "bottle-cli"]))?;

    let demo = Demo { runtime };
    demo.bottle(&["image", "load"])?;
    // Leftovers of an earlier demo that was stopped midway.
    demo.teardown();
    let result = demo.play();
    demo.teardown();
    result
}

struct Demo {
    runtime: String,
}

impl Demo {
    fn bottle_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(root().join("target/debug/bottle"));
        cmd.args(["--runtime", &self.runtime]).args(args);
        cmd
    }

    /// Runs `bottle` with output shown.
    fn bottle(&self, args: &[&str]) -> Result<(), String> {
        sh(&mut self.bottle_cmd(args))
    }

    /// Runs `bottle` and returns its stdout.
    fn bottle_output(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = self.bottle_cmd(args);
        eprintln!("$ {}", show(&cmd));
        let out = cmd
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", show(&cmd)))?;
        if !out.status.success() {
            return Err(format!("{} failed ({})", show(&cmd), out.status));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn play(&self) -> Result<(), String> {
        let allow = format!("{UPSTREAM_IP}:{UPSTREAM_PORT}");
        let exports = self.bottle_output(&[
            "up",
            SLUG,
            "--subnet-pool",
            SUBNET_POOL,
            "--allow",
            &allow,
            "--output",
            "env",
        ])?;
        let proxy = exports
            .lines()
            .find_map(|l| l.strip_prefix("export HTTP_PROXY="))
            .map(|v| v.trim_matches('\''))
            .ok_or_else(|| format!("`bottle up` printed no HTTP_PROXY:\n{exports}"))?;
        let proxy_addr = proxy
            .strip_prefix("http://")
            .ok_or_else(|| format!("unexpected proxy URL {proxy}"))?
            .trim_end_matches('/')
            .to_string();
        println!("\nthe agent's proxy is {proxy}");

        let network = format!("bottle-bundle-{SLUG}");
        sh(Command::new(&self.runtime).args([
            "run",
            "--detach",
            "--name",
            UPSTREAM_NAME,
            "--network",
            &network,
            "--ip",
            UPSTREAM_IP,
            "--read-only",
            "--cap-drop",
            "ALL",
            "--env",
            "BOTTLE_DAEMONS=supervise",
            "bottle-sidecars:latest",
        ]))?;

        // The upstream needs a moment to listen; the proxy answers 502 until it does.
        let allowed_url = format!("http://{UPSTREAM_IP}:{UPSTREAM_PORT}/");
        let deadline = Instant::now() + Duration::from_secs(20);
        let allowed = loop {
            let reply = request_via_proxy(&proxy_addr, &allowed_url)?;
            if reply.starts_with("HTTP/1.1 200") || Instant::now() > deadline {
                break reply;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        println!("\nallowed: GET {allowed_url} through the proxy");
        println!("  {}", first_line(&allowed));
        if !allowed.starts_with("HTTP/1.1 200") {
            return Err(format!("the allowed request did not succeed:\n{allowed}"));
        }

        let denied_url = "http://example.com/";
        let denied = request_via_proxy(&proxy_addr, denied_url)?;
        println!("\ndenied: GET {denied_url} through the proxy (not in the allowlist)");
        println!("  {}", first_line(&denied));
        if let Some(body) = denied.split("\r\n\r\n").nth(1) {
            println!("  {}", body.trim());
        }
        if !denied.starts_with("HTTP/1.1 403") {
            return Err(format!("the denied request was not refused:\n{denied}"));
        }

        println!("\nthe agent's endpoints (`bottle env {SLUG}`):");
        self.bottle(&["env", SLUG])?;
        println!("\ndemo passed: one request allowed, one denied; tearing down");
        Ok(())
    }

    fn teardown(&self) {
        let _ = Command::new(&self.runtime)
            .args(["rm", "--force", UPSTREAM_NAME])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self
            .bottle_cmd(&["--quiet", "down", SLUG])
            .stdout(Stdio::null())
            .status();
    }
}

/// Sends `GET <url>` as an absolute-form request to the proxy at `proxy` and returns the
/// whole reply.
fn request_via_proxy(proxy: &str, url: &str) -> Result<String, String> {
    let host = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    let mut stream = TcpStream::connect(proxy).map_err(|e| format!("connect to {proxy}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: bottle-demo\r\n\r\n"
    )
    .map_err(|e| format!("send to {proxy}: {e}"))?;
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .map_err(|e| format!("read from {proxy}: {e}"))?;
    Ok(reply)
}

fn first_line(reply: &str) -> &str {
    reply.lines().next().unwrap_or("(empty reply)")
}
