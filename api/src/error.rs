//! Errors as JSON: `{"code": "...", "message": "...", ...}` with an HTTP status. `code` is
//! stable — scripts branch on it; `message` is for people and may change. Like the engine's
//! errors, no message carries the key or personal data.

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
    /// `outcome_unknown`, `idempotency_mismatch`: the order to repeat or read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_req_no: Option<String>,
    /// `idempotency_mismatch`: the fields that differ; `invalid_request`: the field at fault.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<&'static str>,
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
    pub(super) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        let mut e = ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message);
        e.fields.push(field);
        e
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        use StatusCode as S;
        let message = e.to_string();
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
            Error::IdempotencyMismatch { out_req_no, fields } => {
                out.out_req_no = Some(out_req_no);
                out.fields = fields;
            }
            Error::TooLong { field, .. } | Error::InvalidField { field, .. } => out.fields = vec![field],
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
