//! `check`: after an incident, recompute every protocol's ledger from its orders and verify
//! the invariants the engine keeps — the ledger equals the sum of its orders' slots, every
//! bucket is non-negative, an open order has a due time while a closed one has none, and each
//! listing's count (behind the `protopay_orders` gauge and the NeedsAttention alert) is the
//! number of orders listed there. Reads only. Each judgement is made on reads taken at one
//! moment (the same versions, or the same event `seq`, before and after); what keeps moving
//! is read again and, failing that, reported as not judged — so a busy engine is never a
//! false alarm.

use super::Engine;
use crate::Result;
use crate::domain::{Listing, Order, Protocol};
use crate::ledger;
use crate::storage::OrderQuery;

/// What [`Engine::check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Protocols checked.
    pub protocols: usize,
    /// Orders checked.
    pub orders: usize,
    /// Every broken invariant, in words (empty when all hold).
    pub violations: Vec<String>,
    /// What kept changing while it was read, and so was not judged: run the check again
    /// (when the engine is quieter).
    pub unsettled: Vec<String>,
}

/// How often what keeps changing under the check is read again.
const REREADS: usize = 5;

/// One judgement that did not find an invariant holding.
enum Finding {
    Violation(String),
    Unsettled(String),
}

impl CheckReport {
    fn add(&mut self, findings: impl IntoIterator<Item = Finding>) {
        for finding in findings {
            match finding {
                Finding::Violation(v) => self.violations.push(v),
                Finding::Unsettled(u) => self.unsettled.push(u),
            }
        }
    }
}

impl Engine {
    /// Verify every protocol's ledger against its orders, every order's due time, and every
    /// listing's count.
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
                    report.add([Finding::Unsettled(format!("{trans_no}: kept changing"))]);
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
                    // Disagreeing may only mean the order moved on since its books were read.
                    if order.is_open() != due.is_some() {
                        report.add(self.judge_due(key).await?);
                    }
                }
            }
        }
        report.add(self.judge_counts().await?);
        Ok(report)
    }

    /// Whether an order's due time agrees with its state (an open order is scheduled, a
    /// closed one is not), judged from the two read at one moment: the order's version is the
    /// same before and after its due time is read (opening and closing an order are writes of
    /// it).
    async fn judge_due(&self, key: &str) -> Result<Option<Finding>> {
        let store = self.storage();
        for _ in 0..REREADS {
            let before = store.order(key).await?;
            let due = store.due_at(key).await?;
            let (Some(before), Some(after)) = (before, store.order(key).await?) else {
                let lost = format!("{key}: among its protocol's orders, but not found");
                return Ok(Some(Finding::Violation(lost)));
            };
            if before.version != after.version {
                continue;
            }
            let order = after.value;
            let (state, has) = (order.state_label(), if due.is_some() { "a" } else { "no" });
            let wrong = format!("{key}: is {state} and has {has} due time");
            return Ok((order.is_open() != due.is_some()).then_some(Finding::Violation(wrong)));
        }
        Ok(Some(Finding::Unsettled(format!("{key}: kept changing"))))
    }

    /// Whether each listing's count is the number of orders listed there, judged from reads
    /// at one moment: no event was appended and no count changed between the first read and
    /// the last (every change of an order's listings comes with an event).
    async fn judge_counts(&self) -> Result<Vec<Finding>> {
        let store = self.storage();
        for _ in 0..REREADS {
            let (seq, counts) = (store.last_seq().await?, store.listing_counts().await?);
            let mut listed = Vec::with_capacity(counts.len());
            for (listing, _) in &counts {
                listed.push(self.listed(*listing).await?);
            }
            if (seq, &counts) != (store.last_seq().await?, &store.listing_counts().await?) {
                continue;
            }
            return Ok(counts
                .iter()
                .zip(listed)
                .filter(|((_, counted), listed)| counted != listed)
                .map(|((listing, counted), listed)| {
                    let name = listing.name();
                    Finding::Violation(format!(
                        "the {name} count says {counted} orders, but {listed} are listed there"
                    ))
                })
                .collect());
        }
        Ok(vec![Finding::Unsettled("listing counts: orders kept moving".into())])
    }

    /// How many orders a listing holds, read page by page.
    async fn listed(&self, listing: Listing) -> Result<u64> {
        const PAGE: usize = 512;
        let query = OrderQuery {
            listing: Some(listing),
            trans_no: None,
        };
        let (mut n, mut after) = (0u64, None::<String>);
        loop {
            let page = self.storage().orders(&query, after.as_deref(), PAGE).await?;
            n += page.len() as u64;
            match page.last() {
                Some(last) if page.len() == PAGE => after = Some(last.value.out_req_no().to_owned()),
                _ => return Ok(n),
            }
        }
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
