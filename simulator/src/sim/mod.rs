//! The simulator itself: handles calls, keeps the books, sends callbacks with retries, runs
//! the seeded schedule and injects faults.
//!
//! The calls are in `api`, the test controls in `controls`, the seeded auto schedule in
//! `schedule`, the callback outbox (and the background task that drains it) in `outbox`.

mod api;
mod controls;
mod outbox;
mod schedule;

pub use outbox::Background;

use crate::books::{Balances, Books, BooksError};
use crate::faults::{Aimed, Faults, Rng};
use chrono::{DateTime, FixedOffset, Utc};
use protopay_engine::wire::{Endpoint, PayStatus};
use protopay_engine::{Clock, Md5Key};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// How the simulator is set up.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The business system it serves.
    pub app_id: String,
    /// The shared key.
    pub key: Md5Key,
    /// Seed of every random choice (codes, order numbers, faults, the schedule).
    pub seed: u64,
    /// Move orders along by a seeded random schedule.
    pub auto: bool,
    /// Its zone, minutes east of UTC (+08:00).
    pub utc_offset_minutes: i32,
    /// Waits between callback attempts: the first retry after `[0]` ms, and so on; after the
    /// last, it gives up.
    pub callback_retry_ms: Vec<u64>,
    /// The auto schedule's delay range between steps (ms).
    pub auto_delay_ms: (u64, u64),
    /// The auto schedule's share of failed payments and payouts.
    pub auto_failure_rate: f64,
}

impl SimConfig {
    /// Defaults for an app and key.
    pub fn new(app_id: &str, key: Md5Key) -> Self {
        SimConfig {
            app_id: app_id.to_owned(),
            key,
            seed: 1,
            auto: false,
            utc_offset_minutes: 8 * 60,
            callback_retry_ms: vec![1_000, 2_000, 5_000, 15_000, 60_000, 300_000],
            auto_delay_ms: (500, 5_000),
            auto_failure_rate: 0.1,
        }
    }
}

/// What became of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Answered with this body (HTTP 200).
    Reply(Vec<u8>),
    /// Answered HTTP 500 without handling it.
    ServerError,
    /// Handled and committed, never answered.
    TimeoutAfterCommit,
    /// Never arrived (connection refused).
    ConnectionRefused,
}

/// Why a control request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// No order with that `outReqNo`.
    #[error("no order {0}")]
    UnknownOrder(String),
    /// The order is not in a state where that can happen.
    #[error("order {0} cannot {1} now")]
    InvalidState(String, &'static str),
    /// The books refused the movement.
    #[error(transparent)]
    Books(#[from] BooksError),
}

/// Counters for tests and `GET /sim/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Payouts created per `outReqNo` (more than one only in no-dedupe mode).
    pub payouts: BTreeMap<String, u32>,
    /// Calls received.
    pub requests: u64,
    /// Callback delivery attempts.
    pub callbacks_sent: u64,
    /// Callbacks answered with success.
    pub callbacks_acknowledged: u64,
    /// Callbacks dropped by a fault.
    pub callbacks_dropped: u64,
    /// Callbacks given up after the last retry.
    pub callbacks_abandoned: u64,
    /// Each protocol's balances.
    pub protocols: BTreeMap<String, Balances>,
}

/// One call as the simulator received it (the request log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Received {
    /// When it arrived (the simulator's clock).
    pub at: DateTime<Utc>,
    /// The endpoint's name as called.
    pub endpoint: String,
    /// The `outReqNo` its data named, if any.
    pub out_req_no: Option<String>,
    /// Whether it was handled (not refused, not answered 500 before handling).
    pub handled: bool,
}

/// A callback waiting to be delivered.
#[derive(Debug, Clone)]
struct Delivery {
    id: u64,
    url: String,
    body: Vec<u8>,
    attempt: usize,
    next_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
enum Action {
    Processing(String),
    Pay(String, bool),
    Arrive(String),
    Settle(String, bool),
}

#[derive(Debug)]
struct State {
    books: Books,
    rng: Rng,
    faults: Faults,
    outbox: Vec<Delivery>,
    timers: Vec<(DateTime<Utc>, u64, Action)>,
    stats: Stats,
    counter: u64,
    aimed: Vec<(Endpoint, Aimed)>,
    received: Vec<Received>,
    /// Late arrivals still on their way, by `outReqNo`.
    in_flight: BTreeMap<String, u32>,
}

/// The simulator. Cheap to clone; clones share one payment system.
#[derive(Clone)]
pub struct Sim {
    config: Arc<SimConfig>,
    zone: FixedOffset,
    clock: Clock,
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("app_id", &self.config.app_id)
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// A simulator on `clock` (use [`Clock::system`] outside tests).
    pub fn new(config: SimConfig, clock: Clock) -> Self {
        let zone = FixedOffset::east_opt(config.utc_offset_minutes * 60)
            .unwrap_or_else(protopay_engine::wire::china_standard_time);
        let state = State {
            books: Books::default(),
            rng: Rng::new(config.seed),
            faults: Faults::default(),
            outbox: Vec::new(),
            timers: Vec::new(),
            stats: Stats::default(),
            counter: 0,
            aimed: Vec::new(),
            received: Vec::new(),
            in_flight: BTreeMap::new(),
        };
        Sim {
            config: Arc::new(config),
            zone,
            clock,
            state: Arc::new(Mutex::new(state)),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replace the fault settings.
    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// The fault settings (one-shots count down as they fire).
    pub fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    /// Change the fault settings in place.
    pub fn with_faults(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.lock().faults);
    }

    /// Aim a one-shot fault at the next call to `endpoint` (several queue up in order).
    pub fn fail_next(&self, endpoint: Endpoint, how: Aimed) {
        self.lock().aimed.push((endpoint, how));
    }

    /// Every call received, in order: the request log.
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// The calls received that named `out_req_no` at `endpoint` and were handled.
    pub fn handled(&self, endpoint: Endpoint, out_req_no: &str) -> usize {
        let s = self.lock();
        let named = |r: &&Received| r.handled && r.endpoint == endpoint.name();
        s.received
            .iter()
            .filter(named)
            .filter(|r| r.out_req_no.as_deref() == Some(out_req_no))
            .count()
    }

    fn take_aimed(s: &mut State, name: &str, late: bool) -> Option<Aimed> {
        let i = s
            .aimed
            .iter()
            .position(|(e, how)| e.name() == name && matches!(how, Aimed::LateArrival(_)) == late)?;
        Some(s.aimed.remove(i).1)
    }

    /// The counters, with current balances.
    pub fn stats(&self) -> Stats {
        let s = self.lock();
        let mut stats = s.stats.clone();
        stats.protocols = s.books.protocols.iter().map(|(k, p)| (k.clone(), p.balances)).collect();
        stats
    }

    /// A protocol's balances.
    pub fn balances(&self, trans_no: &str) -> Option<Balances> {
        self.lock().books.protocols.get(trans_no).map(|p| p.balances)
    }

    /// An inbound order's status and arrival.
    pub fn inbound_status(&self, out_req_no: &str) -> Option<(PayStatus, bool)> {
        self.lock()
            .books
            .inbound
            .get(out_req_no)
            .map(|o| (o.status.clone(), o.arrived))
    }

    /// An outbound order's status (the first payout's, if several).
    pub fn outbound_status(&self, out_req_no: &str) -> Option<PayStatus> {
        self.lock()
            .books
            .outbound
            .get(out_req_no)
            .and_then(|v| v.first())
            .map(|o| o.status.clone())
    }

    /// Every order's `outReqNo` with its status label, inbound and outbound.
    pub fn order_states(&self) -> BTreeMap<String, String> {
        let s = self.lock();
        let inbound = s.books.inbound.iter().map(|(k, o)| {
            (
                k.clone(),
                format!("{}{}", o.status, if o.arrived { "+arrived" } else { "" }),
            )
        });
        let outbound = s
            .books
            .outbound
            .iter()
            .filter_map(|(k, v)| v.first().map(|o| (k.clone(), o.status.to_string())));
        inbound.chain(outbound).collect()
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}
