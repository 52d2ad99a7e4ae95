//! What hosts send to the `/v1` API, and how it becomes the engine's commands. Field names
//! are the wire protocol's camelCase; amounts are decimal strings (`"100.00"`). Unknown fields
//! are refused, so a misspelt optional field is an error rather than silently absent.
//!
//! The engine checks every value, so that one rule holds for Rust and JSON hosts alike; the
//! document declares the same rules (lengths, patterns, enums — the constants are the engine's
//! own), so that a request the document allows is one the server takes, and the other way
//! round. A text that must say something matches `\S`: blank is not a value.

use super::error::ApiError;
use protopay_engine::domain::Listing;
use protopay_engine::wire::{Amount, CashierType, OutType, ProdCatalog};
use protopay_engine::{NewInbound, NewOutbound, NewProtocol, Sensitive, Status};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A whole number as JSON Schema counts one: `42`, or `42.0` (a number whose fraction is
/// zero is an integer there, and some clients write every number with a point).
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    whole(serde_json::Number::deserialize(d)?)
}

/// [`whole_number`], or `null`.
fn whole_number_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<serde_json::Number>::deserialize(d)?.map(whole).transpose()
}

fn whole<E: serde::de::Error>(n: serde_json::Number) -> Result<u64, E> {
    n.as_u64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..=9_007_199_254_740_992.0).contains(f))
                .map(|f| f as u64)
        })
        .ok_or_else(|| E::custom("not a whole number"))
}

/// How payers pay into a protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub(super) enum Cashier {
    /// A six-digit code typed at a POS terminal.
    #[serde(rename = "POS")]
    Pos,
    /// A quick-pay cashier page.
    #[serde(rename = "QP")]
    Qp,
}

/// A payout or a refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub(super) enum Payment {
    /// A payout.
    #[serde(rename = "OUT")]
    Out,
    /// A refund.
    #[serde(rename = "REFUND")]
    Refund,
}

impl Cashier {
    /// The API's name for a protocol's cashier type; `None` for one this version does not
    /// know (a protocol the payment system opened with a newer type).
    pub(super) fn of(cashier: &CashierType) -> Option<Self> {
        match cashier {
            CashierType::Pos => Some(Cashier::Pos),
            CashierType::Qp => Some(Cashier::Qp),
            CashierType::Unknown(_) => None,
        }
    }
}

impl Payment {
    /// The API's name for an outbound order's type (always one the host sent).
    pub(super) fn of(out_type: &OutType) -> Option<Self> {
        match out_type {
            OutType::Out => Some(Payment::Out),
            OutType::Refund => Some(Payment::Refund),
            OutType::Unknown(_) => None,
        }
    }
}

/// Which cards a POS payment accepts.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
pub(super) enum Cards {
    /// Debit cards only.
    #[serde(rename = "01")]
    DebitOnly,
    /// Debit and credit cards.
    #[serde(rename = "02")]
    DebitAndCredit,
}

/// A person's decision on an order.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(super) enum Decision {
    /// It was paid.
    Success,
    /// It was not, and never will be.
    Failure,
}

/// A list of orders: those in one status, or those that need a person.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(super) enum ListingName {
    /// Open orders flagged for a person.
    NeedsAttention,
    /// Payments in, recorded, not yet sent.
    Requested,
    /// Payments out, recorded and reserved, not yet sent.
    Reserved,
    /// Sent, outcome unknown.
    Submitted,
    /// Accepted, not paid.
    Unpaid,
    /// Accepted, being paid.
    Processing,
    /// Paid.
    Success,
    /// Failed or refused.
    Failure,
}

impl From<ListingName> for Listing {
    fn from(l: ListingName) -> Self {
        match l {
            ListingName::NeedsAttention => Listing::NeedsAttention,
            ListingName::Requested => Listing::Status(Status::Requested),
            ListingName::Reserved => Listing::Status(Status::Reserved),
            ListingName::Submitted => Listing::Status(Status::Submitted),
            ListingName::Unpaid => Listing::Status(Status::Unpaid),
            ListingName::Processing => Listing::Status(Status::Processing),
            ListingName::Success => Listing::Status(Status::Success),
            ListingName::Failure => Listing::Status(Status::Failure),
        }
    }
}

/// Open a protocol (escrow agreement) at the payment system.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct CreateProtocol {
    /// Purpose of the deal.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub trans_desc: String,
    /// Party id assigned by the payment system.
    #[schema(min_length = 1, max_length = 64, pattern = r"\S")]
    pub business_id: String,
    /// `POS` (the default) or `QP` (quick pay).
    pub cashier_type: Option<Cashier>,
    /// Makes the command idempotent: a repeat with the same key answers the protocol the
    /// first call opened, without opening another (`409 idempotency_mismatch` if the other
    /// fields differ). Without it every call opens a new protocol.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]+$")]
    pub idempotency_key: Option<String>,
}

/// Take a payment into a protocol: a POS six-digit code, or a quick-pay cashier page.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct CreateInbound {
    /// The protocol to pay into.
    #[schema(min_length = 1, max_length = 64, pattern = r"\S")]
    pub trans_no: String,
    /// Your request number; the idempotency key: your `appId` and a suffix. Generated when
    /// absent.
    #[schema(min_length = 2, max_length = 64, pattern = "^[A-Za-z0-9_-]+$")]
    pub out_req_no: Option<String>,
    /// How much, more than zero, e.g. `"100.00"` (a string: never a JSON number).
    #[schema(pattern = r"^([1-9][0-9]{0,14}(\.[0-9]{1,2})?|0\.(0[1-9]|[1-9][0-9]?))$")]
    pub amount: String,
    /// Which cards a POS payment accepts: `01` debit only, `02` debit and credit. Required
    /// when the protocol is POS (the document cannot say so: it depends on the protocol);
    /// without it a POS deposit is refused with `invalid_request` before anything is sent.
    pub prod_catalog: Option<Cards>,
    /// Contract number.
    #[schema(max_length = 64)]
    pub contract_num: Option<String>,
    /// Quick pay: the payer's name.
    #[schema(max_length = 100)]
    pub payer_name: Option<String>,
    /// Quick pay: the payer's ID number.
    #[schema(max_length = 32)]
    pub payer_cert_number: Option<String>,
    /// Quick pay: where the cashier page returns.
    #[schema(max_length = 512)]
    pub return_url: Option<String>,
}

/// Pay out of a protocol, or refund.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct CreateOutbound {
    /// The protocol to pay from.
    #[schema(min_length = 1, max_length = 64, pattern = r"\S")]
    pub trans_no: String,
    /// Your request number; the idempotency key: your `appId` and a suffix. Generated when
    /// absent.
    #[schema(min_length = 2, max_length = 64, pattern = "^[A-Za-z0-9_-]+$")]
    pub out_req_no: Option<String>,
    /// How much, more than zero, e.g. `"40.00"` (a string: never a JSON number).
    #[schema(pattern = r"^([1-9][0-9]{0,14}(\.[0-9]{1,2})?|0\.(0[1-9]|[1-9][0-9]?))$")]
    pub amount: String,
    /// `OUT` (a payout) or `REFUND`.
    pub out_type: Payment,
    /// The account holder's name.
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub payee_name: String,
    /// The account number.
    #[schema(min_length = 1, max_length = 40, pattern = r"\S")]
    pub payee_account: String,
    /// The bank or branch name.
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub bank_name: String,
    /// The branch's CNAPS number (12 digits).
    #[schema(pattern = "^[0-9]{12}$")]
    pub bank_cnaps: String,
    /// Free text.
    #[schema(max_length = 200)]
    pub remark: Option<String>,
}

/// A person's decision on an order that needs attention, after checking with the payment
/// system out of band.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Resolve {
    /// `SUCCESS` or `FAILURE`.
    pub status: Decision,
    /// Why: who checked what, kept in the order's history.
    #[schema(min_length = 1, max_length = 1000, pattern = r"\S")]
    pub note: String,
    /// The order's `version` you decided on (from `GET /v1/orders/{outReqNo}`). If the order
    /// has moved since, the decision is refused with `409 invalid_state` and nothing is
    /// recorded: read it again. Without it, the version the server reads stands in.
    #[serde(default, deserialize_with = "whole_number_or_null")]
    #[schema(minimum = 1, maximum = 9223372036854775807_i64)]
    pub version: Option<u64>,
}

/// Acknowledge a consumer's events up to `seq`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Ack {
    /// The consumer's name.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub consumer: String,
    /// The last event handled.
    #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
    #[serde(deserialize_with = "whole_number")]
    pub seq: u64,
}

/// A page of a list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct PageQuery {
    /// The `next` of the previous page.
    pub cursor: Option<String>,
    /// At most this many (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
}

/// Which orders, a page at a time.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct OrdersQuery {
    /// Only the orders in this status, or those that need a person.
    pub status: Option<ListingName>,
    /// Only this protocol's orders.
    pub trans_no: Option<String>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
    /// At most this many (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
}

/// A page of the audit trail.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// Only records before this `seq`: the `next` of the previous page (from the newest when
    /// absent).
    #[param(minimum = 1, maximum = 9223372036854775807_i64)]
    pub before: Option<u64>,
    /// At most this many (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
}

/// Read a consumer's unacknowledged events, waiting for some if there are none.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct EventsQuery {
    /// The consumer's name (letters, digits, `.`, `_`, `-`; at most 64).
    #[param(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub consumer: String,
    /// How long to wait for an event when there is none, in milliseconds (default 0; longer
    /// waits are cut to 30 000).
    #[param(minimum = 0)]
    pub wait_ms: Option<u64>,
    /// The same in seconds: the older name, still read (`waitMs` wins when both are given).
    #[param(minimum = 0)]
    pub wait: Option<u64>,
}

/// Search bank branches.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct CnapsQuery {
    /// Part of the branch name.
    #[param(min_length = 1, max_length = 50, pattern = r"\S")]
    pub keyword: String,
}

fn amount(text: &str) -> Result<Amount, ApiError> {
    Amount::parse(text).map_err(ApiError::from)
}

impl CreateProtocol {
    /// The engine's command.
    pub(super) fn into_command(self) -> Result<NewProtocol, ApiError> {
        let cashier_type = match self.cashier_type {
            None | Some(Cashier::Pos) => CashierType::Pos,
            Some(Cashier::Qp) => CashierType::Qp,
        };
        Ok(NewProtocol {
            trans_desc: self.trans_desc,
            business_id: self.business_id,
            cashier_type,
            idempotency_key: self.idempotency_key,
        })
    }
}

impl CreateInbound {
    /// The engine's command.
    pub(super) fn into_command(self) -> Result<NewInbound, ApiError> {
        let prod_catalog = self.prod_catalog.map(|c| match c {
            Cards::DebitOnly => ProdCatalog::DebitOnly,
            Cards::DebitAndCredit => ProdCatalog::DebitAndCredit,
        });
        Ok(NewInbound {
            amount: amount(&self.amount)?,
            trans_no: self.trans_no,
            out_req_no: self.out_req_no,
            prod_catalog,
            contract_num: self.contract_num,
            payer_name: self.payer_name.map(Sensitive::new),
            payer_cert_number: self.payer_cert_number.map(Sensitive::new),
            return_url: self.return_url,
        })
    }
}

impl CreateOutbound {
    /// The engine's command.
    pub(super) fn into_command(self) -> Result<NewOutbound, ApiError> {
        let out_type = match self.out_type {
            Payment::Out => OutType::Out,
            Payment::Refund => OutType::Refund,
        };
        Ok(NewOutbound {
            amount: amount(&self.amount)?,
            out_type,
            trans_no: self.trans_no,
            out_req_no: self.out_req_no,
            payee_name: Sensitive::new(self.payee_name),
            payee_account: Sensitive::new(self.payee_account),
            bank_name: self.bank_name,
            bank_cnaps: self.bank_cnaps,
            remark: self.remark,
        })
    }
}

impl Resolve {
    /// The decided status and the note.
    /// The engine's decision (by nobody named: the caller's name is the handler's to add).
    pub(super) fn into_decision(self) -> protopay_engine::Decision {
        let status = match self.status {
            Decision::Success => Status::Success,
            Decision::Failure => Status::Failure,
        };
        protopay_engine::Decision {
            seen_version: self.version,
            ..protopay_engine::Decision::new(status, self.note)
        }
    }
}
