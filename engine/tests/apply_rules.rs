//! The state machine: its exhaustive transition table (a snapshot to review by eye) and the
//! six rules of `apply` (ARCHITECTURE.md) as property tests, plus the ledger invariants over whole protocols.

use proptest::prelude::*;
use protopay_engine::domain::Refusal;
use protopay_engine::ledger::{self, Ledger};
use protopay_engine::wire::*;
use protopay_engine::{
    Amount, Anomaly, EventKind, News, Observation, Order, OrderKind, Sensitive, Source, Status, apply,
};
use std::fmt::Write;

const APP: &str = "APP001";
const TRANS: &str = "T1";

fn inbound(n: u32, fen: u64) -> Order {
    Order::new_inbound(
        APP,
        Prepay {
            trans_no: TRANS.into(),
            out_req_no: format!("{APP}-in-{n}"),
            amount: Amount::from_fen(fen).unwrap(),
            out_success_notify_url: "http://h/notify/inbound-pay".into(),
            out_arrived_notify_url: Some("http://h/notify/inbound-arrival".into()),
            prod_catalog: Some(ProdCatalog::DebitOnly),
            contract_num: None,
            qp_user_name: None,
            qp_cert_number: None,
            return_url: None,
        },
    )
}

fn outbound(n: u32, fen: u64, refund: bool) -> Order {
    Order::new_outbound(
        APP,
        Outpay {
            trans_no: TRANS.into(),
            out_req_no: format!("{APP}-out-{n}"),
            amount: Amount::from_fen(fen).unwrap(),
            channel_type: ChannelType::Lft,
            out_notify_url: "http://h/notify/outbound".into(),
            bank_acc_name: Sensitive::new("李四"),
            bank_acc_num: Sensitive::new("6222020200112233445"),
            bank_name: "ICBC".into(),
            bank_cnaps: "102100000030".into(),
            out_type: if refund { OutType::Refund } else { OutType::Out },
            remark: None,
        },
    )
}

/// A view of `order` as the payment system would send it.
fn view_of(order: &Order, status: Option<PayStatus>, arrived: Option<ArrivedStatus>) -> News {
    match &order.kind {
        OrderKind::Inbound(o) => News::Inbound(Box::new(InboundView {
            trans_no: Some(o.request.trans_no.clone()),
            app_id: Some(APP.into()),
            amount: Some(o.request.amount),
            out_req_no: Some(o.request.out_req_no.clone()),
            pay_order_no: Some(format!("P-{}", o.request.out_req_no)),
            pay_status: status,
            arrived_status: arrived,
            ..Default::default()
        })),
        OrderKind::Outbound(o) => News::Outbound(Box::new(OutboundView {
            trans_no: Some(o.request.trans_no.clone()),
            app_id: Some(APP.into()),
            amount: Some(o.request.amount),
            out_req_no: Some(o.request.out_req_no.clone()),
            pay_order_no: Some(format!("P-{}", o.request.out_req_no)),
            out_type: Some(o.request.out_type.clone()),
            pay_status: status,
            ..Default::default()
        })),
    }
}

fn obs(news: News) -> Observation {
    Observation::new(Source::Poll, news)
}

/// Put an order into a state directly (for the table and for generators).
fn in_state(mut order: Order, status: Status, arrived: bool, closed: bool) -> Order {
    order.status = status;
    if let OrderKind::Inbound(i) = &mut order.kind {
        i.arrived = arrived;
        i.closed = closed;
    }
    order
}

fn statuses() -> Vec<Option<PayStatus>> {
    vec![
        None,
        Some(PayStatus::Unpaid),
        Some(PayStatus::Processing),
        Some(PayStatus::Success),
        Some(PayStatus::Failure),
        Some(PayStatus::Unknown("REVERSED".into())),
    ]
}

fn news_label(news: &News) -> String {
    let status = |s: &Option<PayStatus>| s.as_ref().map_or("-".to_owned(), |s| s.to_string());
    match news {
        News::Inbound(v) => format!(
            "view {} / {}",
            status(&v.pay_status),
            v.arrived_status.as_ref().map_or("-".to_owned(), |a| a.to_string())
        ),
        News::Outbound(v) => format!("view {}", status(&v.pay_status)),
        News::NotFound => "not found".into(),
        News::Refused(r) => format!("refused {}", r.code),
        News::Closed => "closed".into(),
        News::Sending => "sending".into(),
        News::Resolved { status, .. } => format!("resolved {status}"),
    }
}

fn event_label(e: &EventKind) -> String {
    match e {
        EventKind::Anomaly(a) => format!("⚠{a:?}"),
        other => format!("{other:?}"),
    }
}

fn row(table: &mut String, order: &Order, news: News) {
    let out = apply(order, &obs(news.clone()));
    let mv = out
        .movement
        .map_or("".to_owned(), |m| format!("{:?}→{:?}", m.from, m.to));
    let events: Vec<String> = out.events.iter().map(event_label).collect();
    let next = match (out.order == *order, out.order.state_label() == order.state_label()) {
        (true, _) => "=".to_owned(),
        (false, true) => "= (details filled)".to_owned(),
        (false, false) => out.order.state_label(),
    };
    let _ = writeln!(
        table,
        "| {:<22} | {:<24} | {:<22} | {:<20} | {} |",
        order.state_label(),
        news_label(&news),
        next,
        mv,
        events.join(", ")
    );
}

/// The whole state machine, one row per (state, news) pair. `=` means unchanged.
#[test]
fn transition_table() {
    let mut table = String::new();
    let header = "| state                  | news                     | next                   | ledger move          | events |\n|---|---|---|---|---|\n";
    table.push_str("## Inbound\n\n");
    table.push_str(header);
    let inbound_states = [
        (Status::Requested, false, false),
        (Status::Submitted, false, false),
        (Status::Unpaid, false, false),
        (Status::Unpaid, false, true),
        (Status::Processing, false, false),
        (Status::Success, false, false),
        (Status::Success, true, false),
        (Status::Failure, false, false),
    ];
    let refusal = News::Refused(Refusal {
        code: "EP10001".into(),
        msg: "bad".into(),
    });
    let resolved = |status| News::Resolved {
        status,
        note: "ops: confirmed by phone".into(),
    };
    // News that is not a view of the payment system's, asked of every state of both kinds.
    let local_news = vec![
        News::Sending,
        News::NotFound,
        refusal.clone(),
        News::Closed,
        resolved(Status::Success),
        resolved(Status::Failure),
    ];
    for (status, arrived, closed) in inbound_states {
        let order = in_state(inbound(1, 10_000), status, arrived, closed);
        for news in local_news.clone() {
            row(&mut table, &order, news);
        }
        for s in statuses() {
            for a in [None, Some(ArrivedStatus::NotArrived), Some(ArrivedStatus::Arrived)] {
                row(&mut table, &order, view_of(&order, s.clone(), a));
            }
        }
        row(
            &mut table,
            &order,
            view_of(&order, None, Some(ArrivedStatus::Unknown("03".into()))),
        );
    }
    table.push_str("\n## Outbound (OUT; REFUND differs only in PaidOut→Refunded)\n\n");
    table.push_str(header);
    for status in [
        Status::Reserved,
        Status::Submitted,
        Status::Unpaid,
        Status::Processing,
        Status::Success,
        Status::Failure,
    ] {
        let order = in_state(outbound(1, 6_000, false), status, false, false);
        for news in local_news.clone() {
            row(&mut table, &order, news);
        }
        for s in statuses() {
            row(&mut table, &order, view_of(&order, s, None));
        }
    }
    table.push_str("\n## A person's decision, then the payment system's word (rule 7)\n\n");
    table.push_str(header);
    for (order, arrivals) in [
        (in_state(inbound(1, 10_000), Status::Failure, false, false), true),
        (in_state(inbound(1, 10_000), Status::Success, false, false), true),
        (
            in_state(outbound(1, 6_000, false), Status::Failure, false, false),
            false,
        ),
        (
            in_state(outbound(1, 6_000, false), Status::Success, false, false),
            false,
        ),
    ] {
        let mut order = order;
        order.attempts.decided_by_person = true;
        let _ = writeln!(table, "<!-- decided by a person: {} -->", order.state_label());
        for s in statuses() {
            let arrived = [None, Some(ArrivedStatus::Arrived)];
            for a in arrived.into_iter().take(if arrivals { 2 } else { 1 }) {
                row(&mut table, &order, view_of(&order, s.clone(), a));
            }
        }
    }
    table.push_str("\n## Identity\n\n");
    table.push_str(header);
    let order = in_state(inbound(1, 10_000), Status::Processing, false, false);
    let Some(o) = order.inbound() else { unreachable!() };
    let good = InboundView {
        trans_no: Some(TRANS.into()),
        app_id: Some(APP.into()),
        amount: Some(o.request.amount),
        out_req_no: Some(o.request.out_req_no.clone()),
        pay_status: Some(PayStatus::Success),
        ..Default::default()
    };
    for (label, view) in [
        (
            "other transNo",
            InboundView {
                trans_no: Some("T2".into()),
                ..good.clone()
            },
        ),
        (
            "other amount",
            InboundView {
                amount: Some(Amount::from_fen(1).unwrap()),
                ..good.clone()
            },
        ),
        (
            "other appId",
            InboundView {
                app_id: Some("APP002".into()),
                ..good.clone()
            },
        ),
        (
            "other outReqNo",
            InboundView {
                out_req_no: Some("APP001-x".into()),
                ..good.clone()
            },
        ),
    ] {
        let _ = writeln!(table, "<!-- {label} -->");
        row(&mut table, &order, News::Inbound(Box::new(view)));
    }
    let outb = in_state(outbound(1, 6_000, false), Status::Submitted, false, false);
    row(&mut table, &outb, view_of(&order, Some(PayStatus::Success), None));
    insta::assert_snapshot!("transition_table", table);
}

// ---- property tests -------------------------------------------------------------------

fn any_status() -> impl Strategy<Value = Option<PayStatus>> {
    prop::sample::select(statuses())
}

fn any_arrival() -> impl Strategy<Value = Option<ArrivedStatus>> {
    prop::sample::select(vec![
        None,
        Some(ArrivedStatus::NotArrived),
        Some(ArrivedStatus::Arrived),
    ])
}

/// Any reachable inbound or outbound state.
fn any_order() -> impl Strategy<Value = Order> {
    let inbound_state = prop::sample::select(vec![
        (Status::Requested, false),
        (Status::Submitted, false),
        (Status::Unpaid, false),
        (Status::Processing, false),
        (Status::Success, false),
        (Status::Success, true),
        (Status::Failure, false),
    ]);
    let outbound_state = prop::sample::select(vec![
        Status::Reserved,
        Status::Submitted,
        Status::Unpaid,
        Status::Processing,
        Status::Success,
        Status::Failure,
    ]);
    prop_oneof![
        (inbound_state, any::<bool>(), 1u64..1_000_000).prop_map(|((s, a), closed, fen)| in_state(
            inbound(1, fen),
            s,
            a,
            closed
        )),
        (outbound_state, any::<bool>(), 1u64..1_000_000).prop_map(|(s, refund, fen)| in_state(
            outbound(1, fen, refund),
            s,
            false,
            false
        )),
    ]
}

fn any_news(order: &Order) -> impl Strategy<Value = News> + use<> {
    let order = order.clone();
    prop_oneof![
        4 => (any_status(), any_arrival()).prop_map(move |(s, a)| view_of(&order, s, a)),
        1 => Just(News::NotFound),
        1 => Just(News::Sending),
        1 => Just(News::Closed),
        1 => Just(News::Refused(Refusal { code: "EP1".into(), msg: "no".into() })),
    ]
}

fn order_and_news() -> impl Strategy<Value = (Order, News)> {
    any_order().prop_flat_map(|o| {
        let news = any_news(&o);
        (Just(o), news)
    })
}

fn arrived(order: &Order) -> bool {
    order.inbound().is_some_and(|i| i.arrived)
}

fn news_rank(news: &News) -> Option<u8> {
    let of = |s: &Option<PayStatus>| match s {
        Some(PayStatus::Unpaid) => Some(Status::Unpaid.rank()),
        Some(PayStatus::Processing) => Some(Status::Processing.rank()),
        Some(PayStatus::Success) | Some(PayStatus::Failure) => Some(4),
        _ => None,
    };
    match news {
        News::Inbound(v) if v.arrived_status == Some(ArrivedStatus::Arrived) => Some(4),
        News::Inbound(v) => of(&v.pay_status),
        News::Outbound(v) => of(&v.pay_status),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, max_global_rejects: 100_000, ..ProptestConfig::default() })]

    /// Rule 1: status never goes back; news of lower or equal rank changes no status and
    /// publishes no transition.
    #[test]
    fn rule1_monotonic((order, news) in order_and_news()) {
        let out = apply(&order, &obs(news.clone()));
        prop_assert!(out.order.status.rank() >= order.status.rank());
        if let Some(r) = news_rank(&news) {
            let arrival_news = matches!(&news, News::Inbound(v) if v.arrived_status == Some(ArrivedStatus::Arrived));
            let learns_arrival = arrival_news && !arrived(&order);
            if r <= order.status.rank() && !learns_arrival {
                prop_assert_eq!(out.order.status, order.status);
                prop_assert!(out.movement.is_none());
                prop_assert!(out.events.iter().all(|e| matches!(e, EventKind::Anomaly(_))));
            }
        }
    }

    /// Rule 2: a terminal status never changes; a conflicting terminal raises ConflictingStatus.
    #[test]
    fn rule2_terminal_absorbing((order, news) in order_and_news()) {
        prop_assume!(order.status.is_terminal());
        let out = apply(&order, &obs(news.clone()));
        prop_assert_eq!(out.order.status, order.status);
        let status = match &news {
            News::Inbound(v) => v.pay_status.clone(),
            News::Outbound(v) => v.pay_status.clone(),
            _ => None,
        };
        let opposite = match order.status {
            Status::Success => PayStatus::Failure,
            _ => PayStatus::Success,
        };
        if status == Some(opposite) {
            let conflicted = out.anomalies().any(|a| matches!(a, Anomaly::ConflictingStatus { .. }));
            prop_assert!(conflicted);
        }
    }

    /// Rule 7: the payment system's word on money outranks a person's. An order a person
    /// decided `FAILURE` goes to `SUCCESS` on news of payment (or arrival), the ledger moving
    /// from where `FAILURE` left it, with `ConflictingStatus` naming the person's decision;
    /// a person's `SUCCESS` is not moved by `FAILURE` (that news moves no money).
    #[test]
    fn rule7_money_outranks_a_persons_decision(order in any_order(), status in any_status(), arrival in any_arrival()) {
        prop_assume!(order.status.is_terminal() && !arrived(&order));
        let mut order = order;
        order.attempts.decided_by_person = true;
        let out = apply(&order, &obs(view_of(&order, status.clone(), arrival.clone())));
        let arrives = order.inbound().is_some() && arrival == Some(ArrivedStatus::Arrived);
        let paid = match &status {
            Some(PayStatus::Success) => true,
            None | Some(PayStatus::Unpaid | PayStatus::Processing) => arrives,
            Some(PayStatus::Failure | PayStatus::Unknown(_)) => false,
        };
        if order.status == Status::Failure && paid {
            prop_assert_eq!(out.order.status, Status::Success);
            let named = out.anomalies().any(|a| matches!(a,
                Anomaly::ConflictingStatus { current, .. } if current.contains("a person's decision")));
            prop_assert!(named, "both claims named");
            prop_assert_eq!(out.movement.map(|m| m.from), Some(protopay_engine::ledger::slot_of(&order)));
        } else {
            prop_assert_eq!(out.order.status, order.status);
        }
    }

    /// Rule 3: arrival implies payment; arrival on FAILURE is a conflict.
    #[test]
    fn rule3_arrival_implies_payment(order in any_order(), status in any_status()) {
        prop_assume!(order.inbound().is_some());
        let out = apply(&order, &obs(view_of(&order, status.clone(), Some(ArrivedStatus::Arrived))));
        let status_known = !matches!(status, Some(PayStatus::Unknown(_)));
        if order.status == Status::Failure || status == Some(PayStatus::Failure) {
            prop_assert_eq!(&out.order, &order);
            let conflicted = out.anomalies().any(|a| matches!(a, Anomaly::ConflictingStatus { .. }));
            prop_assert!(conflicted || !status_known);
        } else if status_known {
            prop_assert_eq!(out.order.status, Status::Success);
            prop_assert!(arrived(&out.order));
        }
    }

    /// Rule 4: news about another protocol, amount, app or payment order is not applied.
    #[test]
    fn rule4_identity_checked((order, news) in order_and_news(), which in 0..4usize) {
        let forged = match news {
            News::Inbound(mut v) => {
                match which { 0 => v.trans_no = Some("T-other".into()), 1 => v.amount = Amount::from_fen(987_654_321), 2 => v.app_id = Some("APP999".into()), _ => v.out_req_no = Some("APP001-other".into()) }
                News::Inbound(v)
            }
            News::Outbound(mut v) => {
                match which { 0 => v.trans_no = Some("T-other".into()), 1 => v.amount = Amount::from_fen(987_654_321), 2 => v.app_id = Some("APP999".into()), _ => v.out_req_no = Some("APP001-other".into()) }
                News::Outbound(v)
            }
            _ => return Ok(()),
        };
        let out = apply(&order, &obs(forged));
        prop_assert_eq!(&out.order, &order);
        let mismatched = out.anomalies().any(|a| matches!(a, Anomaly::IdentityMismatch { .. }));
        prop_assert!(mismatched);
    }

    /// Rule 5: any permutation of one true history, with duplicates, ends in the same state
    /// and the same balances as the history in order.
    #[test]
    fn rule5_order_independent(
        kind in 0..3u8,
        path in prop::sample::subsequence(vec![0usize, 1, 2, 3], 0..=4),
        fail in any::<bool>(),
        picks in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let start = match kind {
            0 => in_state(inbound(1, 5_000), Status::Submitted, false, false),
            1 => in_state(outbound(1, 5_000, false), Status::Submitted, false, false),
            _ => in_state(outbound(1, 5_000, true), Status::Submitted, false, false),
        };
        let inbound_kind = kind == 0;
        // The true history: some of UNPAID, PROCESSING, the outcome, the arrival.
        let mut history = Vec::new();
        for step in path {
            let news = match step {
                0 => view_of(&start, Some(PayStatus::Unpaid), Some(ArrivedStatus::NotArrived)),
                1 => view_of(&start, Some(PayStatus::Processing), None),
                2 if fail => view_of(&start, Some(PayStatus::Failure), None),
                2 => view_of(&start, Some(PayStatus::Success), Some(ArrivedStatus::NotArrived)),
                _ if inbound_kind && !fail => view_of(&start, Some(PayStatus::Success), Some(ArrivedStatus::Arrived)),
                _ => continue,
            };
            history.push(news);
        }
        let run = |seq: &[News]| {
            let mut order = start.clone();
            let mut ledger = Ledger { reserved: Amount::from_fen(5_000).unwrap(), ..Ledger::default() };
            if inbound_kind { ledger = Ledger::default(); }
            for n in seq {
                let out = apply(&order, &obs(n.clone()));
                if let Some(m) = out.movement { ledger.apply(&m).unwrap(); }
                order = out.order;
            }
            (order.state_label(), ledger)
        };
        let in_order = run(&history);
        let shuffled: Vec<News> = if history.is_empty() { vec![] } else {
            let mut s: Vec<News> = picks.iter().map(|i| history[i.index(history.len())].clone()).collect();
            s.extend(history.iter().rev().cloned());
            s
        };
        prop_assert_eq!(run(&shuffled), in_order);
    }

    /// Rule 6: SUCCESS after we closed the POS code is applied, and flagged.
    #[test]
    fn rule6_money_positive_news_wins(status in prop::sample::select(vec![Status::Submitted, Status::Unpaid, Status::Processing]), arrive in any::<bool>()) {
        let order = in_state(inbound(1, 100), status, false, true);
        let arrival = if arrive { Some(ArrivedStatus::Arrived) } else { None };
        let out = apply(&order, &obs(view_of(&order, Some(PayStatus::Success), arrival)));
        prop_assert_eq!(out.order.status, Status::Success);
        let flagged = out.anomalies().any(|a| matches!(a, Anomaly::PaidAfterClose));
        prop_assert!(flagged);
        prop_assert!(out.movement.is_some());
    }

    /// Ledger invariants over random whole-protocol histories: many orders, failures,
    /// conflicting news, payouts only against available funds.
    #[test]
    fn ledger_invariants_hold_over_whole_protocols(
        steps in prop::collection::vec((0..4u8, 0..6usize, any_status(), any_arrival(), 1u64..50_000), 1..120),
    ) {
        let mut orders: Vec<Order> = Vec::new();
        let mut ledger = Ledger::default();
        let mut next_id = 0;
        for (op, pick, status, arrival, fen) in steps {
            match op {
                0 => {
                    next_id += 1;
                    orders.push(in_state(inbound(next_id, fen), Status::Submitted, false, false));
                }
                1 => {
                    // A payout or refund: only against available funds, reserved before sending.
                    next_id += 1;
                    let amount = Amount::from_fen(fen).unwrap();
                    if amount <= ledger.available {
                        let order = outbound(next_id, fen, next_id % 2 == 0);
                        let m = ledger::movement(None, &order).unwrap();
                        ledger.apply(&m).unwrap();
                        orders.push(order);
                    }
                }
                _ if !orders.is_empty() => {
                    let i = pick % orders.len();
                    let news = view_of(&orders[i], status, arrival);
                    let out = apply(&orders[i], &obs(news));
                    if let Some(m) = out.movement { ledger.apply(&m).unwrap(); }
                    orders[i] = out.order;
                }
                _ => {}
            }
            prop_assert!(ledger::check(&ledger, orders.iter()).is_ok(), "{:?}", ledger::check(&ledger, orders.iter()));
        }
    }
}
