//! Starting `protopay-sim` and `protopay serve` as processes, for the tests of the binary.
#![allow(dead_code)] // each test binary uses part of it

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

pub(crate) const OPERATE: &str = "operate-token-0123456789abcdef";
pub(crate) const KEY: &str = "serve-test-md5-key";

/// The simulator's binary, beside this package's (`cargo test --workspace` builds it; a
/// test run of this package alone builds it here).
pub(crate) fn sim_binary() -> PathBuf {
    let ours = Path::new(env!("CARGO_BIN_EXE_protopay"));
    let sim = ours.with_file_name(format!("protopay-sim{}", std::env::consts::EXE_SUFFIX));
    if !sim.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "protopay-sim", "--bin", "protopay-sim"]);
        if ours.parent().and_then(Path::file_name).is_some_and(|d| d == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building protopay-sim failed");
    }
    sim
}

/// A process that printed `listening on http://ADDR`; killed when dropped.
pub(crate) struct Running {
    pub child: Child,
    pub addr: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `command` and wait for its `listening on http://ADDR` line.
pub(crate) fn start(mut command: Command) -> Running {
    // Their logs would interleave with every test's output; warnings and errors still show.
    command.env("RUST_LOG", "warn");
    let mut child = command.stdout(Stdio::piped()).spawn().expect("the binary starts");
    let stdout = child.stdout.take().expect("piped");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("it prints");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    Running { child, addr }
}

/// Li Lei's token and its SHA-256, as `[[serve.operators]]` holds it (never the token).
pub(crate) const LI: &str = "li-lei-token-0123456789abcdef";
const LI_SHA256: &str = "1f3e87f5c80b3415316ef5b1dea47480f1f228f705fa969a790f88eb06ea9f47";
/// Wang Fang's (a reader).
pub(crate) const WANG: &str = "wang-fang-token-0123456789abcd";
const WANG_SHA256: &str = "31f1e3abaff97f57915956e7c95f4cb1afda27b1cce42161da869603b2ccefda";

/// Two named operators, by the SHA-256 of their tokens (`printf %s "$TOKEN" | sha256sum`):
/// Li Lei may operate, Wang Fang only read. Lines for `[serve]`.
pub(crate) fn operators() -> String {
    format!(
        "[[serve.operators]]\nname = \"li.lei\"\nrole = \"operate\"\ntoken_sha256 = \"{LI_SHA256}\"\n\
         [[serve.operators]]\nname = \"wang.fang\"\nrole = \"read\"\ntoken_sha256 = \"{WANG_SHA256}\"\n"
    )
}

/// Polls every 100–200 ms, and an order needs attention after two polls without news: an
/// operator's night in seconds.
pub(crate) const FAST_POLLS: &str = "poll = { submitted_ms = 100, processing_ms = 100, unpaid_ms = 100, \
    awaiting_arrival_ms = 100, max_interval_ms = 200, attention_after_quiet_polls = 2, jitter_percent = 0 }";

/// The simulator on a free loopback port.
pub(crate) fn simulator() -> Running {
    let mut c = Command::new(sim_binary());
    c.args(["--listen", "127.0.0.1:0", "--app-id", "APP001", "--key", KEY]);
    start(c)
}

/// A free loopback port (the callback URL must be known before the server starts).
pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Write `dir/protopay.toml` for a server on `port` with a sled store in `dir`, talking to
/// the simulator at `sim_addr`; `engine` adds top-level keys, `extra` lines to `[serve]`
/// (a `store = …` there replaces the sled store).
pub(crate) fn write_config(dir: &Path, sim_addr: &str, port: u16, engine: &str, extra: &str) -> PathBuf {
    let config = dir.join("protopay.toml");
    // A sled store in `dir`, unless `extra` names another.
    let store = if extra.contains("store =") {
        String::new()
    } else {
        format!("store = \"{}\"\n", dir.join("data").display())
    };
    std::fs::write(
        &config,
        format!(
            "app_id = \"APP001\"\nbase_url = \"http://{sim_addr}\"\n\
             callback_base_url = \"http://127.0.0.1:{port}/protopay/notify\"\n{engine}\n\
             [serve]\nlisten = \"127.0.0.1:{port}\"\n{store}{extra}"
        ),
    )
    .unwrap();
    config
}

/// `protopay serve` on `port` (see [`write_config`]).
pub(crate) fn serve(dir: &Path, sim_addr: &str, port: u16, engine: &str, extra: &str) -> Running {
    let config = write_config(dir, sim_addr, port, engine, extra);
    let mut c = Command::new(env!("CARGO_BIN_EXE_protopay"));
    c.args(["serve", "--config"])
        .arg(&config)
        .env("PROTOPAY_KEY", KEY)
        .env("PROTOPAY_API_TOKEN", OPERATE);
    start(c)
}

/// Send SIGTERM and wait for the exit status.
pub(crate) fn terminate(mut running: Running) -> std::process::ExitStatus {
    let pid = running.child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(sent.success());
    running.child.wait().expect("it exits")
}

pub(crate) const SECRET: &str = "webhook-secret-0123456789";

/// A host's webhook endpoint that fails its first `failures` requests, checks each body's
/// HMAC, and reports every event it accepts.
pub(crate) struct Hook {
    pub addr: std::net::SocketAddr,
    /// Every request: its `seq`, whether its signature verified, and its lease epoch.
    pub received: Arc<Mutex<Vec<(u64, bool, u64)>>>,
    pub accepted: tokio::sync::mpsc::UnboundedReceiver<u64>,
}

impl Hook {
    pub(crate) async fn start(failures: u32) -> Hook {
        use hmac::{Hmac, KeyInit, Mac};
        let received: Arc<Mutex<Vec<(u64, bool, u64)>>> = Arc::default();
        let failures_left = Arc::new(Mutex::new(failures));
        let (accept, accepted) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let log = received.clone();
        let app = axum::Router::new().route(
            "/events",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (log, failures_left, accept) = (log.clone(), failures_left.clone(), accept.clone());
                async move {
                    let event: Value = serde_json::from_slice(&body).unwrap();
                    let seq = event["seq"].as_u64().unwrap();
                    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
                    mac.update(&body);
                    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
                    let signature = headers["x-protopay-signature"].to_str().unwrap().to_owned();
                    let epoch: u64 = headers["x-protopay-lease-epoch"].to_str().unwrap().parse().unwrap();
                    log.lock()
                        .unwrap()
                        .push((seq, signature == format!("sha256={expected}"), epoch));
                    let mut left = failures_left.lock().unwrap();
                    if *left > 0 {
                        *left -= 1;
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    let _ = accept.send(seq);
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Hook {
            addr,
            received,
            accepted,
        }
    }

    pub(crate) fn config(&self) -> String {
        format!(
            "[serve.webhook]\nurl = \"http://{}/events\"\nsecret = \"{SECRET}\"\n\
             first_retry_ms = 10\nmax_retry_ms = 50\n",
            self.addr
        )
    }

    /// Wait until every event up to `last` was accepted; the accepted `seq`s in order.
    pub(crate) async fn accepted_through(&mut self, last: u64) -> Vec<u64> {
        let mut accepted = Vec::new();
        while accepted.last() != Some(&last) {
            accepted.push(self.accepted.recv().await.unwrap());
        }
        accepted
    }
}

/// What a run of the `protopay` binary printed, and its exit code.
pub(crate) struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Run the `protopay` binary (off the async runtime: it blocks).
pub(crate) async fn protopay(args: Vec<String>) -> Run {
    tokio::task::spawn_blocking(move || {
        let out = assert_cmd::Command::cargo_bin("protopay")
            .unwrap()
            .args(&args)
            .env("PROTOPAY_KEY", KEY)
            .env_remove("PROTOPAY_URL")
            .env_remove("PROTOPAY_API_TOKEN")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "{stderr}");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
        }
    })
    .await
    .unwrap()
}

/// Owned arguments.
pub(crate) fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A `/v1` call with the operate token that must succeed: its JSON (null when empty).
pub(crate) async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> Value {
    let mut r = reqwest::Client::new().request(method, url).bearer_auth(OPERATE);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    r.json().await.unwrap_or(Value::Null)
}

/// The operator's night begins, on the server at `api` and the simulator at `simu`: a
/// protocol funded with 1 234.50 (`APP001-dep`, paid in and arrived, as the payer and the
/// bank do through the simulator's admin routes), and a payout `APP001-stuck` of 10.00 to
/// `payee_name` that the payment system keeps `PROCESSING` until it needs attention. The
/// protocol's `transNo`.
pub(crate) async fn stuck_payout(api: &str, simu: &str, payee_name: &str) -> String {
    let post = |path: &str, body: Value| call(reqwest::Method::POST, format!("{api}{path}"), Some(body));
    let get = |path: String| call(reqwest::Method::GET, format!("{api}{path}"), None);
    let t = post(
        "/v1/protocols",
        serde_json::json!({"transDesc": "flat", "businessId": "B1"}),
    )
    .await["transNo"]
        .as_str()
        .unwrap()
        .to_owned();
    let deposit = serde_json::json!({"transNo": t, "outReqNo": "APP001-dep", "amount": "1234.50", "prodCatalog": "01"});
    post("/v1/inbound", deposit).await;
    let http = reqwest::Client::new();
    for step in ["pay", "arrive"] {
        let r = http
            .post(format!("{simu}/sim/inbound/APP001-dep/{step}"))
            .json(&serde_json::json!({ "status": "SUCCESS" }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    until(api, "the deposit arrives", async || {
        get("/v1/orders/APP001-dep".into()).await["order"]["arrived"] == serde_json::json!(true)
    })
    .await;
    let payout = serde_json::json!({"transNo": t, "outReqNo": "APP001-stuck", "amount": "10.00", "outType": "OUT",
        "payeeName": payee_name, "payeeAccount": "6222020200112233445", "bankName": "ICBC", "bankCnaps": "102100000030"});
    post("/v1/outbound", payout).await;
    until(api, "the payout needs attention", async || {
        get("/v1/orders?status=NEEDS_ATTENTION".into()).await["items"]
            .as_array()
            .is_some_and(|i| !i.is_empty())
    })
    .await;
    t
}

/// Wait (on the event feed, never on a timer) until `done` holds.
pub(crate) async fn until(api: &str, what: &str, done: impl AsyncFn() -> bool) {
    for _ in 0..100 {
        if done().await {
            return;
        }
        let batch = call(
            reqwest::Method::GET,
            format!("{api}/v1/events?consumer=test&waitMs=5000"),
            None,
        )
        .await;
        if let Some(last) = batch["events"].as_array().and_then(|e| e.last()) {
            let ack = serde_json::json!({"consumer": "test", "seq": last["seq"]});
            call(reqwest::Method::POST, format!("{api}/v1/events/ack"), Some(ack)).await;
        }
    }
    panic!("never happened: {what}");
}
