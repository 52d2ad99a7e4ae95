//! One commit: a single transaction, settled even when the connection dies during `COMMIT`.
//!
//! Order of work inside the transaction: the versioned records and the idempotency keys first
//! (a stale version or a key written before ends it at once: `Conflict`, nothing written),
//! then the schedule, the orphans, the evidence and the events. No row is shared by all
//! commits: an event's `seq` comes from the transaction's own id (migration 8), and readers
//! wait for older transactions rather than commits waiting for one another.
//!
//! The transaction's id is read first. If the connection is lost while `COMMIT` is in flight,
//! the outcome is unknown to us; a fresh connection asks `pg_xact_status` for that id and
//! learns it: committed (success), aborted (nothing written), or still unknown
//! ([`Error::CommitUnknown`]) — never a guess.

use crate::codec;
use crate::{PgError, PostgresStorage};
use deadpool_postgres::Transaction;
use protopay_engine::storage::{Announced, Batch, MAX_EXCHANGES_PER_ORDER};
use protopay_engine::storage::{Result, StorageError};
use std::sync::Arc;
use std::time::Duration;

/// How often a lost `COMMIT` is asked after, and how long between asks, while the server
/// still reports the transaction in progress.
const SETTLE_ASKS: u32 = 50;
const SETTLE_PAUSE: Duration = Duration::from_millis(20);

impl PostgresStorage {
    pub(crate) async fn commit_batch(&self, batch: Batch) -> Result<u64> {
        if i64::try_from(batch.events.len()).map_or(true, |n| n > crate::schema::EVENTS_PER_COMMIT) {
            return Err(PgError::TooManyEvents {
                events: batch.events.len(),
            }
            .into());
        }
        let encoded = Encoded::new(&batch)?;
        let mut client = self.client().await?;
        let sql = &self.inner.sql;
        let tx = client.transaction().await.map_err(query)?;
        let xid: String = tx
            .query_one("SELECT pg_current_xact_id()::text", &[])
            .await
            .map_err(query)?
            .get(0);
        for (put, value) in batch.protocols.iter().zip(&encoded.protocols) {
            let key = &put.value.trans_no;
            let written = match put.expected {
                None => execute(&tx, &sql.insert_protocol, &[key, value]).await,
                Some(v) => execute(&tx, &sql.update_protocol, &[key, &seq(v)?, value]).await,
            }
            .map_err(query)?;
            if written != 1 {
                return Err(StorageError::Conflict);
            }
        }
        for (put, value) in batch.orders.iter().zip(&encoded.orders) {
            let (key, trans_no) = (put.value.out_req_no(), put.value.trans_no());
            let (status, attention) = crate::schema::order_columns(&put.value);
            let written = match put.expected {
                None => {
                    let params: Params = &[&key, &trans_no, value, &status, &attention];
                    execute(&tx, &sql.insert_order, params).await
                }
                Some(v) => {
                    let params: Params = &[&key, &seq(v)?, value, &trans_no, &status, &attention];
                    execute(&tx, &sql.update_order, params).await
                }
            }
            .map_err(query)?;
            if written != 1 {
                return Err(StorageError::Conflict);
            }
        }
        for o in &batch.openings {
            let written = execute(&tx, &sql.insert_opening, &[&o.idempotency_key, &o.trans_no])
                .await
                .map_err(query)?;
            if written != 1 {
                return Err(StorageError::Conflict);
            }
        }
        for (key, at) in &batch.schedule {
            match at {
                Some(at) => execute(&tx, &sql.schedule, &[key, at]).await,
                None => execute(&tx, &sql.unschedule, &[key]).await,
            }
            .map_err(query)?;
        }
        for (orphan, value) in batch.orphans.iter().zip(&encoded.orphans) {
            execute(&tx, &sql.orphan, &[&orphan.sign, value]).await.map_err(query)?;
        }
        if !batch.exchanges.is_empty() {
            let orders: Vec<&str> = batch.exchanges.iter().map(|x| x.out_req_no.as_str()).collect();
            let bound = MAX_EXCHANGES_PER_ORDER as i64;
            execute(&tx, &sql.insert_exchanges, &[&orders, &encoded.exchanges, &bound])
                .await
                .map_err(query)?;
        }
        let last = if encoded.events.is_empty() {
            0
        } else {
            let orders: Vec<Option<&str>> = batch.events.iter().map(|e| e.out_req_no.as_deref()).collect();
            let audit: Vec<bool> = batch.events.iter().map(|e| e.kind.is_audit()).collect();
            query_one(&tx, &sql.append_events, &[&encoded.events, &orders, &audit])
                .await
                .map_err(query)?
                .get::<_, i64>(0)
        };
        #[cfg(feature = "test-util")]
        self.inner.hooks.before_commit(&tx).await;
        let committed = match tx.commit().await {
            Ok(()) => u64::try_from(last).map_err(|_| negative()),
            Err(e) if e.as_db_error().is_some() => Err(query(e)),
            Err(lost) => {
                // That connection is gone: never hand it out again.
                drop(deadpool_postgres::Object::take(client));
                self.settle(&xid, last, lost).await
            }
        }?;
        // Announced after the commit, not by a `NOTIFY` inside it: PostgreSQL makes every
        // transaction that notifies take one lock per database through its commit, which
        // would make all commits of all instances wait for one another again.
        self.inner.outgoing.announce(Announced {
            events: !encoded.events.is_empty(),
            soonest_due: batch.schedule.iter().filter_map(|(_, at)| *at).min(),
        });
        Ok(committed)
    }

    /// Learn the outcome of a transaction whose `COMMIT` got no answer.
    async fn settle(&self, xid: &str, last: i64, lost: tokio_postgres::Error) -> Result<u64> {
        tracing::warn!(xid, error = %lost, "connection lost during COMMIT; asking the server how it ended");
        let lost = Arc::new(PgError::Query(lost));
        for _ in 0..SETTLE_ASKS {
            let status: Option<String> = match self.client().await {
                Ok(client) => match client.query_one("SELECT pg_xact_status($1::text::xid8)", &[&xid]).await {
                    Ok(row) => row.get(0),
                    Err(_) => None,
                },
                Err(_) => None,
            };
            match status.as_deref() {
                Some("committed") => return u64::try_from(last).map_err(|_| negative()),
                Some("aborted") => return Err(StorageError::Failed(lost)),
                // In progress (the server has not finished it yet), or no answer: ask again.
                _ => tokio::time::sleep(SETTLE_PAUSE).await,
            }
        }
        Err(StorageError::CommitUnknown(lost))
    }
}

/// The batch's values, encoded before the transaction starts (no encoding while holding
/// row locks).
struct Encoded {
    protocols: Vec<Vec<u8>>,
    orders: Vec<Vec<u8>>,
    events: Vec<Vec<u8>>,
    exchanges: Vec<Vec<u8>>,
    orphans: Vec<Vec<u8>>,
}

impl Encoded {
    fn new(batch: &Batch) -> Result<Self> {
        Ok(Encoded {
            protocols: batch
                .protocols
                .iter()
                .map(|p| codec::encode(&p.value))
                .collect::<Result<_>>()?,
            orders: batch
                .orders
                .iter()
                .map(|o| codec::encode(&o.value))
                .collect::<Result<_>>()?,
            events: batch.events.iter().map(codec::encode).collect::<Result<_>>()?,
            exchanges: batch.exchanges.iter().map(codec::encode).collect::<Result<_>>()?,
            orphans: batch.orphans.iter().map(codec::encode).collect::<Result<_>>()?,
        })
    }
}

type Params<'a> = &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)];

/// A statement prepared once per connection, then only executed.
async fn execute(
    tx: &Transaction<'_>,
    sql: &str,
    params: Params<'_>,
) -> std::result::Result<u64, tokio_postgres::Error> {
    let statement = tx.prepare_cached(sql).await?;
    tx.execute(&statement, params).await
}

async fn query_one(
    tx: &Transaction<'_>,
    sql: &str,
    params: Params<'_>,
) -> std::result::Result<tokio_postgres::Row, tokio_postgres::Error> {
    let statement = tx.prepare_cached(sql).await?;
    tx.query_one(&statement, params).await
}

fn query(e: tokio_postgres::Error) -> StorageError {
    PgError::Query(e).into()
}

/// A version or seq as PostgreSQL's `bigint`.
fn seq(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| StorageError::Conflict)
}

fn negative() -> StorageError {
    PgError::Corrupt {
        table: "events",
        key: "seq".into(),
        reason: "negative".into(),
    }
    .into()
}
