//! The payment system's eight calls: signature checks, error codes, the books.

use super::{Action, Handled, Received, Sim, State};
use crate::books::{Balances, CNAPS, SimInbound, SimOutbound, SimProtocol, wire_time};
use crate::faults::Aimed;
use protopay_engine::wire::{
    CODE_OK, CashierType, ChannelType, CnapsEntry, CreateProtocol, Endpoint, Envelope, FindProtocol, Inquery, MSG_OK,
    Missing, Outpay, Outquery, PayStatus, PosClose, PosCloseResult, Prepay, QueryBankCnaps, format_timestamp, validate,
};
use serde::Serialize;

/// How many calls the request log keeps.
const RECEIVED_KEPT: usize = 100_000;

/// A refusal to answer with a non-`0000` code.
struct Refusal(&'static str, String);

fn refuse(code: &'static str, msg: impl Into<String>) -> Refusal {
    Refusal(code, msg.into())
}

fn not_found(m: Missing) -> Refusal {
    Refusal(m.code(), m.to_string())
}

impl Sim {
    /// Whether the next call to `name` arrives late, and by how much (the `late_arrival`
    /// fault, or one aimed at it).
    pub fn draw_late_arrival(&self, name: &str) -> Option<std::time::Duration> {
        let mut s = self.lock();
        if let Some(Aimed::LateArrival(ms)) = Self::take_aimed(&mut s, name, true) {
            return Some(std::time::Duration::from_millis(ms));
        }
        let State { faults, rng, .. } = &mut *s;
        let max = faults.late_ms;
        faults
            .late_arrival
            .fire(rng)
            .then(|| std::time::Duration::from_millis(rng.range(0, max)))
    }

    /// Deliver a call `delay` from now, as a network that held it would (its sender has
    /// given up on it). Until it lands, [`Sim::in_flight`] says so for the order it names.
    pub fn deliver_late(&self, endpoint: Endpoint, body: String, delay: std::time::Duration) {
        let key = Envelope::decode(body.as_bytes()).ok().and_then(|e| e.names_order());
        if let Some(k) = &key {
            *self.lock().in_flight.entry(k.clone()).or_default() += 1;
        }
        let sim = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = sim.handle(endpoint.name(), body.as_bytes());
            if let Some(k) = key {
                let mut s = sim.lock();
                if let Some(n) = s.in_flight.get_mut(&k) {
                    *n -= 1;
                    if *n == 0 {
                        s.in_flight.remove(&k);
                    }
                }
            }
        });
    }

    /// Whether a call naming `out_req_no` is still on its way (delivered late): what a
    /// person can only know by asking every sender and waiting out the network, and a test
    /// can simply look up.
    pub fn in_flight(&self, out_req_no: &str) -> bool {
        self.lock().in_flight.contains_key(out_req_no)
    }

    /// Handle one call to `/api/protocol/{name}` with a request body.
    pub fn handle(&self, name: &str, body: &[u8]) -> Handled {
        let mut s = self.lock();
        s.stats.requests += 1;
        let aimed = Self::take_aimed(&mut s, name, false);
        let State { faults, rng, .. } = &mut *s;
        let refused = aimed == Some(Aimed::ConnectionRefused) || faults.refuse_connection.fire(rng);
        let failed = !refused && (aimed == Some(Aimed::ServerError) || faults.http_500.fire(rng));
        let out_req_no = Envelope::decode(body).ok().and_then(|e| e.names_order());
        let at = self.now();
        if s.received.len() >= RECEIVED_KEPT {
            // A long-running staging simulator keeps the recent past only.
            s.received.drain(..RECEIVED_KEPT / 10);
        }
        s.received.push(Received {
            at,
            endpoint: name.to_owned(),
            out_req_no,
            handled: !refused && !failed,
        });
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
        env.verify(&self.config.key)
            .map_err(|_| refuse("EP10001", "签名错误 (bad sign)"))?;
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
                let p = s
                    .books
                    .protocols
                    .get(&req.trans_no)
                    .ok_or(not_found(Missing::Protocol))?;
                json(&p.view(&self.config.app_id))
            }
            Endpoint::Prepay => json(&self.prepay(s, data(&env)?)?),
            Endpoint::Posclose => json(&self.posclose(s, data(&env)?)?),
            Endpoint::Inquery => {
                let req: Inquery = data(&env)?;
                let o = s
                    .books
                    .inbound
                    .get(&req.out_req_no)
                    .ok_or(not_found(Missing::InboundOrder))?;
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
                    .map(|(name, code)| CnapsEntry {
                        bank_name: (*name).into(),
                        bank_cnaps: (*code).into(),
                    })
                    .collect();
                json(&found)
            }
        }
    }

    pub(super) fn next_number(&self, s: &mut State) -> u64 {
        s.counter += 1;
        s.counter
    }

    fn create(&self, s: &mut State, req: CreateProtocol) -> Result<protopay_engine::wire::RemoteProtocol, Refusal> {
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
        let cashier_type = s
            .books
            .protocols
            .get(&req.trans_no)
            .ok_or(not_found(Missing::Protocol))?
            .cashier_type
            .clone();
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
        let o = s
            .books
            .inbound
            .get_mut(&req.out_req_no)
            .ok_or(not_found(Missing::InboundOrder))?;
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
        let p = s
            .books
            .protocols
            .get_mut(&req.trans_no)
            .ok_or(not_found(Missing::Protocol))?;
        p.balances
            .reserve(req.amount)
            .map_err(|_| refuse("EP30001", "余额不足 (insufficient balance)"))?;
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
}
