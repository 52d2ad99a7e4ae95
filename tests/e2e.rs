//! End to end over real loopback HTTP: the simulator's HTTP server, the HTTP transport, the
//! callback receiver, the poller, and sled in a temporary directory.

mod harness;

use harness::{APP, Stack};
use protopay::testing::Offline;
use protopay::wire::{CallbackKind, OutType};
use protopay::{Amount, EventKind, NewInbound, NewProtocol, Order, Status};
use protopay_sim::Fault;
use std::collections::BTreeMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

async fn protocol(stack: &Stack) -> String {
    let p = stack
        .engine()
        .create_protocol(NewProtocol {
            trans_desc: "deal".into(),
            business_id: "B1".into(),
            cashier_type: protopay::wire::CashierType::Pos,
            idempotency_key: None,
        })
        .await
        .unwrap();
    p.trans_no
}

async fn deposit(stack: &Stack, trans_no: &str, key: &str, amount: &str) {
    let cmd = NewInbound {
        out_req_no: Some(key.into()),
        ..NewInbound::pos(trans_no, Amount::parse(amount).unwrap())
    };
    stack.engine().prepay(cmd).await.unwrap();
}

fn arrived(o: &Order) -> bool {
    o.inbound().is_some_and(|i| i.arrived)
}

/// Events per order, by kind name: each transition must appear exactly once.
async fn event_counts(stack: &Stack) -> BTreeMap<(String, String), usize> {
    let mut counts = BTreeMap::new();
    for e in stack.engine().events_after(0, 100_000).await.unwrap() {
        if let Some(key) = e.out_req_no {
            let kind = format!("{:?}", e.kind);
            *counts.entry((key, kind)).or_insert(0) += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_escrow_story() {
    let dir = tempfile::tempdir().unwrap();
    let mut stack = Stack::start(dir.path(), 1).await;
    let story = harness::escrow_story(&mut stack).await;
    let problems = stack.disagreements(&[&story.pos_protocol, &story.qp_protocol]).await;
    assert!(problems.is_empty(), "{problems:#?}");

    let e = stack.engine();
    let ledger = e.protocol(&story.pos_protocol).await.unwrap().ledger;
    // 500 + 300 in; 200 out, 100 refunded, 150 failed (back), 250 out.
    assert_eq!(ledger.available.to_string(), "250.00");
    assert_eq!(ledger.paid_out.to_string(), "450.00");
    assert_eq!(ledger.refunded.to_string(), "100.00");
    assert_eq!(
        stack.sim.stats().payouts.get(&story.lost_reply_payout),
        Some(&1),
        "the lost-reply payout left once"
    );
    let lost = e.order(&story.lost_reply_payout).await.unwrap();
    assert_eq!(lost.attempts.sends, 1, "queried, never resent");
    for ((key, kind), n) in event_counts(&stack).await {
        assert_eq!(n, 1, "{key} {kind} published {n} times");
    }
    stack.stop().await;
}

/// The same story with two instances on one PostgreSQL, callbacks alternating between them
/// through a balancer, and the second instance stopped halfway (the demo's `--postgres`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_escrow_story_on_two_instances_on_postgres() {
    let Some(url) = protopay_storage_postgres::testing::url() else {
        return;
    };
    let store = harness::Store::Postgres {
        url,
        schema: protopay_storage_postgres::testing::schema("story"),
    };
    let mut stack = Stack::start_with(store, 2, 1).await;
    let story = harness::escrow_story(&mut stack).await;
    assert_eq!(stack.running(), 1, "the second instance stopped halfway");
    let problems = stack.disagreements(&[&story.pos_protocol, &story.qp_protocol]).await;
    assert!(problems.is_empty(), "{problems:#?}");
    let ledger = stack.engine().protocol(&story.pos_protocol).await.unwrap().ledger;
    assert_eq!(ledger.available.to_string(), "250.00");
    assert_eq!(stack.sim.stats().payouts.get(&story.lost_reply_payout), Some(&1));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_callbacks_the_poller_converges() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::start(dir.path(), 2).await;
    let t = protocol(&stack).await;
    stack.sim.with_faults(|f| f.drop_callback = Fault::chance(1.0));
    for i in 0..5 {
        let key = format!("{APP}-d-{i}");
        deposit(&stack, &t, &key, "10.00").await;
        stack.sim.pay(&key, true).unwrap();
        stack.sim.arrive(&key).unwrap();
    }
    for i in 0..5 {
        stack.until(&format!("{APP}-d-{i}"), WAIT, arrived).await;
    }
    assert_eq!(stack.sim.stats().callbacks_acknowledged, 0, "no callback ever arrived");
    assert!(stack.disagreements(&[&t]).await.is_empty());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_and_reordered_callbacks_same_state_one_event_each() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::start(dir.path(), 3).await;
    let t = protocol(&stack).await;
    stack.sim.with_faults(|f| {
        f.duplicate_callback = Fault::chance(1.0);
        f.reorder_callback = Fault::chance(0.5);
        f.delay_ms = 300;
    });
    for i in 0..4 {
        let key = format!("{APP}-r-{i}");
        deposit(&stack, &t, &key, "25.00").await;
        stack.sim.pay(&key, true).unwrap();
        stack.sim.arrive(&key).unwrap();
    }
    let e = stack.engine();
    let key = format!("{APP}-out-1");
    let payee = protopay::testing::payee(&t, Some(&key), "20", OutType::Out).unwrap();
    for i in 0..4 {
        stack.until(&format!("{APP}-r-{i}"), WAIT, arrived).await;
    }
    e.outpay(payee).await.unwrap();
    stack.sim.settle(&key, true).unwrap();
    stack.until(&key, WAIT, |o| o.status == Status::Success).await;
    // Let every duplicate land: the simulator's outbox empties once all are acknowledged.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut feed = e.subscribe("drain");
    while stack.sim.pending_callbacks() > 0 && tokio::time::Instant::now() < deadline {
        let _ = tokio::time::timeout(Duration::from_millis(500), feed.next()).await;
    }
    assert_eq!(
        stack.sim.pending_callbacks(),
        0,
        "every duplicate landed within {WAIT:?}"
    );
    assert!(
        stack.sim.stats().callbacks_acknowledged >= 10,
        "{:?}",
        stack.sim.stats()
    );
    for ((key, kind), n) in event_counts(&stack).await {
        assert_eq!(n, 1, "{key} {kind} published {n} times");
    }
    assert!(stack.disagreements(&[&t]).await.is_empty());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_malformed_callbacks_over_http_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::start(dir.path(), 4).await;
    let t = protocol(&stack).await;
    let key = format!("{APP}-f-1");
    deposit(&stack, &t, &key, "10.00").await;
    let before = stack.engine().order(&key).await.unwrap();
    let events = stack.engine().events_after(0, 10_000).await.unwrap().len();
    let view = serde_json::json!({"transNo": t, "appId": APP, "amount": "10.00", "outReqNo": key, "payStatus": "SUCCESS", "arrivedStatus": "02"});
    let forged = protopay::wire::Envelope::reply(
        APP,
        "0000",
        "SUCCESS",
        view.to_string(),
        "20261126120000123".into(),
        &protopay::Md5Key::new("guess"),
    );
    let http = reqwest::Client::new();
    let url = |kind: CallbackKind| format!("http://{}/protopay/notify/{}", stack.callback_addr, kind.slug());
    let bodies: Vec<(CallbackKind, Vec<u8>, u16)> = vec![
        (CallbackKind::InboundArrival, forged.to_json().into_bytes(), 401),
        (CallbackKind::InboundPay, b"{\"appId\":".to_vec(), 400),
        (CallbackKind::InboundPay, b"<xml/>".to_vec(), 400),
        (CallbackKind::Outbound, vec![b'{'; 70 * 1024], 413),
    ];
    for (kind, body, status) in bodies {
        let r = http.post(url(kind)).body(body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status);
        let text = r.text().await.unwrap();
        assert!(!protopay_sim::is_ack(status, &text), "refusals are not success");
    }
    let r = http
        .post(format!("http://{}/protopay/notify/nonsense", stack.callback_addr))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let after = stack.engine().order(&key).await.unwrap();
    assert_eq!(after.status, before.status);
    assert!(!after.inbound().is_some_and(|i| i.arrived));
    let new_events = stack.engine().events_after(0, 10_000).await.unwrap();
    assert!(
        new_events[events..]
            .iter()
            .all(|e| !matches!(e.kind, EventKind::InboundPaid | EventKind::InboundArrived)),
        "nothing was paid by a forgery"
    );
    assert_eq!(
        stack.engine().protocol(&t).await.unwrap().ledger.available,
        Amount::ZERO
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_the_same_directory_resumes_polling_and_delivers_unacknowledged_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut stack = Stack::start(dir.path(), 5).await;
    let t = protocol(&stack).await;
    let key = format!("{APP}-x-1");
    deposit(&stack, &t, &key, "40.00").await;
    let seen = stack.engine().events_after(0, 10_000).await.unwrap();
    let acked = seen.last().unwrap().seq;
    stack.engine().ack("host", acked).await.unwrap();

    // Down: the payment comes in while we are away, and its callbacks are lost.
    stack.stop_engine().await;
    stack.sim.with_faults(|f| f.drop_callback = Fault::chance(1.0));
    stack.sim.pay(&key, true).unwrap();
    stack.sim.arrive(&key).unwrap();

    // Up again on the same sled directory: the poller finds it; the host gets what it missed.
    stack.start_engine().await;
    stack.until(&key, WAIT, arrived).await;
    let missed = stack.engine().unacknowledged("host").await.unwrap();
    assert_eq!(missed.first().map(|e| e.seq), Some(acked + 1));
    assert!(missed.iter().any(|e| e.kind == EventKind::InboundPaid));
    assert!(missed.iter().any(|e| e.kind == EventKind::InboundArrived));
    assert!(stack.disagreements(&[&t]).await.is_empty());
    stack.stop().await;
}

/// A burst of callbacks on one hot protocol, on sled: every one is accepted (the engine's
/// steps on one protocol take turns instead of exhausting their conflict retries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_callbacks_on_one_protocol_on_sled_all_land() {
    use protopay::storage::conformance::{sample_inbound, sample_protocol};
    use protopay::storage::{Batch, Put, Storage};
    let dir = tempfile::tempdir().unwrap();
    let storage = protopay::sled::SledStorage::open(dir.path()).unwrap();
    let mut orders = vec![];
    for i in 0..64 {
        let mut o = sample_inbound("T1", &format!("APP001-hot-{i}"), 100);
        o.status = Status::Submitted;
        orders.push(Put {
            expected: None,
            value: o,
        });
    }
    let seed = Batch {
        protocols: vec![Put {
            expected: None,
            value: sample_protocol("T1"),
        }],
        orders,
        ..Default::default()
    };
    storage.commit(seed).await.unwrap();
    let config = protopay::Config::new(
        APP,
        protopay::Md5Key::new("k"),
        "http://pay.invalid",
        "http://host.invalid/n",
    );
    let engine = protopay::Engine::builder(config)
        .storage(storage)
        .transport(Offline)
        .build()
        .await
        .unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let data = serde_json::json!({"transNo": "T1", "appId": APP, "amount": "1.00",
                    "outReqNo": format!("APP001-hot-{i}"), "payStatus": "SUCCESS", "arrivedStatus": "01"});
                engine.handle_callback(CallbackKind::InboundPay, &signed(&data)).await
            })
        })
        .collect();
    for t in tasks {
        let reply = t.await.unwrap();
        assert!(reply.is_success(), "{}", reply.body);
    }
    assert_eq!(
        engine.protocol("T1").await.unwrap().ledger.in_transit.to_string(),
        "64.00"
    );
}

/// `Engine::shutdown` drains the engine and releases the sled store: a new engine opens the
/// same directory at once, every time, even with a CPU hog beside it (the stopped engine's
/// background tasks used to hold the store a moment longer: `Locked`, 1 run in 6 under load).
/// `PROTOPAY_RESTART_RUNS=200` for the long proof.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_the_sled_store_for_the_next_engine() {
    let runs: usize = std::env::var("PROTOPAY_RESTART_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hog = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut x = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let config = protopay::Config::new(
        APP,
        protopay::Md5Key::new("k"),
        "http://pay.invalid",
        "http://host.invalid/n",
    );
    for run in 0..runs {
        let storage = protopay::sled::SledStorage::open(dir.path()).unwrap_or_else(|e| panic!("run {run}: {e}"));
        let engine = protopay::Engine::builder(config.clone())
            .storage(storage)
            .transport(Offline)
            .build()
            .await
            .unwrap();
        let poller = engine.spawn_poller();
        let mut feed = engine.subscribe("host");
        // A commit through the group committer: an orphan callback, acknowledged once durable.
        let data = serde_json::json!({"outReqNo": format!("{APP}-nobody-{run}"), "payStatus": "SUCCESS"});
        let reply = engine.handle_callback(CallbackKind::Outbound, &signed(&data)).await;
        assert!(reply.is_success(), "{}", reply.body);
        let held = engine.clone(); // a host may keep clones: the store is released all the same
        engine.shutdown().await.unwrap();
        assert!(matches!(feed.next().await, Err(protopay::Error::Shutdown)));
        assert!(matches!(
            held.prepay(protopay::NewInbound::pos("T1", Amount::parse("1").unwrap()))
                .await,
            Err(protopay::Error::Shutdown)
        ));
        poller.shutdown().await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    hog.join().unwrap();
    let storage = protopay::sled::SledStorage::open(dir.path()).unwrap();
    assert_eq!(
        protopay::storage::Storage::orphans(&storage).await.unwrap().len(),
        runs,
        "every commit kept"
    );
}

/// A callback body as the payment system would sign it, with the offline tests' key `k`.
fn signed(data: &serde_json::Value) -> Vec<u8> {
    let key = protopay::Md5Key::new("k");
    let body = protopay::wire::Envelope::reply(
        APP,
        "0000",
        "SUCCESS",
        data.to_string(),
        "20261126120000123".into(),
        &key,
    );
    body.to_json().into_bytes()
}
