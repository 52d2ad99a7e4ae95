//! The console over real loopback HTTP, on an engine with the simulator: who may do what,
//! that every `POST` needs its session's CSRF token, that no page or CSV row shows personal
//! data to a role that may not see it, and that every change made here has its audit record.
//! (The same pages in a real browser, against `protopay serve`: `cli/tests/console.rs`.)
//!
//! Time is tokio's paused clock: orders come to need attention by polls run here, hours of
//! them in milliseconds.

use protopay_api::{ApiAuth, Role};
use protopay_console::{ConsoleOptions, POST_ROUTES, console_router};
use protopay_engine::storage::MemoryStorage;
use protopay_engine::wire::{CashierType, Endpoint, OutType};
use protopay_engine::{Amount, Clock, Config, Engine, Md5Key, NewInbound, NewOutbound, NewProtocol, Payee, Sensitive};
use protopay_sim::{Aimed, EngineSink, Sim, SimConfig, SimTransport};
use std::time::Duration;

const APP: &str = "APP001";
const KEY: &str = "console-test-key";
/// Li Lei may operate; Wang Fang may only read. Their tokens' SHA-256 is what the server holds.
const LI: &str = "li-lei-token-0123456789abcdef";
const LI_SHA256: &str = "1f3e87f5c80b3415316ef5b1dea47480f1f228f705fa969a790f88eb06ea9f47";
const WANG: &str = "wang-fang-token-0123456789abcd";
const WANG_SHA256: &str = "31f1e3abaff97f57915956e7c95f4cb1afda27b1cce42161da869603b2ccefda";
/// The shared API token: it names nobody, so it does not sign in here.
const SHARED: &str = "shared-operate-token-0123456789";

struct World {
    sim: Sim,
    engine: Engine,
    url: String,
    http: reqwest::Client,
}

async fn world() -> World {
    world_with(ConsoleOptions::default()).await
}

async fn world_with(options: ConsoleOptions) -> World {
    let sim = Sim::new(SimConfig::new(APP, Md5Key::new(KEY)), Clock::system());
    let mut config = Config::new(APP, Md5Key::new(KEY), "sim://", "http://127.0.0.1:9/notify");
    config.poll.attention_after_quiet_polls = 2;
    config.poll.jitter_percent = 0;
    let engine = Engine::builder(config)
        .storage(MemoryStorage::new())
        .transport(SimTransport(sim.clone()))
        .build()
        .await
        .unwrap();
    let auth = ApiAuth::new(SHARED)
        .unwrap()
        .with_operator("li.lei", Role::Operate, LI_SHA256)
        .unwrap()
        .with_operator("wang.fang", Role::Read, WANG_SHA256)
        .unwrap();
    let app = console_router(engine.clone(), auth, options);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    World { sim, engine, url, http }
}

/// A signed-in person: their session cookie and their forms' CSRF token.
struct Person {
    cookie: String,
    csrf: String,
}

impl World {
    /// A protocol holding `amount`, paid in and arrived.
    async fn funded(&self, amount: &str) -> String {
        let protocol = self
            .engine
            .create_protocol(NewProtocol {
                trans_desc: "escrow".into(),
                business_id: "B1".into(),
                cashier_type: CashierType::Pos,
                idempotency_key: None,
            })
            .await
            .unwrap();
        let mut deposit = NewInbound::pos(&protocol.trans_no, Amount::parse(amount).unwrap());
        deposit.out_req_no = Some(format!("{APP}-in-{}", protocol.trans_no));
        let order = self.engine.prepay(deposit).await.unwrap();
        self.sim.pay(order.out_req_no(), true).unwrap();
        self.sim.arrive(order.out_req_no()).unwrap();
        self.sim.deliver_due(&EngineSink(self.engine.clone())).await;
        let held = self.engine.protocol(&protocol.trans_no).await.unwrap().ledger.available;
        assert_eq!(held.to_string(), Amount::parse(amount).unwrap().to_string());
        protocol.trans_no
    }

    /// A payout whose reply was lost and that the payment system keeps `PROCESSING`: after
    /// polls without news, it needs a person.
    async fn flagged_payout(&self, trans_no: &str, key: &str, name: &str, account: &str) {
        let payee = Payee {
            name: Sensitive::new(name),
            account: Sensitive::new(account),
            bank_name: "ICBC Haidian".into(),
            bank_cnaps: "102100000072".into(),
        };
        let payout = NewOutbound {
            out_req_no: Some(key.to_owned()),
            out_type: OutType::Out,
            ..NewOutbound::payout(trans_no, Amount::parse("1.00").unwrap(), payee)
        };
        self.sim.fail_next(Endpoint::Outpay, Aimed::TimeoutAfterCommit);
        self.engine.outpay(payout).await.unwrap();
        for _ in 0..100 {
            if self.engine.order(key).await.unwrap().attempts.needs_attention {
                return;
            }
            tokio::time::advance(Duration::from_secs(60)).await;
            self.engine.poll_due().await.unwrap();
        }
        panic!("{key} never needed attention");
    }

    async fn sign_in(&self, token: &str) -> Person {
        let r = self
            .http
            .post(format!("{}/console/sign-in", self.url))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "signed in");
        let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
            assert!(set.contains(attribute), "{set}");
        }
        let cookie = set.split(';').next().unwrap().to_owned();
        let overview = self.get(&cookie, "/console").await.1;
        let csrf = overview
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_owned();
        Person { cookie, csrf }
    }

    async fn get(&self, cookie: &str, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn post(&self, cookie: &str, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .header("cookie", cookie)
            .form(form)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn audit_len(&self) -> usize {
        self.engine.audit(None, 500).await.unwrap().len()
    }
}

fn route(path: &str) -> String {
    path.replace("{outReqNo}", "APP001-stuck")
        .replace("{transNo}", "T-none")
}

#[tokio::test(start_paused = true)]
async fn every_post_without_its_sessions_csrf_token_is_refused_and_changes_nothing() {
    let w = world().await;
    let t = w.funded("10.00").await;
    w.flagged_payout(&t, "APP001-stuck", "Li Si", "6222020200112233445")
        .await;
    let li = w.sign_in(LI).await;
    let other = w.sign_in(LI).await;
    let before = w.engine.order_details("APP001-stuck").await.unwrap();
    let decision = |csrf: &'static str| {
        let v = before.version.to_string();
        vec![
            ("status", "FAILURE".to_owned()),
            ("note", "checked".into()),
            ("confirm", "APP001-stuck".into()),
            ("version", v),
            ("csrf", csrf.into()),
        ]
    };
    for path in POST_ROUTES.iter().filter(|p| !p.ends_with("sign-in")) {
        let path = route(path);
        for csrf in ["", "0000", other.csrf.as_str()] {
            let form: Vec<(&str, String)> = decision("")
                .into_iter()
                .map(|(k, v)| if k == "csrf" { (k, csrf.to_owned()) } else { (k, v) })
                .collect();
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, body) = w.post(&li.cookie, &path, &form).await;
            assert_eq!(status, 403, "{path} with csrf {csrf:?}: {body}");
            assert!(body.contains("reload the page"), "{body}");
        }
    }
    let form: Vec<(&str, String)> = decision("")
        .into_iter()
        .map(|(k, v)| if k == "csrf" { (k, li.csrf.clone()) } else { (k, v) })
        .collect();
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        w.engine.order_details("APP001-stuck").await.unwrap(),
        before,
        "nothing changed"
    );
    assert_eq!(w.audit_len().await, 0);
    // A sign-in posted from another site is refused too.
    let foreign = w
        .http
        .post(format!("{}/console/sign-in", w.url))
        .header("origin", "https://evil.example")
        .form(&[("token", LI)])
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    assert!(foreign.headers().get("set-cookie").is_none());
    // With its token, the same form is recorded.
    let (status, body) = w.post(&li.cookie, "/console/orders/APP001-stuck/resolve", &form).await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(w.audit_len().await, 1);
}

#[tokio::test(start_paused = true)]
async fn a_read_operator_sees_masked_data_and_no_action_and_the_server_refuses_theirs() {
    let w = world().await;
    let t = w.funded("10.00").await;
    w.flagged_payout(&t, "APP001-stuck", "Li Si", "6222020200112233445")
        .await;
    let wang = w.sign_in(WANG).await;
    let (status, page) = w.get(&wang.cookie, "/console/orders/APP001-stuck").await;
    assert_eq!(status, 200);
    assert!(
        !page.contains("Record the decision") && !page.contains("Reconcile now"),
        "{page}"
    );
    assert!(
        page.contains("***3445") && !page.contains("6222020200112233445"),
        "masked"
    );
    let (_, protocol) = w.get(&wang.cookie, &format!("/console/protocols/{t}")).await;
    assert!(!protocol.contains("Reconcile now"));
    let version = w
        .engine
        .order_details("APP001-stuck")
        .await
        .unwrap()
        .version
        .to_string();
    let (status, body) = w
        .post(
            &wang.cookie,
            "/console/orders/APP001-stuck/resolve",
            &[
                ("status", "FAILURE"),
                ("note", "n"),
                ("confirm", "APP001-stuck"),
                ("version", &version),
                ("csrf", &wang.csrf),
            ],
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("may only read"));
    let (status, _) = w
        .post(
            &wang.cookie,
            &format!("/console/protocols/{t}/reconcile"),
            &[("note", "n"), ("csrf", &wang.csrf)],
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(w.audit_len().await, 0);
    assert!(
        w.engine.order("APP001-stuck").await.unwrap().attempts.needs_attention,
        "nothing decided"
    );
    // Signing out ends the session on the server: the cookie opens nothing after.
    let (status, _) = w.post(&wang.cookie, "/console/sign-out", &[("csrf", &wang.csrf)]).await;
    assert_eq!(status, 303);
    let r = w
        .http
        .get(format!("{}/console", w.url))
        .header("cookie", &wang.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.headers()["location"].to_str().unwrap()),
        (303, "/console/sign-in")
    );
    // The shared API token names nobody: it does not sign in.
    let shared = w
        .http
        .post(format!("{}/console/sign-in", w.url))
        .form(&[("token", SHARED)])
        .send()
        .await
        .unwrap();
    assert_eq!(shared.status(), 401);
}

#[tokio::test(start_paused = true)]
async fn every_change_made_here_has_its_audit_record_naming_who_and_why() {
    let w = world().await;
    let t = w.funded("10.00").await;
    for key in ["APP001-a", "APP001-b", "APP001-c"] {
        w.flagged_payout(&t, key, "Li Si", "6222020200112233445").await;
    }
    let li = w.sign_in(LI).await;
    let changes = |a: &protopay_engine::Event| a.seq;
    // One order, by its page's form.
    let version = w.engine.order_details("APP001-a").await.unwrap().version.to_string();
    let wrong = [
        ("status", "FAILURE"),
        ("note", "bank: returned"),
        ("confirm", "APP001-b"),
        ("version", &version),
        ("csrf", &li.csrf),
    ];
    assert_eq!(
        w.post(&li.cookie, "/console/orders/APP001-a/resolve", &wrong).await.0,
        400,
        "confirmed with the wrong number"
    );
    let stale = [
        ("status", "FAILURE"),
        ("note", "bank: returned"),
        ("confirm", "APP001-a"),
        ("version", "1"),
        ("csrf", &li.csrf),
    ];
    let (status, body) = w.post(&li.cookie, "/console/orders/APP001-a/resolve", &stale).await;
    assert_eq!(status, 409, "decided on an older view: {body}");
    assert_eq!(w.audit_len().await, 0, "refused decisions record nothing");
    let form = [
        ("status", "FAILURE"),
        ("note", "bank: returned"),
        ("confirm", "APP001-a"),
        ("version", &version),
        ("csrf", &li.csrf),
    ];
    assert_eq!(
        w.post(&li.cookie, "/console/orders/APP001-a/resolve", &form).await.0,
        303
    );
    // Two at once: reviewed (nothing changes), then decided.
    let review = [
        ("step", "review"),
        ("o", "APP001-b"),
        ("o", "APP001-c"),
        ("csrf", &li.csrf),
    ];
    let (status, page) = w.post(&li.cookie, "/console/resolve", &review).await;
    assert!(status == 200 && page.contains("Decide 2 orders"), "{page}");
    assert_eq!(w.audit_len().await, 1);
    let versions: Vec<String> = ["APP001-b", "APP001-c"]
        .iter()
        .map(|k| {
            page.split(&format!("value=\"{k}:"))
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    let (b, c) = (format!("APP001-b:{}", versions[0]), format!("APP001-c:{}", versions[1]));
    let decide = [
        ("step", "decide"),
        ("o", &b),
        ("o", &c),
        ("status", "FAILURE"),
        ("note", "bank: both returned"),
        ("confirm", "2"),
        ("csrf", &li.csrf),
    ];
    let (status, page) = w.post(&li.cookie, "/console/resolve", &decide).await;
    assert!(
        status == 200 && page.matches("recorded: FAILURE").count() == 2,
        "{page}"
    );
    // A reconciliation.
    let (status, page) = w
        .post(
            &li.cookie,
            &format!("/console/protocols/{t}/reconcile"),
            &[("note", "after the decisions"), ("csrf", &li.csrf)],
        )
        .await;
    assert!(status == 200 && page.contains("Reconciled"), "{page}");
    let trail = w.engine.audit(None, 100).await.unwrap();
    assert_eq!(trail.len(), 4, "{trail:?}");
    let mut seqs: Vec<u64> = trail.iter().map(changes).collect();
    seqs.dedup();
    assert_eq!(seqs.len(), 4);
    for record in &trail {
        let text = record.kind.to_string();
        assert!(text.contains("li.lei"), "{text}");
    }
    for key in ["APP001-a", "APP001-b", "APP001-c"] {
        let history = w.engine.order_details(key).await.unwrap().history;
        assert!(
            history.iter().any(|e| e.kind.is_audit()),
            "{key}'s decision is in its history"
        );
    }
    let (_, audit) = w.get(&li.cookie, "/console/audit").await;
    for why in ["bank: returned", "bank: both returned", "after the decisions"] {
        assert!(audit.contains(why), "{why}: {audit}");
    }
}

/// The webhooks page: where the webhook's consumer stands, and a resend from a `seq` that is
/// an audit record (the pusher acting on it: `tests/api.rs`).
#[tokio::test(start_paused = true)]
async fn a_resend_asked_on_the_webhooks_page_is_recorded_with_who_and_why() {
    use protopay_api::webhook::Webhook;
    let secret = Sensitive::new("webhook-secret-0123456789");
    let webhook = Webhook::new("https://hooks.example/in?token=secret", secret, "hook").unwrap();
    let w = world_with(ConsoleOptions {
        webhook: Some(webhook),
        ..ConsoleOptions::default()
    })
    .await;
    w.funded("10.00").await;
    let li = w.sign_in(LI).await;
    let (status, page) = w.get(&li.cookie, "/console/webhooks").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("https://hooks.example") && !page.contains("token=secret"),
        "{page}"
    );
    let too_far = [("from", "999"), ("note", "restored"), ("csrf", &li.csrf)];
    assert_eq!(w.post(&li.cookie, "/console/webhooks/resend", &too_far).await.0, 400);
    let form = [
        ("from", "2"),
        ("note", "receiver restored from backup"),
        ("csrf", &li.csrf),
    ];
    assert_eq!(w.post(&li.cookie, "/console/webhooks/resend", &form).await.0, 303);
    let trail = w.engine.audit(None, 10).await.unwrap();
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0].kind.to_string(), "li.lei asked for hook's events from 2 again");
    let wang = w.sign_in(WANG).await;
    let (_, page) = w.get(&wang.cookie, "/console/webhooks").await;
    assert!(!page.contains("Send again"), "no action for a reader");
}

mod masking {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

        /// Whatever the payee's name and account, a `read` operator finds neither on any
        /// page, in the CSV or in the evidence bundle; an `operate` one not in the list.
        #[test]
        fn no_page_or_csv_row_shows_personal_data_to_a_role_that_may_not_see_it(
            account in "[0-9]{12,19}",
            // Chinese characters first: no page says them of its own (a Latin name such as
            // "ca" is found in "callback" whether it is shown or not).
            name in "[\u{4e00}-\u{9fa5}]{2,4}( ?[A-Za-z]{2,8})?",
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
            runtime.block_on(async {
                let w = world().await;
                let t = w.funded("10.00").await;
                w.flagged_payout(&t, "APP001-p", &name, &account).await;
                let wang = w.sign_in(WANG).await;
                let li = w.sign_in(LI).await;
                let pages = ["/console", "/console/orders", "/console/orders?listing=NEEDS_ATTENTION", "/console/orders.csv",
                    "/console/orders/APP001-p", "/console/orders/APP001-p/evidence.json", "/console/audit"];
                let protocol_page = format!("/console/protocols/{t}");
                for path in pages.iter().copied().chain([protocol_page.as_str()]) {
                    let (status, body) = w.get(&wang.cookie, path).await;
                    prop_assert_eq!(status, 200, "{}", path);
                    prop_assert!(!body.contains(&account), "{} shows the account to a reader", path);
                    prop_assert!(!body.contains(&name), "{} shows the name to a reader", path);
                }
                for path in ["/console/orders", "/console/orders?listing=NEEDS_ATTENTION"] {
                    let (_, body) = w.get(&li.cookie, path).await;
                    prop_assert!(!body.contains(&account) && !body.contains(&name), "{} is masked for everyone", path);
                }
                let (_, csv) = w.get(&li.cookie, "/console/orders.csv").await;
                prop_assert!(csv.contains(&account), "an operator's export is whole");
                Ok(())
            })?;
        }
    }
}
