//! Online backup: a consistent copy of a live store, taken while commits go on.
//!
//! The copy is a fuzzy scan made exact (as a database's fuzzy checkpoint is): from the moment
//! the copy starts, the group committer keeps every group it applies; the tree is then read
//! through while commits continue — so the scan sees some keys before and some after a group
//! — and at the end the kept groups are applied to the copy in order. Each group is the final
//! value of every key it wrote, so the copy ends as the store was when the keeping stopped:
//! every commit acknowledged before that is in it, whole, and none after it. Commits wait only
//! for the two moments the keeping starts and stops (taking the log's lock between groups).
//!
//! The copy is built in a sibling directory, synced (sled's files `fsync`ed, a fresh log),
//! and renamed to its name: a backup directory either is a whole store or does not exist.

use crate::group::{GroupCommit, apply_group};
use crate::{SledError, SledStorage, codec};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What a backup copied.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupReport {
    /// The backup's directory: a store, to be opened (or restored) as any other.
    pub path: PathBuf,
    /// Keys copied (records, indexes and events).
    pub keys: u64,
    /// Commits that landed while the tree was read, and were applied to the copy.
    pub commits_during_copy: u64,
    /// The newest event in the copy: everything up to it is in the backup.
    pub last_seq: u64,
    /// How long it took.
    pub took_ms: u64,
}

/// Copy the live store `from` (its committer and tree) into the new directory `to`.
pub(crate) async fn backup(
    from: &SledStorage,
    group: GroupCommit,
    tree: sled::Tree,
    to: &Path,
) -> Result<BackupReport, SledError> {
    let started = Instant::now();
    let target = |source: std::io::Error| SledError::Backup {
        path: to.to_path_buf(),
        source,
    };
    if std::fs::read_dir(to).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(SledError::BackupTarget { path: to.to_path_buf() });
    }
    let name = to
        .file_name()
        .ok_or_else(|| SledError::BackupTarget { path: to.to_path_buf() })?;
    let parent = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let building = parent.join(format!(".{}.partial", name.to_string_lossy()));
    if building.exists() {
        // A backup that died half way: never a store.
        std::fs::remove_dir_all(&building).map_err(target)?;
    }
    let copy = SledStorage::open(&building)?;
    let copy_tree = copy.tree().map_err(|_| SledError::Closed { path: building.clone() })?;
    let started_copy = group.start_copy().map_err(|source| SledError::Sled {
        path: from.path.clone(),
        source,
    })?;
    if !started_copy {
        return Err(SledError::BackupRunning {
            path: from.path.clone(),
        });
    }
    let copied = tokio::task::spawn_blocking(move || -> Result<(u64, u64, sled::Tree), sled::Error> {
        let logged = codec::logged_key();
        let mut keys = 0;
        for entry in tree.iter() {
            let (key, value) = entry?;
            // Where the last group ends in *this* store's log means nothing to the copy's.
            if key.as_ref() == logged.as_slice() {
                continue;
            }
            copy_tree.insert(key, value)?;
            keys += 1;
        }
        let during = group.take_copy();
        let commits = during.len() as u64;
        for writes in &during {
            apply_group(&copy_tree, writes)?;
        }
        Ok((keys, commits, copy_tree))
    })
    .await;
    let (keys, commits_during_copy, copy_tree) = match copied {
        Ok(Ok(done)) => done,
        Ok(Err(source)) => {
            return Err(SledError::Sled {
                path: building.clone(),
                source,
            });
        }
        Err(join) => {
            return Err(SledError::Sled {
                path: building.clone(),
                source: sled::Error::ReportableBug(join.to_string()),
            });
        }
    };
    let last_seq = crate::upgrade::last_event_seq(&copy_tree).unwrap_or(0);
    drop(copy_tree);
    // Sync sled's files for real, and leave a fresh log: the copy is durable and whole.
    protopay_engine::storage::Storage::close(&copy)
        .await
        .map_err(|e| SledError::Backup {
            path: building.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
    std::fs::rename(&building, to).map_err(target)?;
    std::fs::File::open(&parent)
        .and_then(|d| d.sync_all())
        .map_err(target)?;
    Ok(BackupReport {
        path: to.to_path_buf(),
        keys,
        commits_during_copy,
        last_seq,
        took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}
