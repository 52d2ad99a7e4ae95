//! Read models: what is stored, as stored.

use super::Engine;
use crate::domain::{Order, Protocol};
use crate::{Error, Result};

impl Engine {
    /// A protocol with its ledger.
    pub async fn protocol(&self, trans_no: &str) -> Result<Protocol> {
        self.storage()
            .protocol(trans_no)
            .await?
            .map(|p| p.value)
            .ok_or_else(|| Error::UnknownProtocol {
                trans_no: trans_no.to_owned(),
            })
    }

    /// An order.
    pub async fn order(&self, out_req_no: &str) -> Result<Order> {
        self.stored_order(out_req_no).await.map(|o| o.value)
    }

    /// Every order of a protocol.
    pub async fn orders_of(&self, trans_no: &str) -> Result<Vec<Order>> {
        Ok(self
            .storage()
            .orders_of(trans_no)
            .await?
            .into_iter()
            .map(|o| o.value)
            .collect())
    }
}
