//! The `/v1` API mounted by a Rust host, over loopback HTTP with the simulator and sled:
//! typed errors that change nothing and quote no value, and long-polls that return when an
//! event is committed. (The whole flow from another language is `cli/tests/python_host.rs`.)

mod harness;

use protopay::http::{ApiAuth, api_router};
use serde_json::{Value, json};

const TOKEN: &str = "api-test-token-0123456789";

async fn mount(stack: &harness::Stack) -> String {
    let app = api_router(stack.engine(), ApiAuth::new(TOKEN).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let r = request.bearer_auth(TOKEN).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_typed_error_that_changes_nothing_and_quotes_no_value() {
    let dir = tempfile::tempdir().unwrap();
    let stack = harness::Stack::start(dir.path(), 11).await;
    let api = mount(&stack).await;
    let http = reqwest::Client::new();
    let before = stack.engine().events_after(0, 1_000).await.unwrap().len();
    let payout = |amount: Value, extra: Value| {
        let mut body = json!({"transNo": "T1", "amount": amount, "outType": "OUT", "payeeName": "Han Meimei",
            "payeeAccount": "6222020200112233445", "bankName": "ICBC", "bankCnaps": "102100000030"});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        http.post(format!("{api}/v1/outbound")).json(&body)
    };
    let cases = [
        (payout(json!(12.5), json!({})), 400, "invalid_request"),
        (payout(json!("12.505"), json!({})), 400, "invalid_request"),
        (
            payout(json!("12.50"), json!({"outType": "GIFT"})),
            400,
            "invalid_request",
        ),
        (
            payout(json!("12.50"), json!({"payeeAcount": "x"})),
            400,
            "invalid_request",
        ),
        (payout(json!("12.50"), json!({})), 404, "unknown_protocol"),
        (
            http.post(format!("{api}/v1/outbound"))
                .header("content-type", "application/json")
                .body("{\"payeeAccount\": \"6222020200112233445\""),
            400,
            "invalid_request",
        ),
        // Found by the `api` fuzz target: a broken body folds the account number into a key.
        (
            http.post(format!("{api}/v1/outbound"))
                .header("content-type", "application/json")
                .body(r#"{"transNo":"T1","outTyp\\\"6222020200112233445","amount":"1.00"}"#),
            400,
            "invalid_request",
        ),
        (
            http.get(format!("{api}/v1/orders?6222020200112233445=1")),
            400,
            "invalid_request",
        ),
        (
            http.get(format!("{api}/v1/orders?status=stuck")),
            400,
            "invalid_request",
        ),
        (http.get(format!("{api}/v1/orders/APP001-nope")), 404, "unknown_order"),
        (
            http.get(format!("{api}/v1/events?consumer=bad%20name")),
            400,
            "invalid_request",
        ),
        (
            http.post(format!("{api}/v1/orders/APP001-nope/resolve"))
                .json(&json!({"status": "SUCCESS", "note": "checked"})),
            404,
            "unknown_order",
        ),
    ];
    for (request, status, code) in cases {
        let (got, body) = send(request).await;
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{body}");
        let text = body.to_string();
        for secret in ["6222020200112233445", "Han Meimei", "12.5"] {
            assert!(!text.contains(secret), "an error quoted {secret}: {text}");
        }
    }
    let (_, unknown) = send(payout(json!("12.50"), json!({"payeeAcount": "x"}))).await;
    assert!(
        unknown["message"].as_str().unwrap().contains("payeeAcount"),
        "{unknown}"
    );
    let after = stack.engine().events_after(0, 1_000).await.unwrap().len();
    assert_eq!(before, after, "refused requests wrote nothing");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_returns_when_an_event_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let stack = harness::Stack::start(dir.path(), 12).await;
    let api = mount(&stack).await;
    let http = reqwest::Client::new();
    let (status, idle) = send(http.get(format!("{api}/v1/events?consumer=host"))).await;
    assert_eq!((status, idle["events"].as_array().map(Vec::len)), (200, Some(0)));
    let waiting = tokio::spawn(send(http.get(format!("{api}/v1/events?consumer=host&wait=30"))));
    let (status, protocol) = send(
        http.post(format!("{api}/v1/protocols"))
            .json(&json!({"transDesc": "deal", "businessId": "B1"})),
    )
    .await;
    assert_eq!(status, 200, "{protocol}");
    let (status, woken) = waiting.await.unwrap();
    assert_eq!(status, 200);
    let events = woken["events"].as_array().unwrap();
    assert!(!events.is_empty(), "{woken}");
    // Written before the call to the payment system, so it is what wakes the poll.
    assert_eq!(events[0]["kind"], "ProtocolCreateRequested", "{woken}");
    let last = events.last().unwrap()["seq"].as_u64().unwrap();
    let (status, _) = send(
        http.post(format!("{api}/v1/events/ack"))
            .json(&json!({"consumer": "host", "seq": last})),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(stack.engine().cursor("host").await.unwrap(), last);
    stack.stop().await;
}
