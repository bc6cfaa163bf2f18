//! A tiny HTTP/1.1 client over a unix socket: the floor contender's whole engine client, and the
//! benchmark's own way to sweep, verify and prepare, so none of that depends on the code under
//! test.
//!
//! One connection per request (`Connection: close`), the body read to the end; chunked answers
//! are decoded. That is all the engines' APIs need for the calls made here.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// An engine API reached over a unix socket.
#[derive(Debug, Clone)]
pub struct UnixHttp {
    socket: PathBuf,
}

/// An answer: status and body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON (`Null` when empty or not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as text, for error messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim().to_string()
    }
}

impl UnixHttp {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        UnixHttp {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one request; `body` is sent as JSON when given.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response, String> {
        let what = || format!("{method} {path} on {}", self.socket.display());
        let mut stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| format!("{}: cannot connect: {e}", what()))?;
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: engine\r\nConnection: close\r\n");
        if body.is_some() {
            head.push_str("Content-Type: application/json\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", payload.len()));
        let mut request = head.into_bytes();
        request.extend_from_slice(payload.as_bytes());
        stream
            .write_all(&request)
            .await
            .map_err(|e| format!("{}: cannot send: {e}", what()))?;
        let mut raw = Vec::with_capacity(8192);
        stream
            .read_to_end(&mut raw)
            .await
            .map_err(|e| format!("{}: cannot read the answer: {e}", what()))?;
        parse(&raw).ok_or_else(|| format!("{}: malformed answer", what()))
    }

    /// Sends a request and fails unless the status is 2xx or one of `also_ok`.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        also_ok: &[u16],
    ) -> Result<Response, String> {
        let r = self.request(method, path, body).await?;
        if r.ok() || also_ok.contains(&r.status) {
            Ok(r)
        } else {
            Err(format!("{method} {path}: HTTP {}: {}", r.status, r.text()))
        }
    }
}

/// Splits a raw HTTP/1.1 answer into status and (de-chunked) body.
fn parse(raw: &[u8]) -> Option<Response> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Some(Response { status, body })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(raw: &str, status: u16, body: &str) {
        let r = parse(raw.as_bytes()).expect("parses");
        assert_eq!((r.status, r.text().as_str()), (status, body));
    }

    #[test]
    fn answers() {
        check(
            "HTTP/1.1 201 Created\r\nContent-Length: 8\r\n\r\n{\"a\":1}\n",
            201,
            "{\"a\":1}",
        );
        check(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n",
            200,
            "{\"a\":1}",
        );
        check("HTTP/1.1 204 No Content\r\n\r\n", 204, "");
        assert!(parse(b"garbage").is_none());
    }
}
