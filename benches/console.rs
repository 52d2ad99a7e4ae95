//! The operator console's pages at 100 k orders, on sled: each page's latency over loopback
//! HTTP (p50 and p99 of 200 sequential requests, after a warm-up), beside its floor in the
//! same run — a bare axum handler answering a fixed page — and the time to stream the whole
//! CSV export.
//!
//! `cargo bench --bench console --features console`

use protopay::api::{ApiAuth, Role};
use protopay::console::{ConsoleOptions, console_router};
use protopay::domain::Status;
use protopay::event::{Event, EventKind};
use protopay::observation::Source;
use protopay::sled::SledStorage;
use protopay::storage::conformance::{sample_outbound, sample_protocol};
use protopay::storage::{Batch, Put, Storage};
use protopay::testing::Offline;
use protopay::{Config, Engine, Md5Key};
use std::time::{Duration, Instant};

const ORDERS: usize = 100_000;
const SAMPLES: usize = 200;
const TOKEN: &str = "bench-operator-token-0123456789";

/// 100 k payouts over two protocols: most settled, some processing, one in a hundred needing
/// attention; the flagged ones with a short history, and a hundred audit records.
async fn fill(store: &SledStorage) {
    let mut batch = Batch::default();
    for t in ["T1", "T2"] {
        batch.protocols.push(Put {
            expected: None,
            value: sample_protocol(t),
        });
    }
    store.commit(batch).await.unwrap();
    let mut batch = Batch::default();
    for i in 0..ORDERS {
        let key = format!("APP001-out-{i:07}");
        let mut o = sample_outbound(if i % 2 == 0 { "T1" } else { "T2" }, &key, 100 + i as u64);
        o.status = match i % 10 {
            0 => Status::Processing,
            _ => Status::Success,
        };
        if i % 100 == 0 {
            o.attempts.needs_attention = true;
            o.attempts.sends = 1;
            batch.events.push(event(&key, EventKind::OutboundReserved));
            batch.events.push(event(&key, EventKind::Submitted));
            batch.events.push(event(
                &key,
                EventKind::Pending {
                    status: Status::Processing,
                },
            ));
        }
        if i % 1_000 == 0 {
            let kind = EventKind::OperatorResolved {
                status: Status::Success,
                note: "checked with the bank".into(),
                by: Some("li.lei".into()),
            };
            batch.events.push(event(&key, kind));
        }
        batch.orders.push(Put {
            expected: None,
            value: o,
        });
        if batch.orders.len() == 2_000 {
            store.commit(std::mem::take(&mut batch)).await.unwrap();
        }
    }
    store.commit(batch).await.unwrap();
}

fn event(key: &str, kind: EventKind) -> Event {
    Event {
        seq: 0,
        at: chrono::Utc::now(),
        trans_no: Some("T1".into()),
        out_req_no: Some(key.to_owned()),
        source: Source::Engine,
        kind,
    }
}

/// p50 and p99 of `SAMPLES` sequential GETs of `url`, in ms.
async fn latency(http: &reqwest::Client, url: &str, cookie: &str) -> (f64, f64) {
    let get = || async {
        let r = http.get(url).header("cookie", cookie).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        r.bytes().await.unwrap();
    };
    for _ in 0..10 {
        get().await;
    }
    let mut ms = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let started = Instant::now();
        get().await;
        ms.push(started.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    (ms[SAMPLES / 2], ms[SAMPLES * 99 / 100])
}

async fn serve(app: axum::Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    url
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStorage::open(dir.path()).unwrap();
    let filling = Instant::now();
    fill(&store).await;
    eprintln!(
        "filled {ORDERS} orders on sled in {:.1} s",
        filling.elapsed().as_secs_f64()
    );
    let config = Config::new(
        "APP001",
        Md5Key::new("bench-key"),
        "http://pay.invalid",
        "http://host.invalid/n",
    );
    let engine = Engine::builder(config)
        .storage(store)
        .transport(Offline)
        .build()
        .await
        .unwrap();
    use sha2::Digest;
    let hash: String = sha2::Sha256::digest(TOKEN).iter().map(|b| format!("{b:02x}")).collect();
    let auth = ApiAuth::new("bench-shared-token-0123456789")
        .unwrap()
        .with_operator("li.lei", Role::Operate, &hash)
        .unwrap();
    let console = serve(console_router(engine, auth, ConsoleOptions::default())).await;
    // The floor: a bare axum handler answering a fixed page of about the same size.
    let fixed: &'static str = Box::leak("<p>protopay</p>".repeat(400).into_boxed_str());
    let bare = serve(axum::Router::new().route("/", axum::routing::get(move || async move { fixed }))).await;

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed_in = http
        .post(format!("{console}/console/sign-in"))
        .body(format!("token={TOKEN}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();

    let (floor50, floor99) = latency(&http, &format!("{bare}/"), "").await;
    println!("console pages at {ORDERS} orders on sled, {SAMPLES} sequential requests each (ms)");
    println!("{:<44} {:>8} {:>8} {:>10}", "page", "p50", "p99", "p50/floor");
    println!(
        "{:<44} {floor50:>8.2} {floor99:>8.2} {:>10}",
        "floor: bare axum, fixed 6 KB page", "1.0×"
    );
    let pages = [
        ("overview", "/console"),
        ("orders, first page", "/console/orders"),
        ("orders needing attention", "/console/orders?listing=NEEDS_ATTENTION"),
        (
            "orders of one protocol, processing",
            "/console/orders?listing=PROCESSING&protocol=T1",
        ),
        ("orders by direction (scans 2 000)", "/console/orders?direction=in"),
        ("one order (history, evidence)", "/console/orders/APP001-out-0050000"),
        ("evidence bundle", "/console/orders/APP001-out-0050000/evidence.json"),
        ("protocol (books, first orders)", "/console/protocols/T1"),
        ("protocols", "/console/protocols"),
        ("audit trail", "/console/audit"),
    ];
    for (name, path) in pages {
        let (p50, p99) = latency(&http, &format!("{console}{path}"), &cookie).await;
        println!("{name:<44} {p50:>8.2} {p99:>8.2} {:>9.1}×", p50 / floor50);
    }
    let mut exports = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let r = http
            .get(format!("{console}/console/orders.csv"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        let rows = r.text().await.unwrap().lines().count() - 1;
        assert_eq!(rows, ORDERS);
        exports.push(started.elapsed());
    }
    exports.sort();
    let median: Duration = exports[1];
    println!(
        "CSV export of all {ORDERS} orders, streamed: median of 3 {:.2} s ({:.0} rows/s)",
        median.as_secs_f64(),
        ORDERS as f64 / median.as_secs_f64()
    );
}
