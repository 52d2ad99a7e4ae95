//! `apply` over arbitrary observation sequences on a protocol with several orders: the
//! ledger invariants hold after every step, and no status ever moves backwards.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protopay_engine::domain::Refusal;
use protopay_engine::ledger::{self, Ledger};
use protopay_engine::storage::conformance::{sample_inbound, sample_outbound};
use protopay_engine::wire::*;
use protopay_engine::{Amount, News, Observation, Order, OrderKind, Source, apply};

fn order(i: u8, fen: u64) -> Option<Order> {
    let key = format!("APP001-{i}");
    let mut o = if i % 2 == 0 {
        sample_inbound("T1", &key, fen.max(1))
    } else {
        sample_outbound("T1", &key, fen.max(1))
    };
    if let (OrderKind::Outbound(out), 3) = (&mut o.kind, i % 4) {
        out.request.out_type = OutType::Refund;
    }
    Some(o)
}

fn status(b: u8) -> Option<PayStatus> {
    match b % 6 {
        0 => None,
        1 => Some(PayStatus::Unpaid),
        2 => Some(PayStatus::Processing),
        3 => Some(PayStatus::Success),
        4 => Some(PayStatus::Failure),
        _ => Some(PayStatus::Unknown("X".into())),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut orders: Vec<Order> = Vec::new();
    let mut ledger = Ledger::default();
    for chunk in data.chunks_exact(4) {
        let [op, pick, s, extra] = [chunk[0], chunk[1], chunk[2], chunk[3]];
        if op % 4 == 0 || orders.is_empty() {
            let Some(o) = order(orders.len() as u8, u64::from(extra) * 100) else {
                continue;
            };
            if let Some(m) = ledger::movement(None, &o) {
                if o.outbound().is_some() && o.amount() > ledger.available {
                    continue;
                }
                ledger.apply(&m).expect("reservation within available");
            }
            orders.push(o);
            continue;
        }
        let i = usize::from(pick) % orders.len();
        let news = match op % 8 {
            1 => News::NotFound,
            2 => News::Sending,
            3 => News::Closed,
            4 => News::Refused(Refusal {
                code: "E".into(),
                msg: String::new(),
            }),
            _ => match &orders[i].kind {
                OrderKind::Inbound(o) => News::Inbound(Box::new(InboundView {
                    amount: if extra == 255 {
                        Amount::from_fen(1)
                    } else {
                        Some(o.request.amount)
                    },
                    pay_status: status(s),
                    arrived_status: match extra % 3 {
                        0 => None,
                        1 => Some(ArrivedStatus::NotArrived),
                        _ => Some(ArrivedStatus::Arrived),
                    },
                    ..Default::default()
                })),
                OrderKind::Outbound(_) => News::Outbound(Box::new(OutboundView {
                    pay_status: status(s),
                    ..Default::default()
                })),
            },
        };
        let before = orders[i].status;
        let out = apply(&orders[i], &Observation::new(Source::Poll, news));
        assert!(out.order.status.rank() >= before.rank());
        if let Some(m) = out.movement {
            ledger.apply(&m).expect("movement within the ledger");
        }
        orders[i] = out.order;
        ledger::check(&ledger, orders.iter()).expect("ledger invariants");
    }
});
