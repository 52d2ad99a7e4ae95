//! The whole stack on loopback, shared by `examples/demo.rs` and the end-to-end tests: the
//! simulator's HTTP server (with its callback sender), an engine on sled in a data directory,
//! the HTTP transport, the callback receiver and the poller. The engine half can be stopped
//! and started again on the same directory, as after a restart.

#![allow(dead_code)]

use protopay::http::{HttpTransport, callback_router};
use protopay::sled::SledStorage;
use protopay::storage::Storage;
use protopay::{Config, Engine, Md5Key, Order, PollerHandle};
use protopay_sim::server::{ServerOptions, serve};
use protopay_sim::{Background, HttpSink, Sim, SimConfig};
use protopay_storage_postgres::{PostgresOptions, PostgresStorage};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub(crate) const APP: &str = "APP001";
pub(crate) const KEY: &str = "demo-key-not-secret";

struct Running {
    engine: Engine,
    poller: PollerHandle,
    receiver: JoinHandle<()>,
    stop_receiver: oneshot::Sender<()>,
}

/// Where the engines keep their data.
#[derive(Debug, Clone)]
pub(crate) enum Store {
    /// sled in a directory (one instance at a time).
    Sled(PathBuf),
    /// One PostgreSQL schema, shared by every instance.
    Postgres { url: String, schema: String },
}

impl Store {
    async fn open(&self) -> Arc<dyn Storage> {
        match self {
            Store::Sled(dir) => Arc::new(SledStorage::open(dir).expect("open the sled store")),
            Store::Postgres { url, schema } => Arc::new(
                PostgresStorage::open(PostgresOptions {
                    schema: schema.clone(),
                    ..PostgresOptions::new(url)
                })
                .await
                .expect("open the PostgreSQL store"),
            ),
        }
    }
}

/// The stack: the simulator and one or more engine instances on one store.
pub(crate) struct Stack {
    pub sim: Sim,
    pub sim_url: String,
    /// Where the payment system posts callbacks: the one instance's receiver, or a balancer
    /// that alternates between the instances' receivers.
    pub callback_addr: SocketAddr,
    pub store: Store,
    /// Each instance's own receiver.
    receivers: Vec<SocketAddr>,
    instances: Vec<Option<Running>>,
    sim_server: JoinHandle<()>,
    stop_sim: oneshot::Sender<()>,
    sim_background: Background,
}

/// Timings that make a whole story take seconds, keeping grace > request timeout.
pub(crate) fn config(sim_url: &str, callback_addr: SocketAddr) -> Config {
    let mut c = Config::new(
        APP,
        Md5Key::new(KEY),
        sim_url,
        &format!("http://{callback_addr}/protopay/notify"),
    );
    c.timeouts.connect_ms = 500;
    c.timeouts.request_ms = 1_000;
    c.poll.grace_ms = 1_500;
    c.poll.submitted_ms = 300;
    c.poll.processing_ms = 300;
    c.poll.unpaid_ms = 300;
    c.poll.awaiting_arrival_ms = 300;
    c.poll.attention_ms = 2_000;
    c.poll.max_interval_ms = 1_000;
    c.poll.idle_tick_ms = 100;
    c.poll.claim_ms = 1_200;
    c
}

/// A free loopback address.
fn free_addr() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe");
    probe.local_addr().expect("probe address")
}

/// A load balancer for callbacks: each callback goes to the next of `targets` in turn, and to
/// the one after if that one does not answer (a replica that is down is skipped).
pub(crate) async fn balancer(targets: Vec<SocketAddr>) -> SocketAddr {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the balancer");
    let addr = listener.local_addr().expect("balancer address");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("HTTP client");
    let next = Arc::new(AtomicUsize::new(0));
    let targets = Arc::new(targets);
    let forward = move |axum::extract::Path(kind): axum::extract::Path<String>, body: axum::body::Bytes| {
        let (client, targets, next) = (client.clone(), targets.clone(), next.clone());
        async move {
            let first = next.fetch_add(1, Ordering::Relaxed);
            for i in 0..targets.len() {
                let target = targets[(first + i) % targets.len()];
                let url = format!("http://{target}/protopay/notify/{kind}");
                if let Ok(r) = client.post(&url).body(body.clone()).send().await {
                    let status = axum::http::StatusCode::from_u16(r.status().as_u16())
                        .unwrap_or(axum::http::StatusCode::BAD_GATEWAY);
                    return (status, r.text().await.unwrap_or_default());
                }
            }
            (axum::http::StatusCode::BAD_GATEWAY, String::new())
        }
    };
    let app = axum::Router::new().route("/protopay/notify/{kind}", axum::routing::post(forward));
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

impl Stack {
    /// Start everything, with one engine on sled in `data_dir`.
    pub(crate) async fn start(data_dir: &Path, seed: u64) -> Stack {
        Stack::start_with(Store::Sled(data_dir.to_path_buf()), 1, seed).await
    }

    /// Start everything, with `instances` engines on `store` behind a callback balancer.
    pub(crate) async fn start_with(store: Store, instances: usize, seed: u64) -> Stack {
        let mut sim_config = SimConfig::new(APP, Md5Key::new(KEY));
        sim_config.seed = seed;
        sim_config.callback_retry_ms = vec![200, 400, 800, 1_600, 3_200];
        let sim = Sim::new(sim_config, protopay::Clock::system());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the simulator");
        let sim_url = format!("http://{}", listener.local_addr().expect("sim address"));
        let (stop_sim, stopped) = oneshot::channel::<()>();
        let options = ServerOptions {
            hold: Duration::from_secs(5),
        };
        let server_sim = sim.clone();
        let sim_server = tokio::spawn(async move {
            let _ = serve(listener, server_sim, options, async move {
                let _ = stopped.await;
            })
            .await;
        });
        let sink = HttpSink::new(Duration::from_secs(2)).expect("HTTP client");
        let sim_background = sim.spawn(Arc::new(sink));
        let receivers: Vec<SocketAddr> = (0..instances.max(1)).map(|_| free_addr()).collect();
        let callback_addr = match receivers.as_slice() {
            [one] => *one,
            many => balancer(many.to_vec()).await,
        };
        let mut stack = Stack {
            sim,
            sim_url,
            callback_addr,
            store,
            instances: receivers.iter().map(|_| None).collect(),
            receivers,
            sim_server,
            stop_sim,
            sim_background,
        };
        for i in 0..stack.instances.len() {
            stack.start_instance(i).await;
        }
        stack
    }

    /// The first running instance's engine (panics if none runs).
    pub(crate) fn engine(&self) -> Engine {
        self.instances
            .iter()
            .flatten()
            .next()
            .expect("an engine running")
            .engine
            .clone()
    }

    /// How many instances run.
    pub(crate) fn running(&self) -> usize {
        self.instances.iter().flatten().count()
    }

    /// Start the first instance again (after [`Stack::stop_engine`]).
    pub(crate) async fn start_engine(&mut self) {
        self.start_instance(0).await;
    }

    /// Start instance `i` on the store, with its own receiver and poller.
    pub(crate) async fn start_instance(&mut self, i: usize) {
        let config = config(&self.sim_url, self.callback_addr);
        let transport = HttpTransport::from_config(&config).expect("HTTP transport");
        let engine = Engine::builder(config)
            .shared_storage(self.store.open().await)
            .transport(transport)
            .build()
            .await
            .expect("engine");
        let listener = TcpListener::bind(self.receivers[i]).await.expect("bind the receiver");
        let app = callback_router(engine.clone());
        let (stop_receiver, stopped) = oneshot::channel::<()>();
        let receiver = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        let poller = engine.spawn_poller();
        self.instances[i] = Some(Running {
            engine,
            poller,
            receiver,
            stop_receiver,
        });
    }

    /// Stop the first instance gracefully (the simulator keeps running and retrying
    /// callbacks). When it returns, a sled directory is free for the next engine.
    pub(crate) async fn stop_engine(&mut self) {
        self.stop_instance(0).await;
    }

    /// Stop instance `i` gracefully: its receiver first, then its engine and poller.
    pub(crate) async fn stop_instance(&mut self, i: usize) {
        if let Some(r) = self.instances[i].take() {
            let _ = r.stop_receiver.send(());
            let _ = r.receiver.await;
            r.engine.shutdown().await.expect("engine shutdown");
            r.poller.shutdown().await;
        }
    }

    /// Stop everything.
    pub(crate) async fn stop(mut self) {
        for i in 0..self.instances.len() {
            self.stop_instance(i).await;
        }
        let _ = self.stop_sim.send(());
        let _ = self.sim_server.await;
        self.sim_background.stop().await;
    }

    /// Wait until the order satisfies `done`, woken by the engine's event feed (every state
    /// change commits an event); `within` is only a safety net against a hang.
    pub(crate) async fn until(&self, out_req_no: &str, within: Duration, done: impl Fn(&Order) -> bool) -> Order {
        let engine = self.engine();
        let deadline = tokio::time::Instant::now() + within;
        let mut feed = engine.subscribe(&format!("until-{out_req_no}"));
        loop {
            if let Ok(order) = engine.order(out_req_no).await
                && done(&order)
            {
                return order;
            }
            if tokio::time::timeout_at(deadline, feed.next()).await.is_err() {
                let state = engine.order(out_req_no).await.map(|o| o.state_label());
                panic!("{out_req_no} did not get there within {within:?}: {state:?}");
            }
        }
    }

    /// Every difference between the engine's orders and balances and the simulator's.
    pub(crate) async fn disagreements(&self, protocols: &[&str]) -> Vec<String> {
        disagreements(&self.engine(), &self.sim, protocols).await
    }
}

/// Every difference between an engine's orders and balances and the simulator's (an order
/// the simulator never received agrees only when it failed here), and every payout the
/// simulator made more than once.
pub(crate) async fn disagreements(engine: &Engine, sim: &Sim, protocols: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let truth = sim.order_states();
    for trans_no in protocols {
        let ledger = engine.protocol(trans_no).await.expect("protocol").ledger;
        let theirs = sim.balances(trans_no).expect("sim protocol");
        let paid = ledger.paid_out.checked_add(ledger.refunded);
        let pairs = [
            ("available", Some(ledger.available), theirs.available),
            ("in transit", Some(ledger.in_transit), theirs.in_transit),
            ("reserved", Some(ledger.reserved), theirs.reserved),
            ("paid out + refunded", paid, theirs.paid_out),
        ];
        for (name, ours, theirs) in pairs {
            if ours != Some(theirs) {
                out.push(format!("{trans_no} {name}: ours {ours:?}, simulator {theirs}"));
            }
        }
        for order in engine.orders_of(trans_no).await.expect("orders") {
            let ours = order.state_label().replace("+closed", "");
            match truth.get(order.out_req_no()) {
                Some(t) if *t == ours => {}
                // Never received there: failed here (refused, or resolved by a person).
                None if ours == "FAILURE" => {}
                t => out.push(format!("{}: ours {ours}, simulator {t:?}", order.out_req_no())),
            }
        }
        protopay::ledger::check(&ledger, engine.orders_of(trans_no).await.expect("orders").iter())
            .unwrap_or_else(|e| out.push(format!("{trans_no}: {e}")));
    }
    for (key, n) in sim.stats().payouts {
        if n > 1 {
            out.push(format!("{key} was paid out {n} times"));
        }
    }
    out
}

/// A convenience to check a store's event count without an engine.
pub(crate) async fn last_seq(dir: &Path) -> u64 {
    SledStorage::open(dir)
        .expect("open")
        .last_seq()
        .await
        .expect("last seq")
}

/// What the story made.
pub(crate) struct Story {
    pub pos_protocol: String,
    pub qp_protocol: String,
    pub deposit: String,
    pub quiet_deposit: String,
    pub qp_deposit: String,
    pub payout: String,
    pub refund: String,
    pub failed_payout: String,
    pub lost_reply_payout: String,
    /// The story's chapters: a title and the `seq` of its first event.
    pub chapters: Vec<(String, u64)>,
}

/// Start a chapter: its events are those from the next `seq` on.
async fn chapter(engine: &Engine, chapters: &mut Vec<(String, u64)>, title: &str) {
    let events = engine.events_after(0, 100_000).await.unwrap_or_default();
    chapters.push((title.to_owned(), events.last().map_or(1, |e| e.seq + 1)));
}

fn payee(trans_no: &str, key: &str, amount: &str, out_type: protopay::wire::OutType) -> protopay::NewOutbound {
    let payee = protopay::testing::payee(trans_no, Some(key), amount, out_type).expect("amount");
    protopay::NewOutbound {
        remark: Some("demo".into()),
        ..payee
    }
}

/// The whole escrow story of the README, step by step, against the running stack.
pub(crate) async fn escrow_story(stack: &mut Stack) -> Story {
    use protopay::wire::{CashierType, OutType};
    use protopay::{Amount, NewInbound, NewProtocol, Status};
    let e = stack.engine();
    let wait = Duration::from_secs(20);
    let paid_and_arrived = |o: &Order| o.inbound().is_some_and(|i| i.arrived);
    let mut chapters = Vec::new();

    // 1. A POS protocol.
    chapter(
        &e,
        &mut chapters,
        "1. An escrow protocol for a house deposit, paid in at a POS terminal",
    )
    .await;
    let pos = e
        .create_protocol(NewProtocol {
            trans_desc: "二手房交易 定金".into(),
            business_id: "B1001".into(),
            cashier_type: CashierType::Pos,
            idempotency_key: None,
        })
        .await
        .expect("create the POS protocol");

    chapter(
        &e,
        &mut chapters,
        "2. A deposit paid at the terminal; its callbacks bring the news",
    )
    .await;
    // 2. A deposit paid at the terminal and arrived, both reported by callbacks.
    let deposit = format!("{APP}-dep-1");
    let o = e
        .prepay(NewInbound {
            out_req_no: Some(deposit.clone()),
            ..NewInbound::pos(&pos.trans_no, Amount::parse("500.00").expect("amount"))
        })
        .await
        .expect("prepay");
    assert!(
        o.inbound().is_some_and(|i| i.remote.pos_code.is_some()),
        "a POS code to type in"
    );
    stack.sim.pay(&deposit, true).expect("pay");
    stack.until(&deposit, wait, |o| o.status == Status::Success).await;
    stack.sim.arrive(&deposit).expect("arrive");
    stack.until(&deposit, wait, paid_and_arrived).await;

    chapter(
        &e,
        &mut chapters,
        "3. A deposit whose callbacks are all lost: the poller finds it",
    )
    .await;
    // 3. A second deposit whose callbacks are all dropped: the poller finds it.
    let quiet = format!("{APP}-dep-2");
    e.prepay(NewInbound {
        out_req_no: Some(quiet.clone()),
        ..NewInbound::pos(&pos.trans_no, Amount::parse("300.00").expect("amount"))
    })
    .await
    .expect("prepay");
    stack
        .sim
        .with_faults(|f| f.drop_callback = protopay_sim::Fault::once(2));
    stack.sim.pay(&quiet, true).expect("pay");
    stack.sim.arrive(&quiet).expect("arrive");
    stack.until(&quiet, wait, paid_and_arrived).await;

    chapter(
        &e,
        &mut chapters,
        "4. A rent deposit by quick pay: a cashier page instead of a code",
    )
    .await;
    // 4. A quick-pay deposit on a QP protocol: a cashier page instead of a code.
    let qp = e
        .create_protocol(NewProtocol {
            trans_desc: "租赁 押金".into(),
            business_id: "B1002".into(),
            cashier_type: CashierType::Qp,
            idempotency_key: None,
        })
        .await
        .expect("create the QP protocol");
    let qp_deposit = format!("{APP}-qp-1");
    let o = e
        .prepay(NewInbound {
            trans_no: qp.trans_no.clone(),
            out_req_no: Some(qp_deposit.clone()),
            amount: Amount::parse("88.80").expect("amount"),
            prod_catalog: None,
            contract_num: Some("HT-2026-001".into()),
            payer_name: Some(protopay::Sensitive::new("张三")),
            payer_cert_number: Some(protopay::Sensitive::new("110101199001011234")),
            return_url: Some("https://host.example/paid".into()),
        })
        .await
        .expect("quick-pay prepay");
    assert!(
        o.inbound().is_some_and(|i| i.remote.cashier_url.is_some()),
        "a cashier page to open"
    );
    stack.sim.pay(&qp_deposit, true).expect("pay");
    stack.sim.arrive(&qp_deposit).expect("arrive");
    stack.until(&qp_deposit, wait, paid_and_arrived).await;

    if stack.running() > 1 {
        // Halfway, one replica goes away: the others carry on, its claims run out.
        chapter(
            &e,
            &mut chapters,
            "   (instance 2 stops here; instance 1 carries on alone)",
        )
        .await;
        stack.stop_instance(1).await;
    }

    chapter(&e, &mut chapters, "5. A payout to the seller and a refund to the buyer").await;
    // 5. A payout and a refund, both settled.
    let payout = format!("{APP}-pay-1");
    e.outpay(payee(&pos.trans_no, &payout, "200.00", OutType::Out))
        .await
        .expect("payout");
    let refund = format!("{APP}-ref-1");
    e.outpay(payee(&pos.trans_no, &refund, "100.00", OutType::Refund))
        .await
        .expect("refund");
    stack.sim.settle(&payout, true).expect("settle");
    stack.sim.settle(&refund, true).expect("settle");
    stack.until(&payout, wait, |o| o.status == Status::Success).await;
    stack.until(&refund, wait, |o| o.status == Status::Success).await;

    chapter(&e, &mut chapters, "6. A payout the bank refuses: its funds come back").await;
    // 6. A payout that fails: its funds come back.
    let failed = format!("{APP}-pay-2");
    e.outpay(payee(&pos.trans_no, &failed, "150.00", OutType::Out))
        .await
        .expect("payout");
    stack.sim.settle(&failed, false).expect("settle");
    stack.until(&failed, wait, |o| o.status == Status::Failure).await;

    chapter(
        &e,
        &mut chapters,
        "7. A payout whose reply is lost, at a payment system that never deduplicates: paid once",
    )
    .await;
    // 7. A payout whose reply is lost after the payment system committed it, with the
    //    simulator in no-dedupe mode: a careless resend would pay twice.
    let lost = format!("{APP}-pay-3");
    stack.sim.with_faults(|f| {
        f.no_dedupe = true;
        f.timeout_after_commit = protopay_sim::Fault::once(1);
    });
    let o = e
        .outpay(payee(&pos.trans_no, &lost, "250.00", OutType::Out))
        .await
        .expect("payout");
    assert_eq!(o.status, Status::Submitted, "the reply was lost: outcome unknown");
    stack.until(&lost, wait, |o| o.status == Status::Processing).await;
    stack.sim.settle(&lost, true).expect("settle");
    stack.until(&lost, wait, |o| o.status == Status::Success).await;
    stack.sim.with_faults(|f| f.no_dedupe = false);

    Story {
        pos_protocol: pos.trans_no,
        qp_protocol: qp.trans_no,
        deposit,
        quiet_deposit: quiet,
        qp_deposit,
        payout,
        refund,
        failed_payout: failed,
        lost_reply_payout: lost,
        chapters,
    }
}
