//! The auditor both simulations run — the deterministic one (`tests/dst/`) and the one of
//! several instances on one store (`tests/instances.rs`): what must hold of the store and of
//! the simulated payment system however the run went. Each check returns one sentence per
//! violation (empty when all hold), so that each simulation reports in its own way (a seed
//! and its trace).

#![allow(dead_code)]

use protopay::storage::Storage;
use protopay::{EventKind, Order};
use protopay_sim::Sim;
use std::collections::BTreeMap;

/// Every order of the given protocols, as the store has it now.
pub(crate) async fn orders_of<'a>(store: &dyn Storage, protocols: impl IntoIterator<Item = &'a str>) -> Vec<Order> {
    let mut orders = Vec::new();
    for trans_no in protocols {
        orders.extend(
            store
                .orders_of(trans_no)
                .await
                .expect("orders")
                .into_iter()
                .map(|o| o.value),
        );
    }
    orders
}

/// Never pay twice: no `outReqNo` paid out more than once at the payment system.
pub(crate) fn paid_twice(sim: &Sim) -> Vec<String> {
    sim.stats()
        .payouts
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(key, n)| format!("{key} was paid out {n} times"))
        .collect()
}

/// Every protocol's ledger equals what its orders imply. Read consistently: a protocol whose
/// version moved while its orders were read (a money move in between) is left for the next
/// audit.
pub(crate) async fn ledger_violations<'a>(
    store: &dyn Storage,
    protocols: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let mut out = Vec::new();
    for trans_no in protocols {
        let before = store.protocol(trans_no).await;
        let orders = store.orders_of(trans_no).await;
        let after = store.protocol(trans_no).await;
        if let (Ok(Some(before)), Ok(orders), Ok(Some(after))) = (before, orders, after)
            && before.version == after.version
        {
            let orders: Vec<_> = orders.into_iter().map(|o| o.value).collect();
            if let Err(e) = protopay::ledger::check(&before.value.ledger, orders.iter()) {
                out.push(format!("ledger of {trans_no}: {e}"));
            }
        }
    }
    out
}

/// The read models agree with the records: every order is in exactly the listings its
/// state puts it in, and its history is exactly its events.
pub(crate) async fn read_model_violations(store: &dyn Storage, orders: &[Order]) -> Vec<String> {
    let mut out = protopay::storage::conformance::listing_disagreements(store, orders)
        .await
        .unwrap_or_else(|e| vec![format!("listing indexes: {e}")]);
    let mut histories: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for e in store.events_after(0, usize::MAX).await.expect("events") {
        if let Some(key) = e.out_req_no {
            histories.entry(key).or_default().push(e.seq);
        }
    }
    for o in orders {
        let indexed: Vec<u64> = store
            .history(o.out_req_no())
            .await
            .expect("a history")
            .iter()
            .map(|e| e.seq)
            .collect();
        let expected = histories.get(o.out_req_no()).cloned().unwrap_or_default();
        if indexed != expected {
            out.push(format!(
                "history of {}: indexed {indexed:?}, events {expected:?}",
                o.out_req_no()
            ));
        }
    }
    out
}

/// What happens to an order at most once is published at most once: its intent, its payment,
/// its arrival, its outcome.
pub(crate) async fn published_twice(store: &dyn Storage) -> Vec<String> {
    let mut once: BTreeMap<(String, String), u32> = BTreeMap::new();
    let mut out = Vec::new();
    for e in store.events_after(0, usize::MAX).await.expect("events") {
        let singular = matches!(
            e.kind,
            EventKind::InboundRequested
                | EventKind::OutboundReserved
                | EventKind::InboundPaid
                | EventKind::InboundArrived
                | EventKind::InboundFailed
                | EventKind::OutboundSucceeded { .. }
                | EventKind::OutboundFailed { .. }
        );
        if let (true, Some(key)) = (singular, e.out_req_no) {
            let n = once.entry((key.clone(), format!("{:?}", e.kind))).or_insert(0);
            *n += 1;
            if *n == 2 {
                out.push(format!("{key} {:?} published twice", e.kind));
            }
        }
    }
    out
}
