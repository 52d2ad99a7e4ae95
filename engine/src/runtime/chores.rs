//! What the poller does besides polling, each on its own period: the metrics census (the
//! gauges that need a read — due backlog and poll lag, orders by listing, outbox lag per
//! consumer) and the periodic reconciliation of every protocol with activity since the
//! last one. Both only read and report; neither moves money.

use super::{Config, Engine, metrics};
use crate::Result;
use crate::domain::Listing;
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::time::Instant;

/// How often the gauges are refreshed.
const CENSUS_EVERY: Duration = Duration::from_secs(15);

/// The most due orders the backlog gauge counts: a runaway backlog saturates it.
const BACKLOG_CAP: usize = 10_000;

/// The consumer whose cursor marks how far the periodic reconciliation has looked: the
/// protocols named by events after it have had activity since. Kept in the store, so a
/// restart (or another instance) carries on where the last run stopped.
pub(super) const RECONCILE_CONSUMER: &str = "protopay.reconcile";

/// When each chore is next due, on the monotonic clock.
pub(super) struct Chores {
    census_at: Instant,
    reconcile: Option<(Duration, Instant)>,
}

impl Chores {
    pub(super) fn new(config: &Config) -> Self {
        let now = Instant::now();
        let every = Duration::from_millis(config.reconcile_every_ms);
        Chores {
            census_at: now,
            reconcile: (!every.is_zero()).then(|| (every, now + every)),
        }
    }

    /// How long until the next chore is due.
    pub(super) fn due_in(&self) -> Duration {
        let next = match self.reconcile {
            Some((_, at)) => at.min(self.census_at),
            None => self.census_at,
        };
        next.saturating_duration_since(Instant::now())
    }

    /// Run the chores whose time has come. Failures are logged and counted, never fatal.
    pub(super) async fn run_due(&mut self, engine: &Engine) {
        let now = Instant::now();
        if now >= self.census_at {
            self.census_at = now + CENSUS_EVERY;
            if let Err(e) = engine.refresh_gauges().await {
                tracing::debug!(error = %e, "metrics census failed");
            }
        }
        if let Some((every, at)) = &mut self.reconcile
            && now >= *at
        {
            *at = now + *every;
            if let Err(e) = engine.reconcile_active().await {
                tracing::warn!(error = %e, "periodic reconciliation failed; tried again next period");
            }
        }
    }
}

/// How this engine and its store stand now: what `/metrics` reports, read at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Census {
    /// When it was read (the engine's clock).
    pub at: DateTime<Utc>,
    /// Orders due for a poll now (counted up to 10 000).
    pub due_backlog: usize,
    /// How late the most overdue poll is.
    pub poll_lag: Duration,
    /// Orders per listing, in [`Listing::ALL`] order.
    pub orders: Vec<(Listing, u64)>,
    /// The newest event's `seq`.
    pub last_seq: u64,
    /// Events not yet acknowledged, per consumer this process serves (webhooks included),
    /// counted up to 10 000.
    pub outbox_lag: Vec<(String, u64)>,
    /// Protocols whose last reconciliation in this process found drift.
    pub drifting: Vec<String>,
    /// This process's last call to the payment system: when, and whether it was answered.
    pub last_call: Option<(DateTime<Utc>, bool)>,
}

impl Engine {
    /// Refresh the gauges that need a read of the store: due backlog and poll lag, orders by
    /// listing, outbox lag. The poller does every 15 s; an exporter that renders on scrape
    /// (as `protopay serve`'s `/metrics` does) calls it first, so a scrape is never stale.
    pub async fn refresh_gauges(&self) -> Result<()> {
        let census = self.census().await?;
        metrics::backlog(census.due_backlog, census.poll_lag);
        for (listing, n) in &census.orders {
            metrics::orders(listing.name(), *n);
        }
        for (consumer, lag) in &census.outbox_lag {
            metrics::outbox_lag(consumer, *lag);
        }
        metrics::protocols_drifting(census.drifting.len());
        Ok(())
    }

    /// The figures of [`refresh_gauges`](Self::refresh_gauges), for a person (the operator
    /// console's overview) as the gauges give them to a machine.
    pub async fn census(&self) -> Result<Census> {
        let store = self.storage();
        let now = self.now();
        let due = store.due(now, BACKLOG_CAP).await?;
        let poll_lag = due.first().and_then(|d| (now - d.at).to_std().ok()).unwrap_or_default();
        let last_seq = store.last_seq().await?;
        let mut outbox_lag = Vec::new();
        for consumer in self.consumers() {
            let lag = store.count_after(store.cursor(&consumer).await?, BACKLOG_CAP).await?;
            outbox_lag.push((consumer, lag as u64));
        }
        let orders = store.listing_counts().await?;
        let drifting = self
            .inner
            .drifting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        Ok(Census {
            at: now,
            due_backlog: due.len(),
            poll_lag,
            orders,
            last_seq,
            outbox_lag,
            drifting,
            last_call: *self.inner.last_call.lock().unwrap_or_else(|p| p.into_inner()),
        })
    }

    /// Reconcile every protocol named by an event since the last periodic run (and advance
    /// that mark only when all of them could be asked).
    pub(super) async fn reconcile_active(&self) -> Result<()> {
        let mut after = self.cursor(RECONCILE_CONSUMER).await?;
        let mut active = BTreeSet::new();
        loop {
            let page = self.events_after(after, 256).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            active.extend(page.into_iter().filter_map(|e| e.trans_no));
        }
        let mut all_asked = true;
        for trans_no in &active {
            if let Err(e) = self.reconcile(trans_no).await {
                tracing::warn!(%trans_no, error = %e, "periodic reconciliation of a protocol failed");
                all_asked = false;
            }
        }
        if all_asked {
            self.ack(RECONCILE_CONSUMER, after).await?;
        }
        Ok(())
    }
}
