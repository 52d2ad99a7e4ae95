//! Money: exact decimal yuan with two places, never a float.

use crate::{Error, Result};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// The largest number of integer digits accepted (a trillion yuan is well beyond any order).
const MAX_INTEGER_DIGITS: usize = 15;

/// A non-negative amount of yuan with exactly two decimal places.
///
/// Parsing is strict (the payment system's amounts are plain decimals; anything else is a
/// protocol error) and formatting always gives two places, as requests require.
/// Arithmetic is checked: a result below zero or past the bound is `None`, never a wrap.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(Decimal);

impl Amount {
    /// Zero yuan.
    pub const ZERO: Amount = Amount(Decimal::from_parts(0, 0, 0, false, 2));

    /// Parse a plain decimal: digits, optionally `.` and one or two digits. No sign, no
    /// exponent, no spaces, no leading zeros (other than a lone `0`), at most 15 integer digits.
    pub fn parse(s: &str) -> Result<Self> {
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (s, None),
        };
        let bad = |reason| Err(Error::InvalidAmount { reason });
        if int.is_empty() {
            return bad("no integer digits");
        }
        if !int.bytes().all(|b| b.is_ascii_digit()) {
            return bad("not a plain decimal (digits and one '.')");
        }
        if int.len() > MAX_INTEGER_DIGITS {
            return bad("too large");
        }
        if int.len() > 1 && int.starts_with('0') {
            return bad("leading zero");
        }
        if let Some(f) = frac {
            if f.is_empty() || f.len() > 2 {
                return bad("must have one or two decimal places after '.'");
            }
            if !f.bytes().all(|b| b.is_ascii_digit()) {
                return bad("not a plain decimal (digits and one '.')");
            }
        }
        let d = Decimal::from_str(s).map_err(|_| Error::InvalidAmount {
            reason: "not a decimal",
        })?;
        Ok(Amount::normalise(d))
    }

    /// An amount from a whole number of fen (cents).
    pub fn from_fen(fen: u64) -> Option<Self> {
        let a = Amount(Decimal::from_i128_with_scale(i128::from(fen), 2));
        a.within_bound().then_some(a)
    }

    /// The amount in fen (cents).
    pub fn fen(self) -> u64 {
        // Always scale 2, non-negative and below 10^17: the mantissa is the fen count.
        u64::try_from(self.0.mantissa()).unwrap_or(u64::MAX)
    }

    /// `self + other`, or `None` past the bound.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        let a = Amount::normalise(self.0.checked_add(other.0)?);
        a.within_bound().then_some(a)
    }

    /// `self - other`, or `None` if it would go below zero.
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        let d = self.0.checked_sub(other.0)?;
        (!d.is_sign_negative() || d.is_zero()).then(|| Amount::normalise(d))
    }

    /// Whether this is zero.
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// The exact decimal value.
    pub fn as_decimal(self) -> Decimal {
        self.0
    }

    fn normalise(mut d: Decimal) -> Amount {
        d.rescale(2);
        d.set_sign_positive(true);
        Amount(d)
    }

    fn within_bound(self) -> bool {
        self.0 < Decimal::from(10u64.pow(MAX_INTEGER_DIGITS as u32))
    }
}

impl FromStr for Amount {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Amount::parse(s)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", self.0)
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Amount::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_plain_decimals() {
        for (s, f) in [
            ("0", "0.00"),
            ("0.01", "0.01"),
            ("100", "100.00"),
            ("12.5", "12.50"),
            ("12.34", "12.34"),
        ] {
            assert_eq!(Amount::parse(s).map(|a| a.to_string()).ok().as_deref(), Some(f), "{s}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        for s in [
            "",
            ".5",
            "1.",
            "-1",
            "+1",
            "1e2",
            "1.234",
            " 1",
            "1 ",
            "01",
            "1,00",
            "NaN",
            "１",
            "1.0.0",
            "0x10",
            "1000000000000000",
        ] {
            assert!(
                matches!(Amount::parse(s), Err(Error::InvalidAmount { .. })),
                "{s:?} accepted"
            );
        }
    }

    #[test]
    fn checked_arithmetic() {
        let a = Amount::parse("1.50").unwrap();
        let b = Amount::parse("2").unwrap();
        assert_eq!(a.checked_add(b).unwrap().to_string(), "3.50");
        assert_eq!(b.checked_sub(a).unwrap().to_string(), "0.50");
        assert_eq!(a.checked_sub(b), None);
        assert_eq!(a.checked_sub(a), Some(Amount::ZERO));
        assert_eq!(a.fen(), 150);
    }

    #[test]
    fn serde_is_a_string() {
        let a: Amount = serde_json::from_str("\"7.1\"").unwrap();
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"7.10\"");
        assert!(serde_json::from_str::<Amount>("7.1").is_err());
    }

    proptest! {
        #[test]
        fn parse_format_round_trip(fen in 0u64..100_000_000_000_000_000) {
            let a = Amount::from_fen(fen).unwrap();
            let s = a.to_string();
            prop_assert_eq!(Amount::parse(&s).unwrap(), a);
            prop_assert_eq!(a.fen(), fen);
        }

        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = Amount::parse(&s);
        }
    }
}
