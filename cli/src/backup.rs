//! Backups of a sled store, and restoring one.
//!
//! `protopay backup --to DIR` copies the store while it runs: with `--url`, the server takes
//! the copy (`POST /admin/backup`, operate token; `DIR` is on the server's machine) and
//! commits go on meanwhile; without it, the store of `--config` is opened directly (no server
//! may hold it). The copy is a whole store, synced, as of the moment it ended.
//!
//! `protopay restore --from DIR` installs a backup as the store of `--config`: it copies the
//! backup (which stays as it was), opens the copy, checks every invariant, and only then
//! moves it into place. It refuses to replace a store that exists.
//!
//! On PostgreSQL the database's own backups are the backups (see the README).

use crate::CliError;
use crate::commands::Output;
use crate::config::{self, Store};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use protopay::api::{ApiAuth, operate_only};
use protopay::sled::{SledError, SledStorage};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `POST /admin/backup {"to": DIR}` on a server whose store is `sled` (operate token).
pub(crate) fn router(sled: Option<SledStorage>, auth: ApiAuth) -> Router {
    operate_only(Router::new().route("/admin/backup", post(take)).with_state(sled), auth)
}

async fn take(State(sled): State<Option<SledStorage>>, body: Option<Json<Value>>) -> (StatusCode, Json<Value>) {
    let failure =
        |status: StatusCode, code: &str, message: &str| (status, Json(json!({ "code": code, "message": message })));
    let Some(store) = sled else {
        return failure(
            StatusCode::CONFLICT,
            "not_sled",
            "this server's store is PostgreSQL: back it up with the database's own tools (pg_dump, base backups)",
        );
    };
    let Some(to) = body.as_ref().and_then(|b| b["to"].as_str()).filter(|t| !t.is_empty()) else {
        return failure(
            StatusCode::BAD_REQUEST,
            "invalid",
            "the body must be {\"to\": \"<a new directory on the server>\"}",
        );
    };
    match store.backup(to).await {
        Ok(report) => (StatusCode::OK, Json(json!(report))),
        Err(SledError::BackupTarget { .. }) => failure(
            StatusCode::CONFLICT,
            "backup_target_exists",
            "the backup's directory exists and is not empty: name a new one",
        ),
        Err(SledError::BackupRunning { .. }) => failure(
            StatusCode::CONFLICT,
            "backup_running",
            "a backup is already being taken: wait for it to finish",
        ),
        Err(e) => {
            tracing::error!(error = %e, "backup failed");
            failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                "backup_failed",
                "the backup failed (the server's log says why); the store is unaffected",
            )
        }
    }
}

/// `protopay backup --to DIR`.
pub(crate) async fn backup(
    server: Option<(&str, String)>,
    config_file: &Path,
    to: &Path,
    out: Output,
) -> Result<ExitCode, CliError> {
    let report = match server {
        Some((url, token)) => {
            let api = crate::client::Api::remote(url, token)?;
            api.post("/admin/backup", &json!({ "to": to })).await?
        }
        None => {
            let path = sled_path(config_file)?;
            let store = SledStorage::open(&path)?;
            let taken = store.backup(to).await;
            protopay::storage::Storage::close(&store)
                .await
                .map_err(protopay::Error::from)?;
            json!(taken?)
        }
    };
    out.print(&report, |r| {
        format!(
            "backup written to {}: {} keys, events up to #{}, {} commits landed while it was copied ({} ms)\n",
            r["path"].as_str().unwrap_or_default(),
            r["keys"],
            r["lastSeq"],
            r["commitsDuringCopy"],
            r["tookMs"],
        )
    });
    Ok(ExitCode::SUCCESS)
}

/// `protopay restore --from DIR`.
pub(crate) async fn restore(config_file: &Path, from: &Path, out: Output) -> Result<ExitCode, CliError> {
    let settings = config::load_for_store(config_file)?;
    let Store::Sled(target) = settings.store.clone() else {
        return Err(CliError::Usage(
            "the configured store is PostgreSQL: restore the database's own backup (pg_restore) instead".into(),
        ));
    };
    if std::fs::read_dir(&target).is_ok_and(|mut e| e.next().is_some()) {
        return Err(CliError::Usage(format!(
            "{} holds a store: move it aside first (keep it: it may hold commits the backup lacks)",
            target.display()
        )));
    }
    let staging = sibling(&target, "restoring");
    let _ = std::fs::remove_dir_all(&staging);
    copy_dir(from, &staging).map_err(|source| CliError::Restore {
        path: from.to_path_buf(),
        source,
    })?;
    let engine = crate::serve::open_engine(&settings.engine, Store::Sled(staging.clone()))
        .await?
        .engine;
    let checked = engine.check().await;
    engine.shutdown().await?;
    let report = checked?;
    if !report.violations.is_empty() {
        let _ = std::fs::remove_dir_all(&staging);
        out.print(&json!({ "violations": report.violations }), |r| {
            let mut s = String::from("the backup does not check clean; nothing was restored:\n");
            for v in r["violations"].as_array().into_iter().flatten() {
                s.push_str(&format!("  {}\n", v.as_str().unwrap_or_default()));
            }
            s
        });
        return Ok(ExitCode::from(1));
    }
    std::fs::rename(&staging, &target)
        .and_then(|()| sync_dir(target.parent().unwrap_or(Path::new("."))))
        .map_err(|source| CliError::Restore {
            path: target.clone(),
            source,
        })?;
    let summary = json!({
        "path": target,
        "protocols": report.protocols,
        "orders": report.orders,
    });
    out.print(&summary, |r| {
        format!(
            "restored into {}: {} protocols, {} orders, every invariant holds.\n\
             What the backup lacks is every commit after it was taken. Before starting the server, \
             see the README (Backups): orders your systems made since then must be looked up at the \
             payment system, never sent again.\n",
            r["path"].as_str().unwrap_or_default(),
            r["protocols"],
            r["orders"],
        )
    });
    Ok(ExitCode::SUCCESS)
}

fn sled_path(config_file: &Path) -> Result<PathBuf, CliError> {
    match config::load_for_store(config_file)?.store {
        Store::Sled(path) => Ok(path),
        Store::Postgres { .. } => Err(CliError::Usage(
            "the configured store is PostgreSQL: back it up with pg_dump or base backups (see the README)".into(),
        )),
    }
}

/// `dir` with `.suffix` added to its name.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    dir.with_file_name(name)
}

/// Copy a store's directory, every file synced.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
            std::fs::File::open(&target)?.sync_all()?;
        }
    }
    sync_dir(to)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
