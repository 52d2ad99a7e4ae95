//! # protopay-storage-sled
//!
//! A durable [`Storage`] for protopay on [sled](https://docs.rs/sled/0.34.7): all records live
//! in one tree, keyed by kind. Commits (and cursor acknowledgements) go through a group
//! committer (`group.rs`): concurrent commits are checked one by one, written together to
//! protopay's write-ahead log and made durable by one `fdatasync` ([`wal`]); none returns
//! before that sync has. A group is readable from then on through the overlay of groups not
//! yet in sled (`unapplied.rs`), and reaches sled afterwards, off the commit path. sled's own
//! flush is not relied on for durability (it uses `sync_file_range`, which leaves the disk's
//! write cache unflushed); its files are `fsync`ed at checkpoints, after which the log starts
//! empty.
//!
//! The due-poll index and the event log are key ranges of their own, so that "what is due"
//! and "events after N" are range reads, never scans of all orders. The on-disk format is
//! versioned and documented in [`codec`].
//!
//! **Blocking calls in `async fn`s, and why that is acceptable here.** Reads (`protocol`,
//! `order`, the range reads) call sled directly on the async worker: sled serves them from its
//! in-memory page cache in microseconds, with no I/O in the common case, and moving each to a
//! blocking thread would cost more than it saves. A commit that finds no leader (on a
//! multi-thread runtime) leads its own group on its worker: the group's checks and one
//! `fdatasync` block it, about 0.1 ms here — what a durable commit costs its caller anyway,
//! without a hand-off to another thread and back. Whatever could block for longer — a
//! checkpoint's `fsync`s, waiting for sled to catch up, a backup holding the log, every
//! later group while commits keep coming — runs on a `spawn_blocking` leader or applier, and
//! a commit awaits it without holding the worker. A read that misses the cache waits on one
//! page read, the same as any file read in an async program.
//!
//! ```
//! use protopay_engine::storage::Storage;
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let storage = protopay_storage_sled::SledStorage::open(dir.path()).unwrap();
//! assert_eq!(storage.last_seq().await.unwrap(), 0);
//! // A second handle on the same directory is refused, with the path in the error.
//! let again = protopay_storage_sled::SledStorage::open(dir.path()).unwrap_err();
//! assert!(again.to_string().contains("in use"));
//! # });
//! ```
#![deny(missing_docs)]
// Outside data never meets an `unwrap` here; tests may use it freely.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod backup;
pub mod codec;
pub mod disk;
mod error;
mod group;
mod lock;
mod open;
#[cfg(test)]
mod power_cuts;
mod reads;
#[cfg(test)]
mod sim_disk;
mod stage;
mod unapplied;
mod upgrade;
pub mod wal;

pub use backup::BackupReport;
pub use error::SledError;
use lock::lock_released;
use stage::Errors;

use chrono::{DateTime, Utc};
use codec::DecodeError;
use protopay_engine::domain::{Listing, Order, Protocol};
use protopay_engine::event::Event;
use protopay_engine::storage::{Batch, Due, Exchange, Holds, Keyed, OrderQuery, Orphan, Storage, Versioned};
use protopay_engine::storage::{Result, StorageError};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The durable store.
#[derive(Clone)]
pub struct SledStorage {
    path: PathBuf,
    /// `None` once closed: [`Storage::close`] takes the handles out, so that sled's files and
    /// lock are released even while clones of this store live on.
    open: Arc<std::sync::RwLock<Option<Handles>>>,
    /// Claims on due orders: in memory, since only this process opens the store.
    claims: Arc<Holds>,
    /// Named leases (`Storage::hold_lease`), apart from the orders' so names never collide.
    leases: Arc<Holds>,
}

/// What an open store holds.
#[derive(Clone)]
struct Handles {
    tree: sled::Tree,
    /// Checks, applies and flushes concurrent commits as groups; one leader at a time makes
    /// commits serialisable within this process, and sled's file lock keeps others out.
    group: group::GroupCommit,
}

impl std::fmt::Debug for SledStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStorage")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

const FORMAT_KEY: &[u8] = b"format";

impl SledStorage {
    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes (durable syncs) since the store was opened; commits / flushes is how many
    /// commits shared each sync. 0 once closed.
    pub fn flushes(&self) -> u64 {
        self.handles().map_or(0, |h| h.group.flushes())
    }

    /// Copy the store, while it takes commits, into the new directory `to`: a consistent,
    /// durable store as of the moment the copy ends, which [`SledStorage::open`] opens like any
    /// other. Commits wait only for two brief moments (see the `backup` module). `to` must
    /// not exist or be empty.
    pub async fn backup(&self, to: impl AsRef<Path>) -> std::result::Result<BackupReport, SledError> {
        let handles = self.handles().map_err(|_| SledError::Closed {
            path: self.path.clone(),
        })?;
        backup::backup(self, handles.group, handles.tree, to.as_ref()).await
    }

    /// Bytes on disk.
    pub fn size_on_disk(&self) -> std::result::Result<u64, SledError> {
        let group = self.handles().map(|h| h.group).map_err(|_| SledError::Closed {
            path: self.path.clone(),
        })?;
        group.db().size_on_disk().map_err(|source| SledError::Sled {
            path: self.path.clone(),
            source,
        })
    }

    fn handles(&self) -> Result<Handles> {
        self.open
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(StorageError::Closed)
    }

    fn tree(&self) -> Result<sled::Tree> {
        self.handles().map(|h| h.tree)
    }

    fn errors(&self) -> Errors {
        Errors(self.path.clone())
    }

    fn fail(&self, source: sled::Error) -> StorageError {
        self.errors().fail(source)
    }

    fn corrupt(&self, tree: &str, key: &[u8], e: DecodeError) -> StorageError {
        StorageError::Corrupt {
            key: format!("{tree}/{}", String::from_utf8_lossy(key)),
            reason: e.to_string(),
        }
    }

    /// The event an index entry names: the entry's key ends with the event's `seq`, after
    /// `prefix_len` bytes of the index's own. An entry naming no stored event is damage.
    fn indexed_event(
        &self,
        index: &str,
        prefix_len: usize,
        entry: sled::Result<(sled::IVec, sled::IVec)>,
    ) -> Result<Event> {
        let (key, _) = entry.map_err(|e| self.fail(e))?;
        let seq =
            codec::u64_from(key.get(prefix_len..).unwrap_or_default()).map_err(|e| self.corrupt(index, &key, e))?;
        let event_key = codec::key(codec::prefix::EVENT, &codec::u64_key(seq));
        let bytes = self.get(&event_key)?;
        let bytes = bytes.ok_or_else(|| StorageError::Corrupt {
            key: String::from_utf8_lossy(&key).into_owned(),
            reason: "names an event that is not stored".into(),
        })?;
        let mut event: Event = codec::from_value(&bytes).map_err(|e| self.corrupt("events", &event_key, e))?;
        event.seq = seq;
        Ok(event)
    }

    /// An event from its entry in the log (`e/` + seq).
    fn logged_event(&self, entry: sled::Result<(sled::IVec, sled::IVec)>) -> Result<Event> {
        let (key, bytes) = entry.map_err(|e| self.fail(e))?;
        let mut event: Event = codec::from_value(&bytes).map_err(|e| self.corrupt("events", &key, e))?;
        let seq = key.get(codec::prefix::EVENT.len()..).unwrap_or_default();
        event.seq = codec::u64_from(seq).map_err(|e| self.corrupt("events", &key, e))?;
        Ok(event)
    }

    fn read_record<T: DeserializeOwned + Keyed>(&self, prefix: &[u8], key: &[u8]) -> Result<Option<Versioned<T>>> {
        let name = String::from_utf8_lossy(prefix).into_owned();
        match self.get(&codec::key(prefix, key))? {
            None => Ok(None),
            Some(bytes) => {
                let (version, value): (u64, T) = codec::from_record(&bytes).map_err(|e| self.corrupt(&name, key, e))?;
                if value.key().as_bytes() != key {
                    return Err(StorageError::Corrupt {
                        key: format!("{name}{}", String::from_utf8_lossy(key)),
                        reason: format!("holds the record of {}", value.key()),
                    });
                }
                Ok(Some(Versioned { version, value }))
            }
        }
    }
}

#[async_trait::async_trait]
impl Storage for SledStorage {
    async fn protocol(&self, trans_no: &str) -> Result<Option<Versioned<Protocol>>> {
        self.read_record(codec::prefix::PROTOCOL, trans_no.as_bytes())
    }

    async fn order(&self, out_req_no: &str) -> Result<Option<Versioned<Order>>> {
        self.read_record(codec::prefix::ORDER, out_req_no.as_bytes())
    }

    async fn protocols(&self, after: Option<&str>, limit: usize) -> Result<Vec<Versioned<Protocol>>> {
        self.page(
            codec::prefix::PROTOCOL.to_vec(),
            after,
            codec::prefix::PROTOCOL,
            |_| true,
            limit,
        )
    }

    async fn orders(&self, query: &OrderQuery, after: Option<&str>, limit: usize) -> Result<Vec<Versioned<Order>>> {
        let index = match (&query.trans_no, query.listing) {
            (Some(t), _) => codec::protocol_prefix(t),
            (None, Some(l)) => codec::listing_prefix(l.name()),
            (None, None) => codec::prefix::ORDER.to_vec(),
        };
        let listed = |o: &Order| query.listing.is_none_or(|l| o.listings().any(|x| x == l));
        self.page(index, after, codec::prefix::ORDER, listed, limit)
    }

    async fn listing_counts(&self) -> Result<Vec<(Listing, u64)>> {
        let mut out = Vec::with_capacity(Listing::ALL.len());
        for listing in Listing::ALL {
            let n = self.u64_at(&codec::count_key(listing.name()))?;
            out.push((listing, n.unwrap_or(0)));
        }
        Ok(out)
    }

    async fn history(&self, out_req_no: &str) -> Result<Vec<Event>> {
        let prefix = codec::history_prefix(out_req_no);
        let entries = self.scan_prefix(prefix.clone())?;
        entries
            .map(|entry| self.indexed_event("history", prefix.len(), entry))
            .collect()
    }

    async fn audit(&self, before: Option<u64>, limit: usize) -> Result<Vec<Event>> {
        let prefix = codec::prefix::AUDIT;
        // Seqs are at most i64::MAX (PostgreSQL's bound too): u64::MAX is past them all.
        let end = codec::audit_key(before.unwrap_or(u64::MAX));
        let entries = self.scan(prefix.to_vec(), Some(end), true)?.take(limit);
        entries
            .map(|entry| self.indexed_event("audit", prefix.len(), entry))
            .collect()
    }

    async fn exchanges(&self, out_req_no: &str) -> Result<Vec<Exchange>> {
        let mut out = Vec::new();
        for entry in self.scan_prefix(codec::exchange_prefix(out_req_no))? {
            let (key, bytes) = entry.map_err(|e| self.fail(e))?;
            let exchange: Exchange = codec::from_value(&bytes).map_err(|e| self.corrupt("exchanges", &key, e))?;
            if exchange.out_req_no != out_req_no {
                return Err(StorageError::Corrupt {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    reason: "an exchange of another order".into(),
                });
            }
            out.push(exchange);
        }
        Ok(out)
    }

    async fn due_at(&self, out_req_no: &str) -> Result<Option<DateTime<Utc>>> {
        let key = codec::key(codec::prefix::PLACES, out_req_no.as_bytes());
        let Some(bytes) = self.get(&key)? else {
            return Ok(None);
        };
        codec::Places::from_bytes(&bytes)
            .and_then(|places| places.due.map(|due| codec::time_from(&due)).transpose())
            .map_err(|e| self.corrupt("due_at", &key, e))
    }

    async fn commit(&self, batch: Batch) -> Result<u64> {
        // Durable before it returns: concurrent commits share one log record and one sync.
        let group = self.handles()?.group;
        let rescheduled: Vec<String> = batch.schedule.iter().map(|(key, _)| key.clone()).collect();
        let last = group.commit(self.stage(batch)?).await?;
        for key in &rescheduled {
            self.claims.release(key);
        }
        Ok(last)
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Due>> {
        self.due_until(now)?.take(limit).collect()
    }

    async fn claim_due(&self, owner: &str, now: DateTime<Utc>, limit: usize, claim: Duration) -> Result<Vec<Due>> {
        self.claims.claim(owner, claim, limit, self.due_until(now)?)
    }

    async fn hold_lease(&self, name: &str, owner: &str, lease: Duration) -> Result<Option<u64>> {
        Ok(self.leases.hold(name, owner, lease))
    }

    async fn release_all(&self, owner: &str) -> Result<()> {
        self.claims.release_owner(owner);
        self.leases.release_owner(owner);
        Ok(())
    }

    async fn next_due(&self, owner: &str) -> Result<Option<DateTime<Utc>>> {
        self.claims.first_free(owner, self.due_until(DateTime::<Utc>::MAX_UTC)?)
    }

    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>> {
        let start = codec::key(codec::prefix::EVENT, &codec::u64_key(after.saturating_add(1)));
        let end = codec::key(codec::prefix::EVENT, &codec::u64_key(u64::MAX));
        let mut events = Vec::with_capacity(limit.min(1024));
        for entry in self.scan(start, Some(end), false)?.take(limit) {
            let event = self.logged_event(entry)?;
            // Seqs here are consecutive. A gap is a group sled applied while this walk passed
            // its place (sled's walks are not snapshots): stop before it, so that no reader
            // ever skips an event; the next read finds it.
            if event.seq != after + 1 + events.len() as u64 {
                break;
            }
            events.push(event);
        }
        Ok(events)
    }

    async fn events_before(&self, before: u64, limit: usize) -> Result<Vec<Event>> {
        let start = codec::prefix::EVENT.to_vec();
        let end = codec::key(codec::prefix::EVENT, &codec::u64_key(before));
        let entries = self.scan(start, Some(end), true)?.take(limit);
        entries.map(|entry| self.logged_event(entry)).collect()
    }

    async fn last_seq(&self) -> Result<u64> {
        Ok(self.handles()?.group.last_seq())
    }

    /// Seqs here are consecutive: the count is a difference.
    async fn count_after(&self, after: u64, cap: usize) -> Result<usize> {
        let waiting = self.last_seq().await?.saturating_sub(after);
        Ok(usize::try_from(waiting).unwrap_or(usize::MAX).min(cap))
    }

    async fn cursor(&self, consumer: &str) -> Result<u64> {
        Ok(self
            .u64_at(&codec::key(codec::prefix::CURSOR, consumer.as_bytes()))?
            .unwrap_or(0))
    }

    async fn ack(&self, consumer: &str, seq: u64) -> Result<()> {
        // Through the group committer like any write: serialised with commits, and durable
        // before it returns.
        let key = codec::key(codec::prefix::CURSOR, consumer.as_bytes());
        let errors = self.errors();
        let stage: group::Stage = Box::new(move |w: &mut group::Staging<'_>| {
            let last = w.last_seq();
            let current = errors.read_u64(w, &key)?;
            let next = current.max(seq.min(last));
            if next != current {
                w.insert(key, codec::u64_key(next).to_vec());
            }
            Ok(last)
        });
        self.handles()?.group.commit(stage).await.map(drop)
    }

    async fn orphans(&self) -> Result<Vec<Orphan>> {
        let mut out = Vec::new();
        for entry in self.scan_prefix(codec::prefix::ORPHAN.to_vec())? {
            let (key, bytes) = entry.map_err(|e| self.fail(e))?;
            out.push(codec::from_value(&bytes).map_err(|e| self.corrupt("orphans", &key, e))?);
        }
        out.sort_by(|a: &Orphan, b| a.received_at.cmp(&b.received_at).then_with(|| a.sign.cmp(&b.sign)));
        Ok(out)
    }

    async fn opening(&self, idempotency_key: &str) -> Result<Option<String>> {
        let key = codec::key(codec::prefix::OPENING, idempotency_key.as_bytes());
        match self.get(&key)? {
            None => Ok(None),
            Some(bytes) => codec::from_value(&bytes)
                .map(Some)
                .map_err(|e| self.corrupt("openings", &key, e)),
        }
    }

    /// Take the handles out, wait for every commit group still holding them to step down,
    /// flush, and drop them: sled releases its files and lock with the last handle.
    async fn close(&self) -> Result<()> {
        let Some(handles) = self.open.write().unwrap_or_else(|p| p.into_inner()).take() else {
            return Ok(());
        };
        let Handles { tree, group } = handles;
        drop(tree);
        group.close().await.map_err(|e| self.fail(e))?;
        // sled lets go of its files a moment after its last handle: a write finishing on its
        // own thread pool still holds them. Wait (boundedly) until its lock can be taken, so
        // that a new engine can open the store as soon as this returns.
        let path = self.path.clone();
        let released = tokio::task::spawn_blocking(move || lock_released(&path.join("db")))
            .await
            .unwrap_or(false);
        if released {
            Ok(())
        } else {
            Err(StorageError::Failed(Arc::new(SledError::Locked {
                path: self.path.clone(),
            })))
        }
    }
}

#[cfg(test)]
mod tests;
