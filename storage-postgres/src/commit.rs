//! One commit: a single transaction in two round trips, settled even when the connection dies
//! during `COMMIT`.
//!
//! The first round trip sends `BEGIN`, a question for the transaction's id, and every write
//! in a fixed order — the versioned records and the idempotency keys first, then the
//! schedule, the orphans and the evidence — then the events, before reading any answer. A
//! stale version or a key written before (no row written) is `Conflict`: the transaction is
//! rolled back, nothing written. The second round trip is `COMMIT`. No row is shared by all
//! commits: an event's `seq` comes from the transaction's own id (migration 8), and readers
//! wait for older transactions rather than commits waiting for one another.
//!
//! If the connection is lost while `COMMIT` is in flight, the outcome is unknown to us; a
//! fresh connection asks `pg_xact_status` for the transaction's id and learns it: committed
//! (success), aborted (nothing written), or still unknown ([`Error::CommitUnknown`]) — never a
//! guess.

use crate::codec;
use crate::schema::Statements;
use crate::{PgError, PostgresStorage};
use futures_util::future::{join_all, join4, try_join_all};
use protopay_engine::storage::{Announced, Batch, MAX_EXCHANGES_PER_ORDER};
use protopay_engine::storage::{Result, StorageError};
use std::sync::Arc;
use std::time::Duration;

/// How often a lost `COMMIT` is asked after, and how long between asks, while the server
/// still reports the transaction in progress.
const SETTLE_ASKS: u32 = 50;
const SETTLE_PAUSE: Duration = Duration::from_millis(20);

/// How a commit's transaction starts. Its statements are planned once per connection and the
/// plan reused (a generic plan), never planned again for each call's values: they write by
/// key, where no value changes the best plan, and planning the events' and the evidence's
/// `unnest` afresh for every commit cost the database more than running them. Only for the
/// commit: the due claim's best plan does depend on its values.
const BEGIN: &str = "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan";

impl PostgresStorage {
    pub(crate) async fn commit_batch(&self, batch: Batch) -> Result<u64> {
        if i64::try_from(batch.events.len()).map_or(true, |n| n > crate::schema::EVENTS_PER_COMMIT) {
            return Err(PgError::TooManyEvents {
                events: batch.events.len(),
            }
            .into());
        }
        let sql = &self.inner.sql;
        let encoded = Encoded::new(&batch)?;
        let rows = Rows::new(&batch)?;
        let writes = writes(&batch, &encoded, &rows, sql);
        let open = InTransaction(Some(self.client().await?));
        let client = open.client();
        // Prepared once per connection; after that these cost no round trip.
        let prepared = try_join_all(writes.iter().map(|w| client.prepare_cached(w.sql)))
            .await
            .map_err(query)?;
        let (ask_xid, append_events) = tokio::try_join!(
            client.prepare_cached("SELECT pg_current_xact_id()::text"),
            client.prepare_cached(&sql.append_events)
        )
        .map_err(query)?;
        // `BEGIN` and every statement are sent before any answer is read: one round trip for
        // the lot. A statement is sent when its future is first polled, and the writes are
        // first polled in the order given, so every transaction takes its row locks in the
        // same order (versioned records first). Only the events, new rows no other
        // transaction can hold, may overtake the tail of a long batch.
        let (begun, xid, written, last) = join4(
            client.batch_execute(BEGIN),
            client.query_one(&ask_xid, &[]),
            join_all(
                writes
                    .iter()
                    .zip(&prepared)
                    .map(|(w, st)| client.execute(st, &w.params)),
            ),
            async {
                if encoded.events.is_empty() {
                    return Ok(0);
                }
                let params: Params = &[&encoded.events, &rows.event_orders, &rows.event_audits];
                Ok(client.query_one(&append_events, params).await?.get::<_, i64>(0))
            },
        )
        .await;
        // The first failure is the cause; the statements after it only saw an aborted
        // transaction. A versioned record or key that wrote no row means someone else got
        // there first: `Conflict`, and nothing is written.
        let written = async {
            begun?;
            let xid: String = xid?.get(0);
            let mut conflict = false;
            for (write, n) in writes.iter().zip(written) {
                conflict |= n? != 1 && write.one_row;
            }
            Ok::<_, tokio_postgres::Error>((xid, last?, conflict))
        }
        .await;
        let (xid, last) = match written {
            Ok((xid, last, false)) => (xid, last),
            Ok((_, _, true)) => {
                open.roll_back().await;
                return Err(StorageError::Conflict);
            }
            Err(e) => {
                if e.as_db_error().is_some() {
                    open.roll_back().await;
                }
                return Err(query(e));
            }
        };
        #[cfg(feature = "test-util")]
        self.inner.hooks.before_commit(open.client()).await;
        let committed = match open.client().batch_execute("COMMIT").await {
            Ok(()) => {
                open.release();
                u64::try_from(last).map_err(|_| negative())
            }
            // The server refused the commit and ended the transaction: nothing written.
            Err(e) if e.as_db_error().is_some() => Err(query(e)),
            Err(lost) => {
                // That connection is gone (the guard never hands it out again); the server
                // knows how the transaction ended.
                drop(open);
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

/// A pooled connection inside a transaction this store began. Dropped while the transaction
/// may still be open (an error, or a caller that went away mid-commit), the connection is
/// never handed out again: it closes, and the server rolls the transaction back. Only a
/// connection whose transaction is known to have ended goes back to the pool.
struct InTransaction(Option<deadpool_postgres::Object>);

impl InTransaction {
    fn client(&self) -> &deadpool_postgres::Object {
        self.0.as_ref().expect("held until released or dropped")
    }

    /// The transaction committed: the connection may serve others.
    fn release(mut self) {
        self.0.take();
    }

    /// End the transaction writing nothing, and give the connection back if the server
    /// confirms it.
    async fn roll_back(mut self) {
        if self.client().batch_execute("ROLLBACK").await.is_ok() {
            self.0.take();
        }
    }
}

impl Drop for InTransaction {
    fn drop(&mut self) {
        if let Some(connection) = self.0.take() {
            drop(deadpool_postgres::Object::take(connection));
        }
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
type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

/// The columns a commit writes beside the encoded values, computed before the transaction so
/// that every statement's parameters can be borrowed from one place.
struct Rows<'a> {
    protocol_versions: Vec<Option<i64>>,
    orders: Vec<OrderRow<'a>>,
    exchange_orders: Vec<&'a str>,
    exchanges_per_order: i64,
    event_orders: Vec<Option<&'a str>>,
    event_audits: Vec<bool>,
}

struct OrderRow<'a> {
    key: &'a str,
    trans_no: &'a str,
    version: Option<i64>,
    status: &'static str,
    attention: bool,
}

/// One statement of a commit; `one_row` when writing no row means a conflict.
struct Write<'a> {
    sql: &'a str,
    params: Vec<Param<'a>>,
    one_row: bool,
}

/// The commit's statements in the order they run: the versioned records and the idempotency
/// keys first, then the schedule, the orphans and the evidence (the events go last, apart,
/// because they answer with the last seq).
fn writes<'a>(batch: &'a Batch, encoded: &'a Encoded, rows: &'a Rows<'a>, sql: &'a Statements) -> Vec<Write<'a>> {
    let mut out = Vec::new();
    let one = |sql: &'a String, params: Vec<Param<'a>>| Write {
        sql,
        params,
        one_row: true,
    };
    let any = |sql: &'a String, params: Vec<Param<'a>>| Write {
        sql,
        params,
        one_row: false,
    };
    for ((put, value), version) in batch
        .protocols
        .iter()
        .zip(&encoded.protocols)
        .zip(&rows.protocol_versions)
    {
        let key = &put.value.trans_no;
        out.push(match version {
            None => one(&sql.insert_protocol, vec![key, value]),
            Some(v) => one(&sql.update_protocol, vec![key, v, value]),
        });
    }
    for (o, value) in rows.orders.iter().zip(&encoded.orders) {
        out.push(match &o.version {
            None => one(
                &sql.insert_order,
                vec![&o.key, &o.trans_no, value, &o.status, &o.attention],
            ),
            Some(v) => one(
                &sql.update_order,
                vec![&o.key, v, value, &o.trans_no, &o.status, &o.attention],
            ),
        });
    }
    for o in &batch.openings {
        out.push(one(&sql.insert_opening, vec![&o.idempotency_key, &o.trans_no]));
    }
    for (key, at) in &batch.schedule {
        out.push(match at {
            Some(at) => any(&sql.schedule, vec![key, at]),
            None => any(&sql.unschedule, vec![key]),
        });
    }
    for (orphan, value) in batch.orphans.iter().zip(&encoded.orphans) {
        out.push(any(&sql.orphan, vec![&orphan.sign, value]));
    }
    if !batch.exchanges.is_empty() {
        out.push(any(
            &sql.insert_exchanges,
            vec![&rows.exchange_orders, &encoded.exchanges, &rows.exchanges_per_order],
        ));
    }
    out
}

impl<'a> Rows<'a> {
    fn new(batch: &'a Batch) -> Result<Self> {
        Ok(Rows {
            protocol_versions: batch
                .protocols
                .iter()
                .map(|p| p.expected.map(seq).transpose())
                .collect::<Result<_>>()?,
            orders: batch
                .orders
                .iter()
                .map(|put| {
                    let (status, attention) = crate::schema::order_columns(&put.value);
                    Ok(OrderRow {
                        key: put.value.out_req_no(),
                        trans_no: put.value.trans_no(),
                        version: put.expected.map(seq).transpose()?,
                        status,
                        attention,
                    })
                })
                .collect::<Result<_>>()?,
            exchange_orders: batch.exchanges.iter().map(|x| x.out_req_no.as_str()).collect(),
            exchanges_per_order: MAX_EXCHANGES_PER_ORDER as i64,
            event_orders: batch.events.iter().map(|e| e.out_req_no.as_deref()).collect(),
            event_audits: batch.events.iter().map(|e| e.kind.is_audit()).collect(),
        })
    }
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
