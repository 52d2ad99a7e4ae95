//! The engine's clock: wall time that advances with tokio's clock.
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
        Clock { wall, start: Instant::now() }
    }

    /// Now.
    pub fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.start.elapsed()).unwrap_or(chrono::Duration::MAX);
        self.wall.checked_add_signed(elapsed).unwrap_or(self.wall)
    }
}
