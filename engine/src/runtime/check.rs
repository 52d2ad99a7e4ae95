//! `check`: after an incident, recompute every protocol's ledger from its orders and verify
//! the invariants the engine keeps — the ledger equals the sum of its orders' slots, every
//! bucket is non-negative, and an open order has a due time while a closed one has none.
//! Reads only; a protocol written meanwhile is read again, so a busy engine is no false alarm.

use super::Engine;
use crate::Result;
use crate::domain::{Order, Protocol};
use crate::ledger;

/// What [`Engine::check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Protocols checked.
    pub protocols: usize,
    /// Orders checked.
    pub orders: usize,
    /// Every broken invariant, in words (empty when all hold).
    pub violations: Vec<String>,
}

/// How often a protocol that keeps changing under the check is read again.
const REREADS: usize = 5;

impl Engine {
    /// Verify every protocol's ledger against its orders, and every order's due time.
    pub async fn check(&self) -> Result<CheckReport> {
        let store = self.storage();
        let mut report = CheckReport::default();
        let mut after: Option<String> = None;
        loop {
            let page = store.protocols(after.as_deref(), 256).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.value.trans_no.clone());
            for protocol in page {
                let trans_no = protocol.value.trans_no;
                let mut consistent = None;
                for _ in 0..REREADS {
                    consistent = self.books(&trans_no).await?;
                    if consistent.is_some() {
                        break;
                    }
                }
                let Some((protocol, values)) = consistent else {
                    report
                        .violations
                        .push(format!("{trans_no}: kept changing during the check; run it again"));
                    continue;
                };
                report.protocols += 1;
                report.orders += values.len();
                if let Err(e) = ledger::check(&protocol.ledger, values.iter()) {
                    report.violations.push(format!("{trans_no}: {e}"));
                }
                for order in &values {
                    let key = order.out_req_no();
                    let due = store.due_at(key).await?;
                    if order.is_open() != due.is_some() {
                        let (state, has) = (order.state_label(), if due.is_some() { "a" } else { "no" });
                        report
                            .violations
                            .push(format!("{key}: is {state} and has {has} due time"));
                    }
                }
            }
        }
        Ok(report)
    }

    /// A protocol and its orders as of one moment: its version is the same before and after
    /// its orders are read (every money move bumps it), or `None` when it moved meanwhile
    /// (or does not exist). Only such a read proves anything about its ledger.
    pub(super) async fn books(&self, trans_no: &str) -> Result<Option<(Protocol, Vec<Order>)>> {
        let store = self.storage();
        let (Some(before), orders, Some(after)) = (
            store.protocol(trans_no).await?,
            store.orders_of(trans_no).await?,
            store.protocol(trans_no).await?,
        ) else {
            return Ok(None);
        };
        let orders = orders.into_iter().map(|o| o.value).collect();
        Ok((before.version == after.version).then_some((before.value, orders)))
    }
}
