//! The `/v1` API mounted by a Rust host, over loopback HTTP with the simulator and sled:
//! typed errors that change nothing and quote no value, and long-polls that return when an
//! event is committed; webhooks pushed by two instances, one of whose pushes lands after its
//! lease passed on (fenced by epoch and `seq`). (The whole flow from another language is
//! `cli/tests/python_host.rs`.)

mod harness;

use protopay::api::{ApiAuth, api_router};
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
    // Errors name the API's field at fault, in a body and in a query string alike.
    let (_, typed) = send(payout(json!(12.5), json!({}))).await;
    assert_eq!(typed["fields"], json!(["amount"]), "{typed}");
    let (status, seq) = send(
        http.post(format!("{api}/v1/events/ack"))
            .json(&json!({"consumer": "host", "seq": 9_223_372_036_854_775_808_u64})),
    )
    .await;
    assert_eq!((status, &seq["fields"]), (400, &json!(["seq"])), "{seq}");
    let (status, both) = send(http.get(format!("{api}/v1/events?consumer=c&wait=30&waitMs=0"))).await;
    assert_eq!(
        (status, both["events"].as_array().map(Vec::len)),
        (200, Some(0)),
        "waitMs wins: {both}"
    );
    for bad in ["many", "0", "501"] {
        let (status, limit) = send(http.get(format!("{api}/v1/orders?limit={bad}"))).await;
        assert_eq!((status, &limit["fields"]), (400, &json!(["limit"])), "{limit}");
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
    // (`wait`, in seconds, is the older name of `waitMs`: still read.)
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
    assert_eq!(events[0]["data"]["kind"], "ProtocolCreateRequested", "{woken}");
    assert!(events[0]["data"]["attempt"].is_string(), "{woken}");
    // Times carry milliseconds, no finer: `2026-11-29T07:31:25.123Z`.
    let at = events[0]["at"].as_str().unwrap();
    let fraction = at.rsplit_once('.').map(|(_, f)| f);
    assert!(fraction.is_some_and(|f| f.len() == 4 && f.ends_with('Z')), "{at}");
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

/// A host that timed out opening a protocol repeats the call with the same `idempotencyKey`:
/// it gets the protocol the first call opened, and no second one is opened; the same key with
/// other fields is refused, naming them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_opens_one_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let stack = harness::Stack::start(dir.path(), 13).await;
    let api = mount(&stack).await;
    let http = reqwest::Client::new();
    let open = |body: Value| send(http.post(format!("{api}/v1/protocols")).json(&body));
    let asked = json!({"transDesc": "deal", "businessId": "B1", "idempotencyKey": "deal-42"});
    let (status, first) = open(asked.clone()).await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = open(asked.clone()).await;
    assert_eq!((status, &again["transNo"]), (200, &first["transNo"]), "{again}");
    let (_, page) = send(http.get(format!("{api}/v1/protocols"))).await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page}");
    let (status, refused) = open(json!({"transDesc": "other", "businessId": "B1", "idempotencyKey": "deal-42"})).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["code"], "idempotency_mismatch");
    assert_eq!(refused["fields"], json!(["transDesc"]));
    let (status, other) = open(json!({"transDesc": "deal", "businessId": "B1", "idempotencyKey": "deal-43"})).await;
    assert_eq!(status, 200, "{other}");
    assert_ne!(other["transNo"], first["transNo"], "another key opens another protocol");
    stack.stop().await;
}

/// What a webhook receiver saw: each push as it was handled, and whether the receiver's rule
/// (process each `seq` once; drop any at or below the highest processed) kept it.
#[derive(Default)]
struct Received {
    pushes: Vec<(u64, u64, bool)>,
    highest: u64,
}

/// Pauses and partitions, defect 4: a pusher frozen past its lease thawed and pushed an old
/// `seq` after a newer holder's had been acknowledged. That cannot be prevented from the
/// sending side (the request may already be on the wire), so each push carries its lease's
/// fencing epoch beside its `seq`, and the receiver's rule drops it. Here the first holder's
/// request is held by the network (the receiver answers it last) while its lease runs out;
/// the second holder takes over with a higher epoch and delivers everything; the held push
/// lands afterwards with the lower epoch and an old `seq`, and the rule drops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_push_from_a_former_lease_holder_is_fenced() {
    use protopay::api::webhook::{EPOCH_HEADER, SEQ_HEADER, Webhook};
    use std::sync::{Arc, Mutex};
    let received: Arc<Mutex<Received>> = Arc::default();
    let (held_tx, held) = tokio::sync::oneshot::channel::<()>();
    let held_tx = Arc::new(Mutex::new(Some(held_tx)));
    let release = Arc::new(tokio::sync::Notify::new());
    let (processed_tx, mut processed) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let (log, release_in) = (received.clone(), release.clone());
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let (log, held_tx, release, processed_tx) =
                (log.clone(), held_tx.clone(), release_in.clone(), processed_tx.clone());
            async move {
                let number = |name: &str| headers[name].to_str().unwrap().parse::<u64>().unwrap();
                let (seq, epoch) = (number(SEQ_HEADER), number(EPOCH_HEADER));
                // The very first push is held in the network until the test lets it land.
                let first = held_tx.lock().unwrap().take();
                if let Some(tell) = first {
                    let _ = tell.send(());
                    release.notified().await;
                }
                let mut r = log.lock().unwrap();
                let kept = seq > r.highest;
                if kept {
                    r.highest = seq;
                    let _ = processed_tx.send(seq);
                }
                r.pushes.push((seq, epoch, kept));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Two instances on one store; a protocol gives the feed its events.
    let sim = protopay_sim::Sim::new(
        protopay_sim::SimConfig::new(harness::APP, protopay::Md5Key::new(harness::KEY)),
        protopay::Clock::system(),
    );
    let store = protopay::storage::MemoryStorage::new();
    let engine = |seed: u64| {
        protopay::Engine::builder(harness::config("sim://", ([127, 0, 0, 1], 9).into()))
            .storage(store.clone())
            .transport(protopay_sim::SimTransport(sim.clone()))
            .id_seed(seed)
            .build()
    };
    let (first, second) = (engine(1).await.unwrap(), engine(2).await.unwrap());
    first
        .create_protocol(protopay::NewProtocol {
            trans_desc: "fenced".into(),
            business_id: "B1".into(),
            cashier_type: protopay::wire::CashierType::Pos,
            idempotency_key: None,
        })
        .await
        .unwrap();
    let last = first.events_after(0, 100).await.unwrap().last().unwrap().seq;
    let hook = |engine: protopay::Engine| {
        let webhook = Webhook::new(&url, protopay::Sensitive::new("webhook-secret-0123456789"), "hook")
            .unwrap()
            .retry(
                std::time::Duration::from_millis(10),
                std::time::Duration::from_millis(50),
            )
            .lease(std::time::Duration::from_millis(300));
        tokio::spawn(webhook.run(engine))
    };
    let pushing_first = hook(first.clone());
    held.await.unwrap(); // the first holder's push is on the wire, not yet landed
    let pushing_second = hook(second.clone());
    let mut seen = Vec::new();
    while seen.last() != Some(&last) {
        seen.push(processed.recv().await.unwrap());
    }
    release.notify_one(); // the held push lands, late
    while received.lock().unwrap().pushes.iter().filter(|p| p.0 == 1).count() < 2 {
        tokio::task::yield_now().await;
    }
    pushing_first.abort();
    pushing_second.abort();
    let r = received.lock().unwrap();
    assert_eq!(
        seen,
        (1..=last).collect::<Vec<_>>(),
        "every seq processed once, in order"
    );
    let late = r.pushes.last().unwrap();
    let takeover = r.pushes.iter().find(|p| p.2).unwrap();
    assert_eq!(
        (late.0, late.2),
        (1, false),
        "the late push repeats seq 1 and is dropped: {:?}",
        r.pushes
    );
    assert!(late.1 < takeover.1, "its epoch is the former holder's: {:?}", r.pushes);
}

/// A value a host sent never comes back in an error, for any route and any field — path,
/// query or body — whatever the value: an account number put in `transNo`, a name in
/// `outReqNo`, text in `amount` (a field's name may be: a misspelt one is named back). Each
/// case sends every route one value in one place at a time, among otherwise good fields, over
/// loopback HTTP to a real engine (sled, the simulator).
#[test]
fn no_error_quotes_a_value_that_was_sent() {
    use proptest::prelude::*;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (stack, api) = rt.block_on(async {
        let stack = harness::Stack::start(dir.path(), 12).await;
        let api = mount(&stack).await;
        (stack, api)
    });
    let http = reqwest::Client::new();
    // Values no answer could contain by chance: an account number, an ID number, a name, a
    // word that could pass for a field name, text with quotes and escapes.
    let values = prop_oneof![
        "6228[0-9]{15}",
        "1101[0-9]{13}[0-9X]",
        "[A-Z][a-z]{4,8} [A-Z][a-z]{4,8}",
        "Zq[a-z]{6,12}",
        "Zq[a-z]{3}[\"\\\\/ %&?#]{1,4}[a-z]{3}",
    ];
    let config = ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(value in values)| {
        let quoted = rt.block_on(errors_quoting(&http, &api, &value));
        prop_assert!(quoted.is_empty(), "errors quoting {value:?}: {quoted:#?}");
    });
    rt.block_on(stack.stop());
}

/// Every route with `value` in one place at a time; the error bodies that contain it.
async fn errors_quoting(http: &reqwest::Client, api: &str, value: &str) -> Vec<String> {
    let path = |p: &str| format!("{api}{p}");
    let escaped: String = value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let with = |base: Value, field: &str| {
        let mut body = base;
        body[field] = json!(value);
        body
    };
    let inbound = json!({"transNo": "T1", "amount": "1.00", "prodCatalog": "01"});
    let outbound = json!({"transNo": "T1", "amount": "1.00", "outType": "OUT", "payeeName": "Li Lei",
        "payeeAccount": "6222020200112233445", "bankName": "ICBC", "bankCnaps": "102100000030"});
    let mut requests = vec![
        http.get(path(&format!("/v1/protocols/{escaped}"))),
        http.post(path(&format!("/v1/protocols/{escaped}/refresh"))),
        http.post(path(&format!("/v1/protocols/{escaped}/reconcile"))),
        http.get(path(&format!("/v1/orders/{escaped}"))),
        http.post(path(&format!("/v1/inbound/{escaped}/close"))),
        http.post(path(&format!("/v1/orders/{escaped}/resolve")))
            .json(&json!({"status": "FAILURE", "note": "checked"})),
        http.post(path("/v1/orders/APP001-x/resolve"))
            .json(&json!({"status": value, "note": "checked"})),
        http.get(path(&format!("/v1/orders?status={escaped}"))),
        http.get(path(&format!("/v1/orders?limit={escaped}"))),
        http.get(path(&format!("/v1/protocols?limit={escaped}"))),
        http.get(path(&format!("/v1/events?consumer={escaped}&waitMs=0"))),
        http.post(path("/v1/events/ack"))
            .json(&json!({"consumer": value, "seq": 1})),
        http.post(path("/v1/events/ack"))
            .json(&json!({"consumer": "c", "seq": value})),
        http.get(path(&format!("/v1/cnaps?keyword={escaped}"))),
        http.post(path("/v1/protocols"))
            .json(&json!({"transDesc": "d", "businessId": "b", "cashierType": value})),
        http.post(path("/v1/protocols"))
            .json(&json!({"transDesc": "d", "businessId": "b", "idempotencyKey": value})),
    ];
    // As a key, a value is repeated only if it could be a field's name (a misspelt field is
    // named back, to be fixed); anything else in a key — an account number folded into one
    // by a broken body — is not.
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        // (A number is a good wait: it would be waited out.)
        requests.push(http.get(path(&format!("/v1/events?consumer=c&waitMs={escaped}"))));
    }
    if !value.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_') {
        requests.push(http.get(path(&format!("/v1/orders?{escaped}=1"))));
        requests.push(
            http.post(path("/v1/protocols"))
                .json(&json!({value: "x", "transDesc": "d", "businessId": "b"})),
        );
    }
    for field in [
        "transNo",
        "outReqNo",
        "amount",
        "prodCatalog",
        "contractNum",
        "payerName",
        "returnUrl",
    ] {
        requests.push(http.post(path("/v1/inbound")).json(&with(inbound.clone(), field)));
    }
    for field in [
        "transNo",
        "outReqNo",
        "amount",
        "outType",
        "payeeName",
        "payeeAccount",
        "bankName",
        "bankCnaps",
        "remark",
    ] {
        requests.push(http.post(path("/v1/outbound")).json(&with(outbound.clone(), field)));
    }
    requests.push(
        http.post(path("/v1/outbound"))
            .header("content-type", "application/json")
            .body(format!("{{\"transNo\":\"T1\",\"amount\":{value}}}")),
    );
    let mut quoted = Vec::new();
    for request in requests {
        let r = request.bearer_auth(TOKEN).send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        if status.is_client_error() || status.is_server_error() {
            let value_json = serde_json::to_string(value).unwrap();
            let inner = &value_json[1..value_json.len() - 1];
            if text.contains(value) || text.contains(inner) {
                quoted.push(format!("{status}: {text}"));
            }
        }
    }
    quoted
}

/// A person's resend (the console's webhooks page): the pusher pushes the events from the
/// asked `seq` up to the request again, then the request itself (an audit record), in order;
/// the log shows each attempt, a refused one with its status and next try. A resend naming
/// no event written yet is refused and records nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_pushes_the_events_again_from_the_seq_asked() {
    use protopay::api::webhook::{SEQ_HEADER, Webhook};
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<u64>>> = Arc::default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let refuse_first = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (log, refuse) = (seen.clone(), refuse_first.clone());
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let (log, tx, refuse) = (log.clone(), tx.clone(), refuse.clone());
            async move {
                let seq: u64 = headers[SEQ_HEADER].to_str().unwrap().parse().unwrap();
                if refuse.swap(false, std::sync::atomic::Ordering::SeqCst) {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                log.lock().unwrap().push(seq);
                let _ = tx.send(seq);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let sim = protopay_sim::Sim::new(
        protopay_sim::SimConfig::new(harness::APP, protopay::Md5Key::new(harness::KEY)),
        protopay::Clock::system(),
    );
    let engine = protopay::Engine::builder(harness::config("sim://", ([127, 0, 0, 1], 9).into()))
        .storage(protopay::storage::MemoryStorage::new())
        .transport(protopay_sim::SimTransport(sim.clone()))
        .build()
        .await
        .unwrap();
    for desc in ["one", "two"] {
        let protocol = protopay::NewProtocol {
            trans_desc: desc.into(),
            business_id: "B1".into(),
            cashier_type: protopay::wire::CashierType::Pos,
            idempotency_key: None,
        };
        engine.create_protocol(protocol).await.unwrap();
    }
    let last = engine.events_after(0, 100).await.unwrap().last().unwrap().seq;
    assert_eq!(last, 4);
    let webhook = Webhook::new(&url, protopay::Sensitive::new("webhook-secret-0123456789"), "hook")
        .unwrap()
        .retry(
            std::time::Duration::from_millis(10),
            std::time::Duration::from_millis(50),
        );
    let deliveries = webhook.deliveries();
    let pushing = tokio::spawn(webhook.run(engine.clone()));
    while rx.recv().await.unwrap() < last {}
    for bad in [0, 5] {
        assert!(engine.resend("hook", bad, "li.lei", "restored").await.is_err());
    }
    engine.resend("hook", 2, "li.lei", "receiver restored").await.unwrap();
    while rx.recv().await.unwrap() < last + 1 {}
    assert_eq!(*seen.lock().unwrap(), [1, 2, 3, 4, 2, 3, 4, 5]);
    let trail = engine.audit(None, 10).await.unwrap();
    assert_eq!(
        trail.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [5],
        "one audit record, the request"
    );
    // Every attempt, the refused one too: the last is logged once its answer is read, just
    // after the receiver saw it.
    while deliveries.newest_first().len() < 9 {
        tokio::task::yield_now().await;
    }
    let attempts = deliveries.newest_first();
    let refused = attempts.last().unwrap();
    assert_eq!((refused.seq, refused.status), (1, Some(503)));
    assert!(refused.next_retry.is_some());
    assert_eq!(attempts.first().map(|a| (a.seq, a.status)), Some((5, Some(200))));
    pushing.abort();
}
