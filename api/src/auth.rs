//! Bearer tokens with two scopes: `read` (lists, orders, protocols, events) and `operate`
//! (everything `read` may, plus commands, `resolve` and acknowledging events). Tokens are
//! compared in constant time; a missing or wrong token is 401, a `read` token on a command
//! is 403 — both before the request body is read, so nothing changes.

use super::error::{ApiError, ErrorCode};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use protopay_engine::Sensitive;
use std::sync::Arc;
use subtle::ConstantTimeEq;

use crate::SetupError;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Scope {
    Read,
    Operate,
}

/// The API's tokens. Its `Debug` shows no token.
#[derive(Clone)]
pub struct ApiAuth {
    tokens: Arc<Vec<(Sensitive, Scope)>>,
}

impl std::fmt::Debug for ApiAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiAuth")
            .field("tokens", &self.tokens.len())
            .finish_non_exhaustive()
    }
}

impl ApiAuth {
    /// The fewest characters a token may have: 16 random ones resist guessing over HTTP.
    pub const MIN_TOKEN_CHARS: usize = 16;

    /// Auth with the `operate` token: commands and reads.
    pub fn new(operate_token: &str) -> Result<Self, SetupError> {
        let auth = ApiAuth {
            tokens: Arc::new(Vec::new()),
        };
        auth.with(operate_token, Scope::Operate, "operate")
    }

    /// Also accept `read_token` for reads only.
    pub fn with_read_token(self, read_token: &str) -> Result<Self, SetupError> {
        self.with(read_token, Scope::Read, "read")
    }

    fn with(self, token: &str, scope: Scope, name: &'static str) -> Result<Self, SetupError> {
        if token.chars().count() < Self::MIN_TOKEN_CHARS {
            return Err(SetupError::WeakToken {
                scope: name,
                min: Self::MIN_TOKEN_CHARS,
            });
        }
        let mut tokens = self.tokens.as_ref().clone();
        tokens.push((Sensitive::new(token), scope));
        Ok(ApiAuth {
            tokens: Arc::new(tokens),
        })
    }

    /// The scope of a presented token, if it is one of ours. Every token is compared, so
    /// the time taken says nothing about which one matched.
    fn scope_of(&self, presented: &[u8]) -> Option<Scope> {
        let mut found = None;
        for (token, scope) in self.tokens.iter() {
            if bool::from(token.expose().as_bytes().ct_eq(presented)) {
                found = found.max(Some(*scope));
            }
        }
        found
    }
}

/// Middleware: let the request through only with a token of at least `needed` scope.
pub(crate) async fn require(
    State((auth, needed)): State<(ApiAuth, Scope)>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .map(<[u8]>::trim_ascii);
    let Some(scope) = presented.and_then(|t| auth.scope_of(t)) else {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "a valid bearer token is required (Authorization: Bearer <token>)",
        ));
    };
    if scope < needed {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "this token may only read; commands need the operate token",
        ));
    }
    Ok(next.run(request).await)
}
