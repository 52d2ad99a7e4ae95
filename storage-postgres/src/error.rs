//! What can go wrong opening or using the store, as one typed error.

/// Why the PostgreSQL store could not be opened or used. The connection string never
/// appears in it (it may carry a password).
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The connection string could not be read.
    #[error("invalid PostgreSQL connection string: {0}")]
    Config(#[source] tokio_postgres::Error),
    /// The schema name is not a plain identifier.
    #[error("invalid schema name {0:?}: use 1 to 40 of [a-z0-9_], starting with a letter or _")]
    SchemaName(String),
    /// The TLS configuration could not be built (no usable root certificates).
    #[error("TLS setup for PostgreSQL failed")]
    Tls(#[source] rustls::Error),
    /// The connection pool could not be built.
    #[error("PostgreSQL connection pool could not be built")]
    Pool(#[source] deadpool_postgres::BuildError),
    /// No connection could be had from the pool (server down, refused, timed out).
    #[error("no PostgreSQL connection")]
    Connect(#[source] deadpool_postgres::PoolError),
    /// A statement failed.
    #[error("PostgreSQL statement failed")]
    Query(#[source] tokio_postgres::Error),
    /// The store was written by a newer protopay: it is refused rather than half-used.
    #[error("schema {schema} is at version {found}, newer than this build's {supported}; upgrade protopay")]
    NewerSchema {
        /// The schema.
        schema: String,
        /// Its version.
        found: i32,
        /// The newest this build knows.
        supported: i32,
    },
    /// A stored record could not be decoded.
    #[error("corrupt {table} record {key}: {reason}")]
    Corrupt {
        /// Which table.
        table: &'static str,
        /// Which key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
}

impl From<PgError> for protopay_engine::Error {
    fn from(e: PgError) -> Self {
        use protopay_engine::Error;
        match e {
            PgError::Query(q) if is_contention(&q) => Error::Conflict,
            PgError::Corrupt { table, key, reason } => Error::Corrupt {
                key: format!("{table}/{key}"),
                reason,
            },
            PgError::Closed => Error::Shutdown,
            other => Error::Storage(std::sync::Arc::new(other)),
        }
    }
}

/// Serialization failures and deadlocks: two commits met on the same records, and the one
/// that lost wrote nothing. The engine re-reads and retries, as after a version conflict.
pub(crate) fn is_contention(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code()
        .is_some_and(|c| *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED)
}
