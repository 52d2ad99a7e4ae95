//! The operator console over arbitrary query strings, form bodies and cookies, on every
//! route, signed in as an `operate` operator (with and without the session's CSRF token):
//! never a panic, never a 500, and no error page quotes the payee's account number sent in.
#![no_main]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use protopay_api::{ApiAuth, Role};
use protopay_console::{ConsoleOptions, console_router};
use protopay_engine::storage::MemoryStorage;
use protopay_engine::testing::Offline;
use protopay_engine::{Config, Engine, Md5Key};
use std::sync::LazyLock;
use tower::ServiceExt;

const TOKEN: &str = "fuzz-operator-token-0123456789";
const TOKEN_SHA256: &str = "f39f34edd526308a1ac393425adb802b3bd17a45b43cec86013fa207858b0c58";
const ACCOUNT: &str = "6222020200112233445";

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
});

/// The console, and a signed-in session: its cookie and CSRF token.
static CONSOLE: LazyLock<(axum::Router, String, String)> = LazyLock::new(|| {
    RUNTIME.block_on(async {
        let config = Config::new("APP001", Md5Key::new("k"), "http://pay.invalid", "http://me.invalid/n");
        let engine = Engine::builder(config)
            .storage(MemoryStorage::new())
            .transport(Offline)
            .build()
            .await
            .expect("an engine");
        let auth = ApiAuth::new("fuzz-shared-token-0123456789")
            .and_then(|a| a.with_operator("li.lei", Role::Operate, TOKEN_SHA256))
            .expect("operators");
        let router = console_router(engine, auth, ConsoleOptions::default());
        let sign_in = Request::post("/console/sign-in")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={TOKEN}")))
            .expect("a request");
        let signed_in = router.clone().oneshot(sign_in).await.expect("an answer");
        let cookie = signed_in.headers()["set-cookie"].to_str().expect("text").split(';').next().expect("a cookie").to_owned();
        let overview = Request::get("/console").header("cookie", &cookie).body(Body::empty()).expect("a request");
        let page = router.clone().oneshot(overview).await.expect("an answer");
        let html = axum::body::to_bytes(page.into_body(), 1 << 20).await.expect("a body");
        let html = String::from_utf8_lossy(&html);
        let csrf = html.split("name=\"csrf\" value=\"").nth(1).and_then(|r| r.split('"').next()).expect("a CSRF token").to_owned();
        (router, cookie, csrf)
    })
});

/// (method, path; a trailing `?` takes the input as its query string, a POST as its form).
const ROUTES: &[(Method, &str)] = &[
    (Method::GET, "/console?"),
    (Method::GET, "/console/orders?"),
    (Method::GET, "/console/orders.csv?"),
    (Method::GET, "/console/orders/APP001-x"),
    (Method::GET, "/console/protocols?"),
    (Method::GET, "/console/audit?"),
    (Method::POST, "/console/orders/APP001-x/resolve"),
    (Method::POST, "/console/resolve"),
    (Method::POST, "/console/protocols/T1/reconcile"),
    (Method::POST, "/console/reconcile-drifting"),
    (Method::POST, "/console/webhooks/resend"),
    (Method::POST, "/console/sign-in"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let (router, cookie, csrf) = &*CONSOLE;
    let (method, route) = &ROUTES[usize::from(selector & 0x7f) % ROUTES.len()];
    let text = String::from_utf8_lossy(input);
    let (uri, body) = match route.strip_suffix('?') {
        Some(path) => (format!("{path}?{text}"), String::new()),
        // The high bit sends the session's CSRF token with the form, so that handlers see it.
        None if selector & 0x80 != 0 => (route.to_string(), format!("csrf={csrf}&{text}")),
        None => (route.to_string(), text.to_string()),
    };
    let Ok(request) = Request::builder()
        .method(method.clone())
        .uri(uri)
        .header("cookie", cookie.as_str())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
    else {
        return;
    };
    RUNTIME.block_on(async {
        let response = router.clone().oneshot(request).await.expect("axum answers");
        let status = response.status();
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24).await.expect("a body");
        if status.is_client_error() {
            assert!(!String::from_utf8_lossy(&bytes).contains(ACCOUNT), "an error quoted the account");
        }
    });
});
