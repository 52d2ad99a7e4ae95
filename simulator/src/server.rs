//! The simulator over HTTP: the payment system's eight calls under `/api/protocol/`, and an
//! admin API under `/sim/` for the controls, faults and counters.

use crate::{Aimed, Faults, Handled, Sim, SimError};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use protopay_engine::wire::Endpoint;
use serde::Deserialize;
use serde_json::json;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Clone)]
struct AppState {
    sim: Sim,
    shutdown: watch::Receiver<bool>,
    hold: Duration,
}

/// Options of the HTTP server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// How long a "timeout after commit" holds the answer before giving up with 504 (a
    /// client's own timeout should fire first).
    pub hold: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            hold: Duration::from_secs(120),
        }
    }
}

/// The router, for hosts that mount it in their own server.
pub fn router(sim: Sim, options: ServerOptions, shutdown: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/api/protocol/{name}", post(api))
        .route("/sim/inbound/{out_req_no}/pay", post(pay))
        .route("/sim/inbound/{out_req_no}/arrive", post(arrive))
        .route("/sim/outbound/{out_req_no}/settle", post(settle))
        .route("/sim/faults", post(set_faults).get(get_faults))
        .route("/sim/stats", get(stats))
        .route("/sim/orders", get(orders))
        .route("/sim/fail-next/{endpoint}", post(fail_next))
        .route("/sim/received", get(received))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(middleware::from_fn(log_line))
        .with_state(AppState {
            sim,
            shutdown,
            hold: options.hold,
        })
}

/// Serve until `shutdown` resolves, then finish the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    sim: Sim,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, rx) = watch::channel(false);
    let app = router(sim, options, rx);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = tx.send(true);
        })
        .await
}

async fn log_line(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let started = tokio::time::Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        "{method} {path} {} {}ms",
        response.status().as_u16(),
        started.elapsed().as_millis()
    );
    response
}

async fn api(State(state): State<AppState>, Path(name): Path<String>, body: Bytes) -> Response {
    match state.sim.handle(&name, &body) {
        Handled::Reply(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Handled::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, "simulated server error").into_response(),
        Handled::ConnectionRefused => (StatusCode::SERVICE_UNAVAILABLE, "simulated refusal").into_response(),
        Handled::TimeoutAfterCommit => {
            let mut shutdown = state.shutdown.clone();
            tokio::select! {
                _ = tokio::time::sleep(state.hold) => {}
                _ = shutdown.changed() => {}
            }
            (StatusCode::GATEWAY_TIMEOUT, "simulated timeout").into_response()
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Outcome {
    status: String,
}

/// The `{"status": "SUCCESS"|"FAILURE"}` of a control, or why it is not one.
fn outcome(body: &Bytes) -> Result<bool, String> {
    let o: Outcome = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    match o.status.as_str() {
        "SUCCESS" => Ok(true),
        "FAILURE" => Ok(false),
        _ => Err("status must be SUCCESS or FAILURE".into()),
    }
}

fn bad(status: StatusCode, error: String) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

fn control(result: Result<(), SimError>) -> Response {
    match result {
        Ok(()) => Json(json!({ "ok": true })).into_response(),
        Err(e @ SimError::UnknownOrder(_)) => bad(StatusCode::NOT_FOUND, e.to_string()),
        Err(e) => bad(StatusCode::CONFLICT, e.to_string()),
    }
}

async fn pay(State(state): State<AppState>, Path(key): Path<String>, body: Bytes) -> Response {
    match outcome(&body) {
        Ok(success) => control(state.sim.pay(&key, success)),
        Err(e) => bad(StatusCode::BAD_REQUEST, e),
    }
}

async fn arrive(State(state): State<AppState>, Path(key): Path<String>) -> Response {
    control(state.sim.arrive(&key))
}

async fn settle(State(state): State<AppState>, Path(key): Path<String>, body: Bytes) -> Response {
    match outcome(&body) {
        Ok(success) => control(state.sim.settle(&key, success)),
        Err(e) => bad(StatusCode::BAD_REQUEST, e),
    }
}

async fn set_faults(State(state): State<AppState>, body: Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(faults) => {
            state.sim.set_faults(faults);
            Json(state.sim.faults()).into_response()
        }
        Err(e) => bad(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn get_faults(State(state): State<AppState>) -> Response {
    Json(state.sim.faults()).into_response()
}

async fn stats(State(state): State<AppState>) -> Response {
    Json(state.sim.stats()).into_response()
}

async fn orders(State(state): State<AppState>) -> Response {
    Json(state.sim.order_states()).into_response()
}

/// `POST /sim/fail-next/{endpoint}` with `"server_error"`, `"timeout_after_commit"` or
/// `"connection_refused"`: the next call to that endpoint fails so.
async fn fail_next(State(state): State<AppState>, Path(endpoint): Path<String>, body: Bytes) -> Response {
    let Some(endpoint) = Endpoint::from_name(&endpoint) else {
        return bad(StatusCode::NOT_FOUND, format!("no endpoint {endpoint}"));
    };
    match serde_json::from_slice::<Aimed>(&body) {
        Ok(Aimed::LateArrival(_)) => bad(StatusCode::BAD_REQUEST, "late_arrival exists in-process only".into()),
        Ok(how) => {
            state.sim.fail_next(endpoint, how);
            Json(json!({ "ok": true })).into_response()
        }
        Err(e) => bad(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// `GET /sim/received`: the request log.
async fn received(State(state): State<AppState>) -> Response {
    Json(state.sim.received()).into_response()
}
