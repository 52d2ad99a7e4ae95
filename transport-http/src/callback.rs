//! The callback receiver: the payment system's three callbacks, answered exactly as the
//! engine decides.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use protopay_engine::wire::CallbackKind;
use protopay_engine::{CallbackReply, Engine};

/// The callback receiver: `POST {path}/inbound-pay`, `{path}/inbound-arrival` and
/// `{path}/outbound`, where `path` is that of the engine's `callback_base_url` (the URLs it
/// sends as notify URLs), answering what the engine decides. Bodies over the engine's
/// `callback_body_limit_bytes` are refused before they are read in full.
pub fn callback_router(engine: Engine) -> Router {
    let limit = engine.config().callback_body_limit_bytes;
    let route = format!("{}/{{kind}}", engine.config().callback_path());
    Router::new()
        .route(&route, post(receive))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(engine)
}

async fn receive(State(engine): State<Engine>, Path(kind): Path<String>, body: Bytes) -> Response {
    match CallbackKind::from_slug(&kind) {
        Some(kind) => into_response(engine.handle_callback(kind, &body).await),
        None => (StatusCode::NOT_FOUND, "unknown callback kind").into_response(),
    }
}

fn into_response(reply: CallbackReply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, reply.content_type)], reply.body).into_response()
}

/// The receiver as a plain function, for hosts on other web frameworks: the request path
/// (its last segment names the callback kind) and the raw body in, the answer out.
pub async fn handle_callback_path(engine: &Engine, path: &str, body: &[u8]) -> Option<CallbackReply> {
    let kind = CallbackKind::from_slug(path.trim_end_matches('/').rsplit('/').next()?)?;
    Some(engine.handle_callback(kind, body).await)
}
