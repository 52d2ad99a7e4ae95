//! A protocol's books: where every order's amount sits.
//!
//! Each order's amount sits in exactly one [`Slot`] at a time, a function of the order's
//! state alone ([`slot_of`]). A state change therefore implies exactly one [`Move`] from the
//! old slot to the new one, and the ledger is, at every moment, the sum of its orders' slots —
//! which is what [`check`] verifies.

pub use crate::domain::{Ledger, Move, Slot};
use crate::domain::{Order, OrderKind, Status};
use crate::wire::{Amount, OutType};
use crate::{Error, Result};

/// The slot an order's amount sits in, from its state alone.
pub fn slot_of(order: &Order) -> Slot {
    match &order.kind {
        OrderKind::Inbound(i) => match (order.status, i.arrived) {
            (Status::Success, true) => Slot::Available,
            (Status::Success, false) => Slot::InTransit,
            _ => Slot::Outside,
        },
        OrderKind::Outbound(o) => match order.status {
            Status::Success if o.request.out_type == OutType::Refund => Slot::Refunded,
            Status::Success => Slot::PaidOut,
            Status::Failure => Slot::Available,
            _ => Slot::Reserved,
        },
    }
}

/// Where an order's amount is before the order exists: inbound money comes from outside,
/// outbound money from the available balance.
pub fn origin_of(order: &Order) -> Slot {
    match order.kind {
        OrderKind::Inbound(_) => Slot::Outside,
        OrderKind::Outbound(_) => Slot::Available,
    }
}

/// The move implied by an order going from `before` (or not existing) to `after`.
pub fn movement(before: Option<&Order>, after: &Order) -> Option<Move> {
    let from = before.map_or_else(|| origin_of(after), slot_of);
    let to = slot_of(after);
    (from != to).then(|| Move {
        from,
        to,
        amount: after.amount(),
    })
}

/// The ledger a set of orders implies, computed from scratch, for a protocol adopted holding
/// `opening` (zero for one this engine created).
pub fn expected<'a>(opening: Amount, orders: impl IntoIterator<Item = &'a Order>) -> Result<Ledger> {
    let mut ledger = Ledger::opened_with(opening);
    let mut outbound = Vec::new();
    for order in orders {
        match order.kind {
            OrderKind::Inbound(_) => {
                if let Some(m) = movement(None, order) {
                    ledger.apply(&m)?;
                }
            }
            OrderKind::Outbound(_) => outbound.push(order),
        }
    }
    // Outbound amounts come out of `available`, so count them after all arrivals.
    for order in outbound {
        if let Some(m) = movement(None, order) {
            ledger.apply(&m)?;
        }
    }
    Ok(ledger)
}

/// Check every ledger invariant (ARCHITECTURE.md, Invariants) for one protocol against its orders:
/// every bucket `>= 0` (by type), `available + reserved + paid_out + refunded == opening +
/// Σ arrived`, `in_transit == Σ paid-not-arrived`, and each order's amount in exactly one bucket.
pub fn check<'a>(ledger: &Ledger, orders: impl IntoIterator<Item = &'a Order> + Clone) -> Result<()> {
    let arrived: Option<Amount> = orders
        .clone()
        .into_iter()
        .filter(|o| o.inbound().is_some_and(|i| i.arrived))
        .try_fold(ledger.opening, |acc, o| acc.checked_add(o.amount()));
    if ledger.arrived_total() != arrived {
        return Err(Error::Invariant(format!(
            "available+reserved+paid_out+refunded = {:?}, arrived = {arrived:?}",
            ledger.arrived_total()
        )));
    }
    let paid_not_arrived = orders
        .clone()
        .into_iter()
        .filter(|o| o.status == Status::Success && o.inbound().is_some_and(|i| !i.arrived))
        .try_fold(Amount::ZERO, |acc, o| acc.checked_add(o.amount()));
    if Some(ledger.in_transit) != paid_not_arrived {
        return Err(Error::Invariant(format!(
            "in_transit = {}, paid not arrived = {paid_not_arrived:?}",
            ledger.in_transit
        )));
    }
    let want = expected(ledger.opening, orders)?;
    if *ledger != want {
        return Err(Error::Invariant(format!("ledger {ledger:?} but orders imply {want:?}")));
    }
    Ok(())
}
