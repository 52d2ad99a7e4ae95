//! Format version 1 is a promise to every store already on disk: an order written by an
//! earlier build must read back the same, and this build must write the same bytes. The bytes
//! below were written by the build that introduced the format; a change to the stored shape
//! of an order fails here before it reaches anyone's disk.

use protopay_engine::storage::conformance::{sample_inbound, sample_outbound};
use protopay_engine::wire::{ArrivedStatus, PayStatus};
use protopay_engine::{Order, OrderKind, Refusal, Status};
use protopay_storage_sled::codec;

/// Both kinds of order with every stored field set away from its default.
fn orders() -> Vec<Order> {
    let mut inbound = sample_inbound("T1", "IN-1", 12_345);
    inbound.status = Status::Success;
    inbound.attempts.submissions = 2;
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
