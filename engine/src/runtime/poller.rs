//! The poller: asks about orders that are due, and is how the engine recovers after a restart
//! (stored-but-unsent and sent-but-unknown orders are simply due).
//!
//! The rules for an order whose outcome is unknown are "Never pay twice": query first; send
//! again only after a verified "no such order" seen past the grace period since the last
//! send, with the same `outReqNo`; never fail it on our own; after the retry budget, raise
//! `NeedsAttention` and keep polling slowly.

use super::Engine;
use crate::domain::{Order, Status};
use crate::observation::{News, Source};
use crate::storage::{Batch, Versioned};
use crate::wire::{Inquery, Outquery};
use crate::{Error, Result};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollReport {
    /// Orders taken from the due index.
    pub due: usize,
    /// Orders whose poll failed (they stay scheduled and are tried again).
    pub failed: usize,
}

/// A running background poller.
#[derive(Debug)]
pub struct PollerHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl PollerHandle {
    /// Stop after the tick in progress (in-flight polls finish) and wait for it.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Stop at once, wherever it is, as a crash would (for crash simulations).
    pub fn abort(self) {
        self.task.abort();
    }
}

impl Engine {
    /// Run one poller tick: poll every order due now, with bounded concurrency.
    #[tracing::instrument(skip(self))]
    pub async fn poll_due(&self) -> Result<PollReport> {
        let policy = &self.config().poll;
        let due = self.storage().due(self.now(), policy.batch).await?;
        let mut report = PollReport { due: due.len(), failed: 0 };
        let permits = std::sync::Arc::new(Semaphore::new(policy.concurrency));
        let mut tasks = JoinSet::new();
        for entry in due {
            let engine = self.clone();
            let permits = permits.clone();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                engine.poll_order(&entry.out_req_no).await
            });
        }
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(())) | Ok(Err(Error::Conflict)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "poll failed");
                    report.failed += 1;
                }
                Err(join) => {
                    tracing::error!(error = %join, "poll task panicked");
                    report.failed += 1;
                }
            }
        }
        Ok(report)
    }

    /// Run the poller in the background until [`PollerHandle::shutdown`].
    pub fn spawn_poller(&self) -> PollerHandle {
        let (stop, mut stopped) = watch::channel(false);
        let engine = self.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Err(e) = engine.poll_due().await {
                    tracing::warn!(error = %e, "poller tick failed");
                }
                let idle = Duration::from_millis(engine.config().poll.idle_tick_ms);
                let wait = match engine.storage().next_due().await {
                    Ok(Some(at)) => (at - engine.now()).to_std().unwrap_or(Duration::ZERO).min(idle),
                    _ => idle,
                };
                // `biased`: a fixed order keeps runs on tokio's paused clock reproducible.
                tokio::select! {
                    biased;
                    _ = stopped.changed() => break,
                    _ = tokio::time::sleep(wait) => {}
                    _ = engine.inner.wake_poller.notified() => {}
                }
                if *stopped.borrow() {
                    break;
                }
            }
        });
        PollerHandle { stop, task }
    }

    /// Poll one order: send it if it was never sent, otherwise query it.
    #[tracing::instrument(skip(self))]
    async fn poll_order(&self, out_req_no: &str) -> Result<()> {
        let Some(current) = self.storage().order(out_req_no).await? else {
            let batch = Batch { schedule: vec![(out_req_no.to_owned(), None)], ..Default::default() };
            return self.commit(batch).await;
        };
        if !current.value.is_open() {
            return self.commit_step(&current, Source::Poll, None, |_, _| {}).await.map(drop);
        }
        if matches!(current.value.status(), Status::Requested | Status::Reserved) {
            return self.submit(&current).await.map(drop);
        }
        let answer = match &current.value {
            Order::Inbound(o) => self
                .call(&Inquery { out_req_no: o.request.out_req_no.clone() })
                .await
                .map(|v| News::Inbound(Box::new(v))),
            Order::Outbound(o) => self
                .call(&Outquery { out_req_no: o.request.out_req_no.clone() })
                .await
                .map(|v| News::Outbound(Box::new(v))),
        };
        match answer {
            Ok(news) => self.commit_step(&current, Source::Poll, Some(news), quiet_poll(&current)).await.map(drop),
            Err(Error::NotFound(_)) => self.not_found(&current).await,
            Err(e) => {
                tracing::debug!(error = %e, "query failed; will retry");
                self.commit_step(&current, Source::Poll, None, quiet_poll(&current)).await.map(drop)
            }
        }
    }

    /// The payment system says it has no such order (verified).
    async fn not_found(&self, current: &Versioned<Order>) -> Result<()> {
        let order = &current.value;
        if !Self::awaiting_outcome(order) {
            // It had acknowledged the order: `apply` raises `RemoteLost`.
            return self.commit_step(current, Source::Poll, Some(News::NotFound), quiet_poll(current)).await.map(drop);
        }
        let attempts = order.attempts();
        let grace = chrono::Duration::milliseconds(i64::try_from(self.config().poll.grace_ms).unwrap_or(i64::MAX));
        let past_grace = attempts.last_submitted_at.is_none_or(|at| self.now() - at >= grace);
        if !past_grace {
            // Our request may still be on its way: sending again now could pay twice.
            return self.commit_step(current, Source::Poll, None, quiet_poll(current)).await.map(drop);
        }
        if attempts.submissions >= self.config().poll.max_submissions {
            return self.flag_attention(order.out_req_no()).await.map(drop);
        }
        tracing::info!(
            out_req_no = order.out_req_no(),
            submissions = attempts.submissions,
            "not found past grace; resending"
        );
        self.submit(current).await.map(drop)
    }
}

/// Bookkeeping for a poll that brought no outcome: count it, and raise `NeedsAttention` for
/// an order still unknown after too many.
fn quiet_poll(current: &Versioned<Order>) -> impl FnOnce(&mut Order, &mut Vec<crate::EventKind>) + use<> {
    let before_status = current.value.status();
    move |next, _kinds| {
        if next.status() == before_status {
            next.attempts_mut().quiet_polls += 1;
        }
    }
}
