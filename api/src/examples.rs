//! The document's examples: one request and one answer per command and read, as `protopay
//! serve` gave them in a run against the simulator (a protocol opened with a key, a deposit
//! paid and arrived, a payout sent), so that what a reader copies is what the server takes
//! and what a client will parse.
//!
//! Kept true three ways: every request example is read by the API's own request types and
//! turned into the engine's command (the tests below); every example is checked against its
//! schema by the linters in CI (Spectral's `oas3-valid-media-example`); and schemathesis sends
//! the request examples to a running server (its examples phase).

use serde_json::{Value, json};
use utoipa::openapi::{OpenApi, PathItem, path::Operation};

const TRANS_NO: &str = "T20261129000001";

/// A request example for a route's body, and the answer (by status) it got.
struct Example {
    method: &'static str,
    path: &'static str,
    request: Option<Value>,
    answers: Vec<(&'static str, Value)>,
}

fn create_protocol() -> Value {
    json!({"transDesc": "Flat 12B, Chaoyang: deposit", "businessId": "B-1", "cashierType": "POS",
        "idempotencyKey": "flat-12b-deposit"})
}

fn create_inbound() -> Value {
    json!({"transNo": TRANS_NO, "outReqNo": "APP001-dep-0001", "amount": "5000.00", "prodCatalog": "01"})
}

fn create_outbound() -> Value {
    json!({"transNo": TRANS_NO, "outReqNo": "APP001-pay-0001", "amount": "1200.00", "outType": "OUT",
        "payeeName": "Li Lei", "payeeAccount": "6222020200112233445", "bankName": "ICBC Beijing Haidian",
        "bankCnaps": "102100000030", "remark": "rent, December"})
}

fn resolve() -> Value {
    json!({"status": "FAILURE", "note": "Wang Fang: the payment system's support confirmed (ticket 8812) it never received this payout",
        "version": 4})
}

fn ack() -> Value {
    json!({"consumer": "billing", "seq": 10})
}

fn ledger(available: &str, reserved: &str) -> Value {
    json!({"inTransit": "0.00", "available": available, "reserved": reserved, "paidOut": "0.00",
        "refunded": "0.00", "opening": "0.00"})
}

fn protocol(available: &str, reserved: &str) -> Value {
    json!({"transNo": TRANS_NO, "businessId": "B-1", "transDesc": "Flat 12B, Chaoyang: deposit",
        "channelType": "LFT", "cashierType": "POS", "ledger": ledger(available, reserved), "remote": null})
}

fn deposit() -> Value {
    json!({"outReqNo": "APP001-dep-0001", "transNo": TRANS_NO, "direction": "inbound", "amount": "5000.00",
        "status": "UNPAID", "needsAttention": false, "refusal": null, "sends": 1,
        "lastSentAt": "2026-11-29T09:51:15.558Z", "quietPolls": 0, "posCode": "822465", "cashierUrl": null,
        "payOrderNo": "P0000000002", "arrived": false, "closed": false, "outType": null, "payeeName": null,
        "payeeAccount": null, "bankName": null, "bankCnaps": null})
}

fn payout() -> Value {
    json!({"outReqNo": "APP001-pay-0001", "transNo": TRANS_NO, "direction": "outbound", "amount": "1200.00",
        "status": "PROCESSING", "needsAttention": false, "refusal": null, "sends": 1,
        "lastSentAt": "2026-11-29T09:51:18.586Z", "quietPolls": 0, "posCode": null, "cashierUrl": null,
        "payOrderNo": "Q0000000005", "arrived": null, "closed": null, "outType": "OUT", "payeeName": "Li Lei",
        "payeeAccount": "6222020200112233445", "bankName": "ICBC Beijing Haidian", "bankCnaps": "102100000030"})
}

/// The payout's history: reserved, sent, accepted.
fn payout_events() -> Value {
    let event = |seq: u64, at: &str, source: &str, kind: &str, text: &str, data: Value| {
        json!({"seq": seq, "at": at, "transNo": TRANS_NO, "outReqNo": "APP001-pay-0001", "source": source,
            "kind": kind, "text": text, "data": data})
    };
    json!([
        event(
            8,
            "2026-11-29T09:51:18.582Z",
            "engine",
            "OutboundReserved",
            "funds reserved for a payment out",
            json!({"kind": "OutboundReserved"})
        ),
        event(
            9,
            "2026-11-29T09:51:18.586Z",
            "engine",
            "Submitted",
            "sent to the payment system",
            json!({"kind": "Submitted"})
        ),
        event(
            10,
            "2026-11-29T09:51:18.594Z",
            "reply",
            "Pending",
            "accepted, now PROCESSING",
            json!({"kind": "Pending", "status": "PROCESSING"})
        ),
    ])
}

fn error(code: &str, message: &str) -> Value {
    json!({"code": code, "message": message})
}

fn examples() -> Vec<Example> {
    let post = |path, request: Value, answers| Example {
        method: "post",
        path,
        request: Some(request),
        answers,
    };
    let get = |path, answers| Example {
        method: "get",
        path,
        request: None,
        answers,
    };
    vec![
        post(
            "/v1/protocols",
            create_protocol(),
            vec![("200", protocol("0.00", "0.00"))],
        ),
        post("/v1/inbound", create_inbound(), vec![("200", deposit())]),
        post(
            "/v1/outbound",
            create_outbound(),
            vec![
                ("200", payout()),
                (
                    "422",
                    error(
                        "insufficient_funds",
                        "insufficient funds: 3800.00 available, less than the amount asked for",
                    ),
                ),
            ],
        ),
        post("/v1/orders/{outReqNo}/resolve", resolve(), Vec::new()),
        post("/v1/events/ack", ack(), Vec::new()),
        get("/v1/protocols/{transNo}", vec![("200", protocol("3800.00", "1200.00"))]),
        get(
            "/v1/orders/{outReqNo}",
            vec![(
                "200",
                json!({"order": payout(), "version": 4, "history": payout_events(),
                    "nextPoll": "2026-11-29T09:51:20.701Z"}),
            )],
        ),
        get("/v1/events", vec![("200", json!({"events": payout_events()}))]),
    ]
}

/// Puts the examples into the document, each under its route's JSON body.
pub(crate) struct Examples;

impl utoipa::Modify for Examples {
    fn modify(&self, api: &mut OpenApi) {
        for example in examples() {
            let Some(operation) = api
                .paths
                .paths
                .get_mut(example.path)
                .and_then(|item| operation(item, example.method))
            else {
                continue;
            };
            if let (Some(request), Some(body)) = (example.request, operation.request_body.as_mut()) {
                for content in body.content.values_mut() {
                    content.example = Some(request.clone());
                }
            }
            for (status, answer) in example.answers {
                if let Some(utoipa::openapi::RefOr::T(response)) = operation.responses.responses.get_mut(status) {
                    for content in response.content.values_mut() {
                        content.example = Some(answer.clone());
                    }
                }
            }
        }
    }
}

fn operation<'a>(item: &'a mut PathItem, method: &str) -> Option<&'a mut Operation> {
    match method {
        "get" => item.get.as_mut(),
        "post" => item.post.as_mut(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::{Ack, CreateInbound, CreateOutbound, CreateProtocol, Resolve};

    fn read<T: serde::de::DeserializeOwned>(example: Value) -> T {
        serde_json::from_value(example).expect("the API's own request type reads its example")
    }

    /// What the document shows a reader is what the server takes: each request example is
    /// read by its request type and becomes the engine's command.
    #[test]
    fn every_request_example_is_a_request_the_server_takes() {
        read::<CreateProtocol>(create_protocol()).into_command().unwrap();
        read::<CreateInbound>(create_inbound()).into_command().unwrap();
        read::<CreateOutbound>(create_outbound()).into_command().unwrap();
        read::<Resolve>(resolve()).into_decision();
        read::<Ack>(ack());
    }

    /// Every example lands in the document, under a route and a status it declares.
    #[test]
    fn every_example_is_in_the_document() {
        let doc = crate::openapi();
        for example in examples() {
            let mut item = doc
                .paths
                .paths
                .get(example.path)
                .cloned()
                .expect("a route of the document");
            let operation = operation(&mut item, example.method).expect("a method of the route");
            if example.request.is_some() {
                let body = operation.request_body.as_ref().expect("a request body");
                assert!(
                    body.content.values().all(|c| c.example == example.request),
                    "{}",
                    example.path
                );
            }
            for (status, answer) in &example.answers {
                let Some(utoipa::openapi::RefOr::T(response)) = operation.responses.responses.get(*status) else {
                    panic!("{} declares no {status}", example.path);
                };
                assert!(
                    response.content.values().all(|c| c.example.as_ref() == Some(answer)),
                    "{} {status}",
                    example.path
                );
            }
        }
    }
}
