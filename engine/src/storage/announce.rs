//! What other processes' commits on a shared store announce, so that an engine looks again
//! only where something changed for it: its event subscriptions when events were appended,
//! its poller when an order became due sooner than the poller planned to wake. Gathered until
//! taken, so a burst of commits is one wake-up, and idle engines cost the database nothing.
//!
//! Only hints: the stored data is the truth. A store that may have missed some (a lost
//! listening connection) announces [`Announced::EVERYTHING`].

use chrono::{DateTime, Utc};
use std::sync::Mutex;
use tokio::sync::Notify;

/// What commits elsewhere announced since the last [`Announcements::next`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Announced {
    /// Some appended events.
    pub events: bool,
    /// The soonest time at which one of them scheduled an order's poll.
    pub soonest_due: Option<DateTime<Utc>>,
}

impl Announced {
    /// Anything may have changed: look at everything now.
    pub const EVERYTHING: Announced = Announced {
        events: true,
        soonest_due: Some(DateTime::<Utc>::MIN_UTC),
    };

    /// Both announcements in one.
    pub fn merge(self, other: Announced) -> Announced {
        Announced {
            events: self.events || other.events,
            soonest_due: match (self.soonest_due, other.soonest_due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }

    fn is_empty(&self) -> bool {
        *self == Announced::default()
    }

    /// As a shared store's notification payload: `e` when events were appended, then `d`
    /// and the soonest poll scheduled, in Unix milliseconds. Empty when there is no news.
    pub fn to_payload(&self) -> String {
        let mut out = String::new();
        if self.events {
            out.push('e');
        }
        if let Some(at) = self.soonest_due {
            out.push('d');
            out.push_str(&at.timestamp_millis().to_string());
        }
        out
    }

    /// A payload read back. Whoever may connect to the store can notify on its channel: a
    /// payload that is not one of ours announces [`EVERYTHING`](Self::EVERYTHING) — a wasted
    /// look, never a missed one.
    pub fn from_payload(payload: &str) -> Announced {
        let (events, rest) = match payload.strip_prefix('e') {
            Some(rest) => (true, rest),
            None => (false, payload),
        };
        let soonest_due = match rest.strip_prefix('d') {
            None if rest.is_empty() => None,
            Some(ms) if ms.bytes().all(|b| b.is_ascii_digit() || b == b'-') => {
                match ms.parse().ok().and_then(DateTime::from_timestamp_millis) {
                    Some(at) => Some(at),
                    None => return Announced::EVERYTHING,
                }
            }
            _ => return Announced::EVERYTHING,
        };
        Announced { events, soonest_due }
    }
}

/// A mailbox of [`Announced`]: the store's listener adds, the engine takes.
#[derive(Debug, Default)]
pub struct Announcements {
    pending: Mutex<Announced>,
    arrived: Notify,
}

impl Announcements {
    /// Add what a commit elsewhere announced.
    pub fn announce(&self, announced: Announced) {
        if announced.is_empty() {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        *pending = pending.merge(announced);
        // Stores a permit when nobody waits: an announcement is never lost between takes.
        self.arrived.notify_one();
    }

    /// Everything announced since the last call, waiting until there is something.
    pub async fn next(&self) -> Announced {
        loop {
            let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
            if !taken.is_empty() {
                return taken;
            }
            self.arrived.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_payload_reads_back_as_what_was_announced(events: bool, ms in proptest::option::of(-62_000_000_000_000i64..253_000_000_000_000)) {
            let soonest_due = ms.and_then(DateTime::from_timestamp_millis);
            let sent = Announced { events, soonest_due };
            prop_assert_eq!(Announced::from_payload(&sent.to_payload()), sent);
        }
    }

    #[test]
    fn a_payload_not_of_ours_announces_everything() {
        for odd in [
            "x",
            "d",
            "ee",
            "de",
            "d12x",
            "e d1",
            "d+1",
            "d99999999999999999999",
            "é",
        ] {
            assert_eq!(Announced::from_payload(odd), Announced::EVERYTHING, "{odd:?}");
        }
        assert_eq!(Announced::from_payload(""), Announced::default());
    }

    #[tokio::test]
    async fn announcements_gather_until_taken_and_keep_the_soonest_time() {
        let box_ = Announcements::default();
        let t = |s| DateTime::from_timestamp(s, 0);
        box_.announce(Announced {
            events: false,
            soonest_due: t(20),
        });
        box_.announce(Announced {
            events: true,
            soonest_due: t(10),
        });
        box_.announce(Announced::default());
        box_.announce(Announced {
            events: false,
            soonest_due: t(30),
        });
        assert_eq!(
            box_.next().await,
            Announced {
                events: true,
                soonest_due: t(10)
            }
        );
        box_.announce(Announced {
            events: true,
            soonest_due: None,
        });
        assert_eq!(
            box_.next().await,
            Announced {
                events: true,
                soonest_due: None
            }
        );
    }
}
