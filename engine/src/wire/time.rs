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
            .map_err(|_| Error::InvalidTime {
                value: s.chars().take(40).collect(),
                expected: "yyyy-MM-dd HH:mm:ss",
            })
    }

    /// The wall-clock time of `instant` in `zone`, to the second.
    pub fn from_instant(instant: DateTime<Utc>, zone: FixedOffset) -> Self {
        let local = instant.with_timezone(&zone).naive_local();
        WireTime(local.with_nanosecond_zero())
    }

    /// The instant this wall-clock time denotes in `zone`.
    pub fn in_zone(self, zone: FixedOffset) -> DateTime<Utc> {
        // A fixed offset maps every local time to exactly one instant.
        zone.from_local_datetime(&self.0)
            .single()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| self.0.and_utc())
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

/// A time the payment system reports only to inform (`createTime`, `payFinishTime`,
/// `payArriveTime`): nothing is decided on it, so an odd spelling must not block the news
/// that carries it. The text is kept exactly as received; [`ReportedTime::time`] is the
/// parsed time when it could be read — `yyyy-MM-dd HH:mm:ss`, also with fractional seconds
/// (`2026-11-27 10:10:10.0`, as Java's `Timestamp.toString()` writes it), with a `T`, or as
/// 14 digits. An unreadable one raises an `UnreadableValue` anomaly where it is applied.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ReportedTime {
    raw: String,
    time: Option<WireTime>,
}

impl ReportedTime {
    /// Read `raw` leniently; never fails. What the strict format reads, it reads the same.
    pub fn parse(raw: &str) -> Self {
        let formats = [
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y%m%d%H%M%S",
            "%Y/%m/%d %H:%M:%S%.f",
        ];
        let lenient = || {
            formats
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(raw.trim(), f).ok())
                .map(|t| WireTime(t.with_nanosecond_zero()))
        };
        ReportedTime {
            raw: raw.to_owned(),
            time: WireTime::parse(raw).ok().or_else(lenient),
        }
    }

    /// The text as received.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The time, when the text could be read.
    pub fn time(&self) -> Option<WireTime> {
        self.time
    }
}

impl From<WireTime> for ReportedTime {
    fn from(t: WireTime) -> Self {
        ReportedTime {
            raw: t.to_string(),
            time: Some(t),
        }
    }
}

impl std::str::FromStr for ReportedTime {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(ReportedTime::parse(s))
    }
}

impl fmt::Display for ReportedTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl fmt::Debug for ReportedTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.raw)
    }
}

impl Serialize for ReportedTime {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for ReportedTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(ReportedTime::parse(&s))
    }
}

/// Format the envelope `timestamp`: `yyyyMMddHHmmssSSS` in `zone`.
pub fn format_timestamp(instant: DateTime<Utc>, zone: FixedOffset) -> String {
    instant.with_timezone(&zone).format(TIMESTAMP_FORMAT).to_string()
}

/// Parse an envelope `timestamp` (exactly 17 digits) in `zone`.
pub fn parse_timestamp(s: &str, zone: FixedOffset) -> Result<DateTime<Utc>> {
    let bad = || Error::InvalidTime {
        value: s.chars().take(40).collect(),
        expected: "yyyyMMddHHmmssSSS",
    };
    if s.len() != 17 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let naive = NaiveDateTime::parse_from_str(s, TIMESTAMP_FORMAT).map_err(|_| bad())?;
    zone.from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(bad)
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
        for s in [
            "",
            "2026112612000012",
            "202611261200001234",
            "2026112612000012x",
            "20261326120000123",
        ] {
            assert!(parse_timestamp(s, china_standard_time()).is_err(), "{s}");
        }
    }

    #[test]
    fn data_times() {
        let w = WireTime::parse("2026-11-26 12:00:00").unwrap();
        assert_eq!(w.to_string(), "2026-11-26 12:00:00");
        assert_eq!(
            w.in_zone(china_standard_time()).to_rfc3339(),
            "2026-11-26T04:00:00+00:00"
        );
        assert!(WireTime::parse("2026/11/26 12:00:00").is_err());
        assert_eq!(
            WireTime::from_instant(w.in_zone(china_standard_time()), china_standard_time()),
            w
        );
    }

    #[test]
    fn reported_times_are_read_leniently_and_kept_verbatim() {
        let w = WireTime::parse("2026-11-27 10:10:10").unwrap();
        for raw in [
            "2026-11-27 10:10:10",
            "2026-11-27 10:10:10.0",
            "2026-11-27T10:10:10.250",
            "20261127101010",
        ] {
            let r = ReportedTime::parse(raw);
            assert_eq!((r.time(), r.raw()), (Some(w), raw), "{raw}");
        }
        // Found by the fuzzer: a leap second, which the strict reading keeps.
        let leap = "2026-11-6 12:00:60";
        assert_eq!(ReportedTime::parse(leap).time(), WireTime::parse(leap).ok());
        let odd = ReportedTime::parse("yesterday");
        assert_eq!((odd.time(), odd.to_string().as_str()), (None, "yesterday"));
    }
}
