//! What can go wrong for a person at the console, each as a page that says what happened
//! and what to do — never quoting what they typed.

use crate::page;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

/// A console request that did not succeed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConsoleError {
    /// No session, or it ended.
    #[error("sign in first")]
    NotSignedIn,
    /// A `read` operator tried to act.
    #[error("your role may only read: ask an operator with the operate role to do this")]
    ReadOnly,
    /// A `POST` without this session's CSRF token.
    #[error("this form is out of date or did not come from this console: reload the page and try again")]
    Csrf,
    /// A sign-in posted from another site.
    #[error("a sign-in from another site was refused")]
    CrossSite,
    /// A form that could not be read.
    #[error("the form could not be read: reload the page and try again")]
    Malformed,
    /// A required field left empty.
    #[error("{0} is required")]
    Missing(&'static str),
    /// A field that does not say what it must.
    #[error("{0}")]
    Invalid(&'static str),
    /// No random numbers for a session.
    #[error("the system's random numbers failed: {0}")]
    Random(String),
    /// What the engine said, as the API would say it.
    #[error(transparent)]
    Engine(#[from] protopay_engine::Error),
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = match &self {
            ConsoleError::NotSignedIn => return Redirect::to("/console/sign-in").into_response(),
            ConsoleError::ReadOnly | ConsoleError::Csrf | ConsoleError::CrossSite => StatusCode::FORBIDDEN,
            ConsoleError::Malformed | ConsoleError::Missing(_) | ConsoleError::Invalid(_) => StatusCode::BAD_REQUEST,
            ConsoleError::Random(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ConsoleError::Engine(_) => StatusCode::OK,
        };
        let (status, message) = match self {
            ConsoleError::Engine(e) => protopay_api::answer_of(e),
            other => (status, other.to_string()),
        };
        if status.is_server_error() {
            tracing::warn!(%status, %message, "console request failed");
        }
        let body = html! {
            h1 { "Not done" }
            p.problem role="alert" { (message) }
            p { a href="/console" { "Back to the overview" } }
        };
        (status, page::layout("Not done", None, body)).into_response()
    }
}
