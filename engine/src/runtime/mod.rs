//! The [`Engine`] a host embeds: commands, callback handling, the poller and the event feed,
//! all funnelled into one commit path ([`Engine::commit_step`]) around the pure [`apply`].

mod callback;
mod clock;
mod commands;
mod config;
mod feed;
mod poller;
mod schedule;

pub use callback::CallbackReply;
pub use clock::Clock;
pub use commands::{NewInbound, NewOutbound, NewProtocol, Reconciliation};
pub use config::{Config, PollPolicy, ReplyStyle, Timeouts};
pub use feed::Subscription;
pub use poller::{PollReport, PollerHandle};
pub use schedule::next_poll;

use crate::domain::{Order, Refusal, Status};
use crate::event::{Event, EventKind};
use crate::ledger;
use crate::observation::{News, Observation, Source};
use crate::storage::{Batch, Put, Storage, Versioned};
use crate::transport::Transport;
use crate::wire::{Call, Envelope, format_timestamp};
use crate::{Error, Result, apply};
use chrono::{DateTime, FixedOffset, Utc};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, watch};

/// How many times a commit that lost an optimistic-concurrency race is re-read and retried.
const CONFLICT_RETRIES: usize = 32;

/// The engine. Cheap to clone; every clone is the same engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    zone: FixedOffset,
    storage: Arc<dyn Storage>,
    transport: Arc<dyn Transport>,
    clock: Clock,
    /// The last event `seq` committed, for live subscriptions.
    last_seq: watch::Sender<u64>,
    /// Wakes the poller when a poll was moved forward.
    wake_poller: Notify,
    /// Last time a failed callback moved each order's poll forward.
    hints: Mutex<HashMap<String, DateTime<Utc>>>,
    /// Per-protocol turns for ledger-touching steps (see `step_with_retries`).
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// For generated `outReqNo`s and attempt ids.
    id_seed: u64,
    id_counter: AtomicU64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("app_id", &self.inner.config.app_id).finish_non_exhaustive()
    }
}

/// Builds an [`Engine`] from a config, a storage and a transport.
pub struct EngineBuilder {
    config: Config,
    storage: Option<Arc<dyn Storage>>,
    transport: Option<Arc<dyn Transport>>,
    clock: Option<Clock>,
}

impl EngineBuilder {
    /// The storage (e.g. [`MemoryStorage`](crate::storage::MemoryStorage) or sled).
    pub fn storage(mut self, storage: impl Storage) -> Self {
        self.storage = Some(Arc::new(storage));
        self
    }

    /// A storage already shared elsewhere.
    pub fn shared_storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = Some(storage);
        self
    }

    /// The transport.
    pub fn transport(mut self, transport: impl Transport) -> Self {
        self.transport = Some(Arc::new(transport));
        self
    }

    /// A transport already shared elsewhere.
    pub fn shared_transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// The clock (default: the system's, advancing with tokio's clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Check the config and build.
    pub async fn build(self) -> Result<Engine> {
        self.config.validate()?;
        let zone = self.config.zone()?;
        let storage = self.storage.ok_or(Error::InvalidConfig { field: "storage", reason: "is required" })?;
        let transport = self.transport.ok_or(Error::InvalidConfig { field: "transport", reason: "is required" })?;
        let last = storage.last_seq().await?;
        let clock = self.clock.unwrap_or_else(Clock::system);
        let mut h = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&(std::process::id(), Utc::now().timestamp_nanos_opt()), &mut h);
        Ok(Engine {
            inner: Arc::new(Inner {
                config: self.config,
                zone,
                storage,
                transport,
                clock,
                last_seq: watch::Sender::new(last),
                wake_poller: Notify::new(),
                hints: Mutex::new(HashMap::new()),
                turns: Mutex::new(HashMap::new()),
                id_seed: std::hash::Hasher::finish(&h),
                id_counter: AtomicU64::new(0),
            }),
        })
    }
}

impl Engine {
    /// Start building an engine.
    pub fn builder(config: Config) -> EngineBuilder {
        EngineBuilder { config, storage: None, transport: None, clock: None }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The engine's "now".
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    fn storage(&self) -> &dyn Storage {
        self.inner.storage.as_ref()
    }

    /// A fresh `outReqNo`: our `appId`, a millisecond timestamp (so they sort by creation),
    /// and a per-process unique suffix.
    pub fn generate_out_req_no(&self) -> String {
        let n = self.inner.id_counter.fetch_add(1, Ordering::Relaxed);
        let suffix = (self.inner.id_seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15))) as u32;
        format!("{}{:013}{:08x}{:04x}", self.inner.config.app_id, self.now().timestamp_millis(), suffix, n & 0xffff)
    }

    /// Sign, send, verify and decode one call.
    async fn call<C: Call>(&self, request: &C) -> Result<C::Reply> {
        let config = &self.inner.config;
        let timestamp = format_timestamp(self.now(), self.inner.zone);
        let envelope = Envelope::for_call(&config.app_id, request, timestamp, &config.key)?;
        let body = self.inner.transport.call(C::ENDPOINT, &envelope).await?;
        let reply = Envelope::open(&body, &config.app_id, &config.key)?;
        Envelope::decode_data(reply.reply_data()?)
    }

    fn event(&self, order: Option<&Order>, source: Source, kind: EventKind) -> Event {
        Event {
            seq: 0,
            at: self.now(),
            trans_no: order.map(|o| o.trans_no().to_owned()),
            out_req_no: order.map(|o| o.out_req_no().to_owned()),
            source,
            kind,
        }
    }

    /// Commit a batch and wake live subscribers.
    async fn commit(&self, batch: Batch) -> Result<()> {
        let last = self.storage().commit(batch).await?;
        self.inner.last_seq.send_if_modified(|seen| {
            let newer = last > *seen;
            *seen = (*seen).max(last);
            newer
        });
        Ok(())
    }

    /// The one commit path for orders. Applies `news` (if any) to the order as read at
    /// `current.version`, lets `bookkeeping` adjust retry counters and add events, then
    /// commits the order, its protocol's ledger movement, the events and the next poll time
    /// in one batch. Fails with `Conflict` if the order or protocol moved meanwhile.
    async fn commit_step(
        &self,
        current: &Versioned<Order>,
        source: Source,
        news: Option<News>,
        bookkeeping: impl FnOnce(&mut Order, &mut Vec<EventKind>),
    ) -> Result<Order> {
        let (mut next, movement, mut kinds) = match news {
            Some(news) => {
                let outcome = apply(&current.value, &Observation::new(source, news));
                (outcome.order, outcome.movement, outcome.events)
            }
            None => (current.value.clone(), None, Vec::new()),
        };
        if ledger::slot_of(&next) != ledger::slot_of(&current.value) || next.status() != current.value.status() {
            let a = next.attempts_mut();
            a.quiet_polls = 0;
            a.needs_attention = false;
        }
        bookkeeping(&mut next, &mut kinds);
        if next == current.value && kinds.is_empty() {
            return Ok(next);
        }
        let now = self.now();
        let mut batch = Batch::default();
        if let Some(m) = movement {
            let trans_no = next.trans_no();
            let protocol = self
                .storage()
                .protocol(trans_no)
                .await?
                .ok_or_else(|| Error::UnknownProtocol { trans_no: trans_no.to_owned() })?;
            let mut updated = protocol.value;
            updated.ledger.apply(&m)?;
            batch.protocols.push(Put { expected: Some(protocol.version), value: updated });
        }
        batch.events = kinds.into_iter().map(|k| self.event(Some(&next), source, k)).collect();
        batch.schedule.push((next.out_req_no().to_owned(), next_poll(&next, now, &self.inner.config.poll)));
        batch.orders.push(Put { expected: Some(current.version), value: next.clone() });
        self.commit(batch).await?;
        if next.status() != current.value.status() {
            tracing::info!(out_req_no = next.out_req_no(), from = %current.value.status(), to = %next.status(), %source, "order moved");
        }
        self.debug_check_ledger(next.trans_no()).await;
        Ok(next)
    }

    /// Apply news to an order, re-reading and retrying when a concurrent commit wins a race.
    async fn observe(&self, out_req_no: &str, source: Source, news: News) -> Result<Order> {
        self.step_with_retries(out_req_no, source, Some(news), |_, _| {}).await
    }

    /// [`Engine::commit_step`] on the order as it is now, re-read and retried while concurrent
    /// commits win races. Steps on one protocol take turns within this process (its ledger
    /// record is in every money-moving commit), so a burst of callbacks on one hot protocol
    /// queues instead of spending its retries; across processes the versions still decide.
    async fn step_with_retries(
        &self,
        out_req_no: &str,
        source: Source,
        news: Option<News>,
        bookkeeping: impl Fn(&mut Order, &mut Vec<EventKind>),
    ) -> Result<Order> {
        let trans_no = self.stored_order(out_req_no).await?.value.trans_no().to_owned();
        let _turn = self.protocol_turn(&trans_no).await;
        for _ in 0..CONFLICT_RETRIES {
            let current = self.stored_order(out_req_no).await?;
            match self.commit_step(&current, source, news.clone(), &bookkeeping).await {
                Err(Error::Conflict) => continue,
                other => return other,
            }
        }
        Err(Error::Conflict)
    }

    /// This process's turn on a protocol's ledger.
    async fn protocol_turn(&self, trans_no: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut turns = self.inner.turns.lock().unwrap_or_else(|p| p.into_inner());
            if turns.len() > 4_096 {
                // Forget protocols nobody is waiting on.
                turns.retain(|_, l| Arc::strong_count(l) > 1);
            }
            turns.entry(trans_no.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }

    async fn stored_order(&self, out_req_no: &str) -> Result<Versioned<Order>> {
        self.storage().order(out_req_no).await?.ok_or_else(|| Error::UnknownOrder { out_req_no: out_req_no.to_owned() })
    }

    /// Send an order's call (`prepay`/`outpay`), once, as decided on `current`.
    ///
    /// The order is marked `Submitted` and the attempt counted durably *before* sending; if
    /// that commit loses a race, someone else is handling the order and nothing is sent.
    /// A definite reply is applied; an ambiguous failure leaves the order `Submitted` for the
    /// poller, which queries before it would ever send again.
    async fn submit(&self, current: &Versioned<Order>) -> Result<Order> {
        let now = self.now();
        let order = self
            .commit_step(current, Source::Engine, Some(News::Sending), |next, _| {
                let a = next.attempts_mut();
                a.submissions += 1;
                a.last_submitted_at = Some(now);
                a.quiet_polls = 0;
            })
            .await?;
        let reply = match &order {
            Order::Inbound(o) => self.call(&o.request).await.map(|v| News::Inbound(Box::new(v))),
            Order::Outbound(o) => self.call(&o.request).await.map(|v| News::Outbound(Box::new(v))),
        };
        let key = order.out_req_no().to_owned();
        let refusal = match &reply {
            Err(Error::Remote { code, msg }) => Some(Refusal { code: code.clone(), msg: msg.clone() }),
            Err(Error::NotFound(m)) => Some(Refusal { code: m.code().to_owned(), msg: m.to_string() }),
            _ => None,
        };
        match (reply, refusal) {
            (Ok(news), _) => self.observe(&key, Source::Reply, news).await,
            (_, Some(refusal)) if order.attempts().submissions > 1 => {
                // A resend refused: the first send may have landed after all. Never fail it
                // on our own; a person decides.
                tracing::warn!(out_req_no = %key, code = %refusal.code, "resend refused; needs attention");
                self.flag_attention(&key).await
            }
            (_, Some(refusal)) => self.observe(&key, Source::Reply, News::Refused(refusal)).await,
            (Err(e), None) => {
                tracing::warn!(out_req_no = %key, error = %e, "outcome unknown; the poller will query");
                Ok(order)
            }
        }
    }

    /// Raise `NeedsAttention` on an order (once) and keep polling it slowly.
    async fn flag_attention(&self, out_req_no: &str) -> Result<Order> {
        self.step_with_retries(out_req_no, Source::Engine, None, |next, kinds| {
            let a = next.attempts_mut();
            if !a.needs_attention {
                a.needs_attention = true;
                kinds.push(EventKind::Anomaly(crate::Anomaly::NeedsAttention { submissions: a.submissions }));
            }
        })
        .await
    }

    /// In debug builds, check the protocol's ledger against its orders after every change:
    /// a broken invariant is a bug, and stops the test that found it.
    async fn debug_check_ledger(&self, trans_no: &str) {
        if !cfg!(debug_assertions) {
            return;
        }
        let storage = self.storage();
        let (Ok(Some(before)), Ok(orders), Ok(Some(after))) =
            (storage.protocol(trans_no).await, storage.orders_of(trans_no).await, storage.protocol(trans_no).await)
        else {
            return;
        };
        // Only a consistent read proves anything: every money move bumps the protocol.
        if before.version == after.version {
            let orders: Vec<Order> = orders.into_iter().map(|o| o.value).collect();
            let checked = ledger::check(&before.value.ledger, orders.iter());
            debug_assert!(checked.is_ok(), "ledger invariant broken for {trans_no}: {checked:?}");
        }
    }

    /// Whether an order's outcome is still unknown to us after we sent it.
    fn awaiting_outcome(order: &Order) -> bool {
        order.status() == Status::Submitted
    }
}
