//! The two time formats of the wire: the envelope's 17-digit `timestamp` and the
//! `yyyy-MM-dd HH:mm:ss` times inside `data`, both in the payment system's zone.

use crate::{Error, Result};
use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

const DATA_FORMAT: &str = "%Y-%m-%d %H:%M:%S";
const TIMESTAMP_FORMAT: &str = "%Y%m%d%H%M%S%3f";

/// China Standard Time, the payment system's zone and the default.
pub fn china_standard_time() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset")
}

/// A time inside `data` (`createTime`, `payFinishTime`, `payArriveTime`), as the payment
/// system wrote it: a wall-clock time in its zone. Kept zone-free so that decoding needs no
/// configuration; [`WireTime::in_zone`] fixes it to an instant.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WireTime(NaiveDateTime);

impl WireTime {
    /// Parse `yyyy-MM-dd HH:mm:ss`.
    pub fn parse(s: &str) -> Result<Self> {
        NaiveDateTime::parse_from_str(s, DATA_FORMAT)
            .map(WireTime)
            .map_err(|_| Error::InvalidTime { value: s.chars().take(40).collect(), expected: "yyyy-MM-dd HH:mm:ss" })
    }

    /// The wall-clock time of `instant` in `zone`, to the second.
    pub fn from_instant(instant: DateTime<Utc>, zone: FixedOffset) -> Self {
        let local = instant.with_timezone(&zone).naive_local();
        WireTime(local.with_nanosecond_zero())
    }

    /// The instant this wall-clock time denotes in `zone`.
    pub fn in_zone(self, zone: FixedOffset) -> DateTime<Utc> {
        // A fixed offset maps every local time to exactly one instant.
        zone.from_local_datetime(&self.0).single().map(|t| t.with_timezone(&Utc)).unwrap_or_else(|| self.0.and_utc())
    }
}

trait TruncateNanos {
    fn with_nanosecond_zero(self) -> Self;
}

impl TruncateNanos for NaiveDateTime {
    fn with_nanosecond_zero(self) -> Self {
        chrono::Timelike::with_nanosecond(&self, 0).unwrap_or(self)
    }
}

impl std::str::FromStr for WireTime {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        WireTime::parse(s)
    }
}

impl fmt::Display for WireTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format(DATA_FORMAT))
    }
}

impl fmt::Debug for WireTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl Serialize for WireTime {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WireTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        WireTime::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Format the envelope `timestamp`: `yyyyMMddHHmmssSSS` in `zone`.
pub fn format_timestamp(instant: DateTime<Utc>, zone: FixedOffset) -> String {
    instant.with_timezone(&zone).format(TIMESTAMP_FORMAT).to_string()
}

/// Parse an envelope `timestamp` (exactly 17 digits) in `zone`.
pub fn parse_timestamp(s: &str, zone: FixedOffset) -> Result<DateTime<Utc>> {
    let bad = || Error::InvalidTime { value: s.chars().take(40).collect(), expected: "yyyyMMddHHmmssSSS" };
    if s.len() != 17 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let naive = NaiveDateTime::parse_from_str(s, TIMESTAMP_FORMAT).map_err(|_| bad())?;
    zone.from_local_datetime(&naive).single().map(|t| t.with_timezone(&Utc)).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_round_trip_in_cst() {
        let t = parse_timestamp("20261126120000123", china_standard_time()).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-26T04:00:00.123+00:00");
        assert_eq!(format_timestamp(t, china_standard_time()), "20261126120000123");
    }

    #[test]
    fn bad_timestamps_refused() {
        for s in ["", "2026112612000012", "202611261200001234", "2026112612000012x", "20261326120000123"] {
            assert!(parse_timestamp(s, china_standard_time()).is_err(), "{s}");
        }
    }

    #[test]
    fn data_times() {
        let w = WireTime::parse("2026-11-26 12:00:00").unwrap();
        assert_eq!(w.to_string(), "2026-11-26 12:00:00");
        assert_eq!(w.in_zone(china_standard_time()).to_rfc3339(), "2026-11-26T04:00:00+00:00");
        assert!(WireTime::parse("2026/11/26 12:00:00").is_err());
        assert_eq!(WireTime::from_instant(w.in_zone(china_standard_time()), china_standard_time()), w);
    }
}
