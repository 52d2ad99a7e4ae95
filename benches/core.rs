//! Micro-benchmarks, each beside its floor in the same run:
//! - verify (the signature check of a 1 KiB body) vs raw md5 of the same bytes;
//! - pure `apply` throughput;
//! - engine callback handling on `MemoryStorage` (duplicate and advancing);
//! - a durable engine commit on sled vs the physical floor — an append of the same bytes to
//!   a file on the same filesystem and one `fdatasync` — at 1 caller and at 64 callers sharing
//!   syncs, with commits per sync; and, as a second reference, vs a bare sled insert + flush;
//! - callbacks per second on sled with 64 concurrent callers.
//!
//! `cargo bench --bench core` — the ratios are printed at the end (and in the README).

/// The allocator `protopay serve` runs with (`cli/src/main.rs`), so that these figures are
/// the server's: the system allocator's, a third lower on sled, are in the README.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{BenchmarkId, Criterion};
use md5::{Digest, Md5};
use protopay::storage::conformance::{sample_inbound, sample_protocol};
use protopay::storage::{Batch, MemoryStorage, Put, Storage};
use protopay::testing::Offline;
use protopay::wire::{ArrivedStatus, CallbackKind, Envelope, InboundView, PayStatus};
use protopay::{Amount, Config, Engine, Event, EventKind, Md5Key, News, Observation, Source, Status};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const APP: &str = "APP001";
const TS: &str = "20261126120000123";

fn key() -> Md5Key {
    Md5Key::new("bench-key")
}

fn one_kib_data() -> String {
    let mut v = serde_json::json!({"transNo": "T1", "appId": APP, "amount": "100.00", "outReqNo": "APP001-in-1",
        "payStatus": "SUCCESS", "arrivedStatus": "02", "issuingBankZH": "中国工商银行", "channelReturnMsg": ""});
    let pad = 1024 - v.to_string().len();
    v["channelReturnMsg"] = serde_json::Value::String("x".repeat(pad));
    v.to_string()
}

fn signing(c: &mut Criterion) {
    let data = one_kib_data();
    let env = Envelope::request(APP, data.clone(), TS.into(), &key());
    let same_bytes = format!("{APP}&{data}&{TS}&bench-key");
    let mut g = c.benchmark_group("sign");
    g.bench_function("raw_md5_floor", |b| {
        b.iter(|| black_box(Md5::digest(black_box(same_bytes.as_bytes()))))
    });
    g.bench_function("verify", |b| b.iter(|| black_box(&env).verify(&key())));
    g.bench_function("sign", |b| {
        b.iter(|| protopay::wire::sign(APP, black_box(&data), TS, &key()))
    });
    g.finish();
}

fn observation(status: PayStatus, arrived: bool) -> Observation {
    let view = InboundView {
        trans_no: Some("T1".into()),
        app_id: Some(APP.into()),
        amount: Amount::parse("100.00").ok(),
        out_req_no: Some("APP001-in-1".into()),
        pay_order_no: Some("P1".into()),
        pay_status: Some(status),
        arrived_status: Some(if arrived {
            ArrivedStatus::Arrived
        } else {
            ArrivedStatus::NotArrived
        }),
        ..Default::default()
    };
    Observation::new(Source::Poll, News::Inbound(Box::new(view)))
}

fn applying(c: &mut Criterion) {
    let mut order = sample_inbound("T1", "APP001-in-1", 10_000);
    order.status = Status::Processing;
    let news = observation(PayStatus::Success, true);
    let mut g = c.benchmark_group("apply");
    g.throughput(criterion::Throughput::Elements(1));
    g.bench_function("advance", |b| {
        b.iter(|| protopay::apply(black_box(&order), black_box(&news)))
    });
    let stale = observation(PayStatus::Unpaid, false);
    g.bench_function("stale", |b| {
        b.iter(|| protopay::apply(black_box(&order), black_box(&stale)))
    });
    g.finish();
}

/// Orders are spread over this many protocols, as many escrow deals would be. (All on one
/// protocol, money-moving commits contend on its ledger: see the README.)
const PROTOCOLS: usize = 64;

fn protocol_of(i: usize) -> String {
    format!("T{}", i % PROTOCOLS)
}

/// An engine over `storage` holding the protocols and `n` inbound orders, `Submitted`.
async fn seeded(storage: Arc<dyn Storage>, n: usize) -> Engine {
    let mut orders = Vec::new();
    for i in 0..n {
        let mut o = sample_inbound(&protocol_of(i), &format!("APP001-in-{i}"), 10_000);
        o.status = Status::Submitted;
        orders.push(Put {
            expected: None,
            value: o,
        });
    }
    let protocols = (0..PROTOCOLS)
        .map(|i| Put {
            expected: None,
            value: sample_protocol(&protocol_of(i)),
        })
        .collect();
    storage
        .commit(Batch {
            protocols,
            ..Default::default()
        })
        .await
        .unwrap();
    for chunk in orders.chunks(1000) {
        storage
            .commit(Batch {
                orders: chunk.to_vec(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let config = Config::new(APP, key(), "http://pay.invalid", "http://host.invalid/n");
    Engine::builder(config)
        .shared_storage(storage)
        .transport(Offline)
        .build()
        .await
        .unwrap()
}

fn callback_body(i: usize, status: &str) -> Vec<u8> {
    let data = serde_json::json!({"transNo": protocol_of(i), "appId": APP, "amount": "100.00", "outReqNo": format!("APP001-in-{i}"),
        "payOrderNo": format!("P{i}"), "payStatus": status, "arrivedStatus": "01"});
    Envelope::reply(APP, "0000", "SUCCESS", data.to_string(), TS.into(), &key())
        .to_json()
        .into_bytes()
}

/// Time `iters` advancing callbacks spread over `callers` concurrent tasks, each on a fresh
/// order (SUBMITTED → PROCESSING → SUCCESS takes two per order).
async fn advancing(engine: &Engine, first: usize, iters: u64, callers: usize) -> Duration {
    let bodies: Vec<Vec<u8>> = (0..iters as usize)
        .map(|k| callback_body(first + k / 2, if k % 2 == 0 { "PROCESSING" } else { "SUCCESS" }))
        .collect();
    let bodies = Arc::new(bodies);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..callers {
        let (engine, bodies) = (engine.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            // Each caller takes every `callers`-th pair, so an order's two callbacks stay in order.
            let mut k = 2 * c;
            while k + 1 < bodies.len() {
                for body in &bodies[k..k + 2] {
                    let r = engine.handle_callback(CallbackKind::InboundPay, body).await;
                    assert!(r.is_success(), "{}", r.body);
                }
                k += 2 * callers;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

fn callbacks(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("callback");
    let engine = rt.block_on(seeded(Arc::new(MemoryStorage::new()), 1_000_000));
    g.sample_size(10).measurement_time(Duration::from_secs(2));
    let duplicate = callback_body(0, "UNPAID");
    g.bench_function("memory_duplicate", |b| {
        b.iter(|| rt.block_on(engine.handle_callback(CallbackKind::InboundPay, black_box(&duplicate))))
    });
    let mut next = 1;
    g.bench_function("memory_advancing", |b| {
        b.iter_custom(|iters| {
            let d = rt.block_on(advancing(&engine, next, iters, 1));
            next += iters as usize;
            d
        })
    });
    g.finish();
}

fn sled_commits(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = protopay::sled::SledStorage::open(dir.path().join("engine")).unwrap();
    let order = sample_inbound("T1", "APP001-in-x", 10_000);
    let event = Event {
        seq: 0,
        at: chrono::Utc::now(),
        trans_no: Some("T1".into()),
        out_req_no: Some("APP001-in-x".into()),
        source: Source::Poll,
        kind: EventKind::InboundPaid,
    };
    // The bare floor writes the same bytes an engine commit writes: the record and the event.
    let bare_db = sled::Config::new()
        .path(dir.path().join("bare"))
        .mode(sled::Mode::HighThroughput)
        .open()
        .unwrap();
    let bare = bare_db.open_tree("t").unwrap();
    let record = protopay_storage_sled::codec::record(1, &order).unwrap();
    let event_bytes = protopay_storage_sled::codec::value(&event).unwrap();
    let mut g = c.benchmark_group("sled");
    g.sample_size(20);
    for callers in [1usize, 64] {
        g.bench_with_input(
            BenchmarkId::new("bare_insert_flush_floor", callers),
            &callers,
            |b, &callers| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        let mut tasks = Vec::new();
                        for c in 0..callers {
                            let (db, tree, record, ev) =
                                (bare_db.clone(), bare.clone(), record.clone(), event_bytes.clone());
                            let n = iters as usize / callers + usize::from(c < iters as usize % callers);
                            tasks.push(tokio::spawn(async move {
                                for i in 0..n {
                                    tree.insert(format!("k{c}-{i}"), record.as_slice()).unwrap();
                                    tree.insert(format!("e{c}-{i}"), ev.as_slice()).unwrap();
                                    // sled's own flush_async stalls with many callers; a blocking
                                    // flush per write is the plain floor.
                                    let db = db.clone();
                                    tokio::task::spawn_blocking(move || db.flush()).await.unwrap().unwrap();
                                }
                            }));
                        }
                        for t in tasks {
                            t.await.unwrap();
                        }
                        start.elapsed()
                    })
                })
            },
        );
        let mut round = 0u64;
        g.bench_with_input(BenchmarkId::new("engine_commit", callers), &callers, |b, &callers| {
            b.iter_custom(|iters| {
                round += 1;
                let r = round;
                rt.block_on(async {
                    let start = Instant::now();
                    let mut tasks = Vec::new();
                    for c in 0..callers {
                        let (store, event) = (store.clone(), event.clone());
                        let n = iters as usize / callers + usize::from(c < iters as usize % callers);
                        tasks.push(tokio::spawn(async move {
                            for i in 0..n {
                                let o = sample_inbound("T1", &format!("APP001-{callers}-{r}-{c}-{i}"), 10_000);
                                let batch = Batch {
                                    orders: vec![Put {
                                        expected: None,
                                        value: o,
                                    }],
                                    events: vec![event.clone()],
                                    ..Default::default()
                                };
                                store.commit(batch).await.unwrap();
                            }
                        }));
                    }
                    for t in tasks {
                        t.await.unwrap();
                    }
                    start.elapsed()
                })
            })
        });
    }
    let engine = rt.block_on(seeded(
        Arc::new(protopay::sled::SledStorage::open(dir.path().join("callbacks")).unwrap()),
        60_000,
    ));
    let mut next = 0;
    g.bench_function("callbacks_64_callers", |b| {
        b.iter_custom(|iters| {
            let iters = iters.max(128);
            let d = rt.block_on(advancing(&engine, next, iters, 64));
            next += iters as usize / 2 + 1;
            d
        })
    });
    g.finish();
}

/// Mean time per iteration of one benchmark, from criterion's own estimates.
fn mean_ns(id: &str) -> Option<f64> {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let path = format!("{target}/criterion/{id}/new/estimates.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn report() {
    println!("\n== ratios (floor time / our time; 1.0 = as fast as the floor) ==");
    let ratio = |name: &str, floor: &str, ours: &str, goal: &str| {
        if let (Some(f), Some(o)) = (mean_ns(floor), mean_ns(ours)) {
            println!(
                "{name:<44} ours {:>10.1} ns  floor {:>10.1} ns  ratio {:.2}  (goal {goal})",
                o,
                f,
                f / o
            );
        }
    };
    ratio("verify 1 KiB vs raw md5", "sign/raw_md5_floor", "sign/verify", "≥ 0.9");
    ratio(
        "sled commit vs bare insert+flush, 1 caller",
        "sled/bare_insert_flush_floor/1",
        "sled/engine_commit/1",
        "≥ 0.8",
    );
    ratio(
        "sled commit vs bare insert+flush, 64 callers",
        "sled/bare_insert_flush_floor/64",
        "sled/engine_commit/64",
        "≥ 0.8",
    );
    for (name, id, goal) in [
        ("apply (advance)", "apply/advance", "≥ 1 M/s"),
        ("apply (stale)", "apply/stale", "≥ 1 M/s"),
        ("callback on memory (duplicate)", "callback/memory_duplicate", ""),
        ("callback on memory (advancing)", "callback/memory_advancing", ""),
        ("callbacks on sled, 64 callers", "sled/callbacks_64_callers", "≥ 15 k/s"),
    ] {
        if let Some(ns) = mean_ns(id) {
            println!("{name:<44} {:>10.1} ns  = {:>12.0} /s  (goal {goal})", ns, 1e9 / ns);
        }
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    signing(&mut c);
    applying(&mut c);
    callbacks(&mut c);
    sled_commits(&mut c);
    c.final_summary();
    report();
    physical_floor();
}

/// Shared syncs for the physical floor: the written and synced counts of one file.
struct SyncState {
    file: std::fs::File,
    written: u64,
    synced: u64,
    syncing: bool,
    syncs: u64,
}

/// The physical floor of a durable commit: append the bytes one engine commit stores to a
/// file on the same filesystem and `fdatasync` it. With several callers the syncs are shared
/// as the best group commit would share them: a caller that finds no sync running syncs for
/// every write already in the file. Returns the time per commit and commits per sync.
fn fdatasync_floor(dir: &std::path::Path, bytes: &[u8], callers: usize, per_caller: usize) -> (Duration, f64) {
    use std::io::Write;
    use std::sync::{Condvar, Mutex};
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("floor-{callers}")))
        .unwrap();
    let shared = Arc::new((
        Mutex::new(SyncState {
            file,
            written: 0,
            synced: 0,
            syncing: false,
            syncs: 0,
        }),
        Condvar::new(),
    ));
    let start = Instant::now();
    let threads: Vec<_> = (0..callers)
        .map(|_| {
            let (shared, bytes) = (shared.clone(), bytes.to_vec());
            std::thread::spawn(move || {
                let (lock, done) = &*shared;
                for _ in 0..per_caller {
                    let ticket = {
                        let mut s = lock.lock().unwrap();
                        s.file.write_all(&bytes).unwrap();
                        s.written += 1;
                        s.written
                    };
                    let mut s = lock.lock().unwrap();
                    while s.synced < ticket {
                        if s.syncing {
                            s = done.wait(s).unwrap();
                            continue;
                        }
                        s.syncing = true;
                        let (target, file) = (s.written, s.file.try_clone().unwrap());
                        drop(s);
                        file.sync_data().unwrap();
                        s = lock.lock().unwrap();
                        s.synced = target;
                        s.syncing = false;
                        s.syncs += 1;
                        done.notify_all();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = start.elapsed();
    let commits = (callers * per_caller) as f64;
    let syncs = shared.0.lock().unwrap().syncs as f64;
    (elapsed.div_f64(commits), commits / syncs)
}

/// Engine commits on sled (a new order and its event each), timed directly: the time per
/// commit and commits per flush.
fn engine_commits(
    store: &protopay::sled::SledStorage,
    callers: usize,
    per_caller: usize,
    round: u64,
) -> (Duration, f64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let flushes = store.flushes();
    let elapsed = rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..callers)
            .map(|c| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..per_caller {
                        let key = format!("APP001-phys-{round}-{c}-{i}");
                        store.commit(commit_batch(&key)).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        start.elapsed()
    });
    let commits = (callers * per_caller) as f64;
    let syncs = (store.flushes() - flushes).max(1) as f64;
    (elapsed.div_f64(commits), commits / syncs)
}

/// What one engine commit of a new order writes: the order and its event.
fn commit_batch(key: &str) -> Batch {
    Batch {
        orders: vec![Put {
            expected: None,
            value: sample_inbound("T1", key, 10_000),
        }],
        events: vec![Event {
            seq: 0,
            at: chrono::Utc::now(),
            trans_no: Some("T1".into()),
            out_req_no: Some(key.into()),
            source: Source::Poll,
            kind: EventKind::InboundPaid,
        }],
        schedule: vec![(key.into(), Some(chrono::Utc::now()))],
        ..Default::default()
    }
}

/// Rounds of the physical floor and of engine commits, taken in turn: a disk's sync latency
/// drifts over seconds, so a floor timed once beside commits timed once apart from it gave
/// ratios from 1.1× to 1.7× on one build. Each round's ratio is of two runs a moment apart;
/// the median of the rounds is reported, with their range.
const FLOOR_ROUNDS: usize = 9;

/// The engine's durable commit against the physical floor, in the same run.
fn physical_floor() {
    println!("\n== durable commit vs the physical floor (one fdatasync), {FLOOR_ROUNDS} rounds taken in turn ==");
    let dir = tempfile::tempdir().unwrap();
    let store = protopay::sled::SledStorage::open(dir.path().join("engine")).unwrap();
    let bytes = {
        let batch = commit_batch("APP001-phys-bytes");
        let order = protopay_storage_sled::codec::record(1, &batch.orders[0].value).unwrap();
        let event = protopay_storage_sled::codec::value(&batch.events[0]).unwrap();
        [order, event].concat()
    };
    // Warm up both.
    let _ = engine_commits(&store, 1, 400, 0);
    let _ = fdatasync_floor(dir.path(), &bytes, 1, 50);
    for (callers, per_caller) in [(1usize, 60usize), (64, 20)] {
        let mut rounds: Vec<(f64, f64, f64, f64, f64)> = (0..FLOOR_ROUNDS)
            .map(|round| {
                let (floor, floor_shared) = fdatasync_floor(dir.path(), &bytes, callers, per_caller);
                let (ours, ours_shared) =
                    engine_commits(&store, callers, per_caller, (callers * 100 + round + 1) as u64);
                let (ours, floor) = (ours.as_secs_f64() * 1e6, floor.as_secs_f64() * 1e6);
                (ours / floor, ours, floor, ours_shared, floor_shared)
            })
            .collect();
        rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (ratio, ours, floor, ours_shared, floor_shared) = rounds[FLOOR_ROUNDS / 2];
        println!(
            "{callers:>2} caller(s): engine commit {ours:>7.1} µs, fdatasync floor {floor:>7.1} µs, ours/floor {ratio:.2}× \
             (rounds {:.2}–{:.2}); commits per sync: ours {ours_shared:.1}, floor {floor_shared:.1}",
            rounds[0].0,
            rounds[FLOOR_ROUNDS - 1].0,
        );
    }
}
