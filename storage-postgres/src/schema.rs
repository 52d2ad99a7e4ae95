//! The schema: versioned migrations applied on open, and the statements that use it.
//!
//! Every table lives in one PostgreSQL schema (default `protopay`), so one database can hold
//! several engines side by side. Migrations run in one transaction under an advisory lock, so
//! that instances starting together take turns; a schema written by a newer build is refused.

use crate::PgError;
use tokio_postgres::Client;

/// The migrations, in order; version `i + 1` is `MIGRATIONS[i]`.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_read_models.sql"),
    include_str!("../migrations/0003_leases.sql"),
    include_str!("../migrations/0004_listing_counts.sql"),
    include_str!("../migrations/0005_lease_epochs.sql"),
    include_str!("../migrations/0006_openings.sql"),
    include_str!("../migrations/0007_console.sql"),
    include_str!("../migrations/0008_event_log.sql"),
    include_str!("../migrations/0009_listing_counts_planned_once.sql"),
];

/// The most events one commit may append: an event's `seq` is `base + xid × this + i`
/// (migration 8), so the seqs of one transaction never reach into the next one's.
pub(crate) const EVENTS_PER_COMMIT: i64 = 65_536;

/// The newest schema version this build writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// A schema name: a plain identifier, so it can be written into statements unquoted.
pub(crate) fn check_name(schema: &str) -> Result<(), PgError> {
    let mut chars = schema.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && schema.len() <= 40 {
        Ok(())
    } else {
        Err(PgError::SchemaName(schema.to_owned()))
    }
}

/// Bring `schema` to [`SCHEMA_VERSION`], or refuse it if it is newer.
pub(crate) async fn migrate(client: &mut Client, schema: &str) -> Result<(), PgError> {
    let tx = client.transaction().await.map_err(PgError::Query)?;
    // One migrator at a time per schema, for this transaction only.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('protopay-migrate:' || $1))",
        &[&schema],
    )
    .await
    .map_err(PgError::Query)?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.schema_version (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    ))
    .await
    .map_err(PgError::Query)?;
    let row = tx
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {schema}.schema_version"),
            &[],
        )
        .await
        .map_err(PgError::Query)?;
    let found: i32 = row.get(0);
    if found > SCHEMA_VERSION {
        return Err(PgError::NewerSchema {
            schema: schema.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        let version = i as i32 + 1;
        tracing::info!(schema, version, "applying protopay migration");
        tx.batch_execute(&migration.replace("{schema}", schema))
            .await
            .map_err(PgError::Query)?;
        match version {
            2 => fill_read_model_columns(&tx, schema).await?,
            7 => fill_audit_column(&tx, schema).await?,
            _ => {}
        }
        tx.execute(
            &format!("INSERT INTO {schema}.schema_version (version) VALUES ($1)"),
            &[&version],
        )
        .await
        .map_err(PgError::Query)?;
    }
    keep_seqs_growing(&tx, schema).await?;
    fold_listing_counts(&tx, schema).await?;
    tx.commit().await.map_err(PgError::Query)
}

/// Fold the listing counts of backends that have gone (and the shared shards of schema 4–7)
/// into shard 0: the sum is unchanged, and the rows stay about one per live backend. A row
/// of a live backend is never touched, so no commit waits for this.
async fn fold_listing_counts(tx: &tokio_postgres::Transaction<'_>, schema: &str) -> Result<(), PgError> {
    tx.execute(
        &format!(
            "WITH gone AS ( \
                 DELETE FROM {schema}.listing_counts \
                 WHERE shard <> 0 AND shard NOT IN (SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL) \
                 RETURNING listing, n) \
             INSERT INTO {schema}.listing_counts AS c (listing, shard, n) \
             SELECT listing, 0, sum(n) FROM gone GROUP BY listing \
             ON CONFLICT (listing, shard) DO UPDATE SET n = c.n + EXCLUDED.n"
        ),
        &[],
    )
    .await
    .map_err(PgError::Query)?;
    Ok(())
}

/// Make every seq written from now on larger than every seq stored. Transaction ids only grow
/// within one cluster, so this changes nothing there; but a store restored into another
/// cluster (`pg_dump`, then `pg_restore`) meets xids that start again from small numbers, and
/// its new events would get seqs below the old ones — below every consumer's cursor, so never
/// delivered. Raising `base` past the newest seq prevents that. Runs under the migration lock,
/// in a transaction whose xid is smaller than any later commit's.
async fn keep_seqs_growing(tx: &tokio_postgres::Transaction<'_>, schema: &str) -> Result<(), PgError> {
    let raised = tx
        .execute(
            &format!(
                "UPDATE {schema}.seq_base SET base = newest + 1 - pg_current_xact_id()::text::bigint * {EVENTS_PER_COMMIT} \
                 FROM (SELECT max(seq) AS newest FROM {schema}.events) e \
                 WHERE newest >= base + pg_current_xact_id()::text::bigint * {EVENTS_PER_COMMIT}"
            ),
            &[],
        )
        .await
        .map_err(PgError::Query)?;
    if raised > 0 {
        tracing::warn!(
            schema,
            "events stored above this cluster's transaction ids (a restore?): seqs continue after the newest"
        );
    }
    Ok(())
}

/// Migration 2's step that SQL cannot do: the new columns of rows written before it, from
/// the MessagePack records.
async fn fill_read_model_columns(tx: &tokio_postgres::Transaction<'_>, schema: &str) -> Result<(), PgError> {
    use protopay_engine::domain::Order;
    use protopay_engine::event::Event;
    let orders = tx
        .query(&format!("SELECT out_req_no, value FROM {schema}.orders"), &[])
        .await
        .map_err(PgError::Query)?;
    let update = format!("UPDATE {schema}.orders SET status = $2, attention = $3 WHERE out_req_no = $1");
    for row in orders {
        let key: &str = row.get(0);
        let order: Order = crate::codec::decode("orders", key, row.get(1))?;
        let (status, attention) = order_columns(&order);
        tx.execute(&update, &[&key, &status, &attention])
            .await
            .map_err(PgError::Query)?;
    }
    let events = tx
        .query(&format!("SELECT seq, value FROM {schema}.events"), &[])
        .await
        .map_err(PgError::Query)?;
    let update = format!("UPDATE {schema}.events SET out_req_no = $2 WHERE seq = $1");
    for row in events {
        let seq: i64 = row.get(0);
        let event: Event = crate::codec::decode("events", &seq.to_string(), row.get(1))?;
        if event.out_req_no.is_some() {
            tx.execute(&update, &[&seq, &event.out_req_no])
                .await
                .map_err(PgError::Query)?;
        }
    }
    tx.batch_execute(&format!("ALTER TABLE {schema}.orders ALTER COLUMN status SET NOT NULL"))
        .await
        .map_err(PgError::Query)
}

/// Migration 7's step: mark the audit records among the events written before it.
async fn fill_audit_column(tx: &tokio_postgres::Transaction<'_>, schema: &str) -> Result<(), PgError> {
    use protopay_engine::event::Event;
    let events = tx
        .query(&format!("SELECT seq, value FROM {schema}.events"), &[])
        .await
        .map_err(PgError::Query)?;
    let mut audit: Vec<i64> = Vec::new();
    for row in events {
        let seq: i64 = row.get(0);
        let event: Event = crate::codec::decode("events", &seq.to_string(), row.get(1))?;
        if event.kind.is_audit() {
            audit.push(seq);
        }
    }
    let update = format!("UPDATE {schema}.events SET audit = true WHERE seq = ANY($1)");
    tx.execute(&update, &[&audit]).await.map_err(PgError::Query)?;
    Ok(())
}

/// The columns of an order that its listings are found by: the name of its status's listing,
/// and whether it needs attention.
pub(crate) fn order_columns(order: &protopay_engine::domain::Order) -> (&'static str, bool) {
    use protopay_engine::domain::Listing;
    let attention = order.listings().any(|l| l == Listing::NeedsAttention);
    (Listing::Status(order.status).name(), attention)
}

/// Every statement, written once for the configured schema.
#[derive(Debug)]
pub(crate) struct Statements {
    pub protocol: String,
    pub order: String,
    pub protocols: String,
    pub history: String,
    pub audit: String,
    pub exchanges: String,
    pub insert_exchanges: String,
    pub due_at: String,
    pub listing_counts: String,
    pub insert_protocol: String,
    pub update_protocol: String,
    pub insert_order: String,
    pub update_order: String,
    pub schedule: String,
    pub unschedule: String,
    pub orphan: String,
    pub append_events: String,
    pub last_seq: String,
    pub due: String,
    pub claim_due: String,
    pub next_due: String,
    pub release_all: String,
    pub hold_lease: String,
    pub release_leases: String,
    pub events_after: String,
    pub count_after: String,
    pub events_before: String,
    pub cursor: String,
    pub ack: String,
    pub orphans: String,
    pub insert_opening: String,
    pub opening: String,
    /// The `LISTEN`/`NOTIFY` channel of this schema.
    pub channel: String,
}

impl Statements {
    /// A page of orders: only the conditions asked for, so that each shape is planned on its
    /// own index (by protocol, by status, needing attention, or the primary key). Parameters:
    /// `$1` the cursor, `$2` the limit, then the `transNo` and the status name when asked for.
    pub(crate) fn orders(s: &str, query: &protopay_engine::storage::OrderQuery) -> String {
        use protopay_engine::domain::Listing;
        let mut sql = format!("SELECT version, value, out_req_no FROM {s}.orders WHERE out_req_no > $1");
        let mut next = 3;
        if query.trans_no.is_some() {
            sql.push_str(&format!(" AND trans_no = ${next}"));
            next += 1;
        }
        match query.listing {
            Some(Listing::NeedsAttention) => sql.push_str(" AND attention"),
            Some(Listing::Status(_)) => sql.push_str(&format!(" AND status = ${next}")),
            None => {}
        }
        sql.push_str(" ORDER BY out_req_no LIMIT $2");
        sql
    }

    pub(crate) fn new(s: &str) -> Self {
        Statements {
            protocol: format!("SELECT version, value FROM {s}.protocols WHERE trans_no = $1"),
            order: format!("SELECT version, value FROM {s}.orders WHERE out_req_no = $1"),
            protocols: format!(
                "SELECT version, value, trans_no FROM {s}.protocols WHERE trans_no > $1 ORDER BY trans_no LIMIT $2"
            ),
            history: format!(
                "SELECT seq, value FROM {s}.events WHERE out_req_no = $1 AND out_req_no IS NOT NULL ORDER BY seq"
            ),
            audit: format!("SELECT seq, value FROM {s}.events WHERE audit AND seq < $1 ORDER BY seq DESC LIMIT $2"),
            exchanges: format!("SELECT value FROM {s}.exchanges WHERE out_req_no = $1 ORDER BY id"),
            // Each row is kept while its order has fewer than $3 exchanges, counting those
            // stored and those before it in this insert.
            insert_exchanges: format!(
                "INSERT INTO {s}.exchanges (out_req_no, value) \
                 SELECT x.o, x.v FROM unnest($1::text[], $2::bytea[]) WITH ORDINALITY AS x(o, v, i) \
                 WHERE (SELECT count(*) FROM {s}.exchanges e WHERE e.out_req_no = x.o) \
                     + (SELECT count(*) FROM unnest($1::text[]) WITH ORDINALITY AS y(o, j) WHERE y.o = x.o AND y.j < x.i) \
                     < $3 \
                 ORDER BY x.i"
            ),
            due_at: format!("SELECT at FROM {s}.due WHERE out_req_no = $1"),
            listing_counts: format!("SELECT listing, sum(n)::bigint FROM {s}.listing_counts GROUP BY listing"),
            insert_protocol: format!(
                "INSERT INTO {s}.protocols (trans_no, version, value) VALUES ($1, 1, $2) ON CONFLICT DO NOTHING"
            ),
            update_protocol: format!(
                "UPDATE {s}.protocols SET version = version + 1, value = $3 WHERE trans_no = $1 AND version = $2"
            ),
            insert_order: format!(
                "INSERT INTO {s}.orders (out_req_no, trans_no, version, value, status, attention) \
                 VALUES ($1, $2, 1, $3, $4, $5) ON CONFLICT DO NOTHING"
            ),
            update_order: format!(
                "UPDATE {s}.orders SET version = version + 1, value = $3, status = $5, attention = $6 \
                 WHERE out_req_no = $1 AND version = $2 AND trans_no = $4"
            ),
            // A rewritten schedule ends any claim on the order.
            schedule: format!(
                "INSERT INTO {s}.due (out_req_no, at) VALUES ($1, $2) ON CONFLICT (out_req_no) \
                 DO UPDATE SET at = EXCLUDED.at, leased_by = NULL, leased_until = NULL"
            ),
            unschedule: format!("DELETE FROM {s}.due WHERE out_req_no = $1"),
            orphan: format!("INSERT INTO {s}.orphans (sign, value) VALUES ($1, $2) ON CONFLICT DO NOTHING"),
            // Each event's seq from the writing transaction's id (migration 8); the last one
            // comes back.
            append_events: format!(
                "WITH appended AS ( \
                     INSERT INTO {s}.events (seq, value, out_req_no, audit) \
                     SELECT b.base + pg_current_xact_id()::text::bigint * {EVENTS_PER_COMMIT} + x.i - 1, x.v, x.o, x.a \
                     FROM {s}.seq_base b, unnest($1::bytea[], $2::text[], $3::boolean[]) WITH ORDINALITY AS x(v, o, a, i) \
                     RETURNING seq) \
                 SELECT max(seq) FROM appended"
            ),
            last_seq: format!("SELECT coalesce(max(seq), 0) FROM {s}.events"),
            due: format!("SELECT at, out_req_no FROM {s}.due WHERE at <= $1 ORDER BY at, out_req_no LIMIT $2"),
            // A claim skips rows another claim or commit holds right now (SKIP LOCKED) and
            // rows leased to another live owner; lease times are the database's clock, one
            // clock for every instance.
            claim_due: format!(
                "WITH picked AS ( \
                     SELECT out_req_no FROM {s}.due \
                     WHERE at <= $1 AND (leased_by IS NULL OR leased_by = $2 OR leased_until <= clock_timestamp()) \
                     ORDER BY at, out_req_no LIMIT $3 FOR UPDATE SKIP LOCKED) \
                 UPDATE {s}.due d SET leased_by = $2, \
                     leased_until = clock_timestamp() + $4 * interval '1 millisecond' \
                 FROM picked WHERE d.out_req_no = picked.out_req_no \
                 RETURNING d.at, d.out_req_no"
            ),
            next_due: format!(
                "SELECT at FROM {s}.due \
                 WHERE leased_by IS NULL OR leased_by = $1 OR leased_until <= clock_timestamp() \
                 ORDER BY at LIMIT 1"
            ),
            release_all: format!("UPDATE {s}.due SET leased_by = NULL, leased_until = NULL WHERE leased_by = $1"),
            // Taken when free, run out, or already the owner's (then renewed); a row comes
            // back, with the fencing epoch, only when the owner holds it. The epoch grows when
            // the lease changes hands; releasing ends the lease but keeps the row, so it never
            // goes back.
            hold_lease: format!(
                "INSERT INTO {s}.leases (name, owner, until, epoch) \
                 VALUES ($1, $2, clock_timestamp() + $3 * interval '1 millisecond', 1) \
                 ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, until = EXCLUDED.until, \
                 epoch = CASE WHEN {s}.leases.owner = EXCLUDED.owner THEN {s}.leases.epoch \
                 ELSE {s}.leases.epoch + 1 END \
                 WHERE {s}.leases.owner = EXCLUDED.owner OR {s}.leases.until <= clock_timestamp() \
                 RETURNING epoch"
            ),
            release_leases: format!("UPDATE {s}.leases SET until = clock_timestamp() WHERE owner = $1"),
            // Only events below the delivery horizon: those of transactions older than every
            // one still in progress (migration 8), so a late commit is waited for, not skipped.
            events_after: format!(
                "SELECT seq, value FROM {s}.events \
                 WHERE seq > $1 AND seq < (SELECT base + pg_snapshot_xmin(pg_current_snapshot())::text::bigint * {EVENTS_PER_COMMIT} FROM {s}.seq_base) \
                 ORDER BY seq LIMIT $2"
            ),
            count_after: format!("SELECT count(*) FROM (SELECT 1 FROM {s}.events WHERE seq > $1 LIMIT $2) e"),
            events_before: format!("SELECT seq, value FROM {s}.events WHERE seq < $1 ORDER BY seq DESC LIMIT $2"),
            cursor: format!("SELECT seq FROM {s}.cursors WHERE consumer = $1"),
            ack: format!(
                "INSERT INTO {s}.cursors (consumer, seq) \
                 SELECT $1, least($2, coalesce(max(seq), 0)) FROM {s}.events \
                 ON CONFLICT (consumer) DO UPDATE SET seq = greatest({s}.cursors.seq, EXCLUDED.seq)"
            ),
            orphans: format!("SELECT value, sign FROM {s}.orphans ORDER BY added"),
            insert_opening: format!(
                "INSERT INTO {s}.openings (idempotency_key, trans_no) VALUES ($1, $2) ON CONFLICT DO NOTHING"
            ),
            opening: format!("SELECT trans_no FROM {s}.openings WHERE idempotency_key = $1"),
            channel: format!("protopay_{s}"),
        }
    }
}
