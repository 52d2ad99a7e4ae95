//! Errors as JSON: `{"code": "...", "message": "...", ...}` with an HTTP status. `code` is
//! stable — scripts branch on it; `message` is for people and may change. No error carries
//! the key or personal data, and none quotes a value that was sent: messages are the API's
//! own sentences, naming the API's fields (`payeeAccount`, never the wire's `bankAccNum`).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use protopay_engine::Error;
use serde::Serialize;
use utoipa::ToSchema;

/// The failures every `/v1` route may answer, documented beside its success; each route adds
/// its own (`404`, `409`, …) by status, with the codes it may carry.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Only its OpenAPI description is used; errors are built as `ApiError`.
pub(super) enum Failures {
    /// `invalid_request`: the request is malformed; `fields` names the field at fault.
    /// Nothing changed.
    #[response(status = 400)]
    InvalidRequest(ApiError),
    /// `unauthorized`: no valid bearer token.
    #[response(status = 401)]
    Unauthorized(ApiError),
    /// `internal`: a bug; the server's log says more.
    #[response(status = 500)]
    Internal(ApiError),
    /// `storage_unavailable`, `busy` (retry), `shutting_down`; and for a payment command
    /// `outcome_unknown` (repeat it with the same `outReqNo`).
    #[response(status = 503)]
    Unavailable(ApiError),
}

/// What went wrong, for programs: stable, so a client can switch on it exhaustively. Each
/// code has one HTTP status, given beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum ErrorCode {
    /// 401: no valid bearer token.
    Unauthorized,
    /// 403: a read token on a command.
    Forbidden,
    /// 400: the request is malformed; `fields` names the field at fault. Nothing changed.
    InvalidRequest,
    /// 404: no such order here.
    UnknownOrder,
    /// 404: no such protocol here.
    UnknownProtocol,
    /// 404: the payment system has no such record.
    RemoteNotFound,
    /// 422: the protocol's available balance is short. Nothing was stored or sent.
    InsufficientFunds,
    /// 409: an order with this `outReqNo` (a protocol with this `idempotencyKey`) exists with
    /// different `fields`. Nothing was sent or changed.
    IdempotencyMismatch,
    /// 409: the order's state does not allow it (e.g. closing a quick-pay deposit).
    InvalidState,
    /// 503: whether the order was recorded is unknown: repeat with the same `outReqNo`.
    OutcomeUnknown,
    /// 503: a record kept changing: nothing changed, retry.
    Busy,
    /// 502: the payment system refused the call (`remoteCode`).
    RemoteRefused,
    /// 502: the payment system could not be reached.
    PaymentSystemUnreachable,
    /// 502: the payment system's reply did not verify or decode.
    BadReply,
    /// 503: the store is unavailable; nothing was acknowledged.
    StorageUnavailable,
    /// 503: protopay is shutting down.
    ShuttingDown,
    /// 500: a bug; see the server's log.
    Internal,
}

impl ErrorCode {
    /// Its HTTP status: one per code.
    pub(super) fn status(self) -> StatusCode {
        use ErrorCode as C;
        use StatusCode as S;
        match self {
            C::Unauthorized => S::UNAUTHORIZED,
            C::Forbidden => S::FORBIDDEN,
            C::InvalidRequest => S::BAD_REQUEST,
            C::UnknownOrder | C::UnknownProtocol | C::RemoteNotFound => S::NOT_FOUND,
            C::InsufficientFunds => S::UNPROCESSABLE_ENTITY,
            C::IdempotencyMismatch | C::InvalidState => S::CONFLICT,
            C::RemoteRefused | C::PaymentSystemUnreachable | C::BadReply => S::BAD_GATEWAY,
            C::OutcomeUnknown | C::Busy | C::StorageUnavailable | C::ShuttingDown => S::SERVICE_UNAVAILABLE,
            C::Internal => S::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ApiError {
    /// Stable, for programs.
    pub code: ErrorCode,
    /// For people.
    pub message: String,
    /// `outcome_unknown`: the order's request number when protopay generated it (you sent
    /// none): repeat the command with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_req_no: Option<String>,
    /// `idempotency_mismatch`: the fields that differ; `invalid_request`: the field at fault.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// `remote_refused`: the payment system's code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_code: Option<String>,
}

impl ApiError {
    /// An error with a code and a message.
    pub(super) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            out_req_no: None,
            fields: Vec::new(),
            remote_code: None,
        }
    }

    /// A request the API refuses before the engine sees it.
    pub(super) fn invalid(field: &str, message: impl Into<String>) -> Self {
        let mut e = ApiError::new(ErrorCode::InvalidRequest, message);
        e.fields.push(field.to_owned());
        e
    }

    /// Keep the `outReqNo` only if protopay generated it: a host that sent one has it, and an
    /// error never repeats what was sent.
    pub(super) fn for_generated_key(mut self, generated: bool) -> Self {
        if !generated {
            self.out_req_no = None;
        }
        self
    }
}

/// The API's name for a field the engine names by its wire name: a host wrote `payeeAccount`,
/// and an error about it must say so.
fn api_field(wire: &str) -> &str {
    match wire {
        "bankAccName" => "payeeName",
        "bankAccNum" => "payeeAccount",
        "qpUserName" => "payerName",
        "qpCertNumber" => "payerCertNumber",
        "bankNameKeyWord" => "keyword",
        other => other,
    }
}

/// The API's sentence for an engine error: what happened and what to do, naming API fields
/// and never a value that was sent (the engine's own texts keep values out too; this keeps
/// the API's wording in one place, apart from the engine's).
fn message(e: &Error) -> String {
    match e {
        Error::TooLong { field, max } => format!("`{}` is longer than {max} characters", api_field(field)),
        Error::InvalidField { field, reason } => format!("`{}` {reason}", api_field(field)),
        Error::InvalidAmount { reason } => format!("`amount` {reason}"),
        Error::UnknownOrder { .. } => "no such order (outReqNo) is known here".to_owned(),
        Error::UnknownProtocol { .. } => "no such protocol (transNo) is known here".to_owned(),
        Error::IdempotencyMismatch { fields, .. } => {
            let fields: Vec<&str> = fields.iter().map(|f| api_field(f)).collect();
            format!(
                "an order with this outReqNo exists with different {}; repeat the original parameters to read it",
                fields.join(", ")
            )
        }
        Error::OpenedOtherwise { fields, .. } => format!(
            "a protocol was opened with this idempotencyKey and different {}; repeat the original parameters to read it, or use a new key",
            fields.join(", ")
        ),
        other => other.to_string(),
    }
}

/// How the API answers an engine error: its HTTP status and its message for people (no
/// value of the request in it). For other front ends of the engine (the operator console)
/// that answer as the API does.
pub fn answer_of(e: Error) -> (StatusCode, String) {
    let api = ApiError::from(e);
    (api.code.status(), api.message)
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        use ErrorCode as C;
        let message = message(&e);
        let code = match &e {
            Error::TooLong { .. }
            | Error::InvalidField { .. }
            | Error::InvalidAmount { .. }
            | Error::InvalidTime { .. } => C::InvalidRequest,
            Error::UnknownOrder { .. } => C::UnknownOrder,
            Error::UnknownProtocol { .. } => C::UnknownProtocol,
            Error::NotFound(_) => C::RemoteNotFound,
            Error::InsufficientFunds { .. } => C::InsufficientFunds,
            Error::IdempotencyMismatch { .. } | Error::OpenedOtherwise { .. } => C::IdempotencyMismatch,
            Error::InvalidState { .. } | Error::OrderMoved { .. } => C::InvalidState,
            Error::OutcomeUnknown { .. } => C::OutcomeUnknown,
            Error::Busy { .. } => C::Busy,
            Error::Remote { .. } => C::RemoteRefused,
            Error::Transport(_) => C::PaymentSystemUnreachable,
            // A reply that did not verify or decode (API bodies are not envelopes).
            Error::BadSign
            | Error::WrongAppId { .. }
            | Error::MalformedEnvelope { .. }
            | Error::MalformedData { .. }
            | Error::TooLarge { .. } => C::BadReply,
            Error::Storage(_) | Error::CommitUnknown(_) => C::StorageUnavailable,
            Error::Shutdown => C::ShuttingDown,
            _ => C::Internal,
        };
        if code == C::Internal {
            tracing::error!(error = %e, "API request failed inside the engine");
        }
        let mut out = ApiError::new(code, message);
        match e {
            Error::OutcomeUnknown { out_req_no } => out.out_req_no = Some(out_req_no),
            Error::IdempotencyMismatch { fields, .. } | Error::OpenedOtherwise { fields, .. } => {
                out.fields = fields.iter().map(|f| api_field(f).to_owned()).collect();
            }
            Error::TooLong { field, .. } | Error::InvalidField { field, .. } => {
                out.fields = vec![api_field(field).to_owned()];
            }
            Error::InvalidAmount { .. } => out.fields = vec!["amount".to_owned()],
            Error::Remote { code, .. } => out.remote_code = Some(code),
            _ => {}
        }
        out
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let mut response = (status, Json(self)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
