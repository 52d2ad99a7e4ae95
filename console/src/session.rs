//! Sign-in, sessions and the checks every `POST` passes.
//!
//! A session is a random 256-bit id in a cookie, held here with its operator, role and CSRF
//! token; the id never appears in a page or a log. Sessions live in this process: behind a
//! load balancer with several `serve` instances, route a person to one instance (sticky
//! sessions) or expect to sign in again after a switch.

use crate::error::ConsoleError;
use crate::{Console, page};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use protopay_api::Role;
use std::collections::HashMap;
use std::sync::Mutex;
use subtle::ConstantTimeEq;
use tokio::time::{Duration, Instant};

/// The session cookie's name.
pub(crate) const COOKIE: &str = "protopay_session";

/// A session unused this long ends.
const IDLE: Duration = Duration::from_secs(30 * 60);

/// A session ends this long after sign-in, used or not.
const LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// The largest form body read (a bulk action names at most a page of orders).
const FORM_LIMIT_BYTES: usize = 64 * 1024;

#[derive(Clone)]
struct Session {
    operator: String,
    role: Role,
    csrf: String,
    started: Instant,
    seen: Instant,
}

/// The sessions of this process, by id.
#[derive(Default)]
pub(crate) struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn start(&self, operator: String, role: Role) -> Result<String, ConsoleError> {
        let id = random_token()?;
        let now = Instant::now();
        let session = Session {
            operator,
            role,
            csrf: random_token()?,
            started: now,
            seen: now,
        };
        let mut by_id = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        by_id.retain(|_, s| live(s, now));
        by_id.insert(id.clone(), session);
        Ok(id)
    }

    fn find(&self, id: &str) -> Option<SignedIn> {
        let now = Instant::now();
        let mut by_id = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        let session = by_id.get_mut(id)?;
        if !live(session, now) {
            by_id.remove(id);
            return None;
        }
        session.seen = now;
        Some(SignedIn {
            name: session.operator.clone(),
            role: session.role,
            csrf: session.csrf.clone(),
            id: id.to_owned(),
        })
    }

    fn end(&self, id: &str) {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

fn live(s: &Session, now: Instant) -> bool {
    now.duration_since(s.seen) < IDLE && now.duration_since(s.started) < LIFETIME
}

/// 32 random bytes in hex.
fn random_token() -> Result<String, ConsoleError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ConsoleError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The person a request comes from.
#[derive(Clone)]
pub(crate) struct SignedIn {
    /// Their operator name (what their acts are recorded under).
    pub(crate) name: String,
    pub(crate) role: Role,
    /// What their forms carry.
    pub(crate) csrf: String,
    id: String,
}

impl std::fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedIn")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl SignedIn {
    /// Whether they may see personal data unmasked and act.
    pub(crate) fn operates(&self) -> bool {
        self.role == Role::Operate
    }
}

fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<Console> for SignedIn {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Self::Rejection> {
        cookie_value(&parts.headers, COOKIE)
            .and_then(|id| console.sessions.find(id))
            .ok_or(ConsoleError::NotSignedIn)
    }
}

/// A form posted by a signed-in person, its CSRF token checked: the only way a handler
/// reads a `POST` body (sign-in aside), so no `POST` skips the check.
pub(crate) struct Posted {
    pub(crate) by: SignedIn,
    fields: Vec<(String, String)>,
}

impl Posted {
    /// The first value of a field.
    pub(crate) fn one(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of a field (checkboxes).
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A required text: present and not blank.
    pub(crate) fn text(&self, name: &'static str, what: &'static str) -> Result<&str, ConsoleError> {
        match self.one(name) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(ConsoleError::Missing(what)),
        }
    }
}

async fn form_fields(request: Request) -> Result<Vec<(String, String)>, ConsoleError> {
    let bytes = axum::body::to_bytes(request.into_body(), FORM_LIMIT_BYTES)
        .await
        .map_err(|_| ConsoleError::Malformed)?;
    serde_urlencoded::from_bytes(&bytes).map_err(|_| ConsoleError::Malformed)
}

impl FromRequest<Console> for Posted {
    type Rejection = ConsoleError;

    async fn from_request(request: Request, console: &Console) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let by = SignedIn::from_request_parts(&mut parts, console).await?;
        let fields = form_fields(Request::from_parts(parts, body)).await?;
        let sent = fields.iter().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_bytes());
        if !sent.is_some_and(|token| bool::from(token.ct_eq(by.csrf.as_bytes()))) {
            return Err(ConsoleError::Csrf);
        }
        Ok(Posted { by, fields })
    }
}

/// A [`Posted`] form from someone whose role may act: a `read` operator's is refused here,
/// whatever page it came from.
pub(crate) struct Action(pub(crate) Posted);

impl FromRequest<Console> for Action {
    type Rejection = ConsoleError;

    async fn from_request(request: Request, console: &Console) -> Result<Self, Self::Rejection> {
        let posted = Posted::from_request(request, console).await?;
        if !posted.by.operates() {
            return Err(ConsoleError::ReadOnly);
        }
        Ok(Action(posted))
    }
}

/// `GET /console/sign-in`.
pub(crate) async fn sign_in_page(State(console): State<Console>) -> maud::Markup {
    sign_in_form(&console, None)
}

fn sign_in_form(console: &Console, problem: Option<&str>) -> maud::Markup {
    let body = html! {
        h1 { "Sign in" }
        @if let Some(problem) = problem { p.problem role="alert" { (problem) } }
        @if console.auth.has_operators() {
            form method="post" action="/console/sign-in" {
                label { "Your operator token " input type="password" name="token" autocomplete="current-password" required; }
                button type="submit" { "Sign in" }
            }
            p.quiet { "Operators and their roles are set in " code { "[[serve.operators]]" } "." }
        } @else {
            p.problem { "No operator can sign in: this deployment names none. Add them to "
                code { "[[serve.operators]]" } " (a name, a role, the SHA-256 of their token) and restart." }
        }
    };
    page::layout("Sign in", None, body)
}

/// `POST /console/sign-in`: a named operator's token starts a session. Refused from another
/// site (its `Origin`), so no page elsewhere can sign a person in as someone else.
pub(crate) async fn sign_in(State(console): State<Console>, request: Request) -> Result<Response, ConsoleError> {
    if !same_origin(request.headers()) {
        return Err(ConsoleError::CrossSite);
    }
    let fields = form_fields(request).await?;
    let token = fields
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let Some((name, role)) = console.auth.operator_of(token) else {
        tracing::warn!("console sign-in refused: not a named operator's token");
        let page = sign_in_form(&console, Some("That is not a named operator's token."));
        return Ok((StatusCode::UNAUTHORIZED, page).into_response());
    };
    tracing::info!(operator = %name, "signed in to the console");
    let id = console.sessions.start(name, role)?;
    let secure = if console.options.secure_cookies { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict{secure}");
    let mut response = Redirect::to("/console").into_response();
    let value = HeaderValue::from_str(&cookie).map_err(|_| ConsoleError::Malformed)?;
    response.headers_mut().insert(header::SET_COOKIE, value);
    Ok(response)
}

/// `POST /console/sign-out`: the session ends here, and the browser forgets its cookie.
pub(crate) async fn sign_out(State(console): State<Console>, posted: Posted) -> Response {
    console.sessions.end(&posted.by.id);
    tracing::info!(operator = %posted.by.name, "signed out of the console");
    let mut response = Redirect::to("/console/sign-in").into_response();
    let expired = format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&expired) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Whether a request's `Origin` (when it has one, as browsers send on every `POST`) is
/// this server.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    host.is_some() && origin_host == host
}
