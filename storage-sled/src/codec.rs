//! The on-disk format, version 4: one sled tree, `protopay`, keys prefixed by record kind,
//! and beside it the write-ahead log `protopay.wal` (see `wal.rs`), which makes commits
//! durable; sled is synced at checkpoints. Version 3 is the same without the listing counts
//! (`n/`), version 2 also without the read-model indexes (`l/`, `s/`, `h/`), version 1 also
//! without the log; this version opens all three, builds what they lack from the records,
//! events and indexes (`upgrade.rs`), and writes the version-4 marker (an older build then
//! refuses the store rather than miss commits that are only in the log, or leave the indexes
//! and counts behind its own writes).
//! One tree, so that a commit is one atomic `apply_batch` (sled's multi-tree transactions cost
//! several times more; see the benchmark notes in the README).
//!
//! | prefix | rest of the key | value |
//! |---|---|---|
//! | `m/` | `format` | `protopay-sled/4` |
//! | `m/` | `last_seq` | u64 big-endian |
//! | `p/` | `transNo` (UTF-8) | record |
//! | `o/` | `outReqNo` (UTF-8) | record |
//! | `b/` | u16 BE length of `transNo`, `transNo`, `outReqNo` | empty (orders by protocol) |
//! | `d/` | i64 µs since the epoch, sign bit flipped, BE; then `outReqNo` | empty (the due index) |
//! | `a/` | `outReqNo` | the same 8 time bytes (where it sits in the due index) |
//! | `l/` | listing name, `/`, `outReqNo` | empty (orders by listing: status, `needs_attention`) |
//! | `s/` | `outReqNo` | its listing names joined by `,` (where it sits in `l/`) |
//! | `n/` | listing name | u64 BE: how many orders `l/` holds under that name |
//! | `h/` | u16 BE length of `outReqNo`, `outReqNo`, `seq` u64 BE | empty (an order's history) |
//! | `e/` | `seq` u64 BE | MessagePack of the event |
//! | `c/` | consumer name (UTF-8) | u64 BE |
//! | `x/` | the callback's `sign` | MessagePack of the orphan |
//!
//! A *record* is the version (u64 BE) followed by the value in MessagePack with named fields
//! (`rmp_serde::to_vec_named`): self-describing, so optional fields may be absent, and
//! compact. Keys sort as their meaning does: big-endian numbers, time with the sign flipped.

use chrono::{DateTime, Utc};
use protopay_engine::domain::{Listing, Order};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The format written by this version.
pub const FORMAT: &[u8] = b"protopay-sled/5";

/// The formats this version upgrades on open, oldest first.
pub const OLDER_FORMATS: [&[u8]; 4] = [
    b"protopay-sled/1",
    b"protopay-sled/2",
    b"protopay-sled/3",
    b"protopay-sled/4",
];

/// Why bytes on disk could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than its fixed part.
    #[error("record too short")]
    Short,
    /// The MessagePack did not decode.
    #[error("value: {0}")]
    Value(#[from] rmp_serde::decode::Error),
}

/// Encode a value.
pub fn value<T: Serialize>(v: &T) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    rmp_serde::to_vec_named(v)
}

/// Decode a value.
pub fn from_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    Ok(rmp_serde::from_slice(bytes)?)
}

/// Encode a versioned record.
pub fn record<T: Serialize>(version: u64, v: &T) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    let mut out = version.to_be_bytes().to_vec();
    out.extend(value(v)?);
    Ok(out)
}

/// A record's version alone.
pub fn record_version(bytes: &[u8]) -> Result<u64, DecodeError> {
    let head: [u8; 8] = bytes
        .get(..8)
        .and_then(|h| h.try_into().ok())
        .ok_or(DecodeError::Short)?;
    Ok(u64::from_be_bytes(head))
}

/// Decode a versioned record.
pub fn from_record<T: DeserializeOwned>(bytes: &[u8]) -> Result<(u64, T), DecodeError> {
    let version = record_version(bytes)?;
    Ok((version, from_value(bytes.get(8..).ok_or(DecodeError::Short)?)?))
}

/// The key of where the last group applied ends in the write-ahead log ([`crate::wal::Logged`]).
pub fn logged_key() -> Vec<u8> {
    key(prefix::META, b"logged")
}

/// A u64 as 8 big-endian bytes.
pub fn u64_key(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// A u64 from 8 big-endian bytes.
pub fn u64_from(bytes: &[u8]) -> Result<u64, DecodeError> {
    record_version(bytes)
}

/// A time as 8 bytes that sort in time order.
pub fn time_key(t: DateTime<Utc>) -> [u8; 8] {
    ((t.timestamp_micros() as u64) ^ (1 << 63)).to_be_bytes()
}

/// The time from [`time_key`] bytes.
pub fn time_from(bytes: &[u8]) -> Result<DateTime<Utc>, DecodeError> {
    let micros = (u64_from(bytes)? ^ (1 << 63)) as i64;
    DateTime::from_timestamp_micros(micros).ok_or(DecodeError::Short)
}

/// Record kinds, as key prefixes.
pub mod prefix {
    /// Metadata.
    pub const META: &[u8] = b"m/";
    /// Protocols.
    pub const PROTOCOL: &[u8] = b"p/";
    /// Orders.
    pub const ORDER: &[u8] = b"o/";
    /// Orders by protocol.
    pub const BY_PROTOCOL: &[u8] = b"b/";
    /// The due index.
    pub const DUE: &[u8] = b"d/";
    /// Where each order sits in the due index.
    pub const DUE_AT: &[u8] = b"a/";
    /// Events.
    pub const EVENT: &[u8] = b"e/";
    /// Consumer cursors.
    pub const CURSOR: &[u8] = b"c/";
    /// Orphan callbacks.
    pub const ORPHAN: &[u8] = b"x/";
    /// Orders by listing.
    pub const LISTING: &[u8] = b"l/";
    /// Where each order sits in the listing index.
    pub const LISTED: &[u8] = b"s/";
    /// Each order's events.
    pub const HISTORY: &[u8] = b"h/";
    /// How many orders each listing holds.
    pub const COUNT: &[u8] = b"n/";
}

/// `prefix` followed by `rest`.
pub fn key(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + rest.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(rest);
    k
}

/// A due-index key: time, then the order.
pub fn due_key(t: DateTime<Utc>, out_req_no: &str) -> Vec<u8> {
    let mut k = key(prefix::DUE, &time_key(t));
    k.extend_from_slice(out_req_no.as_bytes());
    k
}

/// The by-protocol prefix of a `transNo`.
pub fn protocol_prefix(trans_no: &str) -> Vec<u8> {
    let len = u16::try_from(trans_no.len()).unwrap_or(u16::MAX);
    let mut k = key(prefix::BY_PROTOCOL, &len.to_be_bytes());
    k.extend_from_slice(trans_no.as_bytes());
    k
}

/// The prefix of one listing's index entries.
pub fn listing_prefix(name: &str) -> Vec<u8> {
    let mut k = key(prefix::LISTING, name.as_bytes());
    k.push(b'/');
    k
}

/// The key of a listing's count.
pub fn count_key(name: &str) -> Vec<u8> {
    key(prefix::COUNT, name.as_bytes())
}

/// An order's listings as stored under `s/`.
pub fn listed(order: &Order) -> Vec<u8> {
    order
        .listings()
        .map(Listing::name)
        .collect::<Vec<_>>()
        .join(",")
        .into_bytes()
}

/// The listing names of an `s/` value.
pub fn listing_names(listed: &[u8]) -> impl Iterator<Item = std::borrow::Cow<'_, str>> {
    listed
        .split(|&b| b == b',')
        .filter(|name| !name.is_empty())
        .map(String::from_utf8_lossy)
}

/// The `l/` keys of an order whose `s/` value is `listed`.
pub fn listing_keys(listed: &[u8], out_req_no: &str) -> Vec<Vec<u8>> {
    listing_names(listed)
        .map(|name| {
            let mut k = listing_prefix(&name);
            k.extend_from_slice(out_req_no.as_bytes());
            k
        })
        .collect()
}

/// The prefix of one order's history entries.
pub fn history_prefix(out_req_no: &str) -> Vec<u8> {
    let len = u16::try_from(out_req_no.len()).unwrap_or(u16::MAX);
    let mut k = key(prefix::HISTORY, &len.to_be_bytes());
    k.extend_from_slice(out_req_no.as_bytes());
    k
}

/// The history entry of event `seq` about an order.
pub fn history_key(out_req_no: &str, seq: u64) -> Vec<u8> {
    let mut k = history_prefix(out_req_no);
    k.extend_from_slice(&u64_key(seq));
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn time_keys_sort_by_time_including_before_the_epoch() {
        let ts = [-5_000_000_000i64, -1, 0, 1, 1_800_000_000];
        let keys: Vec<[u8; 8]> = ts.iter().map(|s| time_key(Utc.timestamp_opt(*s, 0).unwrap())).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        let t = Utc.timestamp_opt(1_800_000_000, 123_456_000).unwrap();
        assert_eq!(time_from(&time_key(t)).unwrap(), t);
    }

    #[test]
    fn records_round_trip_and_refuse_garbage() {
        let r = record(7, &vec!["a".to_owned()]).unwrap();
        assert_eq!(from_record::<Vec<String>>(&r).unwrap(), (7, vec!["a".to_owned()]));
        assert!(from_record::<Vec<String>>(&[1, 2]).is_err());
        assert!(from_record::<Vec<String>>(&[0, 0, 0, 0, 0, 0, 0, 1, 0xc1]).is_err());
    }
}
