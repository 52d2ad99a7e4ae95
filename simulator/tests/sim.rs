//! The simulator's behaviour: every call's replies, balances, callbacks and retries, faults,
//! determinism, and the HTTP binary.

use chrono::{TimeZone, Utc};
use protopay_engine::wire::{CODE_OK, Envelope};
use protopay_engine::{Clock, Md5Key};
use protopay_sim::{CallbackSink, Fault, Faults, Handled, Sim, SimConfig};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

const APP: &str = "APP001";
const KEY: &str = "k3y";
const TS: &str = "20261126120000123";

fn sim_with(seed: u64, auto: bool) -> Sim {
    let mut c = SimConfig::new(APP, Md5Key::new(KEY));
    c.seed = seed;
    c.auto = auto;
    c.callback_retry_ms = vec![1_000, 2_000];
    Sim::new(
        c,
        Clock::starting_at(Utc.with_ymd_and_hms(2026, 11, 26, 4, 0, 0).unwrap()),
    )
}

fn request(data: &Value, key: &str) -> Vec<u8> {
    Envelope::request(APP, data.to_string(), TS.into(), &Md5Key::new(key))
        .to_json()
        .into_bytes()
}

/// Call and return (code, data as JSON) after verifying the reply's sign.
fn call(sim: &Sim, name: &str, data: Value) -> (String, Value) {
    let Handled::Reply(body) = sim.handle(name, &request(&data, KEY)) else {
        panic!("no reply")
    };
    let env = Envelope::open(&body, APP, &Md5Key::new(KEY)).expect("replies are signed");
    let data = if env.data.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&env.data).unwrap()
    };
    (env.code.unwrap(), data)
}

fn ok(sim: &Sim, name: &str, data: Value) -> Value {
    let (code, data) = call(sim, name, data);
    assert_eq!(code, CODE_OK, "{name}: {data}");
    data
}

fn create(sim: &Sim, cashier: &str) -> String {
    let v = ok(
        sim,
        "create",
        json!({"channelType": "LFT", "transDesc": "deal", "businessId": "B1", "cashierType": cashier}),
    );
    v["transNo"].as_str().unwrap().to_owned()
}

fn prepay(sim: &Sim, trans_no: &str, key: &str, amount: &str) -> Value {
    ok(
        sim,
        "prepay",
        json!({"transNo": trans_no, "outReqNo": key, "amount": amount, "prodCatalog": "01",
        "outSuccessNotifyUrl": "http://h/n/inbound-pay", "outArrivedNotifyUrl": "http://h/n/inbound-arrival"}),
    )
}

fn outpay_data(trans_no: &str, key: &str, amount: &str) -> Value {
    json!({"transNo": trans_no, "outReqNo": key, "amount": amount, "channelType": "LFT", "outNotifyUrl": "http://h/n/outbound",
        "bankAccName": "李四", "bankAccNum": "6222020200112233445", "bankName": "ICBC", "bankCnaps": "102100000030", "outType": "OUT"})
}

fn funded(sim: &Sim, amount: &str) -> String {
    let t = create(sim, "POS");
    prepay(sim, &t, "APP001-fund", amount);
    sim.pay("APP001-fund", true).unwrap();
    sim.arrive("APP001-fund").unwrap();
    t
}

#[test]
fn every_call_success_and_error_replies() {
    let sim = sim_with(1, false);
    // Bad sign, wrong appId, garbage: refused with non-0000 codes, still signed.
    let Handled::Reply(body) = sim.handle("find", &request(&json!({"transNo": "T1"}), "wrong")) else {
        panic!()
    };
    let env = Envelope::open(&body, APP, &Md5Key::new(KEY)).unwrap();
    assert_eq!(env.code.as_deref(), Some("EP10001"));
    let Handled::Reply(body) = sim.handle("find", b"not json") else {
        panic!()
    };
    assert_eq!(
        Envelope::open(&body, APP, &Md5Key::new(KEY)).unwrap().code.as_deref(),
        Some("EP10003")
    );
    let other_app = Envelope::request("APP999", "{}".into(), TS.into(), &Md5Key::new(KEY)).to_json();
    let Handled::Reply(body) = sim.handle("find", other_app.as_bytes()) else {
        panic!()
    };
    assert_eq!(
        Envelope::open(&body, APP, &Md5Key::new(KEY)).unwrap().code.as_deref(),
        Some("EP10002")
    );

    // create / find
    let pos = create(&sim, "POS");
    let qp = create(&sim, "QP");
    assert_eq!(ok(&sim, "find", json!({"transNo": pos}))["amount"], "0.00");
    assert_eq!(call(&sim, "find", json!({"transNo": "T404"})).0, "EP20001");
    assert_eq!(
        call(
            &sim,
            "create",
            json!({"channelType": "LFT", "transDesc": "", "businessId": "B1"})
        )
        .0,
        "EP10003"
    );

    // prepay: POS code, QP cashier page, unknown protocol, bad outReqNo, bad amount
    let v = prepay(&sim, &pos, "APP001-in-1", "100.00");
    assert_eq!(v["posCode"].as_str().unwrap().len(), 6);
    assert_eq!(v["payStatus"], "UNPAID");
    let v = prepay(&sim, &qp, "APP001-in-2", "1.00");
    assert!(v["cashierUrl"].as_str().unwrap().starts_with("https://"));
    let bad = |key: &str, amount: &str, t: &str| {
        call(
            &sim,
            "prepay",
            json!({"transNo": t, "outReqNo": key, "amount": amount, "prodCatalog": "01", "outSuccessNotifyUrl": "u"}),
        )
        .0
    };
    assert_eq!(bad("APP001-in-3", "1.00", "T404"), "EP20001");
    assert_eq!(bad("OTHER-1", "1.00", &pos), "EP10003");
    assert_eq!(bad("APP001-in-3", "0.00", &pos), "EP10003");
    assert_eq!(bad("APP001-in-3", "1.001", &pos), "EP10003");

    // inquery / posclose
    assert_eq!(
        ok(&sim, "inquery", json!({"outReqNo": "APP001-in-1"}))["arrivedStatus"],
        "01"
    );
    assert_eq!(call(&sim, "inquery", json!({"outReqNo": "APP001-nope"})).0, "EP20002");
    assert_eq!(
        ok(&sim, "posclose", json!({"outReqNo": "APP001-in-1"}))["result"],
        "true"
    );
    assert_eq!(call(&sim, "posclose", json!({"outReqNo": "APP001-nope"})).0, "EP20002");

    // outpay / outquery: over balance refused
    assert_eq!(
        call(&sim, "outpay", outpay_data(&pos, "APP001-out-1", "1.00")).0,
        "EP30001"
    );
    assert_eq!(call(&sim, "outquery", json!({"outReqNo": "APP001-out-1"})).0, "EP20003");
    let funded = funded(&sim, "10.00");
    let v = ok(&sim, "outpay", outpay_data(&funded, "APP001-out-2", "4.00"));
    assert_eq!(v["payStatus"], "PROCESSING");
    assert_eq!(
        ok(&sim, "outquery", json!({"outReqNo": "APP001-out-2"}))["payOrderNo"],
        v["payOrderNo"]
    );
    assert_eq!(
        call(&sim, "outpay", outpay_data(&funded, "APP001-out-3", "6.01")).0,
        "EP30001"
    );
    assert_eq!(
        call(&sim, "outpay", outpay_data("T404", "APP001-out-4", "1.00")).0,
        "EP20001"
    );

    // querybankcnaps: real branch names, 12-digit codes
    let found = ok(&sim, "querybankcnaps", json!({"bankNameKeyWord": "海淀"}));
    let list = found.as_array().unwrap();
    assert!(list.len() >= 3);
    assert!(list.iter().all(|e| e["bankCnaps"].as_str().unwrap().len() == 12));
    assert_eq!(
        call(&sim, "querybankcnaps", json!({"bankNameKeyWord": ""})).0,
        "EP10003"
    );
}

#[test]
fn balances_after_a_full_story() {
    let sim = sim_with(1, false);
    let t = create(&sim, "POS");
    prepay(&sim, &t, "APP001-in-1", "100.00");
    prepay(&sim, &t, "APP001-in-2", "50.00");
    sim.pay("APP001-in-1", true).unwrap();
    sim.pay("APP001-in-2", true).unwrap();
    sim.arrive("APP001-in-1").unwrap();
    let b = sim.balances(&t).unwrap();
    assert_eq!(
        (b.available.to_string(), b.in_transit.to_string()),
        ("100.00".into(), "50.00".into())
    );
    ok(&sim, "outpay", outpay_data(&t, "APP001-out-1", "30.00"));
    ok(&sim, "outpay", outpay_data(&t, "APP001-out-2", "20.00"));
    sim.settle("APP001-out-1", true).unwrap();
    sim.settle("APP001-out-2", false).unwrap();
    let b = sim.balances(&t).unwrap();
    assert_eq!(
        (
            b.available.to_string(),
            b.in_transit.to_string(),
            b.reserved.to_string(),
            b.paid_out.to_string()
        ),
        ("70.00".into(), "50.00".into(), "0.00".into(), "30.00".into())
    );
    let view = ok(&sim, "find", json!({"transNo": t}));
    assert_eq!(
        (
            view["amount"].as_str(),
            view["onpassageAmount"].as_str(),
            view["outAmount"].as_str()
        ),
        (Some("70.00"), Some("50.00"), Some("30.00"))
    );
    assert!(sim.arrive("APP001-in-1").is_err(), "arrives once");
    assert!(sim.settle("APP001-out-1", false).is_err(), "settles once");
}

/// A sink that fails the first `fail` deliveries, then acknowledges; records every body.
#[derive(Default)]
struct Recorder {
    fail: Mutex<u32>,
    got: Mutex<Vec<(String, Value)>>,
}

#[async_trait::async_trait]
impl CallbackSink for Recorder {
    async fn deliver(&self, url: &str, body: Vec<u8>) -> Option<(u16, String)> {
        let env = Envelope::open(&body, APP, &Md5Key::new(KEY)).expect("callbacks are signed");
        self.got
            .lock()
            .unwrap()
            .push((url.to_owned(), serde_json::from_str(&env.data).unwrap()));
        let mut fail = self.fail.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            return Some((500, "busy".into()));
        }
        Some((200, "SUCCESS".into()))
    }
}

#[tokio::test(start_paused = true)]
async fn callbacks_retry_until_success_then_stop() {
    let sim = sim_with(1, false);
    let t = create(&sim, "POS");
    prepay(&sim, &t, "APP001-in-1", "5.00");
    sim.pay("APP001-in-1", true).unwrap();
    let sink = Recorder {
        fail: Mutex::new(2),
        ..Default::default()
    };
    sim.deliver_due(&sink).await;
    tokio::time::advance(std::time::Duration::from_millis(1_000)).await;
    sim.deliver_due(&sink).await;
    tokio::time::advance(std::time::Duration::from_millis(2_000)).await;
    sim.deliver_due(&sink).await;
    tokio::time::advance(std::time::Duration::from_secs(60)).await;
    sim.deliver_due(&sink).await;
    let got = sink.got.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "two failures, one success, then no more");
    assert!(
        got.iter()
            .all(|(url, v)| url == "http://h/n/inbound-pay" && v["payStatus"] == "SUCCESS")
    );
    let stats = sim.stats();
    assert_eq!((stats.callbacks_sent, stats.callbacks_acknowledged), (3, 1));
    assert_eq!(sim.pending_callbacks(), 0);

    // Out of retries: abandoned.
    prepay(&sim, &t, "APP001-in-2", "5.00");
    sim.pay("APP001-in-2", false).unwrap();
    let sink = Recorder {
        fail: Mutex::new(100),
        ..Default::default()
    };
    for _ in 0..5 {
        sim.deliver_due(&sink).await;
        tokio::time::advance(std::time::Duration::from_secs(10)).await;
    }
    assert_eq!(sim.stats().callbacks_abandoned, 1);
}

#[tokio::test(start_paused = true)]
async fn callback_faults_are_observed() {
    let sim = sim_with(1, false);
    let t = create(&sim, "POS");
    for i in 0..4 {
        prepay(&sim, &t, &format!("APP001-in-{i}"), "1.00");
    }
    sim.set_faults(Faults {
        delay_ms: 5_000,
        ..Faults::default()
    });
    sim.with_faults(|f| f.drop_callback = Fault::once(1));
    sim.pay("APP001-in-0", true).unwrap();
    sim.with_faults(|f| f.reorder_callback = Fault::once(1));
    sim.pay("APP001-in-1", true).unwrap();
    sim.with_faults(|f| f.duplicate_callback = Fault::once(1));
    sim.pay("APP001-in-2", true).unwrap();
    sim.pay("APP001-in-3", true).unwrap();
    let sink = Recorder::default();
    sim.deliver_due(&sink).await;
    tokio::time::advance(std::time::Duration::from_secs(6)).await;
    sim.deliver_due(&sink).await;
    let order: Vec<String> = sink
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|(_, v)| v["outReqNo"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sim.stats().callbacks_dropped, 1);
    assert!(!order.contains(&"APP001-in-0".to_owned()), "dropped: {order:?}");
    assert_eq!(
        order.iter().filter(|k| *k == "APP001-in-2").count(),
        2,
        "duplicated: {order:?}"
    );
    assert_eq!(
        order.last().map(String::as_str),
        Some("APP001-in-1"),
        "reordered after later ones: {order:?}"
    );
}

#[test]
fn request_faults_are_observed() {
    let sim = sim_with(1, false);
    let t = funded(&sim, "10.00");
    let body = request(&outpay_data(&t, "APP001-out-1", "1.00"), KEY);
    sim.with_faults(|f| f.http_500 = Fault::once(1));
    assert_eq!(sim.handle("outpay", &body), Handled::ServerError);
    assert!(sim.outbound_status("APP001-out-1").is_none(), "a 500 handles nothing");
    sim.with_faults(|f| f.refuse_connection = Fault::once(1));
    assert_eq!(sim.handle("outpay", &body), Handled::ConnectionRefused);
    sim.with_faults(|f| f.timeout_after_commit = Fault::once(1));
    assert_eq!(sim.handle("outpay", &body), Handled::TimeoutAfterCommit);
    assert!(
        sim.outbound_status("APP001-out-1").is_some(),
        "committed though never answered"
    );
    sim.with_faults(|f| f.corrupt_sign = Fault::once(1));
    let Handled::Reply(reply) = sim.handle("outquery", &request(&json!({"outReqNo": "APP001-out-1"}), KEY)) else {
        panic!()
    };
    assert!(
        Envelope::open(&reply, APP, &Md5Key::new(KEY)).is_err(),
        "corrupted sign must not verify"
    );
    // With dedupe (the default) a repeat returns the same payout.
    assert_eq!(
        ok(&sim, "outpay", outpay_data(&t, "APP001-out-1", "1.00"))["payStatus"],
        "PROCESSING"
    );
    assert_eq!(sim.stats().payouts["APP001-out-1"], 1);
}

#[test]
fn no_dedupe_mode_double_counts_repeated_payouts() {
    let sim = sim_with(1, false);
    let t = funded(&sim, "10.00");
    sim.with_faults(|f| f.no_dedupe = true);
    ok(&sim, "outpay", outpay_data(&t, "APP001-out-1", "3.00"));
    ok(&sim, "outpay", outpay_data(&t, "APP001-out-1", "3.00"));
    assert_eq!(sim.stats().payouts["APP001-out-1"], 2);
    assert_eq!(
        sim.balances(&t).unwrap().reserved.to_string(),
        "6.00",
        "the money really left twice"
    );
}

async fn run_auto(seed: u64) -> (std::collections::BTreeMap<String, String>, Vec<(String, Value)>) {
    let sim = sim_with(seed, true);
    let t = create(&sim, "POS");
    for i in 0..6 {
        prepay(&sim, &t, &format!("APP001-in-{i}"), "10.00");
    }
    let sink = Arc::new(Recorder::default());
    let bg = sim.spawn(sink.clone());
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    for i in 0..3 {
        let (code, _) = call(&sim, "outpay", outpay_data(&t, &format!("APP001-out-{i}"), "5.00"));
        assert!(code == CODE_OK || code == "EP30001");
    }
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    bg.stop().await;
    let got = sink.got.lock().unwrap().clone();
    (sim.order_states(), got)
}

#[tokio::test(start_paused = true)]
async fn same_seed_same_run() {
    let a = run_auto(7).await;
    let b = run_auto(7).await;
    assert_eq!(a, b);
    assert!(
        a.0.values()
            .all(|s| s == "SUCCESS+arrived" || s == "FAILURE" || s == "SUCCESS"),
        "{:?}",
        a.0
    );
    let c = run_auto(8).await;
    assert_ne!(a.1, c.1, "another seed, another run");
}

/// The `protopay-sim` binary, spoken to over real loopback HTTP.
#[tokio::test]
async fn http_binary_serves_python_style_requests_and_survives_bad_ones() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_protopay-sim"))
        .args(["--listen", "127.0.0.1:0", "--app-id", APP, "--key", KEY, "--seed", "3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();
    let http = reqwest::Client::new();

    // Exactly what CPython's json.dumps produces (", " separators, \uXXXX escapes), signed by hashlib.
    let python = r#"{"appId": "APP001", "data": "{\"bankNameKeyWord\": \"\\u6d77\\u6dc0\"}", "sign": "f49afe3685d52f02c54d0d9938280d9c", "timestamp": "20261126120000123"}"#;
    let r = http
        .post(format!("{base}/api/protocol/querybankcnaps"))
        .body(python)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let env = Envelope::open(&r.bytes().await.unwrap(), APP, &Md5Key::new(KEY)).unwrap();
    assert_eq!(env.code.as_deref(), Some(CODE_OK));
    assert!(env.data.contains("海淀"));

    // Bad requests: clear errors, never a crash.
    let garbage: &[(&str, &str)] = &[
        ("/api/protocol/create", "{{{{"),
        ("/api/protocol/nonsense", "{}"),
        ("/sim/inbound/APP001-x/pay", "{\"status\":\"MAYBE\"}"),
        ("/sim/inbound/APP001-x/pay", "not json"),
        ("/sim/outbound/APP001-x/settle", "{\"status\":\"SUCCESS\"}"),
        ("/sim/faults", "{\"drop_callback\": 3}"),
    ];
    for (path, body) in garbage {
        let r = http.post(format!("{base}{path}")).body(*body).send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert!(status == 200 || (400..500).contains(&status), "{path}: {status}");
        if path.starts_with("/api/") {
            let env = Envelope::open(text.as_bytes(), APP, &Md5Key::new(KEY)).unwrap();
            assert_ne!(env.code.as_deref(), Some(CODE_OK), "{path}");
        } else {
            assert!(text.contains("error"), "{path}: {text}");
        }
    }
    let big = vec![b'x'; 100 * 1024];
    let r = http
        .post(format!("{base}/api/protocol/create"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    // The admin API works and the server is still up.
    let r = http
        .post(format!("{base}/sim/faults"))
        .body(r#"{"no_dedupe": true, "http_500": {"once": 1}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let stats: Value = http
        .get(format!("{base}/sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(stats["requests"].as_u64().unwrap() >= 3);
    let r = http
        .post(format!("{base}/sim/fail-next/outpay"))
        .body(r#""connection_refused""#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{base}/sim/fail-next/nowhere"))
        .body(r#""connection_refused""#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let log: Value = http
        .get(format!("{base}/sim/received"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        log.as_array()
            .is_some_and(|l| l.iter().any(|r| r["endpoint"] == "querybankcnaps")),
        "{log}"
    );

    // Ctrl-C shuts it down cleanly.
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "protopay-sim stopped");
}

#[test]
fn aimed_faults_hit_the_next_call_to_their_endpoint_and_the_log_shows_what_was_handled() {
    use protopay_engine::wire::Endpoint;
    use protopay_sim::Aimed;
    let sim = sim_with(5, false);
    let t = create(&sim, "POS");
    sim.fail_next(Endpoint::Outpay, Aimed::ServerError);
    sim.fail_next(Endpoint::Outpay, Aimed::ConnectionRefused);
    // Another endpoint is not affected.
    prepay(&sim, &t, "APP001-in-1", "10.00");
    let out = request(&outpay_data(&t, "APP001-out-1", "1.00"), KEY);
    assert_eq!(sim.handle("outpay", &out), Handled::ServerError);
    assert_eq!(sim.handle("outpay", &out), Handled::ConnectionRefused);
    assert!(
        matches!(sim.handle("outpay", &out), Handled::Reply(_)),
        "one-shots are spent"
    );
    assert_eq!(
        sim.handled(Endpoint::Outpay, "APP001-out-1"),
        1,
        "only the last one reached the books"
    );
    assert_eq!(sim.handled(Endpoint::Prepay, "APP001-in-1"), 1);
    let log: Vec<_> = sim.received().into_iter().map(|r| (r.endpoint, r.handled)).collect();
    let expected = [
        ("create", true),
        ("prepay", true),
        ("outpay", false),
        ("outpay", false),
        ("outpay", true),
    ];
    assert_eq!(log, expected.map(|(e, h)| (e.to_owned(), h)));
}
