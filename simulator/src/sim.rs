//! The simulator itself: handles calls, keeps the books, sends callbacks with retries, runs
//! the seeded schedule and injects faults.

use crate::books::{Balances, Books, BooksError, CNAPS, SimInbound, SimOutbound, SimProtocol, wire_time};
use crate::faults::{Aimed, Faults, Rng};
use chrono::{DateTime, FixedOffset, Utc};
use protopay_engine::wire::{
    CODE_OK, CashierType, ChannelType, CnapsEntry, CreateProtocol, Endpoint, Envelope, FindProtocol, Inquery, MSG_OK,
    Missing, Outpay, Outquery, PayStatus, PosClose, PosCloseResult, Prepay, QueryBankCnaps, format_timestamp, validate,
};
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
        f.debug_struct("Sim").field("app_id", &self.config.app_id).finish_non_exhaustive()
    }
}

/// How many calls the request log keeps.
const RECEIVED_KEPT: usize = 100_000;

/// The `outReqNo` a request names, for the request log.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct NamesOrder {
    out_req_no: Option<String>,
}

/// A refusal to answer with a non-`0000` code.
struct Refusal(&'static str, String);

fn refuse(code: &'static str, msg: impl Into<String>) -> Refusal {
    Refusal(code, msg.into())
}

fn not_found(m: Missing) -> Refusal {
    Refusal(m.code(), m.to_string())
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
        };
        Sim { config: Arc::new(config), zone, clock, state: Arc::new(Mutex::new(state)), wake: Arc::new(Notify::new()) }
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
        s.received.iter().filter(named).filter(|r| r.out_req_no.as_deref() == Some(out_req_no)).count()
    }

    fn take_aimed(s: &mut State, name: &str, late: bool) -> Option<Aimed> {
        let i = s.aimed.iter().position(|(e, how)| e.name() == name && matches!(how, Aimed::LateArrival(_)) == late)?;
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
        self.lock().books.inbound.get(out_req_no).map(|o| (o.status.clone(), o.arrived))
    }

    /// An outbound order's status (the first payout's, if several).
    pub fn outbound_status(&self, out_req_no: &str) -> Option<PayStatus> {
        self.lock().books.outbound.get(out_req_no).and_then(|v| v.first()).map(|o| o.status.clone())
    }

    /// Every order's `outReqNo` with its status label, inbound and outbound.
    pub fn order_states(&self) -> BTreeMap<String, String> {
        let s = self.lock();
        let inbound = s
            .books
            .inbound
            .iter()
            .map(|(k, o)| (k.clone(), format!("{}{}", o.status, if o.arrived { "+arrived" } else { "" })));
        let outbound =
            s.books.outbound.iter().filter_map(|(k, v)| v.first().map(|o| (k.clone(), o.status.to_string())));
        inbound.chain(outbound).collect()
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    // ---- calls ---------------------------------------------------------------------------

    /// Whether the next call to `name` arrives late, and by how much (the `late_arrival`
    /// fault, or one aimed at it).
    pub fn draw_late_arrival(&self, name: &str) -> Option<std::time::Duration> {
        let mut s = self.lock();
        if let Some(Aimed::LateArrival(ms)) = Self::take_aimed(&mut s, name, true) {
            return Some(std::time::Duration::from_millis(ms));
        }
        let State { faults, rng, .. } = &mut *s;
        let max = faults.late_ms;
        faults.late_arrival.fire(rng).then(|| std::time::Duration::from_millis(rng.range(0, max)))
    }

    /// Handle one call to `/api/protocol/{name}` with a request body.
    pub fn handle(&self, name: &str, body: &[u8]) -> Handled {
        let mut s = self.lock();
        s.stats.requests += 1;
        let aimed = Self::take_aimed(&mut s, name, false);
        let State { faults, rng, .. } = &mut *s;
        let refused = aimed == Some(Aimed::ConnectionRefused) || faults.refuse_connection.fire(rng);
        let failed = !refused && (aimed == Some(Aimed::ServerError) || faults.http_500.fire(rng));
        let out_req_no = Envelope::decode(body)
            .ok()
            .and_then(|e| serde_json::from_str::<NamesOrder>(&e.data).ok())
            .and_then(|n| n.out_req_no);
        let at = self.now();
        if s.received.len() >= RECEIVED_KEPT {
            // A long-running staging simulator keeps the recent past only.
            s.received.drain(..RECEIVED_KEPT / 10);
        }
        s.received.push(Received { at, endpoint: name.to_owned(), out_req_no, handled: !refused && !failed });
        if refused {
            return Handled::ConnectionRefused;
        }
        if failed {
            return Handled::ServerError;
        }
        let answer = self.answer(&mut s, name, body);
        let (code, msg, data) = match answer {
            Ok(data) => (CODE_OK, MSG_OK.to_owned(), data),
            Err(Refusal(code, msg)) => (code, msg, String::new()),
        };
        let timestamp = format_timestamp(self.now(), self.zone);
        let mut reply = Envelope::reply(&self.config.app_id, code, &msg, data, timestamp, &self.config.key);
        let State { faults, rng, .. } = &mut *s;
        if faults.corrupt_sign.fire(rng) {
            reply.sign = reply.sign.chars().rev().collect();
        }
        if aimed == Some(Aimed::TimeoutAfterCommit) || faults.timeout_after_commit.fire(rng) {
            return Handled::TimeoutAfterCommit;
        }
        drop(s);
        self.wake.notify_one();
        Handled::Reply(reply.to_json().into_bytes())
    }

    fn answer(&self, s: &mut State, name: &str, body: &[u8]) -> Result<String, Refusal> {
        let env = Envelope::decode(body).map_err(|e| refuse("EP10003", e.to_string()))?;
        if env.app_id != self.config.app_id {
            return Err(refuse("EP10002", "unknown appId"));
        }
        env.verify(&self.config.key).map_err(|_| refuse("EP10001", "签名错误 (bad sign)"))?;
        if env.timestamp.len() != 17 || !env.timestamp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(refuse("EP10003", "timestamp must be yyyyMMddHHmmssSSS"));
        }
        let endpoint = Endpoint::from_name(name).ok_or_else(|| refuse("EP10004", "unknown interface"))?;
        fn data<T: serde::de::DeserializeOwned>(env: &Envelope) -> Result<T, Refusal> {
            Envelope::decode_data(&env.data).map_err(|e| refuse("EP10003", e.to_string()))
        }
        fn json<T: Serialize>(v: &T) -> Result<String, Refusal> {
            serde_json::to_string(v).map_err(|e| refuse("EP99999", e.to_string()))
        }
        match endpoint {
            Endpoint::Create => json(&self.create(s, data(&env)?)?),
            Endpoint::Find => {
                let req: FindProtocol = data(&env)?;
                let p = s.books.protocols.get(&req.trans_no).ok_or(not_found(Missing::Protocol))?;
                json(&p.view(&self.config.app_id))
            }
            Endpoint::Prepay => json(&self.prepay(s, data(&env)?)?),
            Endpoint::Posclose => json(&self.posclose(s, data(&env)?)?),
            Endpoint::Inquery => {
                let req: Inquery = data(&env)?;
                let o = s.books.inbound.get(&req.out_req_no).ok_or(not_found(Missing::InboundOrder))?;
                json(&o.view(&self.config.app_id))
            }
            Endpoint::Outpay => json(&self.outpay(s, data(&env)?)?),
            Endpoint::Outquery => {
                let req: Outquery = data(&env)?;
                let o = s.books.outbound.get(&req.out_req_no).and_then(|v| v.first());
                json(&o.ok_or(not_found(Missing::OutboundOrder))?.view(&self.config.app_id))
            }
            Endpoint::Querybankcnaps => {
                let req: QueryBankCnaps = data(&env)?;
                if req.bank_name_key_word.trim().is_empty() {
                    return Err(refuse("EP10003", "bankNameKeyWord is required"));
                }
                let found: Vec<CnapsEntry> = CNAPS
                    .iter()
                    .filter(|(name, _)| name.contains(req.bank_name_key_word.trim()))
                    .map(|(name, code)| CnapsEntry { bank_name: (*name).into(), bank_cnaps: (*code).into() })
                    .collect();
                json(&found)
            }
        }
    }

    fn next_number(&self, s: &mut State) -> u64 {
        s.counter += 1;
        s.counter
    }

    fn create(&self, s: &mut State, req: CreateProtocol) -> Result<protopay_engine::wire::ProtocolView, Refusal> {
        if req.trans_desc.trim().is_empty() || req.business_id.trim().is_empty() {
            return Err(refuse("EP10003", "transDesc and businessId are required"));
        }
        if req.channel_type != ChannelType::Lft {
            return Err(refuse("EP10003", "unsupported channelType"));
        }
        let cashier_type = req.cashier_type.unwrap_or(CashierType::Pos);
        if !cashier_type.is_known() {
            return Err(refuse("EP10003", "unsupported cashierType"));
        }
        let n = self.next_number(s);
        let now = wire_time(self.now(), self.zone);
        let trans_no = format!("T{}{n:06}", now.to_string().get(..10).unwrap_or("").replace('-', ""));
        let p = SimProtocol {
            trans_no: trans_no.clone(),
            trans_desc: req.trans_desc,
            business_id: req.business_id,
            cashier_type,
            create_time: now,
            balances: Balances::default(),
        };
        let view = p.view(&self.config.app_id);
        s.books.protocols.insert(trans_no, p);
        Ok(view)
    }

    fn check_out_req_no(&self, out_req_no: &str) -> Result<(), Refusal> {
        validate::out_req_no(&self.config.app_id, out_req_no).map_err(|e| refuse("EP10003", e.to_string()))
    }

    fn prepay(&self, s: &mut State, req: Prepay) -> Result<protopay_engine::wire::InboundView, Refusal> {
        let cashier_type =
            s.books.protocols.get(&req.trans_no).ok_or(not_found(Missing::Protocol))?.cashier_type.clone();
        self.check_out_req_no(&req.out_req_no)?;
        validate::positive("amount", req.amount).map_err(|e| refuse("EP10003", e.to_string()))?;
        if req.out_success_notify_url.trim().is_empty() {
            return Err(refuse("EP10003", "outSuccessNotifyUrl is required"));
        }
        if s.books.outbound.contains_key(&req.out_req_no) {
            return Err(refuse("EP30002", "outReqNo already used"));
        }
        if let Some(existing) = s.books.inbound.get(&req.out_req_no) {
            return if existing.request == req {
                Ok(existing.view(&self.config.app_id))
            } else {
                Err(refuse("EP30002", "outReqNo already used with other parameters"))
            };
        }
        if cashier_type == CashierType::Pos && req.prod_catalog.is_none() {
            return Err(refuse("EP10003", "prodCatalog is required for POS"));
        }
        let n = self.next_number(s);
        let pay_order_no = format!("P{n:010}");
        let pos = cashier_type == CashierType::Pos;
        let pos_code = pos.then(|| format!("{:06}", s.rng.range(0, 999_999)));
        let order = SimInbound {
            cashier_url: (!pos).then(|| format!("https://cashier.sim.invalid/pay/{pay_order_no}")),
            request: req,
            cashier_type,
            pay_order_no,
            pos_code,
            status: PayStatus::Unpaid,
            arrived: false,
            closed: false,
            create_time: wire_time(self.now(), self.zone),
            finish_time: None,
            arrive_time: None,
        };
        let view = order.view(&self.config.app_id);
        let key = order.request.out_req_no.clone();
        s.books.inbound.insert(key.clone(), order);
        if self.config.auto {
            self.schedule(s, Action::Processing(key));
        }
        Ok(view)
    }

    fn posclose(&self, s: &mut State, req: PosClose) -> Result<PosCloseResult, Refusal> {
        let o = s.books.inbound.get_mut(&req.out_req_no).ok_or(not_found(Missing::InboundOrder))?;
        if o.cashier_type != CashierType::Pos {
            return Err(refuse("EP30003", "not a POS order"));
        }
        if matches!(o.status, PayStatus::Success | PayStatus::Failure) {
            return Err(refuse("EP30003", "order already finished"));
        }
        o.closed = true;
        Ok(PosCloseResult { result: true })
    }

    fn outpay(&self, s: &mut State, req: Outpay) -> Result<protopay_engine::wire::OutboundView, Refusal> {
        if !s.books.protocols.contains_key(&req.trans_no) {
            return Err(not_found(Missing::Protocol));
        }
        self.check_out_req_no(&req.out_req_no)?;
        validate::positive("amount", req.amount).map_err(|e| refuse("EP10003", e.to_string()))?;
        validate::bank_cnaps(&req.bank_cnaps, validate::CnapsCheck::DigitsOnly)
            .map_err(|e| refuse("EP10003", e.to_string()))?;
        if req.bank_acc_name.expose().trim().is_empty() || req.bank_acc_num.expose().trim().is_empty() {
            return Err(refuse("EP10003", "payee name and account are required"));
        }
        if !req.out_type.is_known() || req.out_notify_url.trim().is_empty() {
            return Err(refuse("EP10003", "outType and outNotifyUrl are required"));
        }
        if s.books.inbound.contains_key(&req.out_req_no) {
            return Err(refuse("EP30002", "outReqNo already used"));
        }
        if let Some(first) = s.books.outbound.get(&req.out_req_no).and_then(|v| v.first())
            && !s.faults.no_dedupe
        {
            return if first.request == req {
                Ok(first.view(&self.config.app_id))
            } else {
                Err(refuse("EP30002", "outReqNo already used with other parameters"))
            };
        }
        let p = s.books.protocols.get_mut(&req.trans_no).ok_or(not_found(Missing::Protocol))?;
        p.balances.reserve(req.amount).map_err(|_| refuse("EP30001", "余额不足 (insufficient balance)"))?;
        let n = self.next_number(s);
        let order = SimOutbound {
            request: req,
            pay_order_no: format!("Q{n:010}"),
            status: PayStatus::Processing,
            create_time: wire_time(self.now(), self.zone),
            finish_time: None,
        };
        let view = order.view(&self.config.app_id);
        let key = order.request.out_req_no.clone();
        *s.stats.payouts.entry(key.clone()).or_insert(0) += 1;
        s.books.outbound.entry(key.clone()).or_default().push(order);
        if self.config.auto {
            let ok = s.rng.unit() >= self.config.auto_failure_rate;
            self.schedule(s, Action::Settle(key, ok));
        }
        Ok(view)
    }

    // ---- controls ------------------------------------------------------------------------

    /// The payer pays (`SUCCESS`) or the payment fails (`FAILURE`). Works on a closed POS
    /// code too: a payer may have paid just before the close.
    pub fn pay(&self, out_req_no: &str, success: bool) -> Result<(), SimError> {
        let mut s = self.lock();
        self.do_pay(&mut s, out_req_no, success)?;
        drop(s);
        self.wake.notify_one();
        Ok(())
    }

    fn do_pay(&self, s: &mut State, out_req_no: &str, success: bool) -> Result<(), SimError> {
        let now = wire_time(self.now(), self.zone);
        let o = s.books.inbound.get_mut(out_req_no).ok_or_else(|| SimError::UnknownOrder(out_req_no.into()))?;
        if matches!(o.status, PayStatus::Success | PayStatus::Failure) {
            return Err(SimError::InvalidState(out_req_no.into(), "be paid"));
        }
        if success {
            let p = s.books.protocols.get_mut(&o.request.trans_no).ok_or(SimError::Books(BooksError::Overflow))?;
            p.balances.paid(o.request.amount)?;
        }
        o.status = if success { PayStatus::Success } else { PayStatus::Failure };
        o.finish_time = Some(now);
        let (url, body) = (o.request.out_success_notify_url.clone(), o.view(&self.config.app_id));
        self.enqueue(s, url, &body);
        Ok(())
    }

    /// Paid-in money arrives in the protocol's available balance.
    pub fn arrive(&self, out_req_no: &str) -> Result<(), SimError> {
        let mut s = self.lock();
        self.do_arrive(&mut s, out_req_no)?;
        drop(s);
        self.wake.notify_one();
        Ok(())
    }

    fn do_arrive(&self, s: &mut State, out_req_no: &str) -> Result<(), SimError> {
        let now = wire_time(self.now(), self.zone);
        let o = s.books.inbound.get_mut(out_req_no).ok_or_else(|| SimError::UnknownOrder(out_req_no.into()))?;
        if o.status != PayStatus::Success || o.arrived {
            return Err(SimError::InvalidState(out_req_no.into(), "arrive"));
        }
        let p = s.books.protocols.get_mut(&o.request.trans_no).ok_or(SimError::Books(BooksError::Overflow))?;
        p.balances.arrived(o.request.amount)?;
        o.arrived = true;
        o.arrive_time = Some(now);
        if let Some(url) = o.request.out_arrived_notify_url.clone() {
            let body = o.view(&self.config.app_id);
            self.enqueue(s, url, &body);
        }
        Ok(())
    }

    /// A payout settles: `SUCCESS` (money out) or `FAILURE` (back to available). Every payout
    /// of the `outReqNo` that is still processing settles (more than one only in no-dedupe mode).
    pub fn settle(&self, out_req_no: &str, success: bool) -> Result<(), SimError> {
        let mut s = self.lock();
        self.do_settle(&mut s, out_req_no, success)?;
        drop(s);
        self.wake.notify_one();
        Ok(())
    }

    fn do_settle(&self, s: &mut State, out_req_no: &str, success: bool) -> Result<(), SimError> {
        let now = wire_time(self.now(), self.zone);
        let app_id = self.config.app_id.clone();
        let payouts = s.books.outbound.get_mut(out_req_no).ok_or_else(|| SimError::UnknownOrder(out_req_no.into()))?;
        let mut callbacks = Vec::new();
        for o in payouts.iter_mut().filter(|o| o.status == PayStatus::Processing) {
            let p = s.books.protocols.get_mut(&o.request.trans_no).ok_or(SimError::Books(BooksError::Overflow))?;
            p.balances.settle(o.request.amount, success)?;
            o.status = if success { PayStatus::Success } else { PayStatus::Failure };
            o.finish_time = Some(now);
            callbacks.push((o.request.out_notify_url.clone(), o.view(&app_id)));
        }
        if callbacks.is_empty() {
            return Err(SimError::InvalidState(out_req_no.into(), "settle"));
        }
        for (url, view) in callbacks {
            self.enqueue(s, url, &view);
        }
        Ok(())
    }

    // ---- the seeded schedule -------------------------------------------------------------

    fn schedule(&self, s: &mut State, action: Action) {
        let (lo, hi) = self.config.auto_delay_ms;
        let delay = s.rng.range(lo, hi);
        let at = self.now() + chrono::Duration::milliseconds(i64::try_from(delay).unwrap_or(i64::MAX));
        let n = self.next_number(s);
        s.timers.push((at, n, action));
    }

    /// Run every scheduled step that is due (auto mode).
    pub fn tick(&self) {
        let now = self.now();
        let mut s = self.lock();
        s.timers.sort_by_key(|(at, n, _)| (*at, *n));
        let due = s.timers.iter().take_while(|(at, _, _)| *at <= now).count();
        let fired: Vec<Action> = s.timers.drain(..due).map(|(_, _, a)| a).collect();
        for action in fired {
            // A step that no longer applies (the order was moved by hand) is skipped.
            let _ = match action {
                Action::Processing(key) => {
                    if let Some(o) = s.books.inbound.get_mut(&key).filter(|o| o.status == PayStatus::Unpaid) {
                        o.status = PayStatus::Processing;
                    }
                    let ok = s.rng.unit() >= self.config.auto_failure_rate;
                    self.schedule(&mut s, Action::Pay(key, ok));
                    Ok(())
                }
                Action::Pay(key, ok) => {
                    let r = self.do_pay(&mut s, &key, ok);
                    if ok && r.is_ok() {
                        self.schedule(&mut s, Action::Arrive(key));
                    }
                    r
                }
                Action::Arrive(key) => self.do_arrive(&mut s, &key),
                Action::Settle(key, ok) => self.do_settle(&mut s, &key, ok),
            };
        }
    }

    // ---- callbacks -----------------------------------------------------------------------

    fn enqueue<T: Serialize>(&self, s: &mut State, url: String, view: &T) {
        let data = serde_json::to_string(view).unwrap_or_default();
        let timestamp = format_timestamp(self.now(), self.zone);
        let body = Envelope::reply(&self.config.app_id, CODE_OK, MSG_OK, data, timestamp, &self.config.key)
            .to_json()
            .into_bytes();
        let State { faults, rng, .. } = &mut *s;
        if faults.drop_callback.fire(rng) {
            s.stats.callbacks_dropped += 1;
            return;
        }
        let mut at = self.now();
        let hold = chrono::Duration::milliseconds(i64::try_from(faults.delay_ms).unwrap_or(0));
        // Both hold the callback back: "delayed" is about lateness, "reordered" about later
        // callbacks overtaking it; `|` evaluates both so each fault's one-shots count down.
        if faults.delay_callback.fire(rng) | faults.reorder_callback.fire(rng) {
            at += hold;
        }
        let copies = if faults.duplicate_callback.fire(rng) { 2 } else { 1 };
        for _ in 0..copies {
            let id = self.next_number(s);
            s.outbox.push(Delivery { id, url: url.clone(), body: body.clone(), attempt: 0, next_at: at });
        }
    }

    /// When the next callback or scheduled step is due.
    pub fn next_wakeup(&self) -> Option<DateTime<Utc>> {
        let s = self.lock();
        let d = s.outbox.iter().map(|d| d.next_at).min();
        let t = s.timers.iter().map(|(at, _, _)| *at).min();
        d.into_iter().chain(t).min()
    }

    /// Callbacks waiting (including retries).
    pub fn pending_callbacks(&self) -> usize {
        self.lock().outbox.len()
    }

    /// Deliver every callback that is due, one after another, retrying failures on the
    /// configured schedule. Returns how many were attempted.
    pub async fn deliver_due(&self, sink: &dyn crate::CallbackSink) -> usize {
        let now = self.now();
        let due: Vec<Delivery> = {
            let mut s = self.lock();
            s.outbox.sort_by_key(|d| (d.next_at, d.id));
            let n = s.outbox.iter().take_while(|d| d.next_at <= now).count();
            s.outbox.drain(..n).collect()
        };
        let attempted = due.len();
        for mut d in due {
            let answer = sink.deliver(&d.url, d.body.clone()).await;
            let acked = answer.is_some_and(|(status, body)| crate::is_ack(status, &body));
            let mut s = self.lock();
            s.stats.callbacks_sent += 1;
            if acked {
                s.stats.callbacks_acknowledged += 1;
                continue;
            }
            match self.config.callback_retry_ms.get(d.attempt) {
                Some(wait) => {
                    d.attempt += 1;
                    d.next_at = self.now() + chrono::Duration::milliseconds(i64::try_from(*wait).unwrap_or(i64::MAX));
                    s.outbox.push(d);
                }
                None => s.stats.callbacks_abandoned += 1,
            }
        }
        attempted
    }

    /// Run the schedule and deliver callbacks in the background until the handle is dropped
    /// or stopped.
    pub fn spawn(&self, sink: Arc<dyn crate::CallbackSink>) -> Background {
        let sim = self.clone();
        let stop = Arc::new(Notify::new());
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            loop {
                sim.tick();
                sim.deliver_due(sink.as_ref()).await;
                let idle = std::time::Duration::from_millis(250);
                let wait = sim
                    .next_wakeup()
                    .map(|at| (at - sim.now()).to_std().unwrap_or(std::time::Duration::ZERO).min(idle))
                    .unwrap_or(idle);
                tokio::select! {
                    biased;
                    _ = stopped.notified() => break,
                    _ = sim.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        });
        Background { stop, task: Some(task) }
    }
}

/// The background schedule and delivery loop.
#[derive(Debug)]
pub struct Background {
    stop: Arc<Notify>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Background {
    /// Stop and wait for it.
    pub async fn stop(mut self) {
        self.stop.notify_one();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
