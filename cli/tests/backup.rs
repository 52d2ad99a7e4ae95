//! Backups end to end: `protopay serve` on sled takes payouts from four clients at once while
//! `protopay backup --url` copies its store; the copy is restored with `protopay restore` into
//! another configuration, where `protopay check` finds every invariant holding and every
//! payout acknowledged before the backup began.

mod support;

use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use support::{OPERATE, args, call, free_port, protopay, serve, simulator, terminate, until, write_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_and_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator();
    let simu = format!("http://{}", sim.addr);
    let port = free_port();
    let server = serve(dir.path(), &sim.addr, port, "", "");
    let api = format!("http://127.0.0.1:{port}");
    let post = |path: &str, body: Value| call(reqwest::Method::POST, format!("{api}{path}"), Some(body));
    let get = |path: String| call(reqwest::Method::GET, format!("{api}{path}"), None);

    let t = post("/v1/protocols", json!({"transDesc": "backups", "businessId": "B1"})).await["transNo"]
        .as_str()
        .unwrap()
        .to_owned();
    let deposit = json!({"transNo": t, "outReqNo": "APP001-dep", "amount": "100000.00", "prodCatalog": "01"});
    post("/v1/inbound", deposit).await;
    let http = reqwest::Client::new();
    for step in ["pay", "arrive"] {
        let done = http
            .post(format!("{simu}/sim/inbound/APP001-dep/{step}"))
            .json(&json!({ "status": "SUCCESS" }))
            .send()
            .await
            .unwrap();
        assert!(done.status().is_success());
    }
    until(&api, "the deposit arrives", async || {
        get("/v1/orders/APP001-dep".into()).await["order"]["arrived"] == json!(true)
    })
    .await;

    // Four clients posting payouts until told to stop; each remembers what was acknowledged.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let (api, t, acked, stopped) = (api.clone(), t.clone(), acked.clone(), stopped.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    if *stopped.borrow() {
                        return;
                    }
                    let out_req_no = format!("APP001-pay-{client}-{i}");
                    let payout = json!({"transNo": t, "outReqNo": out_req_no, "amount": "1.00", "outType": "OUT",
                        "payeeName": "Li Lei", "payeeAccount": "6222020200112233445", "bankName": "ICBC",
                        "bankCnaps": "102100000030"});
                    call(reqwest::Method::POST, format!("{api}/v1/outbound"), Some(payout)).await;
                    acked.lock().unwrap().push(out_req_no);
                }
            })
        })
        .collect();
    // Let the load start, on the clients' own word.
    while acked.lock().unwrap().len() < 20 {
        tokio::task::yield_now().await;
    }
    let before: Vec<String> = acked.lock().unwrap().clone();
    let copy = dir.path().join("backup");
    let taken = protopay(args(&[
        "backup",
        "--url",
        &api,
        "--token",
        OPERATE,
        "--json",
        "--to",
        copy.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(taken.code, 0, "{}", taken.stderr);
    let report: Value = serde_json::from_str(&taken.stdout).unwrap();
    stop.send(true).unwrap();
    for c in clients {
        c.await.unwrap();
    }
    let after = acked.lock().unwrap().len();
    assert!(after > before.len(), "payouts went on around the backup");
    assert!(report["keys"].as_u64().unwrap() > 0, "{report}");

    // The same target again is refused: a backup never overwrites.
    let again = protopay(args(&[
        "backup",
        "--url",
        &api,
        "--token",
        OPERATE,
        "--to",
        copy.to_str().unwrap(),
    ]))
    .await;
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("backup_target_exists"), "{}", again.stderr);
    assert_eq!(terminate(server).code(), Some(0));

    // Restore into another configuration's (absent) store, then check it.
    let elsewhere = tempfile::tempdir().unwrap();
    let config = write_config(elsewhere.path(), &sim.addr, free_port(), "", "");
    let config = config.to_str().unwrap();
    let restored = protopay(args(&["restore", "--config", config, "--from", copy.to_str().unwrap()])).await;
    assert_eq!(restored.code, 0, "{}{}", restored.stdout, restored.stderr);
    assert!(restored.stdout.contains("every invariant holds"), "{}", restored.stdout);
    let checked = protopay(args(&["check", "--config", config])).await;
    assert_eq!(checked.code, 0, "{}{}", checked.stdout, checked.stderr);
    for out_req_no in before.iter().step_by(5) {
        let shown = protopay(args(&["show", out_req_no, "--config", config])).await;
        assert_eq!(
            shown.code, 0,
            "{out_req_no} was acknowledged before the backup: {}",
            shown.stderr
        );
    }
    // A second restore would replace a store: refused.
    let twice = protopay(args(&["restore", "--config", config, "--from", copy.to_str().unwrap()])).await;
    assert_ne!(twice.code, 0);
    assert!(twice.stderr.contains("holds a store"), "{}", twice.stderr);
}

/// On PostgreSQL the database's own backup is the backup: a `pg_dump` of the store's schema,
/// restored into a fresh database, opens and checks clean with every order in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_dump_restored_into_a_fresh_database_opens_and_checks_clean() {
    use protopay_storage_postgres::testing;
    let Some(url) = testing::url() else { return };
    let bin = testing::binaries().expect("PostgreSQL's binaries, as for the server");
    let schema = testing::schema("dump");
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator();
    let port = free_port();
    let server = serve(
        dir.path(),
        &sim.addr,
        port,
        "",
        &format!("store = \"{url}\"\nschema = \"{schema}\"\n"),
    );
    let api = format!("http://127.0.0.1:{port}");
    let post = |path: &str, body: Value| call(reqwest::Method::POST, format!("{api}{path}"), Some(body));
    let t = post("/v1/protocols", json!({"transDesc": "dumped", "businessId": "B1"})).await["transNo"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..5 {
        let deposit =
            json!({"transNo": t, "outReqNo": format!("APP001-dump-{i}"), "amount": "10.00", "prodCatalog": "01"});
        post("/v1/inbound", deposit).await;
    }
    assert_eq!(terminate(server).code(), Some(0));

    let dump = dir.path().join("store.dump");
    let dumped = std::process::Command::new(bin.join("pg_dump"))
        .args(["--format=custom", "--schema", &schema, "--file"])
        .arg(&dump)
        .arg(format!("--dbname={url}"))
        .status()
        .unwrap();
    assert!(dumped.success());
    let fresh = format!("restored_{}", schema.to_lowercase());
    let (admin, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    admin.batch_execute(&format!("CREATE DATABASE {fresh}")).await.unwrap();
    let (before_query, query) = url.split_once('?').map_or((url.as_str(), ""), |(b, q)| (b, q));
    let base = before_query.rsplit_once('/').unwrap().0;
    let fresh_url = format!("{base}/{fresh}{}{query}", if query.is_empty() { "" } else { "?" });
    let restored = std::process::Command::new(bin.join("pg_restore"))
        .args(["--no-owner", "--exit-on-error"])
        .arg(format!("--dbname={fresh_url}"))
        .arg(&dump)
        .status()
        .unwrap();
    assert!(restored.success());

    let elsewhere = tempfile::tempdir().unwrap();
    let config = write_config(
        elsewhere.path(),
        &sim.addr,
        free_port(),
        "",
        &format!("store = \"{fresh_url}\"\nschema = \"{schema}\"\n"),
    );
    let config = config.to_str().unwrap();
    let checked = protopay(args(&["check", "--config", config])).await;
    assert_eq!(checked.code, 0, "{}{}", checked.stdout, checked.stderr);
    assert!(
        checked
            .stdout
            .contains("1 protocols, 5 orders checked: every invariant holds"),
        "{}",
        checked.stdout
    );
    let shown = protopay(args(&["show", "APP001-dump-4", "--config", config])).await;
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    admin
        .batch_execute(&format!("DROP DATABASE {fresh} WITH (FORCE)"))
        .await
        .unwrap();
}
