//! Masking a message body from the wire (`wire::masked_body`, what the console shows of the
//! evidence): any bytes, never a panic; what comes out is JSON, or says it is not shown; and
//! a personal field's long value never comes out whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protopay_engine::wire::{PERSONAL_FIELDS, masked_body};

fuzz_target!(|data: &[u8]| {
    let body = String::from_utf8_lossy(data);
    let shown = masked_body(&body);
    let parsed: Result<serde_json::Value, _> = serde_json::from_str(&shown);
    assert!(parsed.is_ok() || shown.ends_with("not JSON: not shown>"), "{shown}");
    // A personal value at the top level, when nothing else in the body repeats it.
    if let Ok(serde_json::Value::Object(fields)) = serde_json::from_str::<serde_json::Value>(&body) {
        for name in PERSONAL_FIELDS {
            if let Some(serde_json::Value::String(value)) = fields.get(name)
                && value.chars().count() >= 12
                && body.matches(value.as_str()).count() == 1
                && !value.contains(['\\', '"'])
            {
                assert!(!shown.contains(value.as_str()), "{name} shown whole");
            }
        }
    }
});
