//! # protopay-api
//!
//! The `/v1` JSON API: protopay's commands and read models for hosts in any language, and
//! the heart of `protopay serve`. Every command is the engine's own, with its guarantees
//! (idempotent by `outReqNo`; `Ok` means durably recorded and carried out); every read is
//! an index read. Requests carry bearer tokens with `read` and `operate` scopes
//! ([`ApiAuth`]); errors are JSON with a stable `code`. The OpenAPI document ([`openapi`])
//! is served at `/v1/openapi.json`, without a token, so that clients can be generated from
//! it. And [`webhook`]: the same events pushed to a host's URL, signed with HMAC-SHA256.
//!
//! Apart from `protopay-transport-http` (the engine's outbound transport and the callback
//! receiver): this crate is what a host talks to, that one what the payment system does.
//!
//! ```no_run
//! # async fn run(engine: protopay_engine::Engine) -> Result<(), Box<dyn std::error::Error>> {
//! use protopay_api::{ApiAuth, api_router};
//! // The API under `/v1`, a bearer token on every request (mount the callback receiver
//! // beside it: its routes are public, callbacks are signed).
//! let auth = ApiAuth::new(&std::env::var("PROTOPAY_API_TOKEN")?)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, api_router(engine, auth)).await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
// Outside data never meets an `unwrap` here; tests may use it freely.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod auth;
mod error;
mod examples;
mod requests;
mod setup;
mod views;
pub mod webhook;

pub use auth::{ApiAuth, Role};
pub use error::answer_of;
pub use setup::SetupError;
pub use views::{EventData, EventView, OrderStatus, RefusalView};

use auth::{Caller, Scope, require};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use error::{ApiError, Failures};
use examples::Examples;
use protopay_engine::storage::OrderQuery;
use protopay_engine::{Decision, Engine, MAX_PAGE};
use requests::*;
use std::time::Duration;
use utoipa::OpenApi;
use views::*;

/// The longest a long-poll for events waits.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// A page's size when the request names none.
const DEFAULT_PAGE: usize = 100;

/// A page's size: as asked, from 1 to [`MAX_PAGE`], or the default. Anything else is refused,
/// not cut: a client that asked for 0 or 10 000 has a bug worth hearing about.
fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n @ 1..=MAX_PAGE) => Ok(n),
        Some(_) => Err(ApiError::invalid(
            "limit",
            format!("`limit` must be from 1 to {MAX_PAGE}"),
        )),
    }
}

/// The API as an axum `Router`, to mount beside the callback receiver
/// (`protopay_transport_http::callback_router`)
/// (whose routes stay public: callbacks are signed). Requests need a bearer token of
/// `auth`: reads any token, commands the `operate` token.
pub fn api_router(engine: Engine, auth: ApiAuth) -> Router {
    let document = std::sync::Arc::new(served_document(engine.config()));
    let reads = Router::new()
        .route("/v1/protocols", get(list_protocols))
        .route("/v1/protocols/{transNo}", get(read_protocol))
        .route("/v1/orders", get(list_orders))
        .route("/v1/orders/{outReqNo}", get(read_order))
        .route("/v1/events", get(read_events))
        .route("/v1/audit", get(read_audit))
        .route("/v1/cnaps", get(query_cnaps))
        .route("/v1/check", get(check))
        .route_layer(middleware::from_fn_with_state((auth.clone(), Scope::Read), require));
    let commands = Router::new()
        .route("/v1/protocols", post(create_protocol))
        .route("/v1/protocols/{transNo}/refresh", post(refresh_protocol))
        .route("/v1/protocols/{transNo}/reconcile", post(reconcile))
        .route("/v1/inbound", post(create_inbound))
        .route("/v1/inbound/{outReqNo}/close", post(close_inbound))
        .route("/v1/outbound", post(create_outbound))
        .route("/v1/orders/{outReqNo}/resolve", post(resolve))
        .route("/v1/events/ack", post(ack))
        .route_layer(middleware::from_fn_with_state((auth, Scope::Operate), require));
    reads.merge(commands).with_state(engine).route(
        "/v1/openapi.json",
        get(move || async move { Json(document.as_ref().clone()) }),
    )
}

/// Guard every route of `router` with the `operate` token of `auth`, as the API's commands
/// are: for operator routes a server adds beside the API (`protopay serve`'s backup).
pub fn operate_only(router: Router, auth: ApiAuth) -> Router {
    router.route_layer(middleware::from_fn_with_state((auth, Scope::Operate), require))
}

/// The OpenAPI 3.1 document of the `/v1` API, as every deployment shares it. A server serves
/// it with the rules that depend on its settings filled in ([`served_document`]).
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as a deployment serves it: [`openapi`], plus the rules its settings decide,
/// so that a request the document allows is one this server takes — an `outReqNo` is this
/// deployment's `appId` and a suffix; `bankCnaps` is as strict as `cnaps_check`.
pub fn served_document(config: &protopay_engine::Config) -> utoipa::openapi::OpenApi {
    use protopay_engine::wire::validate::{CnapsCheck, limits};
    let mut doc = openapi();
    let suffix = limits::OUT_REQ_NO_MAX_CHARS.saturating_sub(config.app_id.len());
    // An appId is [A-Za-z0-9_-] (validated): nothing in it needs escaping in a pattern.
    let out_req_no = format!("^{}[A-Za-z0-9_-]{{1,{suffix}}}$", config.app_id);
    for body in ["CreateInbound", "CreateOutbound"] {
        set_pattern(&mut doc, body, "outReqNo", &out_req_no);
    }
    if config.cnaps_check == CnapsCheck::DigitsOnly {
        set_pattern(&mut doc, "CreateOutbound", "bankCnaps", "^[0-9]{1,12}$");
    }
    doc
}

/// Set the pattern of one property of one schema of the document.
fn set_pattern(doc: &mut utoipa::openapi::OpenApi, schema: &str, property: &str, pattern: &str) {
    use utoipa::openapi::{RefOr, schema::Schema};
    let schemas = doc.components.as_mut().map(|c| &mut c.schemas);
    if let Some(RefOr::T(Schema::Object(object))) = schemas.and_then(|s| s.get_mut(schema))
        && let Some(RefOr::T(Schema::Object(field))) = object.properties.get_mut(property)
    {
        field.pattern = Some(pattern.to_owned());
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "protopay", description = "Escrow payments through the LFT agreement-payment API: commands, read models and events.",
        contact(name = "The operators of this deployment")),
    paths(
        create_protocol, refresh_protocol, reconcile, create_inbound, close_inbound, create_outbound, resolve, ack,
        list_protocols, read_protocol, list_orders, read_order, read_events, read_audit, query_cnaps, check
    ),
    components(schemas(ApiError, ListingName)),
    servers((url = "/", description = "The server that serves this document (`protopay serve`, or a host that mounts the API)")),
    tags(
        (name = "protocols", description = "Escrow agreements: open, read, refresh from the payment system, reconcile"),
        (name = "inbound", description = "Payments into a protocol: a POS code or a quick-pay page"),
        (name = "outbound", description = "Payments out of a protocol: payouts and refunds"),
        (name = "orders", description = "Every order, in and out: read, list, resolve"),
        (name = "events", description = "What happened, in order: long-poll and acknowledge"),
        (name = "operations", description = "For the person on call: bank branches, a check of every invariant")
    ),
    modifiers(&BearerAuth, &Examples),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

type Reply<T> = Result<Json<T>, ApiError>;

/// A JSON body, or an error that names no value from it (a body may hold account numbers).
fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(b)| b).map_err(|rejection| match &rejection {
        JsonRejection::JsonDataError(e) => refused_field(&e.body_text(), field_of(e), "body"),
        JsonRejection::JsonSyntaxError(_) => ApiError::invalid("body", "the body is not valid JSON"),
        JsonRejection::MissingJsonContentType(_) => ApiError::invalid("body", "Content-Type must be application/json"),
        _ => ApiError::invalid("body", "the body could not be read"),
    })
}

fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| refused_field(&e.body_text(), field_of(&e), "query"))
}

/// The field of a body or query string that serde refused, from the path axum's extractors
/// record (`serde_path_to_error`), when it names one of ours.
fn field_of(rejection: &(dyn std::error::Error + 'static)) -> Option<String> {
    type JsonPath = serde_path_to_error::Error<serde_json::Error>;
    type QueryPath = serde_path_to_error::Error<serde_urlencoded::de::Error>;
    let mut next = Some(rejection);
    while let Some(e) = next {
        let path = e
            .downcast_ref::<JsonPath>()
            .map(JsonPath::path)
            .or_else(|| e.downcast_ref::<QueryPath>().map(QueryPath::path));
        if let Some(path) = path {
            return match path.iter().next_back() {
                Some(serde_path_to_error::Segment::Map { key }) if name_like(key) => Some(key.clone()),
                _ => None,
            };
        }
        next = e.source();
    }
    None
}

/// Whether a text looks like one of our field names (a malformed body can fold a value, an
/// account number, into a key: such a key is never repeated).
fn name_like(name: &str) -> bool {
    (1..=40).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_')
}

/// serde's complaint about a body or a query string, as an error that names the field at
/// fault (`whole` — `body` or `query` — when none can be named) and no value: serde's own
/// text quotes what it was given.
fn refused_field(text: &str, field: Option<String>, whole: &str) -> ApiError {
    let quoted = |marker: &str| {
        let rest = text.split_once(marker)?.1;
        Some(rest.split_once('`')?.0.to_owned())
    };
    if let Some(missing) = quoted("missing field `") {
        ApiError::invalid(&missing, format!("missing field `{missing}`"))
    } else if let Some(unknown) = quoted("unknown field `") {
        if name_like(&unknown) {
            ApiError::invalid(&unknown, format!("unknown field `{unknown}`"))
        } else {
            ApiError::invalid(whole, "an unknown field (its name is not repeated)")
        }
    } else if let Some(field) = field {
        ApiError::invalid(&field, format!("`{field}` has the wrong type or value"))
    } else {
        ApiError::invalid(whole, format!("the {whole} has the wrong shape"))
    }
}

/// Open a protocol.
///
/// Opens an escrow agreement at the payment system and records it here, its ledger empty.
/// The payment system's `create` carries no request number of ours, so a create whose reply
/// is lost cannot be matched there: give an `idempotencyKey`, and a repeat with the same key
/// answers the protocol the first call opened (or opens one, if no call with that key got
/// as far). Without a key every call opens a new protocol. A protocol holds no money until
/// paid into: a lost reply leaves at most an empty protocol behind, reported as a
/// `PossibleOrphanProtocol` anomaly in the event log.
#[utoipa::path(post, tag = "protocols", path = "/v1/protocols", request_body = CreateProtocol,
    responses((status = 200, description = "OK", body = ProtocolView), Failures,
        (status = 403, description = "`forbidden`: a read token on a command", body = ApiError),
        (status = 409, description = "`idempotency_mismatch`: this idempotencyKey opened a protocol with other `fields`", body = ApiError),
        (status = 502, description = "`remote_refused` (see `remoteCode`), `payment_system_unreachable`, `bad_reply`", body = ApiError)))]
async fn create_protocol(
    State(engine): State<Engine>,
    b: Result<Json<CreateProtocol>, JsonRejection>,
) -> Reply<ProtocolView> {
    let command = body(b)?.into_command()?;
    Ok(Json((&engine.create_protocol(command).await?).into()))
}

/// Refresh a protocol's balances from the payment system.
///
/// Asks the payment system for the protocol and stores its balances. A protocol protopay
/// did not open is adopted: its available balance becomes its opening balance. Moves no
/// money and changes no order.
#[utoipa::path(post, tag = "protocols", path = "/v1/protocols/{transNo}/refresh", params(("transNo" = String, Path, description = "The protocol number", min_length = 1, pattern = r"\S")),
    responses((status = 200, description = "OK", body = ProtocolView), Failures,
        (status = 403, description = "`forbidden`: a read token on a command", body = ApiError),
        (status = 404, description = "`remote_not_found`: the payment system has no such protocol", body = ApiError),
        (status = 502, description = "`remote_refused` (see `remoteCode`), `payment_system_unreachable`, `bad_reply`", body = ApiError)))]
async fn refresh_protocol(State(engine): State<Engine>, Path(trans_no): Path<String>) -> Reply<ProtocolView> {
    Ok(Json((&engine.refresh_protocol(&trans_no).await?).into()))
}

/// Reconcile a protocol against the payment system.
///
/// Puts protopay's ledger beside the balances the payment system reports now and lists every
/// figure that disagrees (`drift`, each also recorded as a `BalanceDrift` event), allowing for
/// payouts still in flight. Reports only: it never moves money or changes an order.
#[utoipa::path(post, tag = "protocols", path = "/v1/protocols/{transNo}/reconcile", params(("transNo" = String, Path, description = "The protocol number", min_length = 1, pattern = r"\S")),
    responses((status = 200, description = "OK", body = ReconciliationView), Failures,
        (status = 403, description = "`forbidden`: a read token on a command", body = ApiError),
        (status = 404, description = "`unknown_protocol`; `remote_not_found`", body = ApiError),
        (status = 502, description = "`remote_refused` (see `remoteCode`), `payment_system_unreachable`, `bad_reply`", body = ApiError)))]
async fn reconcile(State(engine): State<Engine>, Path(trans_no): Path<String>) -> Reply<ReconciliationView> {
    Ok(Json((&engine.reconcile(&trans_no).await?).into()))
}

/// Take a payment in.
///
/// Starts an inbound payment (`prepay`): a six-digit POS code for a POS protocol, a cashier
/// page for a quick-pay one. Idempotent by `outReqNo`: a repeat with the same fields answers
/// the same order, with other fields `409 idempotency_mismatch`. `200` means the order is
/// durably recorded and was sent; `503 outcome_unknown` means repeat with the same `outReqNo`.
/// A `200` may come without `posCode` or `cashierUrl`, status `SUBMITTED`: the order is
/// recorded but the payment system's answer is not in yet (it was unreachable, or the reply
/// was lost); protopay asks again on its own, and the code arrives as a `Pending` event and
/// in `GET /v1/orders/{outReqNo}`.
#[utoipa::path(post, tag = "inbound", path = "/v1/inbound", request_body = CreateInbound,
    responses((status = 200, description = "OK", body = OrderView), Failures,
        (status = 403, description = "`forbidden`: a read token on a command", body = ApiError),
        (status = 404, description = "`unknown_protocol`", body = ApiError),
        (status = 409, description = "`idempotency_mismatch`: this outReqNo exists with other `fields`", body = ApiError)))]
async fn create_inbound(
    State(engine): State<Engine>,
    b: Result<Json<CreateInbound>, JsonRejection>,
) -> Reply<OrderView> {
    let command = body(b)?.into_command()?;
    let generated = command.out_req_no.is_none();
    let order = engine
        .prepay(command)
        .await
        .map_err(|e| ApiError::from(e).for_generated_key(generated))?;
    Ok(Json(OrderView::of(&order, Personal::Shown)))
}

/// Close an unpaid POS code.
///
/// Asks the payment system to close an open POS deposit, so that its code can no longer be
/// paid. A quick-pay deposit has no code to close: refused with `409 invalid_state` before
/// anything is sent. A payment that lands anyway is recorded as it is, never dropped.
#[utoipa::path(post, tag = "inbound", path = "/v1/inbound/{outReqNo}/close", params(("outReqNo" = String, Path, description = "The order's request number", min_length = 1, pattern = r"\S")),
    responses((status = 200, description = "OK", body = OrderView), Failures,
        (status = 403, description = "`forbidden`: a read token on a command", body = ApiError),
        (status = 404, description = "`unknown_order`; `remote_not_found`", body = ApiError),
        (status = 409, description = "`invalid_state`: not an open POS deposit (a quick-pay one has no code), or already closed", body = ApiError),
        (status = 502, description = "`remote_refused` (see `remoteCode`), `payment_system_unreachable`, `bad_reply`", body = ApiError)))]
async fn close_inbound(State(engine): State<Engine>, Path(out_req_no): Path<String>) -> Reply<OrderView> {
    Ok(Json(OrderView::of(
        &engine.close_pos(&out_req_no).await?,
        Personal::Shown,
    )))
}

/// Pay out or refund.
///
/// Sends money out of a protocol's available balance to a bank account (`outpay`): a
/// payout (`OUT`) or a refund (`REFUND`). Idempotent by `outReqNo`, and never sent twice:
/// the funds are reserved and the order durably recorded before it is sent, and a repeat
/// answers the same order. `200` means reserved, recorded and sent; the outcome arrives as
/// events (`OutboundSucceeded`, `OutboundFailed`). `422 insufficient_funds` stores and sends
/// nothing.
#[utoipa::path(post, tag = "outbound", path = "/v1/outbound", request_body = CreateOutbound,
    responses((status = 200, description = "OK", body = OrderView), Failures,
        (status = 403, description = "`forbidden`: a read token on a command", body = ApiError),
        (status = 404, description = "`unknown_protocol`", body = ApiError),
        (status = 409, description = "`idempotency_mismatch`: this outReqNo exists with other `fields`", body = ApiError),
        (status = 422, description = "`insufficient_funds`: nothing was stored or sent", body = ApiError)))]
async fn create_outbound(
    State(engine): State<Engine>,
    b: Result<Json<CreateOutbound>, JsonRejection>,
) -> Reply<OrderView> {
    let command = body(b)?.into_command()?;
    let generated = command.out_req_no.is_none();
    let order = engine
        .outpay(command)
        .await
        .map_err(|e| ApiError::from(e).for_generated_key(generated))?;
    Ok(Json(OrderView::of(&order, Personal::Shown)))
}

/// Record a person's decision on an order.
///
/// For an order that needs attention (`NEEDS_ATTENTION`: the payment system's word has not
/// come after every try), a person who learned its outcome elsewhere records it, with a note
/// saying who and why, as `SUCCESS` or `FAILURE`; the ledger follows. Name the order's
/// `version` you decided on: if it has moved since, the decision is refused and nothing is
/// recorded. Refused with `409 invalid_state` too: an order that does not need attention
/// (never sent, still being decided by the payment system, or settled — a settled order
/// suspected paid twice is acknowledged with the status it has).
#[utoipa::path(post, tag = "orders", path = "/v1/orders/{outReqNo}/resolve", params(("outReqNo" = String, Path, description = "The order's request number", min_length = 1, pattern = r"\S")), request_body = Resolve,
    responses((status = 200, description = "OK", body = OrderView), Failures,
        (status = 403, description = "`forbidden`: a read token on a command", body = ApiError),
        (status = 404, description = "`unknown_order`", body = ApiError),
        (status = 409, description = "`invalid_state`: the order does not need attention (never sent, still being decided, or settled), or it has moved since the `version` named", body = ApiError)))]
async fn resolve(
    State(engine): State<Engine>,
    Extension(caller): Extension<Caller>,
    Path(out_req_no): Path<String>,
    b: Result<Json<Resolve>, JsonRejection>,
) -> Reply<OrderView> {
    let decision = Decision {
        by: caller.operator,
        ..body(b)?.into_decision()
    };
    Ok(Json(OrderView::of(
        &engine.resolve(&out_req_no, decision).await?,
        Personal::Shown,
    )))
}

/// Acknowledge events.
///
/// Moves a consumer's cursor to `seq`: events up to it are not delivered to that consumer
/// again. A cursor never moves back (an older `seq` changes nothing) nor past the last event.
#[utoipa::path(post, tag = "events", path = "/v1/events/ack", request_body = Ack,
    responses((status = 204, description = "Acknowledged"), Failures,
        (status = 403, description = "`forbidden`: a read token on a command", body = ApiError)))]
async fn ack(
    State(engine): State<Engine>,
    b: Result<Json<Ack>, JsonRejection>,
) -> Result<axum::http::StatusCode, ApiError> {
    let ack = body(b)?;
    check_consumer(&ack.consumer)?;
    if i64::try_from(ack.seq).is_err() {
        // The document says int64, as every store keeps it: a larger number is no event.
        return Err(ApiError::invalid("seq", "`seq` must be at most 9223372036854775807"));
    }
    engine.ack(&ack.consumer, ack.seq).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// List protocols.
///
/// A page of protocols in `transNo` order; follow `next` for the next page.
#[utoipa::path(get, tag = "protocols", path = "/v1/protocols", params(PageQuery),
    responses((status = 200, description = "OK", body = ProtocolPage), Failures))]
async fn list_protocols(
    State(engine): State<Engine>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Reply<ProtocolPage> {
    let q = query(q)?;
    let page = engine.protocols(q.cursor.as_deref(), page_limit(q.limit)?).await?;
    Ok(Json((&page).into()))
}

/// Read a protocol.
///
/// Its ledger as protopay keeps it, beside the balances the payment system last reported.
#[utoipa::path(get, tag = "protocols", path = "/v1/protocols/{transNo}", params(("transNo" = String, Path, description = "The protocol number", min_length = 1, pattern = r"\S")),
    responses((status = 200, description = "OK", body = ProtocolView), Failures,
        (status = 404, description = "`unknown_protocol`", body = ApiError)))]
async fn read_protocol(State(engine): State<Engine>, Path(trans_no): Path<String>) -> Reply<ProtocolView> {
    Ok(Json((&engine.protocol(&trans_no).await?).into()))
}

/// List orders.
///
/// A page of orders in `outReqNo` order, filtered by listing (a status, or
/// `NEEDS_ATTENTION`) and by protocol; follow `next` for the next page. Personal data is
/// masked (`***3445`).
#[utoipa::path(get, tag = "orders", path = "/v1/orders", params(OrdersQuery),
    responses((status = 200, description = "OK", body = OrderPage), Failures))]
async fn list_orders(State(engine): State<Engine>, q: Result<Query<OrdersQuery>, QueryRejection>) -> Reply<OrderPage> {
    let q = query(q)?;
    let listing = q.status.map(Into::into);
    let filter = OrderQuery {
        listing,
        trans_no: q.trans_no,
    };
    let page = engine
        .orders(&filter, q.cursor.as_deref(), page_limit(q.limit)?)
        .await?;
    Ok(Json((&page).into()))
}

/// Read an order.
///
/// The order, personal data shown, with its history (every event, oldest first) and when
/// protopay next asks the payment system about it.
#[utoipa::path(get, tag = "orders", path = "/v1/orders/{outReqNo}", params(("outReqNo" = String, Path, description = "The order's request number", min_length = 1, pattern = r"\S")),
    responses((status = 200, description = "OK", body = OrderDetailsView), Failures,
        (status = 404, description = "`unknown_order`", body = ApiError)))]
async fn read_order(State(engine): State<Engine>, Path(out_req_no): Path<String>) -> Reply<OrderDetailsView> {
    Ok(Json((&engine.order_details(&out_req_no).await?).into()))
}

/// Read the audit trail.
///
/// What people did, newest first: each decision on an order (`OperatorResolved`), each
/// reconciliation a named operator asked for (`OperatorReconciled`) and each resend of a
/// consumer's events (`OperatorResent`) — who, when, what and why — each recorded in the same
/// commit as the change it made. Follow `next` as `before`.
#[utoipa::path(get, tag = "events", path = "/v1/audit", params(AuditQuery),
    responses((status = 200, description = "OK", body = AuditPage), Failures))]
async fn read_audit(State(engine): State<Engine>, q: Result<Query<AuditQuery>, QueryRejection>) -> Reply<AuditPage> {
    let q = query(q)?;
    if q.before.is_some_and(|b| b == 0 || i64::try_from(b).is_err()) {
        return Err(ApiError::invalid(
            "before",
            "`before` must be from 1 to 9223372036854775807",
        ));
    }
    let limit = page_limit(q.limit)?;
    Ok(Json(AuditPage::of(&engine.audit(q.before, limit).await?, limit)))
}

/// Read events.
///
/// A consumer's unacknowledged events, in `seq` order, delivered at least once: waits up to
/// `waitMs` (at most 30 000) for one when there are none. Acknowledge with
/// `POST /v1/events/ack`; until then the same events come again.
#[utoipa::path(get, tag = "events", path = "/v1/events", params(EventsQuery),
    responses((status = 200, description = "OK", body = EventBatch), Failures))]
async fn read_events(State(engine): State<Engine>, q: Result<Query<EventsQuery>, QueryRejection>) -> Reply<EventBatch> {
    let q = query(q)?;
    check_consumer(&q.consumer)?;
    let wait = match (q.wait_ms, q.wait) {
        (Some(ms), _) => Duration::from_millis(ms),
        (None, Some(secs)) => Duration::from_secs(secs),
        (None, None) => Duration::ZERO,
    }
    .min(MAX_WAIT);
    let events = if wait.is_zero() {
        engine.unacknowledged(&q.consumer).await?
    } else {
        let mut feed = engine.subscribe(&q.consumer);
        match tokio::time::timeout(wait, feed.next()).await {
            Ok(events) => events?,
            Err(_elapsed) => Vec::new(),
        }
    };
    Ok(Json(EventBatch {
        events: events.iter().map(Into::into).collect(),
    }))
}

/// Search bank branches.
///
/// Asks the payment system for the CNAPS numbers of bank branches whose names contain
/// `keyword` (a payout names its payee's branch by this number).
#[utoipa::path(get, tag = "operations", path = "/v1/cnaps", params(CnapsQuery),
    responses((status = 200, description = "OK", body = [CnapsView]), Failures,
        (status = 404, description = "`remote_not_found`", body = ApiError),
        (status = 502, description = "`remote_refused` (see `remoteCode`), `payment_system_unreachable`, `bad_reply`", body = ApiError)))]
async fn query_cnaps(
    State(engine): State<Engine>,
    q: Result<Query<CnapsQuery>, QueryRejection>,
) -> Reply<Vec<CnapsView>> {
    let q = query(q)?;
    let found = engine.query_cnaps(&q.keyword).await?;
    Ok(Json(found.iter().map(Into::into).collect()))
}

/// Check every invariant.
///
/// Recomputes every protocol's ledger from its orders and verifies the invariants, listing
/// counts included: a tool for after an incident. Reads everything, changes nothing.
#[utoipa::path(get, tag = "operations", path = "/v1/check",
    responses((status = 200, description = "OK", body = CheckView), Failures))]
async fn check(State(engine): State<Engine>) -> Reply<CheckView> {
    Ok(Json((&engine.check().await?).into()))
}

fn check_consumer(name: &str) -> Result<(), ApiError> {
    if consumer_ok(name) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "consumer",
            "a consumer name is 1 to 64 letters, digits, '.', '_' or '-'",
        ))
    }
}
