//! The crash test: a child process runs a busy escrow workload on one sled directory and is
//! killed with SIGKILL at random moments, again and again; the simulator (in this, the parent,
//! process) runs in no-dedupe mode, paying and settling on its own seeded schedule. After the
//! last kill a final child runs until everything has converged. Then the parent checks the
//! store itself: every order equals the simulator's truth, nothing was paid out twice, the
//! ledger invariants hold, and every event reached the consumer at least once.
//!
//! `PROTOPAY_CRASH_ITERATIONS=n` (default 30) sets the number of kills;
//! `PROTOPAY_CRASH_SEED=n` the kill timing.

mod harness;

use protopay::http::{HttpTransport, callback_router};
use protopay::sled::SledStorage;
use protopay::storage::Storage;
use protopay::wire::{CashierType, ChannelType, CreateProtocol, Envelope, OutType, RemoteProtocol};
use protopay::{Amount, Config, Decision, Engine, Error, Md5Key, NewInbound, NewOutbound, Order, Sensitive, Status};
use protopay_sim::server::{ServerOptions, serve};
use protopay_sim::{Fault, Handled, HttpSink, Rng, Sim, SimConfig};
use protopay_storage_postgres::{PostgresOptions, PostgresStorage};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const APP: &str = "APP001";
const KEY: &str = "crash-key";
const DEPOSITS: usize = 24;

fn config(sim_url: &str, callback_addr: &str) -> Config {
    let mut c = Config::new(
        APP,
        Md5Key::new(KEY),
        sim_url,
        &format!("http://{callback_addr}/protopay/notify"),
    );
    c.timeouts.connect_ms = 300;
    c.timeouts.request_ms = 600;
    c.poll.grace_ms = 1_000;
    c.poll.submitted_ms = 200;
    c.poll.processing_ms = 200;
    c.poll.unpaid_ms = 200;
    c.poll.awaiting_arrival_ms = 200;
    c.poll.max_interval_ms = 600;
    c.poll.attention_ms = 600;
    c.poll.max_sends = 50;
    c.poll.idle_tick_ms = 50;
    c
}

/// The workload, the same list every time: it is replayed from the start after each crash,
/// which also proves that commands are idempotent by `outReqNo`.
async fn workload(engine: &Engine, trans_no: &str) {
    for i in 0..DEPOSITS {
        let key = format!("{APP}-d{i:02}");
        let cmd = NewInbound {
            out_req_no: Some(key),
            ..NewInbound::pos(trans_no, Amount::parse("100.00").expect("amount"))
        };
        if let Err(e) = engine.prepay(cmd).await {
            eprintln!("prepay: {e}");
        }
        if i % 2 == 1 {
            let payout = NewOutbound {
                trans_no: trans_no.into(),
                out_req_no: Some(format!("{APP}-p{i:02}")),
                amount: Amount::parse("60.00").expect("amount"),
                out_type: if i % 4 == 1 { OutType::Out } else { OutType::Refund },
                payee_name: Sensitive::new("赵六"),
                payee_account: Sensitive::new("6222020200112233445"),
                bank_name: "招商银行股份有限公司北京分行".into(),
                bank_cnaps: "308100005019".into(),
                remark: None,
            };
            match engine.outpay(payout).await {
                Ok(_) | Err(Error::InsufficientFunds { .. }) => {}
                Err(e) => eprintln!("outpay: {e}"),
            }
        }
    }
}

/// The child: engine, receiver, poller, workload, and a consumer that records every event
/// it is handed before acknowledging it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of `crash_and_recover`, started by it"]
async fn crash_child() {
    // Not a test of its own: run without the parent's environment it must say so, not pass.
    let dir = std::env::var("PROTOPAY_CRASH_DIR")
        .expect("crash_child is started by crash_and_recover, which sets PROTOPAY_CRASH_DIR; run that test instead");
    let sim_url = std::env::var("PROTOPAY_SIM_URL").expect("sim url");
    let callback_addr = std::env::var("PROTOPAY_CALLBACK_ADDR").expect("callback addr");
    let trans_no = std::env::var("PROTOPAY_TRANS_NO").expect("trans no");
    let last_round = std::env::var("PROTOPAY_FINAL").is_ok();
    // Callbacks reach this child directly, or through the parent's balancer when several
    // children share a store.
    let callback_base = std::env::var("PROTOPAY_CALLBACK_BASE").unwrap_or_else(|_| callback_addr.clone());
    let config = config(&sim_url, &callback_base);
    let storage: Arc<dyn Storage> = match std::env::var("PROTOPAY_CRASH_PG_URL") {
        Ok(url) => Arc::new(
            PostgresStorage::open(PostgresOptions {
                schema: std::env::var("PROTOPAY_CRASH_PG_SCHEMA").expect("schema"),
                ..PostgresOptions::new(url)
            })
            .await
            .expect("open postgres"),
        ),
        Err(_) => Arc::new(SledStorage::open(Path::new(&dir).join("store")).expect("open store")),
    };
    let transport = HttpTransport::from_config(&config).expect("transport");
    let engine = Engine::builder(config)
        .shared_storage(storage)
        .transport(transport)
        .build()
        .await
        .expect("engine");
    let listener = tokio::net::TcpListener::bind(&callback_addr)
        .await
        .expect("bind receiver");
    let app = callback_router(engine.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let poller = engine.spawn_poller();

    let consumer_engine = engine.clone();
    let delivered = Path::new(&dir).join("delivered");
    let consumer = tokio::spawn(async move {
        let mut feed = consumer_engine.subscribe("crash-consumer");
        loop {
            let Ok(events) = feed.next().await else { return };
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&delivered)
                .expect("log");
            let seqs: String = events.iter().map(|e| format!("{}\n", e.seq)).collect();
            f.write_all(seqs.as_bytes()).expect("write");
            f.sync_all().expect("sync");
            if let Some(last) = events.last() {
                consumer_engine.ack("crash-consumer", last.seq).await.expect("ack");
            }
        }
    });

    if engine.protocol(&trans_no).await.is_err() {
        engine.refresh_protocol(&trans_no).await.expect("adopt the protocol");
    }
    workload(&engine, &trans_no).await;
    if !last_round {
        // Keep working (polls, callbacks, events) until killed.
        std::future::pending::<()>().await;
    }
    // The final round: wait until nothing is open, then until the consumer has everything.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut feed = engine.subscribe("final-watch");
    loop {
        resolve_what_never_arrived(&engine, &trans_no, &sim_url).await;
        let orders = engine.orders_of(&trans_no).await.expect("orders");
        let all_settled = orders.len() >= DEPOSITS && orders.iter().all(|o| !o.is_open());
        let last = engine
            .events_after(0, usize::MAX)
            .await
            .expect("events")
            .last()
            .map_or(0, |e| e.seq);
        if all_settled && engine.cursor("crash-consumer").await.expect("cursor") >= last {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "did not converge: {:?}",
            orders.iter().map(Order::state_label).collect::<Vec<_>>()
        );
        let _ = tokio::time::timeout(Duration::from_millis(200), feed.next()).await;
    }
    poller.shutdown().await;
    consumer.abort();
}

/// The operator's part. A send cut off by a kill may never have left; without a payment
/// system that deduplicates, only a person may decide it did not. The README's rule holds
/// here: every process that could have sent it is dead (this is the final round), so an order
/// needing attention that the payment system does not know failed.
async fn resolve_what_never_arrived(engine: &Engine, trans_no: &str, sim_url: &str) {
    let flagged: Vec<Order> = engine
        .orders_of(trans_no)
        .await
        .expect("orders")
        .into_iter()
        .filter(|o| o.attempts.needs_attention && o.is_open())
        .collect();
    if flagged.is_empty() {
        return;
    }
    let Ok(reply) = reqwest::get(format!("{sim_url}/sim/orders")).await else {
        return;
    };
    let Ok(known) = reply.json::<BTreeMap<String, String>>().await else {
        return;
    };
    for o in flagged {
        if !known.contains_key(o.out_req_no()) {
            let note = "crash test operator: never received; every sender since killed";
            engine
                .resolve(o.out_req_no(), Decision::new(Status::Failure, note))
                .await
                .expect("resolve");
        }
    }
}

fn spawn_child(dir: &Path, sim_url: &str, callback_addr: &str, trans_no: &str, last: bool) -> std::process::Child {
    spawn_child_with(dir, sim_url, callback_addr, trans_no, last, &[])
}

fn spawn_child_with(
    dir: &Path,
    sim_url: &str,
    callback_addr: &str,
    trans_no: &str,
    last: bool,
    env: &[(&str, &str)],
) -> std::process::Child {
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("test binary"));
    cmd.envs(env.iter().copied());
    cmd.args(["crash_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("PROTOPAY_CRASH_DIR", dir)
        .env("PROTOPAY_SIM_URL", sim_url)
        .env("PROTOPAY_CALLBACK_ADDR", callback_addr)
        .env("PROTOPAY_TRANS_NO", trans_no)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if last {
        cmd.env("PROTOPAY_FINAL", "1").stderr(std::process::Stdio::inherit());
    }
    cmd.spawn().expect("spawn the child")
}

/// The simulator (auto schedule, no-dedupe, some replies lost after commit) serving HTTP, its
/// callback sender, a free address for callbacks, and a protocol opened at it.
async fn simulator(seed: u64) -> (Sim, String, protopay_sim::Background, String, String) {
    // The simulator: auto schedule, no-dedupe, some replies lost after commit.
    let mut sim_config = SimConfig::new(APP, Md5Key::new(KEY));
    sim_config.auto = true;
    sim_config.seed = seed;
    sim_config.auto_delay_ms = (50, 400);
    sim_config.callback_retry_ms = vec![100, 200, 400, 800, 1_600];
    let sim = Sim::new(sim_config, protopay::Clock::system());
    sim.with_faults(|f| {
        f.no_dedupe = true;
        f.timeout_after_commit = Fault::chance(0.1);
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim_url = format!("http://{}", listener.local_addr().unwrap());
    let server_sim = sim.clone();
    tokio::spawn(serve(
        listener,
        server_sim,
        ServerOptions {
            hold: Duration::from_millis(800),
        },
        std::future::pending(),
    ));
    let background = sim.spawn(Arc::new(HttpSink::new(Duration::from_millis(500)).unwrap()));
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let callback_addr = probe.local_addr().unwrap().to_string();
    drop(probe);

    // The protocol, opened at the payment system; the child adopts it with `find`.
    let create = CreateProtocol {
        channel_type: ChannelType::Lft,
        trans_desc: "crash".into(),
        business_id: "B1".into(),
        cashier_type: Some(CashierType::Pos),
    };
    let request = Envelope::for_call(APP, &create, "20261126120000123".into(), &Md5Key::new(KEY)).unwrap();
    let Handled::Reply(body) = sim.handle("create", request.to_json().as_bytes()) else {
        panic!("create")
    };
    let reply = Envelope::open(&body, APP, &Md5Key::new(KEY)).unwrap();
    let trans_no = Envelope::decode_data::<RemoteProtocol>(reply.reply_data().unwrap())
        .unwrap()
        .trans_no;

    (sim, sim_url, background, callback_addr, trans_no)
}

/// Check a store against the simulator after the last round: every order equals the
/// simulator's truth and is listed (and counted) where its state says, nothing was paid twice, the ledger holds and matches, and every event
/// reached the consumer (whose log is in `dir`). Returns orders, events and the balance.
async fn verify(store: &dyn Storage, sim: &Sim, trans_no: &str, dir: &Path) -> (usize, u64, Amount) {
    let protocol = store.protocol(trans_no).await.unwrap().expect("protocol").value;
    let orders: Vec<Order> = store
        .orders_of(trans_no)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.value)
        .collect();
    let truth = sim.order_states();
    let mut wrong = Vec::new();
    for o in &orders {
        let ours = o.state_label().replace("+closed", "");
        // An order the payment system never received was resolved as failed by a person.
        let resolved_unknown = !truth.contains_key(o.out_req_no()) && ours == "FAILURE";
        if truth.get(o.out_req_no()) != Some(&ours) && !resolved_unknown {
            wrong.push(format!(
                "{}: ours {ours}, simulator {:?}",
                o.out_req_no(),
                truth.get(o.out_req_no())
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // Indexes and counts are written in the same atomic commit as the records: no kill
    // leaves them apart.
    let unlisted = protopay::storage::conformance::listing_disagreements(store, &orders)
        .await
        .unwrap();
    assert!(unlisted.is_empty(), "read models after the kills: {unlisted:#?}");
    let twice: Vec<_> = sim.stats().payouts.into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(twice.is_empty(), "paid out more than once: {twice:?}");
    protopay::ledger::check(&protocol.ledger, orders.iter()).expect("ledger invariants");
    let theirs = sim.balances(trans_no).unwrap();
    assert_eq!(protocol.ledger.available, theirs.available);
    let last_seq = store.last_seq().await.unwrap();
    let delivered: BTreeSet<u64> = std::fs::read_to_string(dir.join("delivered"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    // Seqs grow but need not be consecutive (PostgreSQL's are not): every stored one counts.
    let mut missing = Vec::new();
    let mut after = 0;
    loop {
        let page = protopay::storage::conformance::delivered(store, after, 1_000).await;
        let Some(last) = page.last() else { break };
        after = last.seq;
        missing.extend(page.iter().map(|e| e.seq).filter(|s| !delivered.contains(s)));
    }
    assert!(
        missing.is_empty(),
        "events never delivered: {:?}",
        &missing[..missing.len().min(20)]
    );
    (orders.len(), last_seq, protocol.ledger.available)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_and_recover() {
    let iterations: u64 = std::env::var("PROTOPAY_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let seed: u64 = std::env::var("PROTOPAY_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    eprintln!("crash test: {iterations} kills, seed {seed}");
    let dir = tempfile::tempdir().unwrap();

    let (sim, sim_url, background, callback_addr, trans_no) = simulator(seed).await;

    let mut rng = Rng::new(seed);
    for _ in 0..iterations {
        let mut child = spawn_child(dir.path(), &sim_url, &callback_addr, &trans_no, false);
        tokio::time::sleep(Duration::from_millis(rng.range(80, 700))).await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }
    sim.with_faults(|f| f.timeout_after_commit = Fault::default());
    let mut last = spawn_child(dir.path(), &sim_url, &callback_addr, &trans_no, true);
    let status = tokio::task::spawn_blocking(move || last.wait()).await.unwrap().unwrap();
    assert!(status.success(), "the final round did not converge: {status:?}");
    background.stop().await;

    // The parent reads the store itself.
    let store = SledStorage::open(dir.path().join("store")).expect("the store opens after all the kills");
    let (orders, last_seq, available) = verify(&store, &sim, &trans_no, dir.path()).await;
    eprintln!("crash test: {iterations} kills; {orders} orders, {last_seq} events, all agree; available {available}");
}

/// Two instances on one PostgreSQL, as two replicas behind a load balancer: both run the same
/// workload (every command twice, on two processes), callbacks go through a balancer in this
/// process to either child, and one child or the other is SIGKILLed again and again, leaving
/// its claims behind for the survivor. Then one final child converges, and the parent checks
/// the database: no double payout, no lost transition, the ledger equals the simulator's books,
/// every event delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgres_survive_kills() {
    let Some(url) = protopay_storage_postgres::testing::url() else {
        return;
    };
    let schema = protopay_storage_postgres::testing::schema("crash");
    let iterations: u64 = std::env::var("PROTOPAY_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let seed: u64 = std::env::var("PROTOPAY_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let dir = tempfile::tempdir().unwrap();
    let (sim, sim_url, background, _, trans_no) = simulator(seed).await;

    // The children's own receivers, and the balancer in front of them.
    let addrs: Vec<std::net::SocketAddr> = (0..2)
        .map(|_| {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap()
        })
        .collect();
    let balancer_addr = harness::balancer(addrs.clone()).await.to_string();
    let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();

    let base = balancer_addr.clone();
    let env = [
        ("PROTOPAY_CRASH_PG_URL", url.as_str()),
        ("PROTOPAY_CRASH_PG_SCHEMA", schema.as_str()),
        ("PROTOPAY_CALLBACK_BASE", base.as_str()),
    ];
    let spawn = |i: usize, last: bool| spawn_child_with(dir.path(), &sim_url, &addrs[i], &trans_no, last, &env);
    let mut children = [Some(spawn(0, false)), Some(spawn(1, false))];
    let mut rng = Rng::new(seed);
    for _ in 0..iterations {
        tokio::time::sleep(Duration::from_millis(rng.range(150, 900))).await;
        let victim = rng.range(0, 1) as usize;
        if let Some(mut child) = children[victim].take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
        }
        children[victim] = Some(spawn(victim, false));
    }
    for child in children.iter_mut().filter_map(Option::take) {
        let mut child = child;
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }
    sim.with_faults(|f| f.timeout_after_commit = Fault::default());
    let mut last = spawn(0, true);
    let status = tokio::task::spawn_blocking(move || last.wait()).await.unwrap().unwrap();
    assert!(status.success(), "the final round did not converge: {status:?}");
    background.stop().await;

    let store = PostgresStorage::open(PostgresOptions {
        schema,
        ..PostgresOptions::new(&url)
    })
    .await
    .expect("open");
    let (orders, events, available) = verify(&store, &sim, &trans_no, dir.path()).await;
    eprintln!(
        "two instances on postgres: {iterations} kills; {orders} orders, {events} events, all agree; available {available}"
    );
}
