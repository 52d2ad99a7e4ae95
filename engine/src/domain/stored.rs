//! The stored form of an [`Order`], as sled format 1 first wrote it: an enum of two complete
//! structs. The engine works with one shape (common part + kind); stores keep this one, so
//! that every store already on disk reads back unchanged. The field order is part of the
//! format: it decides the bytes (`storage-sled/tests/format.rs` pins them).

use super::{Attempts, Inbound, Order, OrderKind, Outbound, Refusal, Status};
use crate::wire::{InboundView, OutboundView, Outpay, Prepay};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
pub(super) enum StoredOrder {
    Inbound(StoredInbound),
    Outbound(StoredOutbound),
}

#[derive(Clone, Serialize, Deserialize)]
pub(super) struct StoredInbound {
    app_id: String,
    request: Prepay,
    status: Status,
    arrived: bool,
    closed: bool,
    refusal: Option<Refusal>,
    remote: InboundView,
    attempts: Attempts,
}

#[derive(Clone, Serialize, Deserialize)]
pub(super) struct StoredOutbound {
    app_id: String,
    request: Outpay,
    status: Status,
    refusal: Option<Refusal>,
    remote: OutboundView,
    attempts: Attempts,
}

impl From<Order> for StoredOrder {
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
            }) => StoredOrder::Inbound(StoredInbound {
                app_id,
                request,
                status,
                arrived,
                closed,
                refusal,
                remote,
                attempts,
            }),
            OrderKind::Outbound(Outbound { request, remote }) => StoredOrder::Outbound(StoredOutbound {
                app_id,
                request,
                status,
                refusal,
                remote,
                attempts,
            }),
        }
    }
}

impl From<StoredOrder> for Order {
    fn from(stored: StoredOrder) -> Self {
        match stored {
            StoredOrder::Inbound(i) => Order {
                app_id: i.app_id,
                status: i.status,
                refusal: i.refusal,
                attempts: i.attempts,
                kind: OrderKind::Inbound(Inbound {
                    request: i.request,
                    arrived: i.arrived,
                    closed: i.closed,
                    remote: i.remote,
                }),
            },
            StoredOrder::Outbound(o) => Order {
                app_id: o.app_id,
                status: o.status,
                refusal: o.refusal,
                attempts: o.attempts,
                kind: OrderKind::Outbound(Outbound {
                    request: o.request,
                    remote: o.remote,
                }),
            },
        }
    }
}
