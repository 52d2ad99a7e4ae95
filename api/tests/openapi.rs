//! The `/v1` API's contract, as generated clients see it: the OpenAPI document is a wire
//! format, reviewed as a snapshot. A change here is a change for every Java, Go or Python
//! host — accept it (`cargo insta review`) only on purpose.

#[test]
fn the_openapi_document_is_reviewed() {
    let doc = serde_json::to_value(protopay_api::openapi()).unwrap();
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    assert_eq!(paths.len(), 15, "{paths:?}");
    insta::assert_json_snapshot!(doc);
}

/// Every property the document declares is camelCase, as the server writes it: a generated
/// client reads exactly the names the document gives (a `snake_case` name here once made
/// generated clients fail on every payout's events).
#[test]
fn every_declared_property_is_camel_case() {
    fn walk(v: &serde_json::Value, path: &str, bad: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Object(props)) = map.get("properties") {
                    bad.extend(props.keys().filter(|k| k.contains('_')).map(|k| format!("{path}.{k}")));
                }
                for (k, child) in map {
                    walk(child, &format!("{path}/{k}"), bad);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, path, bad)),
            _ => {}
        }
    }
    let doc = serde_json::to_value(protopay_api::openapi()).unwrap();
    let mut bad = Vec::new();
    walk(&doc, "", &mut bad);
    assert!(bad.is_empty(), "{bad:#?}");
}

/// A deployment serves the document with the rules its settings decide: an `outReqNo` is its
/// `appId` and a suffix, so a client (or a fuzzer) that follows the document sends one the
/// server takes.
#[test]
fn the_served_document_carries_the_deployments_out_req_no_rule() {
    let config = protopay_engine::Config::new(
        "APP001",
        protopay_engine::Md5Key::new("k"),
        "http://pay.example",
        "http://me.example/n",
    );
    let doc = serde_json::to_value(protopay_api::served_document(&config)).unwrap();
    for body in ["CreateInbound", "CreateOutbound"] {
        let pattern = &doc["components"]["schemas"][body]["properties"]["outReqNo"]["pattern"];
        assert_eq!(pattern, "^APP001[A-Za-z0-9_-]{1,58}$", "{body}");
    }
}
