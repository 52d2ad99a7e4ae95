//! The callback outbox: signed callbacks with retries and faults, and the background task
//! that delivers them.

use super::{Delivery, Sim, State};
use chrono::{DateTime, Utc};
use protopay_engine::wire::{CODE_OK, Envelope, MSG_OK, format_timestamp};
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::Notify;

impl Sim {
    pub(super) fn enqueue<T: Serialize>(&self, s: &mut State, url: String, view: &T) {
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
            s.outbox.push(Delivery {
                id,
                url: url.clone(),
                body: body.clone(),
                attempt: 0,
                next_at: at,
            });
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
