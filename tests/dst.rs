//! Deterministic simulation testing, in the spirit of TigerBeetle's VOPR.
//!
//! Per seed, on tokio's paused clock: the in-process simulator (auto schedule, never
//! deduplicating payouts), an engine on a probed store, a random workload and a random fault
//! mix. What a seed can throw at the engine:
//!
//! - **workload**: protocols, deposits, payouts and refunds (own or generated `outReqNo`s,
//!   empty and long remarks, over-long texts), bursts of concurrent payouts, identical
//!   repeats of earlier commands, POS closes, forged callbacks, operator resolutions, and
//!   `check` run by an operator while all of that is in flight (it may fail while the store
//!   is down, or leave what kept moving unjudged, but never report a violation);
//! - **network**: dropped / duplicated / delayed / reordered callbacks, 5xx, refused
//!   connections, timeouts after commit, corrupted reply signs, requests that land after the
//!   caller gave up, and one-shot faults aimed at the next `outpay`/`prepay`;
//! - **store**: reads and commits that let other tasks run (so steps on one order race),
//!   outages of up to ten minutes, commit failures at random, and at a chosen commit point (1st, 2nd, 3rd, …) of
//!   a chosen command; some seeds store every record through the sled codec and read it back
//!   (a faithful stand-in for sled's round trip that keeps the run deterministic);
//! - **process**: crashes (tasks aborted wherever they are) and graceful shutdowns, at
//!   random points, restarting at once or later, with a new deploy's settings;
//! - **time**: the host's wall clock steps forward and back (a restart reads it: ±10 min,
//!   ±1 h), separate from the monotonic clock that the simulation advances.
//!
//! The auditor, after every step: ledger invariants; states only move forward; no
//! `outReqNo` paid out twice; every open order has exactly one due time and a closed one none;
//! the host contract — an order whose command returned a plain `Err` is never stored nor seen
//! by the payment system, and every order the payment system has was accepted by a command;
//! and budgets derived from the poll policy — calls to the payment system per order per
//! simulated hour, and poller passes per simulated minute (checked as they happen, so a spin
//! that freezes simulated time is caught too). Then a quiet phase with faults off: every order
//! must converge to the simulator's truth within bounded simulated time.
//!
//! `PROTOPAY_SEED=n` replays one seed exactly and prints its step trace; `PROTOPAY_SEEDS=n`
//! runs seeds 0..n (CI: 200), from `PROTOPAY_SEED_START` if set. A seed that does not finish
//! within `PROTOPAY_SEED_TIMEOUT_SECS` (default 300) of real time fails as hung.

use chrono::{DateTime, Utc};
use protopay::sled::codec;
use protopay::storage::{Batch, MemoryStorage, Storage, StorageError};
use protopay::testing::{Hooks, Injected, Intercepted};
use protopay::wire::{CallbackKind, CashierType, Endpoint, Envelope, OutType, validate::limits};
use protopay::{
    Amount, Clock, Config, Engine, Error, EventKind, Md5Key, NewInbound, NewOutbound, NewProtocol, Order, OrderKind,
    PollerHandle, Protocol, Sensitive, Status, Transport, TransportError,
};
use protopay_sim::{Aimed, Background, CallbackSink, Fault, Faults, Rng, Sim, SimConfig, SimTransport};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KEY: &str = "vopr";

/// What the auditor found while the engine was running (set by the probes, read after every
/// step).
type Violation = Arc<Mutex<Option<String>>>;

fn violate(v: &Violation, what: String) {
    let mut slot = v.lock().unwrap();
    if slot.is_none() {
        *slot = Some(what);
    }
}

/// The step trace of the seed running on this thread, printed when it fails.
static TRACE: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn trace(line: String) {
    TRACE.lock().unwrap().push(line);
}

/// Routes callbacks to whichever engine is up; while it is down they fail (and are retried).
/// Some arrive with a twin mangled in transit (its sign broken), racing the real one.
#[derive(Clone)]
struct Switchboard {
    engine: Arc<Mutex<Option<Engine>>>,
    rng: Arc<Mutex<Rng>>,
    mangled: f64,
}

impl Switchboard {
    fn set(&self, engine: Option<Engine>) {
        *self.engine.lock().unwrap() = engine;
    }
}

#[async_trait::async_trait]
impl CallbackSink for Switchboard {
    async fn deliver(&self, url: &str, body: Vec<u8>) -> Option<(u16, String)> {
        let engine = self.engine.lock().unwrap().clone()?;
        let kind = CallbackKind::from_slug(url.rsplit('/').next()?)?;
        let twin = {
            let mut rng = self.rng.lock().unwrap();
            (rng.unit() < self.mangled).then(|| rng.range(0, 8))
        };
        let Some(lag) = twin else {
            let reply = engine.handle_callback(kind, &body).await;
            return Some((reply.status, reply.body));
        };
        let mangled = String::from_utf8_lossy(&body)
            .replacen("\"sign\":\"", "\"sign\":\"0", 1)
            .into_bytes();
        let twin = async {
            for _ in 0..lag {
                tokio::task::yield_now().await;
            }
            engine.handle_callback(kind, &mangled).await
        };
        let (_, reply) = tokio::join!(twin, engine.handle_callback(kind, &body));
        Some((reply.status, reply.body))
    }
}

/// A sliding window of event times, for rate budgets.
#[derive(Default)]
struct Window(VecDeque<DateTime<Utc>>);

impl Window {
    /// Record one at `now`; how many fell within `span` before it.
    fn hit(&mut self, now: DateTime<Utc>, span: chrono::Duration) -> usize {
        self.0.push_back(now);
        while self.0.front().is_some_and(|t| now - *t > span) {
            self.0.pop_front();
        }
        self.0.len()
    }
}

/// The store as the engine sees it: memory underneath, every call letting other tasks run
/// (a real store takes time, so steps on one order race, and so do a reader's consecutive
/// reads with commits), with the probe's hooks around it.
type Probed = Intercepted<MemoryStorage, Probe>;

/// What the simulation does around the store's calls: commit failures at random and aimed at
/// a chosen commit point, outages, an optional round trip of every record through the sled
/// codec, the due-time audit at every commit, pauses after commits, and the poller-pass
/// budget (every pass claims once).
struct Probe {
    /// The store at one moment: what the auditor reads (a handle that never yields).
    auditor: MemoryStorage,
    round_trip: bool,
    truth: Clock,
    /// The commit point, counted from when it was aimed, that fails.
    fail_in: Mutex<Option<u32>>,
    /// How many of the next commits fail.
    failing: Mutex<u32>,
    /// Every commit fails until then (a store that is down for a while).
    down_until: Mutex<Option<DateTime<Utc>>>,
    passes: Mutex<Window>,
    pass_budget: usize,
    violation: Violation,
    /// Pauses of the committing task right after its commit, before it can act on it (a
    /// process frozen between a `Submitted` commit and the send it licenses).
    pauses: Mutex<Option<Pauses>>,
}

/// A seeded chance of a pause after a commit, and its longest length.
struct Pauses {
    rng: Rng,
    chance: f64,
    max_ms: u64,
}

fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(v: T) -> T {
    let bytes = codec::record(7, &v).expect("encode");
    let (version, back) = codec::from_record::<T>(&bytes).expect("decode");
    assert_eq!(version, 7);
    back
}

impl Probe {
    /// Fail the `n`-th commit from now (1 = the next).
    fn fail_commit(&self, n: u32) {
        *self.fail_in.lock().unwrap() = Some(n);
    }

    /// Fail the next `n` commits (0: none).
    fn fail_next_commits(&self, n: u32) {
        *self.failing.lock().unwrap() = n;
    }

    fn disarm(&self) {
        *self.fail_in.lock().unwrap() = None;
    }

    /// Pause after commits from now on (`None`: no more pauses).
    fn pauses(&self, pauses: Option<Pauses>) {
        *self.pauses.lock().unwrap() = pauses;
    }

    /// How long the task that just committed freezes, if it does.
    fn draw_pause(&self) -> Option<Duration> {
        let mut pauses = self.pauses.lock().unwrap();
        let p = pauses.as_mut()?;
        (p.rng.unit() < p.chance).then(|| Duration::from_millis(p.rng.range(1, p.max_ms)))
    }

    /// Every commit fails for `ms` of simulated time.
    fn outage(&self, ms: u64) {
        *self.down_until.lock().unwrap() = Some(self.truth.now() + chrono::Duration::milliseconds(ms as i64));
    }
}

#[async_trait::async_trait]
impl Hooks for Probe {
    async fn before_commit(&self, batch: &mut Batch) -> protopay::storage::Result<()> {
        if self.down_until.lock().unwrap().is_some_and(|t| self.truth.now() < t) {
            return Err(Injected("the store is down").into());
        }
        {
            let mut fail = self.fail_in.lock().unwrap();
            match *fail {
                Some(1) => {
                    *fail = None;
                    *self.failing.lock().unwrap() = 1;
                }
                Some(n) => *fail = Some(n - 1),
                None => {}
            }
        }
        if self.round_trip {
            for p in &mut batch.protocols {
                p.value = round_trip(p.value.clone());
            }
            for o in &mut batch.orders {
                o.value = round_trip(o.value.clone());
            }
            batch.events = std::mem::take(&mut batch.events).into_iter().map(round_trip).collect();
            batch.orphans = std::mem::take(&mut batch.orphans).into_iter().map(round_trip).collect();
        }
        if *self.failing.lock().unwrap() > 0 {
            // A failing store takes its time too, and the failure is drawn when the commit
            // reaches it.
            tokio::task::yield_now().await;
            let mut failing = self.failing.lock().unwrap();
            if *failing > 0 {
                *failing -= 1;
                return Err(Injected("this commit fails").into());
            }
        }
        Ok(())
    }

    async fn after_commit(&self, batch: &Batch, _: u64) {
        // The due-time invariant, at every commit: an open order has a due time, a closed
        // one none.
        for (key, at) in &batch.schedule {
            if let Ok(Some(o)) = self.auditor.order(key).await
                && o.value.is_open() != at.is_some()
            {
                violate(
                    &self.violation,
                    format!("{key} is {} and was given due time {at:?}", o.value.state_label()),
                );
            }
        }
        if let Some(pause) = self.draw_pause() {
            trace(format!("  a committer freezes for {} ms", pause.as_millis()));
            tokio::time::sleep(pause).await;
        }
    }

    async fn before_claim(&self) -> protopay::storage::Result<()> {
        let n = self
            .passes
            .lock()
            .unwrap()
            .hit(self.truth.now(), chrono::Duration::seconds(60));
        if n > self.pass_budget {
            violate(&self.violation, format!("poller: {n} passes within a simulated minute"));
        }
        if self.violation.lock().unwrap().is_some() {
            // Stop the spin so that simulated time moves on and the auditor can report it.
            return Err(StorageError::Closed);
        }
        Ok(())
    }
}

/// The simulator as the engine's transport, with the per-order call budget.
struct Metered {
    sim: SimTransport,
    truth: Clock,
    calls: Mutex<HashMap<String, Window>>,
    budget: usize,
    violation: Violation,
}

#[async_trait::async_trait]
impl Transport for Metered {
    async fn call(&self, endpoint: Endpoint, request: &Envelope) -> Result<Vec<u8>, TransportError> {
        if let Some(key) = request.names_order() {
            let mut calls = self.calls.lock().unwrap();
            let n = calls
                .entry(key.clone())
                .or_default()
                .hit(self.truth.now(), chrono::Duration::hours(1));
            if n > self.budget {
                violate(
                    &self.violation,
                    format!("{key}: {n} calls to the payment system within a simulated hour"),
                );
            }
        }
        if self.violation.lock().unwrap().is_some() {
            return Err(TransportError::NotDelivered {
                reason: "the auditor stopped the run".into(),
            });
        }
        self.sim.call(endpoint, request).await
    }
}

/// The budgets, derived from the poll policy.
fn budgets(config: &Config) -> (usize, usize) {
    let p = &config.poll;
    let fastest = [p.submitted_ms, p.processing_ms, p.unpaid_ms, p.grace_ms]
        .into_iter()
        .min()
        .unwrap_or(1);
    let fastest = fastest * (100 - u64::from(p.jitter_percent)) / 100;
    // Polls at the fastest interval, polls moved forward by failed callbacks, every send.
    let calls = 3_600_000 / fastest + 3_600_000 / p.poll_sooner_min_interval_ms + u64::from(p.max_sends) + 10;
    // Idle ticks, and one pass after each poll or wake-up, generously.
    let passes = 20 * 60_000 / p.idle_tick_ms;
    (calls as usize, passes as usize)
}

/// What a command returned, for the host-contract check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// `Ok`, or an error that carries the `outReqNo` and says it may stand.
    Accepted,
    /// A plain `Err`: nothing may ever move for it.
    Refused,
    /// The host task was cut off by a crash: either may be true.
    Unknown,
}

struct World {
    seed: u64,
    rng: Rng,
    app: String,
    settings: Settings,
    sim: Sim,
    truth: Clock,
    /// The host's wall clock, as an offset from the truth; a restart reads it.
    skew_ms: i64,
    store: Arc<Probed>,
    transport: Arc<Metered>,
    board: Switchboard,
    engine: Engine,
    deploy: u32,
    poller: Option<PollerHandle>,
    inflight: Vec<(String, tokio::task::JoinHandle<Answer>)>,
    /// Operators' `check`s still reading while the run goes on.
    checks: Vec<tokio::task::JoinHandle<protopay::Result<protopay::CheckReport>>>,
    protocols: Vec<(String, CashierType)>,
    inbound: Vec<String>,
    /// Commands sent, by `outReqNo` (own ones only), to repeat them.
    sent: Vec<Sent>,
    answers: BTreeMap<String, Answer>,
    next: u64,
    seen: BTreeMap<String, (u8, bool)>,
    restarts: u32,
    violation: Violation,
}

#[derive(Clone)]
enum Sent {
    In(NewInbound),
    Out(NewOutbound),
}

/// The engine's settings: a seed's own retry budgets, and a callback URL that changes with
/// each deploy.
#[derive(Debug, Clone, Copy)]
struct Settings {
    max_sends: u32,
    attention_after_quiet_polls: u32,
    /// What the engine is told about the payment system.
    deduplicates: bool,
}

impl Settings {
    fn draw(rng: &mut Rng, mode: Mode) -> Self {
        let quiet = [3, 10, 30, 1_000];
        Settings {
            max_sends: rng.range(1, 8) as u32,
            attention_after_quiet_polls: quiet[rng.range(0, quiet.len() as u64 - 1) as usize],
            deduplicates: mode == Mode::ClaimsDeduplication || rng.unit() < 0.3,
        }
    }

    fn config(&self, app: &str, deploy: u32) -> Config {
        let mut c = Config::new(
            app,
            Md5Key::new(KEY),
            "sim://",
            &format!("http://engine-{deploy}/notify"),
        );
        c.poll.max_sends = self.max_sends;
        c.poll.attention_after_quiet_polls = self.attention_after_quiet_polls;
        c.payment_system_deduplicates = self.deduplicates;
        c
    }
}

/// Whether the engine is told the truth about the payment system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// It deduplicates exactly when the engine is told so.
    Honest,
    /// The engine is told it deduplicates; it never does. That is the resend rule before
    /// pauses and late packets were taken seriously ("not found past grace: resend"), which
    /// the simulation must catch paying twice.
    ClaimsDeduplication,
}

fn classify(result: &protopay::Result<Order>) -> Answer {
    match result {
        Ok(_) | Err(Error::OutcomeUnknown { .. }) => Answer::Accepted,
        Err(_) => Answer::Refused,
    }
}

fn faults_for(rng: &mut Rng, late_ms: u64, no_dedupe: bool) -> Faults {
    let p = |rng: &mut Rng, max: f64| {
        if rng.unit() < 0.5 {
            Fault::chance(rng.unit() * max)
        } else {
            Fault::default()
        }
    };
    Faults {
        drop_callback: p(rng, 0.5),
        duplicate_callback: p(rng, 0.5),
        delay_callback: p(rng, 0.5),
        reorder_callback: p(rng, 0.5),
        http_500: p(rng, 0.2),
        timeout_after_commit: p(rng, 0.3),
        corrupt_sign: p(rng, 0.2),
        refuse_connection: p(rng, 0.2),
        // Late arrivals may come long after the grace period: a sender paused between its
        // check and its write, a partition that heals. No wait makes a resend safe.
        late_arrival: p(rng, 0.3),
        late_ms,
        no_dedupe,
        delay_ms: rng.range(100, 60_000),
    }
}

impl World {
    async fn new(seed: u64, mode: Mode) -> (World, Background) {
        let mut rng = Rng::new(seed);
        let app_len = rng.range(3, limits::APP_ID_MAX_CHARS as u64) as usize;
        let app: String = "APP".chars().chain(std::iter::repeat('0')).take(app_len).collect();
        let truth = Clock::starting_at(DateTime::from_timestamp(1_795_000_000, 0).expect("time"));
        let mut sc = SimConfig::new(&app, Md5Key::new(KEY));
        sc.seed = seed;
        sc.auto = true;
        sc.auto_delay_ms = (100, 20_000);
        sc.callback_retry_ms = vec![1_000, 5_000, 30_000, 120_000];
        let sim = Sim::new(sc, truth);
        let settings = Settings::draw(&mut rng, mode);
        let base = settings.config(&app, 0);
        let late_ms = rng.range(base.timeouts.request_ms, 3 * base.poll.grace_ms);
        let no_dedupe = mode == Mode::ClaimsDeduplication || !settings.deduplicates;
        sim.set_faults(faults_for(&mut rng, late_ms, no_dedupe));
        let violation = Violation::default();
        let (call_budget, pass_budget) = budgets(&base);
        let memory = MemoryStorage::new();
        let store = Arc::new(Intercepted {
            inner: memory.yielding(),
            hooks: Probe {
                auditor: memory,
                round_trip: rng.unit() < 0.3,
                truth,
                fail_in: Mutex::new(None),
                failing: Mutex::new(0),
                down_until: Mutex::new(None),
                passes: Mutex::default(),
                pass_budget,
                violation: violation.clone(),
                pauses: Mutex::new((rng.unit() < 0.5).then(|| Pauses {
                    rng: Rng::new(seed ^ 0x05EE_D0FF_A05E),
                    chance: rng.unit() * 0.05,
                    max_ms: 3 * base.poll.grace_ms,
                })),
            },
        });
        let transport = Arc::new(Metered {
            sim: SimTransport(sim.clone()),
            truth,
            calls: Mutex::default(),
            budget: call_budget,
            violation: violation.clone(),
        });
        let mangled = if rng.unit() < 0.5 { rng.unit() * 0.3 } else { 0.0 };
        let board = Switchboard {
            engine: Arc::default(),
            rng: Arc::new(Mutex::new(Rng::new(seed))),
            mangled,
        };
        let background = sim.spawn(Arc::new(board.clone()));
        let engine = Self::start(&app, settings, 0, &store, &transport, truth, 0, 0).await;
        board.set(Some(engine.clone()));
        let poller = Some(engine.spawn_poller());
        let world = World {
            seed,
            rng,
            app,
            settings,
            sim,
            truth,
            skew_ms: 0,
            store,
            transport,
            board,
            engine,
            deploy: 0,
            poller,
            inflight: Vec::new(),
            checks: Vec::new(),
            protocols: Vec::new(),
            inbound: Vec::new(),
            sent: Vec::new(),
            answers: BTreeMap::new(),
            next: 0,
            seen: BTreeMap::new(),
            restarts: 0,
            violation,
        };
        (world, background)
    }

    async fn engine(&self) -> Engine {
        let (store, transport) = (&self.store, &self.transport);
        Self::start(
            &self.app,
            self.settings,
            self.deploy,
            store,
            transport,
            self.truth,
            self.skew_ms,
            self.restarts,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn start(
        app: &str,
        settings: Settings,
        deploy: u32,
        store: &Arc<Probed>,
        transport: &Arc<Metered>,
        truth: Clock,
        skew_ms: i64,
        incarnation: u32,
    ) -> Engine {
        // The engine reads the host's wall clock once, at start, as `Clock::system` does.
        let wall = truth.now() + chrono::Duration::milliseconds(skew_ms);
        Engine::builder(settings.config(app, deploy))
            .shared_storage(store.clone())
            .shared_transport(transport.clone())
            .clock(Clock::starting_at(wall))
            .id_seed(u64::from(incarnation).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .build()
            .await
            .expect("engine")
    }

    fn key(&mut self, kind: &str) -> String {
        self.next += 1;
        format!("{}-{kind}{}", self.app, self.next)
    }

    fn amount(&mut self, max_fen: u64) -> Amount {
        Amount::from_fen(self.rng.range(1, max_fen)).expect("amount")
    }

    /// Sometimes aim a commit failure at one of the next command's commit points.
    fn maybe_fail_a_commit_point(&mut self) {
        if self.rng.unit() < 0.15 {
            let n = self.rng.range(1, 4) as u32;
            trace(format!("  fail commit point {n}"));
            self.store.hooks.fail_commit(n);
        }
    }

    fn answered(&mut self, key: Option<String>, result: &protopay::Result<Order>) {
        let answer = classify(result);
        let key = match (key, result) {
            (Some(k), _) => k,
            (None, Ok(o)) => o.out_req_no().to_owned(),
            (None, Err(Error::OutcomeUnknown { out_req_no })) => out_req_no.clone(),
            (None, Err(_)) => return, // a generated key the host never learned: must not exist
        };
        if let Err(Error::IdempotencyMismatch { fields, .. }) = result {
            panic!(
                "seed {}: an identical repeat of {key} was refused as differing in {fields:?}",
                self.seed
            );
        }
        trace(format!(
            "  {key}: {answer:?} {}",
            result.as_ref().map_or_else(|e| e.to_string(), |o| o.state_label())
        ));
        // A repeat never downgrades what an earlier call established.
        let entry = self.answers.entry(key).or_insert(answer);
        if answer == Answer::Accepted {
            *entry = Answer::Accepted;
        }
    }

    async fn create_protocol(&mut self) {
        let cashier_type = if self.rng.unit() < 0.7 {
            CashierType::Pos
        } else {
            CashierType::Qp
        };
        let cmd = NewProtocol {
            trans_desc: "vopr".into(),
            business_id: "B1".into(),
            cashier_type: cashier_type.clone(),
        };
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

    /// Our own key most of the time; sometimes let the engine generate one.
    fn maybe_key(&mut self, kind: &str) -> Option<String> {
        if self.rng.unit() < 0.25 {
            None
        } else {
            Some(self.key(kind))
        }
    }

    async fn deposit(&mut self) {
        let Some((trans_no, cashier)) = self.pick_protocol() else {
            return;
        };
        let key = self.maybe_key("in");
        let mut cmd = NewInbound {
            out_req_no: key.clone(),
            ..NewInbound::pos(&trans_no, self.amount(50_000))
        };
        if cashier == CashierType::Qp {
            cmd.prod_catalog = None;
            cmd.payer_name = Some(Sensitive::new("张三"));
        }
        self.maybe_fail_a_commit_point();
        let result = self.engine.prepay(cmd.clone()).await;
        self.store.hooks.disarm();
        if let Ok(o) = &result {
            self.inbound.push(o.out_req_no().to_owned());
        }
        if key.is_some() {
            self.sent.push(Sent::In(cmd));
        }
        self.answered(key, &result);
    }

    fn payout_cmd(&mut self, trans_no: &str, key: Option<String>) -> NewOutbound {
        let remark = match self.rng.range(0, 9) {
            0 => Some(String::new()),
            1 => Some("备注".repeat(limits::REMARK_MAX_CHARS / 2)),
            2 => Some("x".repeat(limits::REMARK_MAX_CHARS + 1)), // too long: refused, nothing stored
            3 | 4 => Some("vopr".into()),
            _ => None,
        };
        let out_type = if self.rng.unit() < 0.7 {
            OutType::Out
        } else {
            OutType::Refund
        };
        let amount = self.amount(20_000);
        let payee = protopay::testing::payee(trans_no, key.as_deref(), &amount.to_string(), out_type);
        NewOutbound {
            remark,
            ..payee.expect("amount")
        }
    }

    async fn payout(&mut self) {
        let Some((trans_no, _)) = self.pick_protocol() else {
            return;
        };
        let key = self.maybe_key("out");
        let cmd = self.payout_cmd(&trans_no, key.clone());
        if self.rng.unit() < 0.2 {
            let how = match self.rng.range(0, 3) {
                0 => Aimed::ServerError,
                1 => Aimed::TimeoutAfterCommit,
                2 => Aimed::ConnectionRefused,
                _ => Aimed::LateArrival(self.rng.range(0, 3 * self.settings.config(&self.app, 0).poll.grace_ms)),
            };
            trace(format!("  next outpay: {how:?}"));
            self.sim.fail_next(Endpoint::Outpay, how);
        }
        self.maybe_fail_a_commit_point();
        let result = self.engine.outpay(cmd.clone()).await;
        self.store.hooks.disarm();
        if key.is_some() {
            self.sent.push(Sent::Out(cmd));
        }
        self.answered(key, &result);
    }

    /// Several payouts at once on one protocol, left running as host tasks (a restart may
    /// cut them off mid-flight).
    fn burst(&mut self) {
        let Some((trans_no, _)) = self.pick_protocol() else {
            return;
        };
        for _ in 0..self.rng.range(2, 4) {
            let key = self.key("out");
            let cmd = self.payout_cmd(&trans_no, Some(key.clone()));
            self.sent.push(Sent::Out(cmd.clone()));
            let engine = self.engine.clone();
            self.answers.entry(key.clone()).or_insert(Answer::Unknown);
            self.inflight
                .push((key, tokio::spawn(async move { classify(&engine.outpay(cmd).await) })));
        }
    }

    /// The host repeats an earlier command exactly (a retry after a timeout of its own, maybe
    /// after a deploy changed the engine's settings): it must get the same order.
    async fn repeat(&mut self) {
        if self.sent.is_empty() {
            return;
        }
        let i = self.rng.range(0, self.sent.len() as u64 - 1) as usize;
        let (key, result) = match self.sent[i].clone() {
            Sent::In(cmd) => (cmd.out_req_no.clone(), self.engine.prepay(cmd).await),
            Sent::Out(cmd) => (cmd.out_req_no.clone(), self.engine.outpay(cmd).await),
        };
        self.answered(key, &result);
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
        let body = Envelope::reply(
            &self.app,
            "0000",
            "SUCCESS",
            data.to_string(),
            "20261126120000123".into(),
            &Md5Key::new("forger"),
        );
        let reply = self
            .engine
            .handle_callback(CallbackKind::InboundArrival, body.to_json().as_bytes())
            .await;
        assert!(
            !reply.is_success(),
            "seed {}: a forged callback was accepted",
            self.seed
        );
    }

    /// The host's wall clock steps (NTP, a failover to a skewed machine). The running engine
    /// does not see it; the next start does.
    fn step_clock(&mut self) {
        let steps = [-3_600_000, -600_000, -5_000, 5_000, 600_000, 3_600_000];
        self.skew_ms = steps[self.rng.range(0, steps.len() as u64 - 1) as usize];
        trace(format!("  wall clock now {} ms off", self.skew_ms));
    }

    /// A restart: a crash (the poller and in-flight host calls stop wherever they are) or a
    /// graceful shutdown; then, at once or a little later, a new engine on the same store,
    /// perhaps with a new deploy's settings and a stepped wall clock.
    async fn restart(&mut self) {
        self.restarts += 1;
        let graceful = self.rng.unit() < 0.3;
        if graceful {
            self.engine.shutdown().await.expect("shutdown");
        }
        if let Some(p) = self.poller.take() {
            if graceful { p.shutdown().await } else { p.abort() }
        }
        for (_, t) in self.inflight.drain(..) {
            t.abort();
        }
        self.board.set(None);
        if self.rng.unit() < 0.5 {
            self.step_clock();
        }
        if self.rng.unit() < 0.3 {
            self.deploy += 1;
        }
        let down = if self.rng.unit() < 0.5 {
            0
        } else {
            self.rng.range(0, 30_000)
        };
        trace(format!(
            "  restart ({}) after {down} ms",
            if graceful { "graceful" } else { "crash" }
        ));
        tokio::time::sleep(Duration::from_millis(down)).await;
        self.engine = self.engine().await;
        self.board.set(Some(self.engine.clone()));
        self.poller = Some(self.engine.spawn_poller());
    }

    /// An operator settles the orders that need attention, as the payment system reports
    /// them.
    async fn resolve(&mut self) {
        for o in self.orders().await {
            if o.attempts.needs_attention && o.status.rank() < Status::Success.rank() {
                // As a person would after asking the payment system: an order it never
                // received failed; otherwise its settled status.
                let truth = self.sim.order_states().get(o.out_req_no()).cloned();
                let status = match truth.as_deref() {
                    // The README's rule: failed only once no send of it can still land.
                    None if self.sim.in_flight(o.out_req_no()) => continue,
                    None => Status::Failure,
                    Some(t) if t.starts_with("SUCCESS") => Status::Success,
                    Some("FAILURE") => Status::Failure,
                    Some(_) => continue,
                };
                trace(format!("  operator resolves {} as {status}", o.out_req_no()));
                let _ = self.engine.resolve(o.out_req_no(), status, "vopr operator").await;
            }
        }
    }

    /// An operator's `protopay check`, started in the middle of everything and left to read
    /// while the run goes on (every read lets other tasks run): reads that interleave with
    /// commands, callbacks, polls and restarts must never add up to a false alarm.
    fn start_check(&mut self) {
        trace("  operator starts a check".to_owned());
        let engine = self.engine.clone();
        self.checks.push(tokio::spawn(async move { engine.check().await }));
    }

    /// Judge the operators' checks that have finished (all of them, waiting, when `wait`).
    async fn judge_checks(&mut self, wait: bool) {
        let seed = self.seed;
        let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut self.checks)
            .into_iter()
            .partition(|c| wait || c.is_finished());
        self.checks = running;
        for check in done {
            match check.await.expect("the check task") {
                Ok(report) => {
                    assert!(
                        report.violations.is_empty(),
                        "seed {seed}: check reported {:#?}",
                        report.violations
                    );
                    trace(format!(
                        "  a check ends: {} orders, {} not judged",
                        report.orders,
                        report.unsettled.len()
                    ));
                }
                Err(e) => trace(format!("  a check failed: {e}")),
            }
        }
    }

    /// A protocol as the auditor sees it: from the memory store, at one moment.
    async fn protocol_now(&self, trans_no: &str) -> Protocol {
        let stored = self.store.hooks.auditor.protocol(trans_no).await.expect("read");
        stored.expect("protocol").value
    }

    async fn orders(&self) -> Vec<Order> {
        let mut all = Vec::new();
        for (t, _) in &self.protocols {
            all.extend(
                self.store
                    .hooks
                    .auditor
                    .orders_of(t)
                    .await
                    .expect("orders")
                    .into_iter()
                    .map(|o| o.value),
            );
        }
        all
    }

    /// The auditor: what must hold after every step.
    async fn audit(&mut self) {
        self.judge_checks(false).await;
        let seed = self.seed;
        if let Some(v) = self.violation.lock().unwrap().clone() {
            panic!("seed {seed}: {v}");
        }
        for (t, _) in &self.protocols {
            let p = self.protocol_now(t).await;
            let orders: Vec<Order> = self
                .store
                .hooks
                .auditor
                .orders_of(t)
                .await
                .expect("orders")
                .into_iter()
                .map(|o| o.value)
                .collect();
            if let Err(e) = protopay::ledger::check(&p.ledger, orders.iter()) {
                panic!("seed {seed}: ledger of {t}: {e}");
            }
        }
        let orders = self.orders().await;
        let late = protopay::testing::due_time_violations(&self.store.hooks.auditor, &orders)
            .await
            .expect("due");
        assert!(late.is_empty(), "seed {seed}: {}", late.join("; "));
        for o in &orders {
            let key = o.out_req_no();
            let now = (o.status.rank(), o.inbound().is_some_and(|i| i.arrived));
            if let Some(before) = self.seen.insert(key.to_owned(), now) {
                assert!(now >= before, "seed {seed}: {key} went back from {before:?} to {now:?}");
            }
        }
        self.audit_read_models(&orders).await;
        for (key, n) in self.sim.stats().payouts {
            assert!(n <= 1, "seed {seed}: {key} paid out {n} times");
        }
        // The host contract.
        let stored: BTreeSet<&str> = orders.iter().map(|o| o.out_req_no()).collect();
        let remote = self.sim.order_states();
        for (key, answer) in &self.answers {
            if *answer == Answer::Refused {
                assert!(
                    !stored.contains(key.as_str()),
                    "seed {seed}: {key} was refused to the host, yet stored"
                );
                assert!(
                    !remote.contains_key(key),
                    "seed {seed}: {key} was refused to the host, yet sent"
                );
            }
        }
        for key in remote.keys() {
            assert!(
                self.answers.get(key).is_some_and(|a| *a != Answer::Refused),
                "seed {seed}: the payment system has {key}, which no command accepted"
            );
        }
        let mut once: BTreeMap<(String, String), u32> = BTreeMap::new();
        for e in self
            .store
            .hooks
            .auditor
            .events_after(0, usize::MAX)
            .await
            .expect("events")
        {
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

    /// The read models' indexes agree with the records: every order is in exactly the
    /// listings its state puts it in, and its history is exactly its events.
    async fn audit_read_models(&self, orders: &[Order]) {
        let seed = self.seed;
        let wrong = protopay::storage::conformance::listing_disagreements(&self.store.hooks.auditor, orders)
            .await
            .expect("the listings");
        assert!(wrong.is_empty(), "seed {seed}: {wrong:#?}");
        let mut histories: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for e in self
            .store
            .hooks
            .auditor
            .events_after(0, usize::MAX)
            .await
            .expect("events")
        {
            if let Some(key) = e.out_req_no {
                histories.entry(key).or_default().push(e.seq);
            }
        }
        for o in orders {
            let indexed: Vec<u64> = self
                .store
                .hooks
                .auditor
                .history(o.out_req_no())
                .await
                .expect("a history")
                .iter()
                .map(|e| e.seq)
                .collect();
            let expected = histories.get(o.out_req_no()).cloned().unwrap_or_default();
            assert_eq!(indexed, expected, "seed {seed}: history of {}", o.out_req_no());
        }
    }

    /// Events must tell the same story as the final states.
    async fn events_match_states(&self) {
        let events = self
            .store
            .hooks
            .auditor
            .events_after(0, usize::MAX)
            .await
            .expect("events");
        for o in self.orders().await {
            let has = |f: &dyn Fn(&EventKind) -> bool| {
                events
                    .iter()
                    .any(|e| e.out_req_no.as_deref() == Some(o.out_req_no()) && f(&e.kind))
            };
            let ok = match (&o.kind, o.status) {
                (OrderKind::Inbound(i), Status::Success) => {
                    has(&|k| *k == EventKind::InboundPaid) && (i.arrived == has(&|k| *k == EventKind::InboundArrived))
                }
                (OrderKind::Inbound(_), Status::Failure) => has(&|k| *k == EventKind::InboundFailed),
                (OrderKind::Outbound(_), Status::Success) => has(&|k| matches!(k, EventKind::OutboundSucceeded { .. })),
                (OrderKind::Outbound(_), Status::Failure) => has(&|k| matches!(k, EventKind::OutboundFailed { .. })),
                _ => true,
            };
            assert!(
                ok,
                "seed {}: events of {} do not match {}",
                self.seed,
                o.out_req_no(),
                o.state_label()
            );
        }
    }

    /// Orders whose state differs from the simulator's. An order the simulator never
    /// received must have failed (refused, or resolved so by the operator).
    async fn unconverged(&self) -> Vec<String> {
        let truth = self.sim.order_states();
        let mut out = Vec::new();
        for o in self.orders().await {
            let ours = o.state_label().replace("+closed", "");
            let acceptable = match truth.get(o.out_req_no()) {
                Some(t) => *t == ours,
                None => o.status == Status::Failure,
            };
            if !acceptable {
                out.push(format!(
                    "{}: ours {ours}, simulator {:?}",
                    o.out_req_no(),
                    truth.get(o.out_req_no())
                ));
            }
        }
        for key in truth.keys() {
            if self.store.hooks.auditor.order(key).await.expect("read").is_none() {
                out.push(format!("{key}: the simulator has it, we do not"));
            }
        }
        out
    }
}

/// What a run produced, compared whole by the determinism test.
#[derive(Debug, PartialEq)]
struct Run {
    orders: usize,
    restarts: u32,
    events: Vec<String>,
    requests: Vec<String>,
}

async fn run_seed(seed: u64, mode: Mode) -> Run {
    let (mut w, background) = World::new(seed, mode).await;
    w.create_protocol().await;
    let steps = w.rng.range(30, 70);
    for step in 0..steps {
        let roll = w.rng.range(0, 99);
        trace(format!("step {step} at {}: roll {roll}", w.truth.now()));
        match roll {
            0..=4 => w.create_protocol().await,
            5..=34 => w.deposit().await,
            35..=54 => w.payout().await,
            55..=59 => w.burst(),
            60..=63 => w.repeat().await,
            64..=67 => w.close().await,
            68..=70 => w.forge().await,
            71..=74 => w.restart().await,
            75..=76 => w.step_clock(),
            77..=78 => w.store.hooks.fail_next_commits(w.rng.range(1, 3) as u32),
            79 => {
                let ms = w.rng.range(1_000, 600_000);
                trace(format!("  store down for {ms} ms"));
                w.store.hooks.outage(ms);
            }
            80..=81 => w.resolve().await,
            82..=83 => w.start_check(),
            _ => {
                let ms = w.rng.range(100, 120_000);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        }
        w.audit().await;
    }
    // Quiet phase: faults off (the simulator deduplicates as before), in-flight host calls
    // finish, and everything must converge within bounded simulated time.
    w.sim.set_faults(Faults {
        no_dedupe: w.sim.faults().no_dedupe,
        ..Faults::default()
    });
    w.store.hooks.pauses(None);
    w.store.hooks.fail_next_commits(0);
    w.store.hooks.disarm();
    w.store.hooks.outage(0);
    for (key, t) in std::mem::take(&mut w.inflight) {
        if let Ok(answer) = t.await {
            let entry = w.answers.entry(key).or_insert(answer);
            if *entry == Answer::Unknown || answer == Answer::Accepted {
                *entry = answer;
            }
        }
    }
    // The bound follows from the poll policy: the slowest poll (waiting for arrival, backed off
    // to the ceiling, plus jitter) must have come round at least once, after a wall clock that
    // may have been stepped back by an hour at the last start.
    let policy = w.settings.config(&w.app, 0).poll;
    let slowest = policy.max_interval_ms * (100 + u64::from(policy.jitter_percent)) / 100 + policy.grace_ms;
    let minutes = 2 * slowest / 60_000 + 6 * 60 + 70;
    let mut left = Vec::new();
    for minute in 0..minutes {
        tokio::time::sleep(Duration::from_secs(60)).await;
        // The operator comes in after a few hours: until then, flagged orders keep being
        // polled (which is where a poller that spins on them shows).
        if minute >= 6 * 60 {
            w.resolve().await;
        }
        w.audit().await;
        left = w.unconverged().await;
        if left.is_empty() {
            break;
        }
    }
    assert!(
        left.is_empty(),
        "seed {seed}: not converged after {minutes} simulated minutes: {left:#?}"
    );
    w.audit().await;
    w.judge_checks(true).await;
    w.events_match_states().await;
    for (t, _) in &w.protocols {
        let ours = w.protocol_now(t).await.ledger;
        let theirs = w.sim.balances(t).expect("sim protocol");
        if ours.available != theirs.available {
            let truth = w.sim.order_states();
            for o in w.store.hooks.auditor.orders_of(t).await.expect("orders") {
                let key = o.value.out_req_no();
                eprintln!(
                    "  {key} {} {}: ours {}, simulator {:?}; {:?}",
                    o.value.amount(),
                    o.value.out_type().map_or("IN", |t| t.as_str()),
                    o.value.state_label(),
                    truth.get(key),
                    o.value.attempts
                );
            }
        }
        assert_eq!(ours.available, theirs.available, "seed {seed}: available of {t}");
        assert_eq!(ours.in_transit, theirs.in_transit, "seed {seed}: in transit of {t}");
    }
    let events = w
        .store
        .events_after(0, usize::MAX)
        .await
        .expect("events")
        .iter()
        .map(|e| format!("{e:?}"))
        .collect();
    let requests = w.sim.received().iter().map(|r| format!("{r:?}")).collect();
    let run = Run {
        orders: w.orders().await.len(),
        restarts: w.restarts,
        events,
        requests,
    };
    if let Some(p) = w.poller.take() {
        p.shutdown().await;
    }
    w.engine.shutdown().await.expect("shutdown");
    background.stop().await;
    run
}

fn run_in_simulated_time(seed: u64, mode: Mode) -> Run {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(run_seed(seed, mode))
}

/// Run one seed on its own thread, failing it as hung if it outlasts the real-time limit (a
/// spin that keeps simulated time from advancing shows this way).
fn run_guarded(seed: u64, mode: Mode) -> std::thread::Result<Run> {
    let limit = std::env::var("PROTOPAY_SEED_TIMEOUT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        TRACE.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let _ = tx.send(std::panic::catch_unwind(|| run_in_simulated_time(seed, mode)));
    });
    match rx.recv_timeout(Duration::from_secs(limit)) {
        Ok(result) => result,
        Err(_) => Err(Box::new(format!(
            "seed {seed} hung: no progress for {limit} s of real time"
        ))),
    }
}

#[test]
fn vopr() {
    let seeds: Vec<u64> = match (std::env::var("PROTOPAY_SEED"), std::env::var("PROTOPAY_SEEDS")) {
        (Ok(one), _) => vec![one.parse().expect("PROTOPAY_SEED must be a number")],
        (_, Ok(n)) => {
            let start: u64 = std::env::var("PROTOPAY_SEED_START")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            (start..start + n.parse::<u64>().expect("PROTOPAY_SEEDS must be a number")).collect()
        }
        _ => (0..200).collect(),
    };
    let (mut orders, mut restarts) = (0, 0);
    for seed in &seeds {
        match run_guarded(*seed, Mode::Honest) {
            Ok(run) => {
                orders += run.orders;
                restarts += run.restarts;
            }
            Err(panic) => {
                if seeds.len() == 1 {
                    eprintln!("\nVOPR trace of seed {seed}:");
                    for line in TRACE.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                        eprintln!("{line}");
                    }
                }
                eprintln!("\nVOPR: seed {seed} failed; replay with PROTOPAY_SEED={seed} (prints its trace)");
                std::panic::resume_unwind(panic);
            }
        }
    }
    eprintln!(
        "VOPR: {} seeds, {orders} orders, {restarts} restarts, all converged",
        seeds.len()
    );
}

#[test]
fn same_seed_same_run() {
    // Determinism is what makes a failing seed worth printing: the whole event log and the
    // simulator's request log must be identical.
    let a = run_in_simulated_time(12_345, Mode::Honest);
    let b = run_in_simulated_time(12_345, Mode::Honest);
    assert!(!a.events.is_empty() && !a.requests.is_empty());
    assert_eq!(a, b);
}

/// The simulation must find what the old resend rule did: told that the payment system
/// deduplicates (so a verified "no such order" past the grace period licenses a resend) while
/// it does not, some seed pays an order out twice — a request that landed late, after its
/// resend. If no seed does, the simulation has lost its eyes for the class.
#[test]
fn the_old_resend_rule_is_caught_paying_twice() {
    let found = (0..40).find_map(|seed| {
        let panic = run_guarded(seed, Mode::ClaimsDeduplication).err()?;
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        message.contains("paid out").then_some((seed, message))
    });
    let (seed, message) = found.expect("no seed of 40 caught the old resend rule paying twice");
    eprintln!("the old resend rule pays twice at seed {seed}: {message}");
}
