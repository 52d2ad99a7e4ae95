//! Regression tests for the defects an outside attack found, each named for the promise it
//! checks. Each failed before its fix. On tokio's paused clock, with a scripted transport and
//! a store that fails on cue.

mod support;

use protopay_engine::storage::{Batch, MemoryStorage, Orphan, Put, Storage};
use protopay_engine::wire::validate::limits;
use protopay_engine::wire::{CallbackKind, Endpoint, Envelope, InboundView, OutboundView, Prepay};
use protopay_engine::{
    Amount, Anomaly, Clock, Config, Decision, Engine, Error, EventKind, NewInbound, NewOutbound, Sensitive, Status,
    TransportError,
};
use serde_json::json;
use std::time::Duration;
use support::*;

/// An engine on a flaky store, with a funded protocol.
async fn funded_on(store: &Flaky, t: &Scripted, config: Config, amount: &str) -> (Engine, String) {
    let e = engine_with(store.clone(), t.clone(), config, clock()).await;
    let trans_no = funded(&e, t, amount).await;
    (e, trans_no)
}

async fn anomalies(e: &Engine) -> Vec<Anomaly> {
    let events = e.events_after(0, 10_000).await.unwrap();
    events
        .into_iter()
        .filter_map(|ev| match ev.kind {
            EventKind::Anomaly(a) => Some(a),
            _ => None,
        })
        .collect()
}

/// Poll every 5 s for up to `within`; the number of sends as soon as a resend happened.
async fn resent_within(e: &Engine, t: &Scripted, within: Duration) -> Option<usize> {
    let sent = t.count(Endpoint::Outpay);
    let mut waited = Duration::ZERO;
    while waited < within {
        tokio::time::advance(Duration::from_secs(5)).await;
        waited += Duration::from_secs(5);
        e.poll_due().await.unwrap();
        if t.count(Endpoint::Outpay) > sent {
            return Some(t.count(Endpoint::Outpay));
        }
    }
    None
}

/// Defect 1: `outpay` with a generated `outReqNo` whose `Submitted` commit failed returned a
/// bare storage error, yet the stored order was sent later — the host's retry paid twice.
#[tokio::test(start_paused = true)]
async fn an_order_whose_send_could_not_be_recorded_is_accepted_and_sent_once() {
    let (store, t) = (Flaky::default(), Scripted::default());
    let (e, trans_no) = funded_on(&store, &t, config(), "50.00").await;
    store.hooks.fail_commit(2); // 1: the intent; 2: the `Submitted` mark.
    let order = e
        .outpay(payout(&trans_no, None, "20"))
        .await
        .expect("the request stands once recorded");
    assert_eq!(order.status, Status::Reserved);
    assert_eq!(t.count(Endpoint::Outpay), 0, "nothing was sent without its mark");
    let key = order.out_req_no().to_owned();
    t.push(
        Endpoint::Outpay,
        Step::Data(outbound_view(&trans_no, &key, "20.00", "PROCESSING")),
    );
    for _ in 0..10 {
        tokio::time::advance(Duration::from_secs(30)).await;
        e.poll_due().await.unwrap();
    }
    assert_eq!(t.count(Endpoint::Outpay), 1, "the poller sent it, once");
    assert_eq!(e.order(&key).await.unwrap().status, Status::Processing);

    // The same for `prepay`.
    store.hooks.fail_commit(2);
    let order = e
        .prepay(NewInbound::pos(&trans_no, Amount::parse("5").unwrap()))
        .await
        .unwrap();
    assert_eq!(
        (order.status, t.count(Endpoint::Prepay)),
        (Status::Requested, 1),
        "only the funding prepay"
    );

    // A failure of the intent itself is a plain error, and nothing is ever sent for it.
    store.hooks.fail_commit(1);
    let refused = e.outpay(payout(&trans_no, Some("APP001-never"), "1")).await;
    assert!(matches!(refused, Err(Error::Storage(_))), "{refused:?}");
    assert!(e.order("APP001-never").await.is_err());
}

/// A payment system that deduplicates `outReqNo`: the only setting under which a send that
/// may have been delivered is ever repeated (after the grace period).
fn deduplicating() -> Config {
    Config {
        payment_system_deduplicates: true,
        ..config()
    }
}

/// Defect 2: a send made just before a restart, on a host whose wall clock then reads
/// 10 minutes ahead, looked past its grace period at once: a verified "not found" led to a
/// resend while the first request was still on its way. (With a deduplicating payment
/// system, the only one to which a maybe-delivered send is ever repeated.)
#[tokio::test(start_paused = true)]
async fn a_wall_clock_ahead_after_restart_cannot_cut_the_grace_period() {
    let (store, t) = (Flaky::default(), Scripted::default());
    let (e, trans_no) = funded_on(&store, &t, deduplicating(), "50.00").await;
    t.push(Endpoint::Outpay, maybe());
    e.outpay(payout(&trans_no, Some("APP001-late"), "20")).await.unwrap();
    drop(e);
    let ahead = Clock::starting_at(clock().now() + chrono::Duration::minutes(10));
    let e = engine_with(store.clone(), t.clone(), deduplicating(), ahead).await;
    t.default_for(Endpoint::Outquery, Step::Code("EP20003", "no such order"));
    let grace = Duration::from_millis(config().poll.grace_ms);
    let mut waited = Duration::ZERO;
    while waited + Duration::from_secs(5) < grace {
        tokio::time::advance(Duration::from_secs(5)).await;
        waited += Duration::from_secs(5);
        e.poll_due().await.unwrap();
    }
    assert!(t.count(Endpoint::Outquery) >= 1, "it was asked about");
    assert_eq!(
        t.count(Endpoint::Outpay),
        1,
        "no resend within this process's grace period"
    );
    assert_eq!(
        resent_within(&e, &t, Duration::from_secs(180)).await,
        Some(2),
        "resent once it has truly passed"
    );
}

/// Defect 2, the other way: a wall clock an hour behind after a restart must not hold
/// recovery back for an hour.
#[tokio::test(start_paused = true)]
async fn a_wall_clock_behind_after_restart_does_not_delay_recovery() {
    let (store, t) = (Flaky::default(), Scripted::default());
    let (e, trans_no) = funded_on(&store, &t, deduplicating(), "50.00").await;
    t.push(Endpoint::Outpay, maybe());
    e.outpay(payout(&trans_no, Some("APP001-behind"), "20")).await.unwrap();
    drop(e);
    let behind = Clock::starting_at(clock().now() - chrono::Duration::hours(1));
    let e = engine_with(store.clone(), t.clone(), deduplicating(), behind).await;
    assert!(
        e.now() >= clock().now(),
        "the clock does not start behind what is stored"
    );
    t.default_for(Endpoint::Outquery, Step::Code("EP20003", "no such order"));
    let bound = Duration::from_millis(config().poll.grace_ms) + Duration::from_secs(120);
    assert_eq!(
        resent_within(&e, &t, bound).await,
        Some(2),
        "resent within minutes, not an hour"
    );
}

/// Defect 3: once an order needed attention, every further "not found" committed nothing
/// and left it due in the past: the poller asked about it in a loop.
#[tokio::test(start_paused = true)]
async fn an_order_that_needs_attention_is_polled_at_the_attention_pace() {
    let (store, t) = (Flaky::default(), Scripted::default());
    let mut c = config();
    c.poll.max_sends = 1;
    let (e, trans_no) = funded_on(&store, &t, c, "50.00").await;
    flagged_payout(&e, &t, &trans_no, "APP001-flag").await;
    let before = t.count(Endpoint::Outquery);
    for _ in 0..7_200 {
        tokio::time::advance(Duration::from_secs(1)).await;
        e.poll_due().await.unwrap();
    }
    let asked = t.count(Endpoint::Outquery) - before;
    assert!(
        (1..=3).contains(&asked),
        "{asked} queries in two hours at one per attention_ms"
    );
}

/// Defect 4: a poll whose commit failed left the order due in the past, and the poller's
/// wait computed to zero: hundreds of queries a second while the store was down.
#[tokio::test(start_paused = true)]
async fn a_failing_store_holds_polls_back_by_the_policy() {
    let (store, t) = (Flaky::default(), Scripted::default());
    let (e, trans_no) = funded_on(&store, &t, config(), "50.00").await;
    t.push(
        Endpoint::Outpay,
        Step::Data(outbound_view(&trans_no, "APP001-down", "20.00", "PROCESSING")),
    );
    e.outpay(payout(&trans_no, Some("APP001-down"), "20")).await.unwrap();
    t.default_for(
        Endpoint::Outquery,
        Step::Data(outbound_view(&trans_no, "APP001-down", "20.00", "PROCESSING")),
    );
    store.hooks.set_down(true);
    // A tick every second (as an idle poller would, at least).
    for _ in 0..120 {
        tokio::time::advance(Duration::from_secs(1)).await;
        let report = e.poll_due().await.unwrap();
        assert!(report.polled == 0 || report.failed == report.polled);
    }
    // processing_ms = 10 s, doubling with each failure: 10 + 20 + 40 + … within 120 s.
    let asked = t.count(Endpoint::Outquery);
    assert!((1..=5).contains(&asked), "{asked} queries in 120 s with the store down");
    store.hooks.set_down(false);
    let poller = e.spawn_poller();
    t.default_for(
        Endpoint::Outquery,
        Step::Data(outbound_view(&trans_no, "APP001-down", "20.00", "SUCCESS")),
    );
    tokio::time::sleep(Duration::from_secs(600)).await;
    poller.shutdown().await;
    assert_eq!(
        e.order("APP001-down").await.unwrap().status,
        Status::Success,
        "it recovers"
    );
}

/// Defect 5: the poll moved forward by a bad-signature callback read the order while it was
/// open, a real callback settled it, then the unversioned schedule write landed: a closed
/// order due in the past, and a poller spinning on it.
#[tokio::test(start_paused = true)]
async fn a_poll_moved_sooner_that_loses_a_race_leaves_a_settled_order_no_due_time() {
    let (store, t) = (Flaky::default(), Scripted::default());
    let (e, trans_no) = funded_on(&store, &t, config(), "50.00").await;
    let key = "APP001-in-race";
    t.push(
        Endpoint::Prepay,
        Step::Data(inbound_view(&trans_no, key, "3.00", "UNPAID", "01")),
    );
    let cmd = NewInbound {
        out_req_no: Some(key.into()),
        ..NewInbound::pos(&trans_no, Amount::parse("3").unwrap())
    };
    e.prepay(cmd).await.unwrap();
    // Between the poll-sooner's read and its write, the order is settled elsewhere (failed: no money
    // moves, so the ledger needs no change).
    let inner = store.inner.clone();
    store.hooks.before_next_commit(move || {
        Box::pin(async move {
            let mut current = inner.order(key).await.unwrap().unwrap();
            current.value.status = Status::Failure;
            let settled = Put {
                expected: Some(current.version),
                value: current.value,
            };
            let batch = Batch {
                orders: vec![settled],
                schedule: vec![(key.into(), None)],
                ..Default::default()
            };
            inner.commit(batch).await.unwrap();
        })
    });
    let forged = reply_body(
        "0000",
        "SUCCESS",
        &inbound_view(&trans_no, key, "3.00", "SUCCESS", "02"),
        "not-the-key",
    );
    assert!(!e.handle_callback(CallbackKind::InboundPay, &forged).await.is_success());
    assert_eq!(e.order(key).await.unwrap().status, Status::Failure);
    let far = clock().now() + chrono::Duration::days(365);
    let due = store.inner.due(far, usize::MAX).await.unwrap();
    assert!(
        due.iter().all(|d| d.out_req_no != key),
        "a settled order has no due time: {due:?}"
    );
}

/// Defect 6: `attention_after_quiet_polls` was documented and never read: an order whose
/// queries kept failing was never flagged.
#[tokio::test(start_paused = true)]
async fn an_order_whose_queries_keep_failing_needs_attention() {
    let (store, t) = (Flaky::default(), Scripted::default());
    let mut c = config();
    c.poll.attention_after_quiet_polls = 3;
    let (e, trans_no) = funded_on(&store, &t, c, "50.00").await;
    t.push(Endpoint::Outpay, maybe());
    t.default_for(
        Endpoint::Outquery,
        Step::Fail(TransportError::NotDelivered { reason: "down".into() }),
    );
    e.outpay(payout(&trans_no, Some("APP001-quiet"), "20")).await.unwrap();
    for _ in 0..40 {
        tokio::time::advance(Duration::from_secs(60)).await;
        e.poll_due().await.unwrap();
    }
    let o = e.order("APP001-quiet").await.unwrap();
    assert!(o.attempts.needs_attention, "{:?}", o.attempts);
    assert_eq!(o.status, Status::Submitted, "never failed on our own");
    let flagged = anomalies(&e)
        .await
        .into_iter()
        .filter(|a| matches!(a, Anomaly::NeedsAttention { .. }))
        .count();
    assert_eq!(flagged, 1);
}

/// Defect 8: a deploy that changed `callback_base_url` made the host's identical retry an
/// `IdempotencyMismatch`, whose text advised a new `outReqNo` — the road to a second payout.
#[tokio::test(start_paused = true)]
async fn a_deploy_that_moves_notify_urls_keeps_repeats_idempotent() {
    let (store, t) = (Flaky::default(), Scripted::default());
    let (e, trans_no) = funded_on(&store, &t, config(), "50.00").await;
    t.push(Endpoint::Outpay, maybe());
    let first = e.outpay(payout(&trans_no, Some("APP001-deploy"), "20")).await.unwrap();
    drop(e);
    let mut moved = config();
    moved.callback_base_url = "https://new-host.example/pay/notify".into();
    let e = engine_with(store.clone(), t.clone(), moved, clock()).await;
    let again = e.outpay(payout(&trans_no, Some("APP001-deploy"), "20")).await.unwrap();
    assert_eq!(again, first, "the same order");
    assert_eq!(t.count(Endpoint::Outpay), 1);

    let mut other = payout(&trans_no, Some("APP001-deploy"), "21");
    other.remark = Some("different".into());
    let err = e.outpay(other).await.unwrap_err();
    let Error::IdempotencyMismatch { fields, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(fields, &["amount", "remark"]);
    let text = err.to_string();
    assert!(!text.contains("new outReqNo") && !text.contains("new order"), "{text}");
}

/// Defect 9: an `appId` of 40 characters was accepted, then every command with a generated
/// `outReqNo` failed (65 characters).
#[tokio::test(start_paused = true)]
async fn an_app_id_without_room_for_a_generated_out_req_no_is_refused() {
    let mut c = config();
    c.app_id = "A".repeat(limits::APP_ID_MAX_CHARS + 1);
    assert!(matches!(
        c.validate(),
        Err(Error::InvalidConfig { field: "app_id", .. })
    ));
    c.app_id = "A".repeat(limits::APP_ID_MAX_CHARS);
    let e = engine_with(MemoryStorage::new(), Scripted::default(), c, clock()).await;
    let generated = e.generate_out_req_no();
    assert_eq!(generated.len(), limits::OUT_REQ_NO_MAX_CHARS);
    protopay_engine::wire::validate::out_req_no(&e.config().app_id, &generated).unwrap();
}

/// Defect 10: `Orphan` printed the raw callback data — a payee's name and account — in
/// `Debug`. Every public type that can hold personal data is printed here.
#[tokio::test(start_paused = true)]
async fn personal_data_never_shows_in_debug_or_errors() {
    let (store, t) = (Flaky::default(), Scripted::default());
    let (e, trans_no) = funded_on(&store, &t, config(), "50.00").await;
    let outbound = payout(&trans_no, Some("APP001-pii"), "20");
    t.push(Endpoint::Outpay, maybe());
    let out_order = e.outpay(outbound.clone()).await.unwrap();
    let inbound = NewInbound {
        out_req_no: Some("APP001-pii-in".into()),
        payer_name: Some(Sensitive::new(PAYEE)),
        payer_cert_number: Some(Sensitive::new(CERT)),
        ..NewInbound::pos(&trans_no, Amount::parse("1").unwrap())
    };
    let view_data = json!({"transNo": trans_no, "appId": APP, "outReqNo": "APP001-pii-in", "amount": "1.00",
        "payStatus": "UNPAID", "cardNum": ACCOUNT, "qpUserName": PAYEE, "qpCertNumber": CERT});
    t.push(Endpoint::Prepay, Step::Data(view_data.clone()));
    let in_order = e.prepay(inbound.clone()).await.unwrap();
    let in_view: InboundView = Envelope::decode_data(&view_data.to_string()).unwrap();
    let out_view: OutboundView = Envelope::decode_data(
        &json!({"outReqNo": "APP001-pii", "bankAccName": PAYEE, "bankAccNum": ACCOUNT}).to_string(),
    )
    .unwrap();
    let orphan_body = callback_body(&json!({"outReqNo": "APP001-nobody", "bankAccName": PAYEE, "bankAccNum": ACCOUNT}));
    assert!(
        e.handle_callback(CallbackKind::Outbound, &orphan_body)
            .await
            .is_success()
    );
    let orphans: Vec<Orphan> = e.orphans().await.unwrap();
    assert_eq!(orphans.len(), 1);
    let Some(stored_in) = in_order.inbound() else { panic!() };
    let prepay: &Prepay = &stored_in.request;
    let mismatch = e
        .outpay(NewOutbound {
            amount: Amount::parse("1").unwrap(),
            ..outbound.clone()
        })
        .await
        .unwrap_err();
    let events = e.events_after(0, 10_000).await.unwrap();
    let printed = [
        format!("{outbound:?}"),
        format!("{inbound:?}"),
        format!("{out_order:?}"),
        format!("{in_order:?}"),
        format!("{prepay:?}"),
        format!("{in_view:?}"),
        format!("{out_view:?}"),
        format!("{orphans:?}"),
        format!("{events:?}"),
        format!("{mismatch:?} {mismatch}"),
        format!("{:?}", config()),
    ];
    for text in printed {
        for secret in [PAYEE, ACCOUNT, CERT, KEY] {
            assert!(!text.contains(secret), "{secret} shown in {text}");
        }
    }
    assert!(format!("{:?}", config()).contains("Md5Key(***)"));
}

/// Defect 11: free text had no length limit: a 70 KB remark was accepted, and the payment
/// system's callback echoing it was refused as too large forever.
#[tokio::test(start_paused = true)]
async fn over_long_text_is_refused_before_anything_is_stored() {
    let (store, t) = (Flaky::default(), Scripted::default());
    let (e, trans_no) = funded_on(&store, &t, config(), "50.00").await;
    let mut long = payout(&trans_no, Some("APP001-long"), "20");
    long.remark = Some("备".repeat(70_000 / 3));
    assert!(matches!(
        e.outpay(long).await,
        Err(Error::TooLong {
            field: "remark",
            max: limits::REMARK_MAX_CHARS
        })
    ));
    assert!(e.order("APP001-long").await.is_err());
    assert_eq!(t.count(Endpoint::Outpay), 0);

    // The longest acceptable request, echoed by the payment system, fits the receiver.
    let mut longest = payout(
        &trans_no,
        Some(&format!("APP001-{}", "9".repeat(limits::OUT_REQ_NO_MAX_CHARS - 7))),
        "20",
    );
    longest.payee_name = Sensitive::new("名".repeat(limits::PERSON_NAME_MAX_CHARS));
    longest.payee_account = Sensitive::new("6".repeat(limits::ACCOUNT_MAX_CHARS));
    longest.bank_name = "行".repeat(limits::BANK_NAME_MAX_CHARS);
    longest.remark = Some("\"".repeat(limits::REMARK_MAX_CHARS));
    t.push(Endpoint::Outpay, maybe());
    let order = e.outpay(longest.clone()).await.unwrap();
    let echo = json!({"transNo": trans_no, "appId": APP, "outReqNo": order.out_req_no(), "amount": "20.00",
        "payOrderNo": "P".repeat(64), "bankAccName": longest.payee_name.expose(),
        "bankAccNum": longest.payee_account.expose(), "bankName": longest.bank_name, "bankCnaps": longest.bank_cnaps,
        "outType": "OUT", "remark": longest.remark, "payStatus": "SUCCESS", "payFinishTime": "2026-11-26 12:00:00",
        "channelReturnMsg": "成功".repeat(50)});
    let ascii = serde_json::to_string(&echo)
        .unwrap()
        .chars()
        .map(|c| if c.is_ascii() { 1 } else { 6 })
        .sum::<usize>();
    let body = callback_body(&echo);
    assert!(ascii * 2 < limits::ECHO_BODY_MAX_BYTES && body.len() < config().callback_body_limit_bytes);
    assert!(e.handle_callback(CallbackKind::Outbound, &body).await.is_success());
    assert_eq!(e.order(order.out_req_no()).await.unwrap().status, Status::Success);
}

/// Defect 12: a verified callback whose `payFinishTime` was written as Java writes it
/// (`2026-11-27 10:10:10.0`) was refused as malformed, and retried forever.
#[tokio::test(start_paused = true)]
async fn an_informative_field_that_cannot_be_read_does_not_block_the_news() {
    let (store, t) = (Flaky::default(), Scripted::default());
    let (e, trans_no) = funded_on(&store, &t, config(), "50.00").await;
    for (key, finish) in [("APP001-java", "2026-11-27 10:10:10.0"), ("APP001-odd", "tomorrow-ish")] {
        t.push(Endpoint::Outpay, maybe());
        e.outpay(payout(&trans_no, Some(key), "10")).await.unwrap();
        let mut view = outbound_view(&trans_no, key, "10.00", "SUCCESS");
        view["payFinishTime"] = json!(finish);
        let reply = e.handle_callback(CallbackKind::Outbound, &callback_body(&view)).await;
        assert!(reply.is_success(), "{reply:?}");
        let order = e.order(key).await.unwrap();
        assert_eq!(order.status, Status::Success);
        let Some(o) = order.outbound() else { panic!() };
        assert_eq!(
            o.remote.pay_finish_time.as_ref().map(|t| t.raw()),
            Some(finish),
            "kept as received"
        );
    }
    let unreadable: Vec<_> = anomalies(&e)
        .await
        .into_iter()
        .filter(|a| matches!(a, Anomaly::UnreadableValue { .. }))
        .collect();
    assert_eq!(
        unreadable,
        vec![Anomaly::UnreadableValue {
            field: "payFinishTime".into()
        }],
        "only the odd one"
    );
}

/// Also found: `refresh_protocol` adopted a funded protocol with an empty ledger, so it could
/// never pay out and reconciled as drift forever. Its available balance is its opening one.
#[tokio::test(start_paused = true)]
async fn an_adopted_protocol_pays_out_what_it_holds_and_reconciles() {
    let t = Scripted::default();
    let e = engine_with(MemoryStorage::new(), t.clone(), config(), clock()).await;
    let mut view = protocol_view("T-elsewhere");
    view["amount"] = json!("30.00");
    t.default_for(Endpoint::Find, Step::Data(view.clone()));
    let adopted = e.refresh_protocol("T-elsewhere").await.unwrap();
    assert_eq!(
        (adopted.ledger.available.to_string(), adopted.ledger.opening.to_string()),
        ("30.00".into(), "30.00".into())
    );
    let opened = e
        .events_after(0, 100)
        .await
        .unwrap()
        .into_iter()
        .any(|ev| matches!(ev.kind, EventKind::ProtocolAdopted { opening } if opening.to_string() == "30.00"));
    assert!(opened, "the opening balance is published");
    assert!(e.reconcile("T-elsewhere").await.unwrap().drift.is_empty());
    t.push(
        Endpoint::Outpay,
        Step::Data(outbound_view("T-elsewhere", "APP001-from-opening", "20.00", "SUCCESS")),
    );
    let paid = e
        .outpay(payout("T-elsewhere", Some("APP001-from-opening"), "20"))
        .await
        .unwrap();
    assert_eq!(paid.status, Status::Success);
    let l = e.protocol("T-elsewhere").await.unwrap().ledger;
    assert_eq!(
        (l.available.to_string(), l.paid_out.to_string()),
        ("10.00".into(), "20.00".into())
    );
    let orders = e.orders_of("T-elsewhere").await.unwrap();
    protopay_engine::ledger::check(&l, orders.iter()).unwrap();
}

/// Pauses and partitions, defect 3: twins of one payout on two instances got different
/// answers — one `Ok`, the other `InsufficientFunds` ("nothing will ever move") while the
/// payout was made. The twin committed between this instance's read of the order (absent) and
/// its read of the protocol (funds now taken). An error is returned only after re-reading.
#[tokio::test(start_paused = true)]
async fn twins_on_two_instances_get_the_same_answer() {
    let (store, t) = (Flaky::default(), Scripted::default());
    let (a, trans_no) = funded_on(&store, &t, config(), "50.00").await;
    let b = engine_with(store.clone(), t.clone(), config(), clock()).await;
    t.default_for(
        Endpoint::Outpay,
        Step::Data(outbound_view(&trans_no, "APP001-twin", "50.00", "PROCESSING")),
    );
    let twin = payout(&trans_no, Some("APP001-twin"), "50");
    let (first, cmd) = (a.clone(), twin.clone());
    // B checks the protocol exists (1st read), looks the order up (absent); A's twin commits
    // before B reads the protocol's funds (2nd read).
    let later = store.clone();
    store.hooks.before_next_protocol_read(move || {
        later.hooks.before_next_protocol_read(move || {
            Box::pin(async move {
                first.outpay(cmd).await.expect("the first twin");
            })
        });
        Box::pin(async {})
    });
    let answer = b.outpay(twin).await;
    let order = answer.expect("the same answer as its twin, not InsufficientFunds");
    assert_eq!(order.out_req_no(), "APP001-twin");
    assert_eq!(t.count(Endpoint::Outpay), 1, "sent once");
}

/// Pauses and partitions, defect 2: a second payment order for one `outReqNo` (the payment
/// system acted on a late first request and a resend) raised only `IdentityMismatch`. It is
/// `SuspectedDoublePayment` now, and the order stays listed as needing attention — settled or
/// not — until a person resolves it.
#[tokio::test(start_paused = true)]
async fn a_second_payment_for_one_order_is_flagged_until_a_person_looks() {
    let (store, t) = (Flaky::default(), Scripted::default());
    let (e, trans_no) = funded_on(&store, &t, config(), "50.00").await;
    let key = "APP001-double";
    let mut paid = outbound_view(&trans_no, key, "20.00", "SUCCESS");
    paid["payOrderNo"] = json!("P-1");
    t.push(Endpoint::Outpay, Step::Data(paid.clone()));
    let order = e.outpay(payout(&trans_no, Some(key), "20")).await.unwrap();
    assert_eq!(order.status, Status::Success);
    let mut second = paid;
    second["payOrderNo"] = json!("P-2");
    e.handle_callback(CallbackKind::Outbound, &callback_body(&second)).await;
    let order = e.order(key).await.unwrap();
    assert!(order.attempts.double_payment_suspected);
    assert!(order.listings().any(|l| l == protopay_engine::Listing::NeedsAttention));
    assert!(anomalies(&e).await.iter().any(|a| matches!(a,
        Anomaly::SuspectedDoublePayment { other_pay_order_no } if other_pay_order_no == "P-2")));
    // A person looks, and records it with the status it has; any other is refused.
    assert!(e.resolve(key, Decision::new(Status::Failure, "ops: no")).await.is_err());
    let order = e
        .resolve(key, Decision::new(Status::Success, "ops: P-2 reversed, ticket 7"))
        .await
        .unwrap();
    assert!(!order.attempts.double_payment_suspected);
    assert!(!order.listings().any(|l| l == protopay_engine::Listing::NeedsAttention));
}

/// A payout sent once, whose every query since says "no such order": it needs attention.
async fn flagged_payout(e: &Engine, t: &Scripted, trans_no: &str, key: &str) {
    let calls = (Endpoint::Outpay, Endpoint::Outquery);
    lost_then_flagged(e, t, calls, key, e.outpay(payout(trans_no, Some(key), "20"))).await;
}

/// `command` makes order `key`, whose send (the first endpoint of `calls`) may have been
/// delivered but got no answer, and whose every query (the second) says "no such order":
/// polled past the grace period, it needs a person.
async fn lost_then_flagged<T>(
    e: &Engine,
    t: &Scripted,
    (send, query): (Endpoint, Endpoint),
    key: &str,
    command: impl std::future::Future<Output = protopay_engine::Result<T>>,
) {
    t.push(
        send,
        Step::Fail(TransportError::MaybeDelivered {
            reason: "HTTP 500".into(),
        }),
    );
    t.default_for(query, Step::Code("EP20003", "no such order"));
    command.await.unwrap();
    tokio::time::advance(Duration::from_millis(e.config().poll.grace_ms + 60_000)).await;
    for _ in 0..10 {
        tokio::time::advance(Duration::from_secs(30)).await;
        e.poll_due().await.unwrap();
    }
    assert!(
        e.order(key).await.unwrap().attempts.needs_attention,
        "it needs attention"
    );
}

/// Whether anything recorded a person's decision on `key`.
async fn resolved(e: &Engine, key: &str) -> bool {
    e.order_details(key)
        .await
        .unwrap()
        .history
        .iter()
        .any(|ev| matches!(ev.kind, EventKind::OperatorResolved { .. }))
}

/// Operator console, defect 1: `resolve` answered `Ok` with the opposite status and recorded
/// nothing. Its read of the order was paused; a `SUCCESS` callback settled the order
/// meanwhile (here on a twin instance, between the read and the commit); `resolve(FAILURE)`
/// then re-read, applied its decision to the settled order (only `ConflictingStatus`), and
/// answered `Ok` — a person told "recorded as FAILURE" might pay again. Now the decision
/// lands on the version it was checked against, or is refused with nothing recorded.
#[tokio::test(start_paused = true)]
async fn a_decision_on_an_order_that_moved_is_refused_and_records_nothing() {
    let (store, t) = (Flaky::default(), Scripted::default());
    let mut c = config();
    c.poll.max_sends = 1;
    let (a, trans_no) = funded_on(&store, &t, c.clone(), "50.00").await;
    let b = engine_with(store.clone(), t.clone(), c, clock()).await;
    let key = "APP001-moved";
    flagged_payout(&a, &t, &trans_no, key).await;
    let paid = callback_body(&outbound_view(&trans_no, key, "20.00", "SUCCESS"));
    store.hooks.before_next_commit(move || {
        Box::pin(async move {
            b.handle_callback(CallbackKind::Outbound, &paid).await;
        })
    });
    let answer = a
        .resolve(key, Decision::new(Status::Failure, "ops: never received, ticket 9"))
        .await;
    assert!(matches!(answer, Err(Error::OrderMoved { .. })), "{answer:?}");
    let order = a.order(key).await.unwrap();
    assert_eq!(order.status, Status::Success, "the payment system's word stands");
    assert!(!resolved(&a, key).await, "nothing of the decision was recorded");
    let ledger = a.protocol(&trans_no).await.unwrap().ledger;
    assert_eq!(
        (ledger.paid_out.to_string(), ledger.available.to_string()),
        ("20.00".into(), "30.00".into())
    );

    // The same, named: a decision on a version the order has left is refused.
    let key = "APP001-seen";
    flagged_payout(&a, &t, &trans_no, key).await;
    let seen = a.order_details(key).await.unwrap().version;
    tokio::time::advance(Duration::from_secs(3_600)).await;
    a.poll_due().await.unwrap();
    let answer = a
        .resolve(
            key,
            Decision::new(Status::Failure, "ops: never received").at_version(seen),
        )
        .await;
    assert!(matches!(answer, Err(Error::OrderMoved { .. })), "{answer:?}");
    assert!(!resolved(&a, key).await);
    let now = a.order_details(key).await.unwrap().version;
    let order = a
        .resolve(
            key,
            Decision::new(Status::Failure, "ops: never received").at_version(now),
        )
        .await
        .unwrap();
    assert_eq!(order.status, Status::Failure, "decided on what it is now");
}

/// Operator console, defect 2: any open order could be resolved — never sent, or sent and
/// still being decided by the payment system — so a person could book money that never
/// moved. Only an order that needs attention may be (and a settled one suspected paid twice,
/// acknowledged with the status it has).
#[tokio::test(start_paused = true)]
async fn only_an_order_that_needs_attention_can_be_resolved() {
    let (store, t) = (Flaky::default(), Scripted::default());
    let (e, trans_no) = funded_on(&store, &t, config(), "50.00").await;
    t.push(
        Endpoint::Outpay,
        Step::Data(outbound_view(&trans_no, "APP001-busy", "10.00", "PROCESSING")),
    );
    e.outpay(payout(&trans_no, Some("APP001-busy"), "10")).await.unwrap();
    t.push(
        Endpoint::Prepay,
        Step::Fail(TransportError::NotDelivered {
            reason: "connection refused".into(),
        }),
    );
    let deposit = NewInbound {
        out_req_no: Some("APP001-unsent".into()),
        ..NewInbound::pos(&trans_no, Amount::parse("10").unwrap())
    };
    let _ = e.prepay(deposit).await;
    for key in ["APP001-busy", "APP001-unsent"] {
        let before = e.order(key).await.unwrap();
        assert!(!before.attempts.needs_attention);
        for status in [Status::Success, Status::Failure] {
            let answer = e.resolve(key, Decision::new(status, "ops: a guess")).await;
            assert!(matches!(answer, Err(Error::InvalidState { .. })), "{key}: {answer:?}");
        }
        assert_eq!(e.order(key).await.unwrap(), before, "{key}: nothing changed");
        assert!(!resolved(&e, key).await);
    }
}

/// The history's kinds of `key`, as names (`Anomaly` spelt out by its name).
async fn history(e: &Engine, key: &str) -> Vec<String> {
    e.order_details(key)
        .await
        .unwrap()
        .history
        .iter()
        .map(|ev| match &ev.kind {
            EventKind::Anomaly(a) => a.name().to_owned(),
            other => format!("{other:?}")
                .split([' ', '{'])
                .next()
                .unwrap_or_default()
                .to_owned(),
        })
        .collect()
}

/// Operator console, defect 3: when the payment system contradicted a person, the
/// resolution stood and only `ConflictingStatus` was raised — a deposit a person called
/// failed, then paid, left money outside the ledger. Now the payment system's word on money
/// reaches the ledger, and the order needs a person's look, settled or not, with both claims
/// in its history.
#[tokio::test(start_paused = true)]
async fn money_the_payment_system_reports_reaches_the_ledger_over_a_person_s_decision() {
    let (store, t) = (Flaky::default(), Scripted::default());
    let mut c = config();
    c.poll.max_sends = 1;
    let (e, trans_no) = funded_on(&store, &t, c, "50.00").await;
    let key = "APP001-in-late";
    let deposit = NewInbound {
        out_req_no: Some(key.into()),
        ..NewInbound::pos(&trans_no, Amount::parse("30").unwrap())
    };
    let calls = (Endpoint::Prepay, Endpoint::Inquery);
    lost_then_flagged(&e, &t, calls, key, e.prepay(deposit)).await;
    e.resolve(key, Decision::new(Status::Failure, "ops: payer says never paid"))
        .await
        .unwrap();
    // The payer paid after all: the late request landed.
    let paid = callback_body(&inbound_view(&trans_no, key, "30.00", "SUCCESS", "02"));
    assert!(
        e.handle_callback(CallbackKind::InboundArrival, &paid)
            .await
            .is_success()
    );
    let order = e.order(key).await.unwrap();
    assert_eq!(
        order.state_label(),
        "SUCCESS+arrived",
        "the payment system's word on money wins"
    );
    assert_eq!(
        e.protocol(&trans_no).await.unwrap().ledger.available.to_string(),
        "80.00"
    );
    assert!(
        order.listings().any(|l| l == protopay_engine::Listing::NeedsAttention),
        "settled, flagged"
    );
    let kinds = history(&e, key).await;
    for kind in ["OperatorResolved", "InboundPaid", "conflicting_status"] {
        assert!(kinds.iter().any(|k| k == kind), "both claims in the history: {kinds:?}");
    }
    assert!(e.check().await.unwrap().violations.is_empty());
    // A person looks: only the status it has acknowledges it.
    let seen = e.order_details(key).await.unwrap().version;
    assert!(
        e.resolve(key, Decision::new(Status::Failure, "ops: still no").at_version(seen))
            .await
            .is_err()
    );
    let looked = e
        .resolve(
            key,
            Decision::new(Status::Success, "ops: bank shows it, ticket 12").at_version(seen),
        )
        .await
        .unwrap();
    assert!(!looked.listings().any(|l| l == protopay_engine::Listing::NeedsAttention));
}

/// The same for a payout a person released as failed: the payment system paid it, so the
/// ledger shows it paid out, and it pages as a suspected double payment (whoever was told
/// FAILURE may pay again). If the released funds were spent meanwhile, the ledger cannot pay
/// out money it no longer holds: the FAILURE stands, flagged and paged, nothing else moves.
#[tokio::test(start_paused = true)]
async fn a_payout_paid_after_a_person_released_it_pages_as_a_double_payment() {
    let (store, t) = (Flaky::default(), Scripted::default());
    let (e, trans_no) = funded_on(&store, &t, config(), "50.00").await;
    flagged_payout(&e, &t, &trans_no, "APP001-late").await;
    e.resolve("APP001-late", Decision::new(Status::Failure, "ops: never received"))
        .await
        .unwrap();
    assert_eq!(
        e.protocol(&trans_no).await.unwrap().ledger.available.to_string(),
        "50.00",
        "released"
    );
    let paid = callback_body(&outbound_view(&trans_no, "APP001-late", "20.00", "SUCCESS"));
    assert!(e.handle_callback(CallbackKind::Outbound, &paid).await.is_success());
    let order = e.order("APP001-late").await.unwrap();
    assert_eq!(order.status, Status::Success);
    assert!(order.attempts.double_payment_suspected);
    let ledger = e.protocol(&trans_no).await.unwrap().ledger;
    assert_eq!(
        (ledger.available.to_string(), ledger.paid_out.to_string()),
        ("30.00".into(), "20.00".into())
    );
    assert!(
        anomalies(&e)
            .await
            .iter()
            .any(|a| matches!(a, Anomaly::SuspectedDoublePayment { .. }))
    );
    assert!(e.check().await.unwrap().violations.is_empty());

    // Released, then spent: 30.00 left, all of it paid out again before the news comes.
    flagged_payout(&e, &t, &trans_no, "APP001-spent").await;
    e.resolve("APP001-spent", Decision::new(Status::Failure, "ops: never received"))
        .await
        .unwrap();
    accepted_payout(&e, &t, &trans_no, "APP001-again", "30").await;
    let before = e.protocol(&trans_no).await.unwrap().ledger;
    assert_eq!(before.available.to_string(), "0.00");
    let paid = callback_body(&outbound_view(&trans_no, "APP001-spent", "20.00", "SUCCESS"));
    assert!(e.handle_callback(CallbackKind::Outbound, &paid).await.is_success());
    let order = e.order("APP001-spent").await.unwrap();
    assert_eq!(order.status, Status::Failure, "no money to show it paid out from");
    assert!(order.attempts.double_payment_suspected, "paged");
    assert_eq!(e.protocol(&trans_no).await.unwrap().ledger, before, "nothing moved");
    let kinds = history(&e, "APP001-spent").await;
    assert!(!kinds.iter().any(|k| k == "OutboundSucceeded"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "suspected_double_payment"), "{kinds:?}");
    assert!(e.check().await.unwrap().violations.is_empty());
}

/// Pauses and partitions, defect 6: `shutdown` waited for the poller's whole claimed batch,
/// and polls kept starting after it began. In-flight polls finish; none starts.
#[tokio::test(start_paused = true)]
async fn shutdown_starts_no_new_polls() {
    let (store, t) = (Flaky::default(), Scripted::default());
    let mut c = config();
    c.poll.concurrency = 2;
    let (e, trans_no) = funded_on(&store, &t, c, "50.00").await;
    t.default_for(Endpoint::Outpay, maybe());
    for n in 0..20 {
        e.outpay(payout(&trans_no, Some(&format!("APP001-s{n}")), "1"))
            .await
            .unwrap();
    }
    // Every query takes 2 s; the poller takes them 2 at a time.
    t.default_for(Endpoint::Outquery, Step::Code("EP20003", "no such order"));
    t.delay(Duration::from_secs(2));
    tokio::time::advance(Duration::from_secs(10)).await;
    let poller = e.spawn_poller();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let asked = t.count(Endpoint::Outquery);
    assert!((2..=4).contains(&asked), "{asked} queries before shutdown");
    let started = tokio::time::Instant::now();
    e.shutdown().await.unwrap();
    poller.shutdown().await;
    assert!(
        t.count(Endpoint::Outquery) <= asked + 2,
        "only in-flight polls finished: {} queries",
        t.count(Endpoint::Outquery)
    );
    assert!(started.elapsed() <= Duration::from_secs(2), "{:?}", started.elapsed());
}
