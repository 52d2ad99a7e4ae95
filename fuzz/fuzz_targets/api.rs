//! The `/v1` API over arbitrary bodies and query strings, on every route: never a panic,
//! never a 500, always a JSON answer (or 204), and never an error that quotes the payee's
//! account number sent in a body.
#![no_main]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use protopay_engine::storage::conformance::sample_protocol;
use protopay_engine::storage::{Batch, MemoryStorage, Put, Storage};
use protopay_engine::testing::Offline;
use protopay_engine::{Amount, Config, Engine, Ledger, Md5Key};
use protopay_api::{ApiAuth, api_router};
use std::sync::LazyLock;
use tower::ServiceExt;

const TOKEN: &str = "fuzz-token-0123456789abcdef";
const ACCOUNT: &str = "6222020200112233445";

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
});

/// (method, path; a trailing `?` takes the input as its query string).
const ROUTES: &[(Method, &str)] = &[
    (Method::POST, "/v1/protocols"),
    (Method::POST, "/v1/inbound"),
    (Method::POST, "/v1/outbound"),
    (Method::POST, "/v1/orders/APP001-x/resolve"),
    (Method::POST, "/v1/events/ack"),
    (Method::GET, "/v1/orders?"),
    (Method::GET, "/v1/protocols?"),
    (Method::GET, "/v1/events?"),
    (Method::GET, "/v1/cnaps?"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let (method, route) = &ROUTES[usize::from(selector) % ROUTES.len()];
    let (uri, body) = match route.strip_suffix('?') {
        Some(path) => (format!("{path}?{}", String::from_utf8_lossy(input)), Vec::new()),
        None => (route.to_string(), input.to_vec()),
    };
    let Ok(request) = Request::builder()
        .method(method.clone())
        .uri(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(body))
    else {
        return;
    };
    RUNTIME.block_on(async {
        let store = MemoryStorage::new();
        let mut protocol = sample_protocol("T1");
        // An adopted protocol holding 100.00: a ledger its (no) orders explain.
        protocol.ledger = Ledger::opened_with(Amount::parse("100.00").expect("an amount"));
        let seed = Batch {
            protocols: vec![Put {
                expected: None,
                value: protocol,
            }],
            ..Default::default()
        };
        store.commit(seed).await.expect("a memory commit");
        let config = Config::new("APP001", Md5Key::new("k"), "http://pay.invalid", "http://me.invalid/n");
        let engine = Engine::builder(config)
            .storage(store)
            .transport(Offline)
            .build()
            .await
            .expect("an engine");
        let response = api_router(engine, ApiAuth::new(TOKEN).expect("a token"))
            .oneshot(request)
            .await
            .expect("axum answers");
        let status = response.status();
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("a body");
        if status != StatusCode::NO_CONTENT {
            let json: serde_json::Value = serde_json::from_slice(&bytes).expect("a JSON answer");
            if !status.is_success() {
                assert!(!json.to_string().contains(ACCOUNT), "an error quoted the account");
            }
        }
    });
});
