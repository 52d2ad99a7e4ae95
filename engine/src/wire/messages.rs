//! The `data` of every call, reply and callback, with the exact wire names of `docs/protocol.md`.
//!
//! Received structures tolerate absent, null and empty-string fields (the payment system
//! leaves fields empty before a payment happens): each becomes `None`. Personal fields are
//! [`Sensitive`], so a `Debug` of any of these never shows them.
//!
//! One file for all of them, longer than most: they are one vocabulary, declared field by
//! field in the document's order, and read best side by side (a request next to its reply).

use super::{Amount, ArrivedStatus, CashierType, ChannelType, OutType, PayStatus, ProdCatalog, ReportedTime};
use crate::secret::Sensitive;
use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};
use std::fmt::Display;
use std::str::FromStr;

/// On the wire, absent, `null` and `""` all mean "not given"; anything else must parse as
/// `T`. Only the wire reads these messages: a store keeps its own records
/// (`storage::records`), which read back exactly as written.
fn opt<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    match Option::<std::borrow::Cow<'de, str>>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// Declares a `data` structure: its required fields first, then an `optional { … }` block
/// whose fields all follow the wire's rule — absent, `null` and `""` read as `None` (see
/// `opt`), and `None` is left out when sent. One declaration instead of the same serde
/// attribute on every optional field.
macro_rules! wire_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$rmeta:meta])* pub $req:ident : $rty:ty, )*
            optional {
                $( $(#[$ometa:meta])* pub $opt:ident : Option<$oty:ty>, )*
            }
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[$rmeta])* pub $req: $rty, )*
            $(
                $(#[$ometa])*
                #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "opt")]
                pub $opt: Option<$oty>,
            )*
        }
    };
}

/// The eight calls of the API, by endpoint name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// Create a protocol.
    Create,
    /// Query a protocol.
    Find,
    /// Start an inbound payment.
    Prepay,
    /// Close a POS code.
    Posclose,
    /// Query an inbound order.
    Inquery,
    /// Pay out or refund.
    Outpay,
    /// Query an outbound order.
    Outquery,
    /// Look up CNAPS numbers.
    Querybankcnaps,
}

impl Endpoint {
    /// Every endpoint.
    pub const ALL: [Endpoint; 8] = [
        Endpoint::Create,
        Endpoint::Find,
        Endpoint::Prepay,
        Endpoint::Posclose,
        Endpoint::Inquery,
        Endpoint::Outpay,
        Endpoint::Outquery,
        Endpoint::Querybankcnaps,
    ];

    /// The last path segment: `{base}/api/protocol/{name}`.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Create => "create",
            Endpoint::Find => "find",
            Endpoint::Prepay => "prepay",
            Endpoint::Posclose => "posclose",
            Endpoint::Inquery => "inquery",
            Endpoint::Outpay => "outpay",
            Endpoint::Outquery => "outquery",
            Endpoint::Querybankcnaps => "querybankcnaps",
        }
    }

    /// The endpoint for a path name.
    pub fn from_name(name: &str) -> Option<Self> {
        Endpoint::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The path below the base URL.
    pub fn path(self) -> String {
        format!("/api/protocol/{}", self.name())
    }
}

/// The three callbacks the payment system sends us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CallbackKind {
    /// Inbound pay result, sent to `outSuccessNotifyUrl`; data is the inbound view.
    InboundPay,
    /// Inbound funds arrived, sent to `outArrivedNotifyUrl`; data is the inbound view.
    InboundArrival,
    /// Outbound or refund result, sent to `outNotifyUrl`; data is the outbound view.
    Outbound,
}

impl CallbackKind {
    /// Every kind.
    pub const ALL: [CallbackKind; 3] = [
        CallbackKind::InboundPay,
        CallbackKind::InboundArrival,
        CallbackKind::Outbound,
    ];

    /// The path segment the engine puts in notify URLs for this kind.
    pub fn slug(self) -> &'static str {
        match self {
            CallbackKind::InboundPay => "inbound-pay",
            CallbackKind::InboundArrival => "inbound-arrival",
            CallbackKind::Outbound => "outbound",
        }
    }

    /// The kind for a path segment.
    pub fn from_slug(slug: &str) -> Option<Self> {
        CallbackKind::ALL.into_iter().find(|k| k.slug() == slug)
    }
}

/// A request type: which endpoint it goes to and what its reply's `data` decodes into.
pub trait Call: Serialize {
    /// Where it goes.
    const ENDPOINT: Endpoint;
    /// The reply's `data`.
    type Reply: DeserializeOwned;
}

macro_rules! call {
    ($req:ty => $endpoint:ident, $reply:ty) => {
        impl Call for $req {
            const ENDPOINT: Endpoint = Endpoint::$endpoint;
            type Reply = $reply;
        }
    };
}

wire_struct! {
    /// `create`: open a protocol (escrow agreement).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct CreateProtocol {
        /// Custody channel (`LFT`).
        pub channel_type: ChannelType,
        /// Purpose of the deal.
        pub trans_desc: String,
        /// Party id assigned by the payment system.
        pub business_id: String,
        optional {
            /// `POS` (default) or `QP`.
            pub cashier_type: Option<CashierType>,
        }
    }
}
call!(CreateProtocol => Create, RemoteProtocol);

/// `find`: query a protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FindProtocol {
    /// Protocol number.
    pub trans_no: String,
}
call!(FindProtocol => Find, RemoteProtocol);

wire_struct! {
    /// The payment system's view of a protocol: the reply to `create` and `find` (the `/v1`
    /// API's `ProtocolView` is protopay's, with its ledger).
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct RemoteProtocol {
        /// Protocol number, assigned by the payment system.
        pub trans_no: String,
        optional {
            /// The deal's purpose.
            pub trans_desc: Option<String>,
            /// The business system it belongs to (must be ours).
            pub app_id: Option<String>,
            /// The party id.
            pub business_id: Option<String>,
            /// The party's description.
            pub business_desc: Option<String>,
            /// Custody channel.
            pub channel_type: Option<ChannelType>,
            /// Available balance.
            pub amount: Option<Amount>,
            /// Paid in, not yet arrived.
            pub onpassage_amount: Option<Amount>,
            /// Paid out.
            pub out_amount: Option<Amount>,
            /// When the payment system created it (informative).
            pub create_time: Option<ReportedTime>,
            /// `POS` or `QP` (or a value this version does not know).
            pub cashier_type: Option<CashierType>,
        }
    }
}

wire_struct! {
    /// `prepay`: start an inbound payment.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Prepay {
        /// Protocol number.
        pub trans_no: String,
        /// Our request number.
        pub out_req_no: String,
        /// Amount to pay in.
        pub amount: Amount,
        /// Where the pay-result callback goes.
        pub out_success_notify_url: String,
        optional {
            /// Where the funds-arrived callback goes.
            pub out_arrived_notify_url: Option<String>,
            /// Which cards a POS payment accepts (required for POS).
            pub prod_catalog: Option<ProdCatalog>,
            /// Contract number.
            pub contract_num: Option<String>,
            /// Quick pay: payer's name.
            pub qp_user_name: Option<Sensitive>,
            /// Quick pay: payer's ID number.
            pub qp_cert_number: Option<Sensitive>,
            /// Quick pay: where the cashier page returns to.
            pub return_url: Option<String>,
        }
    }
}
call!(Prepay => Prepay, InboundView);

wire_struct! {
    /// The inbound view: the reply to `prepay` and `inquery`, and the data of both inbound callbacks.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct InboundView {
        optional {
            /// The protocol.
            pub trans_no: Option<String>,
            /// The business system it belongs to (must be ours).
            pub app_id: Option<String>,
            /// Custody channel.
            pub channel_type: Option<ChannelType>,
            /// The order's amount (must be ours).
            pub amount: Option<Amount>,
            /// Our request number.
            pub out_req_no: Option<String>,
            /// POS only: the six-digit code the payer types.
            pub pos_code: Option<String>,
            /// The payment system's order number.
            pub pay_order_no: Option<String>,
            /// The payment status: the only field that says whether money moved.
            pub pay_status: Option<PayStatus>,
            /// Whether paid funds have arrived (`02`).
            pub arrived_status: Option<ArrivedStatus>,
            /// When it was paid (informative).
            pub pay_finish_time: Option<ReportedTime>,
            /// When the funds arrived (informative).
            pub pay_arrive_time: Option<ReportedTime>,
            /// When the payment system created it (informative).
            pub create_time: Option<ReportedTime>,
            /// The payer's card number (personal: masked in `Debug`).
            pub card_num: Option<Sensitive>,
            /// The card's bank, as a code.
            pub issuing_bank: Option<String>,
            /// The card's bank, by name.
            #[serde(rename = "issuingBankZH", alias = "issuingBankzh")]
            pub issuing_bank_zh: Option<String>,
            /// The channel's own result code (informative).
            pub channel_return_code: Option<String>,
            /// The channel's own message (informative).
            pub channel_return_msg: Option<String>,
            /// Contract number.
            pub contract_num: Option<String>,
            /// Quick pay only: the cashier page.
            pub cashier_url: Option<String>,
            /// Quick pay: the payer's name (personal).
            pub qp_user_name: Option<Sensitive>,
            /// Quick pay: the payer's ID number (personal).
            pub qp_cert_number: Option<Sensitive>,
            /// `POS` or `QP` (or a value this version does not know).
            pub cashier_type: Option<CashierType>,
        }
    }
}

/// `posclose`: close a POS six-digit code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PosClose {
    /// The inbound order whose code to close.
    pub out_req_no: String,
}
call!(PosClose => Posclose, PosCloseResult);

/// The reply to `posclose`: `{"result":"true"}` when closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosCloseResult {
    /// `"true"` when the code was closed (a JSON `true` is accepted too).
    #[serde(deserialize_with = "flexible_bool", serialize_with = "bool_as_text")]
    pub result: bool,
}

fn flexible_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B<'a> {
        Bool(bool),
        Text(&'a str),
    }
    match B::deserialize(d)? {
        B::Bool(b) => Ok(b),
        B::Text("true") => Ok(true),
        B::Text("false") => Ok(false),
        B::Text(_) => Err(serde::de::Error::custom("result must be \"true\" or \"false\"")),
    }
}

fn bool_as_text<S: serde::Serializer>(b: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if *b { "true" } else { "false" })
}

/// `inquery`: query an inbound order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inquery {
    /// The inbound order.
    pub out_req_no: String,
}
call!(Inquery => Inquery, InboundView);

wire_struct! {
    /// `outpay`: pay out or refund to a bank account.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Outpay {
        /// Protocol number.
        pub trans_no: String,
        /// Our request number.
        pub out_req_no: String,
        /// Amount to pay out.
        pub amount: Amount,
        /// Custody channel.
        pub channel_type: ChannelType,
        /// Where the result callback goes.
        pub out_notify_url: String,
        /// Payee name.
        pub bank_acc_name: Sensitive,
        /// Payee account number.
        pub bank_acc_num: Sensitive,
        /// Payee bank or branch name.
        pub bank_name: String,
        /// The branch's CNAPS number.
        pub bank_cnaps: String,
        /// `OUT` or `REFUND`.
        pub out_type: OutType,
        optional {
            /// Free text.
            pub remark: Option<String>,
        }
    }
}
call!(Outpay => Outpay, OutboundView);

wire_struct! {
    /// The outbound view: the reply to `outpay` and `outquery`, and the outbound callback's data.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct OutboundView {
        optional {
            /// The protocol.
            pub trans_no: Option<String>,
            /// The business system it belongs to (must be ours).
            pub app_id: Option<String>,
            /// The channel's sub-account code.
            pub channel_subacc_code: Option<String>,
            /// The channel's sub-account customer id.
            pub channel_subacc_custid: Option<String>,
            /// The order's amount (must be ours).
            pub amount: Option<Amount>,
            /// Our request number.
            pub out_req_no: Option<String>,
            /// The payment system's order number.
            pub pay_order_no: Option<String>,
            /// Custody channel.
            pub channel_type: Option<ChannelType>,
            /// Payee name (personal).
            pub bank_acc_name: Option<Sensitive>,
            /// Payee account number (personal).
            pub bank_acc_num: Option<Sensitive>,
            /// Payee bank or branch.
            pub bank_name: Option<String>,
            /// The branch's CNAPS number.
            pub bank_cnaps: Option<String>,
            /// `OUT` or `REFUND`.
            pub out_type: Option<OutType>,
            /// Our free text, echoed.
            pub remark: Option<String>,
            /// The payment status: the only field that says whether money moved.
            pub pay_status: Option<PayStatus>,
            /// When it was paid (informative).
            pub pay_finish_time: Option<ReportedTime>,
            /// When the payment system created it (informative).
            pub create_time: Option<ReportedTime>,
            /// The channel's own result code (informative).
            pub channel_return_code: Option<String>,
            /// The channel's own message (informative).
            pub channel_return_msg: Option<String>,
        }
    }
}

/// `outquery`: query an outbound order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outquery {
    /// The outbound order.
    pub out_req_no: String,
}
call!(Outquery => Outquery, OutboundView);

/// `querybankcnaps`: look up CNAPS numbers by a keyword of the branch name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryBankCnaps {
    /// e.g. `海淀`.
    pub bank_name_key_word: String,
}
call!(QueryBankCnaps => Querybankcnaps, Vec<CnapsEntry>);

/// One branch in the reply to `querybankcnaps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CnapsEntry {
    /// Branch name.
    pub bank_name: String,
    /// Its CNAPS number.
    pub bank_cnaps: String,
}
