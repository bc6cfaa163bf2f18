//! How a request is judged before anything is carried: its `Host`, the allowlist, what it
//! carries (the credential scan), one resolution and the check of every address; then the
//! connection to a checked address. A [`Refusal`] is the answer when any step says no.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::HOST;
use hyper::{Request, StatusCode};
use tokio::net::TcpStream;

use super::policy::Denial;
use super::target::{self, Target};
use super::{Proxy, Verdict};
use crate::leak::Finding;

/// How long connecting to an allowed upstream may take before the client gets a 502.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Pieces of a request up to this size are scanned together (see `Proxy::scan_carried`).
const SMALL_PIECE: usize = 16 * 1024;

/// A request the proxy answers itself with an error status, logged as a decision.
pub(super) struct Refusal {
    pub(super) status: StatusCode,
    pub(super) verdict: Verdict,
    pub(super) reason: String,
    /// The text the client sees.
    pub(super) body: String,
}

impl Refusal {
    pub(super) fn bad_request(why: String) -> Refusal {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            verdict: Verdict::Denied,
            body: format!("bottle egress: bad request: {why}\n"),
            reason: why,
        }
    }

    pub(super) fn forbidden(reason: String, body: String) -> Refusal {
        Refusal {
            status: StatusCode::FORBIDDEN,
            verdict: Verdict::Denied,
            reason,
            body,
        }
    }

    /// An allowed request that could not be carried out (the policy said yes).
    pub(super) fn bad_gateway(target: &Target, why: String) -> Refusal {
        Refusal {
            status: StatusCode::BAD_GATEWAY,
            verdict: Verdict::Allowed,
            body: format!(
                "bottle egress: {} is allowed but {why}\n",
                target.host_port()
            ),
            reason: why,
        }
    }
}

impl Proxy {
    /// The `Host` header must name the target (RFC 9112 §3.2 requires it in HTTP/1.1), or the
    /// request is a spoofing attempt: an upstream virtual-hosting on the allowed name would
    /// otherwise serve the agent a host the allowlist never named.
    pub(super) fn check_host_header(
        req: &Request<Incoming>,
        target: &Target,
        default_port: Option<u16>,
    ) -> Result<(), Refusal> {
        let mut values = req.headers().get_all(HOST).iter();
        let value = match (values.next(), values.next()) {
            (None, _) if req.version() >= hyper::Version::HTTP_11 => {
                return Err(Refusal::bad_request(
                    "HTTP/1.1 requests need a Host header".into(),
                ))
            }
            (None, _) => return Ok(()),
            (Some(_), Some(_)) => {
                return Err(Refusal::bad_request("more than one Host header".into()))
            }
            (Some(v), None) => v,
        };
        let shown = String::from_utf8_lossy(value.as_bytes()).into_owned();
        let text = value
            .to_str()
            .map_err(|_| Refusal::bad_request(format!("unreadable Host header {shown:?}")))?;
        if target::host_matches(text, target, default_port).map_err(Refusal::bad_request)? {
            return Ok(());
        }
        Err(Refusal::forbidden(
            format!("Host header {shown:?} does not match the target"),
            format!(
                "bottle egress: denied: the Host header {shown:?} does not match the request \
                 target {}; send the request to the host it names\n",
                target.host_port()
            ),
        ))
    }

    /// The allowlist, then what the request carries (before any lookup: a name is itself
    /// carried to the resolver), then one resolution and a check of every address: the
    /// addresses a connection may go to.
    pub(super) async fn decide(
        &self,
        method: &str,
        target: &Target,
        carried: &[(String, &[u8])],
    ) -> Result<Vec<SocketAddr>, Refusal> {
        if !self.policy.allows(target) {
            let hostport = target.host_port();
            return Err(Refusal::forbidden(
                Denial::NotAllowed.reason(),
                format!(
                    "bottle egress: {method} to {hostport} denied: it is not in this bottle's \
                     egress allowlist.\nTo allow it, add \"{hostport}\" to egress_allow of the \
                     bottle and restart it (a rule without a port allows 80 and 443 only).\n"
                ),
            ));
        }
        let name = target.host.to_string();
        let found = self
            .scanner
            .scan_name(name.as_bytes())
            .map(|f| (f, "target"));
        let found = found.or_else(|| self.scan_carried(carried));
        if let Some((found, place)) = found {
            let reason = format!("carries {found} in the {place}");
            return Err(Refusal::forbidden(
                reason.clone(),
                format!(
                    "bottle egress: {method} denied: the request {reason}; a bottle never sends \
                     its credentials out (the bundle adds them where they are due)\n"
                ),
            ));
        }
        self.policy.resolve(target).await.map_err(|d| match d {
            Denial::Unresolved(why) => Refusal::bad_gateway(target, why),
            denial => {
                let reason = denial.reason();
                Refusal::forbidden(
                    reason.clone(),
                    format!(
                        "bottle egress: {method} to {} denied: it {reason}, which a bottle may \
                         reach only when an allowlist rule names that address or its network\n",
                        target.host_port()
                    ),
                )
            }
        })
    }

    /// The first credential in what a request carries, and where: the small pieces (target,
    /// headers) in one pass over them all, the large ones (a body) each on its own.
    fn scan_carried<'p>(&self, carried: &'p [(String, &[u8])]) -> Option<(Finding, &'p str)> {
        let (small, large): (Vec<_>, Vec<_>) =
            carried.iter().partition(|(_, b)| b.len() <= SMALL_PIECE);
        let pieces: Vec<&[u8]> = small.iter().map(|(_, b)| *b).collect();
        let in_small = self
            .scanner
            .scan_pieces(&pieces)
            .map(|(found, i)| (found, small[i].0.as_str()));
        in_small.or_else(|| {
            large
                .iter()
                .find_map(|(place, bytes)| Some((self.scanner.scan(bytes)?, place.as_str())))
        })
    }

    /// Connects to the first checked address that answers.
    pub(super) async fn dial(
        &self,
        target: &Target,
        addrs: &[SocketAddr],
    ) -> Result<(TcpStream, SocketAddr), Refusal> {
        let attempt = async {
            let mut last = None;
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        return Ok((s, *addr));
                    }
                    Err(e) => last = Some(format!("cannot connect to {addr}: {e}")),
                }
            }
            Err(last.unwrap_or_else(|| "no address to connect to".into()))
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(why)) => Err(Refusal::bad_gateway(target, why)),
            Err(_) => Err(Refusal::bad_gateway(
                target,
                format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
            )),
        }
    }
}
