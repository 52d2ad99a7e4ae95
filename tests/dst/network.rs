//! The network: the simulator as the engine's transport (metered), and the callbacks'
//! way back to whichever engine is up.

use crate::{Violation, Window, violate};
use protopay::wire::{CallbackKind, Endpoint, Envelope};
use protopay::{Clock, Config, Engine, Transport, TransportError};
use protopay_sim::{CallbackSink, Rng, SimTransport};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Routes callbacks to whichever engine is up; while it is down they fail (and are retried).
/// Some arrive with a twin mangled in transit (its sign broken), racing the real one.
#[derive(Clone)]
pub(crate) struct Switchboard {
    pub(crate) engine: Arc<Mutex<Option<Engine>>>,
    pub(crate) rng: Arc<Mutex<Rng>>,
    pub(crate) mangled: f64,
}

impl Switchboard {
    pub(crate) fn set(&self, engine: Option<Engine>) {
        *self.engine.lock().unwrap() = engine;
    }
}

#[async_trait::async_trait]
impl CallbackSink for Switchboard {
    async fn deliver(&self, url: &str, body: Vec<u8>) -> Option<(u16, String)> {
        let engine = self.engine.lock().unwrap().clone()?;
        let kind = CallbackKind::from_slug(url.rsplit('/').next()?)?;
        let twin = {
            let mut rng = self.rng.lock().unwrap();
            (rng.unit() < self.mangled).then(|| rng.range(0, 8))
        };
        let Some(lag) = twin else {
            let reply = engine.handle_callback(kind, &body).await;
            return Some((reply.status, reply.body));
        };
        let mangled = String::from_utf8_lossy(&body)
            .replacen("\"sign\":\"", "\"sign\":\"0", 1)
            .into_bytes();
        let twin = async {
            for _ in 0..lag {
                tokio::task::yield_now().await;
            }
            engine.handle_callback(kind, &mangled).await
        };
        let (_, reply) = tokio::join!(twin, engine.handle_callback(kind, &body));
        Some((reply.status, reply.body))
    }
}

/// The simulator as the engine's transport, with the per-order call budget.
pub(crate) struct Metered {
    pub(crate) sim: SimTransport,
    pub(crate) truth: Clock,
    pub(crate) calls: Mutex<HashMap<String, Window>>,
    pub(crate) budget: usize,
    pub(crate) violation: Violation,
}

#[async_trait::async_trait]
impl Transport for Metered {
    async fn call(&self, endpoint: Endpoint, request: &Envelope) -> Result<Vec<u8>, TransportError> {
        if let Some(key) = request.names_order() {
            let mut calls = self.calls.lock().unwrap();
            let n = calls
                .entry(key.clone())
                .or_default()
                .hit(self.truth.now(), chrono::Duration::hours(1));
            if n > self.budget {
                violate(
                    &self.violation,
                    format!("{key}: {n} calls to the payment system within a simulated hour"),
                );
            }
        }
        if self.violation.lock().unwrap().is_some() {
            return Err(TransportError::NotDelivered {
                reason: "the auditor stopped the run".into(),
            });
        }
        self.sim.call(endpoint, request).await
    }
}

/// The budgets, derived from the poll policy.
pub(crate) fn budgets(config: &Config) -> (usize, usize) {
    let p = &config.poll;
    let fastest = [p.submitted_ms, p.processing_ms, p.unpaid_ms, p.grace_ms]
        .into_iter()
        .min()
        .unwrap_or(1);
    let fastest = fastest * (100 - u64::from(p.jitter_percent)) / 100;
    // Polls at the fastest interval, polls moved forward by failed callbacks, every send.
    let calls = 3_600_000 / fastest + 3_600_000 / p.poll_sooner_min_interval_ms + u64::from(p.max_sends) + 10;
    // Idle ticks, and one pass after each poll or wake-up, generously.
    let passes = 20 * 60_000 / p.idle_tick_ms;
    (calls as usize, passes as usize)
}
