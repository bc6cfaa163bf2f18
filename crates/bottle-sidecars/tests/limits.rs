//! The proxy under resource pressure, as the built binary: a low open-files limit and a crowd
//! of idle connections must not lock out a new request (no waiting for idle timeouts), and a
//! tunnel that carries nothing is closed after the idle timeout.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bottle-sidecars");

/// An HTTP upstream on 127.0.0.1 answering every request with 200, in a thread per connection.
fn upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = stream;
                let mut buf = [0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            });
        }
    });
    port
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proxy {
    child: Child,
    port: u16,
}

impl Proxy {
    /// The proxy with `nofile` open files at most and `env`, once it accepts connections.
    fn start(nofile: u32, allow: &str, env: &[(&str, &str)]) -> Proxy {
        let port = free_port();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" daemon egress"))
            .arg(BIN)
            .env("BOTTLE_EGRESS_PORT", port.to_string())
            .env("BOTTLE_EGRESS_ALLOW", allow)
            .env("BOTTLE_EGRESS_ALLOW_FILE", "/dev/null")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let started = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the proxy never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Proxy { child, port }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a response head's status (or `None` for a connection closed without one).
fn status(s: &mut TcpStream) -> Option<u16> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
}

#[test]
fn idle_connections_at_a_low_open_files_limit_never_lock_out_a_new_request() {
    let up = upstream();
    // 100 descriptors: the proxy caps itself at (100 - 64) / 2 = 18 connections. The timeouts
    // are far longer than the test may take, so only shedding can make room.
    let proxy = Proxy::start(
        100,
        &format!("127.0.0.1:{up}"),
        &[
            ("BOTTLE_EGRESS_HEADER_TIMEOUT_SECS", "600"),
            ("BOTTLE_EGRESS_IDLE_TIMEOUT_SECS", "600"),
        ],
    );
    let get = format!("GET http://127.0.0.1:{up}/ HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n\r\n");
    // Keep-alive connections that each made one request and then sit idle, more than the cap.
    let mut idle = Vec::new();
    for _ in 0..40 {
        let mut s = proxy.connect();
        if s.write_all(get.as_bytes()).is_ok() && status(&mut s) == Some(200) {
            idle.push(s);
        }
    }
    // And connections that never sent a byte.
    let silent: Vec<TcpStream> = (0..40).map(|_| proxy.connect()).collect();
    // A new request is served, not refused for good and not left waiting for a timeout.
    let mut served = false;
    for _ in 0..20 {
        let mut s = proxy.connect();
        s.write_all(get.as_bytes()).unwrap();
        match status(&mut s) {
            Some(200) => {
                served = true;
                break;
            }
            Some(503) | None => std::thread::sleep(Duration::from_millis(100)),
            Some(other) => panic!("unexpected status {other}"),
        }
    }
    assert!(
        served,
        "no new request was served while idle connections held every slot"
    );
    drop((idle, silent));
}

#[test]
fn a_silent_tunnel_is_closed_after_the_idle_timeout() {
    let up = upstream();
    let proxy = Proxy::start(
        1024,
        &format!("127.0.0.1:{up}"),
        &[("BOTTLE_EGRESS_IDLE_TIMEOUT_SECS", "1")],
    );
    let mut s = proxy.connect();
    let connect = format!("CONNECT 127.0.0.1:{up} HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n\r\n");
    s.write_all(connect.as_bytes()).unwrap();
    assert_eq!(status(&mut s), Some(200));
    // Nothing is sent: the proxy closes the tunnel (EOF) long before the 20 s read timeout.
    let mut rest = Vec::new();
    let read = s.read_to_end(&mut rest);
    assert!(read.is_ok(), "the tunnel was not closed: {read:?}");
}
