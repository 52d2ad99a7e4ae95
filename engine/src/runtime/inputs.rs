//! What the host passes to commands.

use crate::domain::Status;
use crate::secret::Sensitive;
use crate::wire::{Amount, CashierType, OutType, ProdCatalog};

/// Open a protocol (escrow agreement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProtocol {
    /// Purpose of the deal.
    pub trans_desc: String,
    /// Party id assigned by the payment system.
    pub business_id: String,
    /// How payers pay in (default `POS`).
    pub cashier_type: CashierType,
    /// Makes the command idempotent: a repeat with the same key answers the protocol the
    /// first opened. `None`: every call opens a new protocol.
    pub idempotency_key: Option<String>,
}

/// Take an inbound payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInbound {
    /// The protocol to pay into.
    pub trans_no: String,
    /// Our request number; `None` generates one.
    pub out_req_no: Option<String>,
    /// How much.
    pub amount: Amount,
    /// POS: which cards (required for POS protocols).
    pub prod_catalog: Option<ProdCatalog>,
    /// Contract number.
    pub contract_num: Option<String>,
    /// Quick pay: the payer's name.
    pub payer_name: Option<Sensitive>,
    /// Quick pay: the payer's ID number.
    pub payer_cert_number: Option<Sensitive>,
    /// Quick pay: where the cashier page returns.
    pub return_url: Option<String>,
}

impl NewInbound {
    /// A POS deposit of `amount` into `trans_no`, debit cards only.
    pub fn pos(trans_no: &str, amount: Amount) -> Self {
        NewInbound {
            trans_no: trans_no.to_owned(),
            out_req_no: None,
            amount,
            prod_catalog: Some(ProdCatalog::DebitOnly),
            contract_num: None,
            payer_name: None,
            payer_cert_number: None,
            return_url: None,
        }
    }
}

/// Pay out or refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutbound {
    /// The protocol to pay from.
    pub trans_no: String,
    /// Our request number; `None` generates one.
    pub out_req_no: Option<String>,
    /// How much.
    pub amount: Amount,
    /// `OUT` or `REFUND`.
    pub out_type: OutType,
    /// Payee name.
    pub payee_name: Sensitive,
    /// Payee account number.
    pub payee_account: Sensitive,
    /// Payee bank or branch.
    pub bank_name: String,
    /// The branch's CNAPS number.
    pub bank_cnaps: String,
    /// Free text.
    pub remark: Option<String>,
}

/// The payee of a payout or refund: who receives the money, at which bank branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payee {
    /// Account holder's name.
    pub name: Sensitive,
    /// Account number.
    pub account: Sensitive,
    /// Bank or branch name.
    pub bank_name: String,
    /// The branch's CNAPS number (12 digits).
    pub bank_cnaps: String,
}

impl NewOutbound {
    /// A payout (`OUT`) of `amount` from `trans_no` to `payee`, with a generated `outReqNo`
    /// and no remark (set the fields to change either).
    pub fn payout(trans_no: &str, amount: Amount, payee: Payee) -> Self {
        Self::to(trans_no, amount, OutType::Out, payee)
    }

    /// A refund (`REFUND`) of `amount` from `trans_no` to `payee`.
    pub fn refund(trans_no: &str, amount: Amount, payee: Payee) -> Self {
        Self::to(trans_no, amount, OutType::Refund, payee)
    }

    fn to(trans_no: &str, amount: Amount, out_type: OutType, payee: Payee) -> Self {
        NewOutbound {
            trans_no: trans_no.to_owned(),
            out_req_no: None,
            amount,
            out_type,
            payee_name: payee.name,
            payee_account: payee.account,
            bank_name: payee.bank_name,
            bank_cnaps: payee.bank_cnaps,
            remark: None,
        }
    }
}

/// A person's decision on an order that needs attention ([`Engine::resolve`](crate::Engine::resolve)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// `SUCCESS` or `FAILURE`.
    pub status: Status,
    /// Why: what the person checked, kept in the order's history.
    pub note: String,
    /// Who decided, when the caller knows (a named operator); kept beside the note.
    pub by: Option<String>,
    /// The order's version the decision was made on
    /// ([`OrderDetails::version`](crate::OrderDetails::version)): refused if it has moved.
    pub seen_version: Option<u64>,
}

impl Decision {
    /// `status`, for the reason `note`; by nobody named, on the version the engine reads.
    pub fn new(status: Status, note: impl Into<String>) -> Self {
        Decision {
            status,
            note: note.into(),
            by: None,
            seen_version: None,
        }
    }

    /// Made on version `version` of the order.
    pub fn at_version(self, version: u64) -> Self {
        Decision {
            seen_version: Some(version),
            ..self
        }
    }

    /// Made by the operator named `name`.
    pub fn by(self, name: impl Into<String>) -> Self {
        Decision {
            by: Some(name.into()),
            ..self
        }
    }
}
