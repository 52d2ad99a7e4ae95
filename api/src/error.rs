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

/// The failure answers every `/v1` route documents beside its success: one place for them.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Only its OpenAPI description is used; errors are built as `ApiError`.
pub(super) enum Failures {
    /// Refused: nothing changed (see `code`)
    #[response(status = "4XX")]
    Refused(ApiError),
    /// Failed (see `code`; `outcome_unknown`: repeat with the same outReqNo)
    #[response(status = "5XX")]
    Failed(ApiError),
}

/// An error answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    /// Stable, for programs: `unauthorized`, `forbidden`, `invalid_request`, `unknown_order`,
    /// `unknown_protocol`, `insufficient_funds`, `idempotency_mismatch`, `invalid_state`,
    /// `outcome_unknown`, `busy`, `remote_refused`, `remote_not_found`,
    /// `payment_system_unreachable`, `bad_reply`, `storage_unavailable`, `shutting_down`, `internal`.
    pub code: &'static str,
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
    /// An error with a status, a code and a message.
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            out_req_no: None,
            fields: Vec::new(),
            remote_code: None,
        }
    }

    /// A request the API refuses before the engine sees it.
    pub(super) fn invalid(field: &str, message: impl Into<String>) -> Self {
        let mut e = ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message);
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
        other => other.to_string(),
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        use StatusCode as S;
        let message = message(&e);
        let (status, code) = match &e {
            Error::TooLong { .. }
            | Error::InvalidField { .. }
            | Error::InvalidAmount { .. }
            | Error::InvalidTime { .. } => (S::BAD_REQUEST, "invalid_request"),
            Error::UnknownOrder { .. } => (S::NOT_FOUND, "unknown_order"),
            Error::UnknownProtocol { .. } => (S::NOT_FOUND, "unknown_protocol"),
            Error::NotFound(_) => (S::NOT_FOUND, "remote_not_found"),
            Error::InsufficientFunds { .. } => (S::UNPROCESSABLE_ENTITY, "insufficient_funds"),
            Error::IdempotencyMismatch { .. } => (S::CONFLICT, "idempotency_mismatch"),
            Error::InvalidState { .. } => (S::CONFLICT, "invalid_state"),
            Error::OutcomeUnknown { .. } => (S::SERVICE_UNAVAILABLE, "outcome_unknown"),
            Error::Busy { .. } => (S::SERVICE_UNAVAILABLE, "busy"),
            Error::Remote { .. } => (S::BAD_GATEWAY, "remote_refused"),
            Error::Transport(_) => (S::BAD_GATEWAY, "payment_system_unreachable"),
            // A reply that did not verify or decode (API bodies are not envelopes).
            Error::BadSign
            | Error::WrongAppId { .. }
            | Error::MalformedEnvelope { .. }
            | Error::MalformedData { .. }
            | Error::TooLarge { .. } => (S::BAD_GATEWAY, "bad_reply"),
            Error::Storage(_) | Error::CommitUnknown(_) => (S::SERVICE_UNAVAILABLE, "storage_unavailable"),
            Error::Shutdown => (S::SERVICE_UNAVAILABLE, "shutting_down"),
            _ => (S::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status == S::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "API request failed inside the engine");
        }
        let mut out = ApiError::new(status, code, message);
        match e {
            Error::OutcomeUnknown { out_req_no } => out.out_req_no = Some(out_req_no),
            Error::IdempotencyMismatch { fields, .. } => {
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
        let status = self.status;
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
