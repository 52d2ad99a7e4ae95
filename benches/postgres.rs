//! PostgreSQL benchmarks, each beside its floor in the same run, on the server of
//! `PROTOPAY_PG_URL` (or a throwaway cluster started from the machine's binaries):
//! - a durable engine commit vs a bare transaction writing the same rows, 1 and 64 callers;
//! - callbacks per second through one engine, and through three (each its own pool and
//!   listener, as separate processes have) on one database, with the mean number of backends
//!   waiting on a lock meanwhile;
//! - what idle engines cost the database: transactions per second with none, one and three
//!   engines polling, nothing due;
//! - the due-claim query with 10 k, 100 k (and, with `PROTOPAY_BENCH_LARGE=1`, 1 M) orders.
//!
//! `cargo bench --bench postgres`; `PROTOPAY_BENCH_ONLY=commits` (or `idle`, `callbacks`,
//! `claims`) runs only that part.

use protopay::storage::conformance::{sample_inbound, sample_protocol};
use protopay::storage::{Batch, Put, Storage};
use protopay::testing::Offline;
use protopay::wire::{CallbackKind, Envelope};
use protopay::{Config, Engine, Event, EventKind, Md5Key, Source, Status};
use protopay_storage_postgres::testing::{self, LockWaits};
use protopay_storage_postgres::{PostgresOptions, PostgresStorage};
use std::sync::Arc;
use std::time::{Duration, Instant};

const APP: &str = "APP001";
const KEY: &str = "bench-key";
const CALLERS: usize = 64;
const RUN: Duration = Duration::from_secs(3);

async fn open(url: &str, tag: &str) -> (PostgresStorage, String) {
    let schema = testing::schema(tag);
    let store = PostgresStorage::open(PostgresOptions {
        schema: schema.clone(),
        pool_size: CALLERS,
        ..PostgresOptions::new(url)
    })
    .await
    .expect("postgres");
    (store, schema)
}

fn event(key: &str) -> Event {
    Event {
        seq: 0,
        at: chrono::Utc::now(),
        trans_no: Some("T1".into()),
        out_req_no: Some(key.into()),
        source: Source::Engine,
        kind: EventKind::Pending {
            status: Status::Processing,
        },
    }
}

/// Operations per second of `op(caller, i)` run by `callers` tasks for [`RUN`].
async fn rate<F, Fut>(callers: usize, op: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let end = Instant::now() + RUN;
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < end {
                    op(c, n).await;
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task");
    }
    total as f64 / RUN.as_secs_f64()
}

/// One order per caller, each commit moving its own order on: the engine's commit (order
/// update, event, schedule, seq, settle id, notify) vs a bare transaction of the same writes.
async fn commits(url: &str) {
    let (store, schema) = open(url, "bench_commit").await;
    let store = Arc::new(store);
    let mut orders = Vec::new();
    for c in 0..CALLERS {
        orders.push(Put {
            expected: None,
            value: sample_inbound("T1", &format!("{APP}-c-{c}"), 100),
        });
    }
    store
        .commit(Batch {
            orders,
            ..Default::default()
        })
        .await
        .expect("fill");
    let pool = {
        let config: tokio_postgres::Config = url.parse().expect("url");
        let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
        deadpool_postgres::Pool::builder(manager)
            .max_size(CALLERS)
            .build()
            .expect("pool")
    };
    // Each caller's record as the store keeps it, so both sides write the same bytes.
    let values: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..CALLERS)
            .map(|c| stored_bytes(&sample_inbound("T1", &format!("{APP}-c-{c}"), 100)))
            .collect(),
    );
    for callers in [1, CALLERS] {
        let s = store.clone();
        let ours = rate(callers, move |c, n| {
            let s = s.clone();
            async move {
                let key = format!("{APP}-c-{c}");
                let current = s.order(&key).await.expect("read").expect("order");
                let batch = Batch {
                    orders: vec![Put {
                        expected: Some(current.version),
                        value: current.value,
                    }],
                    events: vec![event(&key)],
                    schedule: vec![(key, Some(chrono::Utc::now() + chrono::Duration::seconds(n as i64 % 60)))],
                    ..Default::default()
                };
                s.commit(batch).await.expect("commit");
            }
        })
        .await;
        {
            let (pool, schema, values) = (pool.clone(), schema.clone(), values.clone());
            let floor = rate(callers, move |c, _| {
                let (pool, schema, values) = (pool.clone(), schema.clone(), values.clone());
                async move {
                    let key = format!("{APP}-c-{c}");
                    let mut client = pool.get().await.expect("conn");
                    let tx = client.transaction().await.expect("begin");
                    let read = tx
                        .prepare_cached(&format!("SELECT version FROM {schema}.orders WHERE out_req_no = $1"))
                        .await
                        .expect("prepare");
                    let version: i64 = tx.query_one(&read, &[&key]).await.expect("read").get(0);
                    let update = tx
                        .prepare_cached(&format!(
                            "UPDATE {schema}.orders SET version = version + 1, value = $3 WHERE out_req_no = $1 AND version = $2"
                        ))
                        .await
                        .expect("prepare");
                    tx.execute(&update, &[&key, &version, &values[c]]).await.expect("update");
                    let due = tx
                        .prepare_cached(&format!(
                            "INSERT INTO {schema}.due (out_req_no, at) VALUES ($1, now()) \
                             ON CONFLICT (out_req_no) DO UPDATE SET at = EXCLUDED.at"
                        ))
                        .await
                        .expect("prepare");
                    tx.execute(&due, &[&key]).await.expect("due");
                    // The event's seq from the transaction's id, as the store numbers it.
                    let ev = tx
                        .prepare_cached(&format!(
                            "INSERT INTO {schema}.events (seq, value) \
                             VALUES (pg_current_xact_id()::text::bigint * 65536, $1)"
                        ))
                        .await
                        .expect("prepare");
                    tx.execute(&ev, &[&values[c]]).await.expect("event");
                    tx.commit().await.expect("commit");
                }
            })
            .await;
            println!(
                "durable commit on postgres, {callers:>2} caller(s): ours {ours:>6.0}/s, bare transaction of the same rows {floor:>6.0}/s, ratio {:.2} (goal ≥ 0.7)",
                ours / floor
            );
        }
    }
}

/// The bytes of a record as the store keeps them (MessagePack, named fields).
fn stored_bytes(order: &protopay::Order) -> Vec<u8> {
    rmp_serde::to_vec_named(order).expect("encode")
}

/// Advancing callbacks (UNPAID → SUCCESS, one per order, orders spread over 64 protocols)
/// through one engine, then through two engines on the same database.
async fn callbacks(url: &str) {
    for instances in [1usize, 3] {
        let (store, schema) = open(url, "bench_cb").await;
        let n = 4_000;
        let mut batch = Batch::default();
        for p in 0..64 {
            batch.protocols.push(Put {
                expected: None,
                value: sample_protocol(&format!("T{p}")),
            });
        }
        for i in 0..n {
            let mut o = sample_inbound(&format!("T{}", i % 64), &format!("{APP}-cb-{i}"), 100);
            o.status = Status::Unpaid;
            batch.orders.push(Put {
                expected: None,
                value: o,
            });
        }
        store.commit(batch).await.expect("fill");
        let engines = engines(url, &schema, instances, CALLERS / instances).await;
        let bodies: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let data = serde_json::json!({"transNo": format!("T{}", i % 64), "appId": APP, "amount": "1.00",
                    "outReqNo": format!("{APP}-cb-{i}"), "payStatus": "SUCCESS", "arrivedStatus": "01"});
                Envelope::reply(
                    APP,
                    "0000",
                    "SUCCESS",
                    data.to_string(),
                    "20261127120000000".into(),
                    &Md5Key::new(KEY),
                )
                .to_json()
                .into_bytes()
            })
            .collect();
        let bodies = Arc::new(bodies);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let lock_waits = LockWaits::start(url).await;
        let start = Instant::now();
        let tasks: Vec<_> = (0..CALLERS)
            .map(|c| {
                let (bodies, next, engine) = (bodies.clone(), next.clone(), engines[c % instances].clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(body) = bodies.get(i) else { break };
                        let reply = engine.handle_callback(CallbackKind::InboundPay, body).await;
                        assert!(reply.is_success(), "{}", reply.body);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
        let per_sec = n as f64 / start.elapsed().as_secs_f64();
        let waiting = lock_waits.stop().await;
        println!(
            "advancing callbacks on postgres, {instances} instance(s), {CALLERS} callers: {per_sec:>6.0}/s, backends waiting on a lock: {waiting:.2} (mean)"
        );
        for e in engines {
            e.shutdown().await.expect("shutdown");
        }
    }
}

/// `instances` engines on `schema`, each with its own store (pool and listener), as separate
/// processes would have.
async fn engines(url: &str, schema: &str, instances: usize, pool_size: usize) -> Vec<Engine> {
    let mut engines = Vec::new();
    for id in 0..instances {
        let store = PostgresStorage::open(PostgresOptions {
            schema: schema.to_owned(),
            pool_size,
            ..PostgresOptions::new(url)
        })
        .await
        .expect("postgres");
        let config = Config::new(APP, Md5Key::new(KEY), "http://pay.invalid", "http://host.invalid/n");
        engines.push(
            Engine::builder(config)
                .storage(store)
                .transport(Offline)
                .id_seed(id as u64 + 1)
                .build()
                .await
                .expect("engine"),
        );
    }
    engines
}

/// What idle engines cost the database: transactions per second (`pg_stat_database`) with
/// none, one and three engines running their pollers, 200 orders scheduled a day ahead and
/// nothing due, over 10 s once the engines' start has settled. Run first, before any load
/// leaves the autovacuum busy; "none" is the database's own background.
async fn idle(url: &str) {
    for instances in [0usize, 1, 3] {
        let (store, schema) = open(url, "bench_idle").await;
        let mut batch = Batch::default();
        for i in 0..200 {
            let key = format!("{APP}-idle-{i}");
            batch.orders.push(Put {
                expected: None,
                value: sample_inbound("T1", &key, 100),
            });
            batch
                .schedule
                .push((key, Some(chrono::Utc::now() + chrono::Duration::days(1))));
        }
        store.commit(batch).await.expect("fill");
        let engines = engines(url, &schema, instances, 4).await;
        let pollers: Vec<_> = engines.iter().map(|e| e.spawn_poller()).collect();
        // A backend reports its transactions when it goes idle, but at most every 10 s
        // (PostgreSQL's `PGSTAT_IDLE_INTERVAL`): wait that out, or the start's queries would
        // be counted in the window.
        tokio::time::sleep(Duration::from_secs(12)).await;
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        let count =
            "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = current_database()";
        client
            .execute("SELECT pg_stat_clear_snapshot()", &[])
            .await
            .expect("clear");
        let before: i64 = client.query_one(count, &[]).await.expect("count").get(0);
        let window = Duration::from_secs(10);
        tokio::time::sleep(window).await;
        client
            .execute("SELECT pg_stat_clear_snapshot()", &[])
            .await
            .expect("clear");
        let after: i64 = client.query_one(count, &[]).await.expect("count").get(0);
        // Each of our two statistics reads is a transaction too.
        let per_sec = (after - before - 1) as f64 / window.as_secs_f64();
        println!("idle on postgres, {instances} engine(s) polling, nothing due: {per_sec:>5.1} transactions/s");
        for p in pollers {
            p.shutdown().await;
        }
        for e in engines {
            e.shutdown().await.expect("shutdown");
        }
    }
}

/// The claim the poller makes each tick, with `n` orders scheduled and 100 due.
async fn claims(url: &str, large: bool) {
    let sizes: &[i64] = if large {
        &[10_000, 100_000, 1_000_000]
    } else {
        &[10_000, 100_000]
    };
    for &n in sizes {
        let (store, schema) = open(url, "bench_claim").await;
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        client
            .batch_execute(&format!(
                "INSERT INTO {schema}.due (out_req_no, at) \
                   SELECT 'K' || g, now() + interval '1 day' FROM generate_series(1, {n} - 100) g; \
                 INSERT INTO {schema}.due (out_req_no, at) \
                   SELECT 'D' || g, now() - interval '1 minute' FROM generate_series(1, 100) g; \
                 ANALYZE {schema}.due;"
            ))
            .await
            .expect("fill");
        let now = chrono::Utc::now();
        for _ in 0..20 {
            store
                .claim_due("bench", now, 256, Duration::from_secs(20))
                .await
                .expect("warm up");
        }
        let reps = 200;
        let start = Instant::now();
        for _ in 0..reps {
            let due = store
                .claim_due("bench", now, 256, Duration::from_secs(20))
                .await
                .expect("claim");
            assert_eq!(due.len(), 100);
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / reps as f64;
        println!("due claim on postgres, {n:>8} orders, 100 due: {us:>8.1} µs");
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let Some(url) = testing::url() else { return };
    let large = std::env::var("PROTOPAY_BENCH_LARGE").is_ok();
    let only = std::env::var("PROTOPAY_BENCH_ONLY").unwrap_or_default();
    let wanted = |name: &str| name.contains(only.as_str());
    rt.block_on(async {
        if wanted("idle") {
            idle(&url).await;
        }
        if wanted("commits") {
            commits(&url).await;
        }
        if wanted("callbacks") {
            callbacks(&url).await;
        }
        if wanted("claims") {
            claims(&url, large).await;
        }
    });
}
