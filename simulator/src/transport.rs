//! The simulator in-process, as an engine `Transport`.

use crate::{Handled, Sim};
use protopay_engine::wire::{Endpoint, Envelope};
use protopay_engine::{Transport, TransportError};

/// Calls go straight into the [`Sim`]; faults map to the transport errors a real network
/// would give (a 500 or a timeout after commit: maybe delivered; refused: not delivered).
#[derive(Debug, Clone)]
pub struct SimTransport(pub Sim);

#[async_trait::async_trait]
impl Transport for SimTransport {
    async fn call(&self, endpoint: Endpoint, request: &Envelope) -> Result<Vec<u8>, TransportError> {
        // Let other tasks run between sending and answering, as a network would.
        tokio::task::yield_now().await;
        if let Some(delay) = self.0.draw_late_arrival(endpoint.name()) {
            // The caller times out now; the request is still on its way and lands later.
            self.0.deliver_late(endpoint, request.to_json(), delay);
            return Err(TransportError::MaybeDelivered {
                reason: "timed out; the request may still arrive".into(),
            });
        }
        match self.0.handle(endpoint.name(), request.to_json().as_bytes()) {
            Handled::Reply(body) => Ok(body),
            Handled::ServerError => Err(TransportError::MaybeDelivered {
                reason: "HTTP 500".into(),
            }),
            Handled::TimeoutAfterCommit => Err(TransportError::MaybeDelivered {
                reason: "timed out".into(),
            }),
            Handled::ConnectionRefused => Err(TransportError::NotDelivered {
                reason: "connection refused".into(),
            }),
        }
    }
}
