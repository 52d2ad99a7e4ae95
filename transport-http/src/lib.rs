//! # protopay-transport-http
//!
//! HTTP both ways for protopay:
//! - [`HttpTransport`]: the engine's [`Transport`] over reqwest with rustls (no OpenSSL),
//!   with connect and request timeouts, a response size limit, one reused client, and every
//!   failure classified as **not delivered** (safe to retry) or **maybe delivered** (query
//!   first) — when in doubt, maybe: that is the side on which money is safe.
//! - [`callback_router`]: the callback receiver as an axum `Router` (three routes under the
//!   path of `callback_base_url`, a body limit, answering exactly what [`Engine::handle_callback`] decides), and
//!   [`handle_callback_path`], the same as a plain function for other web frameworks.
//!
//! ```no_run
//! # async fn run(engine: protopay_engine::Engine) -> std::io::Result<()> {
//! // Routes under the path of the engine's `callback_base_url`, e.g. `/protopay/notify/outbound`.
//! let app = protopay_transport_http::callback_router(engine);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).with_graceful_shutdown(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
#![deny(missing_docs)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use protopay_engine::wire::{CallbackKind, Endpoint, Envelope};
use protopay_engine::{CallbackReply, Config, Engine, Transport, TransportError};
use std::time::Duration;

/// Why the transport could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The base URL is not an absolute http(s) URL.
    #[error("base URL {url:?} must start with http:// or https://")]
    BaseUrl {
        /// What was given.
        url: String,
    },
    /// The HTTP client could not be built (TLS setup).
    #[error("building the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Replies larger than this are refused (the largest real reply is a few KiB).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The engine's transport over HTTP.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    base: String,
    max_response_bytes: usize,
}

impl HttpTransport {
    /// A transport to `base_url` with the engine config's timeouts.
    pub fn from_config(config: &Config) -> Result<Self, HttpError> {
        Self::new(
            &config.base_url,
            config.timeouts.connect(),
            config.timeouts.request(),
            DEFAULT_MAX_RESPONSE_BYTES,
        )
    }

    /// A transport with explicit settings.
    pub fn new(
        base_url: &str,
        connect: Duration,
        request: Duration,
        max_response_bytes: usize,
    ) -> Result<Self, HttpError> {
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(HttpError::BaseUrl {
                url: base_url.to_owned(),
            });
        }
        let client = reqwest::Client::builder()
            .connect_timeout(connect)
            .timeout(request)
            .build()?;
        Ok(HttpTransport {
            client,
            base: base_url.trim_end_matches('/').to_owned(),
            max_response_bytes,
        })
    }
}

/// Classify a reqwest error by whether the request may have reached the server.
fn classify(e: &reqwest::Error) -> TransportError {
    let reason = e.to_string();
    if e.is_connect() || e.is_builder() {
        // Failed while connecting (refused, DNS, TLS handshake, connect timeout): nothing sent.
        TransportError::NotDelivered { reason }
    } else {
        TransportError::MaybeDelivered { reason }
    }
}

#[async_trait::async_trait]
impl Transport for HttpTransport {
    async fn call(&self, endpoint: Endpoint, request: &Envelope) -> Result<Vec<u8>, TransportError> {
        let url = format!("{}{}", self.base, endpoint.path());
        let response = self
            .client
            .post(&url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(request.to_json())
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let status = response.status();
        if !status.is_success() {
            // The server answered but not with a reply: it may have acted (5xx, proxies' 4xx).
            return Err(TransportError::MaybeDelivered {
                reason: format!("HTTP {status} from {}", endpoint.name()),
            });
        }
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e))? {
            if body.len() + chunk.len() > self.max_response_bytes {
                return Err(TransportError::MaybeDelivered {
                    reason: "reply larger than the limit".into(),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The callback receiver: `POST {path}/inbound-pay`, `{path}/inbound-arrival` and
/// `{path}/outbound`, where `path` is that of the engine's `callback_base_url` (the URLs it
/// sends as notify URLs), answering what the engine decides. Bodies over the engine's
/// `callback_body_limit` are refused before they are read in full.
pub fn callback_router(engine: Engine) -> Router {
    let limit = engine.config().callback_body_limit;
    let route = format!("{}/{{kind}}", engine.config().callback_path());
    Router::new()
        .route(&route, post(receive))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(engine)
}

async fn receive(State(engine): State<Engine>, Path(kind): Path<String>, body: Bytes) -> Response {
    match CallbackKind::from_slug(&kind) {
        Some(kind) => into_response(engine.handle_callback(kind, &body).await),
        None => (StatusCode::NOT_FOUND, "unknown callback kind").into_response(),
    }
}

fn into_response(reply: CallbackReply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, reply.content_type)], reply.body).into_response()
}

/// The receiver as a plain function, for hosts on other web frameworks: the request path
/// (its last segment names the callback kind) and the raw body in, the answer out.
pub async fn handle_callback_path(engine: &Engine, path: &str, body: &[u8]) -> Option<CallbackReply> {
    let kind = CallbackKind::from_slug(path.trim_end_matches('/').rsplit('/').next()?)?;
    Some(engine.handle_callback(kind, body).await)
}
