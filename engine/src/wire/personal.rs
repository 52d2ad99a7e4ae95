//! Which fields of the payment system's messages are personal data, and a message body with
//! them masked: what a person who may not see them is shown of an exchange on the wire.

use crate::Sensitive;
use serde_json::Value;

/// The wire names of the personal fields (the `Sensitive` ones of `messages.rs`): payee
/// names and accounts, card numbers, the quick-pay payer's name and ID number.
pub const PERSONAL_FIELDS: [&str; 5] = ["bankAccName", "bankAccNum", "cardNum", "qpUserName", "qpCertNumber"];

/// `body` (an envelope as on the wire, or its `data`) with every personal field masked as
/// [`Sensitive::masked`] does, inside the envelope's `data` text too. A body that is not JSON
/// is not shown at all — it could hold anything — only its size.
pub fn masked_body(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(mut value) => {
            mask(&mut value);
            value.to_string()
        }
        Err(_) => format!("<{} bytes, not JSON: not shown>", body.len()),
    }
}

fn mask(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                match field {
                    Value::String(text) if PERSONAL_FIELDS.contains(&name.as_str()) => {
                        *text = Sensitive::new(text.as_str()).masked();
                    }
                    // The envelope's `data` is JSON in a string: masked inside, kept a string.
                    Value::String(text) if name == "data" => {
                        if let Ok(mut inner) = serde_json::from_str::<Value>(text) {
                            mask(&mut inner);
                            *text = inner.to_string();
                        }
                    }
                    other => mask(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_fields_are_masked_inside_the_envelopes_data_too() {
        let data = r#"{"bankAccName":"张三","bankAccNum":"6222020200112233445","amount":"1.00"}"#;
        let envelope = serde_json::json!({"appId": "APP001", "data": data, "sign": "abc"}).to_string();
        let shown = masked_body(&envelope);
        assert!(
            !shown.contains("张三") && !shown.contains("6222020200112233445"),
            "{shown}"
        );
        assert!(shown.contains("***3445") && shown.contains("1.00"), "{shown}");
        let outer: Value = serde_json::from_str(&shown).unwrap();
        assert!(outer["data"].is_string(), "data stays a string");
        assert_eq!(masked_body("name=张三"), "<11 bytes, not JSON: not shown>");
    }
}
