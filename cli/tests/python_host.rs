//! A host in another language: `tests/python/escrow_host.py` (standard library only) starts
//! `protopay-sim` and `protopay serve` and runs a whole escrow flow through `/v1`. Run from
//! `cargo test` so that the README's test command covers it. Needs `python3` on `PATH`; without
//! it (or with `PROTOPAY_SKIP_PYTHON=1`) it is skipped, saying so, unless
//! `PROTOPAY_REQUIRE_ALL=1`.

mod support;

use std::path::Path;
use std::process::Command;

#[test]
fn a_python_host_runs_an_escrow_flow_through_v1() {
    const HOW: &str = "install python3 (3.8 or later) on PATH";
    if std::env::var_os("PROTOPAY_SKIP_PYTHON").is_some() {
        protopay_engine::testing::skip_without("python3", "PROTOPAY_SKIP_PYTHON is set", HOW);
        return;
    }
    let found = Command::new("python3").arg("--version").output();
    if !found.is_ok_and(|o| o.status.success()) {
        protopay_engine::testing::skip_without("python3", "not on PATH", HOW);
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/escrow_host.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_protopay"))
        .arg(support::sim_binary())
        .arg(work.path())
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the Python host failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("escrow flow through /v1 passed"), "{stdout}");
}
