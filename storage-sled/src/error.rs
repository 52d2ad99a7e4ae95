//! What can go wrong opening or using the sled store, and what to do about it.

use crate::wal;
use std::path::PathBuf;
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
    /// The store was closed ([`Storage::close`](protopay_engine::storage::Storage::close)).
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
