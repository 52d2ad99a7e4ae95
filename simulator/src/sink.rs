//! Where callbacks go: an engine in the same process, or a URL over HTTP.

use protopay_engine::Engine;
use protopay_engine::wire::{CODE_OK, CallbackKind, Envelope, MSG_OK};
use std::time::Duration;

/// Receives a callback POST; returns the HTTP status and body, or `None` if it could not be
/// delivered at all.
#[async_trait::async_trait]
pub trait CallbackSink: Send + Sync + 'static {
    /// POST `body` to `url`.
    async fn deliver(&self, url: &str, body: Vec<u8>) -> Option<(u16, String)>;
}

/// Whether a callback answer means success: HTTP 200 with a bare `SUCCESS`, or with an
/// envelope whose code is `0000` (both answer styles of `docs/protocol.md` are accepted).
pub fn is_ack(status: u16, body: &str) -> bool {
    if status != 200 {
        return false;
    }
    if body.trim() == MSG_OK {
        return true;
    }
    Envelope::decode(body.as_bytes()).is_ok_and(|e| e.code.as_deref() == Some(CODE_OK))
}

/// Delivers to an engine in the same process, choosing the callback kind from the URL's
/// last path segment (`inbound-pay`, `inbound-arrival`, `outbound`).
#[derive(Debug, Clone)]
pub struct EngineSink(pub Engine);

#[async_trait::async_trait]
impl CallbackSink for EngineSink {
    async fn deliver(&self, url: &str, body: Vec<u8>) -> Option<(u16, String)> {
        let kind = url.rsplit('/').next().and_then(CallbackKind::from_slug)?;
        let reply = self.0.handle_callback(kind, &body).await;
        Some((reply.status, reply.body))
    }
}

/// Delivers over HTTP.
#[derive(Debug, Clone)]
pub struct HttpSink {
    client: reqwest::Client,
}

impl HttpSink {
    /// A sink with a per-callback timeout.
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        Ok(HttpSink {
            client: reqwest::Client::builder().timeout(timeout).build()?,
        })
    }
}

#[async_trait::async_trait]
impl CallbackSink for HttpSink {
    async fn deliver(&self, url: &str, body: Vec<u8>) -> Option<(u16, String)> {
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        match response {
            Ok(r) => {
                let status = r.status().as_u16();
                Some((status, r.text().await.unwrap_or_default()))
            }
            Err(e) => {
                tracing::debug!(%url, error = %e, "callback not delivered");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_answer_styles_are_success() {
        assert!(is_ack(200, "SUCCESS"));
        assert!(is_ack(200, "SUCCESS\n"));
        let env = Envelope::reply(
            "A",
            "0000",
            "SUCCESS",
            "{}".into(),
            "1".into(),
            &protopay_engine::Md5Key::new("k"),
        );
        assert!(is_ack(200, &env.to_json()));
        let fail = Envelope::reply(
            "A",
            "FAIL",
            "no",
            "{}".into(),
            "1".into(),
            &protopay_engine::Md5Key::new("k"),
        );
        assert!(!is_ack(200, &fail.to_json()));
        assert!(!is_ack(500, "SUCCESS"));
        assert!(!is_ack(200, "OK"));
    }
}
