//! What the poller does besides polling, each on its own period: the metrics census (the
//! gauges that need a read — due backlog and poll lag, orders by listing, outbox lag per
//! consumer) and the periodic reconciliation of every protocol with activity since the
//! last one. Both only read and report; neither moves money.

use super::{Config, Engine, metrics};
use crate::Result;
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

impl Engine {
    /// Refresh the gauges that need a read of the store: due backlog and poll lag, orders by
    /// listing, outbox lag. The poller does every 15 s; an exporter that renders on scrape
    /// (as `protopay serve`'s `/metrics` does) calls it first, so a scrape is never stale.
    pub async fn refresh_gauges(&self) -> Result<()> {
        let store = self.storage();
        let now = self.now();
        let due = store.due(now, BACKLOG_CAP).await?;
        let lag = due.first().and_then(|d| (now - d.at).to_std().ok()).unwrap_or_default();
        metrics::backlog(due.len(), lag);
        for (listing, n) in store.listing_counts().await? {
            metrics::orders(listing.name(), n);
        }
        let last = store.last_seq().await?;
        for consumer in self.consumers() {
            metrics::outbox_lag(&consumer, last.saturating_sub(store.cursor(&consumer).await?));
        }
        Ok(())
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
