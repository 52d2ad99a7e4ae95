//! The frame every page shares, the stylesheet, and small pieces pages are made of.

use crate::session::SignedIn;
use axum::http::header;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};
use protopay_engine::Sensitive;
use protopay_engine::domain::Order;

const STYLESHEET: &str = include_str!("style.css");

/// `GET /console/style.css`.
pub(crate) async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLESHEET)
}

/// A whole page: `title`, the navigation and sign-out for `who` (none on the sign-in page),
/// and `body`.
pub(crate) fn layout(title: &str, who: Option<&SignedIn>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · protopay" }
                link rel="stylesheet" href="/console/style.css";
            }
            body {
                header {
                    a.brand href="/console" { "protopay" }
                    @if let Some(who) = who {
                        nav {
                            a href="/console" { "Overview" }
                            a href="/console/orders?listing=NEEDS_ATTENTION" { "Needs attention" }
                            a href="/console/orders" { "Orders" }
                            a href="/console/protocols" { "Protocols" }
                            a href="/console/webhooks" { "Webhooks" }
                            a href="/console/audit" { "Audit" }
                        }
                        form.who method="post" action="/console/sign-out" {
                            (csrf(who))
                            span { (who.name) " · " (role_name(who)) }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The hidden field every form of a signed-in page carries.
pub(crate) fn csrf(who: &SignedIn) -> Markup {
    html! { input type="hidden" name="csrf" value=(who.csrf); }
}

fn role_name(who: &SignedIn) -> &'static str {
    if who.operates() { "operate" } else { "read" }
}

/// A personal value: as it is for a role that may see it, masked otherwise.
pub(crate) fn personal(value: &Sensitive, shown: bool) -> String {
    if shown {
        value.expose().to_owned()
    } else {
        value.masked()
    }
}

/// A time for people: UTC, to the second.
pub(crate) fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// An order's state as a badge: its status, marked when it needs a person.
pub(crate) fn state(order: &Order) -> Markup {
    let flagged = order.attempts.needs_attention || order.attempts.double_payment_suspected;
    html! {
        span class={ "status " (order.status.as_str().to_ascii_lowercase()) } { (order.state_label()) }
        @if order.attempts.double_payment_suspected { " " span.flag { "paid twice?" } }
        @else if flagged { " " span.flag { "needs attention" } }
    }
}

/// Why an order needs a person, in words (`None` when it does not).
pub(crate) fn why_it_needs_attention(order: &Order) -> Option<String> {
    let a = &order.attempts;
    if a.double_payment_suspected {
        return Some(
            "The payment system reported a second payment order for this order: money may have moved twice. \
             Check with the payment system, then acknowledge it with the status it has."
                .into(),
        );
    }
    if !a.needs_attention {
        return None;
    }
    if order.status.is_terminal() && a.decided_by_person {
        return Some(format!(
            "A person decided this order, and the payment system then said otherwise; it is {} now, \
             as the payment system says. Check what happened, then acknowledge it with that status.",
            order.status
        ));
    }
    Some(format!(
        "protopay sent it {} time(s) and the payment system has not said how it ended after every try. \
         A send may still land, so protopay will not send it again on its own: its funds stay reserved \
         until a person checks with the payment system and records what it says.",
        a.sends
    ))
}
