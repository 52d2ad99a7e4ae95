//! System benchmarks, each beside its floor or its scaling in the same run:
//! - the HTTP callback receiver vs a bare axum handler on loopback, under one load generator;
//! - the poller's due-query with 10 k and 100 k stored orders (1 M with
//!   `PROTOPAY_BENCH_LARGE=1`) and 100 due, on memory and sled;
//! - restart time to the first poll on sled;
//! - memory per stored order in `MemoryStorage`, and bytes on disk per order in sled.
//!
//! `cargo bench --bench system`

use axum::routing::post;
use protopay::storage::conformance::{sample_inbound, sample_protocol};
use protopay::storage::{Batch, MemoryStorage, Put, Storage};
use protopay::testing::Offline;
use protopay::wire::Envelope;
use protopay::{Config, Engine, Md5Key, Status};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counts live heap bytes, to measure memory per stored order.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// The one `unsafe` in the workspace: a counting allocator for the memory-per-order figure; it
// only forwards to the system allocator.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const APP: &str = "APP001";
const TS: &str = "20261126120000123";

fn config() -> Config {
    Config::new(
        APP,
        Md5Key::new("bench-key"),
        "http://pay.invalid",
        "http://host.invalid/n",
    )
}

/// `n` orders in T1; all but `due` of them scheduled a day ahead, `due` scheduled now.
async fn fill(storage: &dyn Storage, n: usize, due: usize, now: chrono::DateTime<chrono::Utc>) {
    storage
        .commit(Batch {
            protocols: vec![Put {
                expected: None,
                value: sample_protocol("T1"),
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = Batch::default();
    for i in 0..n {
        let mut o = sample_inbound("T1", &format!("APP001-in-{i:07}"), 10_000);
        o.status = Status::Unpaid;
        let at = if i % (n / due.max(1)).max(1) == 0 && i / (n / due.max(1)).max(1) < due {
            now
        } else {
            now + chrono::Duration::days(1)
        };
        batch.schedule.push((o.out_req_no().to_owned(), Some(at)));
        batch.orders.push(Put {
            expected: None,
            value: o,
        });
        if batch.orders.len() == 2_000 {
            storage.commit(std::mem::take(&mut batch)).await.unwrap();
        }
    }
    if !batch.is_empty() {
        storage.commit(batch).await.unwrap();
    }
}

/// Requests per second that `conns` keep-alive clients get from `url` in `secs`.
async fn load(url: &str, body: Vec<u8>, conns: usize, secs: u64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (url, body, done) = (url.to_owned(), body.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            while Instant::now() < deadline {
                let r = client.post(&url).body(body.clone()).send().await.unwrap();
                assert_eq!(r.status(), 200);
                let _ = r.bytes().await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / secs as f64
}

async fn http_receiver() {
    // The floor: a bare axum handler that answers SUCCESS.
    let bare = axum::Router::new().route("/n/{kind}", post(|| async { "SUCCESS" }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bare_url = format!("http://{}/n/inbound-pay", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, bare).await });

    // Ours: the receiver over an engine on MemoryStorage; the callback is a duplicate of a
    // state already held (the common case of a retried callback): verify, decode, read, apply.
    let storage = MemoryStorage::new();
    fill(&storage, 1_000, 0, chrono::Utc::now()).await;
    let engine = Engine::builder(config())
        .storage(storage)
        .transport(Offline)
        .build()
        .await
        .unwrap();
    let app = protopay::http::callback_router(engine);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ours_url = format!("http://{}/n/inbound-pay", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });

    let data = serde_json::json!({"transNo": "T1", "appId": APP, "amount": "100.00", "outReqNo": "APP001-in-0000001", "payStatus": "UNPAID", "arrivedStatus": "01"});
    let body = Envelope::reply(
        APP,
        "0000",
        "SUCCESS",
        data.to_string(),
        TS.into(),
        &Md5Key::new("bench-key"),
    )
    .to_json()
    .into_bytes();
    let _ = load(&bare_url, body.clone(), 8, 1).await; // warm up
    let floor = load(&bare_url, body.clone(), 32, 3).await;
    let ours = load(&ours_url, body, 32, 3).await;
    println!(
        "http receiver vs bare axum (32 keep-alive clients, same process): ours {ours:.0} req/s, floor {floor:.0} req/s, ratio {:.2} (goal ≥ 0.5)",
        ours / floor
    );
}

async fn due_queries(large: bool) {
    let sizes: &[usize] = if large {
        &[10_000, 100_000, 1_000_000]
    } else {
        &[10_000, 100_000]
    };
    let now = chrono::Utc::now();
    for &n in sizes {
        let memory = MemoryStorage::new();
        fill(&memory, n, 100, now).await;
        let dir = tempfile::tempdir().unwrap();
        let sled = protopay::sled::SledStorage::open(dir.path()).unwrap();
        fill(&sled, n, 100, now).await;
        for (name, s) in [("memory", &memory as &dyn Storage), ("sled", &sled as &dyn Storage)] {
            let reps = 200;
            let start = Instant::now();
            for _ in 0..reps {
                assert_eq!(s.due(now, 256).await.unwrap().len(), 100);
            }
            let us = start.elapsed().as_secs_f64() * 1e6 / reps as f64;
            println!("due-query, {n:>8} orders, 100 due, {name:<6}: {us:>8.1} µs");
        }
        if n == 100_000 || n == 1_000_000 {
            restart(&sled, n, now).await;
        }
        if n == 100_000 {
            let disk = sled.size_on_disk().unwrap();
            println!(
                "sled on disk: {:.0} bytes per stored order ({n} orders)",
                disk as f64 / n as f64
            );
        }
    }
}

/// Reopen a store and run the first poller tick: the time a restarted host waits before
/// recovery begins. On a copy, so that the lock is free: the store's own online backup, a
/// consistent image (a copy of the files of a store still open is not one: the first poll
/// then found 18–100 of the 100 due orders). A backup is checkpointed, so the copy opens with
/// no log to replay; replaying costs about a second per 100 MiB of log (at most 16 MiB).
async fn restart(store: &protopay::sled::SledStorage, n: usize, now: chrono::DateTime<chrono::Utc>) {
    let copy = tempfile::tempdir().unwrap();
    let path = copy.path().join("store");
    store.backup(&path).await.unwrap();
    let start = Instant::now();
    let storage = protopay::sled::SledStorage::open(&path).unwrap();
    let engine = Engine::builder(config())
        .storage(storage)
        .transport(Offline)
        .clock(protopay::Clock::starting_at(now))
        .build()
        .await
        .unwrap();
    let report = engine.poll_due().await.unwrap();
    println!(
        "restart to first poll, {n:>8} orders on sled: {:.0} ms ({} due polled) (goal ≤ 3 s at 1 M)",
        start.elapsed().as_secs_f64() * 1e3,
        report.due
    );
}

async fn memory_per_order() {
    let n = 100_000;
    let before = LIVE.load(Ordering::Relaxed);
    let storage = MemoryStorage::new();
    fill(&storage, n, 100, chrono::Utc::now()).await;
    let after = LIVE.load(Ordering::Relaxed);
    println!(
        "MemoryStorage: {:.0} bytes per stored order ({n} orders, with the due index)",
        (after - before) as f64 / n as f64
    );
    drop(storage);
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let large = std::env::var("PROTOPAY_BENCH_LARGE").is_ok();
    rt.block_on(async {
        memory_per_order().await;
        http_receiver().await;
        due_queries(large).await;
    });
}
