//! When to poll an order next: a pure function of its state, the time and the policy.

use super::config::PollPolicy;
use crate::domain::{Order, OrderKind, Status};
use chrono::{DateTime, Utc};
use std::hash::{DefaultHasher, Hash, Hasher};

/// The next poll of `order`, or `None` when nothing more is to be learnt about it.
///
/// Intervals depend on the state (fast while `PROCESSING`, slow for an unpaid POS code,
/// daily-ish while waiting for arrival), double with every quiet poll up to the ceiling, and
/// carry a jitter derived from the order and its poll count — so polls of many orders spread
/// out, yet a run is reproducible.
pub fn next_poll(order: &Order, now: DateTime<Utc>, policy: &PollPolicy) -> Option<DateTime<Utc>> {
    if !order.is_open() {
        return None;
    }
    let attempts = &order.attempts;
    let base = if attempts.needs_attention {
        policy.attention_ms
    } else {
        match (&order.kind, order.status) {
            // Stored but never sent (a crash between the two): send after the grace period,
            // so that a command still running in this process gets there first.
            (_, Status::Requested | Status::Reserved) => policy.grace_ms,
            (_, Status::Submitted) => policy.submitted_ms,
            (OrderKind::Inbound(_), Status::Unpaid) => policy.unpaid_ms,
            (_, Status::Unpaid | Status::Processing) => policy.processing_ms,
            (_, Status::Success | Status::Failure) => policy.awaiting_arrival_ms,
        }
    };
    let doublings = attempts.quiet_polls.min(20);
    let interval = base
        .saturating_mul(1u64 << doublings)
        .min(policy.max_interval_ms.max(base));
    let mut h = DefaultHasher::new();
    (order.out_req_no(), attempts.quiet_polls, attempts.sends).hash(&mut h);
    let spread = interval * u64::from(policy.jitter_percent) / 100;
    let jittered = if spread == 0 {
        interval
    } else {
        interval - spread + h.finish() % (2 * spread + 1)
    };
    now.checked_add_signed(chrono::Duration::milliseconds(
        i64::try_from(jittered).unwrap_or(i64::MAX),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::conformance::{sample_inbound, sample_outbound};

    fn at(order: &Order, policy: &PollPolicy) -> i64 {
        let now = DateTime::<Utc>::UNIX_EPOCH;
        next_poll(order, now, policy).map_or(-1, |t| (t - now).num_milliseconds())
    }

    #[test]
    fn intervals_follow_state_and_back_off() {
        let policy = PollPolicy {
            jitter_percent: 0,
            ..PollPolicy::default()
        };
        let mut o = sample_outbound("T", "A-1", 100);
        assert_eq!(at(&o, &policy), policy.grace_ms as i64);
        o.status = Status::Processing;
        assert_eq!(at(&o, &policy), policy.processing_ms as i64);
        o.attempts.quiet_polls = 3;
        assert_eq!(at(&o, &policy), 8 * policy.processing_ms as i64);
        o.attempts.quiet_polls = 20;
        assert_eq!(at(&o, &policy), policy.max_interval_ms as i64);
        o.status = Status::Success;
        assert_eq!(at(&o, &policy), -1, "settled orders are not polled");
        let mut i = sample_inbound("T", "A-2", 100);
        i.status = Status::Success;
        assert_eq!(
            at(&i, &policy),
            policy.awaiting_arrival_ms as i64,
            "paid, waiting for arrival"
        );
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let policy = PollPolicy::default();
        for n in 0..200 {
            let o = sample_outbound("T", &format!("A-{n}"), 100);
            let ms = at(&o, &policy);
            let g = policy.grace_ms as i64;
            assert!(ms >= g * 8 / 10 && ms <= g * 12 / 10, "{ms}");
        }
    }
}
