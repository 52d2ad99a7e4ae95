//! Holds: who holds what until when, for stores that one process owns (memory, sled). The
//! one mechanism behind two things: **claims** of due orders by a poller
//! (`Storage::claim_due`), and named **leases** on work one instance at a time must do
//! (`Storage::hold_lease`, with a fencing epoch).
//!
//! Several engines on one shared store split the due work by claiming orders for a while; a
//! store that only one process opens has one owner at a time, but a restarted engine is a new
//! owner, and the claims of the one before it must run out before it takes their orders — as
//! on a shared store when an instance dies. Holds are kept in memory on tokio's monotonic
//! clock (a wall clock stepped back cannot stretch them), and are an efficiency measure
//! only: versions are what make a double send impossible.

use super::Due;
use super::Result;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// The holds one store keeps, by what is held (an `outReqNo`, a lease's name).
#[derive(Debug, Default)]
pub struct Holds(Mutex<HashMap<String, Hold>>);

#[derive(Debug)]
struct Hold {
    owner: String,
    until: Instant,
    /// Named leases: how many times it has changed hands (see `Storage::hold_lease`).
    epoch: u64,
}

impl Holds {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Hold>> {
        // Each update is one insert or remove: a poisoned map is still consistent.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claim for `owner`, from due entries in time order, up to `limit` not held by another
    /// owner; each claimed entry is held by `owner` for `claim`.
    pub fn claim(
        &self,
        owner: &str,
        claim: Duration,
        limit: usize,
        due: impl IntoIterator<Item = Result<Due>>,
    ) -> Result<Vec<Due>> {
        let mut holds = self.lock();
        let now = Instant::now();
        let mut claimed = Vec::new();
        for entry in due {
            if claimed.len() >= limit {
                break;
            }
            let entry = entry?;
            if held_by_another(&holds, &entry.out_req_no, owner, now) {
                continue;
            }
            holds.insert(
                entry.out_req_no.clone(),
                Hold {
                    owner: owner.to_owned(),
                    until: now + claim,
                    epoch: 0,
                },
            );
            claimed.push(entry);
        }
        if holds.len() > claimed.len().saturating_mul(4).max(1024) {
            holds.retain(|_, l| l.until > now);
        }
        Ok(claimed)
    }

    /// The first of the due entries (in time order) that `owner` could claim.
    pub fn first_free(&self, owner: &str, due: impl IntoIterator<Item = Result<Due>>) -> Result<Option<DateTime<Utc>>> {
        let holds = self.lock();
        let now = Instant::now();
        for entry in due {
            let entry = entry?;
            if !held_by_another(&holds, &entry.out_req_no, owner, now) {
                return Ok(Some(entry.at));
            }
        }
        Ok(None)
    }

    /// End every hold `owner` has (they run out now; named leases keep their epochs).
    pub fn release_owner(&self, owner: &str) {
        let now = Instant::now();
        for l in self.lock().values_mut().filter(|l| l.owner == owner) {
            l.until = now;
        }
    }

    /// Take the lease `name` for `owner` (free, run out, or already `owner`'s), or renew it:
    /// its fencing epoch while `owner` holds it, which grows whenever it changes hands.
    pub fn hold(&self, name: &str, owner: &str, lease: Duration) -> Option<u64> {
        let mut leases = self.lock();
        let now = Instant::now();
        if held_by_another(&leases, name, owner, now) {
            return None;
        }
        let epoch = match leases.get(name) {
            Some(l) if l.owner == owner => l.epoch,
            Some(l) => l.epoch + 1,
            None => 1,
        };
        leases.insert(
            name.to_owned(),
            Hold {
                owner: owner.to_owned(),
                until: now + lease,
                epoch,
            },
        );
        Some(epoch)
    }

    /// End an order's lease: its schedule was rewritten, so whoever polls next claims anew.
    pub fn release(&self, out_req_no: &str) {
        self.lock().remove(out_req_no);
    }
}

fn held_by_another(leases: &HashMap<String, Hold>, key: &str, owner: &str, now: Instant) -> bool {
    leases.get(key).is_some_and(|l| l.owner != owner && l.until > now)
}
