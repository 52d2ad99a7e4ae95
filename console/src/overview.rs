//! The overview: what `/metrics` says, for a person — orders per listing with those that
//! need attention first, poll lag, drifting protocols, event backlog per consumer, recent
//! anomalies (a suspected double payment on top), and whether the store and the payment
//! system answer.

use crate::error::ConsoleError;
use crate::session::SignedIn;
use crate::{Console, page};
use axum::extract::State;
use maud::{Markup, html};
use protopay_engine::domain::Listing;
use protopay_engine::event::{Anomaly, Event, EventKind};

/// How far back the overview looks for anomalies.
const RECENT_EVENTS: usize = 500;

/// How many recent anomalies it shows.
const ANOMALIES_SHOWN: usize = 20;

/// `GET /console`.
pub(crate) async fn show(State(console): State<Console>, who: SignedIn) -> Result<Markup, ConsoleError> {
    let census = console.engine.census().await?;
    let recent = console.engine.recent_events(RECENT_EVENTS).await?;
    let anomalies = recent_anomalies(&recent);
    let count = |l: Listing| census.orders.iter().find(|(x, _)| *x == l).map_or(0, |(_, n)| *n);
    let attention = count(Listing::NeedsAttention);
    let payment_system = match census.last_call {
        None => html! { span.quiet { "not called yet by this instance" } },
        Some((at, true)) => html! { "answered at " (page::time(at)) },
        Some((at, false)) => html! { span.problem { "did not answer at " (page::time(at)) } },
    };
    let body = html! {
        h1 { "Overview" }
        div.tiles {
            a.tile.alarm[attention > 0] href="/console/orders?listing=NEEDS_ATTENTION" {
                div.n { (attention) } "need attention"
            }
            div.tile.alarm[!census.drifting.is_empty()] { div.n { (census.drifting.len()) } "protocols drifting" }
            div.tile { div.n { (census.due_backlog) } "polls due now" }
            div.tile.alarm[census.poll_lag.as_secs() > 300] { div.n { (census.poll_lag.as_secs()) " s" } "poll lag" }
        }
        h2 { "Orders by status" }
        table {
            thead { tr { th { "Listing" } th.num { "Orders" } } }
            tbody {
                @for (listing, n) in &census.orders {
                    tr {
                        td { a href={ "/console/orders?listing=" (listing_param(*listing)) } { (listing_label(*listing)) } }
                        td.num { (n) }
                    }
                }
            }
        }
        h2 { "Recent anomalies" }
        @if anomalies.is_empty() {
            p.quiet { "None in the last " (RECENT_EVENTS) " events." }
        } @else {
            table {
                thead { tr { th { "When" } th { "About" } th { "What" } } }
                tbody {
                    @for e in &anomalies {
                        tr {
                            td { (page::time(e.at)) }
                            td { (about(e)) }
                            td { (e.kind.to_string()) }
                        }
                    }
                }
            }
        }
        @if !census.drifting.is_empty() {
            h2 { "Drifting protocols" }
            p { @for t in &census.drifting { a href={ "/console/protocols/" (t) } { (t) } " " } }
            @if who.operates() {
                form.act method="post" action="/console/reconcile-drifting" {
                    (page::csrf(&who))
                    p { "Reconcile all " (census.drifting.len()) " drifting protocols again, asking the payment system for each." }
                    label { "Why (kept in the audit trail)" input name="note" required; }
                    label { span { "Type " strong { (census.drifting.len()) } " to confirm how many protocols this touches" } input name="confirm" required inputmode="numeric"; }
                    button type="submit" { "Reconcile " (census.drifting.len()) " protocols" }
                }
            }
        }
        h2 { "Event delivery" }
        @if census.outbox_lag.is_empty() {
            p.quiet { "No consumer (webhook or long-poll) has been served by this instance yet." }
        } @else {
            table {
                thead { tr { th { "Consumer" } th.num { "Events not yet acknowledged" } } }
                tbody { @for (consumer, lag) in &census.outbox_lag { tr { td { (consumer) } td.num { (lag) } } } }
            }
        }
        h2 { "Health" }
        table {
            tbody {
                tr { th { "Store" } td { "answered at " (page::time(census.at)) " (newest event " (census.last_seq) ")" } }
                tr { th { "Payment system" } td { (payment_system) } }
            }
        }
    };
    Ok(page::layout("Overview", Some(&who), body))
}

/// The anomalies among `recent`, newest first, suspected double payments before all others.
fn recent_anomalies(recent: &[Event]) -> Vec<&Event> {
    let mut anomalies: Vec<&Event> = recent
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Anomaly(_)))
        .collect();
    anomalies.sort_by_key(|e| !matches!(e.kind, EventKind::Anomaly(Anomaly::SuspectedDoublePayment { .. })));
    anomalies.truncate(ANOMALIES_SHOWN);
    anomalies
}

/// A link to what an event is about: its order, else its protocol.
pub(crate) fn about(e: &Event) -> Markup {
    html! {
        @if let Some(o) = &e.out_req_no { a href={ "/console/orders/" (o) } { (o) } }
        @else if let Some(t) = &e.trans_no { a href={ "/console/protocols/" (t) } { (t) } }
    }
}

/// A listing as the orders page's filter names it.
pub(crate) fn listing_param(listing: Listing) -> String {
    listing.name().to_ascii_uppercase()
}

/// A listing for people.
pub(crate) fn listing_label(listing: Listing) -> String {
    match listing {
        Listing::NeedsAttention => "needs attention".to_owned(),
        Listing::Status(s) => s.as_str().to_owned(),
    }
}
