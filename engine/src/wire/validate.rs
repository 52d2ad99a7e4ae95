//! Checks on what we send, done before anything is stored or sent.

use crate::{Error, Result};

/// How many characters a generated `outReqNo` adds after the `appId`: a 13-digit
/// millisecond timestamp, 8 hex digits of per-process seed, 4 of a counter.
pub const GENERATED_SUFFIX: usize = 13 + 8 + 4;

/// The longest text each field may hold, in characters. One constant per field, and every
/// check (commands, config) derives from these.
///
/// The document gives no lengths. The limits are generous for real values (names, bank
/// branches, remarks) and small enough that a callback echoing every text we sent — which the
/// payment system does, escaped twice (JSON in a JSON string) — stays far below
/// [`limits::ECHO_BODY_MAX_BYTES`], which the callback body limit must exceed.
pub mod limits {
    /// `outReqNo`.
    pub const OUT_REQ_NO_MAX_CHARS: usize = 64;
    /// `appId`: room for a generated `outReqNo` suffix.
    pub const APP_ID_MAX_CHARS: usize = OUT_REQ_NO_MAX_CHARS - super::GENERATED_SUFFIX;
    /// `transDesc`, the purpose of a protocol.
    pub const TRANS_DESC_MAX_CHARS: usize = 200;
    /// `businessId`.
    pub const BUSINESS_ID_MAX_CHARS: usize = 64;
    /// `contractNum`.
    pub const CONTRACT_NUM_MAX_CHARS: usize = 64;
    /// A person's name (`bankAccName`, `qpUserName`).
    pub const PERSON_NAME_MAX_CHARS: usize = 100;
    /// An ID number (`qpCertNumber`).
    pub const CERT_NUMBER_MAX_CHARS: usize = 32;
    /// A bank account number (`bankAccNum`).
    pub const ACCOUNT_MAX_CHARS: usize = 40;
    /// A bank or branch name (`bankName`).
    pub const BANK_NAME_MAX_CHARS: usize = 100;
    /// `remark`.
    pub const REMARK_MAX_CHARS: usize = 200;
    /// A URL (`returnUrl`, and each notify URL built from `callback_base_url`).
    pub const URL_MAX_CHARS: usize = 512;
    /// `bankNameKeyWord`.
    pub const KEYWORD_MAX_CHARS: usize = 50;
    /// An operator's note on a resolution (stored and published, never sent).
    pub const NOTE_MAX_CHARS: usize = 1_000;
    /// A host's idempotency key for opening a protocol (stored, never sent).
    pub const IDEMPOTENCY_KEY_MAX_CHARS: usize = 64;
    /// A named operator's name (stored with their decisions, never sent).
    pub const OPERATOR_NAME_MAX_CHARS: usize = 64;
    /// The largest callback body that can echo our texts, in bytes (the one limit here that is
    /// not in characters): every echoed field at its limit,
    /// each character escaped to at most 7 bytes (`\\uXXXX` inside the `data` string),
    /// plus 8 KiB for field names, the payment system's own fields and the envelope.
    pub const ECHO_BODY_MAX_BYTES: usize = 7
        * (OUT_REQ_NO_MAX_CHARS
            + APP_ID_MAX_CHARS
            + 2 * PERSON_NAME_MAX_CHARS
            + CERT_NUMBER_MAX_CHARS
            + ACCOUNT_MAX_CHARS
            + BANK_NAME_MAX_CHARS
            + REMARK_MAX_CHARS
            + CONTRACT_NUM_MAX_CHARS)
        + 8 * 1024;
}

/// A text field: at most `max` characters.
pub fn text(field: &'static str, s: &str, max: usize) -> Result<()> {
    if s.chars().count() > max {
        Err(Error::TooLong { field, max })
    } else {
        Ok(())
    }
}

/// An optional text field: at most `max` characters when given.
pub fn optional_text(field: &'static str, s: Option<&str>, max: usize) -> Result<()> {
    s.map_or(Ok(()), |s| text(field, s, max))
}

/// `outReqNo`: starts with our `appId`, at most [`limits::OUT_REQ_NO_MAX_CHARS`] characters of
/// `[A-Za-z0-9_-]`.
pub fn out_req_no(app_id: &str, s: &str) -> Result<()> {
    let field = "outReqNo";
    text(field, s, limits::OUT_REQ_NO_MAX_CHARS)?;
    plain(field, s)?;
    if !s.starts_with(app_id) || s.len() == app_id.len() {
        return Err(Error::InvalidField {
            field,
            reason: "must be our appId followed by a suffix",
        });
    }
    Ok(())
}

/// A host's idempotency key (`idempotencyKey`): 1 to
/// [`limits::IDEMPOTENCY_KEY_MAX_CHARS`] characters of `[A-Za-z0-9_-]`, as an `outReqNo`'s.
pub fn idempotency_key(s: &str) -> Result<()> {
    let field = "idempotencyKey";
    required(field, s)?;
    text(field, s, limits::IDEMPOTENCY_KEY_MAX_CHARS)?;
    plain(field, s)
}

/// Only `[A-Za-z0-9_-]`: a key that is safe in any store, URL or log.
fn plain(field: &'static str, s: &str) -> Result<()> {
    if s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        Ok(())
    } else {
        Err(Error::InvalidField {
            field,
            reason: "only A-Z, a-z, 0-9, '_' and '-' are allowed",
        })
    }
}

/// How strictly `bankCnaps` is checked: the standard form is 12 digits, but test
/// environments have accepted shorter codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CnapsCheck {
    /// Exactly 12 digits.
    #[default]
    Strict,
    /// 1 to 12 digits.
    DigitsOnly,
}

/// `bankCnaps`: digits, with the length rule of `check`.
pub fn bank_cnaps(s: &str, check: CnapsCheck) -> Result<()> {
    let field = "bankCnaps";
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::InvalidField {
            field,
            reason: "must be digits",
        });
    }
    match check {
        CnapsCheck::Strict if s.len() != 12 => Err(Error::InvalidField {
            field,
            reason: "must be 12 digits",
        }),
        CnapsCheck::DigitsOnly if s.len() > 12 => Err(Error::InvalidField {
            field,
            reason: "longer than 12 digits",
        }),
        _ => Ok(()),
    }
}

/// A required text field: present and not blank.
pub fn required(field: &'static str, s: &str) -> Result<()> {
    if s.trim().is_empty() {
        Err(Error::InvalidField {
            field,
            reason: "is required",
        })
    } else {
        Ok(())
    }
}

/// An amount in a request: more than zero.
pub fn positive(field: &'static str, a: crate::Amount) -> Result<()> {
    if a.is_zero() {
        Err(Error::InvalidField {
            field,
            reason: "must be more than zero",
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_req_no_rules() {
        assert!(out_req_no("APP001", "APP001-2026_x1").is_ok());
        for bad in [
            "APP001",
            "APP002X",
            "APP001 x",
            "APP001中",
            &format!("APP001{}", "x".repeat(59)),
        ] {
            assert!(out_req_no("APP001", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cnaps_rules() {
        assert!(bank_cnaps("102100099996", CnapsCheck::Strict).is_ok());
        assert!(bank_cnaps("1021", CnapsCheck::Strict).is_err());
        assert!(bank_cnaps("1021", CnapsCheck::DigitsOnly).is_ok());
        assert!(bank_cnaps("10210009999a", CnapsCheck::DigitsOnly).is_err());
        assert!(bank_cnaps("", CnapsCheck::DigitsOnly).is_err());
    }
}
