//! Protocols: the list, one protocol's ledger beside the payment system's last balances and
//! its orders, and reconciliation asked by a person (one protocol, or every drifting one).

use crate::error::ConsoleError;
use crate::session::{Action, SignedIn};
use crate::{Console, page};
use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use protopay_engine::storage::OrderQuery;
use protopay_engine::{Amount, Ledger, Reconciliation};
use serde::Deserialize;

/// Protocols or orders shown per page.
const PAGE: usize = 50;

/// The protocols list's cursor.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct After {
    after: Option<String>,
}

/// `GET /console/protocols`.
pub(crate) async fn list(
    State(console): State<Console>,
    who: SignedIn,
    Query(q): Query<After>,
) -> Result<Markup, ConsoleError> {
    let page = console.engine.protocols(q.after.as_deref(), PAGE).await?;
    let drifting = console.engine.census().await?.drifting;
    let body = html! {
        h1 { "Protocols" }
        table {
            thead { tr { th { "Protocol" } th { "Business" } th.num { "Available" } th.num { "Reserved" } th.num { "In transit" } th { "Books" } } }
            tbody { @for p in &page.items { tr {
                td { a href={ "/console/protocols/" (p.trans_no) } { (p.trans_no) } }
                td { (p.business_id) }
                td.num { (p.ledger.available.to_string()) }
                td.num { (p.ledger.reserved.to_string()) }
                td.num { (p.ledger.in_transit.to_string()) }
                td { @if drifting.contains(&p.trans_no) { span.flag { "drifting" } } }
            } } }
        }
        @if let Some(next) = &page.next {
            p { a href={ "/console/protocols?" (serde_urlencoded::to_string([("after", next.as_str())]).unwrap_or_default()) } { "Next page →" } }
        }
    };
    Ok(page::layout("Protocols", Some(&who), body))
}

/// `GET /console/protocols/{transNo}`.
pub(crate) async fn show(
    State(console): State<Console>,
    who: SignedIn,
    Path(trans_no): Path<String>,
) -> Result<Markup, ConsoleError> {
    let protocol = console.engine.protocol(&trans_no).await?;
    let query = OrderQuery {
        trans_no: Some(trans_no.clone()),
        ..OrderQuery::default()
    };
    let orders = console.engine.orders(&query, None, PAGE).await?;
    let l = &protocol.ledger;
    let theirs = protocol.remote.as_ref();
    let figure = |f: fn(&protopay_engine::domain::RemoteBalances) -> Amount| {
        theirs.map(|r| f(r).to_string()).unwrap_or_else(|| "-".into())
    };
    let body = html! {
        h1 { "Protocol " (protocol.trans_no) }
        p { (protocol.business_id) " · " (protocol.trans_desc) " · " (protocol.cashier_type.to_string()) }
        h2 { "Books" }
        table {
            thead { tr { th { "" } th.num { "protopay" } th.num { "payment system" } } }
            tbody {
                tr { th { "Available" } td.num { (l.available.to_string()) } td.num { (figure(|r| r.available)) } }
                tr { th { "Reserved for payouts in flight" } td.num { (l.reserved.to_string()) } td.num { "-" } }
                tr { th { "In transit" } td.num { (l.in_transit.to_string()) } td.num { (figure(|r| r.in_transit)) } }
                tr { th { "Paid out and refunded" } td.num { (paid(l)) } td.num { (figure(|r| r.paid_out)) } }
            }
        }
        p.quiet { @match theirs {
            Some(r) => { "The payment system's balances as of " (page::time(r.seen_at)) "." }
            None => { "The payment system's balances have not been asked yet." }
        } }
        @if who.operates() {
            form.act method="post" action={ "/console/protocols/" (protocol.trans_no) "/reconcile" } {
                (page::csrf(&who))
                p { "Ask the payment system for this protocol's balances now and compare them with protopay's books. Moves no money." }
                label { "Why (kept in the audit trail)" input name="note" required; }
                button type="submit" { "Reconcile now" }
            }
        }
        h2 { "Orders" }
        table {
            thead { tr { th { "Order" } th { "State" } th.num { "Amount" } } }
            tbody { @for o in &orders.items { tr {
                td { a href={ "/console/orders/" (o.out_req_no()) } { (o.out_req_no()) } }
                td { (page::state(o)) }
                td.num { (o.amount().to_string()) }
            } } }
        }
        @if orders.next.is_some() {
            p { a href={ "/console/orders?" (serde_urlencoded::to_string([("protocol", protocol.trans_no.as_str())]).unwrap_or_default()) } { "All its orders →" } }
        }
    };
    Ok(page::layout(&protocol.trans_no, Some(&who), body))
}

fn paid(l: &Ledger) -> String {
    l.paid_out
        .checked_add(l.refunded)
        .map(|a| a.to_string())
        .unwrap_or_else(|| "-".into())
}

/// `POST /console/protocols/{transNo}/reconcile`: reconcile now, with the person's reason
/// recorded in the commit of what it finds.
pub(crate) async fn reconcile(
    State(console): State<Console>,
    Path(trans_no): Path<String>,
    Action(form): Action,
) -> Result<Markup, ConsoleError> {
    let note = form.text("note", "a reason")?;
    let r = console.engine.reconcile_by(&trans_no, &form.by.name, note).await?;
    tracing::info!(operator = %form.by.name, %trans_no, drifting = r.drift.len(), "reconciled at the console");
    Ok(page::layout(
        "Reconciled",
        Some(&form.by),
        results(&[(trans_no, Ok(r))]),
    ))
}

/// `POST /console/reconcile-drifting`: reconcile every protocol that drifted, after the
/// person typed how many that is.
pub(crate) async fn reconcile_drifting(
    State(console): State<Console>,
    Action(form): Action,
) -> Result<Markup, ConsoleError> {
    let note = form.text("note", "a reason")?;
    let drifting = console.engine.census().await?.drifting;
    if form.one("confirm").map(str::trim) != Some(drifting.len().to_string().as_str()) {
        return Err(ConsoleError::Invalid(
            "type the number of protocols exactly to confirm (it may have changed: reload the overview)",
        ));
    }
    let mut outcomes = Vec::new();
    for trans_no in drifting {
        let r = console.engine.reconcile_by(&trans_no, &form.by.name, note).await;
        outcomes.push((trans_no, r.map_err(|e| protopay_api::answer_of(e).1)));
    }
    tracing::info!(operator = %form.by.name, protocols = outcomes.len(), "drifting protocols reconciled at the console");
    Ok(page::layout("Reconciled", Some(&form.by), results(&outcomes)))
}

fn results(outcomes: &[(String, Result<Reconciliation, String>)]) -> Markup {
    html! {
        h1 { "Reconciled" }
        table {
            thead { tr { th { "Protocol" } th { "Result" } } }
            tbody { @for (trans_no, outcome) in outcomes { tr {
                td { a href={ "/console/protocols/" (trans_no) } { (trans_no) } }
                td { @match outcome {
                    Ok(r) if r.drift.is_empty() => { span.status.success { "the books agree" } }
                    Ok(r) => { span.problem { (r.drift.len()) " figures disagree: " }
                        @for d in &r.drift { br; (d.to_string()) } }
                    Err(message) => { span.problem { "not reconciled: " (message) } }
                } }
            } } }
        }
        p { a href="/console" { "Back to the overview" } }
    }
}
