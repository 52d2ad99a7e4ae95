//! The store while sled lags behind the log: every read goes through the overlay of groups
//! logged but not yet applied (`unapplied.rs`), and finds what was committed.

use super::*;
use protopay_engine::Source;
use protopay_engine::domain::Listing;
use protopay_engine::event::EventKind;
use protopay_engine::storage::conformance::{self, sample_inbound, sample_protocol};
use protopay_engine::storage::{OrderQuery, Put};

/// A store whose applier never starts of its own accord.
fn held(dir: &Path) -> SledStorage {
    let store = SledStorage::open(dir).unwrap();
    store.handles().unwrap().group.unapplied().hold();
    store
}

/// The engine's whole conformance suite, with sled behind: groups reach sled only when 64
/// wait, or before a checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_conforms_while_sled_lags_behind_the_log() {
    let dirs = std::sync::Mutex::new(Vec::new());
    conformance::run(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = held(dir.path());
        dirs.lock().unwrap().push(dir);
        store
    })
    .await;
}

fn paid(out_req_no: &str) -> Event {
    Event {
        seq: 0,
        at: chrono::Utc::now(),
        trans_no: Some("T1".into()),
        out_req_no: Some(out_req_no.into()),
        source: Source::Poll,
        kind: EventKind::InboundPaid,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_is_read_back_before_sled_holds_it_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = held(dir.path());
    let due = chrono::Utc::now();
    let batch = Batch {
        protocols: vec![Put {
            expected: None,
            value: sample_protocol("T1"),
        }],
        orders: vec![Put {
            expected: None,
            value: sample_inbound("T1", "APP001-in-1", 10_000),
        }],
        events: vec![paid("APP001-in-1")],
        schedule: vec![("APP001-in-1".into(), Some(due))],
        ..Default::default()
    };
    assert_eq!(store.commit(batch).await.unwrap(), 1);
    let order_key = codec::key(codec::prefix::ORDER, b"APP001-in-1");
    let in_sled = |store: &SledStorage| store.tree().unwrap().get(&order_key).unwrap().is_some();
    assert!(!in_sled(&store), "sled does not hold it yet");

    assert_eq!(store.order("APP001-in-1").await.unwrap().unwrap().version, 1);
    assert!(store.protocol("T1").await.unwrap().is_some());
    let by_protocol = OrderQuery {
        trans_no: Some("T1".into()),
        ..Default::default()
    };
    assert_eq!(store.orders(&by_protocol, None, 10).await.unwrap().len(), 1);
    let listed = store.listing_counts().await.unwrap();
    assert_eq!(listed.iter().map(|(_, n)| n).sum::<u64>(), 1, "{listed:?}");
    let listing = store
        .order("APP001-in-1")
        .await
        .unwrap()
        .unwrap()
        .value
        .listings()
        .next()
        .unwrap();
    let in_listing = OrderQuery {
        listing: Some(listing),
        ..Default::default()
    };
    assert_eq!(store.orders(&in_listing, None, 10).await.unwrap().len(), 1);
    assert_eq!(store.last_seq().await.unwrap(), 1);
    assert_eq!(store.events_after(0, 10).await.unwrap().len(), 1);
    assert_eq!(store.events_before(u64::MAX, 10).await.unwrap().len(), 1);
    assert_eq!(store.history("APP001-in-1").await.unwrap().len(), 1);
    assert_eq!(store.due(due, 10).await.unwrap().len(), 1);
    assert!(store.due_at("APP001-in-1").await.unwrap().is_some());
    assert!(Listing::ALL.contains(&listing));

    // Closing applies what waits and checkpoints; the reopened store holds it in sled.
    store.close().await.unwrap();
    let again = SledStorage::open(dir.path()).unwrap();
    assert!(in_sled(&again));
    assert_eq!(again.events_after(0, 10).await.unwrap().len(), 1);
    again.close().await.unwrap();
}

/// A walk of the event log that finds a gap (a group sled applied while the walk passed its
/// place) stops before it: a reader never skips an event.
#[tokio::test]
async fn a_walk_of_the_events_stops_at_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStorage::open(dir.path()).unwrap();
    let tree = store.tree().unwrap();
    for seq in [1u64, 2, 4] {
        let key = codec::key(codec::prefix::EVENT, &codec::u64_key(seq));
        tree.insert(key, codec::value(&paid("APP001-in-1")).unwrap()).unwrap();
    }
    let seqs = |events: Vec<Event>| events.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(store.events_after(0, 10).await.unwrap()), [1, 2]);
    assert_eq!(seqs(store.events_after(2, 10).await.unwrap()), Vec::<u64>::new());
    assert_eq!(seqs(store.events_after(3, 10).await.unwrap()), [4]);
}
