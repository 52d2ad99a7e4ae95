//! A scripted transport for engine tests (the simulator is a separate crate): each endpoint
//! answers from a queue of scripted steps, or from a default, and every call is recorded.

#![allow(dead_code)]

use chrono::{TimeZone, Utc};
use protopay_engine::storage::{Batch, MemoryStorage, Storage};
use protopay_engine::testing::{Hooks, Injected, Intercepted};
use protopay_engine::wire::{CODE_OK, CallbackKind, Endpoint, Envelope, MSG_OK};
use protopay_engine::{
    Amount, Clock, Config, Engine, Md5Key, NewInbound, NewProtocol, Order, Transport, TransportError,
};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

pub(crate) const APP: &str = "APP001";
pub(crate) const KEY: &str = "k3y";
pub(crate) const TS: &str = "20261126120000123";

/// One scripted answer.
#[derive(Clone, Debug)]
pub(crate) enum Step {
    /// `0000` with this data.
    Data(Value),
    /// A non-`0000` code.
    Code(&'static str, &'static str),
    /// A transport failure.
    Fail(TransportError),
    /// A reply whose sign is wrong.
    Forged(Value),
}

#[derive(Default)]
struct State {
    queue: HashMap<Endpoint, VecDeque<Step>>,
    defaults: HashMap<Endpoint, Step>,
    calls: Vec<(Endpoint, Value)>,
    /// How long every call takes before it is answered.
    delay: std::time::Duration,
}

/// The scripted transport; clones share the script.
#[derive(Clone, Default)]
pub(crate) struct Scripted {
    state: Arc<Mutex<State>>,
}

impl Scripted {
    pub(crate) fn push(&self, endpoint: Endpoint, step: Step) {
        self.state
            .lock()
            .unwrap()
            .queue
            .entry(endpoint)
            .or_default()
            .push_back(step);
    }

    pub(crate) fn default_for(&self, endpoint: Endpoint, step: Step) {
        self.state.lock().unwrap().defaults.insert(endpoint, step);
    }

    pub(crate) fn calls(&self, endpoint: Endpoint) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .calls
            .iter()
            .filter(|(e, _)| *e == endpoint)
            .map(|(_, d)| d.clone())
            .collect()
    }

    /// Every call takes `delay` (on tokio's clock) before its answer.
    pub(crate) fn delay(&self, delay: std::time::Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    pub(crate) fn count(&self, endpoint: Endpoint) -> usize {
        self.calls(endpoint).len()
    }
}

pub(crate) fn reply_body(code: &str, msg: &str, data: &Value, key: &str) -> Vec<u8> {
    let data = if data.is_null() {
        String::new()
    } else {
        data.to_string()
    };
    Envelope::reply(APP, code, msg, data, TS.into(), &Md5Key::new(key))
        .to_json()
        .into_bytes()
}

#[async_trait::async_trait]
impl Transport for Scripted {
    async fn call(&self, endpoint: Endpoint, request: &Envelope) -> Result<Vec<u8>, TransportError> {
        Envelope::open(request.to_json().as_bytes(), APP, &Md5Key::new(KEY)).expect("engine signs its requests");
        let (step, delay) = {
            let mut s = self.state.lock().unwrap();
            s.calls.push((endpoint, serde_json::from_str(&request.data).unwrap()));
            let next = s.queue.get_mut(&endpoint).and_then(|q| q.pop_front());
            (next.or_else(|| s.defaults.get(&endpoint).cloned()), s.delay)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match step {
            Some(Step::Data(v)) => Ok(reply_body(CODE_OK, MSG_OK, &v, KEY)),
            Some(Step::Code(code, msg)) => Ok(reply_body(code, msg, &Value::Null, KEY)),
            Some(Step::Fail(e)) => Err(e),
            Some(Step::Forged(v)) => Ok(reply_body(CODE_OK, MSG_OK, &v, "not-the-key")),
            None => Err(TransportError::NotDelivered {
                reason: format!("no script for {endpoint:?}"),
            }),
        }
    }
}

pub(crate) fn config() -> Config {
    let mut c = Config::new(
        APP,
        Md5Key::new(KEY),
        "http://pay.invalid",
        "http://host.invalid/notify",
    );
    c.poll.jitter_percent = 0;
    c
}

pub(crate) fn clock() -> Clock {
    Clock::starting_at(Utc.with_ymd_and_hms(2026, 11, 26, 4, 0, 0).unwrap())
}

pub(crate) async fn engine_on(storage: MemoryStorage, transport: Scripted) -> Engine {
    Engine::builder(config())
        .storage(storage)
        .transport(transport)
        .clock(clock())
        .build()
        .await
        .unwrap()
}

pub(crate) fn protocol_view(trans_no: &str) -> Value {
    json!({"transNo": trans_no, "appId": APP, "businessId": "B1", "channelType": "LFT", "cashierType": "POS",
           "amount": "0.00", "onpassageAmount": "0.00", "outAmount": "0.00", "createTime": "2026-11-26 12:00:00"})
}

pub(crate) fn inbound_view(trans_no: &str, out_req_no: &str, amount: &str, status: &str, arrived: &str) -> Value {
    json!({"transNo": trans_no, "appId": APP, "channelType": "LFT", "amount": amount, "outReqNo": out_req_no,
           "posCode": "834201", "payOrderNo": format!("P-{out_req_no}"), "payStatus": status, "arrivedStatus": arrived,
           "cardNum": "6222020200112233445"})
}

pub(crate) fn outbound_view(trans_no: &str, out_req_no: &str, amount: &str, status: &str) -> Value {
    json!({"transNo": trans_no, "appId": APP, "amount": amount, "outReqNo": out_req_no,
           "payOrderNo": format!("P-{out_req_no}"), "channelType": "LFT", "outType": "OUT", "payStatus": status})
}

/// A callback body as the payment system would sign it.
pub(crate) fn callback_body(data: &Value) -> Vec<u8> {
    reply_body(CODE_OK, MSG_OK, data, KEY)
}

/// A protocol `T1` with `amount` arrived and available.
pub(crate) async fn funded(engine: &Engine, t: &Scripted, amount: &str) -> String {
    t.push(Endpoint::Create, Step::Data(protocol_view("T1")));
    let p = engine
        .create_protocol(NewProtocol {
            trans_desc: "deal".into(),
            business_id: "B1".into(),
            cashier_type: protopay_engine::wire::CashierType::Pos,
            idempotency_key: None,
        })
        .await
        .unwrap();
    let key = format!("{APP}-in-fund-{}", amount.replace('.', "_"));
    t.push(
        Endpoint::Prepay,
        Step::Data(inbound_view("T1", &key, amount, "UNPAID", "01")),
    );
    let cmd = NewInbound {
        out_req_no: Some(key.clone()),
        ..NewInbound::pos(&p.trans_no, Amount::parse(amount).unwrap())
    };
    engine.prepay(cmd).await.unwrap();
    let reply = engine
        .handle_callback(
            CallbackKind::InboundArrival,
            &callback_body(&inbound_view("T1", &key, amount, "SUCCESS", "02")),
        )
        .await;
    assert!(reply.is_success(), "{reply:?}");
    p.trans_no
}

pub(crate) fn status_of(order: &Order) -> String {
    order.state_label()
}

/// Memory storage with failures on cue (see [`Faults`]).
pub(crate) type Flaky = Intercepted<MemoryStorage, Faults>;

/// Failures on cue: the `n`-th commit from now, every commit while down, and a hook run just
/// before the next commit or the next protocol read (to stage a race).
#[derive(Clone, Default)]
pub(crate) struct Faults {
    fail_in: Arc<Mutex<Option<u32>>>,
    down: Arc<std::sync::atomic::AtomicBool>,
    before_commit: Arc<Mutex<Option<Hook>>>,
    before_protocol: Arc<Mutex<Option<Hook>>>,
}

/// What a hook returns: a boxed future.
pub(crate) type HookFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

type Hook = Box<dyn FnOnce() -> HookFuture + Send>;

impl Faults {
    /// Fail the `n`-th commit from now (1 = the next).
    pub(crate) fn fail_commit(&self, n: u32) {
        *self.fail_in.lock().unwrap() = Some(n);
    }

    /// Every commit fails while down.
    pub(crate) fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// Run `hook` just before the next read of a protocol (to stage a twin's commit there).
    pub(crate) fn before_next_protocol_read(&self, hook: impl FnOnce() -> HookFuture + Send + 'static) {
        *self.before_protocol.lock().unwrap() = Some(Box::new(hook));
    }

    /// Run `hook` just before the next commit.
    pub(crate) fn before_next_commit(&self, hook: impl FnOnce() -> HookFuture + Send + 'static) {
        *self.before_commit.lock().unwrap() = Some(Box::new(hook));
    }
}

#[async_trait::async_trait]
impl Hooks for Faults {
    async fn before_protocol_read(&self, _: &str) {
        let hook = self.before_protocol.lock().unwrap().take();
        if let Some(hook) = hook {
            hook().await;
        }
    }

    async fn before_commit(&self, _: &mut Batch) -> protopay_engine::storage::Result<()> {
        let hook = self.before_commit.lock().unwrap().take();
        if let Some(hook) = hook {
            hook().await;
        }
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Injected("the store is down").into());
        }
        let mut f = self.fail_in.lock().unwrap();
        let now = *f == Some(1);
        *f = f.and_then(|n| n.checked_sub(1)).filter(|n| *n > 0);
        if now {
            return Err(Injected("this commit fails").into());
        }
        Ok(())
    }
}

/// An engine on any storage, with a config and a clock.
pub(crate) async fn engine_with(storage: impl Storage, transport: Scripted, config: Config, clock: Clock) -> Engine {
    Engine::builder(config)
        .storage(storage)
        .transport(transport)
        .clock(clock)
        .build()
        .await
        .unwrap()
}

/// Personal data in fixtures, distinctive enough to search for in anything printed.
pub(crate) const PAYEE: &str = "欧阳娜娜";
/// A payee's account number.
pub(crate) const ACCOUNT: &str = "6222029999888877776";
/// A payer's ID number.
pub(crate) const CERT: &str = "110101199003071234";

/// A payout of `amount` from `trans_no` to the fixture payee.
pub(crate) fn payout(trans_no: &str, key: Option<&str>, amount: &str) -> protopay_engine::NewOutbound {
    protopay_engine::NewOutbound {
        trans_no: trans_no.into(),
        out_req_no: key.map(Into::into),
        amount: Amount::parse(amount).unwrap(),
        out_type: protopay_engine::wire::OutType::Out,
        payee_name: protopay_engine::Sensitive::new(PAYEE),
        payee_account: protopay_engine::Sensitive::new(ACCOUNT),
        bank_name: "中国工商银行北京海淀支行".into(),
        bank_cnaps: "102100000030".into(),
        remark: None,
    }
}

/// Pay out `amount` from `trans_no` as `key`, the payment system accepting it as
/// `PROCESSING` (its reply scripted): the order as the command answers it.
pub(crate) async fn accepted_payout(engine: &Engine, t: &Scripted, trans_no: &str, key: &str, amount: &str) -> Order {
    t.push(
        Endpoint::Outpay,
        Step::Data(outbound_view(trans_no, key, amount, "PROCESSING")),
    );
    engine.outpay(payout(trans_no, Some(key), amount)).await.unwrap()
}

/// A call that may or may not have reached the payment system.
pub(crate) fn maybe() -> Step {
    Step::Fail(TransportError::MaybeDelivered {
        reason: "timeout after sending".into(),
    })
}
