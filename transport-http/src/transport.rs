//! The engine's [`Transport`] over HTTP: reqwest with rustls, one reused client, timeouts,
//! a response size limit, and every failure classified as not delivered or maybe delivered.

use axum::http::header;
use protopay_engine::wire::{Endpoint, Envelope};
use protopay_engine::{Config, Transport, TransportError};
use std::time::Duration;

use crate::HttpError;

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
