//! The schema: versioned migrations applied on open, and the statements that use it.
//!
//! Every table lives in one PostgreSQL schema (default `protopay`), so one database can hold
//! several engines side by side. Migrations run in one transaction under an advisory lock, so
//! that instances starting together take turns; a schema written by a newer build is refused.

use crate::PgError;
use tokio_postgres::Client;

/// The migrations, in order; version `i + 1` is `MIGRATIONS[i]`.
const MIGRATIONS: &[&str] = &[include_str!("../migrations/0001_init.sql")];

/// The newest schema version this build writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// A schema name: a plain identifier, so it can be written into statements unquoted.
pub fn check_name(schema: &str) -> Result<(), PgError> {
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
pub async fn migrate(client: &mut Client, schema: &str) -> Result<(), PgError> {
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
        tx.execute(
            &format!("INSERT INTO {schema}.schema_version (version) VALUES ($1)"),
            &[&version],
        )
        .await
        .map_err(PgError::Query)?;
    }
    tx.commit().await.map_err(PgError::Query)
}

/// Every statement, written once for the configured schema.
#[derive(Debug)]
pub struct Statements {
    pub protocol: String,
    pub order: String,
    pub orders_of: String,
    pub insert_protocol: String,
    pub update_protocol: String,
    pub insert_order: String,
    pub update_order: String,
    pub schedule: String,
    pub unschedule: String,
    pub orphan: String,
    pub take_seqs: String,
    pub append_events: String,
    pub last_seq: String,
    pub due: String,
    pub claim_due: String,
    pub next_due: String,
    pub release_claims: String,
    pub events_after: String,
    pub cursor: String,
    pub ack: String,
    pub orphans: String,
    /// The `LISTEN`/`NOTIFY` channel of this schema.
    pub channel: String,
}

impl Statements {
    pub fn new(s: &str) -> Self {
        Statements {
            protocol: format!("SELECT version, value FROM {s}.protocols WHERE trans_no = $1"),
            order: format!("SELECT version, value FROM {s}.orders WHERE out_req_no = $1"),
            orders_of: format!(
                "SELECT version, value, out_req_no FROM {s}.orders WHERE trans_no = $1 ORDER BY out_req_no"
            ),
            insert_protocol: format!(
                "INSERT INTO {s}.protocols (trans_no, version, value) VALUES ($1, 1, $2) ON CONFLICT DO NOTHING"
            ),
            update_protocol: format!(
                "UPDATE {s}.protocols SET version = version + 1, value = $3 WHERE trans_no = $1 AND version = $2"
            ),
            insert_order: format!(
                "INSERT INTO {s}.orders (out_req_no, trans_no, version, value) VALUES ($1, $2, 1, $3) \
                 ON CONFLICT DO NOTHING"
            ),
            update_order: format!(
                "UPDATE {s}.orders SET version = version + 1, value = $3 \
                 WHERE out_req_no = $1 AND version = $2 AND trans_no = $4"
            ),
            // A rewritten schedule ends any claim on the order.
            schedule: format!(
                "INSERT INTO {s}.due (out_req_no, at) VALUES ($1, $2) ON CONFLICT (out_req_no) \
                 DO UPDATE SET at = EXCLUDED.at, leased_by = NULL, leased_until = NULL"
            ),
            unschedule: format!("DELETE FROM {s}.due WHERE out_req_no = $1"),
            orphan: format!("INSERT INTO {s}.orphans (sign, value) VALUES ($1, $2) ON CONFLICT DO NOTHING"),
            take_seqs: format!("UPDATE {s}.counter SET last_seq = last_seq + $1 RETURNING last_seq"),
            append_events: format!(
                "INSERT INTO {s}.events (seq, value) SELECT * FROM unnest($1::bigint[], $2::bytea[])"
            ),
            last_seq: format!("SELECT last_seq FROM {s}.counter"),
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
            release_claims: format!("UPDATE {s}.due SET leased_by = NULL, leased_until = NULL WHERE leased_by = $1"),
            events_after: format!("SELECT seq, value FROM {s}.events WHERE seq > $1 ORDER BY seq LIMIT $2"),
            cursor: format!("SELECT seq FROM {s}.cursors WHERE consumer = $1"),
            ack: format!(
                "INSERT INTO {s}.cursors (consumer, seq) \
                 SELECT $1, least($2, last_seq) FROM {s}.counter \
                 ON CONFLICT (consumer) DO UPDATE SET seq = greatest({s}.cursors.seq, EXCLUDED.seq)"
            ),
            orphans: format!("SELECT value, sign FROM {s}.orphans ORDER BY added"),
            channel: format!("protopay_{s}"),
        }
    }
}
