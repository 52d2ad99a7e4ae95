//! The storage conformance suite: what every [`Storage`] backend must do, run with one line
//! from a backend's tests (with `protopay-engine`'s feature `test-util`):
//!
//! ```ignore
//! protopay_engine::storage::conformance::run(MyStorage::new).await;
//! ```
//!
//! A backend that survives a restart also runs [`reopen`], with a function that opens the
//! same data again (after dropping the previous handle).
//!
//! These functions panic on the first broken rule, like any test. One file, one function per
//! rule, so that a backend's author reads the whole contract in one go.
#![allow(clippy::unwrap_used)] // a test suite: a failed step is a failed test

mod generate;

use super::{
    Batch, Due, Exchange, MAX_EXCHANGES_PER_ORDER, Message, Opening, OrderQuery, Orphan, Put, Storage, StorageError,
};
use crate::Sensitive;
use crate::domain::{Listing, Order, Protocol, Status};
use crate::event::{Event, EventKind};
use crate::observation::Source;
use crate::wire::{Amount, CallbackKind, CashierType, ChannelType, OutType, Outpay, Prepay};
use chrono::{DateTime, TimeZone, Utc};
use generate::Gen;

/// A protocol for tests.
pub fn sample_protocol(trans_no: &str) -> Protocol {
    Protocol {
        trans_no: trans_no.into(),
        business_id: "B1".into(),
        trans_desc: "test".into(),
        channel_type: ChannelType::Lft,
        cashier_type: CashierType::Pos,
        create_time: None,
        remote: None,
        ledger: Default::default(),
    }
}

/// An inbound order for tests.
pub fn sample_inbound(trans_no: &str, out_req_no: &str, fen: u64) -> Order {
    Order::new_inbound(
        "APP001",
        Prepay {
            trans_no: trans_no.into(),
            out_req_no: out_req_no.into(),
            amount: Amount::from_fen(fen).unwrap_or(Amount::ZERO),
            out_success_notify_url: "http://h/n/inbound-pay".into(),
            out_arrived_notify_url: None,
            prod_catalog: None,
            contract_num: None,
            qp_user_name: None,
            qp_cert_number: None,
            return_url: None,
        },
    )
}

/// An outbound order for tests.
pub fn sample_outbound(trans_no: &str, out_req_no: &str, fen: u64) -> Order {
    Order::new_outbound(
        "APP001",
        Outpay {
            trans_no: trans_no.into(),
            out_req_no: out_req_no.into(),
            amount: Amount::from_fen(fen).unwrap_or(Amount::ZERO),
            channel_type: ChannelType::Lft,
            out_notify_url: "http://h/n/outbound".into(),
            bank_acc_name: Sensitive::new("n"),
            bank_acc_num: Sensitive::new("6222000011112222"),
            bank_name: "b".into(),
            bank_cnaps: "102100000030".into(),
            out_type: OutType::Out,
            remark: None,
        },
    )
}

fn event(out_req_no: &str, kind: EventKind) -> Event {
    Event {
        seq: 0,
        at: t(0),
        trans_no: Some("T1".into()),
        out_req_no: Some(out_req_no.into()),
        source: Source::Engine,
        kind,
    }
}

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + secs, 0).single().unwrap_or_default()
}

/// Run every rule against fresh, empty stores made by `fresh`.
pub async fn run<S: Storage, F: Fn() -> S>(fresh: F) {
    round_trip(&fresh(), 256).await;
    versions_and_conflicts(&fresh()).await;
    atomicity(&fresh()).await;
    due_index(&fresh()).await;
    claims(&fresh()).await;
    events_and_cursors(&fresh()).await;
    orphans(&fresh()).await;
    openings(&fresh()).await;
    audit_trail(&fresh()).await;
    evidence(&fresh()).await;
    read_models(&fresh()).await;
}

/// Records get versions from 1; a stale or missing expected version is a `Conflict`.
pub async fn versions_and_conflicts<S: Storage>(s: &S) {
    let p = sample_protocol("T1");
    s.commit(Batch {
        protocols: vec![Put {
            expected: None,
            value: p.clone(),
        }],
        ..Default::default()
    })
    .await
    .unwrap();
    let got = s.protocol("T1").await.unwrap().unwrap();
    assert_eq!((got.version, &got.value), (1, &p));
    let again = s
        .commit(Batch {
            protocols: vec![Put {
                expected: None,
                value: p.clone(),
            }],
            ..Default::default()
        })
        .await;
    assert!(
        matches!(again, Err(StorageError::Conflict)),
        "inserting an existing record must conflict"
    );
    let stale = s
        .commit(Batch {
            protocols: vec![Put {
                expected: Some(7),
                value: p.clone(),
            }],
            ..Default::default()
        })
        .await;
    assert!(
        matches!(stale, Err(StorageError::Conflict)),
        "a wrong version must conflict"
    );
    let mut p2 = p.clone();
    p2.business_id = "B2".into();
    s.commit(Batch {
        protocols: vec![Put {
            expected: Some(1),
            value: p2.clone(),
        }],
        ..Default::default()
    })
    .await
    .unwrap();
    let got = s.protocol("T1").await.unwrap().unwrap();
    assert_eq!((got.version, &got.value), (2, &p2));
    let missing = s
        .commit(Batch {
            orders: vec![Put {
                expected: Some(1),
                value: sample_inbound("T1", "X", 1),
            }],
            ..Default::default()
        })
        .await;
    assert!(
        matches!(missing, Err(StorageError::Conflict)),
        "updating a missing record must conflict"
    );
    assert!(s.order("X").await.unwrap().is_none());
    assert!(s.protocol("nope").await.unwrap().is_none());
}

/// A failed commit leaves nothing: no record, no event, no schedule change.
pub async fn atomicity<S: Storage>(s: &S) {
    s.commit(Batch {
        orders: vec![Put {
            expected: None,
            value: sample_inbound("T1", "A", 100),
        }],
        schedule: vec![("A".into(), Some(t(10)))],
        events: vec![event("A", EventKind::InboundRequested)],
        ..Default::default()
    })
    .await
    .unwrap();
    let before_seq = s.last_seq().await.unwrap();
    let failing = Batch {
        protocols: vec![Put {
            expected: None,
            value: sample_protocol("T9"),
        }],
        orders: vec![
            Put {
                expected: None,
                value: sample_inbound("T1", "B", 100),
            },
            Put {
                expected: Some(99),
                value: sample_inbound("T1", "A", 100),
            },
        ],
        events: vec![event("B", EventKind::InboundRequested)],
        schedule: vec![("A".into(), None), ("B".into(), Some(t(1)))],
        orphans: vec![orphan("S1")],
        openings: vec![opening("K1", "T9")],
        exchanges: vec![exchange("B", 0)],
    };
    assert!(matches!(s.commit(failing).await, Err(StorageError::Conflict)));
    assert!(s.order("B").await.unwrap().is_none(), "a failed commit wrote an order");
    assert!(
        s.protocol("T9").await.unwrap().is_none(),
        "a failed commit wrote a protocol"
    );
    assert_eq!(
        s.last_seq().await.unwrap(),
        before_seq,
        "a failed commit appended events"
    );
    assert_eq!(
        s.due(t(100), 10).await.unwrap(),
        vec![Due {
            at: t(10),
            out_req_no: "A".into()
        }]
    );
    assert!(s.orphans().await.unwrap().is_empty());
    assert_eq!(s.opening("K1").await.unwrap(), None, "a failed commit wrote an opening");
    assert!(
        s.exchanges("B").await.unwrap().is_empty(),
        "a failed commit kept an exchange"
    );
    assert_eq!(s.orders_of("T1").await.unwrap().len(), 1);
    assert_counts(s, &[(Listing::Status(Status::Requested), 1)], "atomicity").await;
}

/// New inbound orders in T1, each scheduled at its time, in one commit.
async fn scheduled<S: Storage>(s: &S, due: impl Iterator<Item = (String, DateTime<Utc>)>) {
    let (orders, schedule) = due
        .map(|(key, at)| {
            let order = Put {
                expected: None,
                value: sample_inbound("T1", &key, 100),
            };
            (order, (key, Some(at)))
        })
        .unzip();
    s.commit(Batch {
        orders,
        schedule,
        ..Default::default()
    })
    .await
    .unwrap();
}

/// Due entries come earliest first, only up to `now`, at most `limit`; rescheduling moves an
/// entry, `None` removes it.
pub async fn due_index<S: Storage>(s: &S) {
    // Deliberately out of order in time.
    scheduled(s, (0..20i64).map(|i| (format!("O{i:02}"), t((i * 7) % 20)))).await;
    let due = s.due(t(9), 100).await.unwrap();
    assert_eq!(due.len(), 10, "orders due at or before now");
    assert!(due.windows(2).all(|w| w[0] <= w[1]), "earliest first");
    assert!(due.iter().all(|d| d.at <= t(9)));
    assert_eq!(s.due(t(100), 5).await.unwrap().len(), 5, "limit respected");
    assert_eq!(s.next_due("A").await.unwrap(), Some(t(0)));
    let first = due[0].out_req_no.clone();
    s.commit(Batch {
        schedule: vec![(first.clone(), Some(t(50)))],
        ..Default::default()
    })
    .await
    .unwrap();
    let all = s.due(t(100), 100).await.unwrap();
    assert_eq!(all.len(), 20, "rescheduling must not duplicate");
    assert_eq!(all.last().map(|d| (&d.out_req_no, d.at)), Some((&first, t(50))));
    s.commit(Batch {
        schedule: vec![(first.clone(), None)],
        ..Default::default()
    })
    .await
    .unwrap();
    let all = s.due(t(100), 100).await.unwrap();
    assert_eq!(all.len(), 19);
    assert!(all.iter().all(|d| d.out_req_no != first), "a removed entry is gone");
}

/// Claims share due orders between owners: an order claimed by one owner is skipped by
/// others until its lease runs out or a commit reschedules it; its owner claims it again;
/// `next_due` skips orders leased to others.
pub async fn claims<S: Storage>(s: &S) {
    let lease = std::time::Duration::from_secs(3600);
    scheduled(s, (0..6i64).map(|i| (format!("C{i}"), t(i)))).await;
    let keys = |d: Vec<Due>| d.into_iter().map(|d| d.out_req_no).collect::<Vec<_>>();
    let a = keys(s.claim_due("A", t(3), 2, lease).await.unwrap());
    assert_eq!(a, ["C0", "C1"], "earliest first, at most the limit");
    let b = keys(s.claim_due("B", t(3), 10, lease).await.unwrap());
    assert_eq!(b, ["C2", "C3"], "another owner skips what A holds; only what is due");
    assert_eq!(
        keys(s.claim_due("A", t(3), 10, lease).await.unwrap()),
        ["C0", "C1"],
        "an owner claims its own again"
    );
    assert_eq!(
        s.next_due("B").await.unwrap(),
        Some(t(2)),
        "A's orders are not B's next"
    );
    assert_eq!(s.next_due("C").await.unwrap(), Some(t(4)), "nor C's, while leased");
    assert_eq!(s.next_due("A").await.unwrap(), Some(t(0)));

    // A commit that reschedules an order ends its lease.
    s.commit(Batch {
        schedule: vec![("C0".into(), Some(t(1)))],
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(keys(s.claim_due("C", t(3), 1, lease).await.unwrap()), ["C0"]);

    // A lease that has run out is anyone's (a dead owner's orders are taken over).
    let gone = keys(s.claim_due("D", t(5), 10, std::time::Duration::ZERO).await.unwrap());
    assert_eq!(gone, ["C4", "C5"], "D leases what nobody holds, for no time at all");
    assert_eq!(keys(s.claim_due("E", t(5), 10, lease).await.unwrap()), ["C4", "C5"]);
    assert_eq!(
        s.due(t(5), 10).await.unwrap().len(),
        6,
        "claims do not change the due index"
    );

    // An owner that stops hands its claims over.
    s.release_all("A").await.unwrap();
    assert_eq!(
        keys(s.claim_due("F", t(3), 10, lease).await.unwrap()),
        ["C1"],
        "A's claims are free at once"
    );
    // Named leases: one holder at a time, renewed by it, handed over by `release_all`;
    // each change of hands raises the fencing epoch, which never goes back.
    let long = std::time::Duration::from_secs(60);
    assert_eq!(s.hold_lease("push:erp", "a", long).await.unwrap(), Some(1));
    assert_eq!(s.hold_lease("push:erp", "b", long).await.unwrap(), None, "held by a");
    assert_eq!(s.hold_lease("push:erp", "a", long).await.unwrap(), Some(1), "a renews");
    assert_eq!(
        s.hold_lease("push:other", "b", long).await.unwrap(),
        Some(1),
        "names are apart"
    );
    s.release_all("a").await.unwrap();
    assert_eq!(
        s.hold_lease("push:erp", "b", long).await.unwrap(),
        Some(2),
        "handed over, to a new epoch"
    );
    s.release_all("b").await.unwrap();
    assert_eq!(
        s.hold_lease("push:erp", "a", long).await.unwrap(),
        Some(3),
        "released leases keep their epoch: it never goes back"
    );
    assert_eq!(
        s.hold_lease("run-out", "a", std::time::Duration::ZERO).await.unwrap(),
        Some(1)
    );
    assert_eq!(
        s.hold_lease("run-out", "b", long).await.unwrap(),
        Some(2),
        "a lease that ran out is free"
    );
}

/// Events are numbered in increasing order across commits, one by one within a commit (a
/// store may leave gaps between commits: PostgreSQL does); reads after a cursor; named
/// cursors are separate and never move back.
pub async fn events_and_cursors<S: Storage>(s: &S) {
    assert_eq!(s.last_seq().await.unwrap(), 0);
    let first = s
        .commit(Batch {
            events: vec![
                event("A", EventKind::InboundRequested),
                event("A", EventKind::Submitted),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    let second = s
        .commit(Batch {
            events: vec![event("B", EventKind::InboundPaid)],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(first < second, "{first} < {second}");
    assert_eq!(s.last_seq().await.unwrap(), second);
    let all = delivered(s, 0, 100).await;
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![first - 1, first, second]
    );
    assert_eq!(all[2].kind, EventKind::InboundPaid);
    assert_eq!(
        s.events_after(first - 1, 1)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        vec![first]
    );
    assert!(s.events_after(second, 10).await.unwrap().is_empty());
    assert_eq!(s.count_after(0, 10).await.unwrap(), 3);
    assert_eq!(s.count_after(first - 1, 1).await.unwrap(), 1, "counted up to the cap");
    let newest: Vec<u64> = s
        .events_before(u64::MAX, 2)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(newest, vec![second, first], "newest first");
    let before: Vec<u64> = s
        .events_before(first, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(before, vec![first - 1]);
    assert_eq!(s.cursor("host").await.unwrap(), 0);
    s.ack("host", first).await.unwrap();
    s.ack("host", first - 1).await.unwrap();
    assert_eq!(s.cursor("host").await.unwrap(), first, "a cursor never moves back");
    assert_eq!(s.cursor("audit").await.unwrap(), 0, "cursors are per consumer");
}

fn orphan(sign: &str) -> Orphan {
    Orphan {
        kind: CallbackKind::Outbound,
        out_req_no: Some("APP001-unknown".into()),
        sign: sign.into(),
        data: "{}".into(),
        received_at: t(0),
    }
}

/// Orphans are kept once per signature.
pub async fn orphans<S: Storage>(s: &S) {
    s.commit(Batch {
        orphans: vec![orphan("S1")],
        ..Default::default()
    })
    .await
    .unwrap();
    s.commit(Batch {
        orphans: vec![orphan("S1"), orphan("S2")],
        ..Default::default()
    })
    .await
    .unwrap();
    let kept = s.orphans().await.unwrap();
    assert_eq!(
        kept.iter().map(|o| o.sign.as_str()).collect::<Vec<_>>(),
        vec!["S1", "S2"]
    );
}

fn opening(idempotency_key: &str, trans_no: &str) -> Opening {
    Opening {
        idempotency_key: idempotency_key.into(),
        trans_no: trans_no.into(),
    }
}

/// An idempotency key is written once, with its protocol, and names it from then on: writing
/// it again conflicts and leaves the whole commit unwritten.
pub async fn openings<S: Storage>(s: &S) {
    assert_eq!(s.opening("K1").await.unwrap(), None);
    s.commit(Batch {
        protocols: vec![Put {
            expected: None,
            value: sample_protocol("T1"),
        }],
        openings: vec![opening("K1", "T1")],
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(s.opening("K1").await.unwrap().as_deref(), Some("T1"));
    let again = s
        .commit(Batch {
            protocols: vec![Put {
                expected: None,
                value: sample_protocol("T2"),
            }],
            openings: vec![opening("K1", "T2")],
            events: vec![event("A", EventKind::InboundRequested)],
            ..Default::default()
        })
        .await;
    assert!(
        matches!(again, Err(StorageError::Conflict)),
        "a key written twice must conflict"
    );
    assert_eq!(
        s.opening("K1").await.unwrap().as_deref(),
        Some("T1"),
        "the first stands"
    );
    assert!(
        s.protocol("T2").await.unwrap().is_none(),
        "and nothing of the second was written"
    );
    assert_eq!(s.last_seq().await.unwrap(), 0);
    s.commit(Batch {
        openings: vec![opening("K2", "T1")],
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        s.opening("K2").await.unwrap().as_deref(),
        Some("T1"),
        "keys are independent"
    );
}

fn resolved(out_req_no: &str, note: &str) -> Event {
    let kind = EventKind::OperatorResolved {
        status: Status::Failure,
        note: note.into(),
        by: Some("li.lei".into()),
    };
    event(out_req_no, kind)
}

/// The audit trail holds exactly the events that record what people did, newest first, paged
/// by `seq`; a commit refused for a conflict adds nothing to it.
pub async fn audit_trail<S: Storage>(s: &S) {
    assert!(s.audit(None, 10).await.unwrap().is_empty());
    let first = s
        .commit(Batch {
            events: vec![
                event("A", EventKind::InboundRequested),
                resolved("A", "first"),
                event("A", EventKind::InboundFailed),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    let reconciled = Event {
        out_req_no: None,
        ..event(
            "",
            EventKind::OperatorReconciled {
                note: "second".into(),
                by: "li.lei".into(),
                drifting: 1,
            },
        )
    };
    let second = s
        .commit(Batch {
            events: vec![event("B", EventKind::Submitted), reconciled, resolved("C", "third")],
            ..Default::default()
        })
        .await
        .unwrap();
    let refused = s
        .commit(Batch {
            orders: vec![Put {
                expected: Some(7),
                value: sample_inbound("T1", "Z", 1),
            }],
            events: vec![resolved("Z", "never")],
            ..Default::default()
        })
        .await;
    assert!(matches!(refused, Err(StorageError::Conflict)));
    let seqs = |events: Vec<Event>| events.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(s.audit(None, 10).await.unwrap()),
        vec![second, second - 1, first - 1],
        "newest first, audit records only"
    );
    assert_eq!(seqs(s.audit(None, 2).await.unwrap()), vec![second, second - 1]);
    assert_eq!(
        seqs(s.audit(Some(second), 10).await.unwrap()),
        vec![second - 1, first - 1],
        "a page before a seq"
    );
    assert_eq!(seqs(s.audit(Some(first - 1), 10).await.unwrap()), Vec::<u64>::new());
    let page = s.audit(Some(second), 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert!(
        matches!(&page[0].kind, EventKind::OperatorReconciled { note, .. } if note == "second"),
        "each comes back whole"
    );
}

fn exchange(out_req_no: &str, n: usize) -> Exchange {
    let message = match n % 4 {
        0 => Message::Request {
            endpoint: "outpay".into(),
        },
        1 => Message::Reply {
            endpoint: "outpay".into(),
            verified: n % 8 == 1,
        },
        2 => Message::NoReply {
            endpoint: "outquery".into(),
            maybe_delivered: true,
            reason: "timed out".into(),
        },
        _ => Message::Callback {
            kind: CallbackKind::Outbound,
        },
    };
    Exchange {
        out_req_no: out_req_no.into(),
        at: t(n as i64),
        message,
        body: format!(r#"{{"n":{n},"payeeName":"张三 \"ö\""}}"#),
    }
}

/// An order's exchanges come back whole, in the order written, apart from other orders'; a
/// commit refused for a conflict keeps none of its own; past the bound an order keeps its
/// first ones, and the commit that brought more is not refused for it.
pub async fn evidence<S: Storage>(s: &S) {
    assert!(s.exchanges("A").await.unwrap().is_empty());
    s.commit(Batch {
        exchanges: vec![exchange("A", 0), exchange("B", 1), exchange("A", 2)],
        ..Default::default()
    })
    .await
    .unwrap();
    s.commit(Batch {
        orders: vec![Put {
            expected: None,
            value: sample_inbound("T1", "A", 100),
        }],
        exchanges: vec![exchange("A", 3)],
        ..Default::default()
    })
    .await
    .unwrap();
    let refused = s
        .commit(Batch {
            orders: vec![Put {
                expected: None,
                value: sample_inbound("T1", "A", 100),
            }],
            exchanges: vec![exchange("A", 4)],
            ..Default::default()
        })
        .await;
    assert!(matches!(refused, Err(StorageError::Conflict)));
    assert_eq!(
        s.exchanges("A").await.unwrap(),
        vec![exchange("A", 0), exchange("A", 2), exchange("A", 3)]
    );
    assert_eq!(s.exchanges("B").await.unwrap(), vec![exchange("B", 1)]);
    let many: Vec<Exchange> = (0..MAX_EXCHANGES_PER_ORDER + 6).map(|n| exchange("C", n)).collect();
    for chunk in many.chunks(5) {
        s.commit(Batch {
            exchanges: chunk.to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    assert_eq!(
        s.exchanges("C").await.unwrap(),
        many[..MAX_EXCHANGES_PER_ORDER].to_vec(),
        "the first ones, bounded"
    );
}

/// What was committed survives closing and reopening: records with versions, the due index,
/// events and cursors. `open` must open the same data each time it is called.
pub async fn reopen<S: Storage, F: FnMut() -> S>(mut open: F) {
    let last = {
        let s = open();
        let last = s
            .commit(Batch {
                protocols: vec![Put {
                    expected: None,
                    value: sample_protocol("T1"),
                }],
                orders: vec![
                    Put {
                        expected: None,
                        value: sample_inbound("T1", "A", 100),
                    },
                    Put {
                        expected: None,
                        value: sample_outbound("T1", "B", 50),
                    },
                ],
                events: vec![
                    event("A", EventKind::InboundRequested),
                    event("B", EventKind::OutboundReserved),
                ],
                schedule: vec![("A".into(), Some(t(5))), ("B".into(), Some(t(3)))],
                orphans: vec![orphan("S1")],
                openings: vec![opening("K1", "T1")],
                exchanges: vec![exchange("A", 1)],
            })
            .await
            .unwrap();
        s.ack("host", last - 1).await.unwrap();
        // As a host's shutdown does; a crash instead is the crash tests' subject.
        s.close().await.unwrap();
        last
    };
    let s = open();
    assert_eq!(s.protocol("T1").await.unwrap().map(|p| p.version), Some(1));
    assert_eq!(
        s.order("A").await.unwrap().map(|o| o.value),
        Some(sample_inbound("T1", "A", 100))
    );
    assert_eq!(s.orders_of("T1").await.unwrap().len(), 2);
    let due: Vec<String> = s
        .due(t(10), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.out_req_no)
        .collect();
    assert_eq!(due, vec!["B".to_owned(), "A".to_owned()]);
    assert_eq!(s.last_seq().await.unwrap(), last);
    assert_eq!(s.cursor("host").await.unwrap(), last - 1);
    assert_eq!(s.orphans().await.unwrap().len(), 1);
    assert_eq!(s.opening("K1").await.unwrap().as_deref(), Some("T1"));
    assert_eq!(s.exchanges("A").await.unwrap(), vec![exchange("A", 1)]);
    let counts = [
        (Listing::Status(Status::Requested), 1),
        (Listing::Status(Status::Reserved), 1),
    ];
    assert_counts(&s, &counts, "reopen").await;
    // Numbering continues after a reopen.
    let next = s
        .commit(Batch {
            events: vec![event("A", EventKind::Submitted)],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(next > last, "{next} after {last}");
    let again = s
        .commit(Batch {
            orders: vec![Put {
                expected: None,
                value: sample_inbound("T1", "A", 1),
            }],
            ..Default::default()
        })
        .await;
    assert!(
        matches!(again, Err(StorageError::Conflict)),
        "versions survive a reopen"
    );
}

/// Every field of every stored type comes back exactly as written: a property checked over
/// `count` generated protocols, orders of both kinds, events and orphans, whose fields take
/// the awkward values (`None` and `Some("")` apart, unicode, quotes, long text, unknown enum
/// values, every status).
pub async fn round_trip<S: Storage>(s: &S, count: u64) {
    for seed in 0..count {
        let mut g = Gen(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03);
        let protocol = g.protocol(seed);
        let orders = [
            g.inbound(&protocol.trans_no, seed),
            g.outbound(&protocol.trans_no, seed),
        ];
        let mut event = g.event(seed);
        let orphan = g.orphan(seed);
        let batch = Batch {
            protocols: vec![Put {
                expected: None,
                value: protocol.clone(),
            }],
            orders: orders
                .iter()
                .map(|o| Put {
                    expected: None,
                    value: o.clone(),
                })
                .collect(),
            events: vec![event.clone()],
            orphans: vec![orphan.clone()],
            ..Default::default()
        };
        let seq = s
            .commit(batch)
            .await
            .unwrap_or_else(|e| panic!("record {seed}: commit failed: {e}"));
        let stored = s.protocol(&protocol.trans_no).await.ok().flatten().map(|p| p.value);
        assert_eq!(stored.as_ref(), Some(&protocol), "protocol {seed} did not round-trip");
        for o in &orders {
            let stored = s.order(o.out_req_no()).await.ok().flatten().map(|o| o.value);
            assert_eq!(stored.as_ref(), Some(o), "order {seed} did not round-trip");
        }
        event.seq = seq;
        let stored = delivered(s, seq - 1, 1).await;
        assert_eq!(stored, vec![event], "event {seed} did not round-trip");
        let kept = s.orphans().await.unwrap_or_default();
        assert!(kept.contains(&orphan), "orphan {seed} did not round-trip");
    }
    assert_counts_agree(s, "round trip").await;
}

/// Up to `limit` events after `after` once every event written so far is delivered: a store
/// may hold some back for a moment behind a commit in flight, even one of another test's
/// ([`Storage::events_after`]).
pub async fn delivered<S: Storage + ?Sized>(s: &S, after: u64, limit: usize) -> Vec<Event> {
    let written = s.last_seq().await.unwrap();
    loop {
        let events = s.events_after(after, limit).await.unwrap();
        if events.len() == limit || events.last().map_or(after, |e| e.seq) >= written {
            return events;
        }
        tokio::task::yield_now().await;
    }
}

/// For the auditors of simulations that run a real workload on a store: whether each of
/// `orders` is in exactly the listings its state puts it in, as the store's listing indexes
/// say, and whether each listing's count is the size of its index. The disagreements in
/// words (none when all agree).
pub async fn listing_disagreements<S: Storage + ?Sized>(s: &S, orders: &[Order]) -> crate::Result<Vec<String>> {
    let mut out = Vec::new();
    let counts = s.listing_counts().await?;
    for listing in Listing::ALL {
        let query = OrderQuery {
            listing: Some(listing),
            trans_no: None,
        };
        let listed: std::collections::BTreeSet<String> = s
            .orders(&query, None, usize::MAX)
            .await?
            .into_iter()
            .map(|o| o.value.out_req_no().to_owned())
            .collect();
        for o in orders {
            if listed.contains(o.out_req_no()) != o.listings().any(|l| l == listing) {
                out.push(format!(
                    "{} is {} but the {} index says otherwise",
                    o.out_req_no(),
                    o.state_label(),
                    listing.name()
                ));
            }
        }
        let counted = counts.iter().find(|(l, _)| *l == listing).map(|(_, n)| *n);
        if counted != Some(listed.len() as u64) {
            out.push(format!(
                "the {} index holds {} orders but its count says {counted:?}",
                listing.name(),
                listed.len()
            ));
        }
    }
    Ok(out)
}

/// Panics unless every listing's count is the size of its index (and every order the store
/// holds is listed where its state says).
async fn assert_counts_agree<S: Storage>(s: &S, rule: &str) {
    let mut orders = Vec::new();
    loop {
        let after = orders.last().map(|o: &Order| o.out_req_no().to_owned());
        let page = s.orders(&OrderQuery::default(), after.as_deref(), 512).await.unwrap();
        let done = page.len() < 512;
        orders.extend(page.into_iter().map(|o| o.value));
        if done {
            break;
        }
    }
    let wrong = listing_disagreements(s, &orders).await.unwrap();
    assert!(wrong.is_empty(), "{rule}: {wrong:#?}");
}

/// The counts of the listings named, the others being zero.
async fn assert_counts<S: Storage>(s: &S, expected: &[(Listing, u64)], rule: &str) {
    let counts = s.listing_counts().await.unwrap();
    let want: Vec<(Listing, u64)> = Listing::ALL
        .into_iter()
        .map(|l| (l, expected.iter().find(|(e, _)| *e == l).map_or(0, |(_, n)| *n)))
        .collect();
    assert_eq!(counts, want, "{rule}: listing counts");
}

fn keys(orders: &[super::Versioned<Order>]) -> Vec<&str> {
    orders.iter().map(|o| o.value.out_req_no()).collect()
}

/// The read models: protocols and orders page by page in key order, orders by listing (which
/// follows every change of status and of the attention flag) and by protocol, an order's
/// history, and its next poll time.
pub async fn read_models<S: Storage>(s: &S) {
    let write = |protocols: Vec<Protocol>, orders: Vec<(Option<u64>, Order)>, events: Vec<Event>| Batch {
        protocols: protocols
            .into_iter()
            .map(|value| Put { expected: None, value })
            .collect(),
        orders: orders
            .into_iter()
            .map(|(expected, value)| Put { expected, value })
            .collect(),
        events,
        ..Default::default()
    };
    let protocols = ["T3", "T1", "T2"].map(sample_protocol).to_vec();
    let orders = vec![
        (None, sample_inbound("T1", "o1", 100)),
        (None, sample_outbound("T1", "o2", 50)),
        (None, sample_inbound("T2", "o3", 70)),
    ];
    let mut other = event("o1", EventKind::InboundRequested);
    other.out_req_no = None;
    let events = vec![
        event("o1", EventKind::InboundRequested),
        other,
        event("o2", EventKind::OutboundReserved),
        event("o1", EventKind::Submitted),
    ];
    s.commit(write(protocols, orders, events)).await.unwrap();

    let page = |after: Option<&'static str>| async move { s.protocols(after, 2).await.unwrap() };
    let first: Vec<String> = page(None).await.into_iter().map(|p| p.value.trans_no).collect();
    let second: Vec<String> = page(Some("T2")).await.into_iter().map(|p| p.value.trans_no).collect();
    assert_eq!(
        (first, second),
        (vec!["T1".to_owned(), "T2".into()], vec!["T3".to_owned()])
    );

    let list = |listing: Option<Listing>, trans_no: Option<&str>, after: Option<&'static str>, limit| {
        let query = OrderQuery {
            listing,
            trans_no: trans_no.map(str::to_owned),
        };
        async move { s.orders(&query, after, limit).await.unwrap() }
    };
    let requested = Some(Listing::Status(Status::Requested));
    assert_eq!(keys(&list(None, None, None, 10).await), ["o1", "o2", "o3"]);
    assert_eq!(keys(&list(None, None, Some("o1"), 1).await), ["o2"]);
    assert_eq!(keys(&list(requested, None, None, 10).await), ["o1", "o3"]);
    let counted = |status, n| (Listing::Status(status), n);
    assert_counts(
        s,
        &[counted(Status::Requested, 2), counted(Status::Reserved, 1)],
        "read models",
    )
    .await;
    assert_eq!(keys(&list(requested, None, Some("o1"), 10).await), ["o3"]);
    assert_eq!(keys(&list(requested, Some("T1"), None, 10).await), ["o1"]);
    assert_eq!(keys(&list(None, Some("T1"), None, 10).await), ["o1", "o2"]);
    assert!(list(requested, Some("T9"), None, 10).await.is_empty());

    // A payout sent, then flagged: it leaves `Reserved` and joins `Submitted` and `NeedsAttention`.
    let mut o2 = s.order("o2").await.unwrap().unwrap().value;
    o2.status = Status::Submitted;
    o2.attempts.needs_attention = true;
    s.commit(write(vec![], vec![(Some(1), o2.clone())], vec![]))
        .await
        .unwrap();
    assert!(
        list(Some(Listing::Status(Status::Reserved)), None, None, 10)
            .await
            .is_empty()
    );
    assert_eq!(
        keys(&list(Some(Listing::Status(Status::Submitted)), None, None, 10).await),
        ["o2"]
    );
    assert_eq!(keys(&list(Some(Listing::NeedsAttention), None, None, 10).await), ["o2"]);
    assert_eq!(
        keys(&list(Some(Listing::NeedsAttention), Some("T1"), None, 10).await),
        ["o2"]
    );
    let flagged = [
        counted(Status::Requested, 2),
        counted(Status::Submitted, 1),
        (Listing::NeedsAttention, 1),
    ];
    assert_counts(s, &flagged, "read models, flagged").await;
    // A rewrite that changes no listing changes no count.
    o2.attempts.quiet_polls += 1;
    s.commit(write(vec![], vec![(Some(2), o2.clone())], vec![]))
        .await
        .unwrap();
    assert_counts(s, &flagged, "read models, rewritten").await;
    // Settled: no longer open, so no longer needing attention, flag or not.
    o2.status = Status::Failure;
    s.commit(write(vec![], vec![(Some(3), o2)], vec![])).await.unwrap();
    assert_counts(
        s,
        &[counted(Status::Requested, 2), counted(Status::Failure, 1)],
        "read models, settled",
    )
    .await;
    assert!(list(Some(Listing::NeedsAttention), None, None, 10).await.is_empty());
    assert!(
        list(Some(Listing::Status(Status::Submitted)), None, None, 10)
            .await
            .is_empty()
    );
    assert_eq!(
        keys(&list(Some(Listing::Status(Status::Failure)), None, None, 10).await),
        ["o2"]
    );
    assert_eq!(s.orders_of("T1").await.unwrap().len(), 2);

    let history = s.history("o1").await.unwrap();
    let seen: Vec<(u64, &EventKind)> = history.iter().map(|e| (e.seq, &e.kind)).collect();
    let log = delivered(s, 0, 100).await;
    let logged: Vec<(u64, &EventKind)> = log
        .iter()
        .filter(|e| e.out_req_no.as_deref() == Some("o1"))
        .map(|e| (e.seq, &e.kind))
        .collect();
    assert_eq!(seen, logged, "the order's events, in seq order");
    let kinds: Vec<&EventKind> = history.iter().map(|e| &e.kind).collect();
    assert_eq!(kinds, [&EventKind::InboundRequested, &EventKind::Submitted]);
    assert!(s.history("nope").await.unwrap().is_empty());

    assert_eq!(s.due_at("o1").await.unwrap(), None);
    for at in [Some(t(5)), Some(t(3)), None] {
        s.commit(Batch {
            schedule: vec![("o1".into(), at)],
            ..Default::default()
        })
        .await
        .unwrap();
        assert_eq!(s.due_at("o1").await.unwrap(), at);
    }
}
