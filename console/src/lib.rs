//! # protopay-console
//!
//! The operator console: server-rendered HTML for the person on call — often from finance or
//! support, not the engineer who deployed protopay — to see what needs attention and why,
//! read what exactly was sent and answered, and act with a recorded reason and a name.
//! `protopay serve` mounts it at `/console`; a Rust host mounts [`console_router`] beside
//! `protopay_api::api_router`.
//!
//! - **Who**: the API's named operators sign in with their own token ([`ApiAuth::operator_of`]);
//!   the shared API tokens name nobody, so they do not sign in here. A session is a random
//!   id in a cookie (`HttpOnly`, `SameSite=Strict`, `Secure` when served over TLS), held in
//!   this process for 30 idle minutes, 12 hours at most; signing out ends it.
//! - **Acting**: every `POST` carries the session's CSRF token and is refused without it;
//!   a `read` operator's `POST` is refused whatever page sent it; each action (a decision, a
//!   reconciliation) writes its audit record in the commit of the change it makes.
//! - **What is shown**: personal data is masked in lists, in the evidence on the page, and
//!   everywhere for a `read` operator; `operate` sees an order's payee, the exact evidence
//!   bundle and unmasked CSV.
//! - **The page itself**: no JavaScript at all, a strict `Content-Security-Policy`, every
//!   value escaped by the template (maud).
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod audit;
mod error;
mod orders;
mod overview;
mod page;
mod protocols;
mod session;
mod webhooks;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use protopay_api::ApiAuth;
use protopay_api::webhook::Webhook;
use protopay_engine::Engine;
use std::sync::Arc;

/// How a deployment's console is set up.
#[derive(Debug, Clone, Default)]
pub struct ConsoleOptions {
    /// Mark the session cookie `Secure`: set it whenever people reach the console over HTTPS,
    /// as they should beyond localhost.
    pub secure_cookies: bool,
    /// The webhook this process pushes, if any: its delivery log and resends on the
    /// webhooks page.
    pub webhook: Option<Webhook>,
}

/// What every console handler has: the engine, who may sign in, and who is signed in.
#[derive(Clone)]
pub(crate) struct Console {
    engine: Engine,
    auth: ApiAuth,
    sessions: Arc<session::Sessions>,
    options: ConsoleOptions,
}

/// The console's routes under `/console`: its people are `auth`'s named operators.
pub fn console_router(engine: Engine, auth: ApiAuth, options: ConsoleOptions) -> Router {
    let console = Console {
        engine,
        auth,
        sessions: Arc::new(session::Sessions::default()),
        options,
    };
    Router::new()
        .route("/console", get(overview::show))
        .route("/console/style.css", get(page::stylesheet))
        .route("/console/sign-in", get(session::sign_in_page).post(session::sign_in))
        .route("/console/sign-out", post(session::sign_out))
        .route("/console/orders", get(orders::list))
        .route("/console/orders.csv", get(orders::export))
        .route("/console/orders/{outReqNo}", get(orders::show))
        .route("/console/orders/{outReqNo}/evidence.json", get(orders::evidence))
        .route("/console/orders/{outReqNo}/resolve", post(orders::resolve))
        .route("/console/resolve", post(orders::resolve_several))
        .route("/console/protocols", get(protocols::list))
        .route("/console/protocols/{transNo}", get(protocols::show))
        .route("/console/protocols/{transNo}/reconcile", post(protocols::reconcile))
        .route("/console/reconcile-drifting", post(protocols::reconcile_drifting))
        .route("/console/audit", get(audit::list))
        .route("/console/webhooks", get(webhooks::show))
        .route("/console/webhooks/resend", post(webhooks::resend))
        .layer(middleware::from_fn(security_headers))
        .with_state(console)
}

/// The routes that change something, for tests that every one of them is guarded.
#[doc(hidden)]
pub const POST_ROUTES: [&str; 7] = [
    "/console/webhooks/resend",
    "/console/orders/{outReqNo}/resolve",
    "/console/resolve",
    "/console/protocols/{transNo}/reconcile",
    "/console/reconcile-drifting",
    "/console/sign-out",
    "/console/sign-in",
];

/// Every answer: no script, no frame, no plugin, styles and forms only from here; nothing
/// cached (pages hold personal data), no referrer leaves for another site (`same-origin`:
/// with `no-referrer`, browsers send `Origin: null` on the console's own forms).
async fn security_headers(request: axum::extract::Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let fixed = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
