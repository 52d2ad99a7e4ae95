//! Opening a store: taking sled's lock (asked of the kernel first, for a typed answer), reading
//! the format marker, replaying the write-ahead log into sled (checked against what sled
//! says it applied), upgrading an older format, and a checkpoint before anything new is
//! written.

use crate::lock::held_by_another;
use crate::{FORMAT_KEY, Handles, SledError, SledStorage, codec, group, upgrade, wal};
use protopay_engine::storage::StorageError;
use std::path::Path;
use std::sync::Arc;

impl SledStorage {
    /// Open (or create) the store in `path`.
    pub fn open(path: impl AsRef<Path>) -> std::result::Result<Self, SledError> {
        let path = path.as_ref().to_path_buf();
        // sled reports a held lock only as text; ask the kernel first, for a typed answer.
        if held_by_another(&path.join("db")) {
            return Err(SledError::Locked { path });
        }
        let classify = |source: sled::Error| match &source {
            sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                SledError::Locked { path: path.clone() }
            }
            sled::Error::Corruption { .. } => SledError::Corrupt {
                path: path.clone(),
                reason: source.to_string(),
            },
            _ => SledError::Sled {
                path: path.clone(),
                source,
            },
        };
        // sled panics on some damaged files rather than erroring; keep that from reaching the
        // host as a panic.
        let opened = std::panic::catch_unwind(|| {
            sled::Config::new()
                .path(&path)
                .mode(sled::Mode::HighThroughput)
                // Durability is the log's job; sled is synced at checkpoints.
                .flush_every_ms(None)
                .open()
        });
        let db = match opened {
            Ok(result) => result.map_err(classify)?,
            Err(_) => {
                return Err(SledError::Corrupt {
                    path,
                    reason: "sled could not read its files".into(),
                });
            }
        };
        let tree = db.open_tree("protopay").map_err(classify)?;
        let format_key = codec::key(codec::prefix::META, FORMAT_KEY);
        // Older formats are upgraded in place (`upgrade.rs`); a new store is marked at once.
        let (new_marker, upgrade_from) = match tree.get(&format_key).map_err(classify)? {
            Some(f) if f.as_ref() == codec::FORMAT => (false, None),
            Some(f) if codec::OLDER_FORMATS.contains(&f.as_ref()) => (true, Some(f)),
            Some(f) => {
                return Err(SledError::UnsupportedFormat {
                    path,
                    found: String::from_utf8_lossy(&f).into_owned(),
                });
            }
            None if tree.is_empty() && db.tree_names().len() <= 2 => (true, None),
            None => {
                return Err(SledError::Corrupt {
                    path,
                    reason: "records without a format marker".into(),
                });
            }
        };
        // What was durable only in the log goes into sled again; then sled is synced for
        // real and the log replaced by an empty one, before anything new is written.
        let recovered = wal::Wal::open(&path)?;
        let logged = tree.get(codec::logged_key()).map_err(classify)?;
        recovered.check_against(logged.as_deref().and_then(wal::Logged::from_bytes))?;
        let wal::Recovered {
            wal: mut log,
            groups,
            torn_bytes,
        } = recovered;
        let replayed = groups.len();
        for writes in groups {
            group::apply_group(&tree, &writes).map_err(classify)?;
        }
        if let Some(from) = upgrade_from {
            upgrade::upgrade(&tree, &from).map_err(|stop| stopped(stop, &path))?;
        }
        if new_marker {
            tree.insert(&format_key, codec::FORMAT).map_err(classify)?;
        }
        if new_marker || log.needs_reset() {
            group::checkpoint(&db, &path, &mut log).map_err(classify)?;
        }
        if replayed > 0 || torn_bytes > 0 {
            tracing::info!(
                path = %path.display(),
                groups = replayed,
                torn_bytes,
                "recovered from the write-ahead log"
            );
        }
        let last_seq = upgrade::last_event_seq(&tree).map_err(|stop| stopped(stop, &path))?;
        let handles = Handles {
            group: group::GroupCommit::new(db.clone(), tree.clone(), path.clone(), log, last_seq, {
                let path = path.clone();
                move |source| {
                    StorageError::Failed(Arc::new(SledError::Flush {
                        path: path.clone(),
                        source,
                    }))
                }
            }),
            tree: tree.clone(),
        };
        let store = SledStorage {
            path: path.clone(),
            open: Arc::new(std::sync::RwLock::new(Some(handles))),
            claims: Arc::default(),
            leases: Arc::default(),
        };
        Ok(store)
    }
}

/// Why reading the tree at open stopped, as the caller's error.
fn stopped(stop: upgrade::Stop, path: &Path) -> SledError {
    match stop {
        upgrade::Stop::Sled(source) => SledError::Sled {
            path: path.to_path_buf(),
            source,
        },
        upgrade::Stop::Undecodable { key, reason } => SledError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("{}: {reason}", String::from_utf8_lossy(&key)),
        },
    }
}
