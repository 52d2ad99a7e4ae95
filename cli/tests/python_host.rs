//! Hosts in another language, run from `cargo test` so that the README's test command covers
//! them. Both start `protopay-sim` and `protopay serve` and run an escrow flow through `/v1`:
//!
//! - `tests/python/escrow_host.py` (standard library only) writes its HTTP by hand, as a host
//!   reading the README would;
//! - `tests/python/generated_client.py` writes none: it generates a client from the OpenAPI
//!   document the server serves (`openapi-python-client`) and runs the flow through its typed
//!   models, so any shape the document declares wrongly fails in the client's own parsing;
//! - `tests/python/typescript_client.py` does the same in TypeScript: it generates a client
//!   with `@hey-api/openapi-ts` (fetch, zod validation of every request and answer), compiles
//!   it with `tests/typescript/flow.ts` under `tsc --strict`, and runs the flow with Node.js;
//! - `tests/python/contract_fuzz.py` fuzzes every operation against that document
//!   (schemathesis, every check, with the operate token, the read token and none).
//!
//! Each needs its tools (`python3`; `openapi-python-client` and `schemathesis`, from PyPI;
//! `node` and `npm ci --prefix cli/tests/typescript` for the TypeScript host); without them
//! (or with `PROTOPAY_SKIP_PYTHON=1`) it is skipped, saying so, unless
//! `PROTOPAY_REQUIRE_ALL=1`.

mod support;

use std::path::Path;
use std::process::Command;

#[test]
fn a_python_host_runs_an_escrow_flow_through_v1() {
    run_host("escrow_host.py", &[], "python host: escrow flow through /v1 passed");
}

#[test]
fn a_client_generated_from_the_openapi_document_runs_an_escrow_flow() {
    let tool = ("openapi-python-client", "pip install openapi-python-client==0.29.1");
    run_host(
        "generated_client.py",
        &[tool],
        "generated client: escrow flow through /v1 passed",
    );
}

#[test]
fn a_typescript_client_generated_from_the_openapi_document_runs_an_escrow_flow() {
    let generator = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/typescript/node_modules/.bin/openapi-ts"
    );
    let tools = [
        ("node", "install Node.js 20.19 or later on PATH"),
        (generator, "npm ci --prefix cli/tests/typescript"),
    ];
    run_host(
        "typescript_client.py",
        &tools,
        "typescript client: escrow flow through /v1 passed",
    );
}

#[test]
fn the_api_holds_to_its_document_under_fuzzing() {
    let tool = ("schemathesis", "pip install schemathesis==4.32.5");
    run_host("contract_fuzz.py", &[tool], "contract fuzz: /v1 holds to its document");
}

/// Run `script` against fresh servers, if `python3` and each of `tools` (a command and how to
/// install it) are on `PATH`.
fn run_host(script: &str, tools: &[(&str, &str)], passed: &str) {
    let python = ("python3", "install python3 (3.8 or later) on PATH");
    for (tool, how) in std::iter::once(&python).chain(tools) {
        if std::env::var_os("PROTOPAY_SKIP_PYTHON").is_some() {
            protopay_engine::testing::skip_without(tool, "PROTOPAY_SKIP_PYTHON is set", how);
            return;
        }
        let found = Command::new(tool).arg("--version").output();
        if !found.is_ok_and(|o| o.status.success()) {
            protopay_engine::testing::skip_without(tool, "not on PATH", how);
            return;
        }
    }
    let work = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(script);
    let output = Command::new("python3")
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_protopay"))
        .arg(support::sim_binary())
        .arg(work.path())
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} failed:\n{stdout}\n{stderr}",
        script.display()
    );
    assert!(stdout.contains(passed), "{stdout}");
}
