//! What a store says about a read or a commit — its own audience's error, apart from the
//! host's [`Error`]. A host never sees a [`StorageError`]: the engine's unit of work turns a
//! [`Conflict`](StorageError::Conflict) into a re-read and a retry, and everything else into
//! the matching host error by the one [`From`] below. So "a conflict never reaches you" is a
//! promise of the types: [`Error`] has no variant that could carry one.

use crate::Error;
use std::sync::Arc;

/// What went wrong in a store, as a backend reports it.
#[derive(Debug, thiserror::Error, Clone)]
#[non_exhaustive]
pub enum StorageError {
    /// Optimistic concurrency: a record's version is not the one the writer read (or two
    /// commits met on the same records and this one lost). Nothing was written; the engine
    /// re-reads and decides again.
    #[error("a record changed concurrently; nothing was written")]
    Conflict,
    /// The backend failed (I/O, connection, a full disk). Nothing was acknowledged.
    #[error("storage backend failed")]
    Failed(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The connection was lost while a commit was in flight, and the backend could not learn
    /// afterwards whether it landed. Whoever acts on it re-reads first.
    #[error("whether a storage commit landed is unknown (the connection was lost during COMMIT)")]
    CommitUnknown(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// A stored record could not be decoded, or is not what its key says: a bug or damage.
    #[error("corrupt stored record {key}: {reason}")]
    Corrupt {
        /// Which record.
        key: String,
        /// What failed.
        reason: String,
    },
    /// The store was closed ([`Storage::close`](super::Storage::close)).
    #[error("the store is closed")]
    Closed,
}

impl StorageError {
    /// A backend failure, from any error type.
    pub fn failed(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StorageError::Failed(Arc::new(e))
    }
}

/// The host's view of a store's error. A `Conflict` reaches this only if it escaped a retry
/// loop (a commit of records nobody else writes lost to contention): then it is what it is to
/// the caller — nothing was changed, try again.
impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Conflict => Error::Busy {
                what: "a stored record".to_owned(),
            },
            StorageError::Failed(source) => Error::Storage(source),
            StorageError::CommitUnknown(source) => Error::CommitUnknown(source),
            StorageError::Corrupt { key, reason } => Error::Corrupt { key, reason },
            StorageError::Closed => Error::Shutdown,
        }
    }
}
