//! Write-level group commit: concurrent commits are checked one after another by a single
//! leader against an overlay of the group's earlier writes, applied together as one atomic
//! sled batch, and made durable by one flush. A commit that fails its version check is
//! answered `Conflict` and contributes nothing; the others are unaffected.
//!
//! No commit is answered before the flush that covers it has returned.

use protopay_engine::{Error, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Pending writes of a group: the final value of each key (`None` = removed).
#[derive(Default)]
pub struct Overlay {
    writes: HashMap<Vec<u8>, Option<Vec<u8>>>,
}

/// A commit's view while it is checked: its own writes over the group's over the tree.
pub struct Staging<'a> {
    tree: &'a sled::Tree,
    group: &'a Overlay,
    own: Overlay,
}

impl<'a> Staging<'a> {
    /// Read `key` as the group would leave it.
    pub fn get(&self, key: &[u8]) -> std::result::Result<Option<Vec<u8>>, sled::Error> {
        if let Some(v) = self.own.writes.get(key).or_else(|| self.group.writes.get(key)) {
            return Ok(v.clone());
        }
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    /// Write `key`.
    pub fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.own.writes.insert(key, Some(value));
    }

    /// Remove `key`.
    pub fn remove(&mut self, key: Vec<u8>) {
        self.own.writes.insert(key, None);
    }
}

/// Something to commit: a closure that checks and stages its writes, returning its answer.
pub type Stage = Box<dyn FnOnce(&mut Staging<'_>) -> Result<u64> + Send>;

struct Waiting {
    stage: Stage,
    reply: oneshot::Sender<Result<u64>>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiting>,
    leading: bool,
}

/// The group committer of one tree.
#[derive(Clone)]
pub struct GroupCommit {
    db: sled::Db,
    tree: sled::Tree,
    queue: Arc<Mutex<Queue>>,
    fail: Arc<dyn Fn(Arc<sled::Error>) -> Error + Send + Sync>,
    /// One count per live clone (leaders included), so that `close` can wait for the last.
    clones: Arc<()>,
    /// Groups made durable so far (each one flush).
    flushes: Arc<AtomicU64>,
}

impl GroupCommit {
    /// A committer for `tree` of `db`; `fail` turns sled errors into the engine's.
    pub fn new(
        db: sled::Db,
        tree: sled::Tree,
        fail: impl Fn(Arc<sled::Error>) -> Error + Send + Sync + 'static,
    ) -> Self {
        GroupCommit {
            db,
            tree,
            queue: Arc::default(),
            fail: Arc::new(fail),
            clones: Arc::default(),
            flushes: Arc::default(),
        }
    }

    /// Groups made durable so far: each is one flush, so commits / flushes is how many
    /// commits shared a sync.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// Wait until no other clone is alive (a leader finishing its last group), flush, and
    /// drop this one: with it go the last handles on sled's files.
    pub async fn close(self) -> std::result::Result<(), sled::Error> {
        while Arc::strong_count(&self.clones) > 1 {
            tokio::task::yield_now().await;
        }
        let GroupCommit { db, tree, .. } = self;
        tokio::task::spawn_blocking(move || {
            let flushed = db.flush().map(drop);
            drop(tree);
            drop(db);
            flushed
        })
        .await
        .unwrap_or_else(|join| Err(sled::Error::ReportableBug(join.to_string())))
    }

    /// The database.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Commit `stage` with whatever else is waiting; return once it is durable (or refused).
    pub async fn commit(&self, stage: Stage) -> Result<u64> {
        let (reply, answer) = oneshot::channel();
        let lead = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.waiting.push(Waiting { stage, reply });
            !std::mem::replace(&mut q.leading, true)
        };
        if lead {
            // The leader runs as its own task: a caller cancelled mid-commit (a host task
            // aborted) must not leave the group without a leader.
            let this = self.clone();
            tokio::spawn(async move { this.lead().await });
        }
        answer.await.unwrap_or_else(|_| {
            Err((self.fail)(Arc::new(sled::Error::ReportableBug(
                "group commit dropped".into(),
            ))))
        })
    }

    /// Take groups until none is waiting, then step down.
    async fn lead(&self) {
        loop {
            let group = {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                if q.waiting.is_empty() {
                    q.leading = false;
                    return;
                }
                std::mem::take(&mut q.waiting)
            };
            let mut overlay = Overlay::default();
            let mut accepted = Vec::with_capacity(group.len());
            for w in group {
                let mut staging = Staging {
                    tree: &self.tree,
                    group: &overlay,
                    own: Overlay::default(),
                };
                match (w.stage)(&mut staging) {
                    Ok(answer) => {
                        let own = staging.own;
                        overlay.writes.extend(own.writes);
                        accepted.push((w.reply, answer));
                    }
                    Err(e) => {
                        let _ = w.reply.send(Err(e));
                    }
                }
            }
            let mut batch = sled::Batch::default();
            for (key, value) in overlay.writes {
                match value {
                    Some(v) => batch.insert(key, v),
                    None => batch.remove(key),
                }
            }
            let (db, tree) = (self.db.clone(), self.tree.clone());
            let written = tokio::task::spawn_blocking(move || {
                tree.apply_batch(batch)?;
                db.flush().map(drop)
            })
            .await;
            self.flushes.fetch_add(1, Ordering::Relaxed);
            let failure = match written {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(Arc::new(e)),
                Err(join) => Some(Arc::new(sled::Error::ReportableBug(join.to_string()))),
            };
            for (reply, answer) in accepted {
                let _ = reply.send(match &failure {
                    None => Ok(answer),
                    Some(e) => Err((self.fail)(e.clone())),
                });
            }
        }
    }
}
