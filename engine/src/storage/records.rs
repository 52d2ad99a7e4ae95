//! The stored form of an order: records of their own, apart from the wire's messages.
//!
//! An order carries the wire's messages in memory (the request it resends byte for byte, the
//! payment system's view merged), but no wire message is ever serialized into a store: each
//! has a record here, declared field by field with its stored name, and converted in exactly
//! one place each way (the `From` impls the `record!` macro writes). So a rename on the wire
//! cannot silently change a store's bytes — the conversion stops compiling instead — and the
//! wire's reading rules (absent, `null` and `""` all mean "not given") stay on the wire: a
//! record reads back exactly as it was written, `Some("")` included.
//!
//! The fields are value types ([`Amount`], [`Sensitive`], [`ReportedTime`] and the wire's
//! enumerations), each stored as its text. The order record is the enum of two complete
//! structs that sled format 1 first wrote; the field order is part of the format, since it
//! decides the bytes (`storage-sled/tests/format.rs` pins them, for every record kind).

use crate::domain::{Attempts, Inbound, Order, OrderKind, Outbound, Refusal, Status};
use crate::secret::Sensitive;
use crate::wire::{
    Amount, ArrivedStatus, CashierType, ChannelType, InboundView, OutType, OutboundView, Outpay, PayStatus, Prepay,
    ProdCatalog, ReportedTime,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How an order is stored.
#[derive(Serialize, Deserialize)]
pub(crate) enum OrderRecord {
    Inbound(InboundRecord),
    Outbound(OutboundRecord),
}

#[derive(Serialize, Deserialize)]
pub(crate) struct InboundRecord {
    app_id: String,
    request: PrepayRecord,
    status: Status,
    arrived: bool,
    closed: bool,
    refusal: Option<Refusal>,
    remote: InboundViewRecord,
    attempts: AttemptsRecord,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct OutboundRecord {
    app_id: String,
    request: OutpayRecord,
    status: Status,
    refusal: Option<Refusal>,
    remote: OutboundViewRecord,
    attempts: AttemptsRecord,
}

/// An order's [`Attempts`], under the names format 1 gave them.
#[derive(Serialize, Deserialize)]
pub(crate) struct AttemptsRecord {
    submissions: u32,
    last_submitted_at: Option<DateTime<Utc>>,
    quiet_polls: u32,
    needs_attention: bool,
    /// Absent in records written before it existed, and in every record where it is 0 (so
    /// those bytes are unchanged).
    #[serde(default, skip_serializing_if = "is_zero")]
    unsent: u32,
    /// Absent while false.
    #[serde(default, skip_serializing_if = "is_false")]
    double_payment_suspected: bool,
    /// Absent while false (so records written before it read back as undecided).
    #[serde(default, skip_serializing_if = "is_false")]
    decided_by_person: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl From<Attempts> for AttemptsRecord {
    fn from(a: Attempts) -> Self {
        AttemptsRecord {
            submissions: a.sends,
            last_submitted_at: a.last_sent_at,
            quiet_polls: a.quiet_polls,
            needs_attention: a.needs_attention,
            unsent: a.unsent,
            double_payment_suspected: a.double_payment_suspected,
            decided_by_person: a.decided_by_person,
        }
    }
}

impl From<AttemptsRecord> for Attempts {
    fn from(r: AttemptsRecord) -> Self {
        Attempts {
            sends: r.submissions,
            last_sent_at: r.last_submitted_at,
            quiet_polls: r.quiet_polls,
            needs_attention: r.needs_attention,
            unsent: r.unsent,
            double_payment_suspected: r.double_payment_suspected,
            decided_by_person: r.decided_by_person,
        }
    }
}

/// Declares the record of a wire message: its required fields, then the optional ones (left
/// out while `None`), each under its stored name (camelCase of the field unless renamed), and
/// the two conversions — which name every field, so that a field added to either side fails
/// to compile until the record says how it is stored.
macro_rules! record {
    (
        $(#[$meta:meta])*
        $record:ident <=> $message:ident {
            required {
                $( $req:ident : $rty:ty, )*
            }
            optional {
                $( $(#[$ometa:meta])* $opt:ident : $oty:ty, )*
            }
        }
    ) => {
        $(#[$meta])*
        #[derive(Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub(crate) struct $record {
            $( $req: $rty, )*
            $(
                $(#[$ometa])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                $opt: Option<$oty>,
            )*
        }

        impl From<$message> for $record {
            fn from(m: $message) -> Self {
                let $message { $( $req, )* $( $opt, )* } = m;
                $record { $( $req, )* $( $opt, )* }
            }
        }

        impl From<$record> for $message {
            fn from(r: $record) -> Self {
                let $record { $( $req, )* $( $opt, )* } = r;
                $message { $( $req, )* $( $opt, )* }
            }
        }
    };
}

record! {
    /// An inbound order's request, as sent (and resent) in `prepay`.
    PrepayRecord <=> Prepay {
        required {
            trans_no: String,
            out_req_no: String,
            amount: Amount,
            out_success_notify_url: String,
        }
        optional {
            out_arrived_notify_url: String,
            prod_catalog: ProdCatalog,
            contract_num: String,
            qp_user_name: Sensitive,
            qp_cert_number: Sensitive,
            return_url: String,
        }
    }
}

record! {
    /// What the payment system has said of an inbound order, merged.
    InboundViewRecord <=> InboundView {
        required {}
        optional {
            trans_no: String,
            app_id: String,
            channel_type: ChannelType,
            amount: Amount,
            out_req_no: String,
            pos_code: String,
            pay_order_no: String,
            pay_status: PayStatus,
            arrived_status: ArrivedStatus,
            pay_finish_time: ReportedTime,
            pay_arrive_time: ReportedTime,
            create_time: ReportedTime,
            card_num: Sensitive,
            issuing_bank: String,
            #[serde(rename = "issuingBankZH", alias = "issuingBankzh")]
            issuing_bank_zh: String,
            channel_return_code: String,
            channel_return_msg: String,
            contract_num: String,
            cashier_url: String,
            qp_user_name: Sensitive,
            qp_cert_number: Sensitive,
            cashier_type: CashierType,
        }
    }
}

record! {
    /// An outbound order's request, as sent (and resent) in `outpay`.
    OutpayRecord <=> Outpay {
        required {
            trans_no: String,
            out_req_no: String,
            amount: Amount,
            channel_type: ChannelType,
            out_notify_url: String,
            bank_acc_name: Sensitive,
            bank_acc_num: Sensitive,
            bank_name: String,
            bank_cnaps: String,
            out_type: OutType,
        }
        optional {
            remark: String,
        }
    }
}

record! {
    /// What the payment system has said of an outbound order, merged.
    OutboundViewRecord <=> OutboundView {
        required {}
        optional {
            trans_no: String,
            app_id: String,
            channel_subacc_code: String,
            channel_subacc_custid: String,
            amount: Amount,
            out_req_no: String,
            pay_order_no: String,
            channel_type: ChannelType,
            bank_acc_name: Sensitive,
            bank_acc_num: Sensitive,
            bank_name: String,
            bank_cnaps: String,
            out_type: OutType,
            remark: String,
            pay_status: PayStatus,
            pay_finish_time: ReportedTime,
            create_time: ReportedTime,
            channel_return_code: String,
            channel_return_msg: String,
        }
    }
}

impl From<Order> for OrderRecord {
    fn from(order: Order) -> Self {
        let Order {
            app_id,
            status,
            refusal,
            attempts,
            kind,
        } = order;
        match kind {
            OrderKind::Inbound(Inbound {
                request,
                arrived,
                closed,
                remote,
            }) => OrderRecord::Inbound(InboundRecord {
                app_id,
                request: request.into(),
                status,
                arrived,
                closed,
                refusal,
                remote: remote.into(),
                attempts: attempts.into(),
            }),
            OrderKind::Outbound(Outbound { request, remote }) => OrderRecord::Outbound(OutboundRecord {
                app_id,
                request: request.into(),
                status,
                refusal,
                remote: remote.into(),
                attempts: attempts.into(),
            }),
        }
    }
}

impl From<OrderRecord> for Order {
    fn from(record: OrderRecord) -> Self {
        match record {
            OrderRecord::Inbound(i) => Order {
                app_id: i.app_id,
                status: i.status,
                refusal: i.refusal,
                attempts: i.attempts.into(),
                kind: OrderKind::Inbound(Inbound {
                    request: i.request.into(),
                    arrived: i.arrived,
                    closed: i.closed,
                    remote: i.remote.into(),
                }),
            },
            OrderRecord::Outbound(o) => Order {
                app_id: o.app_id,
                status: o.status,
                refusal: o.refusal,
                attempts: o.attempts.into(),
                kind: OrderKind::Outbound(Outbound {
                    request: o.request.into(),
                    remote: o.remote.into(),
                }),
            },
        }
    }
}
