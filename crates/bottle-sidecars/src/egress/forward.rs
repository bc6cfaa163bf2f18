//! Absolute-form plain HTTP: decided, then sent to the upstream in origin form with the `Host`
//! it was decided on, the response streamed back, and one close line when the exchange ends.
//!
//! The request's target, headers and whole body are scanned for credentials
//! ([`crate::leak`]) before anything is sent; bodies are therefore read whole first (at most
//! [`super::MAX_BODY`]).
//!
//! Upstream connections are kept in a [`Pool`] once their exchange has ended and reused for the
//! next request to the same target whose checked addresses include the one connected to:
//! keep-alive through the proxy, and new client connections too, cost one upstream connection,
//! not one per request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, HeaderValue, CONNECTION, HOST};
use hyper::{Request, Response, Uri, Version};
use hyper_util::rt::TokioIo;

use super::target::{parse_authority, Target};
use super::{Body, EventKind, EventLog, Proxy, Record, Refusal, Verdict};

/// Upstream connections whose last exchange has ended, for the next request to the same target
/// at the same checked address, from any client connection of this bottle (its one agent).
/// A connection goes back only once its response body has been read to the end, so a request
/// never waits behind another client's response.
#[derive(Default)]
pub(super) struct Pool {
    idle: Mutex<HashMap<PoolKey, Vec<SendRequest<Body>>>>,
}

/// What a pooled connection may serve: one target, at one checked address.
type PoolKey = (Target, SocketAddr);

/// The most idle connections kept per target and address.
const IDLE_PER_KEY: usize = 16;

impl Pool {
    /// A ready connection to `target` at one of `addrs`, if one is idle.
    fn take(
        &self,
        target: &Target,
        addrs: &[SocketAddr],
    ) -> Option<(SendRequest<Body>, SocketAddr)> {
        let mut idle = self.idle.lock().ok()?;
        for addr in addrs {
            let key = (target.clone(), *addr);
            let Some(list) = idle.get_mut(&key) else {
                continue;
            };
            while let Some(sender) = list.pop() {
                if sender.is_ready() {
                    return Some((sender, *addr));
                }
            }
            idle.remove(&key);
        }
        None
    }

    fn put(&self, target: Target, addr: SocketAddr, sender: SendRequest<Body>) {
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry((target, addr)).or_default();
            if list.len() < IDLE_PER_KEY {
                list.push(sender);
            }
        }
    }
}

impl Proxy {
    pub(super) async fn forward(
        &self,
        record: &mut Record,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Refusal> {
        let uri = req.uri().clone();
        let Some(authority) = uri.authority() else {
            return Err(Refusal::bad_request(
                "this is a forward proxy: send absolute-form requests (GET http://host/path) \
                 or CONNECT host:port"
                    .into(),
            ));
        };
        if uri.scheme_str() != Some("http") {
            return Err(Refusal::bad_request(format!(
                "only http:// URLs are forwarded in plain; got {uri}; use CONNECT for https"
            )));
        }
        let target = parse_authority(authority.as_str(), Some(80)).map_err(Refusal::bad_request)?;
        record.set_target(&target);
        // A head with both Content-Length and Transfer-Encoding reaches us with the length
        // removed (hyper reads it by its Transfer-Encoding, RFC 9112 §6.3), and the body is
        // framed anew towards the upstream: the upstream never sees two framings.
        Self::check_host_header(&req, &target, Some(80))?;
        let started = Instant::now();
        let (mut parts, body) = req.into_parts();
        let body = super::read_body(body)
            .await
            .map_err(|(status, why)| Refusal {
                status,
                verdict: Verdict::Denied,
                body: format!("bottle egress: {why}\n"),
                reason: why,
            })?;
        let target_text = uri.to_string();
        let mut carried: Vec<(String, &[u8])> = vec![("target".into(), target_text.as_bytes())];
        for (name, value) in &parts.headers {
            carried.push((format!("header {name}"), name.as_str().as_bytes()));
            carried.push((format!("header {name}"), value.as_bytes()));
        }
        carried.push(("body".into(), &body));
        let addrs = self.decide(&record.method, &target, &carried).await?;
        drop(carried);

        let (mut sender, mut addr, pooled) = self.upstream_for(&target, &addrs).await?;
        let mut decided = record.decision(Verdict::Allowed, None, None);
        decided.addr = Some(addr);
        (self.log)(decided);

        let up = body.len() as u64;
        parts.uri = origin_form(&uri);
        parts.version = Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        // Always the Host the decision was made on, whatever the client sent or stripped.
        if let Ok(host) = HeaderValue::from_str(&target.host_header(80)) {
            parts.headers.insert(HOST, host);
        }
        let body = Full::new(body).map_err(|n| match n {}).boxed();
        let mut close = record.event(EventKind::Close);
        close.addr = Some(addr);
        let mut sent = sender
            .try_send_request(Request::from_parts(parts, body))
            .await;
        if let Err(e) = &mut sent {
            // An idle connection the upstream had closed: the request was never written, so
            // it goes once more on a new connection.
            if let (true, Some(request)) = (pooled, e.take_message()) {
                match self.connect_http(&target, &addrs).await {
                    Ok((fresh, fresh_addr)) => {
                        (sender, addr) = (fresh, fresh_addr);
                        close.addr = Some(addr);
                        sent = sender.try_send_request(request).await;
                    }
                    Err(refusal) => {
                        close.status = Some(502);
                        close.reason = Some(refusal.reason);
                        close.bytes_up = Some(0);
                        close.bytes_down = Some(0);
                        close.duration_ms = Some(started.elapsed().as_millis() as u64);
                        (self.log)(close);
                        return Ok(super::text(refusal.status, refusal.body));
                    }
                }
            }
        }
        match sent.map_err(|e| e.into_error()) {
            Ok(resp) => {
                close.status = Some(resp.status().as_u16());
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                let body = Logged {
                    inner: body,
                    down: 0,
                    up,
                    started,
                    close: Some(close),
                    log: self.log.clone(),
                    reuse: Some((self.pool.clone(), target, addr, sender)),
                };
                Ok(Response::from_parts(parts, body.boxed()))
            }
            Err(e) => {
                let why = format!("upstream {} failed: {e}", target.host_port());
                close.status = Some(502);
                close.reason = Some(why.clone());
                close.bytes_up = Some(up);
                close.bytes_down = Some(0);
                close.duration_ms = Some(started.elapsed().as_millis() as u64);
                (self.log)(close);
                Ok(super::text(
                    hyper::StatusCode::BAD_GATEWAY,
                    format!("bottle egress: {why}\n"),
                ))
            }
        }
    }

    /// An idle upstream connection to this target at a checked address, else a new one.
    async fn upstream_for(
        &self,
        target: &Target,
        addrs: &[SocketAddr],
    ) -> Result<(SendRequest<Body>, SocketAddr, bool), Refusal> {
        if let Some((sender, addr)) = self.pool.take(target, addrs) {
            return Ok((sender, addr, true));
        }
        let (sender, addr) = self.connect_http(target, addrs).await?;
        Ok((sender, addr, false))
    }

    /// A new HTTP/1.1 connection to the first checked address that answers.
    async fn connect_http(
        &self,
        target: &Target,
        addrs: &[SocketAddr],
    ) -> Result<(SendRequest<Body>, SocketAddr), Refusal> {
        let (stream, addr) = self.dial(target, addrs).await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Refusal::bad_gateway(target, format!("HTTP handshake failed: {e}")))?;
        tokio::spawn(async move {
            // Its errors reach the request that was in flight; nothing more to say here.
            let _ = connection.await;
        });
        Ok((sender, addr))
    }
}

/// The path and query of an absolute-form URI, which is what an origin server expects.
fn origin_form(uri: &Uri) -> Uri {
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let pq = if pq.is_empty() { "/" } else { pq };
    Uri::from_str(pq).unwrap_or_else(|_| Uri::from_static("/"))
}

/// Removes the headers that describe one hop (RFC 9110 §7.6.1), including any that `Connection`
/// names, so the client's proxy credentials or upgrade wishes never reach the upstream.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    for name in named {
        headers.remove(name.as_str());
    }
    for name in [
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "upgrade",
    ] {
        headers.remove(name);
    }
}

/// A response body that writes the exchange's close line when it is done with (ended, failed,
/// or dropped because the client went away).
struct Logged {
    inner: Incoming,
    down: u64,
    up: u64,
    started: Instant,
    close: Option<super::Event>,
    log: EventLog,
    /// The upstream connection, back to the pool once the body has been read to its end.
    reuse: Option<(Arc<Pool>, Target, SocketAddr, SendRequest<Body>)>,
}

impl Logged {
    fn finish(&mut self, reason: Option<String>) {
        let reuse = self.reuse.take();
        if let (None, Some((pool, target, addr, sender))) = (&reason, reuse) {
            pool.put(target, addr, sender);
        }
        if let Some(mut close) = self.close.take() {
            close.reason = reason;
            close.bytes_up = Some(self.up);
            close.bytes_down = Some(self.down);
            close.duration_ms = Some(self.started.elapsed().as_millis() as u64);
            (self.log)(close);
        }
    }
}

impl HttpBody for Logged {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let poll = Pin::new(&mut self.inner).poll_frame(cx);
        match &poll {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.down += data.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.finish(None);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let why = format!("upstream response broke off: {e}");
                self.finish(Some(why));
            }
            Poll::Ready(None) => self.finish(None),
            Poll::Pending => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.finish(None);
        } else {
            self.finish(Some(
                "the client left before the end of the response".into(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_strip(headers: &[(&str, &str)], kept: &[&str]) {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                hyper::header::HeaderName::from_str(k).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        strip_hop_by_hop(&mut map);
        let mut got: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
        got.sort_unstable();
        assert_eq!(got, kept);
    }

    #[test]
    fn hop_by_hop_headers_stay_on_their_hop() {
        check_strip(
            &[
                ("host", "a"),
                ("connection", "close, x-secret"),
                ("x-secret", "1"),
                ("proxy-authorization", "Basic x"),
                ("accept", "*/*"),
            ],
            &["accept", "host"],
        );
    }
}
