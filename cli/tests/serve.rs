//! `protopay serve` as a process: a clean stop under load, and webhook delivery.

mod support;

use serde_json::{Value, json};
use support::{Hook, OPERATE, free_port, serve, simulator, terminate};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn post(api: &str, path: &str, body: Value) -> reqwest::Result<reqwest::Response> {
    client()
        .post(format!("{api}{path}"))
        .bearer_auth(OPERATE)
        .json(&body)
        .send()
        .await
}

async fn protocol(api: &str) -> String {
    let p: Value = post(api, "/v1/protocols", json!({"transDesc": "t", "businessId": "B1"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    p["transNo"].as_str().unwrap().to_owned()
}

/// SIGTERM while commands pour in: every command answered 200 is in the store afterwards;
/// the others were refused whole (503 `shutting_down`, or never reached the server); the
/// process exits 0 and leaves the store closed and consistent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator();
    let port = free_port();
    let server = serve(dir.path(), &sim.addr, port, "", "");
    let api = format!("http://127.0.0.1:{port}");
    let trans_no = protocol(&api).await;

    let (answered, mut first_answers) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut load = tokio::task::JoinSet::new();
    for i in 0..200 {
        let (api, trans_no, answered) = (api.clone(), trans_no.clone(), answered.clone());
        load.spawn(async move {
            let out_req_no = format!("APP001-load-{i:03}");
            let body = json!({"transNo": trans_no, "outReqNo": out_req_no, "amount": "1.00", "prodCatalog": "01"});
            let reply = post(&api, "/v1/inbound", body).await;
            let _ = answered.send(());
            match reply {
                Ok(r) if r.status() == 200 => Some((out_req_no, true)),
                Ok(r) => {
                    let status = r.status().as_u16();
                    let body: Value = r.json().await.unwrap_or_default();
                    assert_eq!((status, body["code"].as_str()), (503, Some("shutting_down")), "{body}");
                    Some((out_req_no, false))
                }
                Err(_) => None, // the connection was refused or closed: never reached the engine
            }
        });
    }
    // Stop once some commands have been answered and many are still in flight.
    for _ in 0..20 {
        first_answers.recv().await;
    }
    let status = tokio::task::spawn_blocking(move || terminate(server)).await.unwrap();
    assert!(status.success(), "protopay serve exits 0 on SIGTERM: {status}");

    let mut acknowledged = Vec::new();
    while let Some(result) = load.join_next().await {
        if let Some((out_req_no, true)) = result.unwrap() {
            acknowledged.push(out_req_no);
        }
    }
    assert!(acknowledged.len() >= 20, "{} acknowledged", acknowledged.len());
    let store = protopay::sled::SledStorage::open(dir.path().join("data")).expect("the store was closed cleanly");
    let engine_view = protopay::storage::Storage::orders_of(&store, &trans_no).await.unwrap();
    let stored: std::collections::BTreeSet<String> =
        engine_view.iter().map(|o| o.value.out_req_no().to_owned()).collect();
    for key in &acknowledged {
        assert!(stored.contains(key), "{key} was answered 200 but is not stored");
    }
}

/// `GET` a `/v1` path as JSON.
async fn get(api: &str, path: &str) -> Value {
    let r = client()
        .get(format!("{api}{path}"))
        .bearer_auth(OPERATE)
        .send()
        .await
        .unwrap();
    r.json().await.unwrap()
}

/// Every event's `seq` delivered so far, read as a consumer of its own (they grow, but on
/// PostgreSQL not one by one).
async fn seqs(api: &str) -> Vec<u64> {
    let all = get(api, "/v1/events?consumer=audit").await;
    let events = all["events"].as_array().unwrap();
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

async fn deposit(api: &str, trans_no: &str, out_req_no: &str) {
    let body = json!({"transNo": trans_no, "outReqNo": out_req_no, "amount": "5.00", "prodCatalog": "01"});
    assert_eq!(post(api, "/v1/inbound", body).await.unwrap().status(), 200);
}

/// Push delivery: a host endpoint that fails its first requests still gets every event, in
/// `seq` order, once it heals; each body's HMAC-SHA256 verifies under the shared secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_gets_every_event_in_order_once_it_heals() {
    let mut hook = Hook::start(3).await;
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator();
    let port = free_port();
    let server = serve(dir.path(), &sim.addr, port, "", &hook.config());
    let api = format!("http://127.0.0.1:{port}");
    let trans_no = protocol(&api).await;
    deposit(&api, &trans_no, "APP001-hook-1").await;

    let written = seqs(&api).await;
    let accepted = hook.accepted_through(*written.last().unwrap()).await;
    assert_eq!(accepted, written, "each event accepted once, in order");
    let received = hook.received.lock().unwrap().clone();
    assert!(
        received.iter().all(|(_, verified, _)| *verified),
        "every signature verifies"
    );
    assert!(
        received.iter().all(|(_, _, epoch)| *epoch == 1),
        "one holder, one fencing epoch: {received:?}"
    );
    let firsts: Vec<u64> = received.iter().map(|(seq, _, _)| *seq).collect();
    assert_eq!(
        &firsts[..4],
        &[1, 1, 1, 1],
        "the first event is retried until the host heals"
    );
    assert!(
        firsts.windows(2).all(|w| w[0] <= w[1]),
        "never out of order: {firsts:?}"
    );
    assert!(terminate(server).success());
}

/// The sidecar on PostgreSQL: two servers on one schema serve the same protocols, both
/// configured to push events to one webhook — which gets them once each, in order — and
/// each stops cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_one_postgres() {
    let Some(url) = protopay_storage_postgres::testing::url() else {
        return;
    };
    let schema = protopay_storage_postgres::testing::schema("serve");
    let sim = simulator();
    let mut hook = Hook::start(2).await;
    let extra = format!("store = \"{url}\"\nschema = \"{schema}\"\n{}", hook.config());
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (port_a, port_b) = (free_port(), free_port());
    let a = serve(dir_a.path(), &sim.addr, port_a, "", &extra);
    let b = serve(dir_b.path(), &sim.addr, port_b, "", &extra);
    let trans_no = protocol(&format!("http://127.0.0.1:{port_a}")).await;
    let seen = get(
        &format!("http://127.0.0.1:{port_b}"),
        &format!("/v1/protocols/{trans_no}"),
    )
    .await;
    assert_eq!(seen["transNo"], trans_no.as_str(), "{seen}");
    // Both push the same consumer; the lease lets one at a time, so the host sees order.
    deposit(&format!("http://127.0.0.1:{port_b}"), &trans_no, "APP001-pg-1").await;
    deposit(&format!("http://127.0.0.1:{port_a}"), &trans_no, "APP001-pg-2").await;
    let written = seqs(&format!("http://127.0.0.1:{port_a}")).await;
    let accepted = hook.accepted_through(*written.last().unwrap()).await;
    assert_eq!(accepted, written, "each event accepted once, in order");
    let firsts: Vec<u64> = hook.received.lock().unwrap().iter().map(|(seq, _, _)| *seq).collect();
    assert!(
        firsts.windows(2).all(|w| w[0] <= w[1]),
        "never out of order: {firsts:?}"
    );
    // Whoever pushed, it stops; the other takes over under a higher fencing epoch.
    let epoch_before = hook.received.lock().unwrap().last().unwrap().2;
    assert!(terminate(a).success());
    deposit(&format!("http://127.0.0.1:{port_b}"), &trans_no, "APP001-pg-3").await;
    let now_written = seqs(&format!("http://127.0.0.1:{port_b}")).await;
    hook.accepted_through(*now_written.last().unwrap()).await;
    let epochs: Vec<u64> = hook.received.lock().unwrap().iter().map(|r| r.2).collect();
    assert!(
        epochs.windows(2).all(|w| w[0] <= w[1]),
        "epochs never go back: {epochs:?}"
    );
    assert!(*epochs.last().unwrap() >= epoch_before);
    assert!(terminate(b).success());
}

/// Pauses and partitions, defect 7: started while PostgreSQL was down, `serve` exited 1 with
/// a bare "no PostgreSQL connection". Now it waits with backoff, `/healthz` answers, `/readyz`
/// says why it is not ready (the cause, typed), and once the database answers it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_started_while_postgres_is_down_waits_for_it() {
    let Some(url) = protopay_storage_postgres::testing::url() else {
        return;
    };
    // The database's address as the server will know it: a port where nothing listens yet.
    let real = url
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .map(|port| format!("127.0.0.1:{port}"))
        .expect("a loopback PostgreSQL URL");
    let db_port = free_port();
    let down_url = url.replace(&real, &format!("127.0.0.1:{db_port}"));
    let schema = protopay_storage_postgres::testing::schema("down");
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator();
    let port = free_port();
    let extra = format!("store = \"{down_url}\"\nschema = \"{schema}\"\n");
    let config = support::write_config(dir.path(), &sim.addr, port, "", &extra);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_protopay"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("PROTOPAY_KEY", support::KEY)
        .env("PROTOPAY_API_TOKEN", OPERATE)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let api = format!("http://127.0.0.1:{port}");
    let mut running = support::Running {
        child,
        addr: api.clone(),
    };
    // The listener is up before the store; it says why it is not ready once a try failed.
    let why = loop {
        if let Ok(r) = client().get(format!("{api}/readyz")).send().await {
            assert_eq!(r.status(), 503);
            let why = r.text().await.unwrap();
            if why != "starting" {
                break why;
            }
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(why, "starting: PostgreSQL: connection refused");
    let health = client().get(format!("{api}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let command = post(&api, "/v1/protocols", json!({"transDesc": "t", "businessId": "B1"}))
        .await
        .unwrap();
    assert_eq!(command.status(), 503, "nothing is taken before the store answers");

    // The database comes up (a forwarder to the real one on that port).
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", db_port)).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let real = real.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&real).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let stdout = running.child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        line
    })
    .await
    .unwrap();
    assert!(line.starts_with("protopay listening on"), "{line}");
    let ready = client().get(format!("{api}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert!(terminate(running).success());
}
