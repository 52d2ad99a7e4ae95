//! The store as the engine meets it, and the probe around it.

use crate::{Violation, Window, trace, violate};
use chrono::{DateTime, Utc};
use protopay::Clock;
use protopay::sled::codec;
use protopay::storage::{Batch, MemoryStorage, Storage, StorageError};
use protopay::testing::{Hooks, Injected, Intercepted};
use protopay_sim::Rng;
use std::sync::Mutex;
use std::time::Duration;

/// The store as the engine sees it: memory underneath, every call letting other tasks run
/// (a real store takes time, so steps on one order race, and so do a reader's consecutive
/// reads with commits), with the probe's hooks around it.
pub(crate) type Probed = Intercepted<MemoryStorage, Probe>;

/// What the simulation does around the store's calls: commit failures at random and aimed at
/// a chosen commit point, outages, an optional round trip of every record through the sled
/// codec, the due-time audit at every commit, pauses after commits, and the poller-pass
/// budget (every pass claims once).
pub(crate) struct Probe {
    /// The store at one moment: what the auditor reads (a handle that never yields).
    pub(crate) auditor: MemoryStorage,
    pub(crate) round_trip: bool,
    pub(crate) truth: Clock,
    /// The commit point, counted from when it was aimed, that fails.
    pub(crate) fail_in: Mutex<Option<u32>>,
    /// How many of the next commits fail.
    pub(crate) failing: Mutex<u32>,
    /// Every commit fails until then (a store that is down for a while).
    pub(crate) down_until: Mutex<Option<DateTime<Utc>>>,
    pub(crate) passes: Mutex<Window>,
    pub(crate) pass_budget: usize,
    pub(crate) violation: Violation,
    /// Pauses of the committing task right after its commit, before it can act on it (a
    /// process frozen between a `Submitted` commit and the send it licenses).
    pub(crate) pauses: Mutex<Option<Pauses>>,
}

/// A seeded chance of a pause after a commit, and its longest length.
pub(crate) struct Pauses {
    pub(crate) rng: Rng,
    pub(crate) chance: f64,
    pub(crate) max_ms: u64,
}

pub(crate) fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(v: T) -> T {
    let bytes = codec::record(7, &v).expect("encode");
    let (version, back) = codec::from_record::<T>(&bytes).expect("decode");
    assert_eq!(version, 7);
    back
}

impl Probe {
    /// Fail the `n`-th commit from now (1 = the next).
    pub(crate) fn fail_commit(&self, n: u32) {
        *self.fail_in.lock().unwrap() = Some(n);
    }

    /// Fail the next `n` commits (0: none).
    pub(crate) fn fail_next_commits(&self, n: u32) {
        *self.failing.lock().unwrap() = n;
    }

    pub(crate) fn disarm(&self) {
        *self.fail_in.lock().unwrap() = None;
    }

    /// Pause after commits from now on (`None`: no more pauses).
    pub(crate) fn pauses(&self, pauses: Option<Pauses>) {
        *self.pauses.lock().unwrap() = pauses;
    }

    /// How long the task that just committed freezes, if it does.
    pub(crate) fn draw_pause(&self) -> Option<Duration> {
        let mut pauses = self.pauses.lock().unwrap();
        let p = pauses.as_mut()?;
        (p.rng.unit() < p.chance).then(|| Duration::from_millis(p.rng.range(1, p.max_ms)))
    }

    /// Every commit fails for `ms` of simulated time.
    pub(crate) fn outage(&self, ms: u64) {
        *self.down_until.lock().unwrap() = Some(self.truth.now() + chrono::Duration::milliseconds(ms as i64));
    }
}

#[async_trait::async_trait]
impl Hooks for Probe {
    async fn before_commit(&self, batch: &mut Batch) -> protopay::storage::Result<()> {
        if self.down_until.lock().unwrap().is_some_and(|t| self.truth.now() < t) {
            return Err(Injected("the store is down").into());
        }
        {
            let mut fail = self.fail_in.lock().unwrap();
            match *fail {
                Some(1) => {
                    *fail = None;
                    *self.failing.lock().unwrap() = 1;
                }
                Some(n) => *fail = Some(n - 1),
                None => {}
            }
        }
        if self.round_trip {
            for p in &mut batch.protocols {
                p.value = round_trip(p.value.clone());
            }
            for o in &mut batch.orders {
                o.value = round_trip(o.value.clone());
            }
            batch.events = std::mem::take(&mut batch.events).into_iter().map(round_trip).collect();
            batch.orphans = std::mem::take(&mut batch.orphans).into_iter().map(round_trip).collect();
        }
        if *self.failing.lock().unwrap() > 0 {
            // A failing store takes its time too, and the failure is drawn when the commit
            // reaches it.
            tokio::task::yield_now().await;
            let mut failing = self.failing.lock().unwrap();
            if *failing > 0 {
                *failing -= 1;
                return Err(Injected("this commit fails").into());
            }
        }
        Ok(())
    }

    async fn after_commit(&self, batch: &Batch, _: u64) {
        // The due-time invariant, at every commit: an open order has a due time, a closed
        // one none.
        for (key, at) in &batch.schedule {
            if let Ok(Some(o)) = self.auditor.order(key).await
                && o.value.is_open() != at.is_some()
            {
                violate(
                    &self.violation,
                    format!("{key} is {} and was given due time {at:?}", o.value.state_label()),
                );
            }
        }
        if let Some(pause) = self.draw_pause() {
            trace(format!("  a committer freezes for {} ms", pause.as_millis()));
            tokio::time::sleep(pause).await;
        }
    }

    async fn before_claim(&self) -> protopay::storage::Result<()> {
        let n = self
            .passes
            .lock()
            .unwrap()
            .hit(self.truth.now(), chrono::Duration::seconds(60));
        if n > self.pass_budget {
            violate(&self.violation, format!("poller: {n} passes within a simulated minute"));
        }
        if self.violation.lock().unwrap().is_some() {
            // Stop the spin so that simulated time moves on and the auditor can report it.
            return Err(StorageError::Closed);
        }
        Ok(())
    }
}
