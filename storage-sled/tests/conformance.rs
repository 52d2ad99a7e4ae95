//! The engine's storage conformance suite on sled, reopen durability included, and the
//! typed errors for stores that cannot be opened.

use protopay_engine::storage::{Storage, conformance};
use protopay_storage_sled::{SledError, SledStorage};

#[tokio::test]
async fn sled_storage_conforms() {
    let dirs = std::sync::Mutex::new(Vec::new());
    conformance::run(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStorage::open(dir.path()).unwrap();
        dirs.lock().unwrap().push(dir);
        store
    })
    .await;
}

#[tokio::test]
async fn sled_storage_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    conformance::reopen(|| SledStorage::open(dir.path()).unwrap()).await;
}

#[tokio::test]
async fn a_store_in_use_is_a_typed_error_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let _held = SledStorage::open(dir.path()).unwrap();
    match SledStorage::open(dir.path()) {
        Err(SledError::Locked { path }) => assert_eq!(path, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[tokio::test]
async fn corrupt_or_foreign_stores_are_typed_errors_never_panics() {
    // Garbage where sled keeps its files.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("conf"), b"\xff\xfe not a sled config").unwrap();
    std::fs::write(dir.path().join("db"), vec![0xAB; 4096]).unwrap();
    let err = SledStorage::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");

    // A sled database that is not ours.
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("protopay")
            .unwrap()
            .insert("m/format", "someone-else/9")
            .unwrap();
        db.flush().unwrap();
    }
    wait_for_sled_lock(dir.path());
    assert!(matches!(
        SledStorage::open(dir.path()),
        Err(SledError::UnsupportedFormat { .. })
    ));
}

#[tokio::test]
async fn a_corrupt_record_is_reported_not_panicked() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStorage::open(dir.path()).unwrap();
        drop(store);
        wait_for_sled_lock(dir.path());
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("protopay")
            .unwrap()
            .insert("o/APP001-x", &[1u8, 2, 3][..])
            .unwrap();
        db.flush().unwrap();
    }
    wait_for_sled_lock(dir.path());
    let store = SledStorage::open(dir.path()).unwrap();
    let err = store.order("APP001-x").await.unwrap_err();
    assert!(
        matches!(err, protopay_engine::storage::StorageError::Corrupt { .. }),
        "{err:?}"
    );
}

/// 64 concurrent committers on a two-worker runtime all finish, every event numbered once
/// (sled's own `flush_async` stalled in exactly this shape; the group committer must not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_commits_all_become_durable() {
    use protopay_engine::storage::{Batch, Put, conformance::sample_inbound};
    let dir = tempfile::tempdir().unwrap();
    let store = SledStorage::open(dir.path()).unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|c| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    let order = sample_inbound("T1", &format!("APP001-{c}-{i}"), 100);
                    store
                        .commit(Batch {
                            orders: vec![Put {
                                expected: None,
                                value: order,
                            }],
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let all = async {
        for t in tasks {
            t.await.unwrap();
        }
    };
    // A safety net against a hang, not a measurement.
    tokio::time::timeout(std::time::Duration::from_secs(120), all)
        .await
        .expect("commits stalled");
    assert_eq!(store.orders_of("T1").await.unwrap().len(), 640);
    // Dropped, not closed (as a crash leaves it): sled is released once the applier, which
    // writes the last groups into sled after their commits returned, lets go of it.
    drop(store);
    wait_for_sled_lock(dir.path());
    let reopened = SledStorage::open(dir.path()).unwrap();
    assert_eq!(reopened.orders_of("T1").await.unwrap().len(), 640, "all of it durable");
}

/// Commits grouped together are still checked one by one: of many racing updates of the
/// same record version, exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_updates_in_one_group_exactly_one_wins() {
    use protopay_engine::storage::{Batch, Put, conformance::sample_protocol};
    let dir = tempfile::tempdir().unwrap();
    let store = SledStorage::open(dir.path()).unwrap();
    store
        .commit(Batch {
            protocols: vec![Put {
                expected: None,
                value: sample_protocol("T1"),
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut p = sample_protocol("T1");
                p.business_id = format!("B{i}");
                store
                    .commit(Batch {
                        protocols: vec![Put {
                            expected: Some(1),
                            value: p,
                        }],
                        ..Default::default()
                    })
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(protopay_engine::storage::StorageError::Conflict) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(store.protocol("T1").await.unwrap().unwrap().version, 2);
}

/// A commit is durable once it is in the write-ahead log, whatever sled itself kept: a
/// store whose sled files never received the commit (here: a new, empty one) gets it back
/// from the log on open.
#[tokio::test]
async fn a_commit_only_in_the_log_is_there_after_reopen() {
    use protopay_engine::storage::conformance::sample_inbound;
    use protopay_engine::storage::{Batch, Put};
    let written = tempfile::tempdir().unwrap();
    {
        let store = SledStorage::open(written.path()).unwrap();
        store
            .commit(Batch {
                orders: vec![Put {
                    expected: None,
                    value: sample_inbound("T1", "APP001-wal-1", 100),
                }],
                ..Default::default()
            })
            .await
            .unwrap();
        // Dropped without `close`: no checkpoint, the commit is in the log.
    }
    let log = written.path().join(protopay_storage_sled::wal::FILE);
    assert!(std::fs::metadata(&log).unwrap().len() > 0, "the commit is in the log");
    // Another store that never saw the commit, given only that log.
    let other = tempfile::tempdir().unwrap();
    SledStorage::open(other.path()).unwrap().close().await.unwrap();
    std::fs::copy(&log, other.path().join(protopay_storage_sled::wal::FILE)).unwrap();
    let store = SledStorage::open(other.path()).unwrap();
    let order = store
        .order("APP001-wal-1")
        .await
        .unwrap()
        .expect("replayed from the log");
    assert_eq!(order.version, 1);
    let empty = tempfile::tempdir().unwrap();
    SledStorage::open(empty.path()).unwrap().close().await.unwrap();
    assert_eq!(
        std::fs::metadata(other.path().join(protopay_storage_sled::wal::FILE))
            .unwrap()
            .len(),
        std::fs::metadata(empty.path().join(protopay_storage_sled::wal::FILE))
            .unwrap()
            .len(),
        "after replay sled is synced and the log starts empty (a header alone)"
    );
}

/// A store of format 1 (no log), 2 (no read-model indexes), 3 (no listing counts), 4 (the
/// log of before format 5), 5 (no audit index), 6 (a `m/last_seq` key) or 7 (an order's
/// places in three keys) opens, keeps its records, replays what its log holds, gets what it
/// lacks built from its orders, events and indexes, gathers each order's places into one key,
/// drops the keys it no longer keeps, and is marked format 8, so that an older build refuses
/// it rather than misread the log, miss commits only in the log, or leave the indexes, counts
/// and last seq stale. Commits after the upgrade move the order from where it was.
#[tokio::test]
async fn older_formats_are_upgraded_in_place() {
    use protopay_engine::domain::{Listing, Status};
    use protopay_engine::event::{Event, EventKind};
    use protopay_engine::observation::Source;
    use protopay_engine::storage::conformance::sample_inbound;
    use protopay_engine::storage::{Batch, OrderQuery, Put};
    use protopay_storage_sled::codec;
    for format in [
        "protopay-sled/1",
        "protopay-sled/2",
        "protopay-sled/3",
        "protopay-sled/4",
        "protopay-sled/5",
        "protopay-sled/6",
        "protopay-sled/7",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let due = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            let tree = db.open_tree("protopay").unwrap();
            tree.insert("m/format", format).unwrap();
            tree.insert("m/last_seq", &7u64.to_be_bytes()).unwrap();
            let order = sample_inbound("T1", "o1", 100);
            tree.insert("o/o1", codec::record(3, &order).unwrap()).unwrap();
            if format >= "protopay-sled/3" {
                // Format 3 has the indexes; only the counts are missing.
                let listed = codec::listed(&order);
                for key in codec::listing_keys(&listed, "o1") {
                    tree.insert(key, Vec::new()).unwrap();
                }
                tree.insert("s/o1", listed).unwrap();
                tree.insert(codec::history_key("o1", 7), Vec::new()).unwrap();
            }
            if format >= "protopay-sled/4" {
                for listing in Listing::ALL {
                    let n = u64::from(listing == Listing::Status(Status::Requested));
                    tree.insert(codec::count_key(listing.name()), codec::u64_key(n).to_vec())
                        .unwrap();
                }
            }
            let event = Event {
                seq: 0,
                at: chrono::Utc::now(),
                trans_no: Some("T1".into()),
                out_req_no: Some("o1".into()),
                source: Source::Engine,
                kind: EventKind::InboundRequested,
            };
            tree.insert(codec::key(b"e/", &codec::u64_key(7)), codec::value(&event).unwrap())
                .unwrap();
            let reconciled = Event {
                out_req_no: None,
                source: Source::Operator,
                kind: EventKind::OperatorReconciled {
                    note: "month end".into(),
                    by: "li.lei".into(),
                    drifting: 0,
                },
                ..event
            };
            tree.insert(
                codec::key(b"e/", &codec::u64_key(6)),
                codec::value(&reconciled).unwrap(),
            )
            .unwrap();
            if format >= "protopay-sled/6" {
                tree.insert(codec::audit_key(6), Vec::new()).unwrap();
                // Three exchanges kept (their bodies are not what this test reads).
                tree.insert("w/o1", &3u64.to_be_bytes()).unwrap();
            }
            tree.insert(codec::due_key(due, "o1"), Vec::new()).unwrap();
            tree.insert("a/o1", &codec::time_key(due)).unwrap();
            db.flush().unwrap();
        }
        wait_for_sled_lock(dir.path());
        let old_log = !matches!(format, "protopay-sled/1" | "protopay-sled/5" | "protopay-sled/6");
        if old_log {
            std::fs::write(dir.path().join(protopay_storage_sled::wal::FILE), LOG_BEFORE_FORMAT_5).unwrap();
        }
        let store = SledStorage::open(dir.path()).unwrap();
        assert_eq!(store.last_seq().await.unwrap(), 7);
        if old_log {
            assert_eq!(
                store.cursor("legacy-consumer").await.unwrap(),
                5,
                "{format}: the log was replayed"
            );
        }
        let query = OrderQuery {
            listing: Some(Listing::Status(Status::Requested)),
            trans_no: None,
        };
        let listed = store.orders(&query, None, 10).await.unwrap();
        assert_eq!(listed.iter().map(|o| o.version).collect::<Vec<_>>(), [3], "{format}");
        let history = store.history("o1").await.unwrap();
        assert_eq!(history.iter().map(|e| e.seq).collect::<Vec<_>>(), [7], "{format}");
        let counts = store.listing_counts().await.unwrap();
        let counted: Vec<(Listing, u64)> = counts.into_iter().filter(|(_, n)| *n > 0).collect();
        assert_eq!(counted, [(Listing::Status(Status::Requested), 1)], "{format}");
        let audit = store.audit(None, 10).await.unwrap();
        assert_eq!(
            audit.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [6],
            "{format}: the audit trail"
        );
        assert_eq!(store.due_at("o1").await.unwrap(), Some(due), "{format}: its due time");
        let mut moved = sample_inbound("T1", "o1", 100);
        moved.status = Status::Processing;
        let later = due + chrono::Duration::seconds(60);
        let evidence = store.exchanges("o1").await.unwrap();
        store
            .commit(Batch {
                orders: vec![Put {
                    expected: Some(3),
                    value: moved,
                }],
                schedule: vec![("o1".into(), Some(later))],
                ..Default::default()
            })
            .await
            .unwrap();
        let counts = store.listing_counts().await.unwrap();
        let counted: Vec<(Listing, u64)> = counts.into_iter().filter(|(_, n)| *n > 0).collect();
        assert_eq!(
            counted,
            [(Listing::Status(Status::Processing), 1)],
            "{format}: moved from the listing it was in"
        );
        assert!(store.orders(&query, None, 10).await.unwrap().is_empty(), "{format}");
        assert_eq!(store.due_at("o1").await.unwrap(), Some(later), "{format}");
        let due_now: Vec<String> = store
            .due(later + chrono::Duration::seconds(1), 10)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.out_req_no)
            .collect();
        assert_eq!(due_now, ["o1"], "{format}: due once, at its new time");
        assert!(evidence.is_empty(), "{format}");
        store.close().await.unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("protopay").unwrap();
        assert_eq!(tree.get("m/format").unwrap().unwrap().as_ref(), b"protopay-sled/8");
        assert_eq!(
            tree.get("m/last_seq").unwrap(),
            None,
            "{format}: the last event says it"
        );
        for retired in ["s/o1", "a/o1", "w/o1"] {
            assert_eq!(tree.get(retired).unwrap(), None, "{format}: {retired} gathered");
        }
        let places = codec::Places::from_bytes(&tree.get("r/o1").unwrap().unwrap()).unwrap();
        let kept = if format >= "protopay-sled/6" { 3 } else { 0 };
        assert_eq!(places.exchanges, kept, "{format}: the exchanges kept");
    }
}

/// A log as formats 2 to 4 wrote it: one group setting the cursor of `legacy-consumer` to 5
/// (`[length u32 LE][crc32 of payload][payload]`), then an empty record, which that writer
/// appended when a group wrote nothing.
const LOG_BEFORE_FORMAT_5: &[u8] = &[
    0x22, 0x00, 0x00, 0x00, 0xf2, 0x83, 0xae, 0xc2, 0x01, 0x11, 0x00, 0x00, 0x00, b'c', b'/', b'l', b'e', b'g', b'a',
    b'c', b'y', b'-', b'c', b'o', b'n', b's', b'u', b'm', b'e', b'r', 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// A record filed under another record's key is damage: reported, never used.
#[tokio::test]
async fn a_record_under_another_key_is_corrupt() {
    use protopay_engine::storage::conformance::sample_inbound;
    use protopay_engine::storage::{Batch, Put};
    let dir = tempfile::tempdir().unwrap();
    let store = SledStorage::open(dir.path()).unwrap();
    store
        .commit(Batch {
            orders: vec![Put {
                expected: None,
                value: sample_inbound("T1", "A", 100),
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    store.close().await.unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("protopay").unwrap();
        let a = tree.get("o/A").unwrap().unwrap();
        tree.insert("o/B", a).unwrap();
        db.flush().unwrap();
    }
    wait_for_sled_lock(dir.path());
    let store = SledStorage::open(dir.path()).unwrap();
    assert!(store.order("A").await.unwrap().is_some());
    assert!(matches!(
        store.order("B").await,
        Err(protopay_engine::storage::StorageError::Corrupt { .. })
    ));
}

/// sled's own thread pool drops its last handle (and the file lock) a moment after ours: wait
/// for the lock itself, on the kernel's word, before opening the directory again.
fn wait_for_sled_lock(dir: &std::path::Path) {
    let lock = std::fs::File::open(dir.join("db")).unwrap();
    lock.lock().unwrap();
    lock.unlock().unwrap();
}

/// A log of `n` acknowledged commits, given to a store whose sled files never received them
/// (as after a power cut: sled as of its last checkpoint), plus that store.
async fn commits_only_in_the_log(n: usize) -> (tempfile::TempDir, Vec<u8>) {
    use protopay_engine::storage::conformance::sample_inbound;
    use protopay_engine::storage::{Batch, Put};
    let written = tempfile::tempdir().unwrap();
    {
        let store = SledStorage::open(written.path()).unwrap();
        for i in 0..n {
            store
                .commit(Batch {
                    orders: vec![Put {
                        expected: None,
                        value: sample_inbound("T1", &format!("APP001-cut-{i}"), 100),
                    }],
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        // Dropped without `close`: no checkpoint, the commits are in the log.
    }
    let log = std::fs::read(written.path().join(protopay_storage_sled::wal::FILE)).unwrap();
    let other = tempfile::tempdir().unwrap();
    SledStorage::open(other.path()).unwrap().close().await.unwrap();
    (other, log)
}

/// The power-cut trial's 4 bricked stores of 88: the last, never-synced write torn with its
/// first part lost (a hole of zeros, then the rest of it). The store opens with every
/// acknowledged commit.
#[tokio::test]
async fn a_torn_unacknowledged_write_never_keeps_the_store_from_opening() {
    let (dir, mut log) = commits_only_in_the_log(4).await;
    // Records start with their magic; the fourth is the write the power cut tore.
    let fourth = log
        .windows(4)
        .enumerate()
        .filter(|(_, w)| w == b"PWR2")
        .nth(3)
        .unwrap()
        .0;
    for byte in &mut log[fourth..fourth + 300] {
        *byte = 0;
    }
    std::fs::write(dir.path().join(protopay_storage_sled::wal::FILE), &log).unwrap();
    let store = SledStorage::open(dir.path()).unwrap();
    for i in 0..3 {
        assert!(
            store.order(&format!("APP001-cut-{i}")).await.unwrap().is_some(),
            "commit {i}"
        );
    }
    assert!(
        store.order("APP001-cut-3").await.unwrap().is_none(),
        "never acknowledged"
    );
}

/// The power-cut trial's silent loss: a damaged length in the first record made the log look
/// torn there, and open cut every acknowledged commit after it. Now it is refused, with the
/// offset, and the log is left as it was.
#[tokio::test]
async fn a_damaged_log_is_refused_and_nothing_acknowledged_is_cut() {
    use protopay_storage_sled::wal::{Damage, WalError};
    let (dir, mut log) = commits_only_in_the_log(3).await;
    let first_record = 28;
    log[first_record + 4 + 2] ^= 0x01; // byte 2 of its length
    let path = dir.path().join(protopay_storage_sled::wal::FILE);
    std::fs::write(&path, &log).unwrap();
    let err = SledStorage::open(dir.path()).expect_err("a damaged log is refused");
    let message = err.to_string();
    match err {
        SledError::Wal(WalError::Damaged {
            at,
            what: Damage::BeforeIntactRecord(_),
            ..
        }) => assert_eq!(at, first_record as u64),
        e => panic!("{e}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), log, "nothing was cut");
    assert!(
        message.contains("damaged at byte 28") && message.contains("do not delete the log"),
        "{message}"
    );
}
