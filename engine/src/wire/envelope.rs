//! The envelope every call, reply and callback travels in, and its MD5 signature.
//!
//! The signature covers the `data` text **exactly as received**: a receiver never
//! re-serialises before verifying, so bodies built by other JSON libraries (Python's
//! `json.dumps` with `", "` separators and `\uXXXX` escapes) verify as they are.

use crate::error::Missing;
use crate::secret::Md5Key;
use crate::{Error, Result};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use subtle::ConstantTimeEq;

/// The success code of a reply: the call was received and handled (not: a payment succeeded).
pub const CODE_OK: &str = "0000";
/// The success message.
pub const MSG_OK: &str = "SUCCESS";

/// `lowercase_hex(md5(appId & data & timestamp & key))`, as 32 ASCII bytes.
pub fn sign_bytes(app_id: &str, data: &str, timestamp: &str, key: &Md5Key) -> [u8; 32] {
    let mut h = Md5::new();
    h.update(app_id.as_bytes());
    h.update(b"&");
    h.update(data.as_bytes());
    h.update(b"&");
    h.update(timestamp.as_bytes());
    h.update(b"&");
    h.update(key.as_bytes());
    let digest = h.finalize();
    let mut out = [0u8; 32];
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in out.chunks_exact_mut(2).zip(digest.iter()) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0x0f)];
    }
    out
}

/// The signature as a `String`.
pub fn sign(app_id: &str, data: &str, timestamp: &str, key: &Md5Key) -> String {
    // sign_bytes yields only ASCII hex digits.
    String::from_utf8_lossy(&sign_bytes(app_id, data, timestamp, key)).into_owned()
}

/// An envelope (`PayCommonVo`): a request (no `code`/`msg`) or a reply/callback.
///
/// `data` holds the exact signed text: for a `data` sent as a JSON string, its unescaped
/// content; for one sent as an embedded object, that object's raw JSON text; for an absent
/// or null one, the empty string.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Business system id.
    pub app_id: String,
    /// The signed `data` text.
    pub data: String,
    /// Lowercase hex MD5 signature.
    pub sign: String,
    /// `yyyyMMddHHmmssSSS`.
    pub timestamp: String,
    /// Reply code (`0000` = handled); absent on requests.
    pub code: Option<String>,
    /// Reply message; absent on requests.
    pub msg: Option<String>,
}

impl std::fmt::Debug for Envelope {
    // `data` may hold personal data: show only its size.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("app_id", &self.app_id)
            .field("data_len", &self.data.len())
            .field("timestamp", &self.timestamp)
            .field("code", &self.code)
            .field("msg", &self.msg)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(rename = "appId")]
    app_id: Option<String>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    sign: Option<String>,
    timestamp: Option<String>,
    code: Option<String>,
    msg: Option<String>,
}

#[derive(Serialize)]
struct WireEnvelope<'a> {
    #[serde(rename = "appId")]
    app_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    msg: Option<&'a str>,
    data: &'a str,
    sign: &'a str,
    timestamp: &'a str,
}

impl Envelope {
    /// A signed request carrying `data`.
    pub fn request(app_id: &str, data: String, timestamp: String, key: &Md5Key) -> Self {
        let sign = sign(app_id, &data, &timestamp, key);
        Envelope {
            app_id: app_id.to_owned(),
            data,
            sign,
            timestamp,
            code: None,
            msg: None,
        }
    }

    /// A signed request for a typed call.
    pub fn for_call<C: super::Call>(app_id: &str, call: &C, timestamp: String, key: &Md5Key) -> Result<Self> {
        let data = serde_json::to_string(call).map_err(|e| Error::from_data(&e))?;
        Ok(Envelope::request(app_id, data, timestamp, key))
    }

    /// A signed reply (or callback) with `code` and `msg`.
    pub fn reply(app_id: &str, code: &str, msg: &str, data: String, timestamp: String, key: &Md5Key) -> Self {
        Envelope {
            code: Some(code.to_owned()),
            msg: Some(msg.to_owned()),
            ..Envelope::request(app_id, data, timestamp, key)
        }
    }

    /// Decode a body. Checks shape only; call [`Envelope::verify`] before trusting it.
    pub fn decode(body: &[u8]) -> Result<Self> {
        let raw: RawEnvelope<'_> = serde_json::from_slice(body).map_err(|e| Error::MalformedEnvelope {
            reason: format!(
                "not a JSON envelope object ({:?} at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ),
        })?;
        let missing = |field: &str| Error::MalformedEnvelope {
            reason: format!("missing `{field}`"),
        };
        let data = match raw.data {
            None => String::new(),
            Some(v) => {
                let text = v.get();
                match text.as_bytes().first() {
                    Some(b'"') => serde_json::from_str::<String>(text).map_err(|e| Error::from_data(&e))?,
                    Some(b'{') | Some(b'[') => text.to_owned(),
                    _ if text == "null" => String::new(),
                    _ => {
                        return Err(Error::MalformedEnvelope {
                            reason: "`data` must be a string or an object".into(),
                        });
                    }
                }
            }
        };
        Ok(Envelope {
            app_id: raw.app_id.ok_or_else(|| missing("appId"))?,
            data,
            sign: raw.sign.ok_or_else(|| missing("sign"))?,
            timestamp: raw.timestamp.ok_or_else(|| missing("timestamp"))?,
            code: raw.code,
            msg: raw.msg,
        })
    }

    /// Check the signature in constant time.
    pub fn verify(&self, key: &Md5Key) -> Result<()> {
        let expected = sign_bytes(&self.app_id, &self.data, &self.timestamp, key);
        if bool::from(expected.ct_eq(self.sign.as_bytes())) {
            Ok(())
        } else {
            Err(Error::BadSign)
        }
    }

    /// Decode, check that the envelope is ours (`appId`) and verify its signature.
    pub fn open(body: &[u8], app_id: &str, key: &Md5Key) -> Result<Self> {
        Envelope::open_with_any(body, app_id, [key]).map(|(env, _)| env)
    }

    /// [`Envelope::open`] with the first of `keys` that verifies it (during a key rotation:
    /// the current key, then the previous ones), and that key's position.
    pub fn open_with_any<'k>(
        body: &[u8],
        app_id: &str,
        keys: impl IntoIterator<Item = &'k Md5Key>,
    ) -> Result<(Self, usize)> {
        let env = Envelope::decode(body)?;
        if env.app_id != app_id {
            return Err(Error::WrongAppId {
                got: env.app_id.chars().take(64).collect(),
            });
        }
        let which = keys
            .into_iter()
            .position(|key| env.verify(key).is_ok())
            .ok_or(Error::BadSign)?;
        Ok((env, which))
    }

    /// The JSON body to send (`data` as a JSON string).
    pub fn to_json(&self) -> String {
        let wire = WireEnvelope {
            app_id: &self.app_id,
            code: self.code.as_deref(),
            msg: self.msg.as_deref(),
            data: &self.data,
            sign: &self.sign,
            timestamp: &self.timestamp,
        };
        // Serialising strings into a String cannot fail.
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// For a reply: `data` when the code is `0000`; the typed refusal otherwise.
    pub fn reply_data(&self) -> Result<&str> {
        match self.code.as_deref() {
            Some(CODE_OK) => Ok(&self.data),
            Some(code) => Err(match Missing::from_code(code) {
                Some(m) => Error::NotFound(m),
                None => Error::Remote {
                    code: code.to_owned(),
                    msg: self.msg.clone().unwrap_or_default(),
                },
            }),
            None => Err(Error::MalformedEnvelope {
                reason: "reply without `code`".into(),
            }),
        }
    }

    /// Decode `data` into `T`.
    pub fn decode_data<T: serde::de::DeserializeOwned>(data: &str) -> Result<T> {
        serde_json::from_str(data).map_err(|e| Error::from_data(&e))
    }

    /// The `outReqNo` its `data` names, if it names one — read without trusting or
    /// validating anything else (to route, rate-limit or log; never to decide).
    pub fn names_order(&self) -> Option<String> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct NamesOrder {
            out_req_no: Option<String>,
        }
        serde_json::from_str::<NamesOrder>(&self.data).ok()?.out_req_no
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_vectors() {
        let cases = [
            ("{\"transNo\":\"T1\"}", "k3y", "ca65620bcc93844dba73288b73adf2d1"),
            (
                "{\"bankNameKeyWord\":\"海淀\"}",
                "密钥-1",
                "272adf6c306e4cff189d9f3c657e8c27",
            ),
            ("", "k3y", "616b17286173d4c2ed31af28652a5c9d"),
        ];
        for (data, key, want) in cases {
            assert_eq!(sign("APP001", data, "20261126120000123", &Md5Key::new(key)), want);
        }
    }

    #[test]
    fn python_json_dumps_body_verifies_and_decodes() {
        // Produced by CPython 3.11: json.dumps(envelope) around data=json.dumps(fields), both
        // with default separators (", ", ": ") and ensure_ascii escapes; signed by hashlib.
        let body = r#"{"appId": "APP001", "code": "0000", "msg": "SUCCESS", "data": "{\"transNo\": \"T1\", \"outReqNo\": \"APP001IN1\", \"payStatus\": \"SUCCESS\", \"arrivedStatus\": \"02\", \"amount\": \"100.00\", \"issuingBankZH\": \"\\u4e2d\\u56fd\\u94f6\\u884c\", \"qpUserName\": \"\\u5f20\\u4e09\"}", "sign": "50a691022f1283643b2d0316fcbbbe14", "timestamp": "20261126120000123"}"#;
        let env = Envelope::open(body.as_bytes(), "APP001", &Md5Key::new("k3y")).unwrap();
        let view: crate::wire::InboundView = Envelope::decode_data(env.reply_data().unwrap()).unwrap();
        assert_eq!(view.issuing_bank_zh.as_deref(), Some("中国银行"));
        assert_eq!(view.qp_user_name.as_ref().map(|n| n.expose()), Some("张三"));
        assert_eq!(view.pay_status, Some(crate::wire::PayStatus::Success));

        let request = r#"{"appId": "APP001", "data": "{\"bankNameKeyWord\": \"\\u6d77\\u6dc0\"}", "sign": "f49afe3685d52f02c54d0d9938280d9c", "timestamp": "20261126120000123"}"#;
        let env = Envelope::open(request.as_bytes(), "APP001", &Md5Key::new("k3y")).unwrap();
        let q: crate::wire::QueryBankCnaps = Envelope::decode_data(&env.data).unwrap();
        assert_eq!(q.bank_name_key_word, "海淀");
    }

    #[test]
    fn embedded_object_signs_its_raw_text() {
        let key = Md5Key::new("k3y");
        let raw = "{ \"result\" : \"true\" }";
        let sig = sign("APP001", raw, "20261126120000123", &key);
        let body = format!(
            "{{\"appId\":\"APP001\",\"code\":\"0000\",\"msg\":\"SUCCESS\",\"data\":{raw},\"sign\":\"{sig}\",\"timestamp\":\"20261126120000123\"}}"
        );
        let env = Envelope::open(body.as_bytes(), "APP001", &key).unwrap();
        assert_eq!(env.reply_data().unwrap(), raw);
    }

    #[test]
    fn tampering_and_strangers_refused() {
        let key = Md5Key::new("k3y");
        let env = Envelope::request(
            "APP001",
            "{\"transNo\":\"T1\"}".into(),
            "20261126120000123".into(),
            &key,
        );
        let body = env.to_json();
        assert!(Envelope::open(body.as_bytes(), "APP001", &key).is_ok());
        assert!(matches!(
            Envelope::open(body.replace("T1", "T2").as_bytes(), "APP001", &key),
            Err(Error::BadSign)
        ));
        assert!(matches!(
            Envelope::open(body.as_bytes(), "APP002", &key),
            Err(Error::WrongAppId { .. })
        ));
        assert!(matches!(
            Envelope::open(body.as_bytes(), "APP001", &Md5Key::new("other")),
            Err(Error::BadSign)
        ));
        assert!(matches!(Envelope::decode(b"[]"), Err(Error::MalformedEnvelope { .. })));
        assert!(matches!(
            Envelope::decode(b"{\"appId\":\"A\",\"data\":5,\"sign\":\"\",\"timestamp\":\"\"}"),
            Err(Error::MalformedEnvelope { .. })
        ));
    }

    #[test]
    fn reply_codes_are_typed() {
        let key = Md5Key::new("k");
        let r = |code| Envelope::reply("A", code, "no", String::new(), "1".into(), &key);
        assert!(matches!(
            r("EP20003").reply_data(),
            Err(Error::NotFound(Missing::OutboundOrder))
        ));
        assert!(matches!(
            r("EP20001").reply_data(),
            Err(Error::NotFound(Missing::Protocol))
        ));
        assert!(matches!(r("EP99999").reply_data(), Err(Error::Remote { ref code, .. }) if code == "EP99999"));
        assert_eq!(r("0000").reply_data().unwrap(), "");
    }
}
