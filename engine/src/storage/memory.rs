//! `MemoryStorage`: the whole store in one mutex. The default for tests, and for hosts that
//! bring their own persistence later. Not durable across a process restart; "reopening" it
//! is sharing the same handle (it is `Clone`).

use super::{
    Batch, Due, Exchange, Holds, MAX_EXCHANGES_PER_ORDER, OrderQuery, Orphan, Result, Storage, StorageError, Versioned,
};
use crate::domain::{Listing, Order, Protocol};
use crate::event::Event;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

#[derive(Default)]
struct State {
    protocols: BTreeMap<String, Versioned<Protocol>>,
    orders: BTreeMap<String, Versioned<Order>>,
    by_protocol: HashMap<String, BTreeSet<String>>,
    by_listing: HashMap<Listing, BTreeSet<String>>,
    /// Each order's events, as indexes into `events`.
    history: HashMap<String, Vec<usize>>,
    /// The audit records, as indexes into `events`, oldest first.
    audit: Vec<usize>,
    /// Each order's exchanges, oldest first.
    exchanges: HashMap<String, Vec<Exchange>>,
    due: BTreeSet<(DateTime<Utc>, String)>,
    due_at: HashMap<String, DateTime<Utc>>,
    events: Vec<Event>,
    cursors: BTreeMap<String, u64>,
    orphans: Vec<Orphan>,
    orphan_signs: HashSet<String>,
    /// Idempotency key → `transNo`.
    openings: HashMap<String, String>,
}

/// In-memory [`Storage`].
#[derive(Clone, Default)]
pub struct MemoryStorage {
    state: Arc<Mutex<State>>,
    claims: Arc<Holds>,
    leases: Arc<Holds>,
    /// This handle lets other tasks run before each call (see `yielding`).
    yielding: bool,
}

impl std::fmt::Debug for MemoryStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStorage").finish_non_exhaustive()
    }
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Another handle on the same store, whose every call first lets other tasks run, as a
    /// real store's latency would: on one thread, tasks then interleave between one call and
    /// the next, so that simulations make readers race writers. A plain handle on the same
    /// store still reads everything at one moment (an auditor's view).
    pub fn yielding(&self) -> Self {
        MemoryStorage {
            yielding: true,
            ..self.clone()
        }
    }

    async fn call(&self) {
        if self.yielding {
            tokio::task::yield_now().await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied batch (commit checks
        // everything before it writes), so a poisoned lock's data is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The due index up to `now`, earliest first.
fn due_until(s: &State, now: DateTime<Utc>) -> impl Iterator<Item = Result<Due>> + '_ {
    s.due.iter().take_while(move |(at, _)| *at <= now).map(|(at, key)| {
        Ok(Due {
            at: *at,
            out_req_no: key.clone(),
        })
    })
}

/// The keys after a page's cursor, as a range of a sorted map or set.
fn after(cursor: Option<&str>) -> (Bound<&str>, Bound<&str>) {
    (cursor.map_or(Bound::Unbounded, Bound::Excluded), Bound::Unbounded)
}

fn check_version<T>(current: Option<&Versioned<T>>, expected: Option<u64>) -> Result<u64> {
    match (current.map(|v| v.version), expected) {
        (None, None) => Ok(1),
        (Some(have), Some(want)) if have == want => Ok(have + 1),
        _ => Err(StorageError::Conflict),
    }
}

#[async_trait::async_trait]
impl Storage for MemoryStorage {
    async fn protocol(&self, trans_no: &str) -> Result<Option<Versioned<Protocol>>> {
        self.call().await;
        Ok(self.lock().protocols.get(trans_no).cloned())
    }

    async fn order(&self, out_req_no: &str) -> Result<Option<Versioned<Order>>> {
        self.call().await;
        Ok(self.lock().orders.get(out_req_no).cloned())
    }

    async fn protocols(&self, after: Option<&str>, limit: usize) -> Result<Vec<Versioned<Protocol>>> {
        self.call().await;
        let s = self.lock();
        Ok(s.protocols
            .range::<str, _>(self::after(after))
            .take(limit)
            .map(|(_, p)| p.clone())
            .collect())
    }

    async fn orders(&self, query: &OrderQuery, after: Option<&str>, limit: usize) -> Result<Vec<Versioned<Order>>> {
        self.call().await;
        let s = self.lock();
        let range = self::after(after);
        let keys: Box<dyn Iterator<Item = &String>> = match (&query.trans_no, query.listing) {
            (Some(t), _) => Box::new(
                s.by_protocol
                    .get(t)
                    .into_iter()
                    .flat_map(move |k| k.range::<str, _>(range)),
            ),
            (None, Some(l)) => Box::new(
                s.by_listing
                    .get(&l)
                    .into_iter()
                    .flat_map(move |k| k.range::<str, _>(range)),
            ),
            (None, None) => Box::new(s.orders.range::<str, _>(range).map(|(k, _)| k)),
        };
        Ok(keys
            .filter_map(|k| s.orders.get(k))
            .filter(|o| query.listing.is_none_or(|l| o.value.listings().any(|x| x == l)))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn listing_counts(&self) -> Result<Vec<(Listing, u64)>> {
        self.call().await;
        // The listing's set is kept by every commit, and knows its size.
        let s = self.lock();
        let size = |l: &Listing| s.by_listing.get(l).map_or(0, |keys| keys.len() as u64);
        Ok(Listing::ALL.into_iter().map(|l| (l, size(&l))).collect())
    }

    async fn history(&self, out_req_no: &str) -> Result<Vec<Event>> {
        self.call().await;
        let s = self.lock();
        let seqs = s.history.get(out_req_no).into_iter().flatten();
        Ok(seqs.filter_map(|&i| s.events.get(i).cloned()).collect())
    }

    async fn audit(&self, before: Option<u64>, limit: usize) -> Result<Vec<Event>> {
        self.call().await;
        let s = self.lock();
        let newest_first = s.audit.iter().rev().filter_map(|&i| s.events.get(i));
        Ok(newest_first
            .filter(|e| before.is_none_or(|b| e.seq < b))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn exchanges(&self, out_req_no: &str) -> Result<Vec<Exchange>> {
        self.call().await;
        Ok(self.lock().exchanges.get(out_req_no).cloned().unwrap_or_default())
    }

    async fn due_at(&self, out_req_no: &str) -> Result<Option<DateTime<Utc>>> {
        self.call().await;
        Ok(self.lock().due_at.get(out_req_no).copied())
    }

    async fn commit(&self, batch: Batch) -> Result<u64> {
        self.call().await;
        let mut s = self.lock();
        // Check every version before writing anything: all or nothing.
        let mut protocol_versions = Vec::with_capacity(batch.protocols.len());
        for p in &batch.protocols {
            protocol_versions.push(check_version(s.protocols.get(&p.value.trans_no), p.expected)?);
        }
        let mut order_versions = Vec::with_capacity(batch.orders.len());
        for o in &batch.orders {
            order_versions.push(check_version(s.orders.get(o.value.out_req_no()), o.expected)?);
        }
        if batch
            .openings
            .iter()
            .any(|o| s.openings.contains_key(&o.idempotency_key))
        {
            return Err(StorageError::Conflict);
        }
        for (p, version) in batch.protocols.into_iter().zip(protocol_versions) {
            s.protocols.insert(
                p.value.trans_no.clone(),
                Versioned {
                    version,
                    value: p.value,
                },
            );
        }
        for (o, version) in batch.orders.into_iter().zip(order_versions) {
            let key = o.value.out_req_no().to_owned();
            let old: Vec<Listing> = s
                .orders
                .get(&key)
                .map(|o| o.value.listings().collect())
                .unwrap_or_default();
            for l in old {
                s.by_listing.entry(l).or_default().remove(&key);
            }
            for l in o.value.listings() {
                s.by_listing.entry(l).or_default().insert(key.clone());
            }
            s.by_protocol
                .entry(o.value.trans_no().to_owned())
                .or_default()
                .insert(key.clone());
            s.orders.insert(
                key,
                Versioned {
                    version,
                    value: o.value,
                },
            );
        }
        for mut e in batch.events {
            e.seq = s.events.len() as u64 + 1;
            let at = s.events.len();
            if let Some(order) = &e.out_req_no {
                s.history.entry(order.clone()).or_default().push(at);
            }
            if e.kind.is_audit() {
                s.audit.push(at);
            }
            s.events.push(e);
        }
        for exchange in batch.exchanges {
            let kept = s.exchanges.entry(exchange.out_req_no.clone()).or_default();
            if kept.len() < MAX_EXCHANGES_PER_ORDER {
                kept.push(exchange);
            }
        }
        for (key, at) in batch.schedule {
            self.claims.release(&key);
            if let Some(old) = s.due_at.remove(&key) {
                s.due.remove(&(old, key.clone()));
            }
            if let Some(at) = at {
                s.due.insert((at, key.clone()));
                s.due_at.insert(key, at);
            }
        }
        for o in batch.orphans {
            if s.orphan_signs.insert(o.sign.clone()) {
                s.orphans.push(o);
            }
        }
        for o in batch.openings {
            s.openings.insert(o.idempotency_key, o.trans_no);
        }
        Ok(s.events.len() as u64)
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Due>> {
        self.call().await;
        due_until(&self.lock(), now).take(limit).collect()
    }

    async fn claim_due(&self, owner: &str, now: DateTime<Utc>, limit: usize, claim: Duration) -> Result<Vec<Due>> {
        self.call().await;
        self.claims.claim(owner, claim, limit, due_until(&self.lock(), now))
    }

    async fn hold_lease(&self, name: &str, owner: &str, lease: Duration) -> Result<Option<u64>> {
        self.call().await;
        Ok(self.leases.hold(name, owner, lease))
    }

    async fn release_all(&self, owner: &str) -> Result<()> {
        self.call().await;
        self.claims.release_owner(owner);
        self.leases.release_owner(owner);
        Ok(())
    }

    async fn next_due(&self, owner: &str) -> Result<Option<DateTime<Utc>>> {
        self.call().await;
        self.claims
            .first_free(owner, due_until(&self.lock(), DateTime::<Utc>::MAX_UTC))
    }

    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>> {
        self.call().await;
        let s = self.lock();
        let start = usize::try_from(after).unwrap_or(usize::MAX).min(s.events.len());
        Ok(s.events.iter().skip(start).take(limit).cloned().collect())
    }

    async fn last_seq(&self) -> Result<u64> {
        self.call().await;
        Ok(self.lock().events.len() as u64)
    }

    async fn count_after(&self, after: u64, cap: usize) -> Result<usize> {
        self.call().await;
        let written = self.lock().events.len();
        Ok(written
            .saturating_sub(usize::try_from(after).unwrap_or(usize::MAX))
            .min(cap))
    }

    async fn events_before(&self, before: u64, limit: usize) -> Result<Vec<Event>> {
        self.call().await;
        let s = self.lock();
        let end = usize::try_from(before.saturating_sub(1))
            .unwrap_or(usize::MAX)
            .min(s.events.len());
        Ok(s.events[..end].iter().rev().take(limit).cloned().collect())
    }

    async fn cursor(&self, consumer: &str) -> Result<u64> {
        self.call().await;
        Ok(self.lock().cursors.get(consumer).copied().unwrap_or(0))
    }

    async fn ack(&self, consumer: &str, seq: u64) -> Result<()> {
        self.call().await;
        let mut s = self.lock();
        let last = s.events.len() as u64;
        let c = s.cursors.entry(consumer.to_owned()).or_insert(0);
        *c = (*c).max(seq.min(last));
        Ok(())
    }

    async fn opening(&self, idempotency_key: &str) -> Result<Option<String>> {
        self.call().await;
        Ok(self.lock().openings.get(idempotency_key).cloned())
    }

    async fn orphans(&self) -> Result<Vec<Orphan>> {
        self.call().await;
        Ok(self.lock().orphans.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_storage_conforms() {
        super::super::conformance::run(MemoryStorage::new).await;
    }
}
