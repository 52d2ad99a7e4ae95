//! Online backup under load: while committers keep writing, copies are taken; each one opens
//! as a store and is consistent — every commit acknowledged before the copy started is in it,
//! and every commit in it is whole (its order, its event and its due entry together), with
//! its events numbered without a gap.

use protopay_engine::event::{Event, EventKind};
use protopay_engine::observation::Source;
use protopay_engine::storage::conformance::sample_inbound;
use protopay_engine::storage::{Batch, Put, Storage};
use protopay_storage_sled::{SledError, SledStorage};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// One commit: an order, its event, its due entry.
fn commit_of(name: &str) -> Batch {
    let at = chrono::Utc::now();
    Batch {
        orders: vec![Put {
            expected: None,
            value: sample_inbound("T1", name, 100),
        }],
        events: vec![Event {
            seq: 0,
            at,
            trans_no: Some("T1".into()),
            out_req_no: Some(name.into()),
            source: Source::Engine,
            kind: EventKind::InboundRequested,
        }],
        schedule: vec![(name.into(), Some(at))],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_is_a_whole_consistent_store() {
    let live = tempfile::tempdir().unwrap();
    let store = SledStorage::open(live.path()).unwrap();
    // A tree big enough that reading it through takes a while.
    for chunk in 0..10 {
        let mut batch = Batch::default();
        for i in 0..150 {
            let one = commit_of(&format!("APP001-pre-{chunk}-{i}"));
            batch.orders.extend(one.orders);
            batch.events.extend(one.events);
            batch.schedule.extend(one.schedule);
        }
        store.commit(batch).await.unwrap();
    }
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let stop = Arc::new(tokio::sync::Notify::new());
    let committers: Vec<_> = (0..4)
        .map(|task| {
            let (store, acked, stop) = (store.clone(), acked.clone(), stop.clone());
            tokio::spawn(async move {
                let stopped = stop.notified();
                tokio::pin!(stopped);
                for i in 0.. {
                    let name = format!("APP001-load-{task}-{i}");
                    tokio::select! {
                        done = store.commit(commit_of(&name)) => {
                            done.unwrap();
                            acked.lock().unwrap().insert(name);
                        }
                        () = &mut stopped => return,
                    }
                }
            })
        })
        .collect();
    let backups = tempfile::tempdir().unwrap();
    let mut with_commits_during = 0;
    for attempt in 0..20 {
        let before: BTreeSet<String> = acked.lock().unwrap().clone();
        let to = backups.path().join(format!("b{attempt}"));
        let report = store.backup(&to).await.unwrap();
        with_commits_during += usize::from(report.commits_during_copy > 0);
        let copy = SledStorage::open(&to).unwrap();
        for name in &before {
            assert!(
                copy.order(name).await.unwrap().is_some(),
                "{name} was acknowledged before the copy"
            );
        }
        let events = copy.events_after(0, usize::MAX).await.unwrap();
        assert_eq!(
            events.len() as u64,
            report.last_seq,
            "every event up to the copy's last"
        );
        assert!(
            events.iter().zip(1..).all(|(e, seq)| e.seq == seq),
            "numbered without a gap"
        );
        for event in &events {
            let name = event.out_req_no.as_deref().unwrap();
            assert!(
                copy.order(name).await.unwrap().is_some(),
                "{name}: its event without it"
            );
            assert!(copy.due_at(name).await.unwrap().is_some(), "{name}: its due entry");
        }
        let orders = copy.orders(&Default::default(), None, usize::MAX).await.unwrap();
        assert_eq!(orders.len(), events.len(), "each order with its one event");
        copy.close().await.unwrap();
        if with_commits_during >= 2 {
            break;
        }
    }
    stop.notify_waiters();
    for c in committers {
        c.await.unwrap();
    }
    assert!(
        with_commits_during >= 2,
        "commits went on while a copy was read ({with_commits_during} copies had some)"
    );
}

#[tokio::test]
async fn a_backup_never_overwrites_anything() {
    let live = tempfile::tempdir().unwrap();
    let store = SledStorage::open(live.path()).unwrap();
    let taken = tempfile::tempdir().unwrap();
    std::fs::write(taken.path().join("keep.txt"), "mine").unwrap();
    assert!(matches!(
        store.backup(taken.path()).await,
        Err(SledError::BackupTarget { .. })
    ));
    assert_eq!(std::fs::read_to_string(taken.path().join("keep.txt")).unwrap(), "mine");
}
