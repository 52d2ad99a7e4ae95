//! Group commit: one `fsync` serves every commit whose transaction finished before it began.
//!
//! sled's `flush_async` stalled here with many concurrent callers (64 tasks on a two-worker
//! runtime hung in the benchmark), so flushing is done by one leader at a time on a blocking
//! thread: a commit takes a ticket after its transaction; if no flush is running it becomes the
//! leader and flushes until every ticket issued so far is covered; otherwise it waits for a
//! flush that started after its ticket. No commit returns before its data is on disk.

use std::sync::{Arc, Mutex};
use tokio::sync::watch;

#[derive(Debug, Clone, Default)]
struct Progress {
    /// Every ticket up to this one is durable.
    durable: u64,
    /// A flush covering tickets up to `.0` failed.
    failed: Option<(u64, Arc<sled::Error>)>,
}

#[derive(Debug, Default)]
struct Tickets {
    issued: u64,
    leading: bool,
}

/// The group-commit flusher of one sled database.
#[derive(Debug, Clone)]
pub struct Flusher {
    db: sled::Db,
    tickets: Arc<Mutex<Tickets>>,
    progress: watch::Sender<Progress>,
}

impl Flusher {
    /// A flusher for `db`.
    pub fn new(db: sled::Db) -> Self {
        Flusher { db, tickets: Arc::default(), progress: watch::Sender::new(Progress::default()) }
    }

    /// Return once everything written before this call is durable.
    pub async fn durable(&self) -> Result<(), Arc<sled::Error>> {
        let mut seen = self.progress.subscribe();
        let (ticket, lead) = {
            let mut t = self.tickets.lock().unwrap_or_else(|p| p.into_inner());
            t.issued += 1;
            let lead = !t.leading;
            t.leading = true;
            (t.issued, lead)
        };
        if lead {
            self.lead().await;
        }
        let progress =
            seen.wait_for(|p| p.durable >= ticket || p.failed.as_ref().is_some_and(|(upto, _)| *upto >= ticket));
        match progress.await {
            Ok(p) if p.durable >= ticket => Ok(()),
            Ok(p) => Err(p
                .failed
                .as_ref()
                .map(|(_, e)| e.clone())
                .unwrap_or_else(|| Arc::new(sled::Error::ReportableBug("flush failed".into())))),
            Err(_) => Err(Arc::new(sled::Error::ReportableBug("flusher dropped".into()))),
        }
    }

    /// Flush until no ticket is left uncovered, then step down.
    async fn lead(&self) {
        loop {
            let target = {
                let mut t = self.tickets.lock().unwrap_or_else(|p| p.into_inner());
                let durable = self.progress.borrow().durable;
                if t.issued <= durable {
                    t.leading = false;
                    return;
                }
                t.issued
            };
            let db = self.db.clone();
            let flushed = tokio::task::spawn_blocking(move || db.flush()).await;
            self.progress.send_modify(|p| match flushed {
                Ok(Ok(_)) => p.durable = p.durable.max(target),
                Ok(Err(e)) => p.failed = Some((target, Arc::new(e))),
                Err(join) => p.failed = Some((target, Arc::new(sled::Error::ReportableBug(join.to_string())))),
            });
            if self.progress.borrow().failed.as_ref().is_some_and(|(upto, _)| *upto >= target) {
                // Let the waiters see the failure; the next commit leads a fresh attempt.
                self.tickets.lock().unwrap_or_else(|p| p.into_inner()).leading = false;
                return;
            }
        }
    }
}
