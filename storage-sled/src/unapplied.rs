//! Groups that are durable in the write-ahead log but not yet applied to sled: an overlay
//! that every read looks through, so that sled's writes happen after the callers are
//! answered, off the commit path.
//!
//! A commit is visible the moment its group is logged: the leader puts the group here before
//! it answers anyone, and an applier takes the groups out again, oldest first, once sled holds
//! them. Each key remembers the last group that wrote it; applying group `n` removes only the
//! keys whose last writer is `n`, so a key never reads older than it was.
//!
//! Why a read is never stale:
//! - a point read looks here first, then in sled. A key leaves here only after sled holds its
//!   value, so a key found in neither place was in neither when the read began;
//! - a range read copies the overlay's part of the range first, then walks sled's, the
//!   overlay's value winning where both have a key. What the copy misses was applied before
//!   it was taken, so sled's walk finds it. Like sled's own iterators, a range read is not a
//!   snapshot: a group logged during the walk may show in part.
//!
//! The leader waits when the groups waiting for sled hold [`MAX_UNAPPLIED_KEYS`] writes, so a
//! slow sled slows commits rather than filling memory, and a checkpoint (which waits for sled
//! to hold everything logged, holding commits meanwhile) never waits long. If sled fails to apply a group, its writes stay here (reads
//! stay right) and the store takes no more commits: the log holds the group, and a restart's
//! replay sets sled right.

use crate::wal::{Logged, Writes};
use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Condvar, Mutex, MutexGuard};

/// Writes of groups logged but not applied, at most; the leader waits for the applier beyond
/// it. About 10–40 ms of sled's work here: what a checkpoint may have to wait for.
pub(crate) const MAX_UNAPPLIED_KEYS: usize = 4_096;

/// A key and its final value (`None`: removed), as a group writes it.
pub(crate) type Write = (Vec<u8>, Option<Vec<u8>>);

/// One logged group, waiting for sled.
pub(crate) struct LoggedGroup {
    /// Its number: groups are numbered in the order they are logged, from 1.
    pub(crate) number: u64,
    pub(crate) writes: Writes,
    /// Where it ends in the log, stored in sled with its writes (`codec::logged_key`).
    pub(crate) logged: Logged,
}

/// The overlay, shared by the leader, the applier and every reader.
#[derive(Default)]
pub(crate) struct Unapplied {
    state: Mutex<State>,
    /// Signalled whenever a group is applied, or applying stops.
    changed: Condvar,
    /// Tests: start no applier of its own accord, so that reads go through the overlay.
    /// Groups are then applied only when the leader waits for room, and before a
    /// checkpoint, by whoever waits.
    #[cfg(test)]
    held: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct State {
    /// Every key a waiting group wrote: the number of the last group that wrote it, and its
    /// value then (`None` = removed).
    latest: BTreeMap<Vec<u8>, (u64, Option<Vec<u8>>)>,
    /// The groups, oldest first (the one being applied is no longer here), and how many
    /// writes they hold.
    waiting: VecDeque<LoggedGroup>,
    waiting_keys: usize,
    /// Groups logged so far, and applied so far: all are in sled when the two are equal.
    logged: u64,
    applied: u64,
    /// Whether a thread is applying: then it goes on until none waits.
    applying: bool,
    /// sled failed to apply a group: nothing more is applied in this process.
    failed: Option<sled::Error>,
}

/// What a wait for the applier found.
pub(crate) enum Wait {
    /// What was waited for has happened.
    Done,
    /// Nobody is applying: the caller must apply (it now holds the applier's role).
    ApplyYourself,
}

impl Unapplied {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value of `key` if a waiting group wrote it: `Some(None)` if it removed it.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Option<Vec<u8>>> {
        self.state().latest.get(key).map(|(_, value)| value.clone())
    }

    /// What waiting groups wrote in `start..end` (to the end of the keys if `end` is `None`),
    /// in key order.
    pub(crate) fn range(&self, start: &[u8], end: Option<&[u8]>) -> Vec<Write> {
        let state = self.state();
        if state.latest.is_empty() {
            return Vec::new();
        }
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        state
            .latest
            .range::<[u8], _>((Bound::Included(start), upper))
            .map(|(key, (_, value))| (key.clone(), value.clone()))
            .collect()
    }

    /// Add a group just made durable in the log: visible to every read from now on.
    pub(crate) fn push(&self, writes: Writes, logged: Logged) {
        let mut state = self.state();
        state.logged += 1;
        let number = state.logged;
        for (key, value) in &writes {
            state.latest.insert(key.clone(), (number, value.clone()));
        }
        state.waiting_keys += writes.len();
        state.waiting.push_back(LoggedGroup { number, writes, logged });
    }

    /// Tests: see [`Unapplied::held`].
    #[cfg(test)]
    pub(crate) fn hold(&self) {
        self.held.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Take the applier's role if nobody holds it and a group waits.
    pub(crate) fn start_applying(&self) -> bool {
        #[cfg(test)]
        if self.held.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        let mut state = self.state();
        let start = !state.applying && !state.waiting.is_empty() && state.failed.is_none();
        state.applying |= start;
        start
    }

    /// The applier's next groups: every one waiting, oldest first; `None` (and the role given
    /// up) when none waits.
    pub(crate) fn next(&self) -> Option<Vec<LoggedGroup>> {
        let mut state = self.state();
        if state.waiting.is_empty() {
            state.applying = false;
            self.changed.notify_all();
            return None;
        }
        state.waiting_keys = 0;
        Some(state.waiting.drain(..).collect())
    }

    /// sled now holds `group`: its keys that no later group wrote leave the overlay.
    pub(crate) fn applied(&self, group: &LoggedGroup) {
        let mut state = self.state();
        for (key, _) in &group.writes {
            if state.latest.get(key).is_some_and(|(last, _)| *last == group.number) {
                state.latest.remove(key);
            }
        }
        state.applied = group.number;
        self.changed.notify_all();
    }

    /// sled failed to apply `groups`: they go back to the front (their writes never left the
    /// overlay), and applying stops for good.
    pub(crate) fn failed(&self, groups: Vec<LoggedGroup>, error: sled::Error) {
        let mut state = self.state();
        for group in groups.into_iter().rev() {
            state.waiting_keys += group.writes.len();
            state.waiting.push_front(group);
        }
        state.failed = Some(error);
        state.applying = false;
        self.changed.notify_all();
    }

    /// Whether a group can be added now without waiting for the applier.
    pub(crate) fn has_room(&self) -> bool {
        let state = self.state();
        state.waiting_keys < MAX_UNAPPLIED_KEYS && state.failed.is_none()
    }

    /// Why nothing more can be applied, if sled failed.
    pub(crate) fn failure(&self) -> Option<sled::Error> {
        self.state().failed.clone()
    }

    /// Wait until every group logged so far is in sled.
    pub(crate) fn wait_all_applied(&self) -> Result<Wait, sled::Error> {
        self.wait_until(|s| s.applied == s.logged)
    }

    /// Wait until the groups waiting hold fewer than [`MAX_UNAPPLIED_KEYS`] writes.
    pub(crate) fn wait_for_room(&self) -> Result<Wait, sled::Error> {
        self.wait_until(|s| s.waiting_keys < MAX_UNAPPLIED_KEYS)
    }

    fn wait_until(&self, done: impl Fn(&State) -> bool) -> Result<Wait, sled::Error> {
        let mut state = self.state();
        loop {
            if done(&state) {
                return Ok(Wait::Done);
            }
            if let Some(e) = &state.failed {
                return Err(e.clone());
            }
            if !state.applying {
                state.applying = true;
                return Ok(Wait::ApplyYourself);
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// A key range as the store holds it: `over` (the overlay's part of the range, in key order)
/// over `under` (sled's walk of it, in the same direction), the overlay winning where both
/// hold a key and its removals hiding sled's entries. `reverse` walks from the last key.
pub(crate) fn merged<I>(
    over: Vec<Write>,
    under: I,
    reverse: bool,
) -> impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>
where
    I: Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
{
    let mut over: Box<dyn Iterator<Item = Write>> = if reverse {
        Box::new(over.into_iter().rev())
    } else {
        Box::new(over.into_iter())
    };
    let mut under = under.peekable();
    let mut next_over = over.next();
    std::iter::from_fn(move || {
        loop {
            let first_is_over = match (&next_over, under.peek()) {
                (None, None) => return None,
                (None, Some(_)) => false,
                (Some(_), None) => true,
                // An error from sled surfaces in its place.
                (Some(_), Some(Err(_))) => false,
                (Some((o, _)), Some(Ok((u, _)))) => {
                    let order = o.as_slice().cmp(u.as_ref());
                    if order == std::cmp::Ordering::Equal {
                        under.next(); // the overlay's value is the newer one
                        true
                    } else {
                        (order == std::cmp::Ordering::Less) != reverse
                    }
                }
            };
            if !first_is_over {
                return under.next();
            }
            let (key, value) = next_over.take()?;
            next_over = over.next();
            if let Some(value) = value {
                return Some(Ok((key.into(), value.into())));
            }
            // A removal: nothing to yield for this key.
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Map = BTreeMap<Vec<u8>, Vec<u8>>;

    fn sled_walk(map: &Map, reverse: bool) -> Vec<sled::Result<(sled::IVec, sled::IVec)>> {
        let mut out: Vec<_> = map
            .iter()
            .map(|(k, v)| Ok((k.as_slice().into(), v.as_slice().into())))
            .collect();
        if reverse {
            out.reverse();
        }
        out
    }

    proptest! {
        /// The merged walk is exactly the map sled would hold with the overlay applied, in
        /// either direction.
        #[test]
        fn a_merged_walk_is_sled_with_the_overlay_applied(
            under in proptest::collection::btree_map(proptest::collection::vec(0u8..4, 1..3), any::<u8>().prop_map(|b| vec![b]), 0..12),
            over in proptest::collection::btree_map(proptest::collection::vec(0u8..4, 1..3), proptest::option::of(any::<u8>().prop_map(|b| vec![b])), 0..12),
            reverse in any::<bool>(),
        ) {
            let mut expected = under.clone();
            for (k, v) in &over {
                match v {
                    Some(v) => expected.insert(k.clone(), v.clone()),
                    None => expected.remove(k),
                };
            }
            let got: Vec<(Vec<u8>, Vec<u8>)> = merged(over.into_iter().collect(), sled_walk(&under, reverse).into_iter(), reverse)
                .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                .collect();
            let mut want: Vec<(Vec<u8>, Vec<u8>)> = expected.into_iter().collect();
            if reverse {
                want.reverse();
            }
            prop_assert_eq!(got, want);
        }
    }

    fn group(key: &[u8], value: Option<&[u8]>) -> Writes {
        vec![(key.to_vec(), value.map(<[u8]>::to_vec))]
    }

    const AT: Logged = Logged { epoch: 1, end: 0 };

    #[test]
    fn a_key_leaves_the_overlay_only_with_the_last_group_that_wrote_it() {
        let u = Unapplied::default();
        u.push(group(b"k", Some(b"1")), AT);
        u.push(group(b"k", Some(b"2")), AT);
        assert!(u.start_applying());
        assert!(!u.start_applying(), "one applier at a time");
        let both = u.next().unwrap();
        assert_eq!(both.len(), 2, "every group waiting, oldest first");
        u.applied(&both[0]);
        assert_eq!(
            u.get(b"k"),
            Some(Some(b"2".to_vec())),
            "the newer value stays until applied"
        );
        u.applied(&both[1]);
        assert_eq!(u.get(b"k"), None);
        assert!(u.next().is_none());
        assert!(matches!(u.wait_all_applied(), Ok(Wait::Done)));
    }

    #[test]
    fn a_failed_group_stays_visible_and_stops_the_store() {
        let u = Unapplied::default();
        u.push(group(b"k", None), AT);
        assert!(u.start_applying());
        let groups = u.next().unwrap();
        u.failed(groups, sled::Error::Unsupported("test".into()));
        assert_eq!(u.get(b"k"), Some(None));
        assert!(u.wait_all_applied().is_err());
        assert!(!u.start_applying());
        assert!(u.failure().is_some());
    }

    #[test]
    fn a_wait_with_nobody_applying_hands_the_role_to_the_waiter() {
        let u = Unapplied::default();
        u.push(group(b"k", Some(b"1")), AT);
        u.hold();
        assert!(!u.start_applying(), "held: nobody applies of their own accord");
        assert!(matches!(u.wait_all_applied(), Ok(Wait::ApplyYourself)));
    }
}
