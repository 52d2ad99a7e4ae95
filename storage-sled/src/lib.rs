//! # protopay-storage-sled
//!
//! A durable [`Storage`] for protopay on [sled](https://docs.rs/sled/0.34.7): every commit is
//! one sled transaction across all the trees it touches, flushed to disk before `commit`
//! returns. Concurrent commits share flushes (group commit, see `flush.rs`) without any
//! returning early.
//!
//! The due-poll index and the event log are trees of their own, keyed so that "what is due"
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

pub mod codec;
mod flush;

use chrono::{DateTime, Utc};
use codec::DecodeError;
use protopay_engine::domain::{Order, Protocol};
use protopay_engine::event::Event;
use protopay_engine::storage::{Batch, Due, Orphan, Storage, Versioned};
use protopay_engine::{Error, Result};
use serde::de::DeserializeOwned;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    #[error("store {path} has format {found:?}; this version reads protopay-sled/1")]
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
    /// Flushing to disk failed: the commit is not durable and was not acknowledged.
    #[error("store {path}: flushing to disk failed: {source}")]
    Flush {
        /// The store's directory.
        path: PathBuf,
        /// sled's error.
        source: Arc<sled::Error>,
    },
    /// A value could not be encoded.
    #[error("encoding a record: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
}

/// The durable store.
#[derive(Clone)]
pub struct SledStorage {
    path: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    protocols: sled::Tree,
    orders: sled::Tree,
    by_protocol: sled::Tree,
    due: sled::Tree,
    due_at: sled::Tree,
    events: sled::Tree,
    cursors: sled::Tree,
    orphans: sled::Tree,
    flusher: flush::Flusher,
}

impl std::fmt::Debug for SledStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStorage").field("path", &self.path).finish_non_exhaustive()
    }
}

const LAST_SEQ: &[u8] = b"last_seq";
const FORMAT_KEY: &[u8] = b"format";

impl SledStorage {
    /// Open (or create) the store in `path`.
    pub fn open(path: impl AsRef<Path>) -> std::result::Result<Self, SledError> {
        let path = path.as_ref().to_path_buf();
        let classify = |source: sled::Error| match &source {
            sled::Error::Io(io)
                if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("could not acquire lock") =>
            {
                SledError::Locked { path: path.clone() }
            }
            sled::Error::Corruption { .. } => SledError::Corrupt { path: path.clone(), reason: source.to_string() },
            _ => SledError::Sled { path: path.clone(), source },
        };
        // sled panics on some damaged files rather than erroring; keep that from reaching the
        // host as a panic.
        let opened =
            std::panic::catch_unwind(|| sled::Config::new().path(&path).mode(sled::Mode::HighThroughput).open());
        let db = match opened {
            Ok(result) => result.map_err(classify)?,
            Err(_) => return Err(SledError::Corrupt { path, reason: "sled could not read its files".into() }),
        };
        let tree = |name: &str| db.open_tree(name).map_err(classify);
        let store = SledStorage {
            meta: tree("meta")?,
            protocols: tree("protocols")?,
            orders: tree("orders")?,
            by_protocol: tree("by_protocol")?,
            due: tree("due")?,
            due_at: tree("due_at")?,
            events: tree("events")?,
            cursors: tree("cursors")?,
            orphans: tree("orphans")?,
            path: path.clone(),
            flusher: flush::Flusher::new(db.clone()),
            db,
        };
        match store.meta.get(FORMAT_KEY).map_err(classify)? {
            Some(f) if f.as_ref() == codec::FORMAT => {}
            Some(f) => {
                return Err(SledError::UnsupportedFormat { path, found: String::from_utf8_lossy(&f).into_owned() });
            }
            None if store.orders.is_empty() && store.protocols.is_empty() && store.events.is_empty() => {
                store.meta.insert(FORMAT_KEY, codec::FORMAT).map_err(classify)?;
                store.db.flush().map_err(classify)?;
            }
            None => return Err(SledError::Corrupt { path, reason: "records without a format marker".into() }),
        }
        Ok(store)
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes on disk.
    pub fn size_on_disk(&self) -> std::result::Result<u64, SledError> {
        self.db.size_on_disk().map_err(|source| SledError::Sled { path: self.path.clone(), source })
    }

    fn fail(&self, source: sled::Error) -> Error {
        Error::Storage(Arc::new(SledError::Sled { path: self.path.clone(), source }))
    }

    fn corrupt(&self, tree: &str, key: &[u8], e: DecodeError) -> Error {
        Error::Corrupt { key: format!("{tree}/{}", String::from_utf8_lossy(key)), reason: e.to_string() }
    }

    fn read_record<T: DeserializeOwned>(
        &self,
        tree: &sled::Tree,
        name: &str,
        key: &[u8],
    ) -> Result<Option<Versioned<T>>> {
        match tree.get(key).map_err(|e| self.fail(e))? {
            None => Ok(None),
            Some(bytes) => {
                let (version, value) = codec::from_record(&bytes).map_err(|e| self.corrupt(name, key, e))?;
                Ok(Some(Versioned { version, value }))
            }
        }
    }

    /// Wait until everything written so far is on disk (shared with concurrent commits).
    async fn durable(&self) -> Result<()> {
        self.flusher
            .durable()
            .await
            .map_err(|source| Error::Storage(Arc::new(SledError::Flush { path: self.path.clone(), source })))
    }
}

/// Why a commit's transaction stopped.
enum Abort {
    Conflict,
    Decode(String, DecodeError),
}

fn encode(e: rmp_serde::encode::Error) -> Error {
    Error::Storage(Arc::new(SledError::Encode(e)))
}

#[async_trait::async_trait]
impl Storage for SledStorage {
    async fn protocol(&self, trans_no: &str) -> Result<Option<Versioned<Protocol>>> {
        self.read_record(&self.protocols, "protocols", trans_no.as_bytes())
    }

    async fn order(&self, out_req_no: &str) -> Result<Option<Versioned<Order>>> {
        self.read_record(&self.orders, "orders", out_req_no.as_bytes())
    }

    async fn orders_of(&self, trans_no: &str) -> Result<Vec<Versioned<Order>>> {
        let prefix = codec::protocol_prefix(trans_no);
        let mut out = Vec::new();
        for entry in self.by_protocol.scan_prefix(&prefix) {
            let (key, _) = entry.map_err(|e| self.fail(e))?;
            let order_key = key.get(prefix.len()..).unwrap_or_default();
            if let Some(order) = self.read_record(&self.orders, "orders", order_key)? {
                out.push(order);
            }
        }
        Ok(out)
    }

    async fn commit(&self, batch: Batch) -> Result<u64> {
        // Encode outside the transaction: its closure may run more than once.
        let mut protocols = Vec::with_capacity(batch.protocols.len());
        for p in &batch.protocols {
            let next = p.expected.map_or(1, |v| v + 1);
            protocols.push((p.value.trans_no.clone(), p.expected, codec::record(next, &p.value).map_err(encode)?));
        }
        let mut orders = Vec::with_capacity(batch.orders.len());
        for o in &batch.orders {
            let next = o.expected.map_or(1, |v| v + 1);
            let mut index = codec::protocol_prefix(o.value.trans_no());
            index.extend_from_slice(o.value.out_req_no().as_bytes());
            orders.push((
                o.value.out_req_no().to_owned(),
                o.expected,
                codec::record(next, &o.value).map_err(encode)?,
                index,
            ));
        }
        let events: Vec<Vec<u8>> =
            batch.events.iter().map(codec::value).collect::<std::result::Result<_, _>>().map_err(encode)?;
        let orphans: Vec<(String, Vec<u8>)> = batch
            .orphans
            .iter()
            .map(|o| codec::value(o).map(|v| (o.sign.clone(), v)))
            .collect::<std::result::Result<_, _>>()
            .map_err(encode)?;
        let trees = (
            &self.meta,
            &self.protocols,
            &self.orders,
            &self.by_protocol,
            &self.due,
            &self.due_at,
            &self.events,
            &self.orphans,
        );
        let result = trees.transaction(|(meta, ptree, otree, by_protocol, due, due_at, etree, orphan_tree)| {
            let check = |current: Option<sled::IVec>, expected: Option<u64>, name: &str, key: &str| {
                let have =
                    match current {
                        None => None,
                        Some(bytes) => Some(codec::record_version(&bytes).map_err(|e| {
                            ConflictableTransactionError::Abort(Abort::Decode(format!("{name}/{key}"), e))
                        })?),
                    };
                if have == expected { Ok(()) } else { Err(ConflictableTransactionError::Abort(Abort::Conflict)) }
            };
            for (key, expected, bytes) in &protocols {
                check(ptree.get(key.as_bytes())?, *expected, "protocols", key)?;
                ptree.insert(key.as_bytes(), bytes.as_slice())?;
            }
            for (key, expected, bytes, index) in &orders {
                check(otree.get(key.as_bytes())?, *expected, "orders", key)?;
                otree.insert(key.as_bytes(), bytes.as_slice())?;
                by_protocol.insert(index.as_slice(), &[] as &[u8])?;
            }
            let mut last = match meta.get(LAST_SEQ)? {
                Some(b) => codec::u64_from(&b)
                    .map_err(|e| ConflictableTransactionError::Abort(Abort::Decode("meta/last_seq".into(), e)))?,
                None => 0,
            };
            if !events.is_empty() {
                for bytes in &events {
                    last += 1;
                    etree.insert(&codec::u64_key(last), bytes.as_slice())?;
                }
                meta.insert(LAST_SEQ, &codec::u64_key(last))?;
            }
            for (key, at) in &batch.schedule {
                if let Some(old) = due_at.remove(key.as_bytes())? {
                    let mut old_key = old.to_vec();
                    old_key.extend_from_slice(key.as_bytes());
                    due.remove(old_key)?;
                }
                if let Some(at) = at {
                    due.insert(codec::due_key(*at, key), &[] as &[u8])?;
                    due_at.insert(key.as_bytes(), &codec::time_key(*at))?;
                }
            }
            for (sign, bytes) in &orphans {
                if orphan_tree.get(sign.as_bytes())?.is_none() {
                    orphan_tree.insert(sign.as_bytes(), bytes.as_slice())?;
                }
            }
            Ok(last)
        });
        match result {
            Ok(last) => {
                // Durable before we return: concurrent commits share one flush.
                self.durable().await?;
                Ok(last)
            }
            Err(TransactionError::Abort(Abort::Conflict)) => Err(Error::Conflict),
            Err(TransactionError::Abort(Abort::Decode(key, e))) => Err(Error::Corrupt { key, reason: e.to_string() }),
            Err(TransactionError::Storage(e)) => Err(self.fail(e)),
        }
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Due>> {
        let end = now + chrono::Duration::microseconds(1);
        let mut out = Vec::new();
        for entry in self.due.range(..codec::time_key(end).to_vec()).take(limit) {
            let (key, _) = entry.map_err(|e| self.fail(e))?;
            let at = codec::time_from(&key).map_err(|e| self.corrupt("due", &key, e))?;
            let out_req_no = String::from_utf8_lossy(key.get(8..).unwrap_or_default()).into_owned();
            out.push(Due { at, out_req_no });
        }
        Ok(out)
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        match self.due.first().map_err(|e| self.fail(e))? {
            None => Ok(None),
            Some((key, _)) => codec::time_from(&key).map(Some).map_err(|e| self.corrupt("due", &key, e)),
        }
    }

    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>> {
        let mut out = Vec::new();
        for entry in self.events.range(codec::u64_key(after.saturating_add(1))..).take(limit) {
            let (key, bytes) = entry.map_err(|e| self.fail(e))?;
            let mut event: Event = codec::from_value(&bytes).map_err(|e| self.corrupt("events", &key, e))?;
            event.seq = codec::u64_from(&key).map_err(|e| self.corrupt("events", &key, e))?;
            out.push(event);
        }
        Ok(out)
    }

    async fn last_seq(&self) -> Result<u64> {
        match self.meta.get(LAST_SEQ).map_err(|e| self.fail(e))? {
            None => Ok(0),
            Some(b) => codec::u64_from(&b).map_err(|e| self.corrupt("meta", LAST_SEQ, e)),
        }
    }

    async fn cursor(&self, consumer: &str) -> Result<u64> {
        match self.cursors.get(consumer.as_bytes()).map_err(|e| self.fail(e))? {
            None => Ok(0),
            Some(b) => codec::u64_from(&b).map_err(|e| self.corrupt("cursors", consumer.as_bytes(), e)),
        }
    }

    async fn ack(&self, consumer: &str, seq: u64) -> Result<()> {
        let last = self.last_seq().await?;
        let target = seq.min(last);
        self.cursors
            .fetch_and_update(consumer.as_bytes(), |old| {
                let current = old.and_then(|b| codec::u64_from(b).ok()).unwrap_or(0);
                Some(codec::u64_key(current.max(target)).to_vec())
            })
            .map_err(|e| self.fail(e))?;
        self.durable().await
    }

    async fn orphans(&self) -> Result<Vec<Orphan>> {
        let mut out = Vec::new();
        for entry in self.orphans.iter() {
            let (key, bytes) = entry.map_err(|e| self.fail(e))?;
            out.push(codec::from_value(&bytes).map_err(|e| self.corrupt("orphans", &key, e))?);
        }
        out.sort_by(|a: &Orphan, b| a.received_at.cmp(&b.received_at).then_with(|| a.sign.cmp(&b.sign)));
        Ok(out)
    }
}
