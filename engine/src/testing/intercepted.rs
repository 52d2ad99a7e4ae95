//! The one fault-injecting store: any [`Storage`] with a test's [`Hooks`] around its calls.
//! Every test that fails commits, stages a race before a read, changes what a commit writes
//! or watches what it wrote does so by implementing the hook it needs — instead of a store
//! wrapper of its own that re-delegates every method.

use crate::domain::{Listing, Order, Protocol};
use crate::event::Event;
use crate::storage::{Batch, Due, OrderQuery, Orphan, Result, Storage, StorageError, Versioned};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// What a test does around a store's calls. Every hook does nothing by default.
#[async_trait::async_trait]
pub trait Hooks: Send + Sync + 'static {
    /// Before a commit reaches the store: refuse it (nothing is written), or change what it
    /// writes (a round trip through a codec).
    async fn before_commit(&self, _batch: &mut Batch) -> Result<()> {
        Ok(())
    }

    /// After a commit landed, with what it wrote and the last `seq` it answered.
    async fn after_commit(&self, _batch: &Batch, _last_seq: u64) {}

    /// Before a protocol is read (to stage a twin's commit there).
    async fn before_protocol_read(&self, _trans_no: &str) {}

    /// Before a poller claims due orders: every pass claims once, so this counts passes.
    /// An error stops the pass.
    async fn before_claim(&self) -> Result<()> {
        Ok(())
    }
}

/// `inner`, with `hooks` run around its calls.
#[derive(Debug, Clone, Default)]
pub struct Intercepted<S, H> {
    /// The store every call reaches.
    pub inner: S,
    /// What the test does around those calls.
    pub hooks: H,
}

/// The failure a hook injects: a store that is down, a full disk.
#[derive(Debug, thiserror::Error)]
#[error("injected storage failure: {0}")]
pub struct Injected(pub &'static str);

impl From<Injected> for StorageError {
    fn from(e: Injected) -> Self {
        StorageError::failed(e)
    }
}

#[async_trait::async_trait]
impl<S: Storage, H: Hooks> Storage for Intercepted<S, H> {
    async fn protocol(&self, trans_no: &str) -> Result<Option<Versioned<Protocol>>> {
        self.hooks.before_protocol_read(trans_no).await;
        self.inner.protocol(trans_no).await
    }
    async fn order(&self, out_req_no: &str) -> Result<Option<Versioned<Order>>> {
        self.inner.order(out_req_no).await
    }
    async fn protocols(&self, after: Option<&str>, limit: usize) -> Result<Vec<Versioned<Protocol>>> {
        self.inner.protocols(after, limit).await
    }
    async fn orders(&self, query: &OrderQuery, after: Option<&str>, limit: usize) -> Result<Vec<Versioned<Order>>> {
        self.inner.orders(query, after, limit).await
    }
    async fn listing_counts(&self) -> Result<Vec<(Listing, u64)>> {
        self.inner.listing_counts().await
    }
    async fn history(&self, out_req_no: &str) -> Result<Vec<Event>> {
        self.inner.history(out_req_no).await
    }
    async fn audit(&self, before: Option<u64>, limit: usize) -> Result<Vec<Event>> {
        self.inner.audit(before, limit).await
    }
    async fn exchanges(&self, out_req_no: &str) -> Result<Vec<crate::storage::Exchange>> {
        self.inner.exchanges(out_req_no).await
    }
    async fn due_at(&self, out_req_no: &str) -> Result<Option<DateTime<Utc>>> {
        self.inner.due_at(out_req_no).await
    }
    async fn commit(&self, mut batch: Batch) -> Result<u64> {
        self.hooks.before_commit(&mut batch).await?;
        let written = batch.clone();
        let last_seq = self.inner.commit(batch).await?;
        self.hooks.after_commit(&written, last_seq).await;
        Ok(last_seq)
    }
    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Due>> {
        self.inner.due(now, limit).await
    }
    async fn claim_due(&self, owner: &str, now: DateTime<Utc>, limit: usize, claim: Duration) -> Result<Vec<Due>> {
        self.hooks.before_claim().await?;
        self.inner.claim_due(owner, now, limit, claim).await
    }
    async fn hold_lease(&self, name: &str, owner: &str, lease: Duration) -> Result<Option<u64>> {
        self.inner.hold_lease(name, owner, lease).await
    }
    async fn release_all(&self, owner: &str) -> Result<()> {
        self.inner.release_all(owner).await
    }
    async fn next_due(&self, owner: &str) -> Result<Option<DateTime<Utc>>> {
        self.inner.next_due(owner).await
    }
    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>> {
        self.inner.events_after(after, limit).await
    }
    async fn last_seq(&self) -> Result<u64> {
        self.inner.last_seq().await
    }
    async fn count_after(&self, after: u64, cap: usize) -> Result<usize> {
        self.inner.count_after(after, cap).await
    }
    async fn events_before(&self, before: u64, limit: usize) -> Result<Vec<Event>> {
        self.inner.events_before(before, limit).await
    }
    async fn cursor(&self, consumer: &str) -> Result<u64> {
        self.inner.cursor(consumer).await
    }
    async fn ack(&self, consumer: &str, seq: u64) -> Result<()> {
        self.inner.ack(consumer, seq).await
    }
    async fn orphans(&self) -> Result<Vec<Orphan>> {
        self.inner.orphans().await
    }
    async fn opening(&self, idempotency_key: &str) -> Result<Option<String>> {
        self.inner.opening(idempotency_key).await
    }
    fn commits_elsewhere(&self) -> Option<std::sync::Arc<crate::storage::Announcements>> {
        self.inner.commits_elsewhere()
    }
    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}
