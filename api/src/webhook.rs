//! Event delivery by push, for hosts that prefer webhooks to long-polling: every event is
//! POSTed to the host's URL as JSON (the `/v1` event shape), one at a time, in `seq` order,
//! signed with HMAC-SHA256 over the exact body, and retried with backoff until the host
//! answers 2xx — at least once, never out of order.
//!
//! Delivery state is the webhook's own consumer cursor in the store, advanced only after a
//! 2xx: it is apart from callback deduplication and from other consumers (a webhook that
//! is down never holds anything else back), and it survives restarts — what was not
//! acknowledged is sent again.
//!
//! Several instances on one store may all be configured to push: only the holder of the
//! consumer's lease (`Engine::hold_lease`) does. It renews the lease before every attempt,
//! sends only if that renewal is recent (a sixth of the lease), and stops the moment it loses it; a dead
//! holder's lease runs out. That keeps one pusher at a time while processes run as they
//! should — but a holder frozen between its renewal and its write (or whose request a
//! network holds) can deliver after the lease passed on, so it can never be the whole
//! guarantee. Each push therefore carries the lease's fencing epoch (`x-protopay-lease-epoch`,
//! growing with every change of holder) beside its `seq`: a receiver processes each `seq`
//! once, drops any `seq` at or below the highest it has processed, and can tell a late
//! holder by its lower epoch. What holds for receivers: every event at least once; from one
//! holder, in `seq` order; a late, lower-epoch push may repeat an older `seq` — never a gap.
//!
//! A person may ask for events again (`Engine::resend`, the console's webhooks page): the
//! request is an event of its own (`OperatorResent`), and the pusher that reaches it pushes
//! the events from its `fromSeq` up to it again before it pushes the request itself — a crash
//! half way repeats the whole resend, as the request is acknowledged only after. A receiver
//! that drops `seq`s at or below its highest one drops them unless it reset that (restored
//! from a backup): that is what a resend is for.
//!
//! Each attempt of this process is kept in memory ([`Deliveries`], the last 200): time,
//! `seq`, status code or error, latency, and when the next try is due.

use crate::EventView;
use crate::SetupError;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use protopay_engine::{Engine, Event, EventKind, Sensitive};
use sha2::Sha256;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How many attempts [`Deliveries`] keeps.
const DELIVERIES_KEPT: usize = 200;

/// One attempt to push one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// When it was sent (the engine's clock).
    pub at: DateTime<Utc>,
    /// The event.
    pub seq: u64,
    /// The host's HTTP status, if it answered.
    pub status: Option<u16>,
    /// Why it failed without an answer (the transport's words; no URL, no secret).
    pub error: Option<String>,
    /// How long the attempt took.
    pub latency: Duration,
    /// When it will be tried again (`None`: it was accepted, or the lease was lost).
    pub next_retry: Option<DateTime<Utc>>,
}

/// The last attempts of a webhook in this process, newest last: a handle to share (the
/// console reads it while the pusher writes).
#[derive(Debug, Clone, Default)]
pub struct Deliveries(Arc<Mutex<VecDeque<Delivery>>>);

impl Deliveries {
    /// The attempts kept, newest first.
    pub fn newest_first(&self) -> Vec<Delivery> {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter().rev().cloned().collect()
    }

    fn push(&self, delivery: Delivery) {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() == DELIVERIES_KEPT {
            kept.pop_front();
        }
        kept.push_back(delivery);
    }
}

/// The header carrying the body's signature: `sha256=` and 64 lowercase hex digits.
pub const SIGNATURE_HEADER: &str = "x-protopay-signature";

/// The header carrying the event's `seq`.
pub const SEQ_HEADER: &str = "x-protopay-seq";

/// The header carrying the pushing lease's fencing epoch: higher means a later holder.
pub const EPOCH_HEADER: &str = "x-protopay-lease-epoch";

/// How long one push may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one push may take in all, connecting included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// How long the pushing instance holds the consumer's lease by default: longer than one
/// attempt, renewed before each.
const LEASE: Duration = Duration::from_secs(30);

// The relations the defaults rest on, checked when this compiles: a connect fits in a
// request, and one whole attempt fits in the lease with room to renew it (a sixth of the
// lease is the freshness a push requires of its renewal).
const _: () = assert!(CONNECT_TIMEOUT.as_millis() < REQUEST_TIMEOUT.as_millis());
const _: () = assert!(REQUEST_TIMEOUT.as_millis() + LEASE.as_millis() / 6 < LEASE.as_millis());

/// Where and how to push events.
#[derive(Clone)]
pub struct Webhook {
    url: String,
    secret: Sensitive,
    consumer: String,
    first_retry: Duration,
    max_retry: Duration,
    lease: Duration,
    client: reqwest::Client,
    deliveries: Deliveries,
}

impl std::fmt::Debug for Webhook {
    /// The secret is never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// Push to `url` as consumer `consumer`, signing with `secret`. Retries start after one
    /// second and double up to a minute.
    pub fn new(url: &str, secret: Sensitive, consumer: &str) -> Result<Self, SetupError> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(SetupError::WebhookUrl { url: url.to_owned() });
        }
        if secret.expose().chars().count() < crate::ApiAuth::MIN_TOKEN_CHARS {
            return Err(SetupError::WeakToken {
                scope: "webhook",
                min: crate::ApiAuth::MIN_TOKEN_CHARS,
            });
        }
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(Webhook {
            url: url.to_owned(),
            secret,
            consumer: consumer.to_owned(),
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(60),
            lease: LEASE,
            client,
            deliveries: Deliveries::default(),
        })
    }

    /// Its consumer's name (its cursor in the store).
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Where it pushes, for people: the scheme and host only (a path or query may hold a
    /// token).
    pub fn destination(&self) -> String {
        let rest = self.url.split_once("://").map_or("", |(_, r)| r);
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = host.rsplit('@').next().unwrap_or_default();
        let scheme = self.url.split("://").next().unwrap_or_default();
        format!("{scheme}://{host}")
    }

    /// The log of its attempts in this process.
    pub fn deliveries(&self) -> Deliveries {
        self.deliveries.clone()
    }

    /// Retry after `first`, doubling up to `max`.
    pub fn retry(mut self, first: Duration, max: Duration) -> Self {
        self.first_retry = first;
        self.max_retry = max.max(first);
        self
    }

    /// Hold the consumer's lease for `lease` (default 30 s) instead. Shorter than one attempt
    /// (15 s), a slow request of one holder can overlap the next holder's pushes — receivers
    /// drop by `seq` whatever the setting; tests use it to show exactly that.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Deliver events until the engine shuts down (or the task is aborted: nothing is lost,
    /// what was not acknowledged goes again).
    pub async fn run(self, engine: Engine) {
        let lease = format!("webhook:{}", self.consumer);
        loop {
            match engine.hold_lease(&lease, self.lease).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    // Another instance pushes; take over if its lease runs out.
                    if engine.is_shut_down() {
                        return;
                    }
                    tokio::time::sleep(self.lease / 3).await;
                    continue;
                }
                Err(protopay_engine::Error::Shutdown) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook: the lease could not be read; retrying");
                    tokio::time::sleep(self.first_retry).await;
                    continue;
                }
            }
            match self.push_while_leading(&engine, &lease).await {
                Ok(()) => {}
                Err(protopay_engine::Error::Shutdown) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook: reading events failed; retrying");
                    tokio::time::sleep(self.first_retry).await;
                }
            }
        }
    }

    /// Push from the consumer's cursor for as long as this instance holds the lease.
    async fn push_while_leading(&self, engine: &Engine, lease: &str) -> protopay_engine::Result<()> {
        let mut feed = engine.subscribe(&self.consumer);
        loop {
            // Wake at least once per lease period to renew it even when nothing happens.
            let events = match tokio::time::timeout(self.lease / 3, feed.next()).await {
                Ok(events) => events?,
                Err(_quiet) => Vec::new(),
            };
            if engine.hold_lease(lease, self.lease).await?.is_none() {
                return Ok(());
            }
            for event in &events {
                if let EventKind::OperatorResent { consumer, from_seq, .. } = &event.kind
                    && *consumer == self.consumer
                    && !self.resend(engine, lease, *from_seq, event.seq).await?
                {
                    return Ok(());
                }
                if !self.deliver(engine, lease, event).await? {
                    return Ok(()); // the lease was lost: the next holder starts from the cursor
                }
                feed.ack(event.seq).await?;
            }
        }
    }

    /// Push the events from `from` up to (not including) `until` again, as a person asked:
    /// true when all were accepted, false as soon as the lease is lost.
    async fn resend(&self, engine: &Engine, lease: &str, from: u64, until: u64) -> protopay_engine::Result<bool> {
        tracing::info!(consumer = %self.consumer, from, until, "webhook: pushing events again, as asked");
        let mut after = from.saturating_sub(1);
        while after + 1 < until {
            let page = engine.events_after(after, 256).await?;
            let Some(last) = page.last().map(|e| e.seq) else { break };
            for event in page.iter().filter(|e| e.seq < until) {
                if !self.deliver(engine, lease, event).await? {
                    return Ok(false);
                }
            }
            after = last;
        }
        Ok(true)
    }

    /// POST one event until the host answers 2xx (true), renewing the lease before each
    /// attempt; false as soon as the lease is lost.
    async fn deliver(&self, engine: &Engine, lease: &str, event: &Event) -> protopay_engine::Result<bool> {
        let body = match serde_json::to_vec(&EventView::from(event)) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(error = %e, seq = event.seq, "webhook: event could not be encoded; skipped");
                return Ok(true);
            }
        };
        let signature = sign(&self.secret, &body);
        let mut wait = self.first_retry;
        loop {
            let renewing = tokio::time::Instant::now();
            let Some(epoch) = engine.hold_lease(lease, self.lease).await? else {
                return Ok(false);
            };
            if renewing.elapsed() > self.lease / 6 {
                continue; // too long since the renewal began: renew again before sending
            }
            let (at, started) = (engine.now(), tokio::time::Instant::now());
            let sent = self
                .client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, &signature)
                .header(SEQ_HEADER, event.seq)
                .header(EPOCH_HEADER, epoch)
                .body(body.clone())
                .send()
                .await;
            let mut delivery = Delivery {
                at,
                seq: event.seq,
                status: None,
                error: None,
                latency: started.elapsed(),
                next_retry: None,
            };
            match sent {
                Ok(r) if r.status().is_success() => {
                    delivery.status = Some(r.status().as_u16());
                    self.deliveries.push(delivery);
                    return Ok(true);
                }
                Ok(r) => {
                    tracing::warn!(status = %r.status(), seq = event.seq, "webhook refused the event; retrying");
                    delivery.status = Some(r.status().as_u16());
                }
                Err(e) => {
                    tracing::warn!(error = %e, seq = event.seq, "webhook unreachable; retrying");
                    // Without the URL: it may hold a token.
                    delivery.error = Some(e.without_url().to_string());
                }
            }
            delivery.next_retry = chrono::Duration::from_std(wait).ok().map(|w| engine.now() + w);
            self.deliveries.push(delivery);
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(self.max_retry);
        }
    }
}

/// The signature of a webhook body: `sha256=` and the hex HMAC-SHA256 of `body` under
/// `secret`. A host computes the same and compares in constant time.
pub fn sign(secret: &Sensitive, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else {
        // HMAC takes keys of any length; this arm cannot be reached.
        return String::new();
    };
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}
