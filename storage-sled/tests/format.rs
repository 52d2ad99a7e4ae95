//! Format version 1 is a promise to every store already on disk: an order written by an
//! earlier build must read back the same, and this build must write the same bytes. The bytes
//! below were written by the build that introduced the format; a change to the stored shape
//! of an order fails here before it reaches anyone's disk.

use chrono::{TimeZone, Utc};
use protopay_engine::domain::RemoteBalances;
use protopay_engine::storage::Orphan;
use protopay_engine::storage::conformance::{sample_inbound, sample_outbound, sample_protocol};
use protopay_engine::wire::{ArrivedStatus, CallbackKind, OutType, PayStatus, ReportedTime};
use protopay_engine::{Amount, Anomaly, Event, EventKind, Order, OrderKind, Protocol, Refusal, Source, Status};
use protopay_storage_sled::codec;

/// Both kinds of order with every stored field set away from its default.
fn orders() -> Vec<Order> {
    let mut inbound = sample_inbound("T1", "IN-1", 12_345);
    inbound.status = Status::Success;
    inbound.attempts.sends = 2;
    inbound.attempts.quiet_polls = 1;
    if let OrderKind::Inbound(i) = &mut inbound.kind {
        i.arrived = true;
        i.closed = true;
        i.remote.pay_status = Some(PayStatus::Success);
        i.remote.arrived_status = Some(ArrivedStatus::Arrived);
        i.remote.pos_code = Some("123456".into());
    }
    let mut outbound = sample_outbound("T1", "OUT-1", 500);
    outbound.status = Status::Failure;
    outbound.refusal = Some(Refusal {
        code: "EP30001".into(),
        msg: "refused".into(),
    });
    outbound.attempts.needs_attention = true;
    if let OrderKind::Outbound(o) = &mut outbound.kind {
        o.remote.pay_status = Some(PayStatus::Failure);
    }
    vec![inbound, outbound]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn orders_keep_format_1() {
    for (order, pinned) in orders().iter().zip(PINNED) {
        let bytes = codec::value(order).unwrap();
        assert_eq!(hex(&bytes), pinned, "{} encodes differently", order.out_req_no());
        let back: Order = codec::from_value(&bytes).unwrap();
        assert_eq!(&back, order);
    }
}

/// As written by format 1's first build (inbound, then outbound).
const PINNED: [&str; 2] = [
    concat!(
        "81a7496e626f756e6488a66170705f6964a6415050303031a77265717565737484a77472616e734e",
        "6fa25431a86f75745265714e6fa4494e2d31a6616d6f756e74a63132332e3435b36f757453756363",
        "6573734e6f7469667955726cb6687474703a2f2f682f6e2f696e626f756e642d706179a673746174",
        "7573a753756363657373a761727269766564c3a6636c6f736564c3a77265667573616cc0a672656d",
        "6f746583a7706f73436f6465a6313233343536a9706179537461747573a753554343455353ad6172",
        "7269766564537461747573a23032a8617474656d70747384ab7375626d697373696f6e7302b16c61",
        "73745f7375626d69747465645f6174c0ab71756965745f706f6c6c7301af6e656564735f61747465",
        "6e74696f6ec2",
    ),
    concat!(
        "81a84f7574626f756e6486a66170705f6964a6415050303031a7726571756573748aa77472616e73",
        "4e6fa25431a86f75745265714e6fa54f55542d31a6616d6f756e74a4352e3030ab6368616e6e656c",
        "54797065a34c4654ac6f75744e6f7469667955726cb3687474703a2f2f682f6e2f6f7574626f756e",
        "64ab62616e6b4163634e616d65a16eaa62616e6b4163634e756db036323232303030303131313132",
        "323232a862616e6b4e616d65a162a962616e6b436e617073ac313032313030303030303330a76f75",
        "7454797065a34f5554a6737461747573a74661696c757265a77265667573616c82a4636f6465a745",
        "503330303031a36d7367a772656675736564a672656d6f746581a9706179537461747573a7464149",
        "4c555245a8617474656d70747384ab7375626d697373696f6e7300b16c6173745f7375626d697474",
        "65645f6174c0ab71756965745f706f6c6c7300af6e656564735f617474656e74696f6ec3",
    ),
];

/// A protocol, an event of each shape (unit, struct, nested anomaly) and an orphan callback,
/// with every field set.
fn other_records() -> (Protocol, Vec<Event>, Orphan) {
    let at = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap();
    let mut protocol = sample_protocol("T1");
    protocol.create_time = Some(ReportedTime::parse("2026-11-26 12:00:00"));
    protocol.ledger.available = Amount::from_fen(1_000).unwrap();
    protocol.ledger.reserved = Amount::from_fen(250).unwrap();
    protocol.remote = Some(RemoteBalances {
        available: Amount::from_fen(1_250).unwrap(),
        in_transit: Amount::ZERO,
        paid_out: Amount::from_fen(99).unwrap(),
        seen_at: at,
    });
    let event = |seq, kind| Event {
        seq,
        at,
        trans_no: Some("T1".into()),
        out_req_no: Some("OUT-1".into()),
        source: Source::Callback(CallbackKind::Outbound),
        kind,
    };
    let events = vec![
        event(1, EventKind::Submitted),
        event(
            2,
            EventKind::OutboundSucceeded {
                out_type: OutType::Refund,
            },
        ),
        event(
            3,
            EventKind::Anomaly(Anomaly::BalanceDrift {
                figure: "available".into(),
                ours: Amount::from_fen(1).unwrap(),
                theirs: Amount::from_fen(2).unwrap(),
            }),
        ),
    ];
    let orphan = Orphan {
        kind: CallbackKind::Outbound,
        out_req_no: Some("X-1".into()),
        sign: "ab12".into(),
        data: "{}".into(),
        received_at: at,
    };
    (protocol, events, orphan)
}

/// Protocols, events and orphans keep the bytes this build writes: like an order's, their
/// stored shape is a promise to every store on disk.
#[test]
fn protocols_events_and_orphans_keep_their_format() {
    let (protocol, events, orphan) = other_records();
    let mut written = vec![hex(&codec::value(&protocol).unwrap())];
    written.extend(events.iter().map(|e| hex(&codec::value(e).unwrap())));
    written.push(hex(&codec::value(&orphan).unwrap()));
    assert_eq!(written, PINNED_OTHERS);
    assert_eq!(
        codec::from_value::<Protocol>(&codec::value(&protocol).unwrap()).unwrap(),
        protocol
    );
    for e in &events {
        assert_eq!(&codec::from_value::<Event>(&codec::value(e).unwrap()).unwrap(), e);
    }
    assert_eq!(
        codec::from_value::<Orphan>(&codec::value(&orphan).unwrap()).unwrap(),
        orphan
    );
}

/// A store reads back exactly what it was given. The wire reads `""` as "not given"; a
/// record does not: a request with an empty optional text resends with that text.
#[test]
fn an_empty_optional_text_reads_back_as_written() {
    let mut order = sample_outbound("T1", "OUT-1", 500);
    if let OrderKind::Outbound(o) = &mut order.kind {
        o.request.remark = Some(String::new());
        o.remote.channel_return_msg = Some(String::new());
    }
    let back: Order = codec::from_value(&codec::value(&order).unwrap()).unwrap();
    assert_eq!(back, order);
    let OrderKind::Outbound(o) = &back.kind else {
        unreachable!()
    };
    assert_eq!(o.request.remark.as_deref(), Some(""));
}

/// As written by the build that pinned them: the protocol, the three events, the orphan.
const PINNED_OTHERS: [&str; 5] = [
    concat!(
        "88a87472616e735f6e6fa25431ab627573696e6573735f6964a24231aa7472616e735f64657363a4",
        "74657374ac6368616e6e656c5f74797065a34c4654ac636173686965725f74797065a3504f53ab63",
        "72656174655f74696d65b3323032362d31312d32362031323a30303a3030a672656d6f746584a961",
        "7661696c61626c65a531322e3530aa696e5f7472616e736974a4302e3030a8706169645f6f7574a4",
        "302e3939a77365656e5f6174b4323032362d31312d32365431323a30303a30305aa66c6564676572",
        "86aa696e5f7472616e736974a4302e3030a9617661696c61626c65a531302e3030a8726573657276",
        "6564a4322e3530a8706169645f6f7574a4302e3030a8726566756e646564a4302e3030a76f70656e",
        "696e67a4302e3030",
    ),
    concat!(
        "86a373657101a26174b4323032362d31312d32365431323a30303a30305aa87472616e735f6e6fa2",
        "5431aa6f75745f7265715f6e6fa54f55542d31a6736f7572636581a843616c6c6261636ba84f7574",
        "626f756e64a46b696e64a95375626d6974746564",
    ),
    concat!(
        "86a373657102a26174b4323032362d31312d32365431323a30303a30305aa87472616e735f6e6fa2",
        "5431aa6f75745f7265715f6e6fa54f55542d31a6736f7572636581a843616c6c6261636ba84f7574",
        "626f756e64a46b696e6481b14f7574626f756e6453756363656564656481a86f75745f74797065a6",
        "524546554e44",
    ),
    concat!(
        "86a373657103a26174b4323032362d31312d32365431323a30303a30305aa87472616e735f6e6fa2",
        "5431aa6f75745f7265715f6e6fa54f55542d31a6736f7572636581a843616c6c6261636ba84f7574",
        "626f756e64a46b696e6481a7416e6f6d616c7981ac42616c616e6365447269667483a66669677572",
        "65a9617661696c61626c65a46f757273a4302e3031a6746865697273a4302e3032",
    ),
    concat!(
        "85a46b696e64a84f7574626f756e64aa6f75745f7265715f6e6fa3582d31a47369676ea461623132",
        "a464617461a27b7dab72656365697665645f6174b4323032362d31312d32365431323a30303a3030",
        "5a",
    ),
];
