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
//! These functions panic on the first broken rule, like any test.

use super::{Batch, Due, Orphan, Put, Storage};
use crate::domain::{Order, Protocol};
use crate::event::{Event, EventKind};
use crate::observation::Source;
use crate::wire::{Amount, CallbackKind, CashierType, ChannelType, OutType, Outpay, Prepay};
use crate::{Error, Sensitive};
use chrono::{DateTime, TimeZone, Utc};

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
    events_and_cursors(&fresh()).await;
    orphans(&fresh()).await;
}

/// Records get versions from 1; a stale or missing expected version is a `Conflict`.
pub async fn versions_and_conflicts<S: Storage>(s: &S) {
    let p = sample_protocol("T1");
    s.commit(Batch { protocols: vec![Put { expected: None, value: p.clone() }], ..Default::default() }).await.unwrap();
    let got = s.protocol("T1").await.unwrap().unwrap();
    assert_eq!((got.version, &got.value), (1, &p));
    let again =
        s.commit(Batch { protocols: vec![Put { expected: None, value: p.clone() }], ..Default::default() }).await;
    assert!(matches!(again, Err(Error::Conflict)), "inserting an existing record must conflict");
    let stale =
        s.commit(Batch { protocols: vec![Put { expected: Some(7), value: p.clone() }], ..Default::default() }).await;
    assert!(matches!(stale, Err(Error::Conflict)), "a wrong version must conflict");
    let mut p2 = p.clone();
    p2.business_id = "B2".into();
    s.commit(Batch { protocols: vec![Put { expected: Some(1), value: p2.clone() }], ..Default::default() })
        .await
        .unwrap();
    let got = s.protocol("T1").await.unwrap().unwrap();
    assert_eq!((got.version, &got.value), (2, &p2));
    let missing = s
        .commit(Batch {
            orders: vec![Put { expected: Some(1), value: sample_inbound("T1", "X", 1) }],
            ..Default::default()
        })
        .await;
    assert!(matches!(missing, Err(Error::Conflict)), "updating a missing record must conflict");
    assert!(s.order("X").await.unwrap().is_none());
    assert!(s.protocol("nope").await.unwrap().is_none());
}

/// A failed commit leaves nothing: no record, no event, no schedule change.
pub async fn atomicity<S: Storage>(s: &S) {
    s.commit(Batch {
        orders: vec![Put { expected: None, value: sample_inbound("T1", "A", 100) }],
        schedule: vec![("A".into(), Some(t(10)))],
        events: vec![event("A", EventKind::InboundRequested)],
        ..Default::default()
    })
    .await
    .unwrap();
    let before_seq = s.last_seq().await.unwrap();
    let failing = Batch {
        protocols: vec![Put { expected: None, value: sample_protocol("T9") }],
        orders: vec![
            Put { expected: None, value: sample_inbound("T1", "B", 100) },
            Put { expected: Some(99), value: sample_inbound("T1", "A", 100) },
        ],
        events: vec![event("B", EventKind::InboundRequested)],
        schedule: vec![("A".into(), None), ("B".into(), Some(t(1)))],
        orphans: vec![orphan("S1")],
    };
    assert!(matches!(s.commit(failing).await, Err(Error::Conflict)));
    assert!(s.order("B").await.unwrap().is_none(), "a failed commit wrote an order");
    assert!(s.protocol("T9").await.unwrap().is_none(), "a failed commit wrote a protocol");
    assert_eq!(s.last_seq().await.unwrap(), before_seq, "a failed commit appended events");
    assert_eq!(s.due(t(100), 10).await.unwrap(), vec![Due { at: t(10), out_req_no: "A".into() }]);
    assert!(s.orphans().await.unwrap().is_empty());
    assert_eq!(s.orders_of("T1").await.unwrap().len(), 1);
}

/// Due entries come earliest first, only up to `now`, at most `limit`; rescheduling moves an
/// entry, `None` removes it.
pub async fn due_index<S: Storage>(s: &S) {
    let mut orders = Vec::new();
    let mut schedule = Vec::new();
    for i in 0..20i64 {
        let key = format!("O{i:02}");
        orders.push(Put { expected: None, value: sample_inbound("T1", &key, 100) });
        // Deliberately out of order in time.
        schedule.push((key, Some(t((i * 7) % 20))));
    }
    s.commit(Batch { orders, schedule, ..Default::default() }).await.unwrap();
    let due = s.due(t(9), 100).await.unwrap();
    assert_eq!(due.len(), 10, "orders due at or before now");
    assert!(due.windows(2).all(|w| w[0] <= w[1]), "earliest first");
    assert!(due.iter().all(|d| d.at <= t(9)));
    assert_eq!(s.due(t(100), 5).await.unwrap().len(), 5, "limit respected");
    assert_eq!(s.next_due().await.unwrap(), Some(t(0)));
    let first = due[0].out_req_no.clone();
    s.commit(Batch { schedule: vec![(first.clone(), Some(t(50)))], ..Default::default() }).await.unwrap();
    let all = s.due(t(100), 100).await.unwrap();
    assert_eq!(all.len(), 20, "rescheduling must not duplicate");
    assert_eq!(all.last().map(|d| (&d.out_req_no, d.at)), Some((&first, t(50))));
    s.commit(Batch { schedule: vec![(first.clone(), None)], ..Default::default() }).await.unwrap();
    let all = s.due(t(100), 100).await.unwrap();
    assert_eq!(all.len(), 19);
    assert!(all.iter().all(|d| d.out_req_no != first), "a removed entry is gone");
}

/// Events are numbered 1, 2, 3… without gaps across commits; reads after a cursor; named
/// cursors are separate and never move back.
pub async fn events_and_cursors<S: Storage>(s: &S) {
    assert_eq!(s.last_seq().await.unwrap(), 0);
    let last = s
        .commit(Batch {
            events: vec![event("A", EventKind::InboundRequested), event("A", EventKind::Submitted)],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(last, 2);
    let last =
        s.commit(Batch { events: vec![event("B", EventKind::InboundPaid)], ..Default::default() }).await.unwrap();
    assert_eq!(last, 3);
    let all = s.events_after(0, 100).await.unwrap();
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(all[2].kind, EventKind::InboundPaid);
    assert_eq!(s.events_after(1, 1).await.unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2]);
    assert!(s.events_after(3, 10).await.unwrap().is_empty());
    assert_eq!(s.cursor("host").await.unwrap(), 0);
    s.ack("host", 2).await.unwrap();
    s.ack("host", 1).await.unwrap();
    assert_eq!(s.cursor("host").await.unwrap(), 2, "a cursor never moves back");
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
    s.commit(Batch { orphans: vec![orphan("S1")], ..Default::default() }).await.unwrap();
    s.commit(Batch { orphans: vec![orphan("S1"), orphan("S2")], ..Default::default() }).await.unwrap();
    let kept = s.orphans().await.unwrap();
    assert_eq!(kept.iter().map(|o| o.sign.as_str()).collect::<Vec<_>>(), vec!["S1", "S2"]);
}

/// What was committed survives closing and reopening: records with versions, the due index,
/// events and cursors. `open` must open the same data each time it is called.
pub async fn reopen<S: Storage, F: FnMut() -> S>(mut open: F) {
    {
        let s = open();
        s.commit(Batch {
            protocols: vec![Put { expected: None, value: sample_protocol("T1") }],
            orders: vec![
                Put { expected: None, value: sample_inbound("T1", "A", 100) },
                Put { expected: None, value: sample_outbound("T1", "B", 50) },
            ],
            events: vec![event("A", EventKind::InboundRequested), event("B", EventKind::OutboundReserved)],
            schedule: vec![("A".into(), Some(t(5))), ("B".into(), Some(t(3)))],
            orphans: vec![orphan("S1")],
        })
        .await
        .unwrap();
        s.ack("host", 1).await.unwrap();
    }
    let s = open();
    assert_eq!(s.protocol("T1").await.unwrap().map(|p| p.version), Some(1));
    assert_eq!(s.order("A").await.unwrap().map(|o| o.value), Some(sample_inbound("T1", "A", 100)));
    assert_eq!(s.orders_of("T1").await.unwrap().len(), 2);
    let due: Vec<String> = s.due(t(10), 10).await.unwrap().into_iter().map(|d| d.out_req_no).collect();
    assert_eq!(due, vec!["B".to_owned(), "A".to_owned()]);
    assert_eq!(s.last_seq().await.unwrap(), 2);
    assert_eq!(s.cursor("host").await.unwrap(), 1);
    assert_eq!(s.orphans().await.unwrap().len(), 1);
    // Numbering continues after a reopen.
    let last = s.commit(Batch { events: vec![event("A", EventKind::Submitted)], ..Default::default() }).await.unwrap();
    assert_eq!(last, 3);
    let again = s
        .commit(Batch {
            orders: vec![Put { expected: None, value: sample_inbound("T1", "A", 1) }],
            ..Default::default()
        })
        .await;
    assert!(matches!(again, Err(Error::Conflict)), "versions survive a reopen");
}

/// Every field of every stored type comes back exactly as written: a property checked over
/// `count` generated protocols, orders of both kinds, events and orphans, whose fields take
/// the awkward values (`None` and `Some("")` apart, unicode, quotes, long text, unknown enum
/// values, every status).
pub async fn round_trip<S: Storage>(s: &S, count: u64) {
    for seed in 0..count {
        let mut g = Gen(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03);
        let protocol = g.protocol(seed);
        let orders = [g.inbound(&protocol.trans_no, seed), g.outbound(&protocol.trans_no, seed)];
        let mut event = g.event(seed);
        let orphan = g.orphan(seed);
        let batch = Batch {
            protocols: vec![Put { expected: None, value: protocol.clone() }],
            orders: orders.iter().map(|o| Put { expected: None, value: o.clone() }).collect(),
            events: vec![event.clone()],
            orphans: vec![orphan.clone()],
            ..Default::default()
        };
        let seq = s.commit(batch).await.unwrap_or_else(|e| panic!("record {seed}: commit failed: {e}"));
        let stored = s.protocol(&protocol.trans_no).await.ok().flatten().map(|p| p.value);
        assert_eq!(stored.as_ref(), Some(&protocol), "protocol {seed} did not round-trip");
        for o in &orders {
            let stored = s.order(o.out_req_no()).await.ok().flatten().map(|o| o.value);
            assert_eq!(stored.as_ref(), Some(o), "order {seed} did not round-trip");
        }
        event.seq = seq;
        let stored = s.events_after(seq - 1, 1).await.unwrap_or_default();
        assert_eq!(stored, vec![event], "event {seed} did not round-trip");
        let kept = s.orphans().await.unwrap_or_default();
        assert!(kept.contains(&orphan), "orphan {seed} did not round-trip");
    }
}

/// A small deterministic generator of awkward field values (SplitMix64).
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from.get((self.next() % from.len().max(1) as u64) as usize).copied().unwrap_or_default()
    }

    fn text(&mut self) -> String {
        let long = "长".repeat(300);
        let texts =
            ["", " ", "plain", "中国工商银行 海淀支行", "quote\" back\\slash", "line\nbreak", "\u{0}nul", &long];
        self.pick(&texts).to_owned()
    }

    fn opt_text(&mut self) -> Option<String> {
        if self.next().is_multiple_of(3) { None } else { Some(self.text()) }
    }

    fn sensitive(&mut self) -> Option<Sensitive> {
        self.opt_text().map(Sensitive::new)
    }

    fn amount(&mut self) -> Amount {
        Amount::from_fen(self.next() % 10_000_000_000).unwrap_or(Amount::ZERO)
    }

    fn opt_amount(&mut self) -> Option<Amount> {
        if self.next().is_multiple_of(3) { None } else { Some(self.amount()) }
    }

    fn time(&mut self) -> Option<crate::wire::ReportedTime> {
        let times = ["2026-11-27 10:10:10", "2026-11-27 10:10:10.0", "", "tomorrow", "20261127101010"];
        if self.next().is_multiple_of(3) { None } else { Some(crate::wire::ReportedTime::parse(self.pick(&times))) }
    }

    fn when(&mut self) -> DateTime<Utc> {
        t((self.next() % 100_000_000) as i64 - 50_000_000)
    }

    fn status(&mut self) -> crate::domain::Status {
        use crate::domain::Status::*;
        [Requested, Reserved, Submitted, Unpaid, Processing, Success, Failure][(self.next() % 7) as usize]
    }

    fn flag(&mut self) -> bool {
        self.next().is_multiple_of(2)
    }

    fn attempts(&mut self) -> crate::domain::Attempts {
        crate::domain::Attempts {
            submissions: (self.next() % 9) as u32,
            last_submitted_at: if self.flag() { Some(self.when()) } else { None },
            quiet_polls: (self.next() % 40) as u32,
            needs_attention: self.flag(),
        }
    }

    fn refusal(&mut self) -> Option<crate::domain::Refusal> {
        self.flag().then(|| crate::domain::Refusal { code: self.text(), msg: self.text() })
    }

    fn protocol(&mut self, seed: u64) -> Protocol {
        let balances = crate::domain::RemoteBalances {
            available: self.amount(),
            in_transit: self.amount(),
            paid_out: self.amount(),
            seen_at: self.when(),
        };
        Protocol {
            trans_no: format!("T-rt-{seed}"),
            business_id: self.text(),
            trans_desc: self.text(),
            channel_type: ChannelType::from_wire(self.pick(&["LFT", "", "NEW"])),
            cashier_type: CashierType::from_wire(self.pick(&["POS", "QP", "ONLINEBANK"])),
            create_time: self.time(),
            remote: if self.flag() { Some(balances) } else { None },
            ledger: crate::ledger::Ledger {
                in_transit: self.amount(),
                available: self.amount(),
                reserved: self.amount(),
                paid_out: self.amount(),
                refunded: self.amount(),
                opening: self.amount(),
            },
        }
    }

    fn inbound(&mut self, trans_no: &str, seed: u64) -> Order {
        use crate::wire::{ArrivedStatus, InboundView, PayStatus, ProdCatalog};
        let request = Prepay {
            trans_no: trans_no.into(),
            out_req_no: format!("APP001-rt-in-{seed}"),
            amount: self.amount(),
            out_success_notify_url: self.text(),
            out_arrived_notify_url: self.opt_text(),
            prod_catalog: self.opt_text().map(|s| ProdCatalog::from_wire(&s)),
            contract_num: self.opt_text(),
            qp_user_name: self.sensitive(),
            qp_cert_number: self.sensitive(),
            return_url: self.opt_text(),
        };
        let remote = InboundView {
            trans_no: self.opt_text(),
            app_id: self.opt_text(),
            channel_type: self.opt_text().map(|s| ChannelType::from_wire(&s)),
            amount: self.opt_amount(),
            out_req_no: self.opt_text(),
            pos_code: self.opt_text(),
            pay_order_no: self.opt_text(),
            pay_status: self.opt_text().map(|s| PayStatus::from_wire(&s)),
            arrived_status: self.opt_text().map(|s| ArrivedStatus::from_wire(&s)),
            pay_finish_time: self.time(),
            pay_arrive_time: self.time(),
            create_time: self.time(),
            card_num: self.sensitive(),
            issuing_bank: self.opt_text(),
            issuing_bank_zh: self.opt_text(),
            channel_return_code: self.opt_text(),
            channel_return_msg: self.opt_text(),
            contract_num: self.opt_text(),
            cashier_url: self.opt_text(),
            qp_user_name: self.sensitive(),
            qp_cert_number: self.sensitive(),
            cashier_type: self.opt_text().map(|s| CashierType::from_wire(&s)),
        };
        Order::Inbound(crate::domain::InboundOrder {
            app_id: self.text(),
            request,
            status: self.status(),
            arrived: self.flag(),
            closed: self.flag(),
            refusal: self.refusal(),
            remote,
            attempts: self.attempts(),
        })
    }

    fn outbound(&mut self, trans_no: &str, seed: u64) -> Order {
        use crate::wire::{OutboundView, PayStatus};
        let request = Outpay {
            trans_no: trans_no.into(),
            out_req_no: format!("APP001-rt-out-{seed}"),
            amount: self.amount(),
            channel_type: ChannelType::from_wire(self.pick(&["LFT", ""])),
            out_notify_url: self.text(),
            bank_acc_name: Sensitive::new(self.text()),
            bank_acc_num: Sensitive::new(self.text()),
            bank_name: self.text(),
            bank_cnaps: self.text(),
            out_type: OutType::from_wire(self.pick(&["OUT", "REFUND", "SPLIT"])),
            remark: self.opt_text(),
        };
        let remote = OutboundView {
            trans_no: self.opt_text(),
            app_id: self.opt_text(),
            channel_subacc_code: self.opt_text(),
            channel_subacc_custid: self.opt_text(),
            amount: self.opt_amount(),
            out_req_no: self.opt_text(),
            pay_order_no: self.opt_text(),
            channel_type: self.opt_text().map(|s| ChannelType::from_wire(&s)),
            bank_acc_name: self.sensitive(),
            bank_acc_num: self.sensitive(),
            bank_name: self.opt_text(),
            bank_cnaps: self.opt_text(),
            out_type: self.opt_text().map(|s| OutType::from_wire(&s)),
            remark: self.opt_text(),
            pay_status: self.opt_text().map(|s| PayStatus::from_wire(&s)),
            pay_finish_time: self.time(),
            create_time: self.time(),
            channel_return_code: self.opt_text(),
            channel_return_msg: self.opt_text(),
        };
        Order::Outbound(crate::domain::OutboundOrder {
            app_id: self.text(),
            request,
            status: self.status(),
            refusal: self.refusal(),
            remote,
            attempts: self.attempts(),
        })
    }

    fn event(&mut self, seed: u64) -> Event {
        let kind = match self.next() % 5 {
            0 => EventKind::ProtocolCreateRequested { attempt: self.text() },
            1 => EventKind::OperatorResolved { status: self.status(), note: self.text() },
            2 => EventKind::Anomaly(crate::event::Anomaly::UnknownEnumValue { field: self.text(), value: self.text() }),
            3 => EventKind::OutboundFailed { refusal: self.refusal() },
            _ => EventKind::Pending { status: self.status() },
        };
        Event {
            seq: 0,
            at: self.when(),
            trans_no: self.opt_text(),
            out_req_no: self.flag().then(|| format!("APP001-rt-{seed}")),
            source: [
                Source::Poll,
                Source::Reply,
                Source::Engine,
                Source::Operator,
                Source::Callback(CallbackKind::Outbound),
            ][(self.next() % 5) as usize],
            kind,
        }
    }

    fn orphan(&mut self, seed: u64) -> Orphan {
        Orphan {
            kind: CallbackKind::ALL[(self.next() % 3) as usize],
            out_req_no: self.opt_text(),
            sign: format!("sign-rt-{seed}"),
            data: self.text(),
            received_at: self.when(),
        }
    }
}
