//! Faults on demand, and the seeded randomness that drives them.

use serde::{Deserialize, Serialize};

/// SplitMix64: a tiny, well-known seeded generator. The simulator needs reproducible
/// sequences, not cryptographic ones.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi]`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi.saturating_sub(lo) + 1)
    }
}

/// One fault: fires with a probability, or on each of the next `once` occasions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Fault {
    /// Chance per occasion, 0 to 1.
    pub probability: f64,
    /// One-shot triggers: the next `once` occasions fire for sure.
    pub once: u32,
}

impl Fault {
    /// Whether it fires now (consuming a one-shot if there is one).
    pub fn fire(&mut self, rng: &mut Rng) -> bool {
        if self.once > 0 {
            self.once -= 1;
            return true;
        }
        // Draw only when armed, so that turning a fault off leaves the sequence unchanged.
        self.probability > 0.0 && rng.unit() < self.probability
    }

    /// A fault that fires on the next `n` occasions.
    pub fn once(n: u32) -> Self {
        Fault {
            probability: 0.0,
            once: n,
        }
    }

    /// A fault that fires with probability `p`.
    pub fn chance(p: f64) -> Self {
        Fault {
            probability: p,
            once: 0,
        }
    }
}

/// Every fault the simulator can inject. Set with [`crate::Sim::set_faults`] or
/// `POST /sim/faults` (fields left out keep their defaults: off).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// A callback is never sent.
    pub drop_callback: Fault,
    /// A callback is sent twice.
    pub duplicate_callback: Fault,
    /// A callback is sent `delay_ms` late.
    pub delay_callback: Fault,
    /// A callback is held back so that later ones overtake it.
    pub reorder_callback: Fault,
    /// A call is answered HTTP 500 without being handled.
    pub http_500: Fault,
    /// A call is handled and committed, but never answered.
    pub timeout_after_commit: Fault,
    /// A reply's sign is corrupted.
    pub corrupt_sign: Fault,
    /// A call is refused before it arrives (connection refused).
    pub refuse_connection: Fault,
    /// In-process only: a call reaches the payment system late, after the caller gave up
    /// (the caller sees a timeout; the call is handled up to `late_ms` later) — a sender
    /// paused between its check and its write, or a network that held the request.
    pub late_arrival: Fault,
    /// The longest delay of a late arrival (ms). Any length: longer than the caller's grace
    /// period is what a paused process or a partition healing looks like.
    pub late_ms: u64,
    /// A repeated `outpay` with the same `outReqNo` creates a second payout.
    pub no_dedupe: bool,
    /// How late a delayed callback is, and how long a reordered one is held (ms).
    pub delay_ms: u64,
}

/// A one-shot fault aimed at the next call to one endpoint ([`crate::Sim::fail_next`]):
/// "the next `outpay` times out after it was committed".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aimed {
    /// Answered HTTP 500 without being handled.
    ServerError,
    /// Handled and committed, never answered.
    TimeoutAfterCommit,
    /// Refused before it arrives (connection refused).
    ConnectionRefused,
    /// In-process only: the caller times out at once; the call lands this many ms later.
    LateArrival(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shots_fire_then_stop() {
        let mut rng = Rng::new(1);
        let mut f = Fault::once(2);
        assert!(f.fire(&mut rng) && f.fire(&mut rng));
        assert!(!f.fire(&mut rng));
    }

    #[test]
    fn probabilities_are_roughly_right_and_seeded() {
        let mut a = Rng::new(7);
        let mut f = Fault::chance(0.25);
        let hits = (0..10_000).filter(|_| f.fire(&mut a)).count();
        assert!((2_200..2_800).contains(&hits), "{hits}");
        let (mut x, mut y) = (Rng::new(42), Rng::new(42));
        assert!((0..100).all(|_| x.next_u64() == y.next_u64()));
    }
}
