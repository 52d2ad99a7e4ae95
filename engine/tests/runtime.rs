//! The engine runtime against a scripted transport, on tokio's paused clock: commands,
//! callbacks, the poller's never-pay-twice rules, races, and the event feed.

mod support;

use protopay_engine::storage::MemoryStorage;
use protopay_engine::wire::{CallbackKind, CashierType, Endpoint, Envelope, Missing};
use protopay_engine::{
    Amount, Anomaly, Config, Decision, Engine, Error, EventKind, Listing, Md5Key, NewInbound, NewProtocol, Source,
    Status, TransportError,
};
use serde_json::json;
use std::time::Duration;
use support::*;

async fn setup(amount: &str) -> (Engine, Scripted, MemoryStorage, String) {
    let t = Scripted::default();
    let s = MemoryStorage::new();
    let e = engine_on(s.clone(), t.clone()).await;
    let trans_no = funded(&e, &t, amount).await;
    (e, t, s, trans_no)
}

async fn kinds(e: &Engine) -> Vec<EventKind> {
    e.events_after(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn create_and_refresh_protocol() {
    let t = Scripted::default();
    let e = engine_on(MemoryStorage::new(), t.clone()).await;
    t.push(Endpoint::Create, Step::Data(protocol_view("T9")));
    let p = e
        .create_protocol(NewProtocol {
            trans_desc: "deal".into(),
            business_id: "B1".into(),
            cashier_type: CashierType::Qp,
            idempotency_key: None,
        })
        .await
        .unwrap();
    assert_eq!(p.trans_no, "T9");
    assert!(matches!(
        kinds(&e).await.as_slice(),
        [
            EventKind::ProtocolCreateRequested { .. },
            EventKind::ProtocolCreated { .. }
        ]
    ));

    let mut view = protocol_view("T9");
    view["amount"] = json!("5.00");
    t.push(Endpoint::Find, Step::Data(view));
    let found = e.refresh_protocol("T9").await.unwrap();
    assert_eq!(found.remote.unwrap().available.to_string(), "5.00");

    t.push(Endpoint::Find, Step::Code("EP20001", "no such protocol"));
    assert!(matches!(
        e.refresh_protocol("T404").await,
        Err(Error::NotFound(Missing::Protocol))
    ));

    // A protocol created elsewhere (or an orphan whose number turned up) is adopted.
    t.push(Endpoint::Find, Step::Data(protocol_view("T77")));
    e.refresh_protocol("T77").await.unwrap();
    assert!(e.protocol("T77").await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn an_idempotency_key_opens_one_protocol_however_often_it_is_sent() {
    let t = Scripted::default();
    let e = engine_on(MemoryStorage::new(), t.clone()).await;
    let cmd = NewProtocol {
        trans_desc: "deal".into(),
        business_id: "B1".into(),
        cashier_type: CashierType::Pos,
        idempotency_key: Some("deal-42".into()),
    };
    // The first reply is lost: nothing was opened here, so the repeat sends again.
    t.push(Endpoint::Create, maybe());
    assert!(matches!(e.create_protocol(cmd.clone()).await, Err(Error::Transport(_))));
    t.push(Endpoint::Create, Step::Data(protocol_view("T1")));
    let opened = e.create_protocol(cmd.clone()).await.unwrap();
    assert_eq!(opened.trans_no, "T1");
    // From now on the key answers T1, and nothing more is sent.
    assert_eq!(e.create_protocol(cmd.clone()).await.unwrap(), opened);
    assert_eq!(t.count(Endpoint::Create), 2);
    // The same key with other parameters is refused, naming them; nothing is sent.
    let other = NewProtocol {
        business_id: "B2".into(),
        cashier_type: CashierType::Qp,
        ..cmd.clone()
    };
    assert!(matches!(
        e.create_protocol(other).await,
        Err(Error::OpenedOtherwise { trans_no, fields }) if trans_no == "T1" && fields == ["businessId", "cashierType"]
    ));
    assert_eq!(t.count(Endpoint::Create), 2);
    for bad in ["", "deal 42", &"k".repeat(65)] {
        let bad = NewProtocol {
            idempotency_key: Some(bad.to_owned()),
            ..cmd.clone()
        };
        let refused = e.create_protocol(bad).await;
        assert!(
            matches!(
                refused,
                Err(Error::InvalidField {
                    field: "idempotencyKey",
                    ..
                } | Error::TooLong {
                    field: "idempotencyKey",
                    ..
                })
            ),
            "{refused:?}"
        );
    }
    assert_eq!(
        t.count(Endpoint::Create),
        2,
        "a malformed key is refused before anything is sent"
    );
}

/// Two calls with one key, neither knowing of the other, each open a protocol at the payment
/// system: both answer the one stored first, and the other is stored too (it exists).
#[tokio::test(start_paused = true)]
async fn two_calls_racing_with_one_key_answer_one_protocol() {
    let t = Scripted::default();
    let e = engine_on(MemoryStorage::new(), t.clone()).await;
    t.delay(Duration::from_millis(10));
    t.push(Endpoint::Create, Step::Data(protocol_view("T1")));
    t.push(Endpoint::Create, Step::Data(protocol_view("T2")));
    let cmd = NewProtocol {
        trans_desc: "deal".into(),
        business_id: "B1".into(),
        cashier_type: CashierType::Pos,
        idempotency_key: Some("deal-42".into()),
    };
    let (a, b) = tokio::join!(e.create_protocol(cmd.clone()), e.create_protocol(cmd.clone()));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(t.count(Endpoint::Create), 2, "both were sent");
    assert_eq!(a.trans_no, b.trans_no, "both answer the protocol stored first");
    assert!(e.protocol("T1").await.is_ok() && e.protocol("T2").await.is_ok());
    assert_eq!(e.create_protocol(cmd).await.unwrap().trans_no, a.trans_no);
    assert_eq!(t.count(Endpoint::Create), 2);
}

#[tokio::test(start_paused = true)]
async fn create_errors_are_typed_and_lost_replies_are_visible() {
    let t = Scripted::default();
    let e = engine_on(MemoryStorage::new(), t.clone()).await;
    let cmd = NewProtocol {
        trans_desc: "deal".into(),
        business_id: "B1".into(),
        cashier_type: CashierType::Pos,
        idempotency_key: None,
    };
    t.push(Endpoint::Create, Step::Code("EP10009", "businessId unknown"));
    assert!(matches!(e.create_protocol(cmd.clone()).await, Err(Error::Remote { code, .. }) if code == "EP10009"));
    t.push(Endpoint::Create, maybe());
    assert!(matches!(e.create_protocol(cmd.clone()).await, Err(Error::Transport(_))));
    let orphan = kinds(&e)
        .await
        .into_iter()
        .any(|k| matches!(k, EventKind::Anomaly(Anomaly::PossibleOrphanProtocol { .. })));
    assert!(orphan, "a lost create reply must be visible to the host");
    t.push(Endpoint::Create, Step::Forged(protocol_view("T1")));
    assert!(matches!(e.create_protocol(cmd.clone()).await, Err(Error::BadSign)));
    assert!(e.protocol("T1").await.is_err(), "a forged reply changes nothing");
    let empty = NewProtocol {
        trans_desc: " ".into(),
        ..cmd
    };
    assert!(matches!(
        e.create_protocol(empty).await,
        Err(Error::InvalidField { field: "transDesc", .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn prepay_paths() {
    let (e, t, _, trans_no) = setup("100.00").await;
    let key = format!("{APP}-in-2");
    t.push(
        Endpoint::Prepay,
        Step::Data(inbound_view(&trans_no, &key, "20.00", "UNPAID", "01")),
    );
    let cmd = NewInbound {
        out_req_no: Some(key.clone()),
        ..NewInbound::pos(&trans_no, Amount::parse("20").unwrap())
    };
    let order = e.prepay(cmd.clone()).await.unwrap();
    assert_eq!((order.status, order.pos_code()), (Status::Unpaid, Some("834201")));
    assert_eq!(order.pay_order_no(), Some(format!("P-{key}").as_str()));
    assert_eq!(order.cashier_url(), None, "a POS payment has no cashier page");
    assert_eq!(
        t.calls(Endpoint::Prepay).last().unwrap()["outSuccessNotifyUrl"],
        "http://host.invalid/notify/inbound-pay"
    );

    // Idempotent: same parameters → the same order, nothing sent; different → an error.
    let before = t.count(Endpoint::Prepay);
    assert_eq!(e.prepay(cmd.clone()).await.unwrap(), order);
    assert_eq!(t.count(Endpoint::Prepay), before);
    let other = NewInbound {
        amount: Amount::parse("21").unwrap(),
        ..cmd.clone()
    };
    assert!(matches!(e.prepay(other).await, Err(Error::IdempotencyMismatch { .. })));

    // A definite refusal fails the order; EP20001 likewise.
    t.push(Endpoint::Prepay, Step::Code("EP30001", "amount over limit"));
    let refused = e
        .prepay(NewInbound::pos(&trans_no, Amount::parse("1").unwrap()))
        .await
        .unwrap();
    assert!(refused.inbound().is_some());
    assert_eq!(
        (refused.status, refused.refusal.as_ref().map(|x| x.code.as_str())),
        (Status::Failure, Some("EP30001"))
    );
    t.push(Endpoint::Prepay, Step::Code("EP20001", "no protocol"));
    let refused = e
        .prepay(NewInbound::pos(&trans_no, Amount::parse("1").unwrap()))
        .await
        .unwrap();
    assert_eq!(refused.status, Status::Failure);

    // Validation happens before anything is stored or sent.
    let sent = t.count(Endpoint::Prepay);
    let zero = NewInbound::pos(&trans_no, Amount::ZERO);
    assert!(matches!(
        e.prepay(zero).await,
        Err(Error::InvalidField { field: "amount", .. })
    ));
    let bad_key = NewInbound {
        out_req_no: Some("OTHER-1".into()),
        ..cmd.clone()
    };
    assert!(matches!(
        e.prepay(bad_key).await,
        Err(Error::InvalidField { field: "outReqNo", .. })
    ));
    let no_catalog = NewInbound {
        prod_catalog: None,
        out_req_no: None,
        ..cmd.clone()
    };
    assert!(matches!(
        e.prepay(no_catalog).await,
        Err(Error::InvalidField {
            field: "prodCatalog",
            ..
        })
    ));
    assert!(matches!(
        e.prepay(NewInbound::pos("T404", Amount::parse("1").unwrap())).await,
        Err(Error::UnknownProtocol { .. })
    ));
    assert_eq!(t.count(Endpoint::Prepay), sent);

    // Close the POS code; a payer who paid just before still wins.
    t.push(Endpoint::Posclose, Step::Data(json!({"result": "true"})));
    let closed = e.close_pos(&key).await.unwrap();
    assert!(closed.inbound().is_some_and(|o| o.closed));
    let paid = e
        .handle_callback(
            CallbackKind::InboundPay,
            &callback_body(&inbound_view(&trans_no, &key, "20.00", "SUCCESS", "01")),
        )
        .await;
    assert!(paid.is_success());
    assert_eq!(e.order(&key).await.unwrap().status, Status::Success);
    assert!(kinds(&e).await.contains(&EventKind::Anomaly(Anomaly::PaidAfterClose)));
    assert!(
        matches!(e.close_pos(&key).await, Err(Error::InvalidState { .. })),
        "a paid code cannot be closed"
    );
    assert_eq!(
        e.protocol(&trans_no).await.unwrap().ledger.in_transit.to_string(),
        "20.00"
    );
}

/// A host's mistake known before anything is sent is refused before anything is sent: a
/// quick-pay deposit has no POS code to close (the payment system would refuse the call, and
/// its refusal reads as a failure worth retrying).
#[tokio::test(start_paused = true)]
async fn closing_a_quick_pay_deposit_is_refused_before_anything_is_sent() {
    let t = Scripted::default();
    let e = engine_on(MemoryStorage::new(), t.clone()).await;
    let mut view = protocol_view("TQ");
    view["cashierType"] = json!("QP");
    t.push(Endpoint::Create, Step::Data(view));
    let qp = NewProtocol {
        trans_desc: "deal".into(),
        business_id: "B1".into(),
        cashier_type: CashierType::Qp,
        idempotency_key: None,
    };
    assert_eq!(e.create_protocol(qp).await.unwrap().cashier_type, CashierType::Qp);
    let key = format!("{APP}-qp-1");
    t.push(
        Endpoint::Prepay,
        Step::Data(inbound_view("TQ", &key, "3.00", "UNPAID", "01")),
    );
    e.prepay(NewInbound {
        out_req_no: Some(key.clone()),
        prod_catalog: None,
        ..NewInbound::pos("TQ", Amount::parse("3").unwrap())
    })
    .await
    .unwrap();
    assert!(matches!(
        e.close_pos(&key).await,
        Err(Error::InvalidState {
            action: "close its POS code",
            ..
        })
    ));
    assert_eq!(t.count(Endpoint::Posclose), 0, "nothing was sent");
}

#[tokio::test(start_paused = true)]
async fn posclose_and_cnaps_errors() {
    let (e, t, _, trans_no) = setup("10.00").await;
    let key = format!("{APP}-in-3");
    t.push(
        Endpoint::Prepay,
        Step::Data(inbound_view(&trans_no, &key, "1.00", "UNPAID", "01")),
    );
    e.prepay(NewInbound {
        out_req_no: Some(key.clone()),
        ..NewInbound::pos(&trans_no, Amount::parse("1").unwrap())
    })
    .await
    .unwrap();
    t.push(Endpoint::Posclose, Step::Code("EP20002", "no such order"));
    assert!(matches!(
        e.close_pos(&key).await,
        Err(Error::NotFound(Missing::InboundOrder))
    ));
    assert!(e.order(&key).await.unwrap().inbound().is_some_and(|o| !o.closed));

    t.push(
        Endpoint::Querybankcnaps,
        Step::Data(json!([{"bankName": "中国工商银行北京海淀支行", "bankCnaps": "102100000030"}])),
    );
    let found = e.query_cnaps("海淀").await.unwrap();
    assert_eq!(found[0].bank_cnaps, "102100000030");
    assert_eq!(t.calls(Endpoint::Querybankcnaps)[0]["bankNameKeyWord"], "海淀");
    t.push(Endpoint::Querybankcnaps, Step::Code("EP99999", "busy"));
    assert!(matches!(e.query_cnaps("海淀").await, Err(Error::Remote { .. })));
}

#[tokio::test(start_paused = true)]
async fn outpay_reserves_before_sending_and_refusal_releases() {
    let (e, t, _, trans_no) = setup("100.00").await;
    // Too much: nothing stored, nothing sent.
    let events_before = kinds(&e).await.len();
    let err = e
        .outpay(payout(&trans_no, Some(&format!("{APP}-out-big")), "100.01"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InsufficientFunds { .. }), "{err:?}");
    assert_eq!(t.count(Endpoint::Outpay), 0);
    assert!(e.order(&format!("{APP}-out-big")).await.is_err());
    assert_eq!(kinds(&e).await.len(), events_before);

    // Accepted: reserved, then PROCESSING; then the callback settles it.
    let key = format!("{APP}-out-1");
    let o = accepted_payout(&e, &t, &trans_no, &key, "60.00").await;
    assert_eq!(o.status, Status::Processing);
    let l = e.protocol(&trans_no).await.unwrap().ledger;
    assert_eq!(
        (l.available.to_string(), l.reserved.to_string()),
        ("40.00".into(), "60.00".into())
    );
    let r = e
        .handle_callback(
            CallbackKind::Outbound,
            &callback_body(&outbound_view(&trans_no, &key, "60.00", "SUCCESS")),
        )
        .await;
    assert!(r.is_success());
    let l = e.protocol(&trans_no).await.unwrap().ledger;
    assert_eq!(
        (l.reserved.to_string(), l.paid_out.to_string()),
        ("0.00".into(), "60.00".into())
    );

    // Refused outright: the funds come back.
    let key = format!("{APP}-out-2");
    t.push(Endpoint::Outpay, Step::Code("EP40001", "account frozen"));
    let o = e.outpay(payout(&trans_no, Some(&key), "40")).await.unwrap();
    assert_eq!(o.status, Status::Failure);
    assert_eq!(
        e.protocol(&trans_no).await.unwrap().ledger.available.to_string(),
        "40.00"
    );

    // Validation.
    let mut bad = payout(&trans_no, Some(&format!("{APP}-out-3")), "1");
    bad.bank_cnaps = "1021".into();
    assert!(matches!(
        e.outpay(bad).await,
        Err(Error::InvalidField { field: "bankCnaps", .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn callback_and_poll_bring_the_same_news_once_in_either_order() {
    for callback_first in [true, false] {
        let (e, t, _, trans_no) = setup("50.00").await;
        let key = format!("{APP}-out-1");
        accepted_payout(&e, &t, &trans_no, &key, "50.00").await;
        let settled = outbound_view(&trans_no, &key, "50.00", "SUCCESS");
        t.default_for(Endpoint::Outquery, Step::Data(settled.clone()));
        let body = callback_body(&settled);
        let callback = || e.handle_callback(CallbackKind::Outbound, &body);
        if callback_first {
            assert!(callback().await.is_success());
            tokio::time::advance(Duration::from_secs(3600)).await;
            e.poll_due().await.unwrap();
        } else {
            tokio::time::advance(Duration::from_secs(3600)).await;
            e.poll_due().await.unwrap();
            assert!(callback().await.is_success(), "a duplicate is answered with success");
        }
        let succeeded = kinds(&e)
            .await
            .into_iter()
            .filter(|k| matches!(k, EventKind::OutboundSucceeded { .. }))
            .count();
        assert_eq!(succeeded, 1, "callback first: {callback_first}");
        assert_eq!(
            e.protocol(&trans_no).await.unwrap().ledger.paid_out.to_string(),
            "50.00"
        );
    }
}

async fn setup_deduplicating(amount: &str) -> (Engine, Scripted, String) {
    let t = Scripted::default();
    let config = Config {
        payment_system_deduplicates: true,
        ..config()
    };
    let e = engine_with(MemoryStorage::new(), t.clone(), config, clock()).await;
    let trans_no = funded(&e, &t, amount).await;
    (e, t, trans_no)
}

/// The resend rule without a deduplicating payment system (the default): a send that may
/// have been delivered is never repeated, however long "no such order" lasts — a paused
/// sender or a slow network can deliver it after any wait. The order needs a person; its
/// funds stay reserved.
#[tokio::test(start_paused = true)]
async fn a_maybe_delivered_payout_is_never_sent_again_without_deduplication() {
    let (e, t, _, trans_no) = setup("80.00").await;
    let key = format!("{APP}-out-lost");
    t.push(Endpoint::Outpay, maybe());
    let o = e.outpay(payout(&trans_no, Some(&key), "80")).await.unwrap();
    assert_eq!(o.status, Status::Submitted, "ambiguous: stays Submitted");
    t.default_for(Endpoint::Outquery, Step::Code("EP20003", "no such order"));
    for _ in 0..200 {
        tokio::time::advance(Duration::from_secs(60)).await;
        e.poll_due().await.unwrap();
    }
    assert!(t.count(Endpoint::Outquery) > 2, "it keeps being asked about");
    assert_eq!(t.count(Endpoint::Outpay), 1, "never sent again");
    let o = e.order(&key).await.unwrap();
    assert_eq!(o.status, Status::Submitted, "never failed on our own");
    assert!(o.attempts.needs_attention);
    assert_eq!(
        e.protocol(&trans_no).await.unwrap().ledger.reserved.to_string(),
        "80.00"
    );
    // The first request lands after all: the order settles once.
    t.default_for(
        Endpoint::Outquery,
        Step::Data(outbound_view(&trans_no, &key, "80.00", "SUCCESS")),
    );
    tokio::time::advance(Duration::from_secs(2 * 3600)).await;
    e.poll_due().await.unwrap();
    let o = e.order(&key).await.unwrap();
    assert_eq!(o.status, Status::Success);
    assert!(!o.listings().any(|l| l == Listing::NeedsAttention));
}

/// With a deduplicating payment system: a verified EP20003 past the grace period allows a
/// resend, byte for byte, and the order settles once.
#[tokio::test(start_paused = true)]
async fn lost_reply_payout_is_sent_again_only_after_grace_when_the_payment_system_deduplicates() {
    let (e, t, trans_no) = setup_deduplicating("80.00").await;
    let key = format!("{APP}-out-lost");
    t.push(Endpoint::Outpay, maybe());
    let o = e.outpay(payout(&trans_no, Some(&key), "80")).await.unwrap();
    assert_eq!(o.status, Status::Submitted, "ambiguous: stays Submitted");

    // Before the grace period a verified EP20003 resends nothing.
    t.default_for(Endpoint::Outquery, Step::Code("EP20003", "no such order"));
    let grace = Duration::from_millis(config().poll.grace_ms);
    tokio::time::advance(Duration::from_millis(config().poll.submitted_ms)).await;
    e.poll_due().await.unwrap();
    assert_eq!(t.count(Endpoint::Outquery), 1, "queried first");
    assert_eq!(t.count(Endpoint::Outpay), 1, "no resend within the grace period");

    // After it: exactly one resend, same outReqNo, same everything.
    t.push(
        Endpoint::Outpay,
        Step::Data(outbound_view(&trans_no, &key, "80.00", "PROCESSING")),
    );
    for _ in 0..20 {
        tokio::time::advance(grace).await;
        e.poll_due().await.unwrap();
        if t.count(Endpoint::Outpay) > 1 {
            break;
        }
    }
    let sent = t.calls(Endpoint::Outpay);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], sent[1], "the resend is byte-for-byte the same request");
    assert_eq!(e.order(&key).await.unwrap().status, Status::Processing);

    // A later SUCCESS settles it; no more sends ever.
    t.default_for(
        Endpoint::Outquery,
        Step::Data(outbound_view(&trans_no, &key, "80.00", "SUCCESS")),
    );
    for _ in 0..10 {
        tokio::time::advance(grace).await;
        e.poll_due().await.unwrap();
    }
    assert_eq!(e.order(&key).await.unwrap().status, Status::Success);
    assert_eq!(t.count(Endpoint::Outpay), 2);
    let l = e.protocol(&trans_no).await.unwrap().ledger;
    assert_eq!(
        (l.reserved.to_string(), l.paid_out.to_string()),
        ("0.00".into(), "80.00".into())
    );
}

/// A send refused before a byte was written can never land: it is recorded as not sent
/// (`NotSent`), not counted against the order, and made again — with backoff, not in a loop.
#[tokio::test(start_paused = true)]
async fn a_send_that_never_left_is_made_again() {
    let (e, t, _, trans_no) = setup("81.00").await;
    let key = format!("{APP}-out-refused");
    t.push(
        Endpoint::Outpay,
        Step::Fail(TransportError::NotDelivered {
            reason: "connection refused".into(),
        }),
    );
    let o = e.outpay(payout(&trans_no, Some(&key), "80")).await.unwrap();
    assert_eq!((o.attempts.sends, o.attempts.unsent), (1, 1));
    assert_eq!(o.attempts.maybe_delivered(), 0);
    t.push(
        Endpoint::Outpay,
        Step::Data(outbound_view(&trans_no, &key, "80.00", "PROCESSING")),
    );
    while t.count(Endpoint::Outpay) < 2 {
        tokio::time::advance(Duration::from_secs(1)).await;
        e.poll_due().await.unwrap();
    }
    assert_eq!(
        t.count(Endpoint::Outquery),
        0,
        "nothing to ask about first: nothing had left"
    );
    assert_eq!(e.order(&key).await.unwrap().status, Status::Processing);
    for _ in 0..10 {
        tokio::time::advance(Duration::from_secs(10)).await;
        e.poll_due().await.unwrap();
    }
    assert_eq!(t.count(Endpoint::Outpay), 2, "sent again, once");
    let k = kinds(&e).await;
    assert!(k.contains(&EventKind::NotSent), "{k:?}");

    // While the payment system refuses every connection, sends back off.
    let key = format!("{APP}-out-down");
    t.default_for(
        Endpoint::Outpay,
        Step::Fail(TransportError::NotDelivered {
            reason: "connection refused".into(),
        }),
    );
    let before = t.count(Endpoint::Outpay);
    e.outpay(payout(&trans_no, Some(&key), "0.01")).await.unwrap();
    for _ in 0..3_600 {
        tokio::time::advance(Duration::from_secs(1)).await;
        e.poll_due().await.unwrap();
    }
    let tries = t.count(Endpoint::Outpay) - before;
    assert!((5..=20).contains(&tries), "{tries} sends in an hour");
}

#[tokio::test(start_paused = true)]
async fn retry_budget_exhausted_needs_attention_and_keeps_funds_reserved() {
    let (e, t, trans_no) = setup_deduplicating("30.00").await;
    let key = format!("{APP}-out-void");
    t.default_for(Endpoint::Outpay, maybe());
    t.default_for(Endpoint::Outquery, Step::Code("EP20003", "no such order"));
    e.outpay(payout(&trans_no, Some(&key), "30")).await.unwrap();
    for _ in 0..60 {
        tokio::time::advance(Duration::from_secs(120)).await;
        e.poll_due().await.unwrap();
    }
    let o = e.order(&key).await.unwrap();
    assert_eq!(o.status, Status::Submitted, "never failed on our own");
    assert!(o.attempts.needs_attention);
    assert_eq!(t.count(Endpoint::Outpay) as u32, config().poll.max_sends);
    let flagged = kinds(&e)
        .await
        .into_iter()
        .filter(|k| matches!(k, EventKind::Anomaly(Anomaly::NeedsAttention { .. })))
        .count();
    assert_eq!(flagged, 1, "raised once");
    assert_eq!(
        e.protocol(&trans_no).await.unwrap().ledger.reserved.to_string(),
        "30.00"
    );
    // Still polled, slowly.
    let queries = t.count(Endpoint::Outquery);
    tokio::time::advance(Duration::from_secs(2 * 3600)).await;
    e.poll_due().await.unwrap();
    assert!(t.count(Endpoint::Outquery) > queries);
    // A person may decide; a settled order cannot be decided again.
    assert!(matches!(
        e.resolve(&key, Decision::new(Status::Processing, "x")).await,
        Err(Error::InvalidField { .. })
    ));
    assert!(matches!(
        e.resolve(&key, Decision::new(Status::Failure, " ")).await,
        Err(Error::InvalidField { .. })
    ));
    // And the payment system's word still settles it.
    t.default_for(
        Endpoint::Outquery,
        Step::Data(outbound_view(&trans_no, &key, "30.00", "FAILURE")),
    );
    for _ in 0..10 {
        tokio::time::advance(Duration::from_secs(3 * 3600)).await;
        e.poll_due().await.unwrap();
    }
    assert_eq!(e.order(&key).await.unwrap().status, Status::Failure);
    assert_eq!(
        e.protocol(&trans_no).await.unwrap().ledger.available.to_string(),
        "30.00"
    );
}

#[tokio::test(start_paused = true)]
async fn concurrent_payouts_exactly_one_accepted() {
    let (e, t, _, trans_no) = setup("100.00").await;
    t.default_for(
        Endpoint::Outpay,
        Step::Fail(TransportError::MaybeDelivered { reason: "slow".into() }),
    );
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let e = e.clone();
            let trans_no = trans_no.clone();
            tokio::spawn(async move {
                e.outpay(payout(&trans_no, Some(&format!("{APP}-race-{i}")), "70"))
                    .await
            })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => accepted += 1,
            Err(Error::InsufficientFunds { .. }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(accepted, 1);
    let l = e.protocol(&trans_no).await.unwrap().ledger;
    assert_eq!(
        (l.available.to_string(), l.reserved.to_string()),
        ("30.00".into(), "70.00".into())
    );
    protopay_engine::ledger::check(&l, e.orders_of(&trans_no).await.unwrap().iter()).unwrap();
}

#[tokio::test(start_paused = true)]
async fn bad_callbacks_are_rejected_and_change_nothing() {
    let (e, t, _, trans_no) = setup("10.00").await;
    let key = format!("{APP}-out-1");
    accepted_payout(&e, &t, &trans_no, &key, "10.00").await;
    let order = e.order(&key).await.unwrap();
    let events = kinds(&e).await.len();
    let settled = outbound_view(&trans_no, &key, "10.00", "SUCCESS");

    let forged = reply_body("0000", "SUCCESS", &settled, "wrong-key");
    let mut wrong_app: serde_json::Value = serde_json::from_slice(&callback_body(&settled)).unwrap();
    wrong_app["appId"] = json!("APP002");
    let oversized = vec![b' '; 64 * 1024 + 1];
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("forged", forged, 401),
        ("wrong appId", wrong_app.to_string().into_bytes(), 401),
        ("not json", b"{{{".to_vec(), 400),
        ("data not a view", callback_body(&json!({"payStatus": 7})), 400),
        (
            "bad amount",
            callback_body(&json!({"outReqNo": key, "amount": "1e3"})),
            400,
        ),
        ("oversized", oversized, 413),
    ];
    for (name, body, status) in cases {
        let r = e.handle_callback(CallbackKind::Outbound, &body).await;
        assert_eq!(r.status, status, "{name}: {}", r.body);
        assert!(!r.is_success());
        assert!(!r.body.contains("SUCCESS\""), "{name}");
    }
    assert_eq!(e.order(&key).await.unwrap(), order, "nothing changed");
    assert_eq!(kinds(&e).await.len(), events, "no events");

    // The forged body named a known order: its next poll moved forward (it is due now).
    t.default_for(
        Endpoint::Outquery,
        Step::Data(outbound_view(&trans_no, &key, "10.00", "PROCESSING")),
    );
    let report = e.poll_due().await.unwrap();
    assert_eq!(report.due, 1, "order named by a failed callback polled at once");
}

#[tokio::test(start_paused = true)]
async fn unknown_order_callback_is_kept_as_an_orphan() {
    let (e, _, _, trans_no) = setup("10.00").await;
    let view = outbound_view(&trans_no, &format!("{APP}-never-seen"), "5.00", "SUCCESS");
    for _ in 0..2 {
        let r = e.handle_callback(CallbackKind::Outbound, &callback_body(&view)).await;
        assert!(r.is_success(), "answered success so it stops retrying");
    }
    assert_eq!(e.orphans().await.unwrap().len(), 1, "kept once per signature");
    assert!(kinds(&e).await.contains(&EventKind::Anomaly(Anomaly::OrphanCallback)));
    assert_eq!(
        e.protocol(&trans_no).await.unwrap().ledger.available.to_string(),
        "10.00"
    );
}

#[tokio::test(start_paused = true)]
async fn plain_success_reply_style() {
    let t = Scripted::default();
    let mut c = config();
    c.reply_style = protopay_engine::ReplyStyle::PlainSuccess;
    let e = Engine::builder(c)
        .storage(MemoryStorage::new())
        .transport(t.clone())
        .clock(clock())
        .build()
        .await
        .unwrap();
    let trans_no = funded(&e, &t, "1.00").await;
    let body = callback_body(&inbound_view(
        &trans_no,
        &format!("{APP}-in-fund-1_00"),
        "1.00",
        "SUCCESS",
        "02",
    ));
    let r = e.handle_callback(CallbackKind::InboundArrival, &body).await;
    assert_eq!((r.status, r.body.as_str()), (200, "SUCCESS"));
}

#[tokio::test(start_paused = true)]
async fn event_feed_survives_a_restart() {
    let (e, t, storage, trans_no) = setup("10.00").await;
    let all = e.events_after(0, 1000).await.unwrap();
    let half = all[all.len() / 2].seq;
    e.ack("ledger-sync", half).await.unwrap();
    drop(e);

    // A new engine on the same storage delivers everything unacknowledged, then new events live.
    let e2 = engine_on(storage, t.clone()).await;
    let mut sub = e2.subscribe("ledger-sync");
    let first = sub.next().await.unwrap();
    assert_eq!(first.first().map(|ev| ev.seq), Some(half + 1));
    assert_eq!(first.last().map(|ev| ev.seq), all.last().map(|ev| ev.seq));
    let waiter = tokio::spawn(async move {
        let events = sub.next().await.unwrap();
        (events, sub)
    });
    tokio::task::yield_now().await;
    let key = format!("{APP}-out-1");
    accepted_payout(&e2, &t, &trans_no, &key, "1.00").await;
    let (live, sub) = waiter.await.unwrap();
    assert!(live.iter().any(|ev| ev.kind == EventKind::OutboundReserved));
    assert!(live.iter().all(|ev| ev.seq > all.last().unwrap().seq));
    assert!(live.iter().any(|ev| ev.source == Source::Reply));
    // Acknowledged through the subscription: not handed out again, to a new one either.
    sub.ack(live.last().unwrap().seq).await.unwrap();
    assert!(e2.unacknowledged("ledger-sync").await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn restart_recovers_stored_but_unsent_orders() {
    // The first process stores the reservation, then cannot mark it sent (its second commit
    // fails), and dies before any poll: stored, never sent.
    let (t, storage) = (Scripted::default(), Flaky::default());
    let e = engine_with(storage.clone(), t.clone(), config(), clock()).await;
    let trans_no = funded(&e, &t, "10.00").await;
    let key = format!("{APP}-out-crash");
    storage.hooks.fail_commit(2);
    let stored = e.outpay(payout(&trans_no, Some(&key), "4")).await.unwrap();
    assert_eq!(
        (stored.status, t.count(Endpoint::Outpay)),
        (Status::Reserved, 0),
        "stored, never sent"
    );
    drop(e);
    let e2 = engine_with(storage, t.clone(), config(), clock()).await;
    t.push(
        Endpoint::Outpay,
        Step::Data(outbound_view(&trans_no, &key, "4.00", "SUCCESS")),
    );
    let poller = e2.spawn_poller();
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(30)).await;
        if e2.order(&key).await.unwrap().status == Status::Success {
            break;
        }
    }
    poller.shutdown().await;
    assert_eq!(e2.order(&key).await.unwrap().status, Status::Success);
    assert_eq!(t.count(Endpoint::Outpay), 1, "sent once, by the new process's poller");
    assert_eq!(
        e2.protocol(&trans_no).await.unwrap().ledger.paid_out.to_string(),
        "4.00"
    );
}

#[tokio::test(start_paused = true)]
async fn reconcile_reports_drift_and_moves_nothing() {
    let (e, t, _, trans_no) = setup("10.00").await;
    let mut view = protocol_view(&trans_no);
    view["amount"] = json!("10.00");
    t.push(Endpoint::Find, Step::Data(view.clone()));
    let r = e.reconcile(&trans_no).await.unwrap();
    assert!(r.drift.is_empty(), "{:?}", r.drift);
    view["amount"] = json!("7.00");
    t.push(Endpoint::Find, Step::Data(view));
    let r = e.reconcile(&trans_no).await.unwrap();
    assert_eq!(r.drift.len(), 1);
    assert_eq!(
        e.protocol(&trans_no).await.unwrap().ledger.available.to_string(),
        "10.00",
        "reports, never fixes"
    );
    // A protocol not known here has no books: the same answer as reading it, and nothing is
    // asked of the payment system.
    let finds = t.count(Endpoint::Find);
    assert!(matches!(
        e.reconcile("T-unknown").await,
        Err(Error::UnknownProtocol { .. })
    ));
    assert_eq!(t.count(Endpoint::Find), finds);
}

/// A person's reconciliation leaves an audit record (who, why, how many figures disagreed) in
/// the commit that records the drift, and a host's leaves none; a blank reason is refused
/// before anything is asked.
#[tokio::test(start_paused = true)]
async fn a_persons_reconciliation_is_in_the_audit_trail() {
    let (e, t, _, trans_no) = setup("10.00").await;
    let mut view = protocol_view(&trans_no);
    view["amount"] = json!("7.00");
    t.push(Endpoint::Find, Step::Data(view.clone()));
    e.reconcile(&trans_no).await.unwrap();
    assert!(
        e.audit(None, 10).await.unwrap().is_empty(),
        "a host's reconciliation is no person's act"
    );
    t.push(Endpoint::Find, Step::Data(view));
    let r = e.reconcile_by(&trans_no, "li.lei", "month end").await.unwrap();
    assert_eq!(r.drift.len(), 1);
    let trail = e.audit(None, 10).await.unwrap();
    let [record] = trail.as_slice() else {
        panic!("{trail:?}")
    };
    assert_eq!(
        record.kind,
        EventKind::OperatorReconciled {
            note: "month end".into(),
            by: "li.lei".into(),
            drifting: 1,
        }
    );
    assert_eq!(record.trans_no.as_deref(), Some(trans_no.as_str()));
    let feed = e.events_after(record.seq - 2, 10).await.unwrap();
    let drift_seqs: Vec<u64> = feed
        .iter()
        .filter(|ev| matches!(ev.kind, EventKind::Anomaly(Anomaly::BalanceDrift { .. })))
        .map(|ev| ev.seq)
        .collect();
    assert_eq!(drift_seqs, [record.seq - 1], "written with it");
    let finds = t.count(Endpoint::Find);
    assert!(matches!(
        e.reconcile_by(&trans_no, "li.lei", " ").await,
        Err(Error::InvalidField { field: "note", .. })
    ));
    assert_eq!(t.count(Endpoint::Find), finds, "nothing asked");
}

/// An order's evidence is what went over the wire, in order: the payout as signed and sent,
/// that its reply never came, the query and its verified reply, the callback as received —
/// each body byte for byte; a forged reply is kept marked unverified, a forged callback not
/// at all.
#[tokio::test(start_paused = true)]
async fn an_orders_evidence_is_each_message_as_it_was_on_the_wire() {
    use protopay_engine::{storage::Message, wire};
    let (e, t, _, trans_no) = setup("50.00").await;
    t.push(Endpoint::Outpay, maybe());
    e.outpay(payout(&trans_no, Some("APP001-ev"), "20")).await.unwrap();
    let processing = outbound_view(&trans_no, "APP001-ev", "20.00", "PROCESSING");
    t.push(Endpoint::Outquery, Step::Forged(processing.clone()));
    t.push(Endpoint::Outquery, Step::Data(processing));
    for _ in 0..2 {
        tokio::time::advance(Duration::from_secs(120)).await;
        e.poll_due().await.unwrap();
    }
    let success = outbound_view(&trans_no, "APP001-ev", "20.00", "SUCCESS");
    let forged = reply_body(wire::CODE_OK, wire::MSG_OK, &success, "not-the-key");
    assert_ne!(e.handle_callback(CallbackKind::Outbound, &forged).await.status, 200);
    let callback = callback_body(&success);
    assert_eq!(e.handle_callback(CallbackKind::Outbound, &callback).await.status, 200);
    let kept = e.exchanges("APP001-ev").await.unwrap();
    let messages: Vec<&Message> = kept.iter().map(|x| &x.message).collect();
    let (outpay, outquery) = (|| "outpay".to_owned(), || "outquery".to_owned());
    assert_eq!(
        messages,
        [
            &Message::Request { endpoint: outpay() },
            &Message::NoReply {
                endpoint: outpay(),
                maybe_delivered: true,
                reason: "maybe delivered: timeout after sending".into()
            },
            &Message::Request { endpoint: outquery() },
            &Message::Reply {
                endpoint: outquery(),
                verified: false
            },
            &Message::Request { endpoint: outquery() },
            &Message::Reply {
                endpoint: outquery(),
                verified: true
            },
            &Message::Callback {
                kind: CallbackKind::Outbound
            },
        ]
    );
    let sent: serde_json::Value = serde_json::from_str(&kept[0].body).unwrap();
    let data: serde_json::Value = serde_json::from_str(sent["data"].as_str().unwrap()).unwrap();
    assert_eq!(data, t.calls(Endpoint::Outpay)[0], "the request as signed and sent");
    assert_eq!(
        kept[6].body.as_bytes(),
        callback.as_slice(),
        "the callback byte for byte"
    );
    assert!(kept.iter().all(|x| x.out_req_no == "APP001-ev"));
    assert!(matches!(
        e.exchanges("APP001-none").await,
        Err(Error::UnknownOrder { .. })
    ));
}

#[test]
fn config_is_validated() {
    let mut c = config();
    c.poll.grace_ms = c.timeouts.request_ms;
    assert!(matches!(
        c.validate(),
        Err(Error::InvalidConfig {
            field: "poll.grace_ms",
            ..
        })
    ));
    // A claim that runs out while its own poll still waits would let a second instance in.
    let mut c = config();
    c.poll.claim_ms = c.timeouts.request_ms;
    assert!(matches!(
        c.validate(),
        Err(Error::InvalidConfig {
            field: "poll.claim_ms",
            ..
        })
    ));
    let parsed: Result<protopay_engine::Config, _> =
        serde_json::from_str(r#"{"app_id":"A","key":"k","base_url":"u","callback_base_url":"c","typo":1}"#);
    assert!(parsed.is_err(), "unknown settings are refused");
    // A setting renamed for its unit is still read under its old name.
    let renamed: protopay_engine::Config = serde_json::from_str(
        r#"{"app_id":"A","key":"k","base_url":"u","callback_base_url":"c","callback_body_limit":70000}"#,
    )
    .unwrap();
    assert_eq!(renamed.callback_body_limit_bytes, 70_000);
    // So are the poll settings renamed for one word per thing.
    let renamed: protopay_engine::Config = serde_json::from_str(
        r#"{"app_id":"A","key":"k","base_url":"u","callback_base_url":"c",
            "poll":{"lease_ms":45000,"max_submissions":4,"batch":17}}"#,
    )
    .unwrap();
    assert_eq!(
        (
            renamed.poll.claim_ms,
            renamed.poll.max_sends,
            renamed.poll.orders_per_pass
        ),
        (45_000, 4, 17)
    );
    // The receiver serves the path of the notify URLs we send, whatever the URL's shape.
    for (base, path) in [
        ("https://me.example/protopay/notify", "/protopay/notify"),
        ("https://me.example/protopay/notify/", "/protopay/notify"),
        ("http://127.0.0.1:8080/n?x=1", "/n"),
        ("https://me.example", ""),
        ("https://me.example/", ""),
    ] {
        let mut c = config();
        c.callback_base_url = base.into();
        assert_eq!(c.callback_path(), path, "{base}");
    }
    let shown = format!("{:?}", config());
    assert!(!shown.contains(KEY), "the key is never shown: {shown}");
    assert!(shown.contains("Md5Key(***)"), "its place is marked: {shown}");
}

#[tokio::test(start_paused = true)]
async fn an_operator_resolves_an_order_that_needs_attention() {
    let (e, t, _, trans_no) = setup("30.00").await;
    let key = format!("{APP}-out-void");
    t.default_for(Endpoint::Outpay, maybe());
    t.default_for(Endpoint::Outquery, Step::Code("EP20003", "no such order"));
    e.outpay(payout(&trans_no, Some(&key), "30")).await.unwrap();
    for _ in 0..60 {
        tokio::time::advance(Duration::from_secs(120)).await;
        e.poll_due().await.unwrap();
    }
    assert!(
        e.order(&key).await.unwrap().attempts.needs_attention,
        "it needs attention first"
    );
    let o = e
        .resolve(
            &key,
            Decision::new(Status::Failure, "bank confirmed no transfer, ticket 42").by("li.lei"),
        )
        .await
        .unwrap();
    assert_eq!(o.status, Status::Failure);
    assert_eq!(
        e.protocol(&trans_no).await.unwrap().ledger.available.to_string(),
        "30.00",
        "funds released"
    );
    let recorded = kinds(&e).await.into_iter().any(|k| {
        matches!(
            k,
            EventKind::OperatorResolved {
                status: Status::Failure,
                by: Some(by),
                ..
            } if by == "li.lei"
        )
    });
    assert!(recorded, "the decision names who made it");
    assert!(matches!(
        e.resolve(&key, Decision::new(Status::Success, "again")).await,
        Err(Error::InvalidState { .. })
    ));
    let src = e
        .events_after(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|ev| ev.source == Source::Operator)
        .count();
    assert!(src >= 2, "the decision and its effect are attributed to the operator");
}

/// Key rotation: while the old key is in `previous_keys`, callbacks signed with it verify;
/// once it is removed they are refused and change nothing; every answer is signed with the
/// current key.
#[tokio::test(start_paused = true)]
async fn callbacks_signed_with_a_previous_key_verify_only_during_the_rotation() {
    let (e, t, s, trans_no) = setup("50.00").await;
    let key = format!("{APP}-rotated");
    accepted_payout(&e, &t, &trans_no, &key, "10.00").await;
    let rotated = |previous: Vec<Md5Key>| {
        let mut c = config();
        c.key = Md5Key::new("the-new-key");
        c.previous_keys = previous;
        c
    };
    let signed_with_old_key = callback_body(&outbound_view(&trans_no, &key, "10.00", "SUCCESS"));

    // After the rotation window: the old key is refused, nothing changes.
    let after = engine_with(s.clone(), t.clone(), rotated(vec![]), clock()).await;
    let refused = after
        .handle_callback(CallbackKind::Outbound, &signed_with_old_key)
        .await;
    assert!(!refused.is_success(), "{}", refused.body);
    assert_eq!(status_of(&after.order(&key).await.unwrap()), "PROCESSING");

    // During the window: it verifies, and the answer is signed with the new key only.
    let during = engine_with(s, t, rotated(vec![Md5Key::new(KEY)]), clock()).await;
    let accepted = during
        .handle_callback(CallbackKind::Outbound, &signed_with_old_key)
        .await;
    assert!(accepted.is_success(), "{}", accepted.body);
    assert!(Envelope::open(accepted.body.as_bytes(), APP, &Md5Key::new("the-new-key")).is_ok());
    assert!(Envelope::open(accepted.body.as_bytes(), APP, &Md5Key::new(KEY)).is_err());
    assert_eq!(status_of(&during.order(&key).await.unwrap()), "SUCCESS");
}

/// Periodic reconciliation: each period the poller reconciles the protocols with activity
/// since the last run — drift is recorded as anomalies — and leaves quiet ones alone.
#[tokio::test(start_paused = true)]
async fn the_poller_reconciles_active_protocols_each_period() {
    let t = Scripted::default();
    let mut c = config();
    c.reconcile_every_ms = 60_000;
    let e = engine_with(MemoryStorage::new(), t.clone(), c, clock()).await;
    let trans_no = funded(&e, &t, "50.00").await;
    t.default_for(Endpoint::Find, Step::Data(protocol_view("T1"))); // theirs: nothing arrived
    let poller = e.spawn_poller();
    let drift = |k: &EventKind| matches!(k, EventKind::Anomaly(Anomaly::BalanceDrift { .. }));
    for _ in 0..120 {
        if kinds(&e).await.iter().any(drift) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(kinds(&e).await.iter().any(drift), "drift found within two periods");
    assert_eq!(t.count(Endpoint::Find), 1, "one protocol was active: one find");

    // The payment system agrees from now on: reconciled once more (the drift events were
    // activity), then quiet — no more calls.
    let mut agreeing = protocol_view(&trans_no);
    agreeing["amount"] = json!("50.00");
    t.default_for(Endpoint::Find, Step::Data(agreeing));
    tokio::time::sleep(Duration::from_secs(250)).await;
    assert_eq!(t.count(Endpoint::Find), 2, "a quiet protocol is not asked again");
    poller.shutdown().await;
}

/// `check` while payouts settle: reads interleave with the settling commits (on a yielding
/// store each call lets the other task run), and no report may name a violation — an order read open whose due
/// time is gone by the time it is looked up, or a listing counted while orders move, is the
/// engine being busy, not broken.
#[tokio::test(start_paused = true)]
async fn check_while_orders_settle_is_no_false_alarm() {
    let t = Scripted::default();
    let e = engine_with(MemoryStorage::new().yielding(), t.clone(), config(), clock()).await;
    let trans_no = funded(&e, &t, "100.00").await;
    let keys: Vec<String> = (0..12).map(|i| format!("{APP}-busy-{i}")).collect();
    for key in &keys {
        accepted_payout(&e, &t, &trans_no, key, "1.00").await;
    }
    let settling = tokio::spawn({
        let e = e.clone();
        async move {
            for key in keys {
                let body = callback_body(&outbound_view("T1", &key, "1.00", "SUCCESS"));
                let reply = e.handle_callback(CallbackKind::Outbound, &body).await;
                assert!(reply.is_success(), "{reply:?}");
            }
        }
    });
    let mut during = 0;
    while !settling.is_finished() {
        let report = e.check().await.unwrap();
        assert!(report.violations.is_empty(), "while settling: {:#?}", report.violations);
        during += 1;
    }
    settling.await.unwrap();
    let report = e.check().await.unwrap();
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
    assert_eq!(report.orders, 13);
    assert!(during > 0, "no check ran while the payouts settled");
}
