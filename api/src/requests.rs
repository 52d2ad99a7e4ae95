//! What hosts send to the `/v1` API, and how it becomes the engine's commands. Field names
//! are the wire protocol's camelCase; amounts are decimal strings (`"100.00"`). Unknown fields
//! are refused, so a misspelt optional field is an error rather than silently absent. Values
//! the engine checks (lengths, amounts, CNAPS) are left to it, so that one rule holds for Rust
//! and JSON hosts alike; here only the API's own words (`OUT`, `POS`, `SUCCESS`) are read.

use super::error::ApiError;
use protopay_engine::wire::{Amount, CashierType, OutType, ProdCatalog};
use protopay_engine::{NewInbound, NewOutbound, NewProtocol, Sensitive, Status};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

/// Open a protocol (escrow agreement) at the payment system.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct CreateProtocol {
    /// Purpose of the deal.
    pub trans_desc: String,
    /// Party id assigned by the payment system.
    pub business_id: String,
    /// `POS` (the default) or `QP` (quick pay); case does not matter.
    pub cashier_type: Option<String>,
}

/// Take a payment into a protocol: a POS six-digit code, or a quick-pay cashier page.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct CreateInbound {
    /// The protocol to pay into.
    pub trans_no: String,
    /// Your request number; the idempotency key. Generated when absent.
    pub out_req_no: Option<String>,
    /// How much, e.g. `"100.00"`.
    pub amount: String,
    /// POS: `01` debit cards only, `02` debit and credit.
    pub prod_catalog: Option<String>,
    /// Contract number.
    pub contract_num: Option<String>,
    /// Quick pay: the payer's name.
    pub payer_name: Option<String>,
    /// Quick pay: the payer's ID number.
    pub payer_cert_number: Option<String>,
    /// Quick pay: where the cashier page returns.
    pub return_url: Option<String>,
}

/// Pay out of a protocol, or refund.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct CreateOutbound {
    /// The protocol to pay from.
    pub trans_no: String,
    /// Your request number; the idempotency key. Generated when absent.
    pub out_req_no: Option<String>,
    /// How much, e.g. `"40.00"`.
    pub amount: String,
    /// `OUT` (a payout) or `REFUND`; case does not matter.
    pub out_type: String,
    /// The account holder's name.
    pub payee_name: String,
    /// The account number.
    pub payee_account: String,
    /// The bank or branch name.
    pub bank_name: String,
    /// The branch's CNAPS number (12 digits).
    pub bank_cnaps: String,
    /// Free text.
    pub remark: Option<String>,
}

/// A person's decision on an order that needs attention, after checking with the payment
/// system out of band.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Resolve {
    /// `SUCCESS` or `FAILURE`.
    pub status: String,
    /// Why: who checked what, kept in the order's history.
    pub note: String,
}

/// Acknowledge a consumer's events up to `seq`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Ack {
    /// The consumer's name.
    pub consumer: String,
    /// The last event handled (at most 9223372036854775807).
    pub seq: u64,
}

/// A page of a list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct PageQuery {
    /// The `next` of the previous page.
    pub cursor: Option<String>,
    /// At most this many (default 100, at most 500).
    pub limit: Option<usize>,
}

/// Which orders, a page at a time.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct OrdersQuery {
    /// A status (`SUBMITTED`, `SUCCESS`, …) or `NEEDS_ATTENTION`; case and `-`/`_` do not matter.
    pub status: Option<String>,
    /// Only this protocol's orders.
    pub trans_no: Option<String>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
    /// At most this many (default 100, at most 500).
    pub limit: Option<usize>,
}

/// Read a consumer's unacknowledged events, waiting for some if there are none.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct EventsQuery {
    /// The consumer's name (letters, digits, `.`, `_`, `-`; at most 64).
    pub consumer: String,
    /// Seconds to wait for an event when there is none (default 0, at most 30).
    pub wait: Option<u64>,
}

/// Search bank branches.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct CnapsQuery {
    /// Part of the branch name.
    pub keyword: String,
}

fn amount(text: &str) -> Result<Amount, ApiError> {
    Amount::parse(text).map_err(ApiError::from)
}

/// A known value of a wire enumeration, or an error naming the field and the choices.
fn known<T>(value: T, is_known: bool, field: &'static str, choices: &str) -> Result<T, ApiError> {
    if is_known {
        Ok(value)
    } else {
        Err(ApiError::invalid(field, format!("`{field}` must be one of {choices}")))
    }
}

impl CreateProtocol {
    /// The engine's command.
    pub(super) fn into_command(self) -> Result<NewProtocol, ApiError> {
        let cashier_type = match self.cashier_type {
            None => CashierType::Pos,
            Some(text) => {
                let c = CashierType::from_wire(&text.to_ascii_uppercase());
                let ok = c.is_known();
                known(c, ok, "cashierType", "POS, QP")?
            }
        };
        Ok(NewProtocol {
            trans_desc: self.trans_desc,
            business_id: self.business_id,
            cashier_type,
        })
    }
}

impl CreateInbound {
    /// The engine's command.
    pub(super) fn into_command(self) -> Result<NewInbound, ApiError> {
        let prod_catalog = match self.prod_catalog {
            None => None,
            Some(text) => {
                let p = ProdCatalog::from_wire(&text);
                let ok = p.is_known();
                Some(known(p, ok, "prodCatalog", "01 (debit only), 02 (debit and credit)")?)
            }
        };
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
        let out_type = OutType::from_wire(&self.out_type.to_ascii_uppercase());
        let ok = out_type.is_known();
        Ok(NewOutbound {
            amount: amount(&self.amount)?,
            out_type: known(out_type, ok, "outType", "OUT, REFUND")?,
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
    pub(super) fn into_decision(self) -> Result<(Status, String), ApiError> {
        let status = match self.status.to_ascii_uppercase().as_str() {
            "SUCCESS" => Status::Success,
            "FAILURE" => Status::Failure,
            _ => return Err(ApiError::invalid("status", "`status` must be SUCCESS or FAILURE")),
        };
        Ok((status, self.note))
    }
}
