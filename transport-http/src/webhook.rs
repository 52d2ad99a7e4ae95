//! Event delivery by push, for hosts that prefer webhooks to long-polling: every event is
//! POSTed to the host's URL as JSON (the `/v1` event shape), one at a time, in `seq` order,
//! signed with HMAC-SHA256 over the exact body, and retried with backoff until the host
//! answers 2xx — at least once, never out of order.
//!
//! Delivery state is the webhook's own consumer cursor in the store, advanced only after a
//! 2xx: it is apart from callback deduplication and from other consumers (a webhook that
//! is down never holds anything else back), and it survives restarts — what was not
//! acknowledged is sent again.

use crate::HttpError;
use crate::api::EventView;
use hmac::{Hmac, Mac};
use protopay_engine::{Engine, Event, Sensitive};
use sha2::Sha256;
use std::time::Duration;

/// The header carrying the body's signature: `sha256=` and 64 lowercase hex digits.
pub const SIGNATURE_HEADER: &str = "x-protopay-signature";

/// The header carrying the event's `seq`.
pub const SEQ_HEADER: &str = "x-protopay-seq";

/// Where and how to push events.
#[derive(Clone)]
pub struct Webhook {
    url: String,
    secret: Sensitive,
    consumer: String,
    first_retry: Duration,
    max_retry: Duration,
    client: reqwest::Client,
}

impl std::fmt::Debug for Webhook {
    /// The secret is never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// Push to `url` as consumer `consumer`, signing with `secret`. Retries start after one
    /// second and double up to a minute.
    pub fn new(url: &str, secret: Sensitive, consumer: &str) -> Result<Self, HttpError> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(HttpError::BaseUrl { url: url.to_owned() });
        }
        if secret.expose().chars().count() < crate::ApiAuth::MIN_TOKEN_CHARS {
            return Err(HttpError::WeakToken {
                scope: "webhook",
                min: crate::ApiAuth::MIN_TOKEN_CHARS,
            });
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .build()?;
        Ok(Webhook {
            url: url.to_owned(),
            secret,
            consumer: consumer.to_owned(),
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(60),
            client,
        })
    }

    /// Retry after `first`, doubling up to `max`.
    pub fn retry(mut self, first: Duration, max: Duration) -> Self {
        self.first_retry = first;
        self.max_retry = max.max(first);
        self
    }

    /// Deliver events until the engine shuts down (or the task is aborted: nothing is lost,
    /// what was not acknowledged goes again).
    pub async fn run(self, engine: Engine) {
        let mut feed = engine.subscribe(&self.consumer);
        loop {
            let events = match feed.next().await {
                Ok(events) => events,
                Err(protopay_engine::Error::Shutdown) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook: reading events failed; retrying");
                    tokio::time::sleep(self.first_retry).await;
                    feed = engine.subscribe(&self.consumer);
                    continue;
                }
            };
            for event in &events {
                self.deliver(event).await;
                if let Err(e) = feed.ack(event.seq).await {
                    // Not acknowledged: it goes again after a restart (at least once).
                    tracing::warn!(error = %e, seq = event.seq, "webhook: acknowledging failed");
                }
            }
        }
    }

    /// POST one event until the host answers 2xx.
    async fn deliver(&self, event: &Event) {
        let body = match serde_json::to_vec(&EventView::from(event)) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(error = %e, seq = event.seq, "webhook: event could not be encoded; skipped");
                return;
            }
        };
        let signature = sign(&self.secret, &body);
        let mut wait = self.first_retry;
        loop {
            let sent = self
                .client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, &signature)
                .header(SEQ_HEADER, event.seq)
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => tracing::warn!(status = %r.status(), seq = event.seq, "webhook refused the event; retrying"),
                Err(e) => tracing::warn!(error = %e, seq = event.seq, "webhook unreachable; retrying"),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(self.max_retry);
        }
    }
}

/// The signature of a webhook body: `sha256=` and the hex HMAC-SHA256 of `body` under
/// `secret`. A host computes the same and compares in constant time.
pub fn sign(secret: &Sensitive, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else {
        // HMAC takes keys of any length; this arm cannot be reached.
        return String::new();
    };
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}
