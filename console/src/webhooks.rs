//! The webhook this process pushes: where its consumer stands, each recent attempt, and a
//! resend from a `seq` for a receiver that lost what it had processed.

use crate::error::ConsoleError;
use crate::session::{Action, SignedIn};
use crate::{Console, page};
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

/// `GET /console/webhooks`.
pub(crate) async fn show(State(console): State<Console>, who: SignedIn) -> Result<Markup, ConsoleError> {
    let Some(webhook) = &console.options.webhook else {
        let body = html! {
            h1 { "Webhooks" }
            p.quiet { "This instance pushes no webhook (" code { "[serve.webhook]" } " is not set here)." }
        };
        return Ok(page::layout("Webhooks", Some(&who), body));
    };
    let cursor = console.engine.cursor(webhook.consumer()).await?;
    let census = console.engine.census().await?;
    let waiting = census
        .outbox_lag
        .iter()
        .find(|(c, _)| c == webhook.consumer())
        .map_or(0, |(_, n)| *n);
    let deliveries = webhook.deliveries().newest_first();
    let body = html! {
        h1 { "Webhook " (webhook.consumer()) }
        p { "Pushes to " code { (webhook.destination()) } ": acknowledged up to event " (cursor) " of " (census.last_seq)
            " (" (waiting) " waiting)." }
        h2 { "Recent attempts (this instance)" }
        @if deliveries.is_empty() { p.quiet { "None yet." } }
        @else {
            table {
                thead { tr { th { "When" } th.num { "Event" } th { "Answer" } th.num { "Latency" } th { "Next try" } } }
                tbody { @for d in &deliveries { tr {
                    td { (page::time(d.at)) }
                    td.num { (d.seq) }
                    td { @match (d.status, &d.error) {
                        (Some(s), _) if (200..300).contains(&s) => span.status.success { (s) },
                        (Some(s), _) => span.problem { (s) },
                        (None, Some(e)) => span.problem { (e) },
                        (None, None) => "-",
                    } }
                    td.num { (d.latency.as_millis()) " ms" }
                    td { (d.next_retry.map(page::time).unwrap_or_default()) }
                } } }
            }
        }
        @if who.operates() && census.last_seq > 0 {
            h2 { "Send again" }
            form.act method="post" action="/console/webhooks/resend" {
                (page::csrf(&who))
                p { "Push every event from a number on again — for a receiver that lost what it had processed "
                    "(one that drops numbers it has seen will drop them unless it reset that)." }
                label { "From event" input type="number" name="from" min="1" max=(census.last_seq) required; }
                label { "Why (kept in the audit trail)" input name="note" required; }
                button type="submit" { "Send again" }
            }
        }
    };
    Ok(page::layout("Webhooks", Some(&who), body))
}

/// `POST /console/webhooks/resend`.
pub(crate) async fn resend(State(console): State<Console>, Action(form): Action) -> Result<Response, ConsoleError> {
    let webhook = console
        .options
        .webhook
        .as_ref()
        .ok_or(ConsoleError::Invalid("this instance pushes no webhook"))?;
    let note = form.text("note", "a reason")?;
    let from = form
        .one("from")
        .and_then(|f| f.trim().parse::<u64>().ok())
        .ok_or(ConsoleError::Invalid("the first event is a number"))?;
    console
        .engine
        .resend(webhook.consumer(), from, &form.by.name, note)
        .await?;
    tracing::info!(operator = %form.by.name, consumer = %webhook.consumer(), from, "resend asked at the console");
    Ok(Redirect::to("/console/webhooks").into_response())
}
