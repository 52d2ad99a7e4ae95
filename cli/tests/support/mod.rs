//! Starting `protopay-sim` and `protopay serve` as processes, for the tests of the binary.
#![allow(dead_code)] // each test binary uses part of it

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const OPERATE: &str = "operate-token-0123456789abcdef";
pub const KEY: &str = "serve-test-md5-key";

/// The simulator's binary, beside this package's (`cargo test --workspace` builds it; a
/// test run of this package alone builds it here).
pub fn sim_binary() -> PathBuf {
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
pub struct Running {
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
pub fn start(mut command: Command) -> Running {
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

/// The simulator on a free loopback port.
pub fn simulator() -> Running {
    let mut c = Command::new(sim_binary());
    c.args(["--listen", "127.0.0.1:0", "--app-id", "APP001", "--key", KEY]);
    start(c)
}

/// A free loopback port (the callback URL must be known before the server starts).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Write `dir/protopay.toml` for a server on `port` with a sled store in `dir`, talking to
/// the simulator at `sim_addr`; `engine` adds top-level keys, `extra` lines to `[serve]`
/// (a `store = …` there replaces the sled store).
pub fn write_config(dir: &Path, sim_addr: &str, port: u16, engine: &str, extra: &str) -> PathBuf {
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
pub fn serve(dir: &Path, sim_addr: &str, port: u16, engine: &str, extra: &str) -> Running {
    let config = write_config(dir, sim_addr, port, engine, extra);
    let mut c = Command::new(env!("CARGO_BIN_EXE_protopay"));
    c.args(["serve", "--config"])
        .arg(&config)
        .env("PROTOPAY_KEY", KEY)
        .env("PROTOPAY_API_TOKEN", OPERATE);
    start(c)
}

/// Send SIGTERM and wait for the exit status.
pub fn terminate(mut running: Running) -> std::process::ExitStatus {
    let pid = running.child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(sent.success());
    running.child.wait().expect("it exits")
}
