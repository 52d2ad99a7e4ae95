//! Bearer tokens with two scopes: `read` (lists, orders, protocols, events) and `operate`
//! (everything `read` may, plus commands, `resolve` and acknowledging events). Tokens are
//! compared in constant time; a missing or wrong token is 401, a `read` token on a command
//! is 403 — both before the request body is read, so nothing changes.
//!
//! Besides the shared tokens, **named operators**: a name, a role (`read` or `operate`) and
//! the SHA-256 of their token — the token itself is never stored. A request with an
//! operator's token is theirs: a decision it records names them (`by`).

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

/// A named operator's role: what their token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads only (lists, orders, protocols, events).
    Read,
    /// Reads and commands, `resolve` included.
    Operate,
}

/// How a credential is checked: a shared token as configured, or an operator's token by
/// its SHA-256 (the token itself is not held).
#[derive(Clone)]
enum Secret {
    Token(Sensitive),
    Sha256([u8; 32]),
}

/// Who a request comes from, for the handlers: its scope, and the operator's name when the
/// token is a named operator's.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) scope: Scope,
    pub(crate) operator: Option<String>,
}

/// The API's tokens and named operators. Its `Debug` shows no token and no hash.
#[derive(Clone)]
pub struct ApiAuth {
    tokens: Arc<Vec<(Secret, Caller)>>,
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
        Ok(self.plus(Secret::Token(Sensitive::new(token)), scope, None))
    }

    /// Also accept the operator `name`, whose token has the SHA-256 `token_sha256` (64 hex
    /// digits, e.g. `printf %s "$TOKEN" | sha256sum`), with `role`. Their decisions are
    /// recorded under `name`.
    pub fn with_operator(self, name: &str, role: Role, token_sha256: &str) -> Result<Self, SetupError> {
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if name.is_empty() || name.chars().count() > OPERATOR_NAME_MAX_CHARS || !name.chars().all(plain) {
            return Err(SetupError::OperatorName {
                max: OPERATOR_NAME_MAX_CHARS,
            });
        }
        if self.tokens.iter().any(|(_, c)| c.operator.as_deref() == Some(name)) {
            return Err(SetupError::DuplicateOperator { name: name.to_owned() });
        }
        let mut digest = [0u8; 32];
        let hex = token_sha256.trim().as_bytes();
        let digits = |i: usize| {
            let pair = std::str::from_utf8(hex.get(2 * i..2 * i + 2)?).ok()?;
            u8::from_str_radix(pair, 16).ok()
        };
        for (i, byte) in digest.iter_mut().enumerate() {
            *byte = digits(i).ok_or_else(|| SetupError::OperatorHash { name: name.to_owned() })?;
        }
        if hex.len() != 64 {
            return Err(SetupError::OperatorHash { name: name.to_owned() });
        }
        let scope = match role {
            Role::Read => Scope::Read,
            Role::Operate => Scope::Operate,
        };
        Ok(self.plus(Secret::Sha256(digest), scope, Some(name.to_owned())))
    }

    fn plus(self, secret: Secret, scope: Scope, operator: Option<String>) -> Self {
        let mut tokens = self.tokens.as_ref().clone();
        tokens.push((secret, Caller { scope, operator }));
        ApiAuth {
            tokens: Arc::new(tokens),
        }
    }

    /// The named operator whose token this is, and their role: how the operator console
    /// signs a person in (the shared tokens name nobody, so they do not sign in there).
    pub fn operator_of(&self, token: &str) -> Option<(String, Role)> {
        let caller = self.caller_of(token.trim().as_bytes())?;
        let role = match caller.scope {
            Scope::Read => Role::Read,
            Scope::Operate => Role::Operate,
        };
        Some((caller.operator?, role))
    }

    /// Whether any named operator is configured (without one, nobody can sign in to the
    /// console).
    pub fn has_operators(&self) -> bool {
        self.tokens.iter().any(|(_, c)| c.operator.is_some())
    }

    /// Who presented this token, if it is one of ours. Every credential is compared, so the
    /// time taken says nothing about which one matched; the widest scope wins.
    fn caller_of(&self, presented: &[u8]) -> Option<Caller> {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(presented).into();
        let mut found: Option<&Caller> = None;
        for (secret, caller) in self.tokens.iter() {
            let matches = match secret {
                Secret::Token(token) => token.expose().as_bytes().ct_eq(presented),
                Secret::Sha256(hash) => hash.ct_eq(&digest),
            };
            if bool::from(matches) && found.is_none_or(|f| caller.scope > f.scope) {
                found = Some(caller);
            }
        }
        found.cloned()
    }
}

/// The longest operator name.
const OPERATOR_NAME_MAX_CHARS: usize = protopay_engine::wire::validate::limits::OPERATOR_NAME_MAX_CHARS;

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
    let Some(caller) = presented.and_then(|t| auth.caller_of(t)) else {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "a valid bearer token is required (Authorization: Bearer <token>)",
        ));
    };
    if caller.scope < needed {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "this token may only read; commands need the operate token or an operator's",
        ));
    }
    let mut request = request;
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPERATE: &str = "operate-token-0123456789";
    /// `printf %s li-lei-token-0123456789abcdef | sha256sum`
    const LI: &str = "li-lei-token-0123456789abcdef";
    const LI_SHA256: &str = "1f3e87f5c80b3415316ef5b1dea47480f1f228f705fa969a790f88eb06ea9f47";

    fn auth() -> ApiAuth {
        ApiAuth::new(OPERATE)
            .unwrap()
            .with_operator("li.lei", Role::Read, LI_SHA256)
            .unwrap()
    }

    #[test]
    fn an_operator_is_known_by_the_hash_of_their_token_and_keeps_their_role() {
        let auth = auth();
        let li = auth.caller_of(LI.as_bytes()).expect("Li's token");
        assert_eq!((li.scope, li.operator.as_deref()), (Scope::Read, Some("li.lei")));
        let shared = auth.caller_of(OPERATE.as_bytes()).expect("the shared token");
        assert_eq!((shared.scope, shared.operator), (Scope::Operate, None));
        assert!(auth.caller_of(LI_SHA256.as_bytes()).is_none(), "the hash is no token");
        assert!(auth.caller_of(b"li-lei-token-0123456789abcdeF").is_none());
        let shown = format!("{auth:?}");
        assert!(
            !shown.contains(OPERATE) && !shown.contains(LI_SHA256) && !shown.contains("1f3e87"),
            "{shown}"
        );
    }

    #[test]
    fn a_malformed_operator_is_refused_at_setup() {
        let add = |name: &str, hash: &str| ApiAuth::new(OPERATE).unwrap().with_operator(name, Role::Operate, hash);
        for name in ["", "li lei", "李雷", &"x".repeat(65)] {
            assert!(
                matches!(add(name, LI_SHA256), Err(SetupError::OperatorName { .. })),
                "{name:?}"
            );
        }
        for hash in [
            "",
            "1f3e",
            &LI_SHA256[..63],
            &format!("{LI_SHA256}0"),
            &LI_SHA256.replace('f', "g"),
        ] {
            assert!(
                matches!(add("li.lei", hash), Err(SetupError::OperatorHash { .. })),
                "{hash:?}"
            );
        }
        let twice = auth().with_operator("li.lei", Role::Operate, LI_SHA256);
        assert!(matches!(twice, Err(SetupError::DuplicateOperator { .. })));
    }
}
