//! The `Storage` trait: small and transactional, so that each backend is easy to get right.
//!
//! A backend stores protocols and orders with versions (optimistic concurrency), the
//! due-poll index, the event log with consumer cursors, and orphan callbacks. Everything the
//! engine changes goes through one atomic [`Storage::commit`] of a [`Batch`]: records, events
//! and schedule together, all or nothing, durable when it returns.
//!
//! Every backend runs the conformance suite (`storage::conformance`, feature `test-util`)
//! against itself.

mod announce;
#[cfg(any(test, feature = "test-util"))]
pub mod conformance;
mod error;
mod holds;
mod memory;
pub(crate) mod records;

pub use announce::{Announced, Announcements};
pub use error::StorageError;
pub use holds::Holds;
pub use memory::MemoryStorage;

use crate::domain::{Listing, Order, Protocol};
use crate::event::Event;
use crate::wire::CallbackKind;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What a store's calls return.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// A record with the version it was read at. Versions start at 1 and grow by one per write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The version.
    pub version: u64,
    /// The record.
    pub value: T,
}

/// A stored record's own key (`transNo`, `outReqNo`): what a store files it under, and what a
/// store checks on reading it back — a record under another record's key is damage, reported
/// as [`StorageError::Corrupt`], never used.
pub trait Keyed {
    /// The key.
    fn key(&self) -> &str;
}

impl Keyed for Protocol {
    fn key(&self) -> &str {
        &self.trans_no
    }
}

impl Keyed for Order {
    fn key(&self) -> &str {
        self.out_req_no()
    }
}

/// A write of one record, conditional on its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Put<T> {
    /// The version the writer read; `None` when the record must not exist yet.
    pub expected: Option<u64>,
    /// The new value.
    pub value: T,
}

/// A verified callback for an order this engine does not know, kept for a person to match.
/// Its `Debug` shows the size of `data`, never its text (it names payees and accounts).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orphan {
    /// Which callback.
    pub kind: CallbackKind,
    /// The `outReqNo` it named, if any.
    pub out_req_no: Option<String>,
    /// Its signature: the key that deduplicates retries of the same callback.
    pub sign: String,
    /// The verified `data` text (may hold personal data: never logged).
    pub data: String,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
}

impl std::fmt::Debug for Orphan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Orphan")
            .field("kind", &self.kind)
            .field("out_req_no", &self.out_req_no)
            .field("sign", &self.sign)
            .field("data", &format_args!("<{} bytes>", self.data.len()))
            .field("received_at", &self.received_at)
            .finish()
    }
}

/// The protocol a host's idempotency key opened: written once, in the commit that stores the
/// protocol, and never changed, so that a repeat with the same key answers the same protocol.
/// A commit that writes a key already written fails with [`StorageError::Conflict`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    /// The host's idempotency key.
    pub idempotency_key: String,
    /// The protocol it opened.
    pub trans_no: String,
}

/// The most exchanges a store keeps for one order: the first ones, which hold its sends and
/// what they were answered. An order polled for days asks the same question many times; its
/// history (the events) records every outcome whatever this bound drops.
pub const MAX_EXCHANGES_PER_ORDER: usize = 64;

/// What one exchange on the wire was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// A request protopay signed and sent (`prepay`, `outquery`, …).
    Request {
        /// The endpoint's name.
        endpoint: String,
    },
    /// The payment system's reply to the request before it.
    Reply {
        /// The endpoint's name.
        endpoint: String,
        /// Whether its signature verified (and its `appId` was ours).
        verified: bool,
    },
    /// The request before it got no reply: the reason, as the transport said it.
    NoReply {
        /// The endpoint's name.
        endpoint: String,
        /// Whether it may have been delivered all the same.
        maybe_delivered: bool,
        /// What happened, in the transport's words.
        reason: String,
    },
    /// A callback the payment system sent, verified.
    Callback {
        /// Which (`inbound-pay`, `inbound-arrival`, `outbound`).
        kind: CallbackKind,
    },
}

/// One message between protopay and the payment system about an order, as it was on the
/// wire: evidence for a dispute ("sent exactly once: here is each request and answer").
/// Written in the commit of the step it brought, or on its own where no step follows. Its
/// `Debug` shows the size of `body`, never its text (it names payees and accounts).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    /// The order.
    pub out_req_no: String,
    /// When it was sent or received (the engine's clock).
    pub at: DateTime<Utc>,
    /// What it was.
    pub message: Message,
    /// The body as on the wire (UTF-8; empty for `NoReply`). Personal data as the payment
    /// system's messages carry it, as the order's record does.
    pub body: String,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("out_req_no", &self.out_req_no)
            .field("at", &self.at)
            .field("message", &self.message)
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .finish()
    }
}

/// One atomic write.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Protocols to write (key: `transNo`).
    pub protocols: Vec<Put<Protocol>>,
    /// Orders to write (key: `outReqNo`).
    pub orders: Vec<Put<Order>>,
    /// Events to append; their `seq` is assigned by the backend, in this order.
    pub events: Vec<Event>,
    /// Poll schedule changes: `Some(t)` (re)schedules the order at `t`, `None` removes it.
    pub schedule: Vec<(String, Option<DateTime<Utc>>)>,
    /// Orphan callbacks to keep (a repeat of the same `sign` is kept once).
    pub orphans: Vec<Orphan>,
    /// Idempotency keys of opened protocols, each new (an existing one: `Conflict`).
    pub openings: Vec<Opening>,
    /// Exchanges to keep as evidence, each after its order's earlier ones; past
    /// [`MAX_EXCHANGES_PER_ORDER`] for its order, one is dropped (never a `Conflict`).
    pub exchanges: Vec<Exchange>,
}

impl Batch {
    /// Whether it writes nothing.
    pub fn is_empty(&self) -> bool {
        self.protocols.is_empty()
            && self.orders.is_empty()
            && self.events.is_empty()
            && self.schedule.is_empty()
            && self.orphans.is_empty()
            && self.openings.is_empty()
            && self.exchanges.is_empty()
    }
}

/// An entry of the due-poll index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Due {
    /// When the order is due.
    pub at: DateTime<Utc>,
    /// The order.
    pub out_req_no: String,
}

/// Which orders a list holds: all of them, one listing's, one protocol's, or both at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderQuery {
    /// Only orders in this listing.
    pub listing: Option<Listing>,
    /// Only this protocol's orders.
    pub trans_no: Option<String>,
}

/// How many records a backend reads per page where the engine wants a whole list.
const PAGE: usize = 512;

/// Durable, transactional storage for the engine.
#[async_trait::async_trait]
pub trait Storage: Send + Sync + 'static {
    /// A protocol by `transNo`.
    async fn protocol(&self, trans_no: &str) -> Result<Option<Versioned<Protocol>>>;

    /// An order by `outReqNo`.
    async fn order(&self, out_req_no: &str) -> Result<Option<Versioned<Order>>>;

    /// Every order of a protocol, in `outReqNo` order.
    async fn orders_of(&self, trans_no: &str) -> Result<Vec<Versioned<Order>>> {
        let query = OrderQuery {
            trans_no: Some(trans_no.to_owned()),
            ..OrderQuery::default()
        };
        let mut all: Vec<Versioned<Order>> = Vec::new();
        loop {
            let after = all.last().map(|o| o.value.out_req_no().to_owned());
            let page = self.orders(&query, after.as_deref(), PAGE).await?;
            let done = page.len() < PAGE;
            all.extend(page);
            if done {
                return Ok(all);
            }
        }
    }

    /// Up to `limit` protocols with `transNo` after `after`, in `transNo` order.
    async fn protocols(&self, after: Option<&str>, limit: usize) -> Result<Vec<Versioned<Protocol>>>;

    /// Up to `limit` orders matching `query` with `outReqNo` after `after`, in `outReqNo`
    /// order: a page of a list, read from an index (by listing, by protocol), never from a
    /// scan of all orders. With both a listing and a protocol, the protocol's index is read
    /// and filtered.
    async fn orders(&self, query: &OrderQuery, after: Option<&str>, limit: usize) -> Result<Vec<Versioned<Order>>>;

    /// How many orders each listing holds, one entry per listing of [`Listing::ALL`], in
    /// that order. Kept by every commit that moves an order between listings, in the same
    /// atomic write, so that reading them is a handful of small reads however many orders
    /// there are — never a count of an index (the metrics census reads them every 15 s).
    async fn listing_counts(&self) -> Result<Vec<(Listing, u64)>>;

    /// Every event about one order, in `seq` order: its history, from an index.
    async fn history(&self, out_req_no: &str) -> Result<Vec<Event>>;

    /// Up to `limit` audit records (events whose kind [`is_audit`](crate::event::EventKind::is_audit):
    /// what people did) with `seq` below `before` (all when `None`), newest first: a page of
    /// the audit trail, from an index kept by every commit, never a scan of the event log.
    async fn audit(&self, before: Option<u64>, limit: usize) -> Result<Vec<Event>>;

    /// The exchanges kept for an order, in the order they were written.
    async fn exchanges(&self, out_req_no: &str) -> Result<Vec<Exchange>>;

    /// When an order is next due to be polled, if it is scheduled.
    async fn due_at(&self, out_req_no: &str) -> Result<Option<DateTime<Utc>>>;

    /// Write a batch atomically. Fails with [`StorageError::Conflict`],
    /// writing nothing, when any record's version is not the expected one. Durable when it
    /// returns. Returns the `seq` of the last event appended (0, or any seq already written,
    /// when it appended none).
    async fn commit(&self, batch: Batch) -> Result<u64>;

    /// Up to `limit` orders due at or before `now`, earliest first — from an index, never a
    /// scan of all orders.
    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Due>>;

    /// Claim up to `limit` orders due at or before `now` for `owner` (one engine instance),
    /// earliest first, each for `claim`: until the claim ends or the order's schedule is
    /// rewritten by a commit, claims by other owners skip it; the owner's own claims return it
    /// again. This is how instances on one shared store split the due work; a dead instance's
    /// claims run out and others take its orders. Claims save duplicate *queries*; versions,
    /// not claims, are what make a duplicate *send* impossible.
    async fn claim_due(&self, owner: &str, now: DateTime<Utc>, limit: usize, claim: Duration) -> Result<Vec<Due>>;

    /// Take the named lease `name` for `owner` for `lease` — when it is free, has run out,
    /// or is already `owner`'s (then it is renewed) — and return its **fencing epoch** while
    /// `owner` holds it (`None` when another owner does). The epoch grows every time the
    /// lease passes to another owner and never goes back (releasing keeps it), so whatever
    /// the work sends can carry it: a receiver that has seen a higher epoch knows the sender
    /// was paused past its lease. For work that one instance at a time must do on a shared
    /// store, such as pushing a consumer's events in order. Like claims, on the store's
    /// clock where it has one.
    async fn hold_lease(&self, name: &str, owner: &str, lease: Duration) -> Result<Option<u64>>;

    /// End every claim and named lease `owner` holds, so that other owners may take that
    /// work at once: an instance that stops gracefully hands its work over instead of
    /// letting it wait out its claims and leases.
    async fn release_all(&self, owner: &str) -> Result<()>;

    /// The earliest scheduled poll that `owner` could claim (orders claimed by other owners
    /// are theirs until their leases run out), if any.
    async fn next_due(&self, owner: &str) -> Result<Option<DateTime<Utc>>>;

    /// Up to `limit` events with `seq > after`, in order. Never skips one: a store whose
    /// commits can become visible out of `seq` order (PostgreSQL) holds back the events after
    /// a commit still in flight until it has ended, so they may come later than `last_seq`
    /// says they exist.
    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>>;

    /// The `seq` of the last event (0 when none). Seqs grow with every commit and go one by
    /// one within a commit, but need not be consecutive between commits (PostgreSQL's are
    /// not): count events with [`count_after`](Self::count_after).
    async fn last_seq(&self) -> Result<u64>;

    /// How many events come after `after`, counting at most `cap` (an outbox's backlog).
    async fn count_after(&self, after: u64, cap: usize) -> Result<usize> {
        Ok(self.events_after(after, cap).await?.len())
    }

    /// Up to `limit` events with `seq` below `before`, newest first: the recent log.
    async fn events_before(&self, before: u64, limit: usize) -> Result<Vec<Event>>;

    /// A named consumer's cursor: the last `seq` it acknowledged (0 when none).
    async fn cursor(&self, consumer: &str) -> Result<u64>;

    /// Acknowledge events up to `seq` for a consumer. A cursor never moves back.
    async fn ack(&self, consumer: &str, seq: u64) -> Result<()>;

    /// The orphan callbacks kept.
    async fn orphans(&self) -> Result<Vec<Orphan>>;

    /// The `transNo` of the protocol a host's idempotency key opened, if any.
    async fn opening(&self, idempotency_key: &str) -> Result<Option<String>>;

    /// What commits made by other processes on a shared store announce, as they become known
    /// ([`Announcements`]): events appended, orders due sooner. `None` for a store that only
    /// this process writes. Only hints: the stored data is the truth, and a store that may
    /// have missed some announces [`Announced::EVERYTHING`].
    fn commits_elsewhere(&self) -> Option<std::sync::Arc<Announcements>> {
        None
    }

    /// Release what the store holds (files, locks, connections) once every commit has
    /// returned; later calls fail. [`Engine::shutdown`](crate::Engine::shutdown) calls it
    /// last, so that a new engine may open the same store as soon as it returns.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}
