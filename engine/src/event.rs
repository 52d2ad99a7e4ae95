//! Events: the host's feed of what happened, written in the same commit as the change.

use crate::domain::{Refusal, Status};
use crate::observation::Source;
use crate::wire::{Amount, OutType};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Something a person should look at. Never a panic, never a silent drop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Anomaly {
    /// A terminal status contradicted by another (`FAILURE` after `SUCCESS`, arrival after
    /// `FAILURE`, a refusal after acceptance). Nothing was changed.
    ConflictingStatus {
        /// The state we hold.
        current: String,
        /// What the news said.
        observed: String,
    },
    /// The news names another protocol, amount, app or payment order. Not applied.
    IdentityMismatch {
        /// Which field disagreed.
        field: String,
    },
    /// `SUCCESS` arrived after we closed the POS code. Applied: money-positive news wins.
    PaidAfterClose,
    /// A value this version does not know. Kept; no state moved on it.
    UnknownEnumValue {
        /// Wire field name.
        field: String,
        /// The value.
        value: String,
    },
    /// A field that only informs (a time, a bank name) could not be read. The news was
    /// applied; the text is kept as received.
    UnreadableValue {
        /// Wire field name.
        field: String,
    },
    /// News of the wrong kind for this order (an outbound view for an inbound order).
    WrongOrderKind,
    /// The payment system says it has no record of an order it had acknowledged.
    RemoteLost,
    /// An outbound or inbound order whose outcome stayed unknown past the retry budget. Its
    /// funds stay reserved; it keeps being polled; a person should look.
    NeedsAttention {
        /// Sends made (stored under its first name).
        #[serde(rename = "submissions")]
        sends: u32,
    },
    /// A verified callback for an `outReqNo` this engine does not know. Its payload was stored.
    OrphanCallback,
    /// A `create` whose reply was lost: the payment system may hold an empty protocol we
    /// cannot name. Harmless (it holds no money) but shown; `find` adopts it if its
    /// `transNo` turns up.
    PossibleOrphanProtocol {
        /// The attempt, as in `ProtocolCreateRequested`.
        attempt: String,
    },
    /// The payment system reports a second payment order for one of our orders (another
    /// `payOrderNo` for the same `outReqNo`): it acted on our request twice, and money may
    /// have moved twice. The order is flagged (listed as needing attention, even once
    /// settled) until a person resolves it; `protopay_double_payment_suspected_total` counts
    /// these and pages.
    SuspectedDoublePayment {
        /// The other payment order, to look up at the payment system.
        other_pay_order_no: String,
    },
    /// Our ledger and the payment system's balances disagree (from `reconcile`).
    BalanceDrift {
        /// Which figure.
        figure: String,
        /// Ours.
        ours: Amount,
        /// Theirs.
        theirs: Amount,
    },
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// We are about to ask the payment system to open a protocol. Written before the call,
    /// so a crash mid-call leaves a visible trace.
    ProtocolCreateRequested {
        /// Our id for this attempt.
        attempt: String,
    },
    /// A protocol was opened.
    ProtocolCreated {
        /// The attempt that opened it.
        attempt: String,
    },
    /// A protocol we did not create here was found with `find` and recorded, with what it
    /// held available then as its opening balance (money that arrived through no order we
    /// know; what was still on its way is not ours to count, and shows as drift until a
    /// person looks).
    ProtocolAdopted {
        /// The opening balance, now available.
        opening: Amount,
    },
    /// An inbound order was recorded (`Requested`).
    InboundRequested,
    /// An outbound order was recorded and its funds reserved.
    OutboundReserved,
    /// The order's call is being sent.
    Submitted,
    /// The send just announced never left (refused before a byte was written, or held
    /// back past its deadline): it will be made again.
    NotSent,
    /// The payment system acknowledged the order (`UNPAID`/`PROCESSING`).
    Pending {
        /// The status it reported.
        status: Status,
    },
    /// Inbound paid (`SUCCESS`): the amount is in transit.
    InboundPaid,
    /// Inbound funds arrived: the amount is available.
    InboundArrived,
    /// Inbound failed.
    InboundFailed,
    /// The POS code was closed.
    PosCodeClosed,
    /// Outbound paid out or refunded.
    OutboundSucceeded {
        /// `OUT` or `REFUND`.
        out_type: OutType,
    },
    /// Outbound failed or was refused; its funds are available again.
    OutboundFailed {
        /// Set when the payment system refused the send outright.
        refusal: Option<Refusal>,
    },
    /// A person decided an order's outcome (recorded with their note).
    OperatorResolved {
        /// The outcome.
        status: Status,
        /// Why (and who, in the person's own words).
        note: String,
        /// The named operator who decided, when known (absent in events recorded before
        /// operators had names, and for the shared API token).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// A person compared a protocol's books with the payment system's balances (the audit
    /// record of that act; what disagreed is in `BalanceDrift` events of the same commit).
    OperatorReconciled {
        /// Why, in the person's own words.
        note: String,
        /// The named operator who asked.
        by: String,
        /// How many figures disagreed (0: the books agree).
        drifting: u32,
    },
    /// A person asked for a consumer's events from `from_seq` on to be delivered again (a
    /// webhook receiver that lost what it had processed). The pusher delivers them again when
    /// it reaches this event, then goes on; receivers that keep the highest `seq` they
    /// processed drop them unless they reset it.
    OperatorResent {
        /// The consumer (a webhook's).
        consumer: String,
        /// The first event to deliver again.
        from_seq: u64,
        /// Why, in the person's own words.
        note: String,
        /// The named operator who asked.
        by: String,
    },
    /// Something for a person to look at.
    Anomaly(Anomaly),
}

impl EventKind {
    /// Whether it records what a person did: an **audit record**, kept in the audit trail
    /// (`Storage::audit`) besides the feed, written in the same commit as the act's change.
    pub fn is_audit(&self) -> bool {
        matches!(
            self,
            EventKind::OperatorResolved { .. }
                | EventKind::OperatorReconciled { .. }
                | EventKind::OperatorResent { .. }
        )
    }
}

/// An event in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the log, assigned by storage at commit (1-based, gap-free).
    pub seq: u64,
    /// When the engine recorded it.
    pub at: DateTime<Utc>,
    /// The protocol, when known.
    pub trans_no: Option<String>,
    /// The order, when the event is about one.
    pub out_req_no: Option<String>,
    /// What brought the news.
    pub source: Source,
    /// What happened.
    pub kind: EventKind,
}

/// A sentence for people (logs, the demo's timeline, an operator's screen).
impl Anomaly {
    /// A stable name for the kind, for metrics and dashboards (`needs_attention`, `balance_drift`).
    pub fn name(&self) -> &'static str {
        match self {
            Anomaly::ConflictingStatus { .. } => "conflicting_status",
            Anomaly::IdentityMismatch { .. } => "identity_mismatch",
            Anomaly::PaidAfterClose => "paid_after_close",
            Anomaly::UnknownEnumValue { .. } => "unknown_enum_value",
            Anomaly::UnreadableValue { .. } => "unreadable_value",
            Anomaly::WrongOrderKind => "wrong_order_kind",
            Anomaly::RemoteLost => "remote_lost",
            Anomaly::NeedsAttention { .. } => "needs_attention",
            Anomaly::OrphanCallback => "orphan_callback",
            Anomaly::PossibleOrphanProtocol { .. } => "possible_orphan_protocol",
            Anomaly::SuspectedDoublePayment { .. } => "suspected_double_payment",
            Anomaly::BalanceDrift { .. } => "balance_drift",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventKind::ProtocolCreateRequested { .. } => f.write_str("asked to open a protocol"),
            EventKind::ProtocolCreated { .. } => f.write_str("protocol opened"),
            EventKind::ProtocolAdopted { opening } => write!(f, "protocol adopted holding {opening}"),
            EventKind::InboundRequested => f.write_str("payment in requested"),
            EventKind::OutboundReserved => f.write_str("funds reserved for a payment out"),
            EventKind::Submitted => f.write_str("sent to the payment system"),
            EventKind::NotSent => f.write_str("the send never left; it will be made again"),
            EventKind::Pending { status } => write!(f, "accepted, now {status}"),
            EventKind::InboundPaid => f.write_str("paid by the payer"),
            EventKind::InboundArrived => f.write_str("funds arrived, available"),
            EventKind::InboundFailed => f.write_str("payment in failed"),
            EventKind::PosCodeClosed => f.write_str("POS code closed"),
            EventKind::OutboundSucceeded { out_type } if out_type.as_str() == "REFUND" => f.write_str("refunded"),
            EventKind::OutboundSucceeded { .. } => f.write_str("paid out"),
            EventKind::OutboundFailed { refusal: Some(r) } => write!(f, "payment out refused ({})", r.code),
            EventKind::OutboundFailed { refusal: None } => f.write_str("payment out failed; funds available again"),
            EventKind::OperatorResolved {
                status, by: Some(by), ..
            } => write!(f, "resolved by {by} as {status}"),
            EventKind::OperatorResolved { status, .. } => write!(f, "resolved by an operator as {status}"),
            EventKind::OperatorReconciled { by, drifting: 0, .. } => write!(f, "reconciled by {by}: the books agree"),
            EventKind::OperatorReconciled { by, drifting, .. } => {
                write!(f, "reconciled by {by}: {drifting} figures disagree")
            }
            EventKind::OperatorResent {
                consumer, from_seq, by, ..
            } => write!(f, "{by} asked for {consumer}'s events from {from_seq} again"),
            EventKind::Anomaly(a) => write!(f, "⚠ {a}"),
        }
    }
}

impl std::fmt::Display for Anomaly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Anomaly::ConflictingStatus { current, observed } => write!(f, "news of {observed} contradicts {current}"),
            Anomaly::IdentityMismatch { field } => write!(f, "news names another {field}"),
            Anomaly::PaidAfterClose => f.write_str("paid after its POS code was closed"),
            Anomaly::UnknownEnumValue { field, value } => write!(f, "unknown {field} {value:?}"),
            Anomaly::UnreadableValue { field } => write!(f, "unreadable {field}, kept as received"),
            Anomaly::WrongOrderKind => f.write_str("news of the wrong kind for this order"),
            Anomaly::RemoteLost => f.write_str("the payment system lost an order it had accepted"),
            Anomaly::NeedsAttention { sends: 1 } => f.write_str("needs attention after 1 send"),
            Anomaly::NeedsAttention { sends } => write!(f, "needs attention after {sends} sends"),
            Anomaly::OrphanCallback => f.write_str("callback for an order we do not know (kept)"),
            Anomaly::PossibleOrphanProtocol { .. } => f.write_str("a protocol may have been opened unseen"),
            Anomaly::SuspectedDoublePayment { other_pay_order_no } => {
                write!(
                    f,
                    "a second payment order {other_pay_order_no} for this order: paid twice?"
                )
            }
            Anomaly::BalanceDrift { figure, ours, theirs } => write!(f, "{figure}: ours {ours}, theirs {theirs}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Anomaly;

    #[test]
    fn an_anomaly_counts_sends_in_words() {
        let after = |sends| Anomaly::NeedsAttention { sends }.to_string();
        assert_eq!(after(1), "needs attention after 1 send");
        assert_eq!(after(3), "needs attention after 3 sends");
    }
}
