//! The wire formats, pinned by snapshots: every request envelope we send (fixed timestamp and
//! key) and a decoded example of every reply and callback. A change to any of them shows up
//! as a snapshot diff to review.

use proptest::prelude::*;
use protopay_engine::wire::*;
use protopay_engine::{Amount, Md5Key, Sensitive};

const TS: &str = "20261126120000123";

fn key() -> Md5Key {
    Md5Key::new("k3y")
}

fn amount(s: &str) -> Amount {
    Amount::parse(s).unwrap()
}

fn body<C: Call>(call: &C) -> String {
    let env = Envelope::for_call("APP001", call, TS.into(), &key()).unwrap();
    // What we send must verify as the payment system would verify it.
    Envelope::open(env.to_json().as_bytes(), "APP001", &key()).unwrap();
    env.to_json()
}

#[test]
fn request_envelopes() {
    insta::assert_snapshot!(
        "create",
        body(&CreateProtocol {
            channel_type: ChannelType::Lft,
            trans_desc: "二手房交易 deposit".into(),
            business_id: "B1001".into(),
            cashier_type: Some(CashierType::Pos),
        })
    );
    insta::assert_snapshot!(
        "find",
        body(&FindProtocol {
            trans_no: "T202611260001".into()
        })
    );
    insta::assert_snapshot!(
        "prepay_pos",
        body(&Prepay {
            trans_no: "T202611260001".into(),
            out_req_no: "APP001-in-1".into(),
            amount: amount("100"),
            out_success_notify_url: "https://host.example/protopay/notify/inbound-pay".into(),
            out_arrived_notify_url: Some("https://host.example/protopay/notify/inbound-arrival".into()),
            prod_catalog: Some(ProdCatalog::DebitOnly),
            contract_num: Some("C-7".into()),
            qp_user_name: None,
            qp_cert_number: None,
            return_url: None,
        })
    );
    insta::assert_snapshot!(
        "prepay_qp",
        body(&Prepay {
            trans_no: "T202611260001".into(),
            out_req_no: "APP001-in-2".into(),
            amount: amount("0.01"),
            out_success_notify_url: "https://host.example/protopay/notify/inbound-pay".into(),
            out_arrived_notify_url: None,
            prod_catalog: None,
            contract_num: None,
            qp_user_name: Some(Sensitive::new("张三")),
            qp_cert_number: Some(Sensitive::new("110101199001011234")),
            return_url: Some("https://host.example/paid".into()),
        })
    );
    insta::assert_snapshot!(
        "posclose",
        body(&PosClose {
            out_req_no: "APP001-in-1".into()
        })
    );
    insta::assert_snapshot!(
        "inquery",
        body(&Inquery {
            out_req_no: "APP001-in-1".into()
        })
    );
    insta::assert_snapshot!(
        "outpay",
        body(&Outpay {
            trans_no: "T202611260001".into(),
            out_req_no: "APP001-out-1".into(),
            amount: amount("60.5"),
            channel_type: ChannelType::Lft,
            out_notify_url: "https://host.example/protopay/notify/outbound".into(),
            bank_acc_name: Sensitive::new("李四"),
            bank_acc_num: Sensitive::new("6222020200112233445"),
            bank_name: "中国工商银行北京海淀支行".into(),
            bank_cnaps: "102100000030".into(),
            out_type: OutType::Out,
            remark: Some("seller payout".into()),
        })
    );
    insta::assert_snapshot!(
        "outquery",
        body(&Outquery {
            out_req_no: "APP001-out-1".into()
        })
    );
    insta::assert_snapshot!(
        "querybankcnaps",
        body(&QueryBankCnaps {
            bank_name_key_word: "海淀".into()
        })
    );
}

/// Decode a reply envelope signed by the payment system and its `data` into `T`.
fn reply<T: serde::de::DeserializeOwned>(data: &str) -> T {
    let env = Envelope::reply("APP001", CODE_OK, MSG_OK, data.into(), TS.into(), &key());
    let opened = Envelope::open(env.to_json().as_bytes(), "APP001", &key()).unwrap();
    Envelope::decode_data(opened.reply_data().unwrap()).unwrap()
}

const PROTOCOL_VIEW: &str = r#"{"transNo":"T202611260001","transDesc":"二手房交易 deposit","appId":"APP001","businessId":"B1001","businessDesc":"某某房产","channelType":"LFT","amount":"40.00","onpassageAmount":"100.00","outAmount":"60.50","createTime":"2026-11-26 12:00:00","cashierType":"POS"}"#;

const INBOUND_VIEW: &str = r#"{"transNo":"T202611260001","appId":"APP001","channelType":"LFT","amount":"100.00","outReqNo":"APP001-in-1","posCode":"834201","payOrderNo":"P900001","payStatus":"SUCCESS","arrivedStatus":"02","payFinishTime":"2026-11-26 12:05:00","payArriveTime":"2026-11-27 09:00:00","createTime":"2026-11-26 12:00:01","cardNum":"6222020200112233445","issuingBank":"ICBC","issuingBankzh":"中国工商银行","channelReturnCode":"00","channelReturnMsg":"ok","contractNum":"C-7","cashierUrl":"","qpUserName":"","qpCertNumber":"","cashierType":"POS"}"#;

const OUTBOUND_VIEW: &str = r#"{"transNo":"T202611260001","appId":"APP001","channelSubaccCode":"SA01","channelSubaccCustid":"CU01","amount":"60.50","outReqNo":"APP001-out-1","payOrderNo":"P900002","channelType":"LFT","bankAccName":"李四","bankAccNum":"6222020200112233445","bankName":"中国工商银行北京海淀支行","bankCnaps":"102100000030","outType":"OUT","remark":"seller payout","payStatus":"PROCESSING","payFinishTime":"","createTime":"2026-11-26 13:00:00","channelReturnCode":"","channelReturnMsg":""}"#;

#[test]
fn decoded_replies() {
    insta::assert_debug_snapshot!("reply_protocol_view", reply::<RemoteProtocol>(PROTOCOL_VIEW));
    insta::assert_debug_snapshot!(
        "reply_prepay",
        reply::<InboundView>(
            r#"{"transNo":"T202611260001","appId":"APP001","channelType":"LFT","amount":"100.00","outReqNo":"APP001-in-1","posCode":"834201","payOrderNo":"P900001","payStatus":"UNPAID","createTime":"2026-11-26 12:00:01","cashierType":"POS"}"#
        )
    );
    insta::assert_debug_snapshot!("reply_inquery", reply::<InboundView>(INBOUND_VIEW));
    insta::assert_debug_snapshot!("reply_posclose", reply::<PosCloseResult>(r#"{"result":"true"}"#));
    insta::assert_debug_snapshot!("reply_outpay", reply::<OutboundView>(OUTBOUND_VIEW));
    insta::assert_debug_snapshot!(
        "reply_querybankcnaps",
        reply::<Vec<CnapsEntry>>(r#"[{"bankName":"中国工商银行北京海淀支行","bankCnaps":"102100000030"}]"#)
    );
}

#[test]
fn decoded_callbacks() {
    // The three callbacks carry the inbound and outbound views.
    let pay = INBOUND_VIEW.replace(r#""arrivedStatus":"02""#, r#""arrivedStatus":"01""#);
    insta::assert_debug_snapshot!("callback_inbound_pay", reply::<InboundView>(&pay));
    insta::assert_debug_snapshot!("callback_inbound_arrival", reply::<InboundView>(INBOUND_VIEW));
    let settled = OUTBOUND_VIEW.replace("PROCESSING", "SUCCESS");
    insta::assert_debug_snapshot!("callback_outbound", reply::<OutboundView>(&settled));
}

#[test]
fn bad_amounts_in_replies_are_protocol_errors() {
    for bad in [r#""1e2""#, r#""-1.00""#, r#""1.005""#, "100"] {
        let data = format!(r#"{{"transNo":"T1","amount":{bad}}}"#);
        let r: Result<RemoteProtocol, _> = Envelope::decode_data(&data);
        assert!(matches!(r, Err(protopay_engine::Error::MalformedData { .. })), "{bad}");
    }
}

#[test]
fn errors_never_quote_personal_data() {
    let data = r#"{"cardNum":6222020200112233445}"#;
    let err = Envelope::decode_data::<InboundView>(data).unwrap_err();
    assert!(!err.to_string().contains("6222"), "{err}");
    let view: InboundView =
        Envelope::decode_data(&INBOUND_VIEW.replace("6222020200112233445", "6222020200112299999")).unwrap();
    assert!(!format!("{view:?}").contains("62220202001122"));
}

proptest! {
    #[test]
    fn decode_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(env) = Envelope::decode(&body) {
            let _ = env.verify(&key());
            let _ = Envelope::decode_data::<InboundView>(&env.data);
            let _ = Envelope::decode_data::<OutboundView>(&env.data);
            let _ = env.reply_data();
        }
    }

    #[test]
    fn decode_never_panics_on_near_miss_envelopes(
        data in "[{}\\[\\]\":,a-zA-Z0-9 ._-]{0,80}",
        code in proptest::option::of("[0-9A-Z]{0,8}"),
    ) {
        let body = serde_json::json!({"appId": "APP001", "data": data, "sign": "x", "timestamp": TS, "code": code});
        let env = Envelope::decode(body.to_string().as_bytes()).unwrap();
        prop_assert!(env.verify(&key()).is_err());
        let _ = Envelope::decode_data::<InboundView>(&env.data);
        let _ = Envelope::decode_data::<RemoteProtocol>(&env.data);
        let _ = env.reply_data();
    }
}
