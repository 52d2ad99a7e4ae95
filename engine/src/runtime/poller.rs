//! The poller: asks about orders that are due, and is how the engine recovers after a restart
//! (stored-but-unsent and sent-but-unknown orders are simply due).
//!
//! Every poll ends in a commit that records the order's next due time (see `transact`), so
//! an order is never left due in the past. A poll that fails before it can commit (the
//! store is down) is held back in memory for as long as the policy would have waited, never
//! less, and the poller sleeps until then: neither a failing store nor a failing payment
//! system can make it spin.

use super::chores::Chores;
use super::schedule::next_poll;
use super::transact::{Step, StepError};
use super::{Engine, metrics};
use crate::domain::{Order, OrderKind, Status};
use crate::observation::News;
use crate::storage::Versioned;
use crate::wire::{Inquery, Outquery};
use crate::{Error, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How many held-back orders are remembered before those whose hold has run out are swept
/// (orders settled by callbacks meanwhile are never polled again, so never cleared by a poll).
const HELD_BACK_KEPT: usize = 10_000;

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollReport {
    /// Orders taken from the due index.
    pub due: usize,
    /// Of those, polled now (the others are held back after a failed poll).
    pub polled: usize,
    /// Polls that failed (held back by the policy, then tried again).
    pub failed: usize,
    /// How long until the first held-back order may be tried again, if any is.
    pub retry_in: Option<Duration>,
}

/// A poll that failed, and when the order may be polled again.
#[derive(Debug, Clone, Copy)]
pub(super) struct Backoff {
    failures: u32,
    until: Instant,
}

/// A running background poller.
#[derive(Debug)]
pub struct PollerHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    passes: Arc<AtomicU64>,
}

impl PollerHandle {
    /// Stop after the tick in progress (in-flight polls finish) and wait for it.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// How many times the poller has looked for due orders: a measure of its appetite, which
    /// the simulation bounds (a poller that spins shows here first).
    pub fn passes(&self) -> u64 {
        self.passes.load(Ordering::Relaxed)
    }

    /// Stop at once, wherever it is, as a crash would (for crash simulations; feature
    /// `test-util`).
    #[cfg(any(test, feature = "test-util"))]
    pub fn abort(self) {
        self.task.abort();
    }
}

impl Engine {
    /// Run one poller tick: poll every order due now, with bounded concurrency.
    #[tracing::instrument(skip(self))]
    pub async fn poll_due(&self) -> Result<PollReport> {
        let _working = self.working()?;
        self.poll_tick().await
    }

    async fn poll_tick(&self) -> Result<PollReport> {
        let policy = &self.config().poll;
        let claim = Duration::from_millis(policy.claim_ms);
        let due = self
            .storage()
            .claim_due(&self.inner.instance, self.now(), policy.orders_per_pass, claim)
            .await?;
        let mut report = PollReport {
            due: due.len(),
            ..PollReport::default()
        };
        let ready: Vec<String> = {
            let backoff = self.inner.backoff.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            due.into_iter()
                .map(|d| d.out_req_no)
                .filter(|key| match backoff.get(key) {
                    Some(b) if b.until > now => {
                        let wait = b.until - now;
                        report.retry_in = Some(report.retry_in.map_or(wait, |w| w.min(wait)));
                        false
                    }
                    _ => true,
                })
                .collect()
        };
        report.polled = ready.len();
        let permits = Arc::new(Semaphore::new(policy.concurrency));
        let mut tasks = JoinSet::new();
        for key in ready {
            let engine = self.clone();
            let permits = permits.clone();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                if engine.is_shut_down() {
                    // Polls in flight finish; none starts once shutdown has begun.
                    return None;
                }
                let (read, result) = engine.poll_order(&key).await;
                Some((key, read, result))
            });
        }
        while let Some(done) = tasks.join_next().await {
            let done = match done {
                Ok(None) => {
                    report.polled -= 1;
                    continue;
                }
                Ok(Some(polled)) => Ok(polled),
                Err(join) => Err(join),
            };
            metrics::poll(matches!(done, Ok((_, _, Ok(()) | Err(StepError::Raced)))));
            match done {
                Ok((key, _, Ok(()) | Err(StepError::Raced))) => self.poll_succeeded(&key),
                Ok((key, read, Err(e))) => {
                    tracing::warn!(out_req_no = %key, error = %e, "poll failed; holding it back");
                    let wait = self.poll_failed(&key, read.as_ref());
                    report.retry_in = Some(report.retry_in.map_or(wait, |w| w.min(wait)));
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

    fn poll_succeeded(&self, key: &str) {
        let mut backoff = self.inner.backoff.lock().unwrap_or_else(|p| p.into_inner());
        if !backoff.is_empty() {
            backoff.remove(key);
        }
    }

    /// Hold an order back after a failed poll: as long as the policy would wait after that
    /// many quiet polls (from the order's own state when it could be read).
    fn poll_failed(&self, key: &str, read: Option<&Order>) -> Duration {
        let policy = &self.config().poll;
        let mut backoff = self.inner.backoff.lock().unwrap_or_else(|p| p.into_inner());
        let failures = backoff.get(key).map_or(1, |b| b.failures.saturating_add(1));
        let now = self.now();
        let interval = match read {
            Some(order) => {
                let mut held = order.clone();
                let a = &mut held.attempts;
                a.quiet_polls = a.quiet_polls.saturating_add(failures);
                next_poll(&held, now, policy).and_then(|t| (t - now).to_std().ok())
            }
            None => None,
        };
        let fallback = Duration::from_millis(policy.submitted_ms)
            .saturating_mul(1u32 << failures.min(20))
            .min(Duration::from_millis(policy.max_interval_ms.max(policy.submitted_ms)));
        let wait = interval.unwrap_or(fallback).max(Duration::from_millis(1));
        if backoff.len() > HELD_BACK_KEPT {
            // Forget orders settled meanwhile by callbacks (their hold has long run out).
            let now = Instant::now();
            backoff.retain(|_, b| b.until > now);
        }
        backoff.insert(
            key.to_owned(),
            Backoff {
                failures,
                until: Instant::now() + wait,
            },
        );
        wait
    }

    /// Run the poller in the background until [`PollerHandle::shutdown`] or
    /// [`Engine::shutdown`].
    pub fn spawn_poller(&self) -> PollerHandle {
        let (stop, mut stopped) = watch::channel(false);
        let passes = Arc::new(AtomicU64::new(0));
        let engine = self.clone();
        let counter = passes.clone();
        let task = tokio::spawn(async move {
            let Ok(_working) = engine.working() else { return };
            let mut stopping = engine.inner.stopping.subscribe();
            let idle = engine.idle_tick();
            let mut chores = Chores::new(engine.config());
            loop {
                counter.fetch_add(1, Ordering::Relaxed);
                engine.plan_poller_wake(None);
                chores.run_due(&engine).await;
                let wait = match engine.poll_tick().await {
                    // Everything due is held back: sleep until the first may be tried.
                    Ok(r) if r.polled == 0 && r.due > 0 => r.retry_in.unwrap_or(idle),
                    Ok(r) => match engine.storage().next_due(&engine.inner.instance).await {
                        Ok(Some(at)) if r.failed == 0 => (at - engine.now()).to_std().unwrap_or(Duration::ZERO),
                        _ => r.retry_in.unwrap_or(idle),
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "poller tick failed");
                        idle
                    }
                };
                let wait = wait.min(idle).min(chores.due_in());
                engine.plan_poller_wake(Some(wait));
                // `biased`: a fixed order keeps runs on tokio's paused clock reproducible.
                tokio::select! {
                    biased;
                    _ = stopped.changed() => break,
                    _ = stopping.changed() => break,
                    _ = tokio::time::sleep(wait) => {}
                    _ = engine.inner.wake_poller.notified() => {}
                }
                if *stopped.borrow() || engine.is_shut_down() {
                    break;
                }
            }
        });
        PollerHandle { stop, task, passes }
    }

    /// The longest the poller sleeps with nothing due. On a store that announces commits
    /// elsewhere, every schedule (this instance's too) is announced and wakes it, so it needs
    /// to look on its own only for what nothing announces — another instance's claim that ran
    /// out (it died) — hence once per claim lease; on other stores, every idle tick.
    fn idle_tick(&self) -> Duration {
        let poll = &self.config().poll;
        match self.storage().commits_elsewhere() {
            Some(_) => Duration::from_millis(poll.idle_tick_ms.max(poll.claim_ms)),
            None => Duration::from_millis(poll.idle_tick_ms),
        }
    }

    /// Tell the announcement follower when the poller looks next (`None`: it is looking now,
    /// so any announcement wakes it again afterwards).
    fn plan_poller_wake(&self, wait: Option<Duration>) {
        let at = wait
            .and_then(|w| chrono::Duration::from_std(w).ok())
            .map(|w| self.now() + w);
        *self.inner.poller_wakes_at.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }

    /// Poll one order: send it if it was never sent, otherwise query it. Returns the order
    /// as read (to hold it back by its own policy if the poll fails).
    #[tracing::instrument(skip(self))]
    async fn poll_order(&self, out_req_no: &str) -> (Option<Order>, Result<(), StepError>) {
        let current = match self.storage().order(out_req_no).await {
            Ok(Some(current)) => current,
            Ok(None) => {
                // A due entry without its order: only a damaged store has one.
                tracing::error!(%out_req_no, "due entry for an order that is not stored");
                return (
                    None,
                    Err(Error::UnknownOrder {
                        out_req_no: out_req_no.to_owned(),
                    }
                    .into()),
                );
            }
            Err(e) => return (None, Err(e.into())),
        };
        let result = self.poll_read(&current).await;
        (Some(current.value), result)
    }

    async fn poll_read(&self, current: &Versioned<Order>) -> Result<(), StepError> {
        if !current.value.is_open() {
            return self.transact_at(current, Step::poll(None)).await.map(drop);
        }
        if current.value.awaits_sending() {
            return self.send(current).await.map(drop);
        }
        let key = current.value.out_req_no();
        let (answer, evidence) = match &current.value.kind {
            OrderKind::Inbound(o) => {
                let query = Inquery {
                    out_req_no: o.request.out_req_no.clone(),
                };
                let (answer, evidence) = self.call_recorded(key, &query).await;
                (answer.map(|v| News::Inbound(Box::new(v))), evidence)
            }
            OrderKind::Outbound(o) => {
                let query = Outquery {
                    out_req_no: o.request.out_req_no.clone(),
                };
                let (answer, evidence) = self.call_recorded(key, &query).await;
                (answer.map(|v| News::Outbound(Box::new(v))), evidence)
            }
        };
        let step = match answer {
            Ok(news) => Step::poll(Some(news)),
            Err(Error::NotFound(_)) if current.value.status == Status::Submitted => {
                return self.not_found(current, evidence).await;
            }
            // It had acknowledged the order: `apply` raises `RemoteLost`.
            Err(Error::NotFound(_)) => Step::poll(Some(News::NotFound)),
            Err(e) => {
                tracing::debug!(error = %e, "query failed; will retry");
                Step::poll(None)
            }
        };
        self.transact_at(current, step.with_evidence(evidence)).await.map(drop)
    }
}
