//! Checks on what we send, done before anything is stored or sent.

use crate::{Error, Result};

/// The longest `outReqNo` we accept (SPEC decision).
pub const OUT_REQ_NO_MAX: usize = 64;

/// `outReqNo`: starts with our `appId`, at most 64 characters of `[A-Za-z0-9_-]`.
pub fn out_req_no(app_id: &str, s: &str) -> Result<()> {
    let field = "outReqNo";
    if s.len() > OUT_REQ_NO_MAX {
        return Err(Error::InvalidField { field, reason: "longer than 64 characters" });
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(Error::InvalidField { field, reason: "only A-Z, a-z, 0-9, '_' and '-' are allowed" });
    }
    if !s.starts_with(app_id) || s.len() == app_id.len() {
        return Err(Error::InvalidField { field, reason: "must be our appId followed by a suffix" });
    }
    Ok(())
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
        return Err(Error::InvalidField { field, reason: "must be digits" });
    }
    match check {
        CnapsCheck::Strict if s.len() != 12 => Err(Error::InvalidField { field, reason: "must be 12 digits" }),
        CnapsCheck::DigitsOnly if s.len() > 12 => Err(Error::InvalidField { field, reason: "longer than 12 digits" }),
        _ => Ok(()),
    }
}

/// A required text field: present and not blank.
pub fn required(field: &'static str, s: &str) -> Result<()> {
    if s.trim().is_empty() { Err(Error::InvalidField { field, reason: "is required" }) } else { Ok(()) }
}

/// An amount in a request: more than zero.
pub fn positive(field: &'static str, a: crate::Amount) -> Result<()> {
    if a.is_zero() { Err(Error::InvalidField { field, reason: "must be more than zero" }) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_req_no_rules() {
        assert!(out_req_no("APP001", "APP001-2026_x1").is_ok());
        for bad in ["APP001", "APP002X", "APP001 x", "APP001中", &format!("APP001{}", "x".repeat(59))] {
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
