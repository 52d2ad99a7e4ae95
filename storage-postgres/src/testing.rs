//! Test support (feature `test-util`): a PostgreSQL to test against, and a hook that stops a
//! commit just before its `COMMIT`.
//!
//! [`url`] is `PROTOPAY_PG_URL` when set (CI starts one cluster and exports it). Otherwise it
//! starts a throwaway cluster for this test process from the machine's PostgreSQL binaries:
//! `initdb` found on `PATH` or under `/usr/lib/postgresql/*/bin`, run as the `postgres` OS
//! user when we are root (the server refuses root), on loopback, in a temporary directory.
//! The server is tied to this process's lifetime: a shell holds it and stops it (and removes
//! its directory) when our end of its stdin closes — when this process exits, however it
//! exits. Each test takes its own schema ([`schema`]), so tests share one server safely.

use crate::PostgresStorage;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use tokio::sync::oneshot;

/// The URL of a PostgreSQL server to test against: `PROTOPAY_PG_URL`, or a throwaway cluster
/// started from this machine's server binaries. `None` — the test is skipped, loudly — when
/// `PROTOPAY_SKIP_PG=1` or there are no binaries, unless `PROTOPAY_REQUIRE_ALL=1` (CI), which
/// makes a missing PostgreSQL a failure.
pub fn url() -> Option<String> {
    const HOW: &str = "install PostgreSQL 13+ server binaries (Debian: apt-get install postgresql), \
                       or set PROTOPAY_PG_URL to a database";
    if std::env::var("PROTOPAY_SKIP_PG").is_ok_and(|v| v == "1") {
        protopay_engine::testing::skip_without("PostgreSQL", "PROTOPAY_SKIP_PG=1", HOW);
        return None;
    }
    if let Ok(url) = std::env::var("PROTOPAY_PG_URL") {
        return Some(url);
    }
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match CLUSTER.get_or_init(Cluster::start) {
        Ok(cluster) => Some(cluster.url.clone()),
        Err(why) => {
            protopay_engine::testing::skip_without("PostgreSQL", why, HOW);
            None
        }
    }
}

/// A schema name no other test in any process uses: `t_{tag}_{pid}_{n}`.
pub fn schema(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("t_{tag}_{}_{n}", std::process::id())
}

struct Cluster {
    url: String,
    /// The holder shell; our end of its stdin closes when the process exits.
    _holder: Mutex<Child>,
}

impl Cluster {
    fn start() -> Result<Cluster, String> {
        let bin = binaries().ok_or("no initdb on PATH or under /usr/lib/postgresql/*/bin")?;
        let dir = tempfile::Builder::new()
            .prefix("protopay-pg-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?
            .keep();
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        if as_root {
            run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir))?;
        }
        let data = dir.join("data");
        run(as_postgres(as_root, &bin.join("initdb"))
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "-D"])
            .arg(&data))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let script = r#"
            "$1" -D "$2" -p "$3" -k "$4" -c listen_addresses=127.0.0.1 -c max_connections=200 >"$4/log" 2>&1 &
            pid=$!
            read _
            kill -INT "$pid"
            wait "$pid"
            rm -rf "$4"
        "#;
        let holder = as_postgres(as_root, Path::new("sh"))
            .args(["-c", script, "sh"])
            .arg(bin.join("postgres"))
            .arg(&data)
            .arg(port.to_string())
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting postgres: {e}"))?;
        let ready = bin.join("pg_isready");
        // Wait for an external server to accept connections (not a timing assumption about
        // our own code): up to 60 s.
        for _ in 0..600 {
            let up = Command::new(&ready)
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if up {
                return Ok(Cluster {
                    url: format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode=disable"),
                    _holder: Mutex::new(holder),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        Err(format!("postgres did not start: {log}"))
    }
}

/// The directory of the newest PostgreSQL server binaries on this machine (`pg_dump` and
/// `pg_restore` beside them).
pub fn binaries() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            // The real directory (`/usr/local/bin/initdb` may be a link into it), where
            // `postgres` and `pg_isready` live too.
            let real = std::fs::canonicalize(dir.join("initdb")).ok();
            if let Some(bin) = real.as_deref().and_then(Path::parent)
                && bin.join("postgres").is_file()
                && bin.join("pg_isready").is_file()
            {
                return Some(bin.to_path_buf());
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn as_postgres(as_root: bool, program: &Path) -> Command {
    if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command) -> Result<(), String> {
    let out = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{command:?}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// Test hooks inside a store.
#[derive(Default)]
pub(crate) struct Hooks {
    pause: Mutex<Option<(oneshot::Sender<i32>, oneshot::Receiver<()>)>>,
}

impl Hooks {
    /// Called with the transaction open and everything written, just before `COMMIT`.
    pub(crate) async fn before_commit(&self, client: &deadpool_postgres::Object) {
        let pause = self.pause.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((tell, go)) = pause {
            if let Ok(row) = client.query_one("SELECT pg_backend_pid()", &[]).await {
                let _ = tell.send(row.get(0));
            }
            let _ = go.await;
        }
    }
}

/// A commit held just before its `COMMIT`.
pub struct HeldCommit {
    /// Sends the backend's pid once the commit is held there.
    pub backend_pid: oneshot::Receiver<i32>,
    /// Let the commit go on (send, or drop).
    pub release: oneshot::Sender<()>,
}

impl PostgresStorage {
    /// Hold the next commit just before `COMMIT`, to cut its connection there.
    pub fn hold_next_commit(&self) -> HeldCommit {
        let (tell, backend_pid) = oneshot::channel();
        let (release, go) = oneshot::channel();
        *self.inner.hooks.pause.lock().unwrap_or_else(|p| p.into_inner()) = Some((tell, go));
        HeldCommit { backend_pid, release }
    }
}

impl PostgresStorage {
    /// A server setting as this store's sessions see it.
    pub async fn setting(&self, name: &str) -> String {
        let client = self.inner.pool.get().await.expect("a pooled connection");
        let row = client
            .query_one("SELECT current_setting($1)", &[&name])
            .await
            .expect("current_setting");
        row.get(0)
    }
}

/// How many backends wait on a lock, sampled every 20 ms from [`LockWaits::start`] until
/// [`LockWaits::stop`]: the benches' measure of commits waiting for one another.
pub struct LockWaits {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<f64>,
}

impl LockWaits {
    /// Start sampling the server at `url`.
    pub async fn start(url: &str) -> LockWaits {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let (mut sum, mut samples) = (0i64, 0i64);
            loop {
                let sql = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'";
                sum += client.query_one(sql, &[]).await.expect("sample").get::<_, i64>(0);
                samples += 1;
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
                }
            }
            sum as f64 / samples.max(1) as f64
        });
        LockWaits { stop, task }
    }

    /// Stop sampling: the mean number of backends waiting.
    pub async fn stop(self) -> f64 {
        let _ = self.stop.send(());
        self.task.await.expect("sampler")
    }
}
