//! Raw libpod requests through podman-api's own HTTP layer (`containers-api`), for the requests
//! podman-api 0.11 cannot express.
//!
//! `podman_api::Podman` keeps its HTTP client private, so this module builds the same client
//! (same transport, same API version prefix, same error type) for the same engine endpoint.
//! Today it sends one request: the container create body with `no_new_privileges` (podman-api's
//! builder only has the misspelt `no_new_privilages`, which Podman ignores).

use std::future::Future;
use std::pin::Pin;

use containers_api::conn::hyper::{self, Body, Client, Response, StatusCode};
use containers_api::conn::{Headers, Payload, RequestClient, Transport};
use podman_api::ApiVersion;

use crate::connect::Endpoint;

/// An HTTP client for one libpod endpoint, with podman-api's error type.
#[derive(Debug, Clone)]
pub(crate) struct RawClient {
    client: RequestClient<podman_api::Error>,
    version: ApiVersion,
}

impl RawClient {
    pub(crate) fn new(endpoint: &Endpoint, version: ApiVersion) -> Result<Self, podman_api::Error> {
        let transport = match endpoint {
            Endpoint::Unix(path) => Transport::Unix {
                // As podman-api does: no idle connections kept, so a restarted service is
                // reached without stale-connection errors.
                client: Client::builder()
                    .pool_max_idle_per_host(0)
                    .build(containers_api::conn::get_unix_connector()),
                path: path.clone(),
            },
            Endpoint::Tcp(host) => Transport::Tcp {
                client: Client::builder().build(containers_api::conn::get_http_connector()),
                host: containers_api::url::url::Url::parse(&format!("tcp://{host}"))
                    .map_err(podman_api::Error::InvalidUrl)?,
            },
        };
        Ok(RawClient {
            client: RequestClient::new(transport, Box::new(validate_response)),
            version,
        })
    }

    /// POSTs a JSON body to a libpod path (`/libpod/...`, without the version prefix) and
    /// parses the JSON answer.
    ///
    /// The body may hold secrets (container environment): it is never logged here, and
    /// `containers-api` logs only the method and URI of a request.
    pub(crate) async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, podman_api::Error> {
        let bytes = serde_json::to_vec(body)?;
        self.client
            .post_json(
                self.version.make_endpoint(path),
                Payload::Json(bytes),
                Headers::none(),
            )
            .await
    }
}

type Validated =
    Pin<Box<dyn Future<Output = Result<Response<Body>, podman_api::Error>> + Send + Sync>>;

/// Passes successful responses on and turns the others into `podman_api::Error::Fault` with the
/// engine's message, exactly as podman-api's own (private) validation does, so errors from raw
/// requests are mapped by the same code as every other.
fn validate_response(response: Response<Body>) -> Validated {
    Box::pin(async move {
        let status = response.status();
        if matches!(
            status,
            StatusCode::OK | StatusCode::CREATED | StatusCode::NO_CONTENT
        ) {
            return Ok(response);
        }
        let bytes = hyper::body::to_bytes(response.into_body())
            .await
            .map_err(containers_api::conn::Error::from)?;
        let text = String::from_utf8_lossy(&bytes);
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| {
                let message = v.get("message")?.as_str()?.to_string();
                let cause = v.get("cause").and_then(|c| c.as_str()).unwrap_or_default();
                Some(format!("{message}: {cause}"))
            })
            .unwrap_or_else(|| text.trim().to_string());
        Err(podman_api::Error::Fault {
            code: status,
            message,
        })
    })
}
