//! What the `/v1` API answers. Field names are the wire protocol's camelCase where one exists
//! (`transNo`, `outReqNo`, `payeeAccount`, …); amounts are decimal strings (`"100.00"`);
//! times are RFC 3339 in UTC with milliseconds (`2026-11-29T07:31:25.123Z`).
//!
//! Personal data (payee and payer names, account and ID numbers) appears in full only where
//! one order is read or was just sent; lists mask it (`***1234`).

use chrono::{DateTime, Utc};
use protopay_engine::domain::{Listing, RemoteBalances};
use protopay_engine::wire::CnapsEntry;
use protopay_engine::{CheckReport, Event, Ledger, Order, OrderDetails, Page, Protocol, Reconciliation, Sensitive};
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
    /// `POS` or `QP`.
    pub cashier_type: String,
    /// protopay's books.
    pub ledger: LedgerView,
    /// The payment system's balances, once asked (`refresh`, `reconcile`).
    pub remote: Option<RemoteView>,
}

impl From<&Protocol> for ProtocolView {
    fn from(p: &Protocol) -> Self {
        ProtocolView {
            trans_no: p.trans_no.clone(),
            business_id: p.business_id.clone(),
            trans_desc: p.trans_desc.clone(),
            channel_type: p.channel_type.to_string(),
            cashier_type: p.cashier_type.to_string(),
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
pub(super) struct RefusalView {
    /// Its code, e.g. `EP10001`.
    pub code: String,
    /// Its message.
    pub msg: String,
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
    pub direction: &'static str,
    /// How much.
    pub amount: String,
    /// `REQUESTED`, `RESERVED`, `SUBMITTED` (sent, outcome unknown), `UNPAID`, `PROCESSING`,
    /// `SUCCESS` or `FAILURE`.
    pub status: String,
    /// Open, and waiting for a person: the funds stay reserved until the payment system's
    /// word or a `resolve` settles it.
    pub needs_attention: bool,
    /// The payment system refused the call outright.
    pub refusal: Option<RefusalView>,
    /// How many times the call was sent.
    pub sends: u32,
    /// When it was last sent.
    #[serde(serialize_with = "millis_or_null")]
    pub last_sent_at: Option<DateTime<Utc>>,
    /// Polls without news since the last change.
    pub quiet_polls: u32,
    /// Inbound, POS: the six-digit code the payer types.
    pub pos_code: Option<String>,
    /// Inbound, quick pay: the cashier page.
    pub cashier_url: Option<String>,
    /// The payment system's order number.
    pub pay_order_no: Option<String>,
    /// Inbound: the funds arrived in the protocol.
    pub arrived: Option<bool>,
    /// Inbound: its POS code was closed.
    pub closed: Option<bool>,
    /// Outbound: `OUT` or `REFUND`.
    pub out_type: Option<String>,
    /// Outbound: the account holder (masked in lists).
    pub payee_name: Option<String>,
    /// Outbound: the account number (masked in lists).
    pub payee_account: Option<String>,
    /// Outbound: the bank or branch.
    pub bank_name: Option<String>,
    /// Outbound: the branch's CNAPS number.
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
            direction: if inbound.is_some() { "inbound" } else { "outbound" },
            amount: o.amount().to_string(),
            status: o.status.as_str().to_owned(),
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
            out_type: o.out_type().map(ToString::to_string),
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
    pub trans_no: Option<String>,
    /// The order, when it is about one.
    pub out_req_no: Option<String>,
    /// What brought the news: `callback:inbound-pay`, `poll`, `reply`, `engine`, `operator`.
    pub source: String,
    /// Its kind, e.g. `Settled`, `Anomaly`.
    pub kind: String,
    /// A sentence for people.
    pub text: String,
    /// The kind's fields, for programs.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl From<&Event> for EventView {
    fn from(e: &Event) -> Self {
        let data = serde_json::to_value(&e.kind).unwrap_or(serde_json::Value::Null);
        // Serde writes a unit variant as its name and others as `{ name: fields }`.
        let (kind, data) = match data {
            serde_json::Value::String(name) => (name, serde_json::Value::Null),
            serde_json::Value::Object(map) if map.len() == 1 => match map.into_iter().next() {
                Some((name, fields)) => (name, fields),
                None => (String::new(), serde_json::Value::Null),
            },
            other => (String::new(), other),
        };
        EventView {
            seq: e.seq,
            at: e.at,
            trans_no: e.trans_no.clone(),
            out_req_no: e.out_req_no.clone(),
            source: e.source.to_string(),
            kind,
            text: e.kind.to_string(),
            data,
        }
    }
}

/// An order with its history and the time of its next poll.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct OrderDetailsView {
    /// The order, personal data shown.
    pub order: OrderView,
    /// Every event about it, in order.
    pub history: Vec<EventView>,
    /// When protopay next asks the payment system about it (`null` once settled).
    #[serde(serialize_with = "millis_or_null")]
    pub next_poll: Option<DateTime<Utc>>,
}

impl From<&OrderDetails> for OrderDetailsView {
    fn from(d: &OrderDetails) -> Self {
        OrderDetailsView {
            order: OrderView::of(&d.order, Personal::Shown),
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
    pub next: Option<String>,
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
