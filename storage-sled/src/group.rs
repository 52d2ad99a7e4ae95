//! Write-level group commit: concurrent commits are checked one after another by a single
//! leader against the group's earlier staged writes, written together to the
//! write-ahead log and made durable by one `fdatasync` (see `wal.rs`), put in the overlay of
//! unapplied groups (`unapplied.rs`) and answered; sled gets the group afterwards, key by
//! key, off the commit path. A commit that fails its version check is answered `Conflict`
//! and contributes nothing; the others are unaffected. When the log has grown past
//! [`CHECKPOINT_BYTES`], sled's files are synced for real and the log starts empty.
//!
//! No commit is answered or visible before the sync that covers it has returned. Who leads:
//! - a commit that finds no leader leads its own group on its own thread (on a multi-thread
//!   runtime), then hands on: no hand-off or wake-up sits between a lone commit and its
//!   sync. It does so only when nothing but the sync can make it wait (`lead_one`);
//! - otherwise, and for every later group while commits keep coming, a leader is a blocking
//!   task of its own, which a caller that is cancelled cannot take down with it.
//!
//! Once a group is answered and nobody applies, the leader hands leading on (to a new task,
//! if commits wait) and becomes the applier: sled's writes run beside the next group's sync.

use crate::unapplied::{LoggedGroup, Unapplied, Wait};
use crate::wal::{Wal, Writes};
use protopay_engine::storage::{Result, StorageError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// The staged writes of a group: the final value of each key (`None` = removed), and the seq of
/// its last event if it appends any.
#[derive(Default)]
pub(crate) struct Staged {
    writes: HashMap<Vec<u8>, Option<Vec<u8>>>,
    last_seq: Option<u64>,
}

/// What the leader last read or wrote of each key. The leader is the only writer, so what
/// it saw of a key is what the store holds. Most commits read the same few keys again (the
/// listings' counts, the last seq, an order's index entries), and each commit in a group is
/// checked in turn on one thread, so a read from sled (microseconds) there is a read every
/// commit in the group waits for. Keys no commit reads (`codec::unread_by_commits`: events,
/// exchanges, index entries) are not remembered: copying them cost more than all the rest,
/// and they would crowd out the keys that are read. A cache only: what it lacks is read
/// from the overlay or sled, which hold the same.
#[derive(Default)]
pub(crate) struct Seen {
    values: HashMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Seen {
    /// Keys kept at most; beyond, it starts again empty.
    const MAX_KEYS: usize = 16_384;

    fn remember(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        if self.values.len() >= Self::MAX_KEYS {
            self.values.clear();
        }
        self.values.insert(key.to_vec(), value);
    }
}

/// A commit's view while it is checked: its own writes over the group's over the store's
/// (what the leader has seen, else the groups logged but not yet applied, else sled).
pub(crate) struct Staging<'a> {
    tree: &'a sled::Tree,
    unapplied: &'a Unapplied,
    seen: &'a mut Seen,
    /// The seq of the last event logged before this group.
    logged_last_seq: u64,
    group: &'a Staged,
    own: Staged,
}

impl<'a> Staging<'a> {
    /// Read `key` as the group would leave it.
    pub(crate) fn get(&mut self, key: &[u8]) -> std::result::Result<Option<Vec<u8>>, sled::Error> {
        self.look(key, |value| value.map(<[u8]>::to_vec))
    }

    /// Look at `key` as the group would leave it, without copying it out: a record's version
    /// check needs its first 8 bytes, not the record.
    pub(crate) fn look<R>(
        &mut self,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> std::result::Result<R, sled::Error> {
        if let Some(v) = self.own.writes.get(key).or_else(|| self.group.writes.get(key)) {
            return Ok(f(v.as_deref()));
        }
        if let Some(v) = self.seen.values.get(key) {
            return Ok(f(v.as_deref()));
        }
        let value = match self.unapplied.get(key) {
            Some(v) => v,
            None => self.tree.get(key)?.map(|v| v.to_vec()),
        };
        let answer = f(value.as_deref());
        self.seen.remember(key, value);
        Ok(answer)
    }

    /// The seq of the last event, as the group would leave it.
    pub(crate) fn last_seq(&self) -> u64 {
        self.own
            .last_seq
            .or(self.group.last_seq)
            .unwrap_or(self.logged_last_seq)
    }

    /// Append events up to `seq` (the store's seqs are consecutive: the caller wrote the
    /// events from [`Staging::last_seq`] + 1 up to it).
    pub(crate) fn set_last_seq(&mut self, seq: u64) {
        debug_assert!(seq >= self.last_seq(), "the event log only grows");
        self.own.last_seq = Some(seq);
    }

    /// Write `key`.
    pub(crate) fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.own.writes.insert(key, Some(value));
    }

    /// Remove `key`.
    pub(crate) fn remove(&mut self, key: Vec<u8>) {
        self.own.writes.insert(key, None);
    }
}

/// Something to commit: a closure that checks and stages its writes, returning its answer.
pub(crate) type Stage = Box<dyn FnOnce(&mut Staging<'_>) -> Result<u64> + Send>;

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
pub(crate) struct GroupCommit {
    db: sled::Db,
    tree: sled::Tree,
    /// The store's directory (sled's files and the log).
    dir: PathBuf,
    /// Held by the leader while it checks, logs and answers a group, and by whatever must
    /// happen between two groups: a checkpoint, a backup's start and end, close.
    wal: Arc<Mutex<Wal>>,
    queue: Arc<Mutex<Queue>>,
    fail: Arc<dyn Fn(Arc<sled::Error>) -> StorageError + Send + Sync>,
    /// One count per live clone (leaders included), so that `close` can wait for the last.
    clones: Arc<()>,
    /// Groups made durable so far (each one flush).
    flushes: Arc<AtomicU64>,
    /// Groups logged, not yet in sled: what every read looks through first.
    unapplied: Arc<Unapplied>,
    /// What the leader has read and written.
    seen: Arc<Mutex<Seen>>,
    /// The seq of the last event logged: the store's last seq (the last `e/` key), kept here
    /// rather than written with every commit.
    last_seq: Arc<AtomicU64>,
    /// While an online backup copies the tree (`backup.rs`): every group logged meanwhile,
    /// in order. Filled under the log's lock, like the log itself.
    copying: Arc<Mutex<Option<Vec<Writes>>>>,
}

impl GroupCommit {
    /// A committer for `tree` of `db`; `fail` turns sled errors into the engine's.
    pub(crate) fn new(
        db: sled::Db,
        tree: sled::Tree,
        dir: PathBuf,
        wal: Wal,
        last_seq: u64,
        fail: impl Fn(Arc<sled::Error>) -> StorageError + Send + Sync + 'static,
    ) -> Self {
        GroupCommit {
            db,
            tree,
            dir,
            wal: Arc::new(Mutex::new(wal)),
            queue: Arc::default(),
            fail: Arc::new(fail),
            clones: Arc::default(),
            flushes: Arc::default(),
            unapplied: Arc::default(),
            seen: Arc::default(),
            last_seq: Arc::new(AtomicU64::new(last_seq)),
            copying: Arc::default(),
        }
    }

    /// The seq of the last event committed: every event up to it can be read.
    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Acquire)
    }

    /// The groups logged but not yet applied to sled.
    pub(crate) fn unapplied(&self) -> &Unapplied {
        &self.unapplied
    }

    /// Wait until sled holds every group logged (applying them here if nobody is).
    fn all_applied(&self) -> std::result::Result<(), sled::Error> {
        self.wait(Unapplied::wait_all_applied)
    }

    fn wait(
        &self,
        until: fn(&Unapplied) -> std::result::Result<Wait, sled::Error>,
    ) -> std::result::Result<(), sled::Error> {
        loop {
            match until(&self.unapplied)? {
                Wait::Done => return Ok(()),
                Wait::ApplyYourself => self.apply(),
            }
        }
    }

    /// As the applier: apply the waiting groups to sled until none waits (or sled fails,
    /// which stops applying for good). All the groups waiting at once: their final values
    /// (a key written by several, once), by two threads when there are many.
    fn apply(&self) {
        while let Some(groups) = self.unapplied.next() {
            match self.apply_groups(&groups) {
                Ok(()) => groups.iter().for_each(|group| self.unapplied.applied(group)),
                Err(e) => {
                    tracing::error!(
                        path = %self.dir.display(),
                        error = %e,
                        "sled failed to apply a logged group; the store takes no more commits \
                         until a restart replays the log"
                    );
                    return self.unapplied.failed(groups, e);
                }
            }
        }
    }

    /// Write `groups` (oldest first) into sled.
    fn apply_groups(&self, groups: &[LoggedGroup]) -> std::result::Result<(), sled::Error> {
        let Some(last) = groups.last() else {
            return Ok(());
        };
        let mut last_values: HashMap<&[u8], Option<&[u8]>> = HashMap::new();
        for group in groups {
            for (key, value) in &group.writes {
                last_values.insert(key, value.as_deref());
            }
        }
        // The log's position first: sled writes in order, so if any of these writes survive a
        // crash in sled's files, this does, and a damaged record of the groups is then known
        // for damage (`Recovered::check_against`), never taken for a torn one.
        self.tree
            .insert(crate::codec::logged_key(), &last.logged.to_bytes()[..])?;
        // In key order: consecutive writes land in the same sled leaf while it is in the CPU's
        // cache, and the two halves below are two ranges that share at most one leaf.
        let mut writes: Vec<(&[u8], Option<&[u8]>)> = last_values.into_iter().collect();
        writes.sort_unstable_by(|a, b| a.0.cmp(b.0));
        if writes.len() < PARALLEL_APPLY_KEYS {
            return apply_writes(&self.tree, writes);
        }
        // Each key is written once, so the two halves never race on a key.
        let (one, other) = writes.split_at(writes.len() / 2);
        std::thread::scope(|scope| {
            let helper = scope.spawn(|| apply_writes(&self.tree, one.iter().copied()));
            let mine = apply_writes(&self.tree, other.iter().copied());
            helper
                .join()
                .unwrap_or_else(|_| Err(sled::Error::ReportableBug("an applier thread panicked".into())))
                .and(mine)
        })
    }

    /// Start keeping every group logged from now on (between two groups, once sled holds
    /// every earlier one); `false` if a copy is already being taken.
    pub(crate) fn start_copy(&self) -> std::result::Result<bool, sled::Error> {
        let _between_groups = self.wal.lock().unwrap_or_else(|p| p.into_inner());
        self.all_applied()?;
        let mut copying = self.copying.lock().unwrap_or_else(|p| p.into_inner());
        if copying.is_some() {
            return Ok(false);
        }
        *copying = Some(Vec::new());
        Ok(true)
    }

    /// Stop keeping groups (between two groups) and return those kept, oldest first.
    pub(crate) fn take_copy(&self) -> Vec<Writes> {
        let _between_groups = self.wal.lock().unwrap_or_else(|p| p.into_inner());
        self.copying
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default()
    }

    /// Groups made durable so far: each is one flush, so commits / flushes is how many
    /// commits shared a sync.
    pub(crate) fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// Wait until no other clone is alive (a leader finishing its last group), checkpoint,
    /// and drop this one: with it go the last handles on sled's files.
    pub(crate) async fn close(self) -> std::result::Result<(), sled::Error> {
        while Arc::strong_count(&self.clones) > 1 {
            tokio::task::yield_now().await;
        }
        tokio::task::spawn_blocking(move || {
            let done = {
                let mut wal = self.wal.lock().unwrap_or_else(|p| p.into_inner());
                self.all_applied()
                    .and_then(|()| checkpoint(&self.db, &self.dir, &mut wal))
            };
            drop(self);
            done
        })
        .await
        .unwrap_or_else(|join| Err(sled::Error::ReportableBug(join.to_string())))
    }

    /// The database.
    pub(crate) fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Commit `stage` with whatever else is waiting; return once it is durable (or refused).
    pub(crate) async fn commit(&self, stage: Stage) -> Result<u64> {
        let (reply, answer) = oneshot::channel();
        let lead = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.waiting.push(Waiting { stage, reply });
            !std::mem::replace(&mut q.leading, true)
        };
        if lead {
            let this = self.clone();
            if tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread {
                // The only worker must not block: the leader runs as its own task.
                tokio::task::spawn_blocking(move || this.lead());
            } else {
                // The caller leads its own group, on its own thread: no hand-off to another
                // thread and no wake-up on the commit path, only the sync. This blocks the
                // worker for about one `fdatasync`, what a durable commit costs its caller
                // anyway; `lead_one` hands off whatever could wait longer. (`block_in_place`
                // was measured: its hand-over of the worker cost more than the sync saved —
                // README, "The sled commit path".) A caller cancelled at its next await finds its
                // group already committed.
                this.lead_one();
            }
        }
        answer.await.unwrap_or_else(|_| {
            Err((self.fail)(Arc::new(sled::Error::ReportableBug(
                "group commit dropped".into(),
            ))))
        })
    }

    /// Lead one group on the caller's thread, then hand both roles on to tasks of their own:
    /// leading if commits are waiting, applying if nobody applies. Only when nothing but the
    /// log's sync can make this thread wait: no checkpoint due (nor one, or a backup's start,
    /// holding the log), and room for the group among the unapplied. Otherwise the group
    /// goes to a leader of its own, which may wait.
    fn lead_one(&self) {
        let mut wal = match self.wal.try_lock() {
            Ok(wal) if wal.bytes() <= CHECKPOINT_BYTES && self.unapplied.has_room() => wal,
            _ => {
                let this = self.clone();
                tokio::task::spawn_blocking(move || this.lead());
                return;
            }
        };
        self.lead_group(&mut wal);
        drop(wal);
        if self.unapplied.start_applying() {
            let this = self.clone();
            tokio::task::spawn_blocking(move || this.apply());
        }
        self.hand_on_leading();
    }

    /// Lead groups until none is waiting, then step down; or, once a group is answered and
    /// nobody applies, hand leading on and become the applier. Checkpoint when the log is
    /// long, after answering the group that made it so.
    fn lead(&self) {
        loop {
            {
                let mut wal = self.wal.lock().unwrap_or_else(|p| p.into_inner());
                if !self.lead_group(&mut wal) {
                    return;
                }
                if wal.bytes() > CHECKPOINT_BYTES {
                    let done = self
                        .all_applied()
                        .and_then(|()| checkpoint(&self.db, &self.dir, &mut wal));
                    if let Err(e) = done {
                        // The log keeps every group meanwhile; the next leader tries again.
                        tracing::error!(path = %self.dir.display(), error = %e, "checkpoint failed");
                    }
                }
            }
            if self.unapplied.start_applying() {
                self.hand_on_leading();
                return self.apply();
            }
        }
    }

    /// Check, log and answer the commits waiting; `false` (leading given up) if none was.
    fn lead_group(&self, wal: &mut Wal) -> bool {
        let group = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            if q.waiting.is_empty() {
                q.leading = false;
                return false;
            }
            std::mem::take(&mut q.waiting)
        };
        let mut staged = Staged::default();
        let mut accepted = Vec::with_capacity(group.len());
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let logged_last_seq = self.last_seq();
            for w in group {
                let mut staging = Staging {
                    tree: &self.tree,
                    unapplied: &self.unapplied,
                    seen: &mut seen,
                    logged_last_seq,
                    group: &staged,
                    own: Staged::default(),
                };
                match (w.stage)(&mut staging) {
                    Ok(answer) => {
                        let own = staging.own;
                        staged.writes.extend(own.writes);
                        staged.last_seq = own.last_seq.or(staged.last_seq);
                        accepted.push((w.reply, answer));
                    }
                    Err(e) => {
                        let _ = w.reply.send(Err(e));
                    }
                }
            }
        }
        // A group that writes nothing (every commit in it refused, or writing what is
        // already there) has nothing to make durable: the log never holds an empty record.
        let failure = if staged.writes.is_empty() {
            None
        } else {
            let written = self.write(wal, staged.writes.into_iter().collect());
            if let (Ok(()), Some(seq)) = (&written, staged.last_seq) {
                // After the group is readable, before anyone hears of it.
                self.last_seq.store(seq, Ordering::Release);
            }
            written.err().map(Arc::new)
        };
        for (reply, answer) in accepted {
            let _ = reply.send(match &failure {
                None => Ok(answer),
                Some(e) => Err((self.fail)(e.clone())),
            });
        }
        true
    }

    /// Step down as leader, for a new one if commits are waiting.
    fn hand_on_leading(&self) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.leading = !q.waiting.is_empty();
        if q.leading {
            let this = self.clone();
            tokio::task::spawn_blocking(move || this.lead());
        }
    }

    /// Make a group durable in the log, then visible (in the overlay, for the applier to
    /// bring to sled).
    fn write(&self, wal: &mut Wal, writes: Writes) -> std::result::Result<(), sled::Error> {
        if let Some(e) = self.unapplied.failure() {
            // A logged group is not in sled: only a restart's replay sets that right.
            wal.poison();
            return Err(e);
        }
        self.wait(Unapplied::wait_for_room)?;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = wal.append(&writes) {
            // What the group would have written is not what the store holds.
            seen.values.clear();
            return Err(e.into());
        }
        for (key, value) in writes.iter().filter(|(key, _)| !crate::codec::unread_by_commits(key)) {
            seen.remember(key, value.clone());
        }
        drop(seen);
        self.flushes.fetch_add(1, Ordering::Relaxed);
        if let Some(copy) = self.copying.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            copy.push(writes.clone());
        }
        self.unapplied.push(writes, wal.logged());
        Ok(())
    }
}

/// The log's size at which sled's files are synced and the log emptied: replaying it on open
/// costs about a second per 100 MiB; a checkpoint costs one sync of sled's files.
pub(crate) const CHECKPOINT_BYTES: u64 = 16 << 20;

/// Write one group into sled (replaying the log, or copying it into a backup).
pub(crate) fn apply_group(tree: &sled::Tree, writes: &Writes) -> std::result::Result<(), sled::Error> {
    apply_writes(
        tree,
        writes.iter().map(|(key, value)| (key.as_slice(), value.as_deref())),
    )
}

/// Writes of one application, at which two threads share the work (a thread costs tens of
/// microseconds to start; sled's writes some microseconds each).
const PARALLEL_APPLY_KEYS: usize = 512;

/// Write final values into sled, key by key.
///
/// Not `apply_batch`: sled's batches take a lock that, once any batch in the process has taken
/// it, every later read and write must take too (sled 0.34's `concurrency_control`), so reads
/// would wait on the applier. Atomicity is not lost: readers see a group whole in the overlay
/// until all of it is in sled (`unapplied.rs`), and after a crash the log replays every group
/// since the last checkpoint whole (a group is final values: writing it again changes nothing
/// it already wrote).
fn apply_writes<'a>(
    tree: &sled::Tree,
    writes: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
) -> std::result::Result<(), sled::Error> {
    for (key, value) in writes {
        match value {
            Some(v) => tree.insert(key, v)?,
            None => tree.remove(key)?,
        };
    }
    Ok(())
}

/// Make everything sled holds durable for real — its flush, then an `fsync` of each of its
/// files (its flush alone does not empty the disk's write cache) — and empty the log.
pub(crate) fn checkpoint(db: &sled::Db, dir: &Path, wal: &mut Wal) -> std::result::Result<(), sled::Error> {
    db.flush()?;
    sync_tree(dir, wal.path())?;
    wal.reset()?;
    Ok(())
}

/// `fsync` every file under `dir` but `skip`, and the directories themselves.
fn sync_tree(dir: &Path, skip: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path == skip {
            continue;
        }
        if path.is_dir() {
            sync_tree(&path, skip)?;
        } else {
            std::fs::File::open(&path)?.sync_all()?;
        }
    }
    std::fs::File::open(dir)?.sync_all()
}
