//! Secrets and personal data, kept out of every `Debug`, log line and error.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The MD5 signing key shared with the payment system.
///
/// Deliberately has no `Display`, and its `Debug` prints `Md5Key(***)`, so that a config
/// printed with `{:?}` or a traced struct never leaks it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Md5Key(String);

impl Md5Key {
    /// Wrap a key.
    pub fn new(key: impl Into<String>) -> Self {
        Md5Key(key.into())
    }

    /// The key's bytes, for signing only.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Md5Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Md5Key(***)")
    }
}

/// A personal-data field (ID number, card or account number, a person's name).
///
/// It goes on the wire and into storage as the plain string (it must), but its `Debug`
/// shows at most the last four characters, and only of a long number (card, account and ID
/// numbers: digits, perhaps an ID number's check letter `X`, spaces or hyphens), whose last
/// four identify nobody; anything else — a name, however long — shows as `***`.
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sensitive(String);

impl Sensitive {
    /// Wrap a personal value.
    pub fn new(value: impl Into<String>) -> Self {
        Sensitive(value.into())
    }

    /// The plain value. Call only to put it on the wire or show it to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The masked form used by `Debug`: `***1234` for long numbers, `***` otherwise.
    pub fn masked(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        let number = chars
            .iter()
            .all(|c| c.is_ascii_digit() || matches!(c, 'X' | 'x' | ' ' | '-'));
        if chars.len() >= 12 && number {
            let tail: String = chars[chars.len() - 4..].iter().collect();
            format!("***{tail}")
        } else {
            "***".to_owned()
        }
    }
}

impl std::str::FromStr for Sensitive {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Sensitive(s.to_owned()))
    }
}

impl fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_never_printed() {
        let k = Md5Key::new("super-secret");
        assert_eq!(format!("{k:?}"), "Md5Key(***)");
    }

    #[test]
    fn personal_data_masked() {
        assert_eq!(format!("{:?}", Sensitive::new("6222020200112233445")), "***3445");
        assert_eq!(format!("{:?}", Sensitive::new("张三")), "***");
        assert_eq!(format!("{:?}", Sensitive::new("")), "***");
        assert_eq!(format!("{:?}", Sensitive::new("11010519491231002X")), "***002X");
        // A long name is a name: no part of it is shown.
        assert_eq!(format!("{:?}", Sensitive::new("Shanghai Example Trading Co")), "***");
        assert_eq!(format!("{:?}", Sensitive::new("上海示例贸易有限公司北京分公司")), "***");
    }

    proptest::proptest! {
        /// Whatever the value, at most its last four characters show, and only of a number.
        #[test]
        fn masking_shows_at_most_a_number_s_last_four(value in "[0-9X -]{8,24}|\\PC{0,40}") {
            let shown = Sensitive::new(value.as_str()).masked();
            let tail = shown.strip_prefix("***").expect("always starts with ***");
            proptest::prop_assert!(tail.chars().count() <= 4);
            proptest::prop_assert!(value.ends_with(tail));
            if !tail.is_empty() {
                proptest::prop_assert!(value.chars().all(|c| c.is_ascii_digit() || matches!(c, 'X' | 'x' | ' ' | '-')));
            }
        }
    }
}
