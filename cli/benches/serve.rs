//! End to end under load: `protopay serve` as hosts run it, beside its floor in the same run.
//!
//! Each scenario starts `protopay serve` processes on one store, with the simulator (in this
//! process) as the payment system, funds 64 protocols, then:
//! - **commands**: 24 keep-alive clients post small payouts round-robin over the instances
//!   for 6 s (each payout is an `outpay` to the simulator and three commits);
//! - **callbacks**: the simulator settles every payout and signs its callback; the callbacks
//!   are replayed by 24 clients round-robin over the instances;
//! - on PostgreSQL, how many backends wait on a lock meanwhile (sampled every 20 ms);
//! - on sled, payouts at a fixed 500 per second for 4 s (open loop): their latency, beside
//!   its floor — three appends of a commit's size, each with its `fdatasync`, at the same
//!   rate on the same file system.
//!
//! For the commands phase it also reports what each payout cost: CPU of the PostgreSQL
//! server's processes and of the `serve` processes (from `/proc`), and the database's commits
//! and WAL syncs (`pg_stat_database`, `pg_stat_wal`) — the figures that say how far more
//! instances on their own machines would go, which a 2-core machine cannot show.
//!
//! Scenarios: 1 and 3 instances on one PostgreSQL, 1 on sled. The floor is a bare axum +
//! tokio-postgres service on the same database writing the same rows per request (three
//! transactions per payout, one per callback; no payment system call), under the same load.
//! Every scenario runs `PROTOPAY_BENCH_RUNS` times (default 3), alternating; the medians with
//! their min–max are printed last. `PROTOPAY_BENCH_ONLY=sled` (any part of a scenario's name:
//! `floor`, `pg`, `x3`, `sled`; several with commas, `floor,pg`) runs only those.
//!
//! `cargo bench -p protopay-cli --bench serve` (PostgreSQL: `PROTOPAY_PG_URL`, or a throwaway
//! cluster from the machine's server binaries).

#[path = "../tests/support/mod.rs"]
mod support;

use axum::extract::State;
use axum::routing::post;
use protopay_engine::{Clock, Md5Key};
use protopay_sim::{CallbackSink, HttpSink, Sim, SimConfig};
use protopay_storage_postgres::testing::LockWaits;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{KEY, OPERATE, free_port, serve, terminate};

const CLIENTS: usize = 24;
const PROTOCOLS: usize = 64;
const COMMANDS_FOR: Duration = Duration::from_secs(6);
const FIXED_RATE: u32 = 500;
const FIXED_FOR: Duration = Duration::from_secs(4);

/// The simulator, served over HTTP from this process.
struct PaymentSystem {
    sim: Sim,
    addr: String,
    background: Option<protopay_sim::Background>,
}

impl PaymentSystem {
    async fn start() -> PaymentSystem {
        let sim = Sim::new(SimConfig::new("APP001", Md5Key::new(KEY)), Clock::system());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let options = protopay_sim::server::ServerOptions {
            hold: Duration::from_secs(120),
        };
        tokio::spawn(protopay_sim::server::serve(
            listener,
            sim.clone(),
            options,
            std::future::pending(),
        ));
        let sink = HttpSink::new(Duration::from_secs(5)).expect("client");
        let background = Some(sim.spawn(Arc::new(sink)));
        PaymentSystem { sim, addr, background }
    }

    /// Settle every payout and take the signed callbacks it would send, instead of sending
    /// them: `(url, body)`.
    async fn settled_callbacks(&mut self, payouts: &[String]) -> Vec<(String, Vec<u8>)> {
        if let Some(b) = self.background.take() {
            b.stop().await;
        }
        for key in payouts {
            // Every payout answered 200 was sent (its command waits for the send).
            self.sim.settle(key, true).expect("settle");
        }
        let taken = Arc::new(Taken::default());
        self.sim.deliver_due(taken.as_ref()).await;
        let callbacks = std::mem::take(&mut *taken.0.lock().expect("lock"));
        let sink = HttpSink::new(Duration::from_secs(5)).expect("client");
        self.background = Some(self.sim.spawn(Arc::new(sink)));
        callbacks
    }
}

/// Keeps the callbacks handed to it (and answers as a host that took them).
#[derive(Default)]
struct Taken(Mutex<Vec<(String, Vec<u8>)>>);

#[async_trait::async_trait]
impl CallbackSink for Taken {
    async fn deliver(&self, url: &str, body: Vec<u8>) -> Option<(u16, String)> {
        self.0.lock().expect("lock").push((url.to_owned(), body));
        Some((200, "SUCCESS".into()))
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

async fn call(http: &reqwest::Client, url: String, body: Option<Value>) -> (u16, Value) {
    let request = match body {
        Some(b) => http.post(url).json(&b),
        None => http.get(url),
    };
    let response = request.bearer_auth(OPERATE).send().await.expect("answered");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn payout(trans_no: &str, key: &str) -> Value {
    json!({"transNo": trans_no, "outReqNo": key, "amount": "0.01", "outType": "OUT",
        "payeeName": "张三", "payeeAccount": "6222020200112233445", "bankName": "ICBC",
        "bankCnaps": "102100000030"})
}

/// Open and fund the protocols through the instances, as a host and its payers would.
async fn fund(apis: &[String], sim: &PaymentSystem, tag: &str) -> Vec<String> {
    let http = client();
    let mut protocols = Vec::new();
    for p in 0..PROTOCOLS {
        let api = &apis[p % apis.len()];
        let (_, opened) = call(
            &http,
            format!("{api}/v1/protocols"),
            Some(json!({"transDesc": "t", "businessId": "B1"})),
        )
        .await;
        let trans_no = opened["transNo"].as_str().expect("transNo").to_owned();
        let key = format!("APP001-{tag}-fund-{p}");
        let deposit = json!({"transNo": trans_no, "outReqNo": key, "amount": "1000.00", "prodCatalog": "01"});
        let (status, _) = call(&http, format!("{api}/v1/inbound"), Some(deposit)).await;
        assert_eq!(status, 200);
        sim.sim.pay(&key, true).expect("pay");
        sim.sim.arrive(&key).expect("arrive");
        protocols.push(trans_no);
    }
    for trans_no in &protocols {
        let url = format!("{}/v1/protocols/{trans_no}", apis[0]);
        while call(&http, url.clone(), None).await.1["ledger"]["available"] != "1000.00" {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    protocols
}

/// What one phase measured.
#[derive(Debug, Clone, Copy, Default)]
struct Phase {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn phase(mut latencies: Vec<Duration>, elapsed: Duration) -> Phase {
    latencies.sort();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len().max(1)) - 1;
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    Phase {
        per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
    }
}

/// `CLIENTS` clients posting payouts for [`COMMANDS_FOR`], round-robin over `targets`
/// (`{base}/…outbound`); the keys of those answered 200.
async fn commands(targets: &[String], protocols: &[String], tag: &str) -> (Phase, Vec<String>) {
    let end = Instant::now() + COMMANDS_FOR;
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (targets, protocols, tag) = (targets.to_vec(), protocols.to_vec(), tag.to_owned());
            tokio::spawn(async move {
                let http = client();
                let (mut latencies, mut keys) = (Vec::new(), Vec::new());
                let mut n = 0;
                while Instant::now() < end {
                    let key = format!("APP001-{tag}-{c}-{n}");
                    let trans_no = &protocols[(c * 7 + n) % protocols.len()];
                    let target = &targets[(c + n) % targets.len()];
                    let sent = Instant::now();
                    let (status, _) = call(&http, target.clone(), Some(payout(trans_no, &key))).await;
                    latencies.push(sent.elapsed());
                    assert_eq!(status, 200, "payout {key}");
                    keys.push(key);
                    n += 1;
                }
                (latencies, keys)
            })
        })
        .collect();
    let (mut latencies, mut keys) = (Vec::new(), Vec::new());
    for t in tasks {
        let (l, k) = t.await.expect("client");
        latencies.extend(l);
        keys.extend(k);
    }
    (phase(latencies, started.elapsed()), keys)
}

/// Replay `callbacks` with `CLIENTS` clients, round-robin over `bases` (`http://host:port`).
async fn callbacks(callbacks: Vec<(String, Vec<u8>)>, bases: &[String], path_of: fn(&str) -> String) -> Phase {
    let callbacks = Arc::new(callbacks);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (callbacks, next, bases) = (callbacks.clone(), next.clone(), bases.to_vec());
            tokio::spawn(async move {
                let http = client();
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((url, body)) = callbacks.get(i) else { break };
                    let target = format!("{}{}", bases[i % bases.len()], path_of(url));
                    let sent = Instant::now();
                    let response = http.post(target).body(body.clone()).send().await.expect("answered");
                    let status = response.status().as_u16();
                    let text = response.text().await.unwrap_or_default();
                    latencies.push(sent.elapsed());
                    assert!(protopay_sim::is_ack(status, &text), "callback refused: {status} {text}");
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("client"));
    }
    phase(latencies, started.elapsed())
}

/// The path of a callback URL (`/protopay/notify/outbound`).
fn notify_path(url: &str) -> String {
    url.split_once("/protopay/")
        .map(|(_, rest)| format!("/protopay/{rest}"))
        .expect("a notify URL")
}

/// Payouts at a fixed rate (open loop: each sent on its tick, whatever the others do).
async fn fixed_rate(api: &str, protocols: &[String], tag: &str) -> Phase {
    let http = client();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / FIXED_RATE);
    let total = FIXED_RATE as usize * FIXED_FOR.as_secs() as usize;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for n in 0..total {
        tick.tick().await;
        let (http, url) = (http.clone(), format!("{api}/v1/outbound"));
        let body = payout(&protocols[n % protocols.len()], &format!("APP001-{tag}-rate-{n}"));
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let (status, _) = call(&http, url, Some(body)).await;
            assert_eq!(status, 200);
            sent.elapsed()
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.push(t.await.expect("payout"));
    }
    phase(latencies, started.elapsed())
}

/// The floor of [`fixed_rate`] on sled: what a payout's three commits cost the disk alone.
/// At the same rate, open loop, three appends of a commit's size each followed by its
/// `fdatasync`, one after another, on the same file system; latency from each tick.
async fn sync_floor(dir: &std::path::Path) -> Phase {
    use std::io::Write;
    let path = dir.join("sync-floor");
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("floor file");
        let record = vec![0x5a_u8; 1_500];
        let every = Duration::from_secs(1) / FIXED_RATE;
        let total = FIXED_RATE as usize * FIXED_FOR.as_secs() as usize;
        let started = Instant::now();
        let mut latencies = Vec::with_capacity(total);
        for n in 0..total {
            let due = started + every * n as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            for _ in 0..3 {
                file.write_all(&record).expect("write");
                file.sync_data().expect("fdatasync");
            }
            latencies.push(due.elapsed());
        }
        phase(latencies, started.elapsed())
    })
    .await
    .expect("sync floor")
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
}

/// What a scenario measured.
#[derive(Debug, Clone, Copy, Default)]
struct Measured {
    commands: Phase,
    callbacks: Phase,
    lock_waits: Option<f64>,
    fixed_rate: Option<Phase>,
    /// [`sync_floor`], beside `fixed_rate`.
    sync_floor: Option<Phase>,
    /// Per payout, in the commands phase.
    cost: Cost,
}

/// What one payout cost, on average over a phase.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    /// CPU of the PostgreSQL server's processes, ms.
    db_cpu_ms: f64,
    /// CPU of the `serve` processes, ms (for the floor: this whole process, the load
    /// generator and the simulator included).
    service_cpu_ms: f64,
    /// Database transactions committed (`xact_commit`: reads and connection checks too).
    commits: f64,
    /// WAL syncs (flushes to disk).
    wal_syncs: f64,
}

/// CPU seconds used so far by the processes `pids` (user + system, from `/proc`).
fn cpu_seconds(pids: &[u32]) -> f64 {
    let ticks: u64 = pids
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // Fields after the command name (which may hold spaces): utime is the 12th, stime
            // the 13th.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum();
    // Linux's USER_HZ.
    ticks as f64 / 100.0
}

/// The PostgreSQL server's processes (the postmaster and every backend).
fn postgres_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres"))
        .collect()
}

/// A reading of the counters a [`Cost`] is the difference of.
struct Meter {
    db_cpu: f64,
    service_cpu: f64,
    commits: i64,
    wal_syncs: i64,
}

impl Meter {
    async fn read(db: &tokio_postgres::Client, service: &[u32]) -> Meter {
        db.execute("SELECT pg_stat_clear_snapshot()", &[]).await.expect("clear");
        let row = db
            .query_one(
                "SELECT (SELECT sum(xact_commit)::bigint FROM pg_stat_database), \
                        (SELECT wal_sync FROM pg_stat_wal)",
                &[],
            )
            .await
            .expect("stats");
        Meter {
            db_cpu: cpu_seconds(&postgres_pids()),
            service_cpu: cpu_seconds(service),
            commits: row.get(0),
            wal_syncs: row.get(1),
        }
    }

    /// Per one of `n`, since `self`.
    fn per(&self, later: &Meter, n: usize) -> Cost {
        let n = n.max(1) as f64;
        Cost {
            db_cpu_ms: (later.db_cpu - self.db_cpu) * 1e3 / n,
            service_cpu_ms: (later.service_cpu - self.service_cpu) * 1e3 / n,
            commits: (later.commits - self.commits) as f64 / n,
            wal_syncs: (later.wal_syncs - self.wal_syncs) as f64 / n,
        }
    }
}

/// `instances` servers on the PostgreSQL at `url` (`postgres`), or one on sled (whose
/// database figures are then the server's idle background).
async fn scenario(url: &str, postgres: bool, instances: usize, run: usize) -> Measured {
    let pg = postgres.then_some(url);
    let mut sim = PaymentSystem::start().await;
    let tag = format!("{}{instances}r{run}", if pg.is_some() { "pg" } else { "sled" });
    let extra = match pg {
        Some(url) => format!(
            "store = \"{url}\"\nschema = \"{}\"\n",
            protopay_storage_postgres::testing::schema("bench_serve")
        ),
        None => String::new(),
    };
    let dirs: Vec<_> = (0..instances).map(|_| tempfile::tempdir().expect("dir")).collect();
    let ports: Vec<u16> = (0..instances).map(|_| free_port()).collect();
    let servers: Vec<_> = (0..instances)
        .map(|i| serve(dirs[i].path(), &sim.addr, ports[i], "", &extra))
        .collect();
    let bases: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
    let apis = bases.clone();
    let protocols = fund(&apis, &sim, &tag).await;
    let waits = match pg {
        Some(url) => Some(LockWaits::start(url).await),
        None => None,
    };
    let targets: Vec<String> = apis.iter().map(|a| format!("{a}/v1/outbound")).collect();
    let service: Vec<u32> = servers.iter().map(|s| s.child.id()).collect();
    let stats = connect(url).await;
    let before = Meter::read(&stats, &service).await;
    let (commanded, keys) = commands(&targets, &protocols, &tag).await;
    let cost = before.per(&Meter::read(&stats, &service).await, keys.len());
    let taken = sim.settled_callbacks(&keys).await;
    let called_back = callbacks(taken, &bases, notify_path).await;
    let lock_waits = match waits {
        Some(w) => Some(w.stop().await),
        None => None,
    };
    let (fixed, sync_floor) = match pg {
        None => (
            Some(fixed_rate(&apis[0], &protocols, &tag).await),
            Some(sync_floor(dirs[0].path()).await),
        ),
        Some(_) => (None, None),
    };
    for s in servers {
        assert!(terminate(s).success(), "a server stopped cleanly");
    }
    Measured {
        commands: commanded,
        callbacks: called_back,
        lock_waits,
        fixed_rate: fixed,
        sync_floor,
        cost,
    }
}

/// The floor: a bare axum + tokio-postgres service writing the same rows per request as a
/// payout and a callback do, on tables of protopay's own schema.
mod floor {
    use super::*;
    use deadpool_postgres::{Manager, Pool};

    #[derive(Clone)]
    struct Floor {
        pool: Pool,
        schema: Arc<String>,
        value: Arc<Vec<u8>>,
    }

    /// Start it; its base URL.
    pub(super) async fn start(url: &str) -> String {
        let schema = protopay_storage_postgres::testing::schema("bench_floor");
        let store = protopay_storage_postgres::PostgresStorage::open(protopay_storage_postgres::PostgresOptions {
            schema: schema.clone(),
            ..protopay_storage_postgres::PostgresOptions::new(url)
        })
        .await
        .expect("schema");
        drop(store);
        let db = connect(url).await;
        db.batch_execute(&format!(
            "INSERT INTO {schema}.protocols (trans_no, version, value) \
             SELECT 'T' || g, 1, '\\x00' FROM generate_series(0, {PROTOCOLS} - 1) g"
        ))
        .await
        .expect("protocols");
        let config: tokio_postgres::Config = url.parse().expect("url");
        let pool = Pool::builder(Manager::new(config, tokio_postgres::NoTls))
            .max_size(16)
            .build()
            .expect("pool");
        // About the size of a stored payout record.
        let state = Floor {
            pool,
            schema: Arc::new(schema),
            value: Arc::new(vec![7u8; 700]),
        };
        let app = axum::Router::new()
            .route("/v1/outbound", post(payout))
            .route("/protopay/notify/outbound", post(callback))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    /// One step's rows, as a commit writes them: the order (inserted or moved on a version),
    /// the protocol's ledger on its version, an event numbered from the transaction, the
    /// order's next poll.
    async fn step(f: &Floor, key: &str, trans_no: &str, new: bool) {
        let s = &f.schema;
        let mut db = f.pool.get().await.expect("connection");
        let tx = db.transaction().await.expect("begin");
        tx.query_one("SELECT pg_current_xact_id()::text", &[])
            .await
            .expect("xid");
        let order = if new {
            format!(
                "INSERT INTO {s}.orders (out_req_no, trans_no, version, value, status, attention) \
                 VALUES ($1, $2, 1, $3, 'requested', false)"
            )
        } else {
            format!(
                "UPDATE {s}.orders SET version = version + 1, value = $3, status = 'submitted' \
                 WHERE out_req_no = $1 AND trans_no = $2"
            )
        };
        let statement = tx.prepare_cached(&order).await.expect("prepare");
        tx.execute(&statement, &[&key, &trans_no, &*f.value])
            .await
            .expect("order");
        let protocol = tx
            .prepare_cached(&format!(
                "UPDATE {s}.protocols SET version = version + 1, value = $2 WHERE trans_no = $1"
            ))
            .await
            .expect("prepare");
        tx.execute(&protocol, &[&trans_no, &*f.value]).await.expect("protocol");
        let event = tx
            .prepare_cached(&format!(
                "INSERT INTO {s}.events (seq, value, out_req_no) \
                 SELECT base + pg_current_xact_id()::text::bigint * 65536, $1, $2 FROM {s}.seq_base"
            ))
            .await
            .expect("prepare");
        tx.execute(&event, &[&*f.value, &key]).await.expect("event");
        let due = tx
            .prepare_cached(&format!(
                "INSERT INTO {s}.due (out_req_no, at) VALUES ($1, now() + interval '5 s') \
                 ON CONFLICT (out_req_no) DO UPDATE SET at = EXCLUDED.at"
            ))
            .await
            .expect("prepare");
        tx.execute(&due, &[&key]).await.expect("due");
        tx.commit().await.expect("commit");
    }

    async fn payout(State(f): State<Floor>, body: axum::Json<Value>) -> &'static str {
        let key = body["outReqNo"].as_str().unwrap_or_default().to_owned();
        let trans_no = body["transNo"].as_str().unwrap_or_default().to_owned();
        // Reserved, submitted, then the reply applied: three commits, as the engine makes.
        step(&f, &key, &trans_no, true).await;
        step(&f, &key, &trans_no, false).await;
        step(&f, &key, &trans_no, false).await;
        "{}"
    }

    async fn callback(State(f): State<Floor>, body: axum::body::Bytes) -> &'static str {
        let envelope: Value = serde_json::from_slice(&body).unwrap_or_default();
        let data: Value = envelope["data"]
            .as_str()
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or_default();
        let key = data["outReqNo"].as_str().unwrap_or_default().to_owned();
        // The payout's protocol, as a stored order would name it.
        let p = key
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b.into()))
            % PROTOCOLS;
        step(&f, &key, &format!("T{p}"), false).await;
        "SUCCESS"
    }
}

async fn floor_run(url: &str, run: usize) -> Measured {
    let base = floor::start(url).await;
    let protocols: Vec<String> = (0..PROTOCOLS).map(|p| format!("T{p}")).collect();
    let waits = LockWaits::start(url).await;
    let stats = connect(url).await;
    let before = Meter::read(&stats, &[std::process::id()]).await;
    let (commanded, keys) = commands(&[format!("{base}/v1/outbound")], &protocols, &format!("floor{run}")).await;
    let cost = before.per(&Meter::read(&stats, &[std::process::id()]).await, keys.len());
    // The same callbacks as protopay's: signed by the simulator for these keys.
    let mut taken = Vec::new();
    for key in &keys {
        let data = json!({"outReqNo": key, "status": "SUCCESS"}).to_string();
        let body = protopay_engine::wire::Envelope::reply(
            "APP001",
            "0000",
            "SUCCESS",
            data,
            "20261129120000000".into(),
            &Md5Key::new(KEY),
        )
        .to_json()
        .into_bytes();
        taken.push((format!("{base}/protopay/notify/outbound"), body));
    }
    let called_back = callbacks(taken, &[base], notify_path).await;
    Measured {
        commands: commanded,
        callbacks: called_back,
        lock_waits: Some(waits.stop().await),
        fixed_rate: None,
        sync_floor: None,
        cost,
    }
}

/// Median and min–max of one figure over the runs.
fn spread(values: &[f64]) -> String {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let (min, max) = (v[0], v[v.len() - 1]);
    format!("{:.1} ({min:.1}–{max:.1})", v[v.len() / 2])
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let Some(url) = protopay_storage_postgres::testing::url() else {
        return;
    };
    let runs: usize = std::env::var("PROTOPAY_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    rt.block_on(async {
        let mut all: BTreeMap<&str, Vec<Measured>> = BTreeMap::new();
        let only = std::env::var("PROTOPAY_BENCH_ONLY").unwrap_or_default();
        let wanted = |name: &str| only.split(',').any(|part| name.contains(part));
        for run in 0..runs {
            if wanted("1 floor") {
                let m = floor_run(&url, run).await;
                all.entry("1 floor").or_default().push(m);
            }
            for (name, postgres, instances) in [("2 pg x1", true, 1), ("3 pg x3", true, 3), ("4 sled x1", false, 1)] {
                if wanted(name) {
                    let m = scenario(&url, postgres, instances, run).await;
                    println!("run {run} {name}: {m:?}");
                    all.entry(name).or_default().push(m);
                }
            }
        }
        println!("\nmedians of {runs} runs (min–max):");
        for (name, ms) in &all {
            let f = |g: fn(&Measured) -> f64| spread(&ms.iter().map(g).collect::<Vec<_>>());
            println!(
                "{name}: commands {}/s p50 {} ms p99 {} ms; callbacks {}/s p50 {} ms p99 {} ms",
                f(|m| m.commands.per_sec),
                f(|m| m.commands.p50_ms),
                f(|m| m.commands.p99_ms),
                f(|m| m.callbacks.per_sec),
                f(|m| m.callbacks.p50_ms),
                f(|m| m.callbacks.p99_ms),
            );
            if ms[0].lock_waits.is_some() {
                println!(
                    "{name}: backends waiting on a lock (mean) {}",
                    f(|m| m.lock_waits.unwrap_or(0.0))
                );
            }
            println!(
                "{name}: per payout: database CPU {} ms, service CPU {} ms, {} transactions, {} WAL syncs",
                f(|m| m.cost.db_cpu_ms),
                f(|m| m.cost.service_cpu_ms),
                f(|m| m.cost.commits),
                f(|m| m.cost.wal_syncs)
            );
            if ms[0].fixed_rate.is_some() {
                println!(
                    "{name}: payouts at {FIXED_RATE}/s: p50 {} ms p99 {} ms",
                    f(|m| m.fixed_rate.unwrap_or_default().p50_ms),
                    f(|m| m.fixed_rate.unwrap_or_default().p99_ms)
                );
                println!(
                    "{name}: its floor, three appends each with its fdatasync at {FIXED_RATE}/s: p50 {} ms p99 {} ms",
                    f(|m| m.sync_floor.unwrap_or_default().p50_ms),
                    f(|m| m.sync_floor.unwrap_or_default().p99_ms)
                );
            }
        }
        if !(all.contains_key("3 pg x3") && all.contains_key("2 pg x1")) {
            return;
        }
        let ratio = |g: fn(&Measured) -> f64| {
            let r: Vec<f64> = all["3 pg x3"]
                .iter()
                .zip(&all["2 pg x1"])
                .map(|(a, b)| g(a) / g(b))
                .collect();
            spread(&r)
        };
        println!(
            "3 vs 1 instances on postgres: commands {}x, callbacks {}x",
            ratio(|m| m.commands.per_sec),
            ratio(|m| m.callbacks.per_sec)
        );
    });
}
