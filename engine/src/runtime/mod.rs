//! The [`Engine`] a host embeds: commands, callback handling, the poller and the event feed.
//!
//! Every change goes through one unit of work ([`transact`]): read with version, [`apply`],
//! move the ledger, record events and the next poll time, commit, retry on conflict — on one
//! protocol's turn. Sending is in [`send`] (the never-pay-twice rules), asking in [`poller`].
//!
//! [`apply`]: crate::apply()

mod callback;
mod check;
mod chores;
mod clock;
mod config;
mod feed;
mod inputs;
mod lease;
pub mod metrics;
mod orders;
mod poller;
mod protocols;
mod reads;
mod schedule;
mod send;
mod transact;

pub use callback::CallbackReply;
pub use check::CheckReport;
pub use chores::Census;
pub use clock::Clock;
pub use config::{Config, PollPolicy, ReplyStyle, Timeouts};
pub use feed::Subscription;
pub use inputs::{Decision, NewInbound, NewOutbound, NewProtocol, Payee};
pub use poller::{PollReport, PollerHandle};
pub use protocols::Reconciliation;
pub use reads::{MAX_PAGE, OrderDetails, Page};
pub use schedule::next_poll;

use crate::domain::Order;
use crate::event::{Event, EventKind};
use crate::observation::Source;
use crate::storage::{Exchange, Message, Storage};
use crate::transport::Transport;
use crate::wire::{Call, Envelope, format_timestamp};
use crate::{Error, Result};
use chrono::{DateTime, FixedOffset, Utc};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, watch};

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
    /// Wakes the poller when a poll was moved sooner.
    wake_poller: Notify,
    /// When the poller plans to look again (`None` while it is looking, or when no poller
    /// runs): an order due before then, announced by another instance, wakes it.
    poller_wakes_at: Mutex<Option<DateTime<Utc>>>,
    /// Last time a failed callback moved each order's poll sooner.
    polled_sooner: Mutex<HashMap<String, DateTime<Utc>>>,
    /// Per-protocol turns for steps (see `transact`).
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The grace rule's monotonic clock (see `send`).
    latest_sends: Mutex<HashMap<String, send::Seen>>,
    /// Orders whose last poll failed, and when they may be polled again (see `poller`).
    backoff: Mutex<HashMap<String, poller::Backoff>>,
    /// Set by [`Engine::shutdown`]: no new work is taken.
    stopping: watch::Sender<bool>,
    /// Every piece of work holds a read guard; shutdown takes the write guard, so it waits
    /// for them all.
    work: Arc<tokio::sync::RwLock<()>>,
    /// For generated `outReqNo`s and attempt ids.
    id_seed: u64,
    /// This instance's name as the owner of its claims on due orders (see `Storage::claim_due`).
    instance: String,
    id_counter: AtomicU64,
    /// Consumers this process served (subscriptions, acknowledgements): whose outbox lag
    /// the metrics report.
    consumers: Mutex<std::collections::BTreeSet<String>>,
    /// Protocols whose last reconciliation here found drift (a gauge).
    drifting: Mutex<std::collections::BTreeSet<String>>,
    /// When this process last called the payment system, and whether it was answered (a
    /// verified reply, refusals included).
    last_call: Mutex<Option<(DateTime<Utc>, bool)>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("app_id", &self.inner.config.app_id)
            .finish_non_exhaustive()
    }
}

/// Builds an [`Engine`] from a config, a storage and a transport.
pub struct EngineBuilder {
    config: Config,
    storage: Option<Arc<dyn Storage>>,
    transport: Option<Arc<dyn Transport>>,
    clock: Option<Clock>,
    id_seed: Option<u64>,
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

    /// The clock (default: the system's wall clock read once, then advanced by tokio's
    /// monotonic clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The seed of generated `outReqNo` suffixes (default: from the process id and the
    /// time, so that processes differ). For simulations that must replay exactly; two
    /// engines running at once must never share one.
    pub fn id_seed(mut self, seed: u64) -> Self {
        self.id_seed = Some(seed);
        self
    }

    /// Check the config and build.
    ///
    /// The engine's clock never starts behind the newest time already stored (the last
    /// event's): a host whose wall clock stepped back across a restart would otherwise see
    /// every scheduled poll pushed into the future by the size of the step.
    pub async fn build(self) -> Result<Engine> {
        self.config.validate()?;
        let zone = self.config.zone()?;
        let storage = self.storage.ok_or(Error::InvalidConfig {
            field: "storage",
            reason: "is required",
        })?;
        let transport = self.transport.ok_or(Error::InvalidConfig {
            field: "transport",
            reason: "is required",
        })?;
        let last = storage.last_seq().await?;
        let newest = storage.events_before(u64::MAX, 1).await?.first().map(|e| e.at);
        let clock = self.clock.unwrap_or_else(Clock::system);
        let clock = newest.map_or(clock, |t| clock.not_before(t));
        let id_seed = self.id_seed.unwrap_or_else(|| {
            let mut h = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(&(std::process::id(), Utc::now().timestamp_nanos_opt()), &mut h);
            std::hash::Hasher::finish(&h)
        });
        let engine = Engine {
            inner: Arc::new(Inner {
                config: self.config,
                zone,
                storage,
                transport,
                clock,
                last_seq: watch::Sender::new(last),
                wake_poller: Notify::new(),
                poller_wakes_at: Mutex::default(),
                polled_sooner: Mutex::default(),
                turns: Mutex::default(),
                latest_sends: Mutex::default(),
                backoff: Mutex::default(),
                stopping: watch::Sender::new(false),
                work: Arc::default(),
                id_seed,
                instance: format!("{id_seed:016x}"),
                id_counter: AtomicU64::new(0),
                consumers: Mutex::default(),
                drifting: Mutex::default(),
                last_call: Mutex::default(),
            }),
        };
        if let Some(announcements) = engine.inner.storage.commits_elsewhere() {
            tokio::spawn(follow_remote_commits(Arc::downgrade(&engine.inner), announcements));
        }
        Ok(engine)
    }
}

/// Act on what other instances' commits on a shared store announce, and only on what concerns
/// this one: events appended wake the event subscriptions, if any waits; an order due before
/// the poller planned to look wakes the poller. So an idle instance costs the database
/// nothing however many others run. Ends with the engine or its shutdown. Holds the engine
/// weakly, so that it never keeps one alive.
async fn follow_remote_commits(engine: std::sync::Weak<Inner>, announcements: Arc<crate::storage::Announcements>) {
    loop {
        let mut stopping = match engine.upgrade() {
            Some(inner) if !*inner.stopping.borrow() => inner.stopping.subscribe(),
            _ => return,
        };
        let announced = tokio::select! {
            _ = stopping.changed() => return,
            announced = announcements.next() => announced,
        };
        let Some(inner) = engine.upgrade() else { return };
        if let Some(due) = announced.soonest_due {
            let planned = *inner.poller_wakes_at.lock().unwrap_or_else(|p| p.into_inner());
            if planned.is_none_or(|wake| due < wake) {
                inner.wake_poller.notify_one();
            }
        }
        if announced.events
            && inner.last_seq.receiver_count() > 0
            && let Ok(last) = inner.storage.last_seq().await
        {
            inner.last_seq.send_if_modified(|seen| {
                let newer = last > *seen;
                *seen = (*seen).max(last);
                newer
            });
        }
    }
}

/// Proof that a piece of work is registered with the engine: [`Engine::shutdown`] waits
/// for every one to be dropped.
struct Working(#[allow(dead_code)] tokio::sync::OwnedRwLockReadGuard<()>);

impl Engine {
    /// Start building an engine.
    pub fn builder(config: Config) -> EngineBuilder {
        EngineBuilder {
            config,
            storage: None,
            transport: None,
            clock: None,
            id_seed: None,
        }
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

    /// Register a piece of work, or refuse it once shutdown has begun.
    fn working(&self) -> Result<Working> {
        if *self.inner.stopping.borrow() {
            return Err(Error::Shutdown);
        }
        self.inner
            .work
            .clone()
            .try_read_owned()
            .map(Working)
            .map_err(|_| Error::Shutdown)
    }

    /// Stop the engine: refuse new commands and callbacks (they get [`Error::Shutdown`]),
    /// stop every poller and subscription, wait for in-flight commands, callbacks and polls
    /// to finish their commits, then close the storage (releasing, for sled, its directory).
    /// When this returns, a new engine may open the same store. Idempotent.
    pub async fn shutdown(&self) -> Result<()> {
        self.inner.stopping.send_replace(true);
        self.inner.wake_poller.notify_waiters();
        // Subscriptions wait on the seq channel; closing it wakes them with `Shutdown`.
        self.inner.last_seq.send_modify(|_| {});
        let _all_done = self.inner.work.write().await;
        // Hand this instance's claims over before going: on a shared store the others take
        // its due orders now rather than after the leases run out.
        if let Err(e) = self.storage().release_all(&self.inner.instance).await {
            tracing::warn!(error = %e, "could not release this instance's claims; they run out");
        }
        Ok(self.storage().close().await?)
    }

    /// Whether [`Engine::shutdown`] has begun.
    pub fn is_shut_down(&self) -> bool {
        *self.inner.stopping.borrow()
    }

    /// A fresh `outReqNo`: our `appId`, a millisecond timestamp (so they sort by creation),
    /// and a per-process unique suffix — [`crate::wire::validate::GENERATED_SUFFIX`]
    /// characters in all after the `appId`.
    pub fn generate_out_req_no(&self) -> String {
        let n = self.inner.id_counter.fetch_add(1, Ordering::Relaxed);
        let suffix = (self.inner.id_seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15))) as u32;
        let millis = self.now().timestamp_millis().clamp(0, 9_999_999_999_999);
        format!("{}{millis:013}{suffix:08x}{:04x}", self.inner.config.app_id, n & 0xffff)
    }

    /// Remember a consumer for the outbox-lag gauge (a bounded set: names come from hosts).
    fn served(&self, consumer: &str) {
        let mut consumers = self.inner.consumers.lock().unwrap_or_else(|p| p.into_inner());
        if consumers.len() < 1_000 && !consumers.contains(consumer) {
            consumers.insert(consumer.to_owned());
        }
    }

    fn consumers(&self) -> Vec<String> {
        let consumers = self.inner.consumers.lock().unwrap_or_else(|p| p.into_inner());
        consumers.iter().cloned().collect()
    }

    /// Sign, send, verify and decode one call, counted by endpoint and outcome.
    async fn call<C: Call>(&self, request: &C) -> Result<C::Reply> {
        self.call_kept(request, &mut Vec::new()).await
    }

    /// [`call`](Self::call) about an order, and what went over the wire: the request as
    /// sent and the reply as received (or why none came), as evidence for its next commit.
    async fn call_recorded<C: Call>(&self, out_req_no: &str, request: &C) -> (Result<C::Reply>, Vec<Exchange>) {
        let mut wire = Vec::new();
        let result = self.call_kept(request, &mut wire).await;
        let exchanges = wire
            .into_iter()
            .map(|(at, message, body)| Exchange {
                out_req_no: out_req_no.to_owned(),
                at,
                message,
                body,
            })
            .collect();
        (result, exchanges)
    }

    async fn call_kept<C: Call>(
        &self,
        request: &C,
        wire: &mut Vec<(DateTime<Utc>, Message, String)>,
    ) -> Result<C::Reply> {
        let started = std::time::Instant::now();
        let result = self.call_unmetered(request, wire).await;
        metrics::call(C::ENDPOINT.name(), started.elapsed(), result.as_ref().map(drop));
        let answered = matches!(&result, Ok(_) | Err(Error::Remote { .. } | Error::NotFound(_)));
        *self.inner.last_call.lock().unwrap_or_else(|p| p.into_inner()) = Some((self.now(), answered));
        result
    }

    async fn call_unmetered<C: Call>(
        &self,
        request: &C,
        wire: &mut Vec<(DateTime<Utc>, Message, String)>,
    ) -> Result<C::Reply> {
        let config = &self.inner.config;
        let endpoint = C::ENDPOINT.name().to_owned();
        let timestamp = format_timestamp(self.now(), self.inner.zone);
        let envelope = Envelope::for_call(&config.app_id, request, timestamp, &config.key)?;
        let request_message = Message::Request {
            endpoint: endpoint.clone(),
        };
        wire.push((self.now(), request_message, envelope.to_json()));
        let body = match self.inner.transport.call(C::ENDPOINT, &envelope).await {
            Ok(body) => body,
            Err(e) => {
                let none = Message::NoReply {
                    endpoint,
                    maybe_delivered: e.maybe_delivered(),
                    reason: e.to_string(),
                };
                wire.push((self.now(), none, String::new()));
                return Err(e.into());
            }
        };
        let reply = self.open_envelope(&body);
        let verified = reply.is_ok();
        let text = String::from_utf8_lossy(&body).into_owned();
        wire.push((self.now(), Message::Reply { endpoint, verified }, text));
        Envelope::decode_data(reply?.reply_data()?)
    }

    /// Verify an envelope from the payment system (a reply or a callback) with the current
    /// key, or during a rotation with one of `previous_keys`; which one verified is counted
    /// (`protopay_callback_key_total`), so operators see when the old key can go.
    fn open_envelope(&self, body: &[u8]) -> Result<Envelope> {
        let config = self.config();
        let (envelope, which) = Envelope::open_with_any(body, &config.app_id, config.keys())?;
        metrics::key_verified(which > 0);
        Ok(envelope)
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

    /// An event about a protocol as a whole.
    fn protocol_event(&self, trans_no: &str, source: Source, kind: EventKind) -> Event {
        Event {
            trans_no: Some(trans_no.to_owned()),
            ..self.event(None, source, kind)
        }
    }
}
