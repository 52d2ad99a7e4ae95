//! Many instances, one store: three engines share one store and one simulator, as replicas
//! behind a load balancer share one PostgreSQL. Each seed draws a workload and a fault mix:
//! commands on random instances, callbacks delivered to a random live instance, instances
//! crashed (pollers aborted, their leases left behind) and restarted, the simulator's network
//! faults with deduplication off (so a second send would be a second payout), requests that
//! land long after their sender gave up (past the lease and the grace period: a sender frozen
//! between its check and its write, a partition that heals), the same payout sent to two
//! instances at once, and — on PostgreSQL — connections cut by the server in the middle of
//! transactions. An auditor
//! checks after every step — no `outReqNo` paid out twice, every protocol's ledger consistent
//! with its orders — and, once faults stop, that every order and balance converges to the
//! simulator's and every open order (only open ones) has a due time.
//!
//! Two stores run it:
//! - the shared in-memory store on tokio's paused clock: deterministic, hundreds of seeds
//!   (`PROTOPAY_INSTANCE_SEEDS`, default 40; `PROTOPAY_INSTANCE_SEED=n` replays one);
//! - PostgreSQL on a real server in real time (`PROTOPAY_PG_INSTANCE_SEEDS`, default 2):
//!   claims with `SKIP LOCKED`, leases on the database clock, `NOTIFY` wake-ups, and
//!   transactions racing for real. Replay a seed the same way; the interleaving of real
//!   threads and I/O is not replayed, the workload and faults are.

mod audit;
mod harness;

use protopay::storage::{MemoryStorage, Storage};
use protopay::wire::{CallbackKind, CashierType, OutType};
use protopay::{Amount, Clock, Config, Decision, Engine, Md5Key, NewInbound, NewProtocol, PollerHandle, Status};
use protopay_sim::{Background, CallbackSink, Fault, Faults, Rng, Sim, SimConfig, SimTransport};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::{APP, KEY};
const INSTANCES: usize = 3;

/// The harness's timings (a story in seconds), for in-process transport and callbacks.
fn config() -> Config {
    let mut c = harness::config("sim://", ([127, 0, 0, 1], 9).into());
    c.poll.idle_tick_ms = 200;
    c.poll.max_sends = 5;
    c.poll.attention_after_quiet_polls = 200;
    c
}

/// Delivers each callback to a random live instance, as a load balancer would.
#[derive(Clone)]
struct Balancer {
    live: Arc<Mutex<Vec<Option<Engine>>>>,
    rng: Arc<Mutex<Rng>>,
}

#[async_trait::async_trait]
impl CallbackSink for Balancer {
    async fn deliver(&self, url: &str, body: Vec<u8>) -> Option<(u16, String)> {
        let kind = url.rsplit('/').next().and_then(CallbackKind::from_slug)?;
        let engine = {
            let live: Vec<Engine> = self.live.lock().unwrap().iter().flatten().cloned().collect();
            let pick = self.rng.lock().unwrap().range(0, live.len().saturating_sub(1) as u64) as usize;
            live.get(pick).cloned()
        }?;
        let reply = engine.handle_callback(kind, &body).await;
        Some((reply.status, reply.body))
    }
}

struct Cluster {
    seed: u64,
    rng: Rng,
    sim: Sim,
    clock: Clock,
    /// The instances' store.
    store: Arc<dyn Storage>,
    /// The auditor's view of the same data, through sessions of its own: a fault aimed at
    /// the instances' sessions (the server ending them) must not end the auditor's reads.
    audit_store: Arc<dyn Storage>,
    /// An engine that only reads, on `audit_store`: it never polls and takes no callbacks.
    auditor: Engine,
    balancer: Balancer,
    pollers: Vec<Option<PollerHandle>>,
    incarnations: u64,
    protocols: Vec<String>,
    next: u64,
    trace: Vec<String>,
}

impl Cluster {
    async fn start(seed: u64, store: Arc<dyn Storage>, audit_store: Arc<dyn Storage>) -> (Cluster, Background) {
        let rng = Rng::new(seed);
        let clock = Clock::system();
        let mut sc = SimConfig::new(APP, Md5Key::new(KEY));
        sc.seed = seed;
        sc.auto = true;
        sc.auto_delay_ms = (50, 1_500);
        sc.callback_retry_ms = vec![200, 500, 1_000, 2_000];
        let sim = Sim::new(sc, clock);
        let balancer = Balancer {
            live: Arc::new(Mutex::new(vec![None; INSTANCES])),
            rng: Arc::new(Mutex::new(Rng::new(seed ^ 0x0BA1_A0CE))),
        };
        let background = sim.spawn(Arc::new(balancer.clone()));
        let auditor = Engine::builder(config())
            .shared_storage(audit_store.clone())
            .transport(SimTransport(sim.clone()))
            .clock(clock)
            .id_seed(seed.wrapping_mul(1_000))
            .build()
            .await
            .expect("auditor");
        let mut cluster = Cluster {
            seed,
            rng,
            sim,
            clock,
            store,
            audit_store,
            auditor,
            balancer,
            pollers: (0..INSTANCES).map(|_| None).collect(),
            incarnations: 0,
            protocols: Vec::new(),
            next: 0,
            trace: Vec::new(),
        };
        for i in 0..INSTANCES {
            cluster.restart(i).await;
        }
        (cluster, background)
    }

    async fn restart(&mut self, i: usize) {
        self.incarnations += 1;
        let engine = Engine::builder(config())
            .shared_storage(self.store.clone())
            .transport(SimTransport(self.sim.clone()))
            .clock(self.clock)
            .id_seed(self.seed.wrapping_mul(1_000).wrapping_add(self.incarnations))
            .build()
            .await
            .expect("engine");
        self.pollers[i] = Some(engine.spawn_poller());
        self.balancer.live.lock().unwrap()[i] = Some(engine);
        self.trace.push(format!("start instance {i}"));
    }

    /// Kill an instance as a crash would: its poller stops wherever it is, its claims stay
    /// behind until their leases run out, callbacks stop reaching it.
    fn crash(&mut self, i: usize) {
        if let Some(poller) = self.pollers[i].take() {
            poller.abort();
        }
        self.balancer.live.lock().unwrap()[i] = None;
        self.trace.push(format!("crash instance {i}"));
    }

    fn live(&self) -> Vec<usize> {
        let live = self.balancer.live.lock().unwrap();
        (0..INSTANCES).filter(|i| live[*i].is_some()).collect()
    }

    fn any_engine(&mut self) -> (usize, Engine) {
        let live = self.live();
        let i = live[self.rng.range(0, live.len() as u64 - 1) as usize];
        let engine = self.balancer.live.lock().unwrap()[i].clone().expect("live");
        (i, engine)
    }

    async fn step(&mut self) {
        let (i, engine) = self.any_engine();
        match self.rng.range(0, 11) {
            0..=5 => {
                let Some(trans_no) = self.pick_protocol() else { return };
                self.next += 1;
                let key = format!("{APP}-in-{}", self.next);
                let amount = Amount::from_fen(self.rng.range(100, 50_000)).expect("amount");
                let cmd = NewInbound {
                    out_req_no: Some(key.clone()),
                    ..NewInbound::pos(&trans_no, amount)
                };
                let result = engine.prepay(cmd).await;
                self.trace
                    .push(format!("instance {i}: prepay {key} {amount} -> {}", ok(&result)));
            }
            6..=8 => {
                let Some(trans_no) = self.pick_protocol() else { return };
                self.next += 1;
                let key = format!("{APP}-out-{}", self.next);
                let out_type = if self.rng.unit() < 0.3 {
                    OutType::Refund
                } else {
                    OutType::Out
                };
                let amount = format!("{}.00", self.rng.range(1, 200));
                let cmd = protopay::testing::payee(&trans_no, Some(&key), &amount, out_type).expect("payee");
                // Half the time the host, unsure, sends the same command to a second replica
                // at once: one payout at most, whichever instance records it.
                let (j, twin) = self.any_engine();
                let both = self.rng.unit() < 0.5;
                let (result, again) = tokio::join!(engine.outpay(cmd.clone()), async {
                    if both { Some(twin.outpay(cmd).await) } else { None }
                });
                let twin = again.map(|r| format!(", and on instance {j} -> {}", ok(&r)));
                self.trace.push(format!(
                    "instance {i}: outpay {key} {amount} -> {}{}",
                    ok(&result),
                    twin.unwrap_or_default()
                ));
            }
            9 if self.live().len() > 1 => self.crash(i),
            _ => {
                for dead in (0..INSTANCES)
                    .filter(|d| self.pollers[*d].is_none())
                    .collect::<Vec<_>>()
                {
                    self.restart(dead).await;
                }
            }
        }
    }

    fn pick_protocol(&mut self) -> Option<String> {
        let n = self.protocols.len() as u64;
        (n > 0).then(|| self.protocols[self.rng.range(0, n - 1) as usize].clone())
    }

    /// What the auditor checks while instances run — what can be read consistently from a
    /// store that keeps moving: no payout twice, every protocol's ledger equal to the sum of
    /// its orders (a protocol whose version moved meanwhile is left for the next audit), and
    /// what happens once published once. The same checks as the deterministic simulation's.
    async fn audit(&self) -> Vec<String> {
        let store = self.audit_store.as_ref();
        [
            audit::paid_twice(&self.sim),
            audit::ledger_violations(store, self.protocols.iter().map(String::as_str)).await,
            audit::published_twice(store).await,
        ]
        .concat()
    }

    /// What holds once the instances are quiet (an order and its indexes read at one moment):
    /// every open order due and no closed one, and the read models in step with the records.
    async fn audit_at_rest(&self) -> Vec<String> {
        let store = self.audit_store.as_ref();
        let orders = audit::orders_of(store, self.protocols.iter().map(String::as_str)).await;
        let mut problems = protopay::testing::due_time_violations(store, &orders)
            .await
            .expect("due");
        problems.extend(audit::read_model_violations(store, &orders).await);
        problems
    }

    /// What an operator does with the orders that need a person (their retry budget ran out
    /// with no outcome — five sends refused in a row, say): ask the payment system (here,
    /// the simulator's truth) and record its answer; an order it never received failed.
    async fn resolve_flagged(&mut self) {
        let truth = self.sim.order_states();
        let (i, engine) = self.any_engine();
        for trans_no in self.protocols.clone() {
            for o in self.audit_store.orders_of(&trans_no).await.expect("orders") {
                let o = o.value;
                if !(o.attempts.needs_attention && o.is_open()) {
                    continue;
                }
                let status = match truth.get(o.out_req_no()).map(String::as_str) {
                    // The README's rule: failed only once no send of it can still land.
                    None if self.sim.in_flight(o.out_req_no()) => continue,
                    None | Some("FAILURE") => Status::Failure,
                    Some(t) if t.starts_with("SUCCESS") => Status::Success,
                    Some(_) => continue,
                };
                let r = engine
                    .resolve(o.out_req_no(), Decision::new(status, "instances operator"))
                    .await;
                self.trace.push(format!(
                    "instance {i}: operator resolves {} as {status} -> {}",
                    o.out_req_no(),
                    ok(&r)
                ));
            }
        }
    }

    fn fail(&self, what: &str, problems: &[String]) -> ! {
        let tail: Vec<_> = self.trace.iter().rev().take(40).rev().collect();
        panic!(
            "seed {}: {what}:\n{problems:#?}\nlast steps:\n{tail:#?}\nreplay: PROTOPAY_INSTANCE_SEED={}",
            self.seed, self.seed
        );
    }
}

fn ok<T>(r: &protopay::Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("{e}"),
    }
}

/// The seed's fault mix, with deduplication off: a second send would be a second payout.
fn faults(rng: &mut Rng) -> Faults {
    let chance = |rng: &mut Rng, max: f64| Fault::chance(rng.unit() * max);
    Faults {
        drop_callback: chance(rng, 0.4),
        duplicate_callback: chance(rng, 0.4),
        delay_callback: chance(rng, 0.4),
        reorder_callback: chance(rng, 0.4),
        http_500: chance(rng, 0.15),
        timeout_after_commit: chance(rng, 0.2),
        corrupt_sign: chance(rng, 0.1),
        refuse_connection: chance(rng, 0.15),
        late_arrival: chance(rng, 0.2),
        // Up to three grace periods (and lease periods) late: no wait makes a resend safe.
        late_ms: rng.range(900, 3 * config().poll.grace_ms),
        no_dedupe: true,
        delay_ms: rng.range(50, 2_000),
    }
}

/// One seed, on one store (`audit_store` reads the same data through sessions of its own).
async fn run(seed: u64, store: Arc<dyn Storage>, audit_store: Arc<dyn Storage>, steps: u32) {
    let (mut c, background) = Cluster::start(seed, store, audit_store).await;
    for _ in 0..2 {
        let (i, engine) = c.any_engine();
        let p = engine
            .create_protocol(NewProtocol {
                trans_desc: "deal".into(),
                business_id: "B1".into(),
                cashier_type: CashierType::Pos,
                idempotency_key: None,
            })
            .await;
        if let Ok(p) = p {
            c.trace.push(format!("instance {i}: protocol {}", p.trans_no));
            c.protocols.push(p.trans_no);
        }
    }
    // The protocols exist before the faults start: the seed is about what comes after.
    let mix = faults(&mut c.rng);
    c.sim.set_faults(mix);
    for _ in 0..steps {
        c.step().await;
        let wait = c.rng.range(0, 800);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let problems = c.audit().await;
        if !problems.is_empty() {
            c.fail("audit", &problems);
        }
    }
    // Quiet: faults off, every instance up; everything must converge.
    c.sim.set_faults(Faults::default());
    for dead in (0..INSTANCES).filter(|d| c.pollers[*d].is_none()).collect::<Vec<_>>() {
        c.restart(dead).await;
    }
    let owned = c.protocols.clone();
    let protocols: Vec<&str> = owned.iter().map(String::as_str).collect();
    let mut problems = Vec::new();
    for round in 0..120 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // A person comes in after a while; until then flagged orders keep being polled.
        if round >= 20 {
            c.resolve_flagged().await;
        }
        problems = harness::disagreements(&c.auditor, &c.sim, &protocols).await;
        problems.extend(c.audit().await);
        problems.extend(c.audit_at_rest().await);
        if problems.is_empty() {
            break;
        }
    }
    if !problems.is_empty() {
        c.fail("no convergence after 60 s of quiet", &problems);
    }
    let stats = c.sim.stats();
    let crashes = c.trace.iter().filter(|t| t.starts_with("crash")).count();
    eprintln!(
        "seed {seed}: {} orders, {} payouts, {} callbacks ({} acknowledged), {crashes} crashes",
        c.next,
        stats.payouts.len(),
        stats.callbacks_sent,
        stats.callbacks_acknowledged
    );
    for i in 0..INSTANCES {
        c.crash(i);
    }
    background.stop().await;
}

fn seeds(var: &str, default: u64) -> Vec<u64> {
    if let Some(one) = std::env::var("PROTOPAY_INSTANCE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![one];
    }
    let n = std::env::var(var).ok().and_then(|s| s.parse().ok()).unwrap_or(default);
    (1..=n).collect()
}

#[tokio::test(start_paused = true)]
async fn three_instances_on_one_shared_store() {
    for seed in seeds("PROTOPAY_INSTANCE_SEEDS", 40) {
        // Every call lets other tasks run, as a real store's latency would.
        let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new().yielding());
        run(seed, store.clone(), store, 60).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_postgres() {
    let Some(url) = protopay_storage_postgres::testing::url() else {
        return;
    };
    for seed in seeds("PROTOPAY_PG_INSTANCE_SEEDS", 2) {
        let schema = protopay_storage_postgres::testing::schema("instances");
        let open = |url: String| {
            protopay_storage_postgres::PostgresStorage::open(protopay_storage_postgres::PostgresOptions {
                schema: schema.clone(),
                ..protopay_storage_postgres::PostgresOptions::new(&url)
            })
        };
        // The instances' sessions carry the schema as their name, so that the cutter below
        // ends only theirs; the auditor reads through a store of its own, unnamed, so that
        // no cut lands on an audit.
        let separator = if url.contains('?') { '&' } else { '?' };
        let store = open(format!("{url}{separator}application_name={schema}"))
            .await
            .expect("postgres");
        let audit_store = open(url.clone()).await.expect("postgres, for the auditor");
        let cut = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let cutter = tokio::spawn(cut_connections(url.clone(), schema.clone(), seed, cut.clone()));
        run(seed, Arc::new(store), Arc::new(audit_store), 40).await;
        cutter.abort();
        eprintln!(
            "seed {seed}: {} sessions cut by the server",
            cut.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
}

/// An instance cut from the database mid-transaction, again and again: every few hundred
/// milliseconds the server ends one of the store's sessions, busy or idle in a transaction
/// or not. A commit cut before `COMMIT` wrote nothing; one cut during it is settled by asking
/// the server; either way nothing acknowledged may be lost and nothing paid twice.
async fn cut_connections(url: String, application: String, seed: u64, cut: Arc<std::sync::atomic::AtomicU64>) {
    let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await else {
        return;
    };
    tokio::spawn(conn);
    let mut rng = Rng::new(seed ^ 0xC07);
    loop {
        tokio::time::sleep(Duration::from_millis(rng.range(200, 1_500))).await;
        if let Ok(n) = client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM (SELECT pid FROM pg_stat_activity \
                 WHERE application_name = $1 AND state <> 'idle' ORDER BY random() LIMIT 1) busy",
                &[&application],
            )
            .await
        {
            cut.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Keeps callbacks instead of delivering them (the simulator retries them later).
#[derive(Default)]
struct Recorder(Mutex<Vec<(String, Vec<u8>)>>);

#[async_trait::async_trait]
impl CallbackSink for Recorder {
    async fn deliver(&self, url: &str, body: Vec<u8>) -> Option<(u16, String)> {
        self.0.lock().unwrap().push((url.to_owned(), body));
        None
    }
}

/// A hot protocol across instances: 64 payment callbacks for one protocol land at once,
/// spread over three instances on one PostgreSQL. Within a process, steps on a protocol take
/// turns; across processes only versions decide, so each commit that loses re-reads and
/// retries. None may run out of retries (a failure answer costs the payment system a
/// redelivery and us minutes of delay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_one_protocol_across_instances_lands_without_failures() {
    let Some(url) = protopay_storage_postgres::testing::url() else {
        return;
    };
    let store: Arc<dyn Storage> = Arc::new(
        protopay_storage_postgres::PostgresStorage::open(protopay_storage_postgres::PostgresOptions {
            schema: protopay_storage_postgres::testing::schema("burst"),
            ..protopay_storage_postgres::PostgresOptions::new(&url)
        })
        .await
        .expect("postgres"),
    );
    let sim = Sim::new(SimConfig::new(APP, Md5Key::new(KEY)), Clock::system());
    let mut engines = Vec::new();
    for n in 0..INSTANCES as u64 {
        let engine = Engine::builder(config())
            .shared_storage(store.clone())
            .transport(SimTransport(sim.clone()))
            .id_seed(n + 1)
            .build()
            .await
            .expect("engine");
        engines.push(engine);
    }
    let trans_no = engines[0]
        .create_protocol(NewProtocol {
            trans_desc: "hot".into(),
            business_id: "B1".into(),
            cashier_type: CashierType::Pos,
            idempotency_key: None,
        })
        .await
        .expect("protocol")
        .trans_no;
    let keys: Vec<String> = (0..64).map(|i| format!("{APP}-hot-{i}")).collect();
    for key in &keys {
        let cmd = NewInbound {
            out_req_no: Some(key.clone()),
            ..NewInbound::pos(&trans_no, Amount::parse("1.00").expect("amount"))
        };
        engines[0].prepay(cmd).await.expect("prepay");
        sim.pay(key, true).expect("pay");
    }
    let recorder = Recorder::default();
    sim.deliver_due(&recorder).await;
    let callbacks = std::mem::take(&mut *recorder.0.lock().unwrap());
    assert_eq!(callbacks.len(), 64, "one payment callback per order");
    let started = std::time::Instant::now();
    let tasks: Vec<_> = callbacks
        .into_iter()
        .enumerate()
        .map(|(i, (url, body))| {
            let engine = engines[i % INSTANCES].clone();
            tokio::spawn(async move {
                let kind = url.rsplit('/').next().and_then(CallbackKind::from_slug).expect("kind");
                engine.handle_callback(kind, &body).await
            })
        })
        .collect();
    let mut failures = Vec::new();
    for task in tasks {
        let reply = task.await.expect("task");
        if !reply.is_success() {
            failures.push(reply.body);
        }
    }
    eprintln!(
        "64 callbacks on one protocol over {INSTANCES} instances: {:?}",
        started.elapsed()
    );
    assert!(failures.is_empty(), "{} failed: {failures:?}", failures.len());
    let ledger = engines[1].protocol(&trans_no).await.expect("protocol").ledger;
    assert_eq!(ledger.in_transit.to_string(), "64.00");
}
