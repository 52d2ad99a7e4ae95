//! # protopay-storage-postgres
//!
//! protopay's [`Storage`] on PostgreSQL (13 or newer, no extensions), for running several
//! engine instances — replicas behind a load balancer — on one database:
//!
//! - **Safety from versions.** Every commit is one transaction of version-conditional writes;
//!   a stale writer writes nothing (`Conflict`). Nothing else is trusted for money.
//! - **Shared polling.** Instances claim due orders with `FOR UPDATE SKIP LOCKED` and a lease
//!   (`Storage::claim_due`); a dead instance's leases run out and others take its orders.
//! - **Wake-ups across instances.** What commits did (events appended, the soonest poll
//!   scheduled) is sent with `NOTIFY` after them, many commits in one; every store
//!   `LISTEN`s and announces it to its engine ([`Storage::commits_elsewhere`]), which wakes
//!   only what it concerns. Hints only.
//! - **An event log without a global lock that never skips**: an event's `seq` comes from its
//!   transaction's id, and readers wait for older transactions still in flight (migration 8,
//!   ARCHITECTURE.md). A commit whose `COMMIT` got no answer is settled by asking the
//!   server, never guessed.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use protopay_storage_postgres::{PostgresOptions, PostgresStorage};
//!
//! let store = PostgresStorage::open(PostgresOptions {
//!     schema: "payments".into(),
//!     ..PostgresOptions::new("postgres://protopay@db.internal/app?sslmode=require")
//! })
//! .await?;
//! // Engine::builder(config).storage(store) …
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
// Outside data never meets an `unwrap` here; tests may use it freely.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod codec;
mod commit;
mod error;
mod health;
mod listen;
mod schema;
#[cfg(feature = "test-util")]
pub mod testing;

pub use error::{Cause, PgError};
pub use schema::SCHEMA_VERSION;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use protopay_engine::domain::{Listing, Order, Protocol};
use protopay_engine::event::Event;
use protopay_engine::storage::{Announcements, Batch, Due, Exchange, Keyed, OrderQuery, Orphan, Storage, Versioned};
use protopay_engine::storage::{Result, StorageError};
use schema::Statements;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How to reach the database and where in it to keep the store.
#[derive(Clone)]
pub struct PostgresOptions {
    /// A libpq-style connection string or URL (`postgres://user:pass@host/db?sslmode=require`).
    /// TLS is rustls with the platform's root certificates; `sslmode` decides whether it is used.
    pub url: String,
    /// The PostgreSQL schema holding the tables (default `protopay`): one per engine, so one
    /// database can hold several.
    pub schema: String,
    /// Connections in the pool (default 16).
    pub pool_size: usize,
    /// Bounds on every session, so that no instance can stall the others.
    pub limits: SessionLimits,
}

impl PostgresOptions {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresOptions {
            url: url.into(),
            schema: "protopay".into(),
            pool_size: 16,
            limits: SessionLimits::default(),
        }
    }
}

/// Bounds on every database session, so that one instance paused, partitioned or stuck in
/// the middle of a transaction never holds locks that stall the others: the server ends what
/// outlasts them (the transaction then writes nothing, and the engine treats the failure
/// like any other). No row is shared by every commit, but two commits on one order or
/// protocol meet on its row, and a frozen transaction holds back event delivery for all.
/// Milliseconds; 0 turns a server-side limit off (not recommended).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionLimits {
    /// `statement_timeout`: the longest one statement may run (default 15 s).
    pub statement_ms: u64,
    /// `lock_timeout`: the longest one statement waits for a lock (default 5 s).
    pub lock_ms: u64,
    /// `idle_in_transaction_session_timeout`: a session idle inside a transaction this long
    /// is ended by the server, releasing its locks (default 10 s).
    pub idle_in_transaction_ms: u64,
    /// TCP keepalives: idle time before the first probe (default 10 s); probes then go every
    /// `keepalive_ms / 2`, and three unanswered ones end the connection — so a peer that
    /// vanished (a partition, a dead host) is noticed in ~25 s rather than TCP's ~2 h.
    pub keepalive_ms: u64,
    /// Connecting (default 5 s).
    pub connect_ms: u64,
    /// The longest a caller waits for a connection from the pool (default 10 s): a pool
    /// whose connections are all stuck fails calls instead of queueing them for ever.
    pub pool_wait_ms: u64,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            statement_ms: 15_000,
            lock_ms: 5_000,
            idle_in_transaction_ms: 10_000,
            keepalive_ms: 10_000,
            connect_ms: 5_000,
            pool_wait_ms: 10_000,
        }
    }
}

impl SessionLimits {
    /// The server settings of every session (`-c name=value`).
    fn server_options(&self) -> String {
        format!(
            "-c statement_timeout={} -c lock_timeout={} -c idle_in_transaction_session_timeout={}",
            self.statement_ms, self.lock_ms, self.idle_in_transaction_ms
        )
    }

    /// Apply the client-side bounds to a connection config.
    fn apply(&self, config: &mut tokio_postgres::Config) {
        let ms = Duration::from_millis;
        config.connect_timeout(ms(self.connect_ms.max(1)));
        if self.keepalive_ms > 0 {
            config
                .keepalives(true)
                .keepalives_idle(ms(self.keepalive_ms))
                .keepalives_interval(ms((self.keepalive_ms / 2).max(1_000)))
                .keepalives_retries(3)
                .tcp_user_timeout(ms(self.keepalive_ms * 2));
        }
    }
}

impl std::fmt::Debug for PostgresOptions {
    /// The URL may carry a password: it is never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

/// [`Storage`] on PostgreSQL. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct PostgresStorage {
    inner: Arc<Inner>,
}

struct Inner {
    schema: String,
    pool: Pool,
    sql: Statements,
    announcements: Arc<Announcements>,
    listener: tokio::task::JoinHandle<()>,
    /// What this store's commits did, gathered until the listener sends it.
    outgoing: Arc<Announcements>,
    health: health::Health,
    #[cfg(feature = "test-util")]
    hooks: testing::Hooks,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl std::fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStorage")
            .field("schema", &self.inner.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresStorage {
    /// Connect, apply migrations (under an advisory lock: instances starting together take
    /// turns), and start listening for other instances' commits. A schema written by a newer
    /// build is refused ([`PgError::NewerSchema`]).
    pub async fn open(options: PostgresOptions) -> std::result::Result<Self, PgError> {
        schema::check_name(&options.schema)?;
        let mut config: tokio_postgres::Config = options.url.parse().map_err(PgError::Config)?;
        // A commit is acknowledged only once durable, whatever the server's default says; and
        // no session may hold locks for long (see `SessionLimits`).
        let ours = format!("-c synchronous_commit=on {}", options.limits.server_options());
        let server_options = match config.get_options() {
            Some(given) => format!("{given} {ours}"),
            None => ours,
        };
        config.options(&server_options);
        options.limits.apply(&mut config);
        let tls = tls()?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            // Fast: a connection is not checked with a query before it is handed out again
            // (that was a round trip per call). One the server ended (a killed backend, a
            // failover) is seen closed by the client and replaced; one that died unseen fails
            // the call that uses it, exactly as if it had died during the call: nothing
            // written, a lost `COMMIT` settled by asking (`commit`).
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let wait = Duration::from_millis(options.limits.pool_wait_ms.max(1));
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(wait))
            .create_timeout(Some(Duration::from_millis(options.limits.connect_ms.max(1))))
            .recycle_timeout(Some(wait))
            .build()
            .map_err(PgError::Pool)?;
        let mut client = pool.get().await.map_err(PgError::Connect)?;
        schema::migrate(&mut client, &options.schema).await?;
        drop(client);
        let sql = Statements::new(&options.schema);
        let announcements = Arc::new(Announcements::default());
        let outgoing = Arc::new(Announcements::default());
        let listener = tokio::spawn(listen::run(
            config,
            tls,
            sql.channel.clone(),
            announcements.clone(),
            outgoing.clone(),
        ));
        Ok(PostgresStorage {
            inner: Arc::new(Inner {
                schema: options.schema,
                pool,
                sql,
                announcements,
                listener,
                outgoing,
                health: health::Health::default(),
                #[cfg(feature = "test-util")]
                hooks: testing::Hooks::default(),
            }),
        })
    }

    /// The schema this store lives in.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        if self.inner.pool.is_closed() {
            return Err(StorageError::Closed);
        }
        let got = self.inner.pool.get().await.map_err(PgError::Connect);
        Ok(self.inner.health.observe(got)?)
    }

    async fn rows(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>> {
        let client = self.client().await?;
        let result = async {
            let statement = client.prepare_cached(sql).await.map_err(PgError::Query)?;
            client.query(&statement, params).await.map_err(PgError::Query)
        }
        .await;
        Ok(self.inner.health.observe(result)?)
    }
}

/// rustls with the platform's roots and aws-lc-rs, named explicitly so that a host linking
/// another provider cannot make the choice ambiguous.
fn tls() -> std::result::Result<MakeRustlsConnect, PgError> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(PgError::Tls)?
        .with_platform_verifier()
        .map_err(PgError::Tls)?
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn versioned<T: serde::de::DeserializeOwned + Keyed>(
    table: &'static str,
    key: &str,
    row: &tokio_postgres::Row,
) -> Result<Versioned<T>> {
    let version: i64 = row.get(0);
    let bytes: &[u8] = row.get(1);
    let value: T = codec::decode(table, key, bytes)?;
    if value.key() != key {
        return Err(corrupt(table, key, &format!("holds the record of {}", value.key())));
    }
    Ok(Versioned {
        version: u64::try_from(version).map_err(|_| corrupt(table, key, "negative version"))?,
        value,
    })
}

fn corrupt(table: &'static str, key: &str, reason: &str) -> StorageError {
    PgError::Corrupt {
        table,
        key: key.to_owned(),
        reason: reason.to_owned(),
    }
    .into()
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// An event from a `seq, value` row.
fn event_of(row: &tokio_postgres::Row) -> Result<Event> {
    let seq: i64 = row.get(0);
    let mut event: Event = codec::decode("events", &seq.to_string(), row.get(1))?;
    event.seq = u64::try_from(seq).map_err(|_| corrupt("events", &seq.to_string(), "negative seq"))?;
    Ok(event)
}

fn due_of(row: &tokio_postgres::Row) -> Due {
    Due {
        at: row.get(0),
        out_req_no: row.get(1),
    }
}

#[async_trait::async_trait]
impl Storage for PostgresStorage {
    async fn protocol(&self, trans_no: &str) -> Result<Option<Versioned<Protocol>>> {
        let rows = self.rows(&self.inner.sql.protocol, &[&trans_no]).await?;
        rows.first().map(|r| versioned("protocols", trans_no, r)).transpose()
    }

    async fn order(&self, out_req_no: &str) -> Result<Option<Versioned<Order>>> {
        let rows = self.rows(&self.inner.sql.order, &[&out_req_no]).await?;
        rows.first().map(|r| versioned("orders", out_req_no, r)).transpose()
    }

    async fn protocols(&self, after: Option<&str>, n: usize) -> Result<Vec<Versioned<Protocol>>> {
        let rows = self
            .rows(&self.inner.sql.protocols, &[&after.unwrap_or_default(), &limit(n)])
            .await?;
        rows.iter().map(|r| versioned("protocols", r.get(2), r)).collect()
    }

    async fn orders(&self, query: &OrderQuery, after: Option<&str>, n: usize) -> Result<Vec<Versioned<Order>>> {
        let sql = Statements::orders(&self.inner.schema, query);
        let after = after.unwrap_or_default();
        let n = limit(n);
        let status = match query.listing {
            Some(Listing::Status(s)) => Some(Listing::Status(s).name()),
            _ => None,
        };
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&after, &n];
        if let Some(t) = &query.trans_no {
            params.push(t);
        }
        if let Some(s) = &status {
            params.push(s);
        }
        let rows = self.rows(&sql, &params).await?;
        rows.iter().map(|r| versioned("orders", r.get(2), r)).collect()
    }

    async fn listing_counts(&self) -> Result<Vec<(Listing, u64)>> {
        let rows = self.rows(&self.inner.sql.listing_counts, &[]).await?;
        let mut counts = Vec::with_capacity(Listing::ALL.len());
        for listing in Listing::ALL {
            let row = rows.iter().find(|r| r.get::<_, &str>(0) == listing.name());
            let n: i64 = row.map_or(0, |r| r.get(1));
            let n = u64::try_from(n).map_err(|_| PgError::Corrupt {
                table: "listing_counts",
                key: listing.name().to_owned(),
                reason: format!("{n} orders"),
            })?;
            counts.push((listing, n));
        }
        Ok(counts)
    }

    async fn history(&self, out_req_no: &str) -> Result<Vec<Event>> {
        let rows = self.rows(&self.inner.sql.history, &[&out_req_no]).await?;
        rows.iter().map(event_of).collect()
    }

    async fn audit(&self, before: Option<u64>, n: usize) -> Result<Vec<Event>> {
        let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        let rows = self.rows(&self.inner.sql.audit, &[&before, &limit(n)]).await?;
        rows.iter().map(event_of).collect()
    }

    async fn exchanges(&self, out_req_no: &str) -> Result<Vec<Exchange>> {
        let rows = self.rows(&self.inner.sql.exchanges, &[&out_req_no]).await?;
        rows.iter()
            .map(|r| {
                let x: Exchange = codec::decode("exchanges", out_req_no, r.get(0))?;
                if x.out_req_no == out_req_no {
                    Ok(x)
                } else {
                    Err(corrupt("exchanges", out_req_no, "an exchange of another order"))
                }
            })
            .collect()
    }

    async fn due_at(&self, out_req_no: &str) -> Result<Option<DateTime<Utc>>> {
        let rows = self.rows(&self.inner.sql.due_at, &[&out_req_no]).await?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    async fn commit(&self, batch: Batch) -> Result<u64> {
        self.commit_batch(batch).await
    }

    async fn due(&self, now: DateTime<Utc>, n: usize) -> Result<Vec<Due>> {
        let rows = self.rows(&self.inner.sql.due, &[&now, &limit(n)]).await?;
        Ok(rows.iter().map(due_of).collect())
    }

    async fn claim_due(&self, owner: &str, now: DateTime<Utc>, n: usize, claim: Duration) -> Result<Vec<Due>> {
        let lease_ms = i64::try_from(claim.as_millis()).unwrap_or(i64::MAX) as f64;
        let rows = self
            .rows(&self.inner.sql.claim_due, &[&now, &owner, &limit(n), &lease_ms])
            .await?;
        let mut due: Vec<Due> = rows.iter().map(due_of).collect();
        due.sort();
        Ok(due)
    }

    async fn hold_lease(&self, name: &str, owner: &str, lease: Duration) -> Result<Option<u64>> {
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX) as f64;
        let rows = self
            .rows(&self.inner.sql.hold_lease, &[&name, &owner, &lease_ms])
            .await?;
        Ok(rows.first().map(|r| r.get::<_, i64>(0).max(0) as u64))
    }

    async fn release_all(&self, owner: &str) -> Result<()> {
        self.rows(&self.inner.sql.release_all, &[&owner]).await?;
        self.rows(&self.inner.sql.release_leases, &[&owner]).await?;
        Ok(())
    }

    async fn next_due(&self, owner: &str) -> Result<Option<DateTime<Utc>>> {
        let rows = self.rows(&self.inner.sql.next_due, &[&owner]).await?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    async fn events_after(&self, after: u64, n: usize) -> Result<Vec<Event>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let rows = self.rows(&self.inner.sql.events_after, &[&after, &limit(n)]).await?;
        rows.iter().map(event_of).collect()
    }

    async fn last_seq(&self) -> Result<u64> {
        let rows = self.rows(&self.inner.sql.last_seq, &[]).await?;
        let last: i64 = rows.first().map_or(0, |r| r.get(0));
        u64::try_from(last).map_err(|_| corrupt("events", "seq", "negative"))
    }

    async fn count_after(&self, after: u64, cap: usize) -> Result<usize> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let rows = self.rows(&self.inner.sql.count_after, &[&after, &limit(cap)]).await?;
        let n: i64 = rows.first().map_or(0, |r| r.get(0));
        Ok(usize::try_from(n).unwrap_or(0))
    }

    async fn events_before(&self, before: u64, n: usize) -> Result<Vec<Event>> {
        let before = i64::try_from(before).unwrap_or(i64::MAX);
        let rows = self.rows(&self.inner.sql.events_before, &[&before, &limit(n)]).await?;
        rows.iter().map(event_of).collect()
    }

    async fn cursor(&self, consumer: &str) -> Result<u64> {
        let rows = self.rows(&self.inner.sql.cursor, &[&consumer]).await?;
        let seq: i64 = rows.first().map_or(0, |r| r.get(0));
        u64::try_from(seq).map_err(|_| corrupt("cursors", consumer, "negative"))
    }

    async fn ack(&self, consumer: &str, seq: u64) -> Result<()> {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        self.rows(&self.inner.sql.ack, &[&consumer, &seq]).await?;
        Ok(())
    }

    async fn orphans(&self) -> Result<Vec<Orphan>> {
        let rows = self.rows(&self.inner.sql.orphans, &[]).await?;
        rows.iter()
            .map(|r| Ok(codec::decode("orphans", r.get(1), r.get(0))?))
            .collect()
    }

    async fn opening(&self, idempotency_key: &str) -> Result<Option<String>> {
        let rows = self.rows(&self.inner.sql.opening, &[&idempotency_key]).await?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    fn commits_elsewhere(&self) -> Option<Arc<Announcements>> {
        Some(self.inner.announcements.clone())
    }

    async fn close(&self) -> Result<()> {
        self.inner.listener.abort();
        self.inner.pool.close();
        Ok(())
    }
}
