//! # protopay-storage-sled
//!
//! A durable [`Storage`] for protopay on [sled](https://docs.rs/sled/0.34.7): all records live
//! in one tree, keyed by kind. Commits (and cursor acknowledgements) go through a group
//! committer (`group.rs`): concurrent commits are checked one by one, appended together to
//! protopay's write-ahead log and made durable by one `fdatasync` ([`wal`]), then applied to
//! sled as one atomic batch; none returns before that sync has. sled's own flush is not relied
//! on for durability (it uses `sync_file_range`, which leaves the disk's write cache
//! unflushed); its files are `fsync`ed at checkpoints, after which the log starts empty.
//!
//! The due-poll index and the event log are key ranges of their own, so that "what is due"
//! and "events after N" are range reads, never scans of all orders. The on-disk format is
//! versioned and documented in [`codec`].
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
mod group;
#[cfg(test)]
mod power_cuts;
#[cfg(test)]
mod sim_disk;
mod stage;
mod upgrade;
pub mod wal;

pub use backup::BackupReport;
use stage::Errors;

use chrono::{DateTime, Utc};
use codec::DecodeError;
use protopay_engine::domain::{Listing, Order, Protocol};
use protopay_engine::event::Event;
use protopay_engine::storage::{Batch, Due, Keyed, Leases, OrderQuery, Orphan, Storage, Versioned};
use protopay_engine::{Error, Result};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What can go wrong opening or using the sled store.
#[derive(Debug, thiserror::Error)]
pub enum SledError {
    /// Another process holds the store. Stop that process, or use another directory.
    #[error("store {path} is in use by another process")]
    Locked {
        /// The store's directory.
        path: PathBuf,
    },
    /// The store is damaged. Restore it from a backup; do not write to it.
    #[error("store {path} is corrupt: {reason}")]
    Corrupt {
        /// The store's directory.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// The store was written by a version with another on-disk format.
    #[error("store {path} has format {found:?}; this version reads protopay-sled/1 to /5")]
    UnsupportedFormat {
        /// The store's directory.
        path: PathBuf,
        /// The format found.
        found: String,
    },
    /// sled failed (I/O).
    #[error("store {path}: {source}")]
    Sled {
        /// The store's directory.
        path: PathBuf,
        /// sled's error.
        source: sled::Error,
    },
    /// Writing to disk failed (the log, sled, or a checkpoint): the commit was not
    /// acknowledged. After a failed log write the store takes no more commits until it is
    /// opened again, which reads back what is really on disk.
    #[error("store {path}: writing to disk failed: {source}")]
    Flush {
        /// The store's directory.
        path: PathBuf,
        /// sled's error.
        source: Arc<sled::Error>,
    },
    /// A backup's directory exists and is not empty (or names no directory). Choose a new one:
    /// a backup never overwrites anything.
    #[error("backup target {path} exists and is not empty: name a new directory")]
    BackupTarget {
        /// The directory named.
        path: PathBuf,
    },
    /// Another backup of this store is being taken. Wait for it to finish.
    #[error("a backup of {path} is already being taken")]
    BackupRunning {
        /// The store's directory.
        path: PathBuf,
    },
    /// Writing the backup failed; the store itself is unaffected, and no backup directory was
    /// left under the name asked for.
    #[error("backup {path}: {source}")]
    Backup {
        /// Where the backup was being written.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The store was closed ([`Storage::close`]).
    #[error("store {path} is closed")]
    Closed {
        /// The store's directory.
        path: PathBuf,
    },
    /// A value could not be encoded.
    #[error("encoding a record: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// The write-ahead log could not be read, or synced data in it is damaged (the error says
    /// where, and what to do; a torn last write is not damage: it is dropped on open).
    #[error(transparent)]
    Wal(#[from] wal::WalError),
}

/// The durable store.
#[derive(Clone)]
pub struct SledStorage {
    path: PathBuf,
    /// `None` once closed: [`Storage::close`] takes the handles out, so that sled's files and
    /// lock are released even while clones of this store live on.
    open: Arc<std::sync::RwLock<Option<Handles>>>,
    /// Claims on due orders: in memory, since only this process opens the store.
    leases: Arc<Leases>,
    /// Named leases (`Storage::hold_lease`), apart from the orders' so names never collide.
    named_leases: Arc<Leases>,
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

const LAST_SEQ: &[u8] = b"last_seq";
const FORMAT_KEY: &[u8] = b"format";

impl SledStorage {
    /// Open (or create) the store in `path`.
    pub fn open(path: impl AsRef<Path>) -> std::result::Result<Self, SledError> {
        let path = path.as_ref().to_path_buf();
        // sled reports a held lock only as text; ask the kernel first, for a typed answer.
        if held_by_another(&path.join("db")) {
            return Err(SledError::Locked { path });
        }
        let classify = |source: sled::Error| match &source {
            sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                SledError::Locked { path: path.clone() }
            }
            sled::Error::Corruption { .. } => SledError::Corrupt {
                path: path.clone(),
                reason: source.to_string(),
            },
            _ => SledError::Sled {
                path: path.clone(),
                source,
            },
        };
        // sled panics on some damaged files rather than erroring; keep that from reaching the
        // host as a panic.
        let opened = std::panic::catch_unwind(|| {
            sled::Config::new()
                .path(&path)
                .mode(sled::Mode::HighThroughput)
                // Durability is the log's job; sled is synced at checkpoints.
                .flush_every_ms(None)
                .open()
        });
        let db = match opened {
            Ok(result) => result.map_err(classify)?,
            Err(_) => {
                return Err(SledError::Corrupt {
                    path,
                    reason: "sled could not read its files".into(),
                });
            }
        };
        let tree = db.open_tree("protopay").map_err(classify)?;
        let format_key = codec::key(codec::prefix::META, FORMAT_KEY);
        // Older formats are upgraded in place (`upgrade.rs`); a new store is marked at once.
        let (new_marker, upgrade_from) = match tree.get(&format_key).map_err(classify)? {
            Some(f) if f.as_ref() == codec::FORMAT => (false, None),
            Some(f) if codec::OLDER_FORMATS.contains(&f.as_ref()) => (true, Some(f)),
            Some(f) => {
                return Err(SledError::UnsupportedFormat {
                    path,
                    found: String::from_utf8_lossy(&f).into_owned(),
                });
            }
            None if tree.is_empty() && db.tree_names().len() <= 2 => (true, None),
            None => {
                return Err(SledError::Corrupt {
                    path,
                    reason: "records without a format marker".into(),
                });
            }
        };
        // What was durable only in the log goes into sled again; then sled is synced for
        // real and the log replaced by an empty one, before anything new is written.
        let recovered = wal::Wal::open(&path)?;
        let logged = tree.get(codec::logged_key()).map_err(classify)?;
        recovered.check_against(logged.as_deref().and_then(wal::Logged::from_bytes))?;
        let wal::Recovered {
            wal: mut log,
            groups,
            torn_bytes,
        } = recovered;
        let replayed = groups.len();
        for writes in groups {
            tree.apply_batch(group::batch_of(writes)).map_err(classify)?;
        }
        if let Some(from) = upgrade_from {
            upgrade::upgrade(&tree, &from).map_err(|stop| match stop {
                upgrade::Stop::Sled(e) => classify(e),
                upgrade::Stop::Undecodable { key, reason } => SledError::Corrupt {
                    path: path.clone(),
                    reason: format!("{}: {reason}", String::from_utf8_lossy(&key)),
                },
            })?;
        }
        if new_marker {
            tree.insert(&format_key, codec::FORMAT).map_err(classify)?;
        }
        if new_marker || log.needs_reset() {
            group::checkpoint(&db, &path, &mut log).map_err(classify)?;
        }
        if replayed > 0 || torn_bytes > 0 {
            tracing::info!(
                path = %path.display(),
                groups = replayed,
                torn_bytes,
                "recovered from the write-ahead log"
            );
        }
        let handles = Handles {
            group: group::GroupCommit::new(db.clone(), tree.clone(), path.clone(), log, {
                let path = path.clone();
                move |source| {
                    Error::Storage(Arc::new(SledError::Flush {
                        path: path.clone(),
                        source,
                    }))
                }
            }),
            tree: tree.clone(),
        };
        let store = SledStorage {
            path: path.clone(),
            open: Arc::new(std::sync::RwLock::new(Some(handles))),
            leases: Arc::default(),
            named_leases: Arc::default(),
        };
        Ok(store)
    }

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
            .ok_or(Error::Shutdown)
    }

    fn tree(&self) -> Result<sled::Tree> {
        self.handles().map(|h| h.tree)
    }

    fn errors(&self) -> Errors {
        Errors(self.path.clone())
    }

    fn fail(&self, source: sled::Error) -> Error {
        self.errors().fail(source)
    }

    fn corrupt(&self, tree: &str, key: &[u8], e: DecodeError) -> Error {
        Error::Corrupt {
            key: format!("{tree}/{}", String::from_utf8_lossy(key)),
            reason: e.to_string(),
        }
    }

    fn read_record<T: DeserializeOwned + Keyed>(&self, prefix: &[u8], key: &[u8]) -> Result<Option<Versioned<T>>> {
        let name = String::from_utf8_lossy(prefix).into_owned();
        match self.tree()?.get(codec::key(prefix, key)).map_err(|e| self.fail(e))? {
            None => Ok(None),
            Some(bytes) => {
                let (version, value): (u64, T) = codec::from_record(&bytes).map_err(|e| self.corrupt(&name, key, e))?;
                if value.key().as_bytes() != key {
                    return Err(Error::Corrupt {
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
        let mut out = Vec::new();
        for entry in self.tree()?.scan_prefix(&prefix) {
            let (key, _) = entry.map_err(|e| self.fail(e))?;
            let seq = codec::u64_from(key.get(prefix.len()..).unwrap_or_default())
                .map_err(|e| self.corrupt("history", &key, e))?;
            let event_key = codec::key(codec::prefix::EVENT, &codec::u64_key(seq));
            let bytes = self.tree()?.get(&event_key).map_err(|e| self.fail(e))?;
            let bytes = bytes.ok_or_else(|| Error::Corrupt {
                key: String::from_utf8_lossy(&key).into_owned(),
                reason: "names an event that is not stored".into(),
            })?;
            let mut event: Event = codec::from_value(&bytes).map_err(|e| self.corrupt("events", &event_key, e))?;
            event.seq = seq;
            out.push(event);
        }
        Ok(out)
    }

    async fn due_at(&self, out_req_no: &str) -> Result<Option<DateTime<Utc>>> {
        let key = codec::key(codec::prefix::DUE_AT, out_req_no.as_bytes());
        match self.tree()?.get(&key).map_err(|e| self.fail(e))? {
            None => Ok(None),
            Some(bytes) => codec::time_from(&bytes)
                .map(Some)
                .map_err(|e| self.corrupt("due_at", &key, e)),
        }
    }

    async fn commit(&self, batch: Batch) -> Result<u64> {
        // Durable before it returns: concurrent commits share one log record and one sync.
        let group = self.handles()?.group;
        let rescheduled: Vec<String> = batch.schedule.iter().map(|(key, _)| key.clone()).collect();
        let last = group.commit(self.stage(batch)?).await?;
        for key in &rescheduled {
            self.leases.release(key);
        }
        Ok(last)
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Due>> {
        self.due_until(now)?.take(limit).collect()
    }

    async fn claim_due(&self, owner: &str, now: DateTime<Utc>, limit: usize, lease: Duration) -> Result<Vec<Due>> {
        self.leases.claim(owner, lease, limit, self.due_until(now)?)
    }

    async fn hold_lease(&self, name: &str, owner: &str, lease: Duration) -> Result<Option<u64>> {
        Ok(self.named_leases.hold(name, owner, lease))
    }

    async fn release_claims(&self, owner: &str) -> Result<()> {
        self.leases.release_owner(owner);
        self.named_leases.release_owner(owner);
        Ok(())
    }

    async fn next_due(&self, owner: &str) -> Result<Option<DateTime<Utc>>> {
        self.leases.first_free(owner, self.due_until(DateTime::<Utc>::MAX_UTC)?)
    }

    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>> {
        let start = codec::key(codec::prefix::EVENT, &codec::u64_key(after.saturating_add(1)));
        let mut out = Vec::new();
        for entry in self
            .tree()?
            .range(start..)
            .take_while(|e| e.as_ref().map_or(true, |(k, _)| k.starts_with(codec::prefix::EVENT)))
            .take(limit)
        {
            let (key, bytes) = entry.map_err(|e| self.fail(e))?;
            let mut event: Event = codec::from_value(&bytes).map_err(|e| self.corrupt("events", &key, e))?;
            let seq = key.get(codec::prefix::EVENT.len()..).unwrap_or_default();
            event.seq = codec::u64_from(seq).map_err(|e| self.corrupt("events", &key, e))?;
            out.push(event);
        }
        Ok(out)
    }

    async fn last_seq(&self) -> Result<u64> {
        Ok(self.u64_at(&codec::key(codec::prefix::META, LAST_SEQ))?.unwrap_or(0))
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
            let last = errors.read_u64(w, &codec::key(codec::prefix::META, LAST_SEQ))?;
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
        for entry in self.tree()?.scan_prefix(codec::prefix::ORPHAN) {
            let (key, bytes) = entry.map_err(|e| self.fail(e))?;
            out.push(codec::from_value(&bytes).map_err(|e| self.corrupt("orphans", &key, e))?);
        }
        out.sort_by(|a: &Orphan, b| a.received_at.cmp(&b.received_at).then_with(|| a.sign.cmp(&b.sign)));
        Ok(out)
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
            Err(Error::Storage(Arc::new(SledError::Locked {
                path: self.path.clone(),
            })))
        }
    }
}

impl SledStorage {
    /// Up to `limit` records named by the keys under `index` that come after `after`, read
    /// from `records` and kept when `keep` says so: a page of a list.
    fn page<T: DeserializeOwned + Keyed>(
        &self,
        index: Vec<u8>,
        after: Option<&str>,
        records: &[u8],
        keep: impl Fn(&T) -> bool,
        limit: usize,
    ) -> Result<Vec<Versioned<T>>> {
        let mut start = index.clone();
        if let Some(after) = after {
            // The first key past `after` itself.
            start.extend_from_slice(after.as_bytes());
            start.push(0);
        }
        let mut out = Vec::new();
        for entry in self.tree()?.range(start..) {
            if out.len() >= limit {
                break;
            }
            let (key, _) = entry.map_err(|e| self.fail(e))?;
            let Some(name) = key.strip_prefix(index.as_slice()) else {
                break;
            };
            match self.read_record::<T>(records, name)? {
                Some(record) if keep(&record.value) => out.push(record),
                _ => {}
            }
        }
        Ok(out)
    }

    /// The due index up to `now`, earliest first.
    fn due_until(&self, now: DateTime<Utc>) -> Result<impl Iterator<Item = Result<Due>> + '_> {
        let start = codec::prefix::DUE.to_vec();
        // Past every entry due at `now`: an `outReqNo` is UTF-8, which never holds 0xFF.
        let mut end = codec::key(codec::prefix::DUE, &codec::time_key(now));
        end.push(0xFF);
        let entries = self.tree()?.range(start..end);
        Ok(entries.map(|entry| {
            let (key, _) = entry.map_err(|e| self.fail(e))?;
            self.due_entry(&key)
        }))
    }

    fn due_entry(&self, key: &[u8]) -> Result<Due> {
        let rest = key.get(codec::prefix::DUE.len()..).unwrap_or_default();
        let at = codec::time_from(rest).map_err(|e| self.corrupt("due", key, e))?;
        let out_req_no = String::from_utf8_lossy(rest.get(8..).unwrap_or_default()).into_owned();
        Ok(Due { at, out_req_no })
    }
}

/// Whether another open file holds the exclusive advisory lock sled takes on `db_file` while
/// the store is open (an absent file holds none).
fn held_by_another(db_file: &Path) -> bool {
    let Ok(file) = std::fs::OpenOptions::new().read(true).write(true).open(db_file) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(std::fs::TryLockError::WouldBlock) => true,
        // Locks unsupported here: let sled try, and say what it finds.
        Err(std::fs::TryLockError::Error(_)) => false,
    }
}

/// Whether sled's lock on `db_file` can be taken within a few seconds (it is released again at
/// once).
fn lock_released(db_file: &Path) -> bool {
    for _ in 0..5_000 {
        if !held_by_another(db_file) {
            return true;
        }
        // Waiting on another thread of this process to drop its handle; it takes microseconds.
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    false
}
