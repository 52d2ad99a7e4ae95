//! # protopay-transport-http
//!
//! HTTP with the payment system, both ways (the host's `/v1` API is `protopay-api`):
//! - [`HttpTransport`]: the engine's [`Transport`](protopay_engine::Transport) over reqwest
//!   with rustls (no OpenSSL), with connect and request timeouts, a response size limit, one
//!   reused client, and every failure classified as **not delivered** (safe to retry) or
//!   **maybe delivered** (query first) — when in doubt, maybe: that is the side on which money
//!   is safe.
//! - [`callback_router`]: the callback receiver as an axum `Router` (three routes under the
//!   path of `callback_base_url`, a body limit, answering exactly what
//!   [`Engine::handle_callback`](protopay_engine::Engine::handle_callback) decides), and
//!   [`handle_callback_path`], the same as a plain function for other web frameworks.
//!
//! ```no_run
//! # async fn run(engine: protopay_engine::Engine) -> Result<(), Box<dyn std::error::Error>> {
//! use protopay_transport_http::callback_router;
//! // Callbacks under the path of the engine's `callback_base_url` (public: they are signed).
//! let app = callback_router(engine);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).with_graceful_shutdown(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
// Outside data never meets an `unwrap` here; tests may use it freely.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod callback;
mod error;
mod transport;

pub use callback::{callback_router, handle_callback_path};
pub use error::HttpError;
pub use transport::{DEFAULT_MAX_RESPONSE_BYTES, HttpTransport};
