//! The operator's night: a payout stuck at `PROCESSING` needs attention; the CLI finds it,
//! shows it, resolves it; reconciliation reports the drift until the payment system agrees;
//! `/metrics` shows each step; and with the server stopped, the same commands work on the
//! store directly, where `check` finds a ledger and a listing count corrupted on purpose.

mod support;

use serde_json::{Value, json};
use support::{LI, OPERATE, WANG, args, call, free_port, operators, protopay, serve, simulator, terminate};

fn metric(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in\n{scrape}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_inspects_and_resolves_a_stuck_payout() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator();
    let simu = format!("http://{}", sim.addr);
    let port = free_port();
    let server = serve(dir.path(), &sim.addr, port, support::FAST_POLLS, &operators());
    let api = format!("http://127.0.0.1:{port}");
    let get = |path: String| call(reqwest::Method::GET, format!("{api}{path}"), None);

    let t = support::stuck_payout(&api, &simu, "Li Lei").await;
    let http = reqwest::Client::new();
    // What the bank does, through the simulator's admin routes.
    let at_the_bank = |path: String, status: &'static str| {
        let r = http
            .post(format!("{simu}/sim/{path}"))
            .json(&json!({ "status": status }))
            .send();
        async move { assert!(r.await.unwrap().status().is_success()) }
    };
    let scrape = |http: reqwest::Client| {
        let url = format!("{api}/metrics");
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    };
    // Read from the store's counts at the scrape: exact, never a 15 s old census.
    let stuck = scrape(http.clone()).await;
    assert_eq!(metric(&stuck, "protopay_orders{status=\"needs_attention\"}"), 1.0);
    assert_eq!(metric(&stuck, "protopay_orders{status=\"processing\"}"), 1.0);
    assert_eq!(metric(&stuck, "protopay_orders{status=\"success\"}"), 1.0);
    let refused = http
        .post(format!("{api}/protopay/notify/outbound"))
        .body("not an envelope")
        .send()
        .await
        .unwrap();
    assert!(!refused.status().is_success());

    let remote = |rest: &[&str]| {
        let mut a = args(&["--url", &api, "--token", OPERATE]);
        a.extend(args(rest));
        a
    };
    let listed = protopay(remote(&["orders", "--status", "needs-attention"])).await;
    assert_eq!(listed.code, 0);
    assert!(
        listed.stdout.contains("APP001-stuck") && listed.stdout.contains("PROCESSING !"),
        "{}",
        listed.stdout
    );
    let json_list = protopay(remote(&["orders", "--status", "needs-attention", "--json"])).await;
    let parsed: Value = serde_json::from_str(&json_list.stdout).unwrap();
    assert_eq!(parsed.as_array().map(Vec::len), Some(1));
    let shown = protopay(remote(&["show", "APP001-stuck"])).await;
    assert!(
        shown.stdout.contains("next poll") && shown.stdout.contains("funds reserved"),
        "{}",
        shown.stdout
    );
    let ledger = protopay(remote(&["protocol", &t])).await;
    assert!(ledger.stdout.contains("1,224.50"), "amounts grouped: {}", ledger.stdout);
    let as_person = |token: &str, rest: &[&str]| {
        let mut a = args(&["--url", &api, "--token", token]);
        a.extend(args(rest));
        a
    };
    let decide = [
        "resolve",
        "APP001-stuck",
        "--as",
        "failure",
        "--note",
        "bank: returned",
        "--yes",
    ];
    let reader = protopay(as_person(WANG, &decide)).await;
    assert_ne!(reader.code, 0, "a reading operator cannot decide: {}", reader.stderr);
    let resolved = protopay(as_person(LI, &decide)).await;
    assert_eq!(resolved.code, 0, "{}", resolved.stderr);
    assert!(resolved.stdout.contains("FAILURE"), "{}", resolved.stdout);
    // The decision names who made it, in the order's history (and so in the event feed).
    let history = get("/v1/orders/APP001-stuck".into()).await["history"].clone();
    let decision = history
        .as_array()
        .and_then(|h| h.iter().find(|e| e["kind"] == "OperatorResolved"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(decision["data"]["by"], "li.lei", "{history}");
    assert_eq!(decision["text"], "resolved by li.lei as FAILURE", "{decision}");
    // And the audit trail lists it: who, what, about which order, why.
    let trail = protopay(as_person(WANG, &["audit"])).await;
    assert_eq!(trail.code, 0, "{}", trail.stderr);
    let row = trail
        .stdout
        .lines()
        .find(|l| l.contains("APP001-stuck"))
        .unwrap_or_default();
    for part in ["li.lei", "resolved by li.lei as FAILURE", "bank: returned"] {
        assert!(row.contains(part), "{part}: {}", trail.stdout);
    }
    let drifting = protopay(remote(&["reconcile", &t])).await;
    assert_eq!(
        drifting.code, 1,
        "the payment system still holds the payout: {}",
        drifting.stdout
    );

    let scrape = scrape(http.clone()).await;
    assert_eq!(metric(&scrape, "protopay_orders{status=\"needs_attention\"}"), 0.0);
    assert_eq!(metric(&scrape, "protopay_orders{status=\"failure\"}"), 1.0);
    assert!(
        metric(
            &scrape,
            "protopay_callbacks_total{kind=\"outbound\",outcome=\"refused\"}"
        ) >= 1.0
    );
    assert!(
        metric(
            &scrape,
            "protopay_callbacks_total{kind=\"inbound-pay\",outcome=\"accepted\"}"
        ) >= 1.0
    );
    assert_eq!(
        metric(&scrape, "protopay_anomalies_total{kind=\"needs_attention\"}"),
        1.0
    );
    assert!(metric(&scrape, "protopay_anomalies_total{kind=\"balance_drift\"}") >= 1.0);
    assert_eq!(metric(&scrape, "protopay_reconciliations_total{result=\"drift\"}"), 1.0);
    assert_eq!(metric(&scrape, "protopay_protocols_drifting"), 1.0);
    assert_eq!(
        metric(
            &scrape,
            "protopay_orders_settled_total{direction=\"outbound\",status=\"failure\"}"
        ),
        1.0
    );
    assert!(metric(&scrape, "protopay_calls_total{endpoint=\"outquery\",outcome=\"ok\"}") >= 2.0);

    at_the_bank("outbound/APP001-stuck/settle".into(), "FAILURE").await;
    assert_eq!(
        protopay(remote(&["reconcile", &t])).await.code,
        0,
        "agreed once the payment system failed it too"
    );
    assert_eq!(protopay(remote(&["check"])).await.code, 0);
    let events = protopay(remote(&["events", "--json"])).await;
    assert!(events.stdout.lines().count() >= 5, "{}", events.stdout);
    assert!(terminate(server).success());

    // No server now: the same commands open the store directly.
    let config = dir.path().join("protopay.toml").display().to_string();
    let local = |rest: &[&str]| {
        let mut a = args(&["--config", &config]);
        a.extend(args(rest));
        a
    };
    let listed = protopay(local(&["orders", "--protocol", &t])).await;
    assert!(
        listed.stdout.contains("APP001-dep") && listed.stdout.contains("APP001-stuck"),
        "{}",
        listed.stdout
    );
    assert_eq!(protopay(local(&["check"])).await.code, 0);
    let shown = protopay(local(&["show", "APP001-stuck"])).await;
    assert!(
        shown.stdout.contains("resolved"),
        "the operator's decision is in the timeline: {}",
        shown.stdout
    );
    let ledger = protopay(local(&["protocol", &t, "--json"])).await;
    let ledger: Value = serde_json::from_str(&ledger.stdout).unwrap();
    assert_eq!(ledger["ledger"]["available"], "1234.50");
    assert_eq!(
        protopay(local(&["reconcile", "--all"])).await.code,
        0,
        "asks the simulator, still running"
    );
    let events = protopay(local(&["events", "--consumer", "local", "--json"])).await;
    assert!(events.stdout.lines().count() >= 5, "{}", events.stdout);
    let not_stuck = protopay(local(&[
        "resolve",
        "APP001-dep",
        "--as",
        "failure",
        "--note",
        "x",
        "--yes",
    ]))
    .await;
    assert_eq!(not_stuck.code, 1, "a settled order cannot be resolved");

    // A ledger corrupted on purpose: check exits 1 and names the protocol.
    {
        use protopay::storage::{Batch, Put, Storage};
        let store = protopay::sled::SledStorage::open(dir.path().join("data")).unwrap();
        let mut p = store.protocol(&t).await.unwrap().unwrap();
        p.value.ledger.available = protopay::Amount::parse("9999.00").unwrap();
        let batch = Batch {
            protocols: vec![Put {
                expected: Some(p.version),
                value: p.value,
            }],
            ..Default::default()
        };
        store.commit(batch).await.unwrap();
        store.close().await.unwrap();
    }
    let checked = protopay(local(&["check"])).await;
    assert_eq!(checked.code, 1, "{}", checked.stdout);
    assert!(checked.stdout.contains(&t), "{}", checked.stdout);
    assert!(!checked.stdout.contains("count says"), "{}", checked.stdout);

    // A listing count damaged behind the store's back (the gauge, and so the alert, would lie).
    {
        let db = sled::open(dir.path().join("data")).unwrap();
        let tree = db.open_tree("protopay").unwrap();
        tree.insert("n/needs_attention", &3u64.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let checked = protopay(local(&["check"])).await;
    assert_eq!(checked.code, 1, "{}", checked.stdout);
    assert!(
        checked
            .stdout
            .contains("the needs_attention count says 3 orders, but 0 are listed there"),
        "{}",
        checked.stdout
    );
}
