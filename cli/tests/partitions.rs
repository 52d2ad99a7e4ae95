//! Pauses and partitions, as processes: three `protopay serve` on one PostgreSQL against the
//! simulator binary paying every request it receives (no deduplication), webhooks from all
//! three to one receiver, and a nemesis:
//!
//! - **a partition that heals late**: instance C reaches the payment system through a proxy
//!   that holds its requests while partitioned and delivers them when it heals — long after C
//!   gave up on them, and after the other instances found the orders "not found" past the
//!   grace period (as TCP delivers bytes written before the client gave up);
//! - **a frozen instance**: A is stopped (SIGSTOP) while commands pour into it, for longer
//!   than the lease and the grace period, then continued; meanwhile B and C must keep
//!   answering (the stall is measured and printed);
//! - **twins**: the same payout sent to two instances at once must get the same answer;
//! - **a database restart** (`PROTOPAY_PG_RESTART`, a command `.ci/run` exports; without it,
//!   every session of the store is ended by the server, which clients see alike) and a
//!   SIGKILLed instance started again.
//!
//! Then: each `outReqNo` paid at most once at the simulator, every acknowledged payout carried
//! out, the webhook receiver got every `seq`. The same run with the engines told that the
//! payment system deduplicates (the old resend rule) pays twice — so the test can fail.

mod support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::{Hook, OPERATE, Running, free_port, serve, simulator, terminate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// Seconds-scale timings, so that lease and grace pass within the test. Quiet polls double
/// the interval only up to 1 s: every step below waits at most 30 s, and with the default
/// ceiling (6 h) an order polled quietly a few times by the partitioned instance (whose
/// queries time out) was next polled by the others only after that (seen once in CI:
/// `APP001-part-3` not flagged within 30 s).
fn engine_settings(deduplicates: bool) -> String {
    format!(
        "payment_system_deduplicates = {deduplicates}\n\
         timeouts = {{ connect_ms = 500, request_ms = 1000 }}\n\
         poll = {{ grace_ms = 1500, claim_ms = 1200, submitted_ms = 300, processing_ms = 300, \
         attention_ms = 1000, max_interval_ms = 1000, idle_tick_ms = 200, send_deadline_ms = 500, \
         jitter_percent = 0, max_sends = 5 }}\n"
    )
}

/// A TCP proxy to the payment system that, while partitioned, holds what the client writes
/// and delivers it when the partition heals — whether or not the client is still waiting.
struct Proxy {
    addr: String,
    partitioned: watch::Sender<bool>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (partitioned, watching) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, mut healed) = (upstream.clone(), watching.clone());
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut client_r, mut client_w) = client.into_split();
                    let (mut server_r, mut server_w) = server.into_split();
                    let answers = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut server_r, &mut client_w).await;
                    });
                    let mut buf = vec![0; 64 * 1024];
                    while let Ok(n @ 1..) = client_r.read(&mut buf).await {
                        // Held while partitioned; delivered once it heals.
                        if healed.wait_for(|p| !*p).await.is_err() || server_w.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    // Keep our side open until the payment system has answered what it got.
                    let _ = answers.await;
                });
            }
        });
        Proxy { addr, partitioned }
    }

    fn partition(&self, on: bool) {
        self.partitioned.send_replace(on);
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn call(method: reqwest::Method, url: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = client().request(method, url).bearer_auth(OPERATE);
    if let Some(body) = body {
        request = request.json(&body);
    }
    match request.send().await {
        Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or_default()),
        Err(_) => (0, Value::Null),
    }
}

async fn post(url: &str, body: Value) -> (u16, Value) {
    call(reqwest::Method::POST, url, Some(body)).await
}

async fn get(url: &str) -> Value {
    call(reqwest::Method::GET, url, None).await.1
}

fn payout(trans_no: &str, out_req_no: &str) -> Value {
    json!({"transNo": trans_no, "outReqNo": out_req_no, "amount": "1.00", "outType": "OUT",
           "payeeName": "Li Lei", "payeeAccount": "6222020200112233445", "bankName": "ICBC Haidian",
           "bankCnaps": "102100000030"})
}

/// Wait for a condition the servers will reach, asking every 100 ms, for at most `within`.
async fn until<F: std::future::Future<Output = bool>>(what: &str, within: Duration, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not reached within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn signal(running: &Running, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &running.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The database goes away under the instances and comes back.
async fn restart_database(url: &str, schema: &str) {
    if let Ok(restart) = std::env::var("PROTOPAY_PG_RESTART") {
        let status = std::process::Command::new("sh")
            .args(["-c", &restart])
            .status()
            .unwrap();
        assert!(status.success(), "{restart}");
        eprintln!("PostgreSQL restarted (-m immediate)");
        return;
    }
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let cut = client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&schema],
        )
        .await
        .unwrap();
    eprintln!("PROTOPAY_PG_RESTART unset: the server ended all {cut} sessions of the store instead");
}

/// Every event's `seq`, from the database itself (seqs grow, but not one by one).
async fn seqs(url: &str, schema: &str) -> Vec<u64> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let rows = client
        .query(&format!("SELECT seq FROM {schema}.events ORDER BY seq"), &[])
        .await
        .unwrap();
    rows.iter()
        .map(|r| u64::try_from(r.get::<_, i64>(0)).unwrap())
        .collect()
}

/// What a run leaves behind.
struct Outcome {
    /// Payouts per `outReqNo` at the payment system.
    payouts: BTreeMap<String, u64>,
}

/// One run at a time: a run restarts the database under everything on it.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn run(deduplicates: bool) -> Option<Outcome> {
    let url = protopay_storage_postgres::testing::url()?;
    let _turn = ONE_AT_A_TIME.lock().await;
    let schema = protopay_storage_postgres::testing::schema("partitions");
    let separator = if url.contains('?') { '&' } else { '?' };
    let store = format!("{url}{separator}application_name={schema}");
    let sim = simulator();
    let simu = format!("http://{}", sim.addr);
    assert_eq!(
        post(&format!("{simu}/sim/faults"), json!({"no_dedupe": true})).await.0,
        200
    );
    let proxy = Proxy::start(sim.addr.clone()).await;
    let mut hook = Hook::start(0).await;
    let extra = format!("store = \"{store}\"\nschema = \"{schema}\"\n{}", hook.config());
    let engine = engine_settings(deduplicates);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let start = |i: usize| {
        let payment_system = if i == 2 { &proxy.addr } else { &sim.addr };
        serve(dirs[i].path(), payment_system, ports[i], &engine, &extra)
    };
    let mut servers: Vec<Option<Running>> = (0..3).map(|i| Some(start(i))).collect();
    let api: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
    let (a, b, c) = (&api[0], &api[1], &api[2]);

    // A funded protocol.
    let (_, p) = post(
        &format!("{a}/v1/protocols"),
        json!({"transDesc": "t", "businessId": "B1"}),
    )
    .await;
    let trans_no = p["transNo"].as_str().unwrap().to_owned();
    let deposit = json!({"transNo": trans_no, "outReqNo": "APP001-fund", "amount": "1000.00", "prodCatalog": "01"});
    assert_eq!(post(&format!("{a}/v1/inbound"), deposit).await.0, 200);
    post(
        &format!("{simu}/sim/inbound/APP001-fund/pay"),
        json!({"status": "SUCCESS"}),
    )
    .await;
    post(&format!("{simu}/sim/inbound/APP001-fund/arrive"), json!({})).await;
    let protocol = format!("{b}/v1/protocols/{trans_no}");
    until("the deposit is available", Duration::from_secs(30), || async {
        get(&protocol).await["ledger"]["available"] == "1000.00"
    })
    .await;
    let mut acknowledged = Vec::new();

    // 1. A partition that heals late: C's payouts are held while A and B find them "not
    //    found" past the grace period.
    proxy.partition(true);
    for n in 0..5 {
        let key = format!("APP001-part-{n}");
        let (status, _) = post(&format!("{c}/v1/outbound"), payout(&trans_no, &key)).await;
        assert_eq!(status, 200, "recorded, outcome unknown");
        acknowledged.push(key);
    }
    let flagged = format!("{a}/v1/orders?status=NEEDS_ATTENTION&limit=100");
    if deduplicates {
        // The old rule: someone resends once "not found" has lasted the grace period.
        until("a resend of a partitioned payout", Duration::from_secs(30), || async {
            let stats = get(&format!("{simu}/sim/stats")).await;
            stats["payouts"]
                .as_object()
                .is_some_and(|p| p.keys().any(|k| k.starts_with("APP001-part")))
        })
        .await;
    } else {
        until(
            "the partitioned payouts need attention",
            Duration::from_secs(30),
            || async { get(&flagged).await["items"].as_array().is_some_and(|o| o.len() >= 5) },
        )
        .await;
    }
    proxy.partition(false);

    // 2. Twins: the same payout to two instances at once gets the same answer.
    for n in 0..5 {
        let key = format!("APP001-twin-{n}");
        let body = payout(&trans_no, &key);
        let (to_a, to_b) = (format!("{a}/v1/outbound"), format!("{b}/v1/outbound"));
        let (one, two) = tokio::join!(post(&to_a, body.clone()), post(&to_b, body));
        assert_eq!(one.0, two.0, "twins answered alike: {one:?} / {two:?}");
        assert_eq!(one.1["outReqNo"], two.1["outReqNo"]);
        acknowledged.push(key);
    }

    // 3. A frozen instance: commands pour into A, A is stopped past lease and grace, and the
    //    others keep answering.
    let frozen = servers[0].as_ref().unwrap();
    let mut into_frozen = tokio::task::JoinSet::new();
    for n in 0..10 {
        let (a, body) = (a.clone(), payout(&trans_no, &format!("APP001-frozen-{n}")));
        into_frozen.spawn(async move { post(&format!("{a}/v1/outbound"), body).await });
    }
    signal(frozen, "STOP");
    let freeze = Instant::now();
    let mut stall = Duration::ZERO;
    let mut n = 0;
    while freeze.elapsed() < Duration::from_secs(4) {
        n += 1;
        let key = format!("APP001-during-{n}");
        let target = if n % 2 == 0 { b } else { c };
        let sent = Instant::now();
        let (status, body) = post(&format!("{target}/v1/outbound"), payout(&trans_no, &key)).await;
        stall = stall.max(sent.elapsed());
        assert_eq!(status, 200, "the others answer while A is frozen: {body}");
        acknowledged.push(key);
    }
    signal(frozen, "CONT");
    eprintln!(
        "A frozen for {:?}: the others answered {n} payouts, the slowest in {stall:?}",
        freeze.elapsed()
    );
    assert!(
        stall < Duration::from_secs(8),
        "one frozen instance stalled the others for {stall:?}"
    );
    while let Some(done) = into_frozen.join_next().await {
        let (status, body) = done.unwrap();
        if status == 200 {
            acknowledged.push(body["outReqNo"].as_str().unwrap().to_owned());
        }
    }

    // 4. The database restarts; an instance is killed and started again.
    restart_database(&url, &schema).await;
    drop(servers[1].take()); // SIGKILL
    servers[1] = Some(start(1));
    for n in 0..3 {
        let key = format!("APP001-after-{n}");
        let target = &api[n % 3];
        let (status, _) = post(&format!("{target}/v1/outbound"), payout(&trans_no, &key)).await;
        if status == 200 {
            acknowledged.push(key);
        }
    }

    // Quiet: every payout the payment system holds succeeds; every acknowledged payout is
    // carried out exactly as the payment system says.
    let orders = format!("{simu}/sim/orders");
    until(
        "every acknowledged payout reaches the payment system",
        Duration::from_secs(60),
        || async {
            let held = get(&orders).await;
            acknowledged.iter().all(|k| held.get(k).is_some())
        },
    )
    .await;
    for key in &acknowledged {
        post(
            &format!("{simu}/sim/outbound/{key}/settle"),
            json!({"status": "SUCCESS"}),
        )
        .await;
    }
    until("every payout settles", Duration::from_secs(60), || async {
        let mut all = true;
        for key in &acknowledged {
            all &= get(&format!("{b}/v1/orders/{key}")).await["order"]["status"] == "SUCCESS";
        }
        all
    })
    .await;
    let written = seqs(&url, &schema).await;
    let accepted = hook.accepted_through(*written.last().unwrap()).await;
    let seen: std::collections::BTreeSet<u64> = accepted.iter().copied().collect();
    assert!(
        written.iter().all(|s| seen.contains(s)),
        "the webhook receiver saw every seq"
    );
    let stats = get(&format!("{simu}/sim/stats")).await;
    let payouts = stats["payouts"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    for server in servers.into_iter().flatten() {
        assert!(terminate(server).success());
    }
    Some(Outcome { payouts })
}

/// The promise: however instances pause, partitions heal and the database restarts, each
/// payout is made at most once by a payment system that pays every request it receives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_never_pay_twice_through_pauses_and_partitions() {
    let Some(outcome) = run(false).await else { return };
    let twice: Vec<_> = outcome.payouts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "paid more than once: {twice:?}");
    eprintln!("{} payouts, each made once", outcome.payouts.len());
}

/// The same run with the old resend rule (the engines told the payment system deduplicates
/// when it does not): the partitioned payouts are paid twice once the partition heals. What
/// shows that the test above can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_resend_rule_pays_twice_through_a_partition() {
    let Some(outcome) = run(true).await else { return };
    let twice: Vec<_> = outcome
        .payouts
        .iter()
        .filter(|(k, n)| k.starts_with("APP001-part") && **n > 1)
        .collect();
    assert!(
        !twice.is_empty(),
        "the old rule was expected to pay a partitioned payout twice"
    );
}
