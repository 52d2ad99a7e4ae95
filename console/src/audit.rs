//! The audit trail: every act of a person, newest first.

use crate::error::ConsoleError;
use crate::overview::about;
use crate::session::SignedIn;
use crate::{Console, page};
use axum::extract::{Query, State};
use maud::{Markup, html};
use protopay_engine::event::EventKind;
use serde::Deserialize;

/// Records shown per page.
const PAGE: usize = 100;

/// The page's cursor.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Before {
    before: Option<u64>,
}

/// `GET /console/audit`.
pub(crate) async fn list(
    State(console): State<Console>,
    who: SignedIn,
    Query(q): Query<Before>,
) -> Result<Markup, ConsoleError> {
    let records = console.engine.audit(q.before.filter(|b| *b > 0), PAGE).await?;
    let next = (records.len() == PAGE).then(|| records.last().map(|e| e.seq)).flatten();
    let body = html! {
        h1 { "Audit trail" }
        p.quiet { "What people did, newest first; each recorded in the same commit as the change it made." }
        table {
            thead { tr { th { "When" } th { "Who" } th { "What" } th { "About" } th { "Why" } } }
            tbody { @for e in &records {
                @let (by, note) = match &e.kind {
                    EventKind::OperatorResolved { by, note, .. } => (by.clone().unwrap_or_else(|| "(API token)".into()), note.as_str()),
                    EventKind::OperatorReconciled { by, note, .. } => (by.clone(), note.as_str()),
                    _ => (String::new(), ""),
                };
                tr { td { (page::time(e.at)) } td { (by) } td { (e.kind.to_string()) } td { (about(e)) } td { (note) } }
            } }
        }
        @if records.is_empty() { p.quiet { "Nothing yet." } }
        @if let Some(next) = next { p { a href={ "/console/audit?before=" (next) } { "Older →" } } }
    };
    Ok(page::layout("Audit", Some(&who), body))
}
