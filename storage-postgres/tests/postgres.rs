//! The PostgreSQL store against a real server (see `testing::url`): the engine's conformance
//! suite, reopening, the event log under interleaved commits, a connection cut during
//! `COMMIT` (both outcomes), schema versions, concurrent opens, and cross-instance hints.

use protopay_engine::storage::conformance::{self, sample_inbound};
use protopay_engine::storage::{Announced, Batch, Put, Storage, StorageError};
use protopay_engine::{EventKind, Source};
use protopay_storage_postgres::{Cause, PgError, PostgresOptions, PostgresStorage, SessionLimits, testing};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn open(url: &str, schema: &str) -> PostgresStorage {
    PostgresStorage::open(PostgresOptions {
        schema: schema.to_owned(),
        pool_size: 8,
        ..PostgresOptions::new(url)
    })
    .await
    .unwrap()
}

/// Open from a synchronous closure (the conformance suite's signature).
fn open_blocking(url: &str, schema: &str) -> PostgresStorage {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(open(url, schema)))
}

fn order_batch(key: &str) -> Batch {
    Batch {
        orders: vec![Put {
            expected: None,
            value: sample_inbound("T1", key, 100),
        }],
        events: vec![protopay_engine::Event {
            seq: 0,
            at: chrono::Utc::now(),
            trans_no: Some("T1".into()),
            out_req_no: Some(key.into()),
            source: Source::Engine,
            kind: EventKind::InboundRequested,
        }],
        ..Default::default()
    }
}

/// A plain connection of the test's own, beside the store's.
async fn raw(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// Wait, on the server's own account, until backend `pid` has ended.
async fn backend_gone(client: &tokio_postgres::Client, pid: i32) {
    loop {
        let alive = client
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .await
            .unwrap();
        if alive.get::<_, i64>(0) == 0 {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// Commit one new order (and its event) in the background.
fn spawn_commit(
    s: &PostgresStorage,
    key: &'static str,
) -> tokio::task::JoinHandle<protopay_engine::storage::Result<u64>> {
    let s = s.clone();
    tokio::spawn(async move { s.commit(order_batch(key)).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_storage_conforms() {
    let Some(url) = testing::url() else { return };
    conformance::run(|| open_blocking(&url, &testing::schema("conform"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_storage_survives_reopen_with_a_new_pool() {
    let Some(url) = testing::url() else { return };
    let schema = testing::schema("reopen");
    conformance::reopen(|| open_blocking(&url, &schema)).await;
}

/// A commit that started later, so holds the later `seq`, commits first: its event is held
/// back until the earlier one has ended — never delivered before it, so a reader past it
/// could not skip the earlier one. The later commit itself waits for nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_seq_is_never_delivered_before_an_earlier_one() {
    let Some(url) = testing::url() else { return };
    let s = open(&url, &testing::schema("seq")).await;
    let held = s.hold_next_commit();
    let first = spawn_commit(&s, "A");
    held.backend_pid.await.unwrap();
    // The first commit holds the earlier seq, uncommitted; the second commits at once.
    let second = s.commit(order_batch("B")).await.unwrap();
    assert_eq!(s.last_seq().await.unwrap(), second, "written");
    assert!(s.events_after(0, 10).await.unwrap().is_empty(), "but not delivered");
    assert_eq!(s.count_after(0, 10).await.unwrap(), 1);
    held.release.send(()).unwrap();
    let first = first.await.unwrap().unwrap();
    assert!(first < second, "{first} < {second}");
    let events = conformance::delivered(&s, 0, 10).await;
    let seen: Vec<_> = events.iter().map(|e| (e.seq, e.out_req_no.clone().unwrap())).collect();
    assert_eq!(seen, [(first, "A".to_owned()), (second, "B".to_owned())]);
}

/// A commit's statements are sent in one go after `BEGIN`, so its connection is inside a
/// transaction until the store ends it. On a pool of one connection: a commit that loses a
/// race leaves it out of the transaction for the next; one whose caller goes away midway
/// (after everything but `COMMIT` was sent) never hands it on, so no later commit can carry
/// the abandoned writes into the database with its own `COMMIT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_loses_a_race_or_is_abandoned_leaves_no_open_transaction_behind() {
    let Some(url) = testing::url() else { return };
    let s = PostgresStorage::open(PostgresOptions {
        schema: testing::schema("abandon"),
        pool_size: 1,
        ..PostgresOptions::new(&url)
    })
    .await
    .unwrap();
    s.commit(order_batch("A")).await.unwrap();
    let raced = s.commit(order_batch("A")).await;
    assert!(matches!(raced, Err(StorageError::Conflict)), "{raced:?}");
    let held = s.hold_next_commit();
    let abandoned = spawn_commit(&s, "GONE");
    let pid = held.backend_pid.await.unwrap();
    abandoned.abort();
    assert!(abandoned.await.unwrap_err().is_cancelled());
    let kept = s.commit(order_batch("KEPT")).await.unwrap();
    assert!(s.order("KEPT").await.unwrap().is_some());
    assert!(s.order("GONE").await.unwrap().is_none(), "abandoned writes committed");
    let seqs: Vec<u64> = conformance::delivered(&s, 0, 10).await.iter().map(|e| e.seq).collect();
    assert_eq!(seqs.last(), Some(&kept));
    assert_eq!(seqs.len(), 2, "A's event and KEPT's: {seqs:?}");
    // The abandoned connection was closed, so the server rolled its transaction back.
    let client = raw(&url).await;
    backend_gone(&client, pid).await;
}

/// The connection dies before `COMMIT` reaches the server: the server aborts the
/// transaction, the store learns so, and reports a plain failure with nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_before_commit_is_a_failure_that_wrote_nothing() {
    let Some(url) = testing::url() else { return };
    let s = open(&url, &testing::schema("kill")).await;
    let held = s.hold_next_commit();
    let commit = spawn_commit(&s, "K");
    let pid = held.backend_pid.await.unwrap();
    let client = raw(&url).await;
    client
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    // Let the commit go on only once the backend is really gone.
    backend_gone(&client, pid).await;
    held.release.send(()).unwrap();
    let result = commit.await.unwrap();
    assert!(matches!(result, Err(StorageError::Failed(_))), "{result:?}");
    assert!(s.order("K").await.unwrap().is_none());
    assert_eq!(s.last_seq().await.unwrap(), 0);
}

/// The server commits but its answer never arrives (a proxy swallows it and cuts the
/// socket): the store asks the server how the transaction ended and reports success — not a
/// failure the engine would take for "nothing written".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_is_lost_is_settled_as_committed() {
    let Some(url) = testing::url() else { return };
    let proxy = Proxy::start(&url).await;
    let s = open(&proxy.url, &testing::schema("lost")).await;
    let held = s.hold_next_commit();
    let commit = spawn_commit(&s, "L");
    held.backend_pid.await.unwrap();
    proxy.cut_next_answer.store(true, Ordering::SeqCst);
    held.release.send(()).unwrap();
    let seq = commit.await.unwrap().unwrap();
    assert_eq!(s.last_seq().await.unwrap(), seq, "settled as committed");
    assert!(proxy.cuts.load(Ordering::SeqCst), "the answer was really lost");
    assert_eq!(s.order("L").await.unwrap().map(|o| o.version), Some(1));
}

/// A loopback TCP proxy in front of the server that can swallow the next answer and cut
/// that connection.
struct Proxy {
    url: String,
    cut_next_answer: Arc<AtomicBool>,
    cuts: Arc<AtomicBool>,
}

impl Proxy {
    async fn start(url: &str) -> Proxy {
        let config: tokio_postgres::Config = url.parse().unwrap();
        let tokio_postgres::config::Host::Tcp(host) = &config.get_hosts()[0] else {
            panic!("the proxy test needs a TCP server URL")
        };
        let upstream = format!("{host}:{}", config.get_ports()[0]);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut_next_answer = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicBool::new(false));
        let (armed, cut) = (cut_next_answer.clone(), cuts.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(&upstream).await.unwrap();
                let (armed, cut) = (armed.clone(), cut.clone());
                tokio::spawn(async move {
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    // Cut only an answer to `COMMIT`: the first server bytes after this
                    // connection, armed, sent one (earlier answers may still be in flight).
                    let committing = Arc::new(AtomicBool::new(false));
                    let seen = committing.clone();
                    let up_armed = armed.clone();
                    let up = tokio::spawn(async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n) = cr.read(&mut buf).await {
                            let chunk = &buf[..n];
                            if n == 0 || sw.write_all(chunk).await.is_err() {
                                break;
                            }
                            if up_armed.load(Ordering::SeqCst) && chunk.windows(6).any(|w| w == b"COMMIT") {
                                seen.store(true, Ordering::SeqCst);
                            }
                        }
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = sr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        if committing.load(Ordering::SeqCst) && armed.swap(false, Ordering::SeqCst) {
                            cut.store(true, Ordering::SeqCst);
                            break; // swallow the answer and drop both halves
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    up.abort();
                });
            }
        });
        let user = config.get_user().unwrap_or("postgres");
        let db = config.get_dbname().unwrap_or("postgres");
        Proxy {
            url: format!("postgres://{user}@127.0.0.1:{port}/{db}?sslmode=disable"),
            cut_next_answer,
            cuts,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_from_a_newer_build_is_refused() {
    let Some(url) = testing::url() else { return };
    let schema = testing::schema("newer");
    drop(open(&url, &schema).await);
    let client = raw(&url).await;
    client
        .execute(
            &format!("INSERT INTO {schema}.schema_version (version) VALUES (999)"),
            &[],
        )
        .await
        .unwrap();
    let refused = PostgresStorage::open(PostgresOptions {
        schema: schema.clone(),
        ..PostgresOptions::new(&url)
    })
    .await;
    assert!(
        matches!(refused, Err(PgError::NewerSchema { found: 999, .. })),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_migrate_once() {
    let Some(url) = testing::url() else { return };
    let schema = testing::schema("race");
    let opens = (0..4).map(|_| {
        let (url, schema) = (url.clone(), schema.clone());
        tokio::spawn(async move { open(&url, &schema).await })
    });
    for open in opens {
        open.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_schema_name_or_url_is_a_typed_error() {
    let bad = PostgresStorage::open(PostgresOptions {
        schema: "x; DROP TABLE y".into(),
        ..PostgresOptions::new("postgres://nobody@127.0.0.1:1/x")
    })
    .await;
    assert!(matches!(bad, Err(PgError::SchemaName(_))), "{bad:?}");
    let bad = PostgresStorage::open(PostgresOptions::new("postgres://u:secret@[::1")).await;
    let Err(e) = bad else { panic!("parsed") };
    assert!(!format!("{e} {e:?}").contains("secret"), "the password never shows");
}

/// A commit on one instance is announced on the other, saying what it did: no idle tick to
/// wait for, and nothing woken that it does not concern.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_on_one_instance_announces_what_it_did_to_the_other() {
    let Some(url) = testing::url() else { return };
    let schema = testing::schema("hint");
    let a = open(&url, &schema).await;
    let b = open(&url, &schema).await;
    let announced = b.commits_elsewhere().unwrap();
    // The listener announces everything once it listens: from then on nothing is missed.
    assert_eq!(announced.next().await, Announced::EVERYTHING);
    a.commit(order_batch("H")).await.unwrap();
    let events = Announced {
        events: true,
        soonest_due: None,
    };
    assert_eq!(announced.next().await, events);
    let soon = chrono::DateTime::from_timestamp_millis(1_764_417_600_123).unwrap();
    let later = soon + chrono::Duration::seconds(5);
    let mut batch = order_batch("H2");
    batch.schedule = vec![("H".into(), Some(later)), ("H2".into(), Some(soon))];
    a.commit(batch).await.unwrap();
    let due = Announced {
        events: true,
        soonest_due: Some(soon),
    };
    assert_eq!(announced.next().await, due);
}

/// The listening connection dies (a failover, a proxy timeout): the store reconnects and
/// listens again, and the next commit on another instance still hints this one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listener_reconnects_and_hints_again() {
    let Some(url) = testing::url() else { return };
    let schema = testing::schema("relisten");
    let a = open(&url, &schema).await;
    let b = open(&url, &schema).await;
    let announced = b.commits_elsewhere().unwrap();
    assert_eq!(announced.next().await, Announced::EVERYTHING);
    let client = raw(&url).await;
    let listening = format!("LISTEN protopay_{schema}");
    let listeners = "SELECT pid FROM pg_stat_activity WHERE query = $1 AND state = 'idle'";
    // Two stores listen on the schema; cut both.
    let pids: Vec<i32> = client
        .query(listeners, &[&listening])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(pids.len(), 2, "one listening connection per store");
    for pid in &pids {
        client.execute("SELECT pg_terminate_backend($1)", &[pid]).await.unwrap();
    }
    // Wait (on the server's account) until both listen again from new connections.
    loop {
        let now: Vec<i32> = client
            .query(listeners, &[&listening])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if now.len() == 2 && now.iter().all(|p| !pids.contains(p)) {
            break;
        }
        tokio::task::yield_now().await;
    }
    // b's reconnection announces everything, for what it may have missed meanwhile.
    assert_eq!(announced.next().await, Announced::EVERYTHING);
    a.commit(order_batch("R")).await.unwrap();
    assert!(announced.next().await.events);
}

/// Durable means durable: the store's sessions commit synchronously even when the URL (or
/// the server's default) says otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_commit_synchronously() {
    let Some(url) = testing::url() else { return };
    let separator = if url.contains('?') { '&' } else { '?' };
    let relaxed = format!("{url}{separator}options=-c%20synchronous_commit%3Doff");
    let s = open(&relaxed, &testing::schema("sync")).await;
    assert_eq!(s.setting("synchronous_commit").await, "on");
}

/// A record filed under another record's key is damage: reported, never used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_under_another_key_is_corrupt() {
    let Some(url) = testing::url() else { return };
    let schema = testing::schema("keyed");
    let s = open(&url, &schema).await;
    s.commit(order_batch("A")).await.unwrap();
    let client = raw(&url).await;
    client
        .execute(
            &format!(
                "INSERT INTO {schema}.orders SELECT 'B', trans_no, version, value, status, attention FROM {schema}.orders WHERE out_req_no = 'A'"
            ),
            &[],
        )
        .await
        .unwrap();
    assert!(s.order("A").await.unwrap().is_some());
    assert!(matches!(s.order("B").await, Err(StorageError::Corrupt { .. })));
}

/// A schema of version 1 (no read-model columns) is migrated with its rows: orders get the
/// listing of their status, events their order, from the records; the listings are counted;
/// a person's decision joins the audit trail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_schema_gets_its_read_model_columns_filled() {
    use protopay_engine::domain::{Listing, Status};
    use protopay_engine::storage::OrderQuery;
    let Some(url) = testing::url() else { return };
    let schema = testing::schema("v1");
    let client = raw(&url).await;
    let v1 = include_str!("../migrations/0001_init.sql").replace("{schema}", &schema);
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema};
             CREATE TABLE {schema}.schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
             INSERT INTO {schema}.schema_version (version) VALUES (1);
             {v1}"
        ))
        .await
        .unwrap();
    let batch = order_batch("o1");
    let order = rmp_serde::to_vec_named(&batch.orders[0].value).unwrap();
    let event = rmp_serde::to_vec_named(&batch.events[0]).unwrap();
    let decided = protopay_engine::event::Event {
        kind: protopay_engine::event::EventKind::OperatorResolved {
            status: Status::Failure,
            note: "never sent".into(),
            by: None,
        },
        ..batch.events[0].clone()
    };
    let decided = rmp_serde::to_vec_named(&decided).unwrap();
    client
        .execute(
            &format!("INSERT INTO {schema}.orders (out_req_no, trans_no, version, value) VALUES ('o1', 'T1', 1, $1)"),
            &[&order],
        )
        .await
        .unwrap();
    client
        .execute(
            &format!("INSERT INTO {schema}.events (seq, value) VALUES (1, $1), (2, $2)"),
            &[&event, &decided],
        )
        .await
        .unwrap();
    let store = open(&url, &schema).await;
    let query = OrderQuery {
        listing: Some(Listing::Status(Status::Requested)),
        trans_no: None,
    };
    let listed = store.orders(&query, None, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(store.history("o1").await.unwrap().len(), 2);
    let audit = store.audit(None, 10).await.unwrap();
    assert_eq!(audit.iter().map(|e| e.seq).collect::<Vec<_>>(), [2]);
    let counts = store.listing_counts().await.unwrap();
    let counted: Vec<(Listing, u64)> = counts.into_iter().filter(|(_, n)| *n > 0).collect();
    assert_eq!(counted, [(Listing::Status(Status::Requested), 1)]);
    // The event log goes on after the old seqs, and a consumer's cursor keeps its place.
    store.ack("hook", 1).await.unwrap();
    let next = store.commit(order_batch("o2")).await.unwrap();
    assert!(next > 2, "{next}");
    let after_cursor = conformance::delivered(&store, store.cursor("hook").await.unwrap(), 10).await;
    assert_eq!(after_cursor.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, next]);
    // The newest trigger counts on from the migrated counts.
    let counts = store.listing_counts().await.unwrap();
    let counted: Vec<(Listing, u64)> = counts.into_iter().filter(|(_, n)| *n > 0).collect();
    assert_eq!(counted, [(Listing::Status(Status::Requested), 2)]);
}

/// Each listing's count is kept per writing backend, so no commit waits on another's count
/// row; when the backends have gone, the next open folds their rows into one per listing,
/// and the counts stay what they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_counts_are_per_backend_and_folded_when_they_have_gone() {
    let Some(url) = testing::url() else { return };
    let schema = testing::schema("counts");
    let store = open(&url, &schema).await;
    let keys: Vec<&'static str> = vec!["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"];
    let commits: Vec<_> = keys.iter().map(|k| spawn_commit(&store, k)).collect();
    for c in commits {
        c.await.unwrap().unwrap();
    }
    let counts = store.listing_counts().await.unwrap();
    let client = raw(&url).await;
    let rows = format!("SELECT count(*) FROM {schema}.listing_counts");
    let spread: i64 = client.query_one(&rows, &[]).await.unwrap().get(0);
    store.close().await.unwrap();
    drop(store);
    // Wait (on the server's account) until the store's backends are gone.
    let ours =
        format!("SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE '%{schema}%'");
    while client.query_one(&ours, &[]).await.unwrap().get::<_, i64>(0) > 0 {
        tokio::task::yield_now().await;
    }
    let reopened = open(&url, &schema).await;
    assert_eq!(reopened.listing_counts().await.unwrap(), counts, "the sums are kept");
    let folded: i64 = client.query_one(&rows, &[]).await.unwrap().get(0);
    let listings: i64 = client
        .query_one(
            &format!("SELECT count(DISTINCT listing) FROM {schema}.listing_counts"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(folded, listings, "one row per listing once folded (from {spread})");
}

/// A store restored into another cluster meets transaction ids that start again from small
/// numbers (here: an event stored far above this cluster's). Opening it moves the seqs on past
/// the newest stored, so no consumer's cursor is left above every new event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seqs_keep_growing_after_a_restore_into_another_cluster() {
    let Some(url) = testing::url() else { return };
    let schema = testing::schema("restored");
    let store = open(&url, &schema).await;
    let first = store.commit(order_batch("a")).await.unwrap();
    let client = raw(&url).await;
    let far = i64::try_from(first).unwrap() + (1 << 40);
    let event = rmp_serde::to_vec_named(&order_batch("b").events[0]).unwrap();
    client
        .execute(
            &format!("INSERT INTO {schema}.events (seq, value) VALUES ($1, $2)"),
            &[&far, &event],
        )
        .await
        .unwrap();
    store.ack("hook", u64::try_from(far).unwrap()).await.unwrap();
    drop(store);
    let reopened = open(&url, &schema).await;
    let next = reopened.commit(order_batch("c")).await.unwrap();
    assert!(next > u64::try_from(far).unwrap(), "{next} after {far}");
    let delivered = conformance::delivered(&reopened, reopened.cursor("hook").await.unwrap(), 10).await;
    assert_eq!(delivered.iter().map(|e| e.seq).collect::<Vec<_>>(), [next]);
}

/// Every session carries the server-side bounds (statement, lock, idle in transaction), so
/// no stuck instance can hold locks for long; the defaults are what the docs say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_session_is_bounded() {
    let Some(url) = testing::url() else { return };
    let s = open(&url, &testing::schema("limits")).await;
    assert_eq!(s.setting("statement_timeout").await, "15s");
    assert_eq!(s.setting("lock_timeout").await, "5s");
    assert_eq!(s.setting("idle_in_transaction_session_timeout").await, "10s");
    let custom = PostgresStorage::open(PostgresOptions {
        schema: testing::schema("limits2"),
        limits: SessionLimits {
            statement_ms: 1_500,
            lock_ms: 250,
            idle_in_transaction_ms: 700,
            ..SessionLimits::default()
        },
        ..PostgresOptions::new(url.as_str())
    })
    .await
    .unwrap();
    assert_eq!(custom.setting("statement_timeout").await, "1500ms");
    assert_eq!(custom.setting("lock_timeout").await, "250ms");
    assert_eq!(custom.setting("idle_in_transaction_session_timeout").await, "700ms");
}

/// An instance frozen inside a transaction (here: held just before its `COMMIT`, with its
/// event written) delays only the *delivery* of later events, never another instance's
/// commits: they go through while it is frozen, their events held back behind it. The server
/// ends the frozen session after the idle-in-transaction timeout; delivery then resumes, and
/// the frozen commit, when it wakes, wrote nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_instance_delays_only_delivery_never_the_others_commits() {
    let Some(url) = testing::url() else { return };
    let schema = testing::schema("frozen");
    let bounded = || PostgresOptions {
        schema: schema.clone(),
        limits: SessionLimits {
            lock_ms: 300,
            idle_in_transaction_ms: 1_000,
            ..SessionLimits::default()
        },
        ..PostgresOptions::new(url.as_str())
    };
    let frozen = PostgresStorage::open(bounded()).await.unwrap();
    let other = PostgresStorage::open(bounded()).await.unwrap();
    let held = frozen.hold_next_commit();
    let stuck = spawn_commit(&frozen, "F");
    held.backend_pid.await.unwrap();
    // Frozen or not, the other instance commits: no row is shared by all commits. (The
    // bound only turns a hang into a failure of this test.)
    let bound = std::time::Duration::from_secs(30);
    let mut written = Vec::new();
    for key in ["O1", "O2", "O3"] {
        let commit = tokio::time::timeout(bound, other.commit(order_batch(key))).await;
        written.push(commit.expect("a commit waited for the frozen instance").unwrap());
    }
    assert!(
        other.events_after(0, 10).await.unwrap().is_empty(),
        "held back behind F"
    );
    assert!(!stuck.is_finished(), "F is still frozen");
    // The server ends the frozen session; delivery resumes without F's event (waited for on
    // the log itself: other tests' transactions may hold it back a moment longer).
    let delivered = conformance::delivered(&other, 0, 10).await;
    assert_eq!(delivered.iter().map(|e| e.seq).collect::<Vec<_>>(), written);
    held.release.send(()).unwrap();
    assert!(stuck.await.unwrap().is_err(), "the frozen commit wrote nothing");
    assert!(other.order("F").await.unwrap().is_none());
    assert!(other.order("O1").await.unwrap().is_some());
}

/// Waiting for a pooled connection is bounded too: a pool whose every connection is stuck
/// fails calls after `pool_wait_ms`, typed as a timeout, instead of queueing them for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_whose_connections_are_all_stuck_fails_fast() {
    let Some(url) = testing::url() else { return };
    let s = PostgresStorage::open(PostgresOptions {
        schema: testing::schema("poolwait"),
        pool_size: 1,
        limits: SessionLimits {
            pool_wait_ms: 200,
            ..SessionLimits::default()
        },
        ..PostgresOptions::new(url.as_str())
    })
    .await
    .unwrap();
    let held = s.hold_next_commit();
    let stuck = spawn_commit(&s, "P");
    held.backend_pid.await.unwrap();
    let started = std::time::Instant::now();
    let failed = s.order("P").await;
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    match failed {
        Err(StorageError::Failed(e)) => {
            let pg = e.downcast_ref::<PgError>().expect("a PgError");
            assert_eq!(pg.cause(), Cause::TimedOut, "{pg}");
        }
        other => panic!("expected a pool timeout, got {other:?}"),
    }
    held.release.send(()).unwrap();
    let seq = stuck.await.unwrap().unwrap();
    assert_eq!(s.last_seq().await.unwrap(), seq);
}

/// Nothing listening: a typed cause, not a bare "no connection".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_down_says_so() {
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = PostgresStorage::open(PostgresOptions::new(format!("postgres://nobody@127.0.0.1:{port}/none")))
        .await
        .unwrap_err();
    assert_eq!(e.cause(), Cause::ConnectionRefused, "{e}");
    assert!(e.is_transient());
    assert!(e.to_string().contains("connection refused"), "{e}");
}
