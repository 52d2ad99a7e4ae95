//! A protocol's books: where every order's amount sits.
//!
//! Each order's amount sits in exactly one [`Slot`] at a time, a function of the order's
//! state alone ([`slot_of`]). A state change therefore implies exactly one [`Move`] from the
//! old slot to the new one, and the ledger is, at every moment, the sum of its orders' slots —
//! which is what [`check`] verifies.

use crate::domain::{Order, OrderKind, Status};
use crate::wire::{Amount, OutType};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Where an order's amount sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Slot {
    /// Not in the protocol (an inbound order not paid, or failed).
    Outside,
    /// Paid in, not yet arrived.
    InTransit,
    /// Arrived and free to pay out. An outbound order that failed leaves its amount here.
    Available,
    /// Set aside for an outbound order whose outcome is not yet known.
    Reserved,
    /// Paid out (`OUT` succeeded).
    PaidOut,
    /// Refunded (`REFUND` succeeded).
    Refunded,
}

/// A movement of one order's amount between slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// The slot the amount leaves (as the order was, or its origin for a new order).
    pub from: Slot,
    /// The slot it enters (as the order is now).
    pub to: Slot,
    /// The order's whole amount: an order's money never splits across slots.
    pub amount: Amount,
}

/// The balances of one protocol, by bucket, in yuan with two decimals. Every bucket is
/// non-negative by type, and together they equal the sum of the protocol's orders' slots (plus
/// its opening balance) — which [`check`] verifies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Inbound paid, not arrived (the payment system's `onpassageAmount`).
    pub in_transit: Amount,
    /// Arrived and free to pay out (the payment system's `amount`).
    pub available: Amount,
    /// Reserved for outbound orders in flight.
    pub reserved: Amount,
    /// Paid out by `OUT` orders that succeeded.
    pub paid_out: Amount,
    /// Refunded by `REFUND` orders that succeeded (with `paid_out`, the payment system's
    /// `outAmount`).
    pub refunded: Amount,
    /// What the protocol already held, available, when this engine adopted it (a protocol
    /// created elsewhere, found by `refresh_protocol`): money that arrived through no order we
    /// know. Counted as arrived; zero for protocols this engine created.
    #[serde(default)]
    pub opening: Amount,
}

impl Ledger {
    fn bucket(&mut self, slot: Slot) -> Option<&mut Amount> {
        match slot {
            Slot::Outside => None,
            Slot::InTransit => Some(&mut self.in_transit),
            Slot::Available => Some(&mut self.available),
            Slot::Reserved => Some(&mut self.reserved),
            Slot::PaidOut => Some(&mut self.paid_out),
            Slot::Refunded => Some(&mut self.refunded),
        }
    }

    /// Apply a move; refuses (and changes nothing) if a bucket would go below zero or
    /// past the amount bound.
    ///
    /// Postconditions, asserted: money is conserved — the buckets' total grows by the amount
    /// only on a move in from outside, shrinks by it only on a move out, and is otherwise
    /// unchanged — and the opening balance never moves.
    pub fn apply(&mut self, m: &Move) -> Result<()> {
        debug_assert_ne!(m.from, m.to, "a move goes somewhere: {m:?}");
        let mut next = *self;
        if let Some(b) = next.bucket(m.from) {
            *b = b
                .checked_sub(m.amount)
                .ok_or_else(|| Error::Invariant(format!("{:?} would go below zero", m.from)))?;
        }
        if let Some(b) = next.bucket(m.to) {
            *b = b
                .checked_add(m.amount)
                .ok_or_else(|| Error::Invariant(format!("{:?} overflows", m.to)))?;
        }
        debug_assert_eq!(next.opening, self.opening, "a move never changes the opening balance");
        debug_assert_eq!(
            next.total().map(|t| i128::from(t.fen())),
            self.total().map(|t| {
                let (fen, moved) = (i128::from(t.fen()), i128::from(m.amount.fen()));
                match (m.from, m.to) {
                    (Slot::Outside, _) => fen + moved,
                    (_, Slot::Outside) => fen - moved,
                    _ => fen,
                }
            }),
            "money is conserved by {m:?}"
        );
        *self = next;
        Ok(())
    }

    /// Every bucket together: `in_transit` and everything that has arrived.
    fn total(&self) -> Option<Amount> {
        self.arrived_total()?.checked_add(self.in_transit)
    }

    /// The ledger of a protocol adopted holding `opening`, available.
    pub fn opened_with(opening: Amount) -> Self {
        Ledger {
            available: opening,
            opening,
            ..Ledger::default()
        }
    }

    /// Everything that has arrived: `available + reserved + paid_out + refunded`.
    pub fn arrived_total(&self) -> Option<Amount> {
        self.available
            .checked_add(self.reserved)?
            .checked_add(self.paid_out)?
            .checked_add(self.refunded)
    }
}

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
