//! Deterministic simulation testing, in the spirit of TigerBeetle's VOPR.
//!
//! Per seed, on tokio's paused clock: the in-process simulator (auto schedule, never
//! deduplicating payouts), an engine on a probed store, a random workload and a random fault
//! mix. What a seed can throw at the engine:
//!
//! - **workload**: protocols, deposits, payouts and refunds (own or generated `outReqNo`s,
//!   empty and long remarks, over-long texts), bursts of concurrent payouts, identical
//!   repeats of earlier commands, POS closes, forged callbacks, operator resolutions — each
//!   on the version the operator read; half of them by a hasty operator who also decides
//!   orders that do not need attention (each must be refused) and calls flagged deposits
//!   failed while a send may still land (if the payer then pays, the money must reach the
//!   ledger: seed 560) — and `check` run by an operator while all of that is in flight (it
//!   may fail while the store is down, or leave what kept moving unjudged, but never report
//!   a violation);
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
//! a person's decision is recorded only on an order that needed attention when read, and a
//! recorded one answers with the status asked;
//! and budgets derived from the poll policy — calls to the payment system per order per
//! simulated hour, and poller passes per simulated minute (checked as they happen, so a spin
//! that freezes simulated time is caught too). Then a quiet phase with faults off: every order
//! must converge to the simulator's truth within bounded simulated time (a person's `FAILURE`
//! may stand only where the payment system moved no money).
//!
//! `PROTOPAY_SEED=n` replays one seed exactly and prints its step trace; `PROTOPAY_SEEDS=n`
//! runs seeds 0..n (CI: 200), from `PROTOPAY_SEED_START` if set. A seed that does not finish
//! within `PROTOPAY_SEED_TIMEOUT_SECS` (default 300) of real time fails as hung.

#[path = "../audit/mod.rs"]
mod audit;
mod network;
mod probe;
mod world;

use chrono::{DateTime, Utc};
use protopay::Status;
use protopay::storage::Storage;
use protopay_sim::Faults;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use world::{Answer, World};

pub(crate) const KEY: &str = "vopr";

/// What the auditor found while the engine was running (set by the probes, read after every
/// step).
pub(crate) type Violation = Arc<Mutex<Option<String>>>;

pub(crate) fn violate(v: &Violation, what: String) {
    let mut slot = v.lock().unwrap();
    if slot.is_none() {
        *slot = Some(what);
    }
}

/// The step trace of the seed running on this thread, printed when it fails.
pub(crate) static TRACE: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub(crate) fn trace(line: String) {
    TRACE.lock().unwrap().push(line);
}

/// A person's decisions in a run: how many the engine recorded, and how many it refused
/// (on an order that did not need attention, or had moved since it was read).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decisions {
    pub(crate) recorded: u32,
    pub(crate) refused: u32,
    /// Recorded, then overruled by the payment system's word on money.
    pub(crate) overruled: u32,
}

/// A sliding window of event times, for rate budgets.
#[derive(Default)]
pub(crate) struct Window(VecDeque<DateTime<Utc>>);

impl Window {
    /// Record one at `now`; how many fell within `span` before it.
    pub(crate) fn hit(&mut self, now: DateTime<Utc>, span: chrono::Duration) -> usize {
        self.0.push_back(now);
        while self.0.front().is_some_and(|t| now - *t > span) {
            self.0.pop_front();
        }
        self.0.len()
    }
}

/// Whether the engine is told the truth about the payment system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// It deduplicates exactly when the engine is told so.
    Honest,
    /// The engine is told it deduplicates; it never does. That is the resend rule before
    /// pauses and late packets were taken seriously ("not found past grace: resend"), which
    /// the simulation must catch paying twice.
    ClaimsDeduplication,
}

/// What a run produced, compared whole by the determinism test.
#[derive(Debug, PartialEq)]
struct Run {
    orders: usize,
    restarts: u32,
    decisions: Decisions,
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
            80..=81 => {
                let hasty = w.rng.range(0, 2) == 0;
                w.resolve(hasty).await
            }
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
            w.resolve(false).await;
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
    // Decisions the payment system overruled with money (`apply`, rule 7): settled as it
    // says, and left for a person to acknowledge.
    w.decisions.overruled = w
        .orders()
        .await
        .iter()
        .filter(|o| o.attempts.decided_by_person && o.status == Status::Success && o.attempts.needs_attention)
        .count() as u32;
    let run = Run {
        orders: w.orders().await.len(),
        restarts: w.restarts,
        decisions: w.decisions,
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
    let (mut orders, mut restarts, mut decisions) = (0, 0, Decisions::default());
    for seed in &seeds {
        match run_guarded(*seed, Mode::Honest) {
            Ok(run) => {
                orders += run.orders;
                restarts += run.restarts;
                decisions.recorded += run.decisions.recorded;
                decisions.refused += run.decisions.refused;
                decisions.overruled += run.decisions.overruled;
                if run.decisions.overruled > 0 {
                    eprintln!(
                        "VOPR: seed {seed}: {} decision(s) overruled by the payment system's word on money",
                        run.decisions.overruled
                    );
                }
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
        "VOPR: {} seeds, {orders} orders, {restarts} restarts, {} decisions recorded ({} overruled by the payment system) and {} refused, all converged",
        seeds.len(),
        decisions.recorded,
        decisions.overruled,
        decisions.refused
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
