//! The world a seed runs: the engine, its store and network, the simulated payment system,
//! the host's workload and the faults; and the auditor's checks after every step.

use crate::network::*;
use crate::probe::*;
use crate::{Decisions, KEY, Mode, Violation, audit, trace, violate};
use chrono::DateTime;
use protopay::storage::{MemoryStorage, Storage};
use protopay::testing::Intercepted;
use protopay::wire::{CallbackKind, CashierType, Endpoint, Envelope, OutType, validate::limits};
use protopay::{
    Amount, Clock, Config, Decision, Engine, Error, EventKind, Md5Key, NewInbound, NewOutbound, NewProtocol, Order,
    OrderKind, PollerHandle, Protocol, Sensitive, Status,
};
use protopay_sim::{Aimed, Background, Fault, Faults, Rng, Sim, SimConfig, SimTransport};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a command returned, for the host-contract check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// `Ok`, or an error that carries the `outReqNo` and says it may stand.
    Accepted,
    /// A plain `Err`: nothing may ever move for it.
    Refused,
    /// The host task was cut off by a crash: either may be true.
    Unknown,
}

pub(crate) struct World {
    pub(crate) seed: u64,
    pub(crate) rng: Rng,
    pub(crate) app: String,
    pub(crate) settings: Settings,
    pub(crate) sim: Sim,
    pub(crate) truth: Clock,
    /// The host's wall clock, as an offset from the truth; a restart reads it.
    pub(crate) skew_ms: i64,
    pub(crate) store: Arc<Probed>,
    pub(crate) transport: Arc<Metered>,
    pub(crate) board: Switchboard,
    pub(crate) engine: Engine,
    pub(crate) deploy: u32,
    pub(crate) poller: Option<PollerHandle>,
    pub(crate) inflight: Vec<(String, tokio::task::JoinHandle<Answer>)>,
    /// Operators' `check`s still reading while the run goes on.
    pub(crate) checks: Vec<tokio::task::JoinHandle<protopay::Result<protopay::CheckReport>>>,
    pub(crate) protocols: Vec<(String, CashierType)>,
    pub(crate) inbound: Vec<String>,
    /// Commands sent, by `outReqNo` (own ones only), to repeat them.
    pub(crate) sent: Vec<Sent>,
    pub(crate) answers: BTreeMap<String, Answer>,
    pub(crate) next: u64,
    pub(crate) seen: BTreeMap<String, (u8, bool)>,
    pub(crate) restarts: u32,
    /// The operator's decisions: recorded, and refused by the engine.
    pub(crate) decisions: Decisions,
    pub(crate) violation: Violation,
}

#[derive(Clone)]
pub(crate) enum Sent {
    In(NewInbound),
    Out(NewOutbound),
}

/// The engine's settings: a seed's own retry budgets, and a callback URL that changes with
/// each deploy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) max_sends: u32,
    pub(crate) attention_after_quiet_polls: u32,
    /// What the engine is told about the payment system.
    pub(crate) deduplicates: bool,
}

impl Settings {
    pub(crate) fn draw(rng: &mut Rng, mode: Mode) -> Self {
        let quiet = [3, 10, 30, 1_000];
        Settings {
            max_sends: rng.range(1, 8) as u32,
            attention_after_quiet_polls: quiet[rng.range(0, quiet.len() as u64 - 1) as usize],
            deduplicates: mode == Mode::ClaimsDeduplication || rng.unit() < 0.3,
        }
    }

    pub(crate) fn config(&self, app: &str, deploy: u32) -> Config {
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

pub(crate) fn classify(result: &protopay::Result<Order>) -> Answer {
    match result {
        Ok(_) | Err(Error::OutcomeUnknown { .. }) => Answer::Accepted,
        Err(_) => Answer::Refused,
    }
}

pub(crate) fn faults_for(rng: &mut Rng, late_ms: u64, no_dedupe: bool) -> Faults {
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
    pub(crate) async fn new(seed: u64, mode: Mode) -> (World, Background) {
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
            decisions: Decisions::default(),
            violation,
        };
        (world, background)
    }

    pub(crate) async fn engine(&self) -> Engine {
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
    pub(crate) async fn start(
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

    pub(crate) fn key(&mut self, kind: &str) -> String {
        self.next += 1;
        format!("{}-{kind}{}", self.app, self.next)
    }

    pub(crate) fn amount(&mut self, max_fen: u64) -> Amount {
        Amount::from_fen(self.rng.range(1, max_fen)).expect("amount")
    }

    /// Sometimes aim a commit failure at one of the next command's commit points.
    pub(crate) fn maybe_fail_a_commit_point(&mut self) {
        if self.rng.unit() < 0.15 {
            let n = self.rng.range(1, 4) as u32;
            trace(format!("  fail commit point {n}"));
            self.store.hooks.fail_commit(n);
        }
    }

    pub(crate) fn answered(&mut self, key: Option<String>, result: &protopay::Result<Order>) {
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

    pub(crate) async fn create_protocol(&mut self) {
        let cashier_type = if self.rng.unit() < 0.7 {
            CashierType::Pos
        } else {
            CashierType::Qp
        };
        let cmd = NewProtocol {
            trans_desc: "vopr".into(),
            business_id: "B1".into(),
            cashier_type: cashier_type.clone(),
            idempotency_key: None,
        };
        if let Ok(p) = self.engine.create_protocol(cmd).await {
            self.protocols.push((p.trans_no, cashier_type));
        }
    }

    pub(crate) fn pick_protocol(&mut self) -> Option<(String, CashierType)> {
        if self.protocols.is_empty() {
            return None;
        }
        let i = self.rng.range(0, self.protocols.len() as u64 - 1) as usize;
        self.protocols.get(i).cloned()
    }

    /// Our own key most of the time; sometimes let the engine generate one.
    pub(crate) fn maybe_key(&mut self, kind: &str) -> Option<String> {
        if self.rng.unit() < 0.25 {
            None
        } else {
            Some(self.key(kind))
        }
    }

    pub(crate) async fn deposit(&mut self) {
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

    pub(crate) fn payout_cmd(&mut self, trans_no: &str, key: Option<String>) -> NewOutbound {
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

    pub(crate) async fn payout(&mut self) {
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
    pub(crate) fn burst(&mut self) {
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
    pub(crate) async fn repeat(&mut self) {
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

    pub(crate) async fn close(&mut self) {
        if self.inbound.is_empty() {
            return;
        }
        let i = self.rng.range(0, self.inbound.len() as u64 - 1) as usize;
        let key = self.inbound[i].clone();
        let _ = self.engine.close_pos(&key).await;
    }

    pub(crate) async fn forge(&mut self) {
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
    pub(crate) fn step_clock(&mut self) {
        let steps = [-3_600_000, -600_000, -5_000, 5_000, 600_000, 3_600_000];
        self.skew_ms = steps[self.rng.range(0, steps.len() as u64 - 1) as usize];
        trace(format!("  wall clock now {} ms off", self.skew_ms));
    }

    /// A restart: a crash (the poller and in-flight host calls stop wherever they are) or a
    /// graceful shutdown; then, at once or a little later, a new engine on the same store,
    /// perhaps with a new deploy's settings and a stepped wall clock.
    pub(crate) async fn restart(&mut self) {
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
    /// them: reads the order (and its version), asks the payment system, and decides on
    /// that version — refused, and left for the next round, if the order has moved since.
    ///
    /// A `hasty` operator also decides orders that do not need attention (never sent, or
    /// still being decided by the payment system), as if its word were final — the engine
    /// must refuse every one of those: a person cannot book money that has not moved — and
    /// calls a flagged deposit failed while a send of it may still land. That one the engine
    /// records; if the payer then pays, the payment system's word must reach the ledger
    /// (`apply`, rule 7), which convergence checks.
    pub(crate) async fn resolve(&mut self, hasty: bool) {
        for o in self.orders().await {
            if !o.is_open() || !(hasty || o.attempts.needs_attention) {
                continue;
            }
            let Ok(seen) = self.engine.order_details(o.out_req_no()).await else {
                continue;
            };
            let flagged = seen.order.attempts.needs_attention && !seen.order.status.is_terminal();
            if !(flagged || hasty) || seen.order.status.is_terminal() {
                continue;
            }
            // As a person would after asking the payment system: an order it never
            // received failed; otherwise its settled status. A hasty one takes an order the
            // payment system has not settled as failed.
            let truth = self.sim.order_states().get(o.out_req_no()).cloned();
            let wrongly = hasty && o.inbound().is_some();
            let status = match truth.as_deref() {
                // The README's rule: failed only once no send of it can still land.
                None if flagged && !wrongly && self.sim.in_flight(o.out_req_no()) => continue,
                None => Status::Failure,
                Some(t) if t.starts_with("SUCCESS") => Status::Success,
                Some("FAILURE") => Status::Failure,
                Some(_) if hasty && (!flagged || wrongly) => Status::Failure,
                Some(_) => continue,
            };
            // Half the time the decision names the version it was made on; otherwise the
            // engine's own read stands in.
            let named = (self.rng.range(0, 2) == 0).then_some(seen.version);
            let decided = self
                .engine
                .resolve(
                    o.out_req_no(),
                    Decision {
                        seen_version: named,
                        ..Decision::new(status, "vopr operator")
                    },
                )
                .await;
            let answer = match &decided {
                Ok(_) => "recorded".to_owned(),
                Err(e) => format!("refused: {e}"),
            };
            trace(format!(
                "  operator resolves {} ({} at version {}) as {status}: {answer}",
                o.out_req_no(),
                if flagged { "flagged" } else { "not flagged" },
                seen.version
            ));
            match &decided {
                Ok(_) => self.decisions.recorded += 1,
                Err(_) => self.decisions.refused += 1,
            }
            match decided {
                Ok(_) if !flagged => violate(
                    &self.violation,
                    format!(
                        "{} was resolved as {status} though it did not need attention when read",
                        o.out_req_no()
                    ),
                ),
                Ok(resolved) if resolved.status != status => violate(
                    &self.violation,
                    format!(
                        "resolving {} as {status} answered Ok with {}",
                        o.out_req_no(),
                        resolved.status
                    ),
                ),
                _ => {}
            }
        }
    }

    /// An operator's `protopay check`, started in the middle of everything and left to read
    /// while the run goes on (every read lets other tasks run): reads that interleave with
    /// commands, callbacks, polls and restarts must never add up to a false alarm.
    pub(crate) fn start_check(&mut self) {
        trace("  operator starts a check".to_owned());
        let engine = self.engine.clone();
        self.checks.push(tokio::spawn(async move { engine.check().await }));
    }

    /// Judge the operators' checks that have finished (all of them, waiting, when `wait`).
    pub(crate) async fn judge_checks(&mut self, wait: bool) {
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
    pub(crate) async fn protocol_now(&self, trans_no: &str) -> Protocol {
        let stored = self.auditor().protocol(trans_no).await.expect("read");
        stored.expect("protocol").value
    }

    /// The store at one moment: what the auditor reads.
    pub(crate) fn auditor(&self) -> &MemoryStorage {
        &self.store.hooks.auditor
    }

    pub(crate) async fn orders(&self) -> Vec<Order> {
        audit::orders_of(self.auditor(), self.protocols.iter().map(|(t, _)| t.as_str())).await
    }

    /// The auditor: what must hold after every step.
    pub(crate) async fn audit(&mut self) {
        self.judge_checks(false).await;
        let seed = self.seed;
        if let Some(v) = self.violation.lock().unwrap().clone() {
            panic!("seed {seed}: {v}");
        }
        let orders = self.orders().await;
        let protocols = self.protocols.iter().map(|(t, _)| t.as_str());
        let problems = [
            audit::ledger_violations(self.auditor(), protocols).await,
            audit::paid_twice(&self.sim),
            audit::read_model_violations(self.auditor(), &orders).await,
            audit::published_twice(self.auditor()).await,
        ]
        .concat();
        assert!(problems.is_empty(), "seed {seed}: {problems:#?}");
        let late = protopay::testing::due_time_violations(self.auditor(), &orders)
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
    }

    /// Events must tell the same story as the final states.
    pub(crate) async fn events_match_states(&self) {
        let events = self.auditor().events_after(0, usize::MAX).await.expect("events");
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
    pub(crate) async fn unconverged(&self) -> Vec<String> {
        let truth = self.sim.order_states();
        let mut out = Vec::new();
        for o in self.orders().await {
            let ours = o.state_label().replace("+closed", "");
            // A person's FAILURE stands where the payment system moved no money (a code
            // never paid, a request never received); where it did, ours must say so.
            let decided_failure = o.attempts.decided_by_person && o.status == Status::Failure;
            let acceptable = match truth.get(o.out_req_no()) {
                Some(t) => *t == ours || (decided_failure && !t.starts_with("SUCCESS")),
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
            if self.auditor().order(key).await.expect("read").is_none() {
                out.push(format!("{key}: the simulator has it, we do not"));
            }
        }
        out
    }
}
