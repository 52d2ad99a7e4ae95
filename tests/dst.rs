//! Deterministic simulation testing, in the spirit of TigerBeetle's VOPR.
//!
//! Per seed: the engine on `MemoryStorage` (with injected commit failures), the in-process
//! simulator (auto schedule, no-dedupe mode), tokio's paused clock, a random workload
//! (protocols, deposits, payouts, refunds, POS closes, bursts of concurrent payouts, forged
//! callbacks) and a random fault mix (dropped / duplicated / delayed / reordered callbacks,
//! 5xx, refused connections, timeouts after commit, requests that land late after the caller
//! gave up, corrupted reply signs, engine restarts at random points). An auditor checks after every step: ledger invariants, monotonic states, no
//! `outReqNo` paid out twice, events consistent with transitions. Then a quiet phase with
//! faults off: every order must converge to the simulator's truth within bounded simulated
//! time.
//!
//! `PROTOPAY_SEED=n` replays one seed exactly; `PROTOPAY_SEEDS=n` runs seeds 0..n (CI: 200),
//! from `PROTOPAY_SEED_START` if set.

use protopay::storage::{MemoryStorage, Storage};
use protopay::wire::{CallbackKind, CashierType, OutType};
use protopay::{
    Amount, Clock, Config, Engine, Error, EventKind, Md5Key, NewInbound, NewOutbound, NewProtocol, Order, PollerHandle,
    Sensitive, Status,
};
use protopay_sim::{Background, CallbackSink, Fault, Faults, Rng, Sim, SimConfig, SimTransport};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const APP: &str = "APP001";
const KEY: &str = "vopr";

/// Routes callbacks to whichever engine is up; while it is down they fail (and are retried).
#[derive(Clone, Default)]
struct Switchboard(Arc<Mutex<Option<Engine>>>);

#[async_trait::async_trait]
impl CallbackSink for Switchboard {
    async fn deliver(&self, url: &str, body: Vec<u8>) -> Option<(u16, String)> {
        let engine = self.0.lock().unwrap().clone()?;
        let kind = CallbackKind::from_slug(url.rsplit('/').next()?)?;
        let reply = engine.handle_callback(kind, &body).await;
        Some((reply.status, reply.body))
    }
}

struct World {
    seed: u64,
    rng: Rng,
    sim: Sim,
    storage: MemoryStorage,
    clock: Clock,
    board: Switchboard,
    engine: Engine,
    poller: Option<PollerHandle>,
    inflight: Vec<tokio::task::JoinHandle<()>>,
    protocols: Vec<(String, CashierType)>,
    inbound: Vec<String>,
    next: u64,
    seen: BTreeMap<String, (u8, bool)>,
    restarts: u32,
}

fn config() -> Config {
    let mut c = Config::new(APP, Md5Key::new(KEY), "sim://", "http://engine/notify");
    c.poll.max_submissions = 8;
    c.poll.attention_after_quiet_polls = 1_000;
    c
}

async fn engine(storage: &MemoryStorage, sim: &Sim, clock: Clock) -> Engine {
    Engine::builder(config())
        .storage(storage.clone())
        .transport(SimTransport(sim.clone()))
        .clock(clock)
        .build()
        .await
        .expect("engine")
}

fn faults_for(rng: &mut Rng) -> Faults {
    let p = |rng: &mut Rng, max: f64| if rng.unit() < 0.5 { Fault::chance(rng.unit() * max) } else { Fault::default() };
    Faults {
        drop_callback: p(rng, 0.5),
        duplicate_callback: p(rng, 0.5),
        delay_callback: p(rng, 0.5),
        reorder_callback: p(rng, 0.5),
        http_500: p(rng, 0.2),
        timeout_after_commit: p(rng, 0.3),
        corrupt_sign: p(rng, 0.2),
        refuse_connection: p(rng, 0.2),
        // Late arrivals stay within the request timeout, as a real network's do; the grace
        // period (longer than that timeout) is what keeps a resend from paying twice.
        late_arrival: p(rng, 0.3),
        late_ms: config().timeouts.request_ms - 1,
        no_dedupe: true,
        delay_ms: rng.range(100, 60_000),
    }
}

impl World {
    async fn new(seed: u64) -> (World, Background) {
        let mut rng = Rng::new(seed);
        let clock = Clock::starting_at(chrono::DateTime::from_timestamp(1_795_000_000, 0).expect("time"));
        let mut sc = SimConfig::new(APP, Md5Key::new(KEY));
        sc.seed = seed;
        sc.auto = true;
        sc.auto_delay_ms = (100, 20_000);
        sc.callback_retry_ms = vec![1_000, 5_000, 30_000, 120_000];
        let sim = Sim::new(sc, clock);
        sim.set_faults(faults_for(&mut rng));
        let storage = MemoryStorage::new();
        let board = Switchboard::default();
        let engine = engine(&storage, &sim, clock).await;
        *board.0.lock().unwrap() = Some(engine.clone());
        let background = sim.spawn(Arc::new(board.clone()));
        let poller = Some(engine.spawn_poller());
        let world = World {
            seed,
            rng,
            sim,
            storage,
            clock,
            board,
            engine,
            poller,
            inflight: Vec::new(),
            protocols: Vec::new(),
            inbound: Vec::new(),
            next: 0,
            seen: BTreeMap::new(),
            restarts: 0,
        };
        (world, background)
    }

    fn key(&mut self, kind: &str) -> String {
        self.next += 1;
        format!("{APP}-{kind}{}", self.next)
    }

    fn amount(&mut self, max_fen: u64) -> Amount {
        Amount::from_fen(self.rng.range(1, max_fen)).expect("amount")
    }

    async fn create_protocol(&mut self) {
        let cashier_type = if self.rng.unit() < 0.7 { CashierType::Pos } else { CashierType::Qp };
        let cmd =
            NewProtocol { trans_desc: "vopr".into(), business_id: "B1".into(), cashier_type: cashier_type.clone() };
        if let Ok(p) = self.engine.create_protocol(cmd).await {
            self.protocols.push((p.trans_no, cashier_type));
        }
    }

    fn pick_protocol(&mut self) -> Option<(String, CashierType)> {
        if self.protocols.is_empty() {
            return None;
        }
        let i = self.rng.range(0, self.protocols.len() as u64 - 1) as usize;
        self.protocols.get(i).cloned()
    }

    async fn deposit(&mut self) {
        let Some((trans_no, cashier)) = self.pick_protocol() else { return };
        let key = self.key("in");
        let mut cmd = NewInbound { out_req_no: Some(key.clone()), ..NewInbound::pos(&trans_no, self.amount(50_000)) };
        if cashier == CashierType::Qp {
            cmd.prod_catalog = None;
            cmd.payer_name = Some(Sensitive::new("张三"));
        }
        let _ = self.engine.prepay(cmd).await;
        self.inbound.push(key);
    }

    fn payout_cmd(&mut self, trans_no: &str) -> NewOutbound {
        let key = self.key("out");
        NewOutbound {
            trans_no: trans_no.into(),
            out_req_no: Some(key),
            amount: self.amount(20_000),
            out_type: if self.rng.unit() < 0.7 { OutType::Out } else { OutType::Refund },
            payee_name: Sensitive::new("李四"),
            payee_account: Sensitive::new("6222020200112233445"),
            bank_name: "中国工商银行股份有限公司北京海淀支行".into(),
            bank_cnaps: "102100000072".into(),
            remark: None,
        }
    }

    async fn payout(&mut self) {
        let Some((trans_no, _)) = self.pick_protocol() else { return };
        let cmd = self.payout_cmd(&trans_no);
        match self.engine.outpay(cmd).await {
            Ok(_) | Err(Error::InsufficientFunds { .. }) => {}
            Err(_) => {} // transport or storage trouble: the order, if stored, is the poller's
        }
    }

    /// Several payouts at once on one protocol, left running as host tasks (a restart may
    /// cut them off mid-flight).
    fn burst(&mut self) {
        let Some((trans_no, _)) = self.pick_protocol() else { return };
        for _ in 0..self.rng.range(2, 4) {
            let cmd = self.payout_cmd(&trans_no);
            let engine = self.engine.clone();
            self.inflight.push(tokio::spawn(async move {
                let _ = engine.outpay(cmd).await;
            }));
        }
    }

    async fn close(&mut self) {
        if self.inbound.is_empty() {
            return;
        }
        let i = self.rng.range(0, self.inbound.len() as u64 - 1) as usize;
        let key = self.inbound[i].clone();
        let _ = self.engine.close_pos(&key).await;
    }

    async fn forge(&mut self) {
        if self.inbound.is_empty() {
            return;
        }
        let key = self.inbound[self.rng.range(0, self.inbound.len() as u64 - 1) as usize].clone();
        let data = serde_json::json!({"outReqNo": key, "payStatus": "SUCCESS", "arrivedStatus": "02"});
        let body = protopay::wire::Envelope::reply(
            APP,
            "0000",
            "SUCCESS",
            data.to_string(),
            "20261126120000123".into(),
            &Md5Key::new("forger"),
        );
        let reply = self.engine.handle_callback(CallbackKind::InboundArrival, body.to_json().as_bytes()).await;
        assert!(!reply.is_success(), "seed {}: a forged callback was accepted", self.seed);
    }

    /// A crash: the poller and in-flight host calls stop wherever they are; a new engine
    /// starts on the same storage.
    async fn restart(&mut self) {
        self.restarts += 1;
        if let Some(p) = self.poller.take() {
            p.abort();
        }
        for t in self.inflight.drain(..) {
            t.abort();
        }
        *self.board.0.lock().unwrap() = None;
        tokio::time::sleep(Duration::from_millis(self.rng.range(0, 30_000))).await;
        self.engine = engine(&self.storage, &self.sim, self.clock).await;
        *self.board.0.lock().unwrap() = Some(self.engine.clone());
        self.poller = Some(self.engine.spawn_poller());
    }

    async fn orders(&self) -> Vec<Order> {
        let mut all = Vec::new();
        for (t, _) in &self.protocols {
            all.extend(self.storage.orders_of(t).await.expect("orders").into_iter().map(|o| o.value));
        }
        all
    }

    /// The auditor: what must hold after every step.
    async fn audit(&mut self) {
        let seed = self.seed;
        for (t, _) in &self.protocols {
            let p = self.storage.protocol(t).await.expect("read").expect("protocol").value;
            let orders: Vec<Order> =
                self.storage.orders_of(t).await.expect("orders").into_iter().map(|o| o.value).collect();
            if let Err(e) = protopay::ledger::check(&p.ledger, orders.iter()) {
                panic!("seed {seed}: ledger of {t}: {e}");
            }
        }
        for o in self.orders().await {
            let now = (o.status().rank(), matches!(&o, Order::Inbound(i) if i.arrived));
            if let Some(before) = self.seen.insert(o.out_req_no().to_owned(), now) {
                assert!(now >= before, "seed {seed}: {} went back from {before:?} to {now:?}", o.out_req_no());
            }
        }
        for (key, n) in self.sim.stats().payouts {
            assert!(n <= 1, "seed {seed}: {key} paid out {n} times");
        }
        let mut once: BTreeMap<(String, String), u32> = BTreeMap::new();
        for e in self.storage.events_after(0, usize::MAX).await.expect("events") {
            let singular = matches!(
                e.kind,
                EventKind::InboundRequested
                    | EventKind::OutboundReserved
                    | EventKind::InboundPaid
                    | EventKind::InboundArrived
                    | EventKind::InboundFailed
                    | EventKind::OutboundSucceeded { .. }
                    | EventKind::OutboundFailed { .. }
            );
            if let (true, Some(key)) = (singular, e.out_req_no) {
                let n = once.entry((key.clone(), format!("{:?}", e.kind))).or_insert(0);
                *n += 1;
                assert_eq!(*n, 1, "seed {seed}: {key} {:?} published twice", e.kind);
            }
        }
    }

    /// Events must tell the same story as the final states.
    async fn events_match_states(&self) {
        let events = self.storage.events_after(0, usize::MAX).await.expect("events");
        for o in self.orders().await {
            let has = |f: &dyn Fn(&EventKind) -> bool| {
                events.iter().any(|e| e.out_req_no.as_deref() == Some(o.out_req_no()) && f(&e.kind))
            };
            let ok = match (&o, o.status()) {
                (Order::Inbound(i), Status::Success) => {
                    has(&|k| *k == EventKind::InboundPaid) && (i.arrived == has(&|k| *k == EventKind::InboundArrived))
                }
                (Order::Inbound(_), Status::Failure) => has(&|k| *k == EventKind::InboundFailed),
                (Order::Outbound(_), Status::Success) => has(&|k| matches!(k, EventKind::OutboundSucceeded { .. })),
                (Order::Outbound(_), Status::Failure) => has(&|k| matches!(k, EventKind::OutboundFailed { .. })),
                _ => true,
            };
            assert!(ok, "seed {}: events of {} do not match {}", self.seed, o.out_req_no(), o.state_label());
        }
    }

    /// Orders whose state differs from the simulator's. An order the simulator never
    /// received may legitimately be failed (refused) or waiting for a person.
    async fn unconverged(&self) -> Vec<String> {
        let truth = self.sim.order_states();
        let mut out = Vec::new();
        for o in self.orders().await {
            let ours = o.state_label().replace("+closed", "");
            let acceptable = match truth.get(o.out_req_no()) {
                Some(t) => *t == ours,
                None => o.status() == Status::Failure || o.attempts().needs_attention,
            };
            if !acceptable {
                out.push(format!("{}: ours {ours}, simulator {:?}", o.out_req_no(), truth.get(o.out_req_no())));
            }
        }
        for key in truth.keys() {
            if self.storage.order(key).await.expect("read").is_none() {
                out.push(format!("{key}: the simulator has it, we do not"));
            }
        }
        out
    }
}

async fn run_seed(seed: u64) -> (usize, u32) {
    let (mut w, background) = World::new(seed).await;
    w.create_protocol().await;
    let steps = w.rng.range(30, 70);
    for _ in 0..steps {
        let roll = w.rng.range(0, 99);
        match roll {
            0..=4 => w.create_protocol().await,
            5..=39 => w.deposit().await,
            40..=59 => w.payout().await,
            60..=64 => w.burst(),
            65..=69 => w.close().await,
            70..=72 => w.forge().await,
            73..=76 => w.restart().await,
            77..=79 => w.storage.fail_next_commits(w.rng.range(1, 3) as u32),
            _ => {
                let ms = w.rng.range(100, 120_000);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        }
        w.audit().await;
    }
    // Quiet phase: faults off (the simulator still never deduplicates), in-flight host calls
    // finish, and everything must converge within bounded simulated time.
    w.sim.set_faults(Faults { no_dedupe: true, ..Faults::default() });
    w.storage.fail_next_commits(0);
    for t in w.inflight.drain(..) {
        let _ = t.await;
    }
    // The bound follows from the poll policy: the slowest poll (waiting for arrival, backed off
    // to the ceiling, plus jitter) must have come round at least once.
    let policy = config().poll;
    let slowest = policy.max_interval_ms * (100 + u64::from(policy.jitter_percent)) / 100 + policy.grace_ms;
    let minutes = 2 * slowest / 60_000 + 10;
    let mut left = Vec::new();
    for _ in 0..minutes {
        tokio::time::sleep(Duration::from_secs(60)).await;
        left = w.unconverged().await;
        if left.is_empty() {
            break;
        }
    }
    assert!(left.is_empty(), "seed {seed}: not converged after {minutes} simulated minutes: {left:#?}");
    w.audit().await;
    w.events_match_states().await;
    for (t, _) in &w.protocols {
        let ours = w.storage.protocol(t).await.expect("read").expect("protocol").value.ledger;
        let theirs = w.sim.balances(t).expect("sim protocol");
        assert_eq!(ours.available, theirs.available, "seed {seed}: available of {t}");
        assert_eq!(ours.in_transit, theirs.on_passage, "seed {seed}: in transit of {t}");
    }
    let orders = w.orders().await.len();
    let restarts = w.restarts;
    if let Some(p) = w.poller.take() {
        p.shutdown().await;
    }
    background.stop().await;
    (orders, restarts)
}

fn run_in_simulated_time(seed: u64) -> (usize, u32) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("runtime");
    rt.block_on(run_seed(seed))
}

#[test]
fn vopr() {
    let seeds: Vec<u64> = match (std::env::var("PROTOPAY_SEED"), std::env::var("PROTOPAY_SEEDS")) {
        (Ok(one), _) => vec![one.parse().expect("PROTOPAY_SEED must be a number")],
        (_, Ok(n)) => {
            let start: u64 = std::env::var("PROTOPAY_SEED_START").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
            (start..start + n.parse::<u64>().expect("PROTOPAY_SEEDS must be a number")).collect()
        }
        _ => (0..200).collect(),
    };
    let (mut orders, mut restarts) = (0, 0);
    for seed in &seeds {
        let result = std::panic::catch_unwind(|| run_in_simulated_time(*seed));
        match result {
            Ok((o, r)) => {
                orders += o;
                restarts += r;
            }
            Err(panic) => {
                eprintln!("\nVOPR: seed {seed} failed; replay with PROTOPAY_SEED={seed}");
                std::panic::resume_unwind(panic);
            }
        }
    }
    eprintln!("VOPR: {} seeds, {orders} orders, {restarts} restarts, all converged", seeds.len());
}

#[test]
fn same_seed_same_run() {
    // Determinism is what makes a failing seed worth printing.
    let a = run_in_simulated_time(12_345);
    let b = run_in_simulated_time(12_345);
    assert_eq!(a, b);
}
