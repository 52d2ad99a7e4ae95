//! What can go wrong opening or using the store, as one typed error.

use protopay_engine::storage::StorageError;

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
    #[error("no PostgreSQL connection: {}", self.cause())]
    Connect(#[source] deadpool_postgres::PoolError),
    /// A statement failed.
    #[error("PostgreSQL statement failed: {}", self.cause())]
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
    /// One commit carried more events than a transaction's share of seqs holds
    /// (`schema::EVENTS_PER_COMMIT`); nothing was written. The engine writes a handful per
    /// commit, so only a bug gets here.
    #[error("a commit of {events} events is more than one transaction may append")]
    TooManyEvents {
        /// How many the commit carried.
        events: usize,
    },
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
}

/// What the engine is told: contention is a lost race (re-read and retry), and the rest is
/// kept whole as the source of a failure.
impl From<PgError> for StorageError {
    fn from(e: PgError) -> Self {
        match e {
            PgError::Query(q) if is_contention(&q) => StorageError::Conflict,
            PgError::Corrupt { table, key, reason } => StorageError::Corrupt {
                key: format!("{table}/{key}"),
                reason,
            },
            PgError::Closed => StorageError::Closed,
            other => StorageError::Failed(std::sync::Arc::new(other)),
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

/// Why the database failed, in a word an operator can act on: what a log line and `/readyz`
/// say, instead of a driver's chain of messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Nothing listens at the address (the server is down or starting).
    ConnectionRefused,
    /// Connecting, or waiting for a pooled connection, took too long.
    TimedOut,
    /// The server refused the credentials or the database.
    Authentication,
    /// The server is starting up or shutting down.
    ServerUnavailable,
    /// The connection broke (a restart, a partition, a killed backend).
    ConnectionLost,
    /// A statement waited too long for a lock (`lock_timeout`): another session held it.
    LockTimeout,
    /// A statement ran too long (`statement_timeout`) or was cancelled.
    StatementTimeout,
    /// The server ended a session idle inside a transaction
    /// (`idle_in_transaction_session_timeout`).
    IdleInTransactionTimeout,
    /// Two commits met on the same rows; the loser wrote nothing and is retried.
    Contention,
    /// Anything else (see the error's source).
    Other,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cause::ConnectionRefused => "connection refused",
            Cause::TimedOut => "timed out",
            Cause::Authentication => "authentication failed",
            Cause::ServerUnavailable => "server starting or shutting down",
            Cause::ConnectionLost => "connection lost",
            Cause::LockTimeout => "lock timeout",
            Cause::StatementTimeout => "statement timeout",
            Cause::IdleInTransactionTimeout => "idle-in-transaction timeout",
            Cause::Contention => "contention",
            Cause::Other => "other error",
        })
    }
}

impl PgError {
    /// Whether trying again later may succeed (the server is down, starting, unreachable, or
    /// busy), as opposed to a mistake to fix (credentials, schema name, a newer schema).
    pub fn is_transient(&self) -> bool {
        match self {
            PgError::Connect(_) | PgError::Query(_) => self.cause() != Cause::Authentication,
            _ => false,
        }
    }

    /// What went wrong, classified (for logs, `/readyz`, operators).
    pub fn cause(&self) -> Cause {
        match self {
            PgError::Connect(deadpool_postgres::PoolError::Timeout(_)) => Cause::TimedOut,
            PgError::Connect(deadpool_postgres::PoolError::Backend(e)) | PgError::Query(e) => cause_of(e),
            _ => Cause::Other,
        }
    }
}

fn cause_of(e: &tokio_postgres::Error) -> Cause {
    use tokio_postgres::error::SqlState;
    if is_contention(e) {
        return Cause::Contention;
    }
    if let Some(code) = e.code() {
        return match code {
            c if *c == SqlState::LOCK_NOT_AVAILABLE => Cause::LockTimeout,
            c if *c == SqlState::QUERY_CANCELED => Cause::StatementTimeout,
            c if *c == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT => Cause::IdleInTransactionTimeout,
            c if *c == SqlState::INVALID_PASSWORD
                || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                || *c == SqlState::INVALID_CATALOG_NAME =>
            {
                Cause::Authentication
            }
            c if *c == SqlState::CANNOT_CONNECT_NOW
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN =>
            {
                Cause::ServerUnavailable
            }
            _ => Cause::Other,
        };
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => Cause::ConnectionRefused,
                std::io::ErrorKind::TimedOut => Cause::TimedOut,
                _ => Cause::ConnectionLost,
            };
        }
        source = s.source();
    }
    if e.is_closed() {
        return Cause::ConnectionLost;
    }
    Cause::Other
}
