//! The supervise daemon, minimal: an MCP endpoint (JSON-RPC over HTTP POST) that answers
//! `initialize`, `ping` and `tools/list` and offers no tools yet.
//!
//! It exists so a bottle that enables supervise gets a live, honest endpoint at
//! `MCP_SUPERVISE_URL`: the agent's MCP client can connect and sees that nothing is on offer,
//! instead of failing to connect. Asking a human for more access is not implemented here.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// The largest JSON-RPC request body read; an MCP request is far smaller.
const MAX_BODY: usize = 1024 * 1024;
/// The MCP protocol revision answered when the client asks for none.
const PROTOCOL_VERSION: &str = "2025-06-18";

/// Serves the endpoint on `listener`. Runs until dropped.
pub async fn serve(listener: TcpListener) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, most likely: back off rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let conn = http.serve_connection(TokioIo::new(stream), hyper::service::service_fn(handle));
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::POST {
        return Ok(reply(
            StatusCode::OK,
            json!({"server": "bottle-supervise", "protocol": "mcp", "tools": 0}),
        ));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                rpc_error(
                    Value::Null,
                    -32600,
                    &format!("cannot read the request body: {e}"),
                ),
            ))
        }
    };
    let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
        return Ok(reply(
            StatusCode::BAD_REQUEST,
            rpc_error(Value::Null, -32700, "parse error"),
        ));
    };
    // A notification (no id) gets no JSON-RPC answer; MCP over HTTP acknowledges it with 202.
    let Some(id) = msg.get("id").cloned() else {
        return Ok(Response::builder()
            .status(StatusCode::ACCEPTED)
            .body(Full::new(Bytes::new()))
            .unwrap_or_default());
    };
    let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
    let result = match method {
        "initialize" => {
            let version = msg
                .pointer("/params/protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or(PROTOCOL_VERSION);
            json!({
                "protocolVersion": version,
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "bottle-supervise", "version": env!("CARGO_PKG_VERSION")},
            })
        }
        "ping" => json!({}),
        "tools/list" => json!({"tools": []}),
        other => {
            return Ok(reply(
                StatusCode::OK,
                rpc_error(id, -32601, &format!("method {other:?} is not provided")),
            ))
        }
    };
    Ok(reply(
        StatusCode::OK,
        json!({"jsonrpc": "2.0", "id": id, "result": result}),
    ))
}

fn rpc_error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
