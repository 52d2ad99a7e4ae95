//! The operator console in a real browser: `protopay serve` and the simulator as processes,
//! a payout stuck at `PROCESSING` until it needs a person, and headless Chromium (Debian's,
//! driven by `playwright-core` from `tests/console/story.mjs`) through the night an operator
//! has with it — overview, the order, why, its evidence, a decision with a reason, the audit
//! trail, a clean reconciliation — and what must not work: a reader acting, a POST without
//! its CSRF token, a payee's name running as a script.
//!
//! Needs `node`, `npm ci --prefix cli/tests/console` and Chromium (`/usr/bin/chromium`, or
//! `PROTOPAY_CHROMIUM`); without them it is skipped, saying so, unless
//! `PROTOPAY_REQUIRE_ALL=1`. `PROTOPAY_CONSOLE_SCREENSHOTS=docs` keeps its screenshots (the
//! README's).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::{LI, WANG, call, free_port, operators, serve, simulator, terminate};

const STUCK: &str = "APP001-stuck";

/// What the test needs that a machine may lack: `Some(chromium)` when all is there.
fn browser() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console");
    let chromium =
        std::env::var_os("PROTOPAY_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    let node = Command::new("node").arg("--version").output();
    let needs = [
        (
            node.is_ok_and(|o| o.status.success()),
            "node",
            "install Node.js 20 or later on PATH",
        ),
        (
            dir.join("node_modules/playwright-core").is_dir(),
            "playwright-core",
            "npm ci --prefix cli/tests/console",
        ),
        (
            chromium.is_file(),
            "chromium",
            "apt-get install chromium (or set PROTOPAY_CHROMIUM)",
        ),
    ];
    for (found, what, how) in needs {
        if !found {
            protopay_engine::testing::skip_without(what, "not found", how);
            return None;
        }
    }
    Some(chromium)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_settles_a_stuck_payout_in_the_console() {
    let Some(chromium) = browser() else { return };
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator();
    let simu = format!("http://{}", sim.addr);
    let port = free_port();
    let server = serve(dir.path(), &sim.addr, port, support::FAST_POLLS, &operators());
    let api = format!("http://127.0.0.1:{port}");
    let get = |path: String| call(reqwest::Method::GET, format!("{api}{path}"), None);

    // A payee whose name is markup: it must be shown as text.
    support::stuck_payout(&api, &simu, "<script>alert(1)</script>").await;

    let kept = std::env::var_os("PROTOPAY_CONSOLE_SCREENSHOTS").map(PathBuf::from);
    let shots = tempfile::tempdir().unwrap();
    let screenshots = kept.unwrap_or_else(|| shots.path().to_owned());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/story.mjs");
    let mut node = Command::new("node");
    node.arg(&script)
        .env("CONSOLE_URL", &api)
        .env("SIM_URL", &simu)
        .env("OPERATE_TOKEN", LI)
        .env("READ_TOKEN", WANG)
        .env("STUCK", STUCK)
        .env("SCREENSHOTS", &screenshots)
        .env("CHROMIUM", &chromium);
    let story = tokio::task::spawn_blocking(move || node.output())
        .await
        .unwrap()
        .expect("node runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&story.stdout),
        String::from_utf8_lossy(&story.stderr),
    );
    assert!(
        story.status.success() && stdout.contains("console story passed"),
        "{stdout}\n{stderr}"
    );
    for shot in ["console-overview.png", "console-order.png"] {
        assert!(screenshots.join(shot).is_file(), "{shot} was taken");
    }

    // What the browser did is in the store: the decision and the reconciliation, by name.
    let trail = get("/v1/audit".into()).await["items"].clone();
    let kinds: Vec<&str> = trail
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["OperatorReconciled", "OperatorResolved"], "{trail}");
    assert_eq!(trail[0]["data"]["drifting"], 0, "reconciliation is clean");
    assert_eq!(trail[1]["data"]["by"], "li.lei");
    assert_eq!(trail[1]["outReqNo"], STUCK);
    let order = get(format!("/v1/orders/{STUCK}")).await;
    assert_eq!(order["order"]["status"], "FAILURE");
    assert_eq!(terminate(server).code(), Some(0));
}
