//! The engine's clock: wall time that advances with tokio's clock.
//!
//! The wall clock is read once, when the clock is made; from then on it advances by the
//! monotonic clock only. So an NTP step while the engine runs changes nothing it computes
//! (due times, ages), and across a restart [`Clock::not_before`] keeps it from starting
//! behind what the store already holds. The safety rules (the grace period before a resend)
//! do not rely on it at all: they measure `tokio::time::Instant`s.
//!
//! Anchoring wall time to `tokio::time::Instant` means that under tokio's paused test clock
//! the engine's notion of "now" (stored in records, compared with grace periods) advances
//! exactly as virtual time does — hours of retries run in milliseconds, deterministically.

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// Wall time derived from a start point plus tokio's monotonic elapsed time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall: DateTime<Utc>,
    start: Instant,
}

impl Clock {
    /// Starting now.
    pub fn system() -> Self {
        Clock::starting_at(Utc::now())
    }

    /// Starting at a fixed wall time (tests, simulations).
    pub fn starting_at(wall: DateTime<Utc>) -> Self {
        Clock {
            wall,
            start: Instant::now(),
        }
    }

    /// The same clock, moved forward if need be so that it does not read earlier than
    /// `floor` now: a process restarted on a host whose wall clock stepped back does not
    /// stamp, or schedule, behind what was already stored.
    pub fn not_before(self, floor: DateTime<Utc>) -> Self {
        let now = self.now();
        if now >= floor {
            return self;
        }
        Clock {
            wall: self.wall.checked_add_signed(floor - now).unwrap_or(self.wall),
            start: self.start,
        }
    }

    /// Now.
    pub fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.start.elapsed()).unwrap_or(chrono::Duration::MAX);
        self.wall.checked_add_signed(elapsed).unwrap_or(self.wall)
    }
}
