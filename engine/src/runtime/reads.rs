//! Read models: what is stored, as stored — one record, or a list page by page from the
//! store's indexes.

use super::Engine;
use crate::domain::{Order, Protocol};
use crate::event::Event;
use crate::storage::OrderQuery;
use crate::{Error, Result};
use chrono::{DateTime, Utc};

/// The most records one page holds; a larger `limit` is cut to this.
pub const MAX_PAGE: usize = 500;

/// One page of a list, and the cursor of the next (`None` on the last page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The records, in key order.
    pub items: Vec<T>,
    /// Pass as `after` to read on.
    pub next: Option<String>,
}

impl<T> Page<T> {
    fn of(items: Vec<T>, limit: usize, key: impl Fn(&T) -> &str) -> Self {
        let next = (items.len() == limit)
            .then(|| items.last().map(|i| key(i).to_owned()))
            .flatten();
        Page { items, next }
    }
}

/// An order as an operator inspects it: the record, what happened to it, and when it will
/// be looked at next (its attempt counts are in [`Order::attempts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderDetails {
    /// The order.
    pub order: Order,
    /// The order's version as read: a person deciding on what they saw names it
    /// ([`Engine::resolve`]), and the decision is refused if the order has moved since.
    pub version: u64,
    /// Every event about it, in order.
    pub history: Vec<Event>,
    /// When the poller will next ask about it (`None` once nothing is left to learn).
    pub next_poll: Option<DateTime<Utc>>,
}

fn page_size(limit: usize) -> usize {
    limit.clamp(1, MAX_PAGE)
}

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

    /// An order with its history and next poll time.
    pub async fn order_details(&self, out_req_no: &str) -> Result<OrderDetails> {
        let stored = self.stored_order(out_req_no).await?;
        let store = self.storage();
        Ok(OrderDetails {
            history: store.history(out_req_no).await?,
            next_poll: store.due_at(out_req_no).await?,
            order: stored.value,
            version: stored.version,
        })
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

    /// A page of protocols in `transNo` order, after the cursor `after`; `limit` is cut to
    /// [`MAX_PAGE`].
    pub async fn protocols(&self, after: Option<&str>, limit: usize) -> Result<Page<Protocol>> {
        let limit = page_size(limit);
        let items = self.storage().protocols(after, limit).await?;
        let items = items.into_iter().map(|p| p.value).collect();
        Ok(Page::of(items, limit, |p: &Protocol| &p.trans_no))
    }

    /// A page of the orders `query` selects (by listing — a status, or `NeedsAttention` — and
    /// by protocol) in `outReqNo` order, after the cursor `after`; `limit` is cut to
    /// [`MAX_PAGE`].
    pub async fn orders(&self, query: &OrderQuery, after: Option<&str>, limit: usize) -> Result<Page<Order>> {
        let limit = page_size(limit);
        let items = self.storage().orders(query, after, limit).await?;
        let items = items.into_iter().map(|o| o.value).collect();
        Ok(Page::of(items, limit, Order::out_req_no))
    }

    /// What went over the wire about an order — each request protopay signed and sent, each
    /// reply and verified callback received, as they were (the first
    /// [`MAX_EXCHANGES_PER_ORDER`](crate::storage::MAX_EXCHANGES_PER_ORDER)) — for a dispute
    /// with the payment system.
    pub async fn exchanges(&self, out_req_no: &str) -> Result<Vec<crate::storage::Exchange>> {
        self.order(out_req_no).await?;
        Ok(self.storage().exchanges(out_req_no).await?)
    }

    /// A page of the audit trail — what people did (a decision, a reconciliation), newest
    /// first — with `seq` below `before` (from the newest when `None`); `limit` is cut to
    /// [`MAX_PAGE`]. The next page is the one before the last item's `seq`.
    pub async fn audit(&self, before: Option<u64>, limit: usize) -> Result<Vec<Event>> {
        Ok(self.storage().audit(before, page_size(limit)).await?)
    }

    /// Orphan callbacks kept for a person to match.
    pub async fn orphans(&self) -> Result<Vec<crate::storage::Orphan>> {
        Ok(self.storage().orphans().await?)
    }
}
