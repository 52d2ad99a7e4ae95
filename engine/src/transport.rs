//! The `Transport` trait: moves signed envelopes, knows nothing of states.

use crate::wire::{Endpoint, Envelope};

/// Why a call did not bring back a reply, and — what matters for money — whether it may
/// have reached the payment system.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The request surely did not reach the payment system (connection refused, DNS, TLS
    /// before sending). Safe to retry.
    #[error("not delivered: {reason}")]
    NotDelivered {
        /// What failed.
        reason: String,
    },
    /// The request may have reached the payment system and been acted on (timeout or reset
    /// after sending, a 5xx). Query before any retry.
    #[error("maybe delivered: {reason}")]
    MaybeDelivered {
        /// What failed.
        reason: String,
    },
}

impl TransportError {
    /// Whether the request may have been acted on.
    pub fn maybe_delivered(&self) -> bool {
        matches!(self, TransportError::MaybeDelivered { .. })
    }
}

/// Carries a signed request envelope to an endpoint and returns the reply envelope as it
/// came, undecoded and unverified: signing and verifying are the engine's, so every
/// transport shares them.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Send `request` to `endpoint`; return the reply body's bytes.
    async fn call(&self, endpoint: Endpoint, request: &Envelope) -> Result<Vec<u8>, TransportError>;
}
