//! The engine's metrics, through the `metrics` facade: the engine records, the host decides
//! where they go (a library installs no exporter; `protopay serve` installs a Prometheus one
//! and serves `/metrics`). Without a recorder every call here is a no-op. Every name is in
//! [`DESCRIPTIONS`], with what it means — the list an operator reads.

use crate::event::{Event, EventKind};
use ::metrics::{counter, gauge, histogram};
use std::time::Duration;

/// Every metric: name, kind, and what it says.
pub const DESCRIPTIONS: &[(&str, &str, &str)] = &[
    (
        "protopay_callbacks_total",
        "counter",
        "callbacks received, by `kind` and `outcome` (accepted, refused)",
    ),
    (
        "protopay_callback_key_total",
        "counter",
        "envelopes verified, by `key`: current or previous (rotation: drop the previous key once this stays flat)",
    ),
    ("protopay_commit_seconds", "histogram", "time of one storage commit"),
    (
        "protopay_commit_conflicts_total",
        "counter",
        "commits that lost an optimistic-concurrency race (re-read and retried)",
    ),
    (
        "protopay_commit_failures_total",
        "counter",
        "commits the store refused or failed",
    ),
    (
        "protopay_polls_total",
        "counter",
        "polls of due orders, by `result`: done, failed",
    ),
    (
        "protopay_calls_total",
        "counter",
        "calls to the payment system, by `endpoint` and `outcome`: ok, refused, not_found, not_delivered, maybe_delivered, bad_reply",
    ),
    (
        "protopay_call_seconds",
        "histogram",
        "latency of calls to the payment system, by `endpoint`",
    ),
    (
        "protopay_due_backlog",
        "gauge",
        "orders due for a poll now (up to 10 000)",
    ),
    (
        "protopay_poll_lag_seconds",
        "gauge",
        "how long the oldest due order has waited past its due time",
    ),
    (
        "protopay_orders",
        "gauge",
        "orders by `status` (every status, and needs_attention), from the counts the store keeps in each commit; on a shared store every instance reports the same totals (aggregate with max, not sum)",
    ),
    (
        "protopay_orders_settled_total",
        "counter",
        "orders that reached a final status here, by `direction` and `status`",
    ),
    (
        "protopay_anomalies_total",
        "counter",
        "anomalies recorded, by `kind` (needs_attention, balance_drift, conflicting_status, …)",
    ),
    (
        "protopay_double_payment_suspected_total",
        "counter",
        "orders for which the payment system reported a second payment order (another payOrderNo for one outReqNo): money may have moved twice; page",
    ),
    (
        "protopay_reconciliations_total",
        "counter",
        "reconciliations, by `result`: agreed, drift, failed",
    ),
    (
        "protopay_protocols_drifting",
        "gauge",
        "protocols whose last reconciliation here found drift",
    ),
    (
        "protopay_outbox_lag",
        "gauge",
        "events not yet acknowledged, by `consumer` (consumers served by this process)",
    ),
];

/// Describe every metric to the installed recorder (call once, after installing it).
pub fn describe() {
    for (name, kind, help) in DESCRIPTIONS {
        match *kind {
            "counter" => ::metrics::describe_counter!(*name, *help),
            "gauge" => ::metrics::describe_gauge!(*name, *help),
            _ => ::metrics::describe_histogram!(*name, ::metrics::Unit::Seconds, *help),
        }
    }
}

pub(super) fn callback(kind: &'static str, accepted: bool) {
    let outcome = if accepted { "accepted" } else { "refused" };
    counter!("protopay_callbacks_total", "kind" => kind, "outcome" => outcome).increment(1);
}

pub(super) fn key_verified(previous: bool) {
    let key = if previous { "previous" } else { "current" };
    counter!("protopay_callback_key_total", "key" => key).increment(1);
}

pub(super) fn commit(elapsed: Duration, result: &crate::storage::Result<u64>) {
    histogram!("protopay_commit_seconds").record(elapsed.as_secs_f64());
    match result {
        Ok(_) => {}
        Err(crate::storage::StorageError::Conflict) => counter!("protopay_commit_conflicts_total").increment(1),
        Err(_) => counter!("protopay_commit_failures_total").increment(1),
    }
}

pub(super) fn poll(done: bool) {
    let result = if done { "done" } else { "failed" };
    counter!("protopay_polls_total", "result" => result).increment(1);
}

pub(super) fn call(endpoint: &'static str, elapsed: Duration, result: std::result::Result<(), &crate::Error>) {
    use crate::{Error, TransportError};
    let outcome = match result {
        Ok(()) => "ok",
        Err(Error::Remote { .. }) => "refused",
        Err(Error::NotFound(_)) => "not_found",
        Err(Error::Transport(TransportError::NotDelivered { .. })) => "not_delivered",
        Err(Error::Transport(_)) => "maybe_delivered",
        Err(_) => "bad_reply",
    };
    counter!("protopay_calls_total", "endpoint" => endpoint, "outcome" => outcome).increment(1);
    histogram!("protopay_call_seconds", "endpoint" => endpoint).record(elapsed.as_secs_f64());
}

/// What a batch's events will say once committed: anomalies by kind, orders settled. Taken
/// before the commit (the batch moves into the store), recorded only if it lands.
#[derive(Debug, Default)]
pub(super) struct Tally(Vec<Tag>);

#[derive(Debug)]
enum Tag {
    Anomaly(&'static str),
    Settled(&'static str, &'static str),
}

impl Tally {
    pub(super) fn of(events: &[Event]) -> Self {
        Tally(
            events
                .iter()
                .filter_map(|e| match &e.kind {
                    EventKind::Anomaly(a) => Some(Tag::Anomaly(a.name())),
                    EventKind::InboundPaid => Some(Tag::Settled("inbound", "success")),
                    EventKind::InboundFailed => Some(Tag::Settled("inbound", "failure")),
                    EventKind::OutboundSucceeded { .. } => Some(Tag::Settled("outbound", "success")),
                    EventKind::OutboundFailed { .. } => Some(Tag::Settled("outbound", "failure")),
                    _ => None,
                })
                .collect(),
        )
    }

    pub(super) fn record(self) {
        for tag in self.0 {
            match tag {
                Tag::Anomaly(kind) => {
                    counter!("protopay_anomalies_total", "kind" => kind).increment(1);
                    if kind == "suspected_double_payment" {
                        counter!("protopay_double_payment_suspected_total").increment(1);
                    }
                }
                Tag::Settled(direction, status) => {
                    counter!("protopay_orders_settled_total", "direction" => direction, "status" => status).increment(1)
                }
            }
        }
    }
}

pub(super) fn reconciled(result: &'static str) {
    counter!("protopay_reconciliations_total", "result" => result).increment(1);
}

pub(super) fn protocols_drifting(n: usize) {
    gauge!("protopay_protocols_drifting").set(n as f64);
}

pub(super) fn backlog(due_now: usize, lag: Duration) {
    gauge!("protopay_due_backlog").set(due_now as f64);
    gauge!("protopay_poll_lag_seconds").set(lag.as_secs_f64());
}

pub(super) fn orders(listing: &'static str, n: u64) {
    gauge!("protopay_orders", "status" => listing).set(n as f64);
}

pub(super) fn outbox_lag(consumer: &str, lag: u64) {
    gauge!("protopay_outbox_lag", "consumer" => consumer.to_owned()).set(lag as f64);
}
