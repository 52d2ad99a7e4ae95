//! The `/v1` API's contract, as generated clients see it: the OpenAPI document is a wire
//! format, reviewed as a snapshot. A change here is a change for every Java, Go or Python
//! host — accept it (`cargo insta review`) only on purpose.

#[test]
fn the_openapi_document_is_reviewed() {
    let doc = serde_json::to_value(protopay_api::openapi()).unwrap();
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    assert_eq!(paths.len(), 14, "{paths:?}");
    insta::assert_json_snapshot!(doc);
}
