//! What the `/v1` API answers. Field names are the wire protocol's camelCase where one exists
//! (`transNo`, `outReqNo`, `payeeAccount`, …); amounts are decimal strings (`"100.00"`);
//! times are RFC 3339 in UTC with milliseconds (`2026-11-29T07:31:25.123Z`).
//!
//! Personal data (payee and payer names, account and ID numbers) appears in full only where
//! one order is read or was just sent; lists mask it (`***1234`).

use crate::requests::{Cashier, Payment};
use chrono::{DateTime, Utc};
use protopay_engine::domain::{Listing, RemoteBalances};
use protopay_engine::wire::CnapsEntry;
use protopay_engine::{
    Anomaly, CheckReport, Event, EventKind, Ledger, Order, OrderDetails, Page, Protocol, Reconciliation, Sensitive,
    Status,
};
use serde::{Serialize, Serializer};
use utoipa::ToSchema;

/// A time as RFC 3339 in UTC with milliseconds: what every common parser reads (Java's
/// `.SSS` patterns among them), and as fine as any time here means.
fn millis<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// [`millis`], or `null`.
fn millis_or_null<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => millis(t, s),
        None => s.serialize_none(),
    }
}

// ---- responses ---------------------------------------------------------------------------

/// A protocol's books, kept by protopay.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct LedgerView {
    /// Paid in, not yet arrived.
    pub in_transit: String,
    /// Arrived and free to pay out.
    pub available: String,
    /// Set aside for payouts in flight.
    pub reserved: String,
    /// Paid out by payouts that succeeded.
    pub paid_out: String,
    /// Refunded by refunds that succeeded.
    pub refunded: String,
    /// What an adopted protocol already held.
    pub opening: String,
}

impl From<&Ledger> for LedgerView {
    fn from(l: &Ledger) -> Self {
        LedgerView {
            in_transit: l.in_transit.to_string(),
            available: l.available.to_string(),
            reserved: l.reserved.to_string(),
            paid_out: l.paid_out.to_string(),
            refunded: l.refunded.to_string(),
            opening: l.opening.to_string(),
        }
    }
}

/// The payment system's balances, as last reported.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct RemoteView {
    /// `amount`: available.
    pub available: String,
    /// `onpassageAmount`: paid in, not arrived.
    pub in_transit: String,
    /// `outAmount`: paid out and refunded, together (protopay's ledger keeps the two apart).
    pub paid_out_and_refunded: String,
    /// When protopay asked.
    #[serde(serialize_with = "millis")]
    pub seen_at: DateTime<Utc>,
}

impl From<&RemoteBalances> for RemoteView {
    fn from(r: &RemoteBalances) -> Self {
        RemoteView {
            available: r.available.to_string(),
            in_transit: r.in_transit.to_string(),
            paid_out_and_refunded: r.paid_out.to_string(),
            seen_at: r.seen_at,
        }
    }
}

/// A protocol with its ledger and the last balances the payment system reported.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ProtocolView {
    /// The protocol number.
    pub trans_no: String,
    /// Party id.
    pub business_id: String,
    /// Purpose.
    pub trans_desc: String,
    /// `LFT`.
    pub channel_type: String,
    /// How payers pay in; `null` for a type this version does not know (a protocol the
    /// payment system opened with a newer one).
    #[schema(required = true)]
    pub cashier_type: Option<Cashier>,
    /// protopay's books.
    pub ledger: LedgerView,
    /// The payment system's balances, once asked (`refresh`, `reconcile`).
    #[schema(required = true)]
    pub remote: Option<RemoteView>,
}

impl From<&Protocol> for ProtocolView {
    fn from(p: &Protocol) -> Self {
        ProtocolView {
            trans_no: p.trans_no.clone(),
            business_id: p.business_id.clone(),
            trans_desc: p.trans_desc.clone(),
            channel_type: p.channel_type.to_string(),
            cashier_type: Cashier::of(&p.cashier_type),
            ledger: (&p.ledger).into(),
            remote: p.remote.as_ref().map(Into::into),
        }
    }
}

/// Whether personal data is shown or masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Personal {
    /// In full: one order, read or just sent.
    Shown,
    /// `***1234`: in lists.
    Masked,
}

impl Personal {
    fn show(self, value: &Sensitive) -> String {
        match self {
            Personal::Shown => value.expose().to_owned(),
            Personal::Masked => value.masked(),
        }
    }
}

/// The payment system's refusal of the order's call.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefusalView {
    /// Its code, e.g. `EP10001`.
    pub code: String,
    /// Its message.
    pub msg: String,
}

/// Where an order stands, spelled as everywhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// A payment in, recorded; not yet sent.
    Requested,
    /// A payment out, recorded with its funds reserved; not yet sent.
    Reserved,
    /// Sent; its outcome is not known.
    Submitted,
    /// Accepted by the payment system, not paid.
    Unpaid,
    /// Accepted by the payment system, being paid.
    Processing,
    /// Paid: final.
    Success,
    /// Failed or refused: final.
    Failure,
}

impl From<Status> for OrderStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Requested => OrderStatus::Requested,
            Status::Reserved => OrderStatus::Reserved,
            Status::Submitted => OrderStatus::Submitted,
            Status::Unpaid => OrderStatus::Unpaid,
            Status::Processing => OrderStatus::Processing,
            Status::Success => OrderStatus::Success,
            Status::Failure => OrderStatus::Failure,
        }
    }
}

/// Which way an order moves money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum Direction {
    /// Into the protocol (a deposit).
    Inbound,
    /// Out of the protocol (a payout or a refund).
    Outbound,
}

/// An order: a payment into a protocol (`inbound`) or out of one (`outbound`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct OrderView {
    /// Your request number.
    pub out_req_no: String,
    /// The protocol.
    pub trans_no: String,
    /// `inbound` or `outbound`.
    pub direction: Direction,
    /// How much.
    pub amount: String,
    /// Where it stands.
    pub status: OrderStatus,
    /// Open, and waiting for a person: the funds stay reserved until the payment system's
    /// word or a `resolve` settles it.
    pub needs_attention: bool,
    /// The payment system refused the call outright.
    #[schema(required = true)]
    pub refusal: Option<RefusalView>,
    /// How many times the call was sent.
    pub sends: u32,
    /// When it was last sent.
    #[serde(serialize_with = "millis_or_null")]
    #[schema(required = true)]
    pub last_sent_at: Option<DateTime<Utc>>,
    /// Polls without news since the last change.
    pub quiet_polls: u32,
    /// Inbound, POS: the six-digit code the payer types.
    #[schema(required = true)]
    pub pos_code: Option<String>,
    /// Inbound, quick pay: the cashier page.
    #[schema(required = true)]
    pub cashier_url: Option<String>,
    /// The payment system's order number.
    #[schema(required = true)]
    pub pay_order_no: Option<String>,
    /// Inbound: the funds arrived in the protocol.
    #[schema(required = true)]
    pub arrived: Option<bool>,
    /// Inbound: its POS code was closed.
    #[schema(required = true)]
    pub closed: Option<bool>,
    /// Outbound: a payout or a refund.
    #[schema(required = true)]
    pub out_type: Option<Payment>,
    /// Outbound: the account holder (masked in lists).
    #[schema(required = true)]
    pub payee_name: Option<String>,
    /// Outbound: the account number (masked in lists).
    #[schema(required = true)]
    pub payee_account: Option<String>,
    /// Outbound: the bank or branch.
    #[schema(required = true)]
    pub bank_name: Option<String>,
    /// Outbound: the branch's CNAPS number.
    #[schema(required = true)]
    pub bank_cnaps: Option<String>,
}

impl OrderView {
    /// The view of an order, with personal data shown or masked.
    pub(super) fn of(o: &Order, personal: Personal) -> Self {
        let inbound = o.inbound();
        let outbound = o.outbound().map(|out| &out.request);
        OrderView {
            out_req_no: o.out_req_no().to_owned(),
            trans_no: o.trans_no().to_owned(),
            direction: if inbound.is_some() {
                Direction::Inbound
            } else {
                Direction::Outbound
            },
            amount: o.amount().to_string(),
            status: o.status.into(),
            needs_attention: o.listings().any(|l| l == Listing::NeedsAttention),
            refusal: o.refusal.as_ref().map(|r| RefusalView {
                code: r.code.clone(),
                msg: r.msg.clone(),
            }),
            sends: o.attempts.sends,
            last_sent_at: o.attempts.last_sent_at,
            quiet_polls: o.attempts.quiet_polls,
            pos_code: o.pos_code().map(str::to_owned),
            cashier_url: o.cashier_url().map(str::to_owned),
            pay_order_no: o.pay_order_no().map(str::to_owned),
            arrived: inbound.map(|i| i.arrived),
            closed: inbound.map(|i| i.closed),
            out_type: o.out_type().and_then(Payment::of),
            payee_name: outbound.map(|r| personal.show(&r.bank_acc_name)),
            payee_account: outbound.map(|r| personal.show(&r.bank_acc_num)),
            bank_name: outbound.map(|r| r.bank_name.clone()),
            bank_cnaps: outbound.map(|r| r.bank_cnaps.clone()),
        }
    }
}

/// One thing that happened, in the order it was recorded.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// Its position in the log: gap-free, increasing.
    pub seq: u64,
    /// When protopay recorded it.
    #[serde(serialize_with = "millis")]
    pub at: DateTime<Utc>,
    /// The protocol, when known.
    #[schema(required = true)]
    pub trans_no: Option<String>,
    /// The order, when it is about one.
    #[schema(required = true)]
    pub out_req_no: Option<String>,
    /// What brought the news: `callback:inbound-pay`, `callback:inbound-arrival`,
    /// `callback:outbound`, `poll`, `reply`, `engine`, `operator`.
    pub source: String,
    /// Its kind (the same as `data.kind`), e.g. `InboundPaid`, `Anomaly`.
    pub kind: String,
    /// A sentence for people.
    pub text: String,
    /// The kind with its fields, for programs: always an object, tagged by `kind`.
    pub data: EventData,
}

/// What happened, tagged by `kind`, with that kind's fields (camelCase; statuses spelled as
/// everywhere else). A kind without fields is `{"kind": "..."}`.
#[derive(Debug, Serialize, ToSchema)]
// Each field's camelCase name is spelt out: the document generator does not read serde's
// `rename_all_fields`, and a generated client reads the names the document gives.
#[serde(tag = "kind")]
pub enum EventData {
    /// protopay is about to ask the payment system to open a protocol.
    #[schema(title = "ProtocolCreateRequestedEvent")]
    ProtocolCreateRequested {
        /// protopay's id for this attempt.
        attempt: String,
    },
    /// A protocol was opened.
    #[schema(title = "ProtocolCreatedEvent")]
    ProtocolCreated {
        /// The attempt that opened it.
        attempt: String,
    },
    /// A protocol opened elsewhere was found and recorded, holding this much.
    #[schema(title = "ProtocolAdoptedEvent")]
    ProtocolAdopted {
        /// Its opening balance, now available.
        opening: String,
    },
    /// A payment in was recorded.
    #[schema(title = "InboundRequestedEvent")]
    InboundRequested {},
    /// A payment out was recorded and its funds reserved.
    #[schema(title = "OutboundReservedEvent")]
    OutboundReserved {},
    /// The order's call is being sent.
    #[schema(title = "SubmittedEvent")]
    Submitted {},
    /// The send just announced never left; it will be made again.
    #[schema(title = "NotSentEvent")]
    NotSent {},
    /// The payment system accepted the order.
    #[schema(title = "PendingEvent")]
    Pending {
        /// `UNPAID` or `PROCESSING`.
        status: OrderStatus,
    },
    /// The payer paid: the amount is on its way.
    #[schema(title = "InboundPaidEvent")]
    InboundPaid {},
    /// The paid funds arrived: the amount is available.
    #[schema(title = "InboundArrivedEvent")]
    InboundArrived {},
    /// The payment in failed.
    #[schema(title = "InboundFailedEvent")]
    InboundFailed {},
    /// The POS code was closed.
    #[schema(title = "PosCodeClosedEvent")]
    PosCodeClosed {},
    /// Paid out, or refunded.
    #[schema(title = "OutboundSucceededEvent")]
    OutboundSucceeded {
        /// `OUT` or `REFUND`.
        #[serde(rename = "outType")]
        out_type: String,
    },
    /// The payment out failed; its funds are available again.
    #[schema(title = "OutboundFailedEvent")]
    OutboundFailed {
        /// Set when the payment system refused it outright.
        #[serde(skip_serializing_if = "Option::is_none")]
        refusal: Option<RefusalView>,
    },
    /// A person decided the order's outcome.
    #[schema(title = "OperatorResolvedEvent")]
    OperatorResolved {
        /// `SUCCESS` or `FAILURE`.
        status: OrderStatus,
        /// Why (and who, in the person's words).
        note: String,
        /// The named operator who decided (absent for the shared operate token).
        #[serde(skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// A person compared the protocol's books with the payment system's balances (what
    /// disagreed is in `Anomaly` events of the same commit, `balance_drift`).
    #[schema(title = "OperatorReconciledEvent")]
    OperatorReconciled {
        /// Why, in the person's words.
        note: String,
        /// The named operator who asked.
        by: String,
        /// How many figures disagreed (0: the books agree).
        drifting: u32,
    },
    /// A person asked for a consumer's events from `fromSeq` on to be delivered again.
    #[schema(title = "OperatorResentEvent")]
    OperatorResent {
        /// The consumer.
        consumer: String,
        /// The first event delivered again.
        #[serde(rename = "fromSeq")]
        from_seq: u64,
        /// Why, in the person's words.
        note: String,
        /// The named operator who asked.
        by: String,
    },
    /// Something for a person to look at.
    #[schema(title = "AnomalyEvent")]
    Anomaly {
        /// Which: `conflicting_status`, `identity_mismatch`, `paid_after_close`,
        /// `unknown_enum_value`, `unreadable_value`, `wrong_order_kind`, `remote_lost`,
        /// `needs_attention`, `orphan_callback`, `possible_orphan_protocol`,
        /// `suspected_double_payment`, `balance_drift`.
        anomaly: String,
        /// The field concerned (`identity_mismatch`, `unknown_enum_value`, `unreadable_value`).
        #[serde(skip_serializing_if = "Option::is_none")]
        field: Option<String>,
        /// The state protopay holds (`conflicting_status`).
        #[serde(skip_serializing_if = "Option::is_none")]
        current: Option<String>,
        /// What the news said (`conflicting_status`).
        #[serde(skip_serializing_if = "Option::is_none")]
        observed: Option<String>,
        /// The value this version does not know (`unknown_enum_value`).
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<String>,
        /// Sends made (`needs_attention`).
        #[serde(skip_serializing_if = "Option::is_none")]
        sends: Option<u32>,
        /// The attempt (`possible_orphan_protocol`).
        #[serde(skip_serializing_if = "Option::is_none")]
        attempt: Option<String>,
        /// The other payment order (`suspected_double_payment`).
        #[serde(rename = "otherPayOrderNo", skip_serializing_if = "Option::is_none")]
        other_pay_order_no: Option<String>,
        /// The figure that drifted (`balance_drift`).
        #[serde(skip_serializing_if = "Option::is_none")]
        figure: Option<String>,
        /// protopay's figure (`balance_drift`).
        #[serde(skip_serializing_if = "Option::is_none")]
        ours: Option<String>,
        /// The payment system's figure (`balance_drift`).
        #[serde(skip_serializing_if = "Option::is_none")]
        theirs: Option<String>,
    },
}

impl From<&EventKind> for EventData {
    fn from(kind: &EventKind) -> Self {
        match kind {
            EventKind::ProtocolCreateRequested { attempt } => EventData::ProtocolCreateRequested {
                attempt: attempt.clone(),
            },
            EventKind::ProtocolCreated { attempt } => EventData::ProtocolCreated {
                attempt: attempt.clone(),
            },
            EventKind::ProtocolAdopted { opening } => EventData::ProtocolAdopted {
                opening: opening.to_string(),
            },
            EventKind::InboundRequested => EventData::InboundRequested {},
            EventKind::OutboundReserved => EventData::OutboundReserved {},
            EventKind::Submitted => EventData::Submitted {},
            EventKind::NotSent => EventData::NotSent {},
            EventKind::Pending { status } => EventData::Pending {
                status: (*status).into(),
            },
            EventKind::InboundPaid => EventData::InboundPaid {},
            EventKind::InboundArrived => EventData::InboundArrived {},
            EventKind::InboundFailed => EventData::InboundFailed {},
            EventKind::PosCodeClosed => EventData::PosCodeClosed {},
            EventKind::OutboundSucceeded { out_type } => EventData::OutboundSucceeded {
                out_type: out_type.to_string(),
            },
            EventKind::OutboundFailed { refusal } => EventData::OutboundFailed {
                refusal: refusal.as_ref().map(|r| RefusalView {
                    code: r.code.clone(),
                    msg: r.msg.clone(),
                }),
            },
            EventKind::OperatorResolved { status, note, by } => EventData::OperatorResolved {
                status: (*status).into(),
                note: note.clone(),
                by: by.clone(),
            },
            EventKind::OperatorReconciled { note, by, drifting } => EventData::OperatorReconciled {
                note: note.clone(),
                by: by.clone(),
                drifting: *drifting,
            },
            EventKind::OperatorResent {
                consumer,
                from_seq,
                note,
                by,
            } => EventData::OperatorResent {
                consumer: consumer.clone(),
                from_seq: *from_seq,
                note: note.clone(),
                by: by.clone(),
            },
            EventKind::Anomaly(a) => anomaly(a),
        }
    }
}

/// An anomaly's data: its name, and the fields it has.
fn anomaly(a: &Anomaly) -> EventData {
    let mut field = None;
    let (mut current, mut observed, mut value, mut sends, mut attempt) = (None, None, None, None, None);
    let (mut other_pay_order_no, mut figure, mut ours, mut theirs) = (None, None, None, None);
    match a {
        Anomaly::ConflictingStatus {
            current: c,
            observed: o,
        } => {
            current = Some(c.clone());
            observed = Some(o.clone());
        }
        Anomaly::IdentityMismatch { field: f } | Anomaly::UnreadableValue { field: f } => field = Some(f.clone()),
        Anomaly::UnknownEnumValue { field: f, value: v } => {
            field = Some(f.clone());
            value = Some(v.clone());
        }
        Anomaly::NeedsAttention { sends: n } => sends = Some(*n),
        Anomaly::PossibleOrphanProtocol { attempt: a } => attempt = Some(a.clone()),
        Anomaly::SuspectedDoublePayment { other_pay_order_no: p } => other_pay_order_no = Some(p.clone()),
        Anomaly::BalanceDrift {
            figure: f,
            ours: o,
            theirs: t,
        } => {
            figure = Some(f.clone());
            ours = Some(o.to_string());
            theirs = Some(t.to_string());
        }
        Anomaly::PaidAfterClose | Anomaly::WrongOrderKind | Anomaly::RemoteLost | Anomaly::OrphanCallback => {}
    }
    EventData::Anomaly {
        anomaly: a.name().to_owned(),
        field,
        current,
        observed,
        value,
        sends,
        attempt,
        other_pay_order_no,
        figure,
        ours,
        theirs,
    }
}

impl From<&Event> for EventView {
    fn from(e: &Event) -> Self {
        let data = EventData::from(&e.kind);
        EventView {
            seq: e.seq,
            at: e.at,
            trans_no: e.trans_no.clone(),
            out_req_no: e.out_req_no.clone(),
            source: e.source.to_string(),
            kind: data.kind().to_owned(),
            text: e.kind.to_string(),
            data,
        }
    }
}

impl EventData {
    /// Its `kind` tag.
    fn kind(&self) -> &'static str {
        match self {
            EventData::ProtocolCreateRequested { .. } => "ProtocolCreateRequested",
            EventData::ProtocolCreated { .. } => "ProtocolCreated",
            EventData::ProtocolAdopted { .. } => "ProtocolAdopted",
            EventData::InboundRequested {} => "InboundRequested",
            EventData::OutboundReserved {} => "OutboundReserved",
            EventData::Submitted {} => "Submitted",
            EventData::NotSent {} => "NotSent",
            EventData::Pending { .. } => "Pending",
            EventData::InboundPaid {} => "InboundPaid",
            EventData::InboundArrived {} => "InboundArrived",
            EventData::InboundFailed {} => "InboundFailed",
            EventData::PosCodeClosed {} => "PosCodeClosed",
            EventData::OutboundSucceeded { .. } => "OutboundSucceeded",
            EventData::OutboundFailed { .. } => "OutboundFailed",
            EventData::OperatorResolved { .. } => "OperatorResolved",
            EventData::OperatorReconciled { .. } => "OperatorReconciled",
            EventData::OperatorResent { .. } => "OperatorResent",
            EventData::Anomaly { .. } => "Anomaly",
        }
    }
}

/// An order with its history and the time of its next poll.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct OrderDetailsView {
    /// The order, personal data shown.
    pub order: OrderView,
    /// The order's version as read: name it when resolving (`version`), so that a decision
    /// is refused if the order has moved since.
    #[schema(minimum = 1)]
    pub version: u64,
    /// Every event about it, in order.
    pub history: Vec<EventView>,
    /// When protopay next asks the payment system about it (`null` once settled).
    #[serde(serialize_with = "millis_or_null")]
    #[schema(required = true)]
    pub next_poll: Option<DateTime<Utc>>,
}

impl From<&OrderDetails> for OrderDetailsView {
    fn from(d: &OrderDetails) -> Self {
        OrderDetailsView {
            order: OrderView::of(&d.order, Personal::Shown),
            version: d.version,
            history: d.history.iter().map(Into::into).collect(),
            next_poll: d.next_poll,
        }
    }
}

/// A page of protocols.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ProtocolPage {
    /// The protocols, by `transNo`.
    pub items: Vec<ProtocolView>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[schema(required = true)]
    pub next: Option<String>,
}

impl From<&Page<Protocol>> for ProtocolPage {
    fn from(p: &Page<Protocol>) -> Self {
        ProtocolPage {
            items: p.items.iter().map(Into::into).collect(),
            next: p.next.clone(),
        }
    }
}

/// A page of orders, personal data masked.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct OrderPage {
    /// The orders, by `outReqNo`.
    pub items: Vec<OrderView>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[schema(required = true)]
    pub next: Option<String>,
}

/// A page of the audit trail.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct AuditPage {
    /// What people did, newest first: `OperatorResolved`, `OperatorReconciled` and
    /// `OperatorResent` events.
    pub items: Vec<EventView>,
    /// Pass as `before` for the next (older) page; absent on the last.
    #[schema(required = true)]
    pub next: Option<u64>,
}

impl AuditPage {
    pub(super) fn of(events: &[Event], limit: usize) -> Self {
        AuditPage {
            items: events.iter().map(Into::into).collect(),
            next: (events.len() == limit).then(|| events.last().map(|e| e.seq)).flatten(),
        }
    }
}

impl From<&Page<Order>> for OrderPage {
    fn from(p: &Page<Order>) -> Self {
        OrderPage {
            items: p.items.iter().map(|o| OrderView::of(o, Personal::Masked)).collect(),
            next: p.next.clone(),
        }
    }
}

/// Events a consumer has not acknowledged.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct EventBatch {
    /// In `seq` order; empty when the wait ran out.
    pub events: Vec<EventView>,
}

/// protopay's ledger beside the payment system's balances. Reported, never acted on.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ReconciliationView {
    /// The protocol.
    pub trans_no: String,
    /// protopay's books.
    pub ours: LedgerView,
    /// The payment system's, just fetched.
    pub theirs: RemoteView,
    /// Every figure that disagrees, in words (empty when all agree).
    pub drift: Vec<String>,
}

impl From<&Reconciliation> for ReconciliationView {
    fn from(r: &Reconciliation) -> Self {
        ReconciliationView {
            trans_no: r.trans_no.clone(),
            ours: (&r.ours).into(),
            theirs: (&r.theirs).into(),
            drift: r.drift.iter().map(ToString::to_string).collect(),
        }
    }
}

/// A bank branch.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct CnapsView {
    /// Its name.
    pub bank_name: String,
    /// Its CNAPS number.
    pub bank_cnaps: String,
}

impl From<&CnapsEntry> for CnapsView {
    fn from(c: &CnapsEntry) -> Self {
        CnapsView {
            bank_name: c.bank_name.clone(),
            bank_cnaps: c.bank_cnaps.clone(),
        }
    }
}

/// Whether a consumer name is acceptable: it is a key in the store, and shows in logs.
pub(super) fn consumer_ok(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What a check of every ledger, due time and listing count found.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct CheckView {
    /// Protocols checked.
    pub protocols: usize,
    /// Orders checked.
    pub orders: usize,
    /// Every broken invariant, in words (empty when all hold).
    pub violations: Vec<String>,
    /// What kept changing while it was read, and so was not judged: check again.
    pub unsettled: Vec<String>,
}

impl From<&CheckReport> for CheckView {
    fn from(r: &CheckReport) -> Self {
        CheckView {
            protocols: r.protocols,
            orders: r.orders,
            violations: r.violations.clone(),
            unsettled: r.unsettled.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protopay_engine::wire::OutType;
    use protopay_engine::{Amount, Refusal, Source};

    /// Every kind of event, and every anomaly.
    fn every_kind() -> Vec<EventKind> {
        let amount = Amount::from_fen(123).unwrap();
        let mut kinds = vec![
            EventKind::ProtocolCreateRequested { attempt: "a1".into() },
            EventKind::ProtocolCreated { attempt: "a1".into() },
            EventKind::ProtocolAdopted { opening: amount },
            EventKind::InboundRequested,
            EventKind::OutboundReserved,
            EventKind::Submitted,
            EventKind::NotSent,
            EventKind::Pending { status: Status::Unpaid },
            EventKind::InboundPaid,
            EventKind::InboundArrived,
            EventKind::InboundFailed,
            EventKind::PosCodeClosed,
            EventKind::OutboundSucceeded {
                out_type: OutType::Refund,
            },
            EventKind::OutboundFailed {
                refusal: Some(Refusal {
                    code: "EP30001".into(),
                    msg: "refused".into(),
                }),
            },
            EventKind::OutboundFailed { refusal: None },
            EventKind::OperatorResolved {
                status: Status::Failure,
                note: "checked".into(),
                by: Some("li.lei".into()),
            },
            EventKind::OperatorReconciled {
                note: "month end".into(),
                by: "li.lei".into(),
                drifting: 1,
            },
            EventKind::OperatorResent {
                consumer: "hook".into(),
                from_seq: 3,
                note: "receiver restored".into(),
                by: "li.lei".into(),
            },
        ];
        kinds.extend(
            [
                Anomaly::ConflictingStatus {
                    current: "SUCCESS".into(),
                    observed: "FAILURE".into(),
                },
                Anomaly::IdentityMismatch { field: "amount".into() },
                Anomaly::PaidAfterClose,
                Anomaly::UnknownEnumValue {
                    field: "payStatus".into(),
                    value: "NEW".into(),
                },
                Anomaly::UnreadableValue {
                    field: "payFinishTime".into(),
                },
                Anomaly::WrongOrderKind,
                Anomaly::RemoteLost,
                Anomaly::NeedsAttention { sends: 3 },
                Anomaly::OrphanCallback,
                Anomaly::PossibleOrphanProtocol { attempt: "a2".into() },
                Anomaly::SuspectedDoublePayment {
                    other_pay_order_no: "P-2".into(),
                },
                Anomaly::BalanceDrift {
                    figure: "available".into(),
                    ours: amount,
                    theirs: Amount::ZERO,
                },
            ]
            .into_iter()
            .map(EventKind::Anomaly),
        );
        kinds
    }

    /// What generated clients read: `data` is always an object tagged with the event's own
    /// `kind`, its keys camelCase, statuses spelled as everywhere else — never `null`, never a
    /// bare string, never the stored enum's spelling.
    #[test]
    fn event_data_is_an_object_tagged_by_kind_in_camel_case() {
        for kind in every_kind() {
            let event = Event {
                seq: 1,
                at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
                trans_no: None,
                out_req_no: None,
                source: Source::Engine,
                kind,
            };
            let view = serde_json::to_value(EventView::from(&event)).unwrap();
            let data = view["data"].as_object().unwrap_or_else(|| panic!("{view}"));
            assert_eq!(data.get("kind"), Some(&view["kind"]), "{view}");
            assert!(data.keys().all(|k| !k.contains('_')), "camelCase keys: {view}");
            assert!(data.values().all(|v| !v.is_null()), "absent, never null: {view}");
            if let Some(status) = data.get("status") {
                assert!(["UNPAID", "FAILURE"].contains(&status.as_str().unwrap()), "{view}");
            }
        }
    }
}
