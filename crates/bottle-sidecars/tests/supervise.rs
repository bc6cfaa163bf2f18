//! The minimal supervise endpoint in-process: MCP's handshake and an honest, empty tool list.

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Sends one request with `body` (GET when `None`) and returns the status and the body.
async fn call(port: u16, body: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = match body {
        Some(b) => format!(
            "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{b}",
            b.len()
        ),
        None => "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
    };
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

#[track_caller]
fn check(got: (u16, String), status: u16, pointer: &str, expect: Value) {
    assert_eq!(got.0, status, "{}", got.1);
    if pointer.is_empty() {
        assert!(got.1.is_empty(), "{}", got.1);
        return;
    }
    let v: Value = serde_json::from_str(&got.1).unwrap();
    assert_eq!(v.pointer(pointer), Some(&expect), "{v}");
}

#[tokio::test]
async fn answers_the_mcp_handshake_with_no_tools() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(bottle_sidecars::supervise::serve(listener));

    check(call(port, None).await, 200, "/protocol", json!("mcp"));
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26"}}"#;
    check(
        call(port, Some(init)).await,
        200,
        "/result/protocolVersion",
        json!("2025-03-26"),
    );
    check(
        call(port, Some(init)).await,
        200,
        "/result/capabilities/tools",
        json!({}),
    );
    let list = r#"{"jsonrpc":"2.0","id":"a","method":"tools/list"}"#;
    check(
        call(port, Some(list)).await,
        200,
        "/result/tools",
        json!([]),
    );
    check(call(port, Some(list)).await, 200, "/id", json!("a"));
    let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    check(call(port, Some(note)).await, 202, "", json!(null));
    let unknown = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x"}}"#;
    check(
        call(port, Some(unknown)).await,
        200,
        "/error/code",
        json!(-32601),
    );
    check(
        call(port, Some("{not json")).await,
        400,
        "/error/code",
        json!(-32700),
    );
}
