//! The on-disk format, version 8: one sled tree, `protopay`, keys prefixed by record kind,
//! and beside it the write-ahead log `protopay.wal`, which makes commits durable; sled is
//! synced at checkpoints. Version 7 is the same with an order's places in three keys (`s/`
//! its listings, `a/` its due time, `w/` its exchanges kept) instead of one `r/`; version 6
//! also with a `m/last_seq` key (now the last `e/` key says it); version 5 also without the
//! audit index (`t/`) and the exchanges (`v/`, `w/`); version 4 also with the log of before
//! (no header, the length outside the checksum); version 3 also without the listing counts
//! (`n/`); version 2 also without the read-model indexes (`l/`, `s/`, `h/`); version 1 also
//! without the log. This version opens all seven, replays their logs, builds what they lack
//! from the records, events and indexes and drops what it no longer keeps (`upgrade.rs`),
//! and writes the version-8 marker (an older build then refuses the store rather than misread
//! its log, miss commits that are only in the log, or leave the indexes and counts behind its
//! own writes).
//! One tree, so that one group's writes are one ordered run of sled writes, and the log's
//! position (`m/logged`) can go first.
//!
//! | prefix | rest of the key | value |
//! |---|---|---|
//! | `m/` | `format` | `protopay-sled/8` |
//! | `m/` | `logged` | where the last group applied ends in the log: epoch, then byte offset, u64 BE each |
//! | `p/` | `transNo` (UTF-8) | record |
//! | `o/` | `outReqNo` (UTF-8) | record |
//! | `b/` | u16 BE length of `transNo`, `transNo`, `outReqNo` | empty (orders by protocol) |
//! | `d/` | i64 µs since the epoch, sign bit flipped, BE; then `outReqNo` | empty (the due index) |
//! | `l/` | listing name, `/`, `outReqNo` | empty (orders by listing: status, `needs_attention`) |
//! | `r/` | `outReqNo` | its places ([`Places`]): `[1 if due, else 0]`, the 8 time bytes of its `d/` entry (zeros if none), u64 BE how many exchanges `v/` holds for it (at most 64), then its listing names joined by `,` (its `l/` entries) |
//! | `n/` | listing name | u64 BE: how many orders `l/` holds under that name |
//! | `h/` | u16 BE length of `outReqNo`, `outReqNo`, `seq` u64 BE | empty (an order's history) |
//! | `e/` | `seq` u64 BE | MessagePack of the event |
//! | `t/` | `seq` u64 BE | empty (the audit trail: events that record what a person did) |
//! | `v/` | u16 BE length of `outReqNo`, `outReqNo`, u64 BE number from 1 | MessagePack of the exchange |
//! | `c/` | consumer name (UTF-8) | u64 BE |
//! | `x/` | the callback's `sign` | MessagePack of the orphan |
//! | `k/` | a host's idempotency key (UTF-8) | the `transNo` it opened (UTF-8) |
//!
//! A *record* is the version (u64 BE) followed by the value in MessagePack with named fields
//! (`rmp_serde::to_vec_named`): self-describing, so optional fields may be absent, and
//! compact. Keys sort as their meaning does: big-endian numbers, time with the sign flipped.
//! An order's *places* are where it sits in the indexes, kept so that a commit moves it there
//! without decoding its old record; one key, because a commit that moves an order usually
//! moves it in all three (a callback: a new status, a next poll, its evidence), and each sled
//! write costs microseconds of CPU. They are apart from the record because an order's due
//! time and evidence may be committed before its record exists.
//!
//! # The write-ahead log, byte for byte
//!
//! `protopay.wal` (little-endian numbers; crc32 is CRC-32/ISO-HDLC, as `crc32fast`):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 16 | `protopay-wal/2\n\0` |
//! | 16 | 8 | epoch: which emptying of the log this file is (the first is 1) |
//! | 24 | 4 | crc32 of bytes 0–23 |
//! | 28 | … | records, each: |
//! | +0 | 4 | `PWR2` (a record never starts with zeros) |
//! | +4 | 4 | payload length, at least 1 (no empty records) |
//! | +8 | 8 | the file's epoch |
//! | +16 | 4 | crc32 of bytes +0 to +15 and the payload: the length is checked with the data |
//! | +20 | length | payload: entries `[1][key length u32][key][value length u32][value]` (write) or `[0][key length u32][key]` (remove) — one group's final value of every key it wrote |
//! | after the records | to the end | zeros: free space, written ahead of the records 256 KiB at a time so that a commit's sync rarely changes the file's size |
//!
//! Reading it back: records are read from byte 28 while each is whole, of the file's epoch
//! and intact. At the first that is not: if an intact record of the epoch starts anywhere
//! after it, that is damage to synced data, and the store refuses to open (`WalError::Damaged`
//! with the offset; nothing is cut). If none does, it is free space when it and all after it
//! are zeros, and otherwise the torn last write, which is dropped.
//! A header that is not the above is damage (the header is only ever written whole). A file
//! without the header is the log of format 2 to 4 (`[length][crc32 of payload][payload]`),
//! read by the same rule and then replaced.
//!
//! # What a crash at each step leaves
//!
//! A commit group (`group.rs`):
//!
//! 1. Each commit is checked against the store and the group's earlier writes (memory
//!    only). A crash: nothing was written, nothing acknowledged.
//! 2. The group's record is written at the end of the records, into the zeros written ahead
//!    (`write`). A crash: the record may be absent, whole, or torn — any subset of its
//!    sectors or pages kept (zeros where data was lost), and when the log grew with it, the
//!    file's new size kept or not. Not acknowledged. On open, nothing intact follows it, so
//!    it is dropped: a tear never keeps the store from opening.
//! 3. `fdatasync` returns. The group is durable; no commit in it has been answered yet. A
//!    crash: the record is replayed on open — the group took effect, its callers never heard
//!    (the engine's contract for a commit whose answer is lost). If the sync *fails*, the log
//!    takes no more groups until a restart reads back what is really on disk.
//! 4. The group goes into the overlay of unapplied groups (memory), which every read looks
//!    through, and the callers are answered. From here the group is acknowledged, and is in
//!    the log until a checkpoint has made sled's files hold it.
//! 5. The applier writes `m/logged` (this record's end), then the group's writes, key by key,
//!    into sled; then the group leaves the overlay. A crash: sled's files hold some prefix of
//!    those writes, or none; the log holds the group, and replays it — a record is final
//!    values, so applying it twice is applying it once. `m/logged` goes first so that sled
//!    never holds a write of a group without it.
//!
//! A checkpoint (when the log passes 16 MiB, on close, and on open after a replay):
//!
//! 1. sled flushes, and every one of its files and directories is `fsync`ed. A crash before
//!    it ends: the log still holds every group since the last checkpoint and replays them over
//!    whatever sled kept.
//! 2. The log is replaced by a header with the next epoch: written to `protopay.wal.new`,
//!    synced, renamed over `protopay.wal`, the directory synced. A crash: the old log or the
//!    new one, never a mix; the old one replays groups sled already holds, which changes
//!    nothing.
//!
//! Open: the log is read (above); sled's `m/logged` is compared with it — if sled holds a
//! group that ends past the log's last intact record, that record was synced and is now bad,
//! which is damage, refused (dropping it would leave its writes half in sled); the groups are
//! applied to sled; a checkpoint follows. A crash during any of it leaves the same log, and
//! the next open does it again.
//!
//! What the format cannot tell: damage to the very last record of a log, in a group of which
//! sled had written nothing to its files when the power went, looks exactly like a torn last
//! write and is dropped as one. It needs a bit flip in synced data, in that record, before a
//! crash.
//!
//! The proof is `power_cuts.rs`: generated commit sequences on a simulated disk
//! (`sim_disk.rs`), the power cut at every write and sync and again during the recovery.

use chrono::{DateTime, Utc};
use protopay_engine::domain::{Listing, Order};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The format written by this version.
pub const FORMAT: &[u8] = b"protopay-sled/8";

/// The formats this version upgrades on open, oldest first.
pub const OLDER_FORMATS: [&[u8]; 7] = [
    b"protopay-sled/1",
    b"protopay-sled/2",
    b"protopay-sled/3",
    b"protopay-sled/4",
    b"protopay-sled/5",
    b"protopay-sled/6",
    b"protopay-sled/7",
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
    /// An order's places say it is due neither yes (1) nor no (0, with no time).
    #[error("places: a due time neither set nor unset")]
    Due,
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

/// The first key past every key that starts with `prefix` (`None`: there is none).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
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
    /// Where each order sits in the indexes: its [`super::Places`].
    pub const PLACES: &[u8] = b"r/";
    /// Events.
    pub const EVENT: &[u8] = b"e/";
    /// Consumer cursors.
    pub const CURSOR: &[u8] = b"c/";
    /// Orphan callbacks.
    pub const ORPHAN: &[u8] = b"x/";
    /// Orders by listing.
    pub const LISTING: &[u8] = b"l/";
    /// Each order's events.
    pub const HISTORY: &[u8] = b"h/";
    /// How many orders each listing holds.
    pub const COUNT: &[u8] = b"n/";
    /// Which protocol each host idempotency key opened (its `transNo`).
    pub const OPENING: &[u8] = b"k/";
    /// The audit trail.
    pub const AUDIT: &[u8] = b"t/";
    /// Each order's exchanges (evidence).
    pub const EXCHANGE: &[u8] = b"v/";

    /// An order's places as formats 1 to 7 kept them, in up to three keys; read only to upgrade.
    pub mod retired {
        /// Its listing names (formats 3 to 7).
        pub const LISTED: &[u8] = b"s/";
        /// Its due time (formats 1 to 7).
        pub const DUE_AT: &[u8] = b"a/";
        /// How many exchanges it keeps (formats 6 and 7).
        pub const EXCHANGES: &[u8] = b"w/";
    }
}

/// Where an order sits in the indexes (its `r/` value): which listings hold it, where it is
/// in the due index, how many exchanges it keeps. The default (absent) is: nowhere, none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Places {
    /// Its listing names joined by `,`, as [`listed`] makes them: its `l/` entries.
    pub listed: Vec<u8>,
    /// The time bytes ([`time_key`]) of its `d/` entry, if it is due.
    pub due: Option<[u8; 8]>,
    /// How many exchanges `v/` holds for it.
    pub exchanges: u64,
}

impl Places {
    /// The fixed part: the due flag, the due time, the exchanges kept.
    const FIXED_BYTES: usize = 17;

    /// The stored form (see the table above).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::FIXED_BYTES + self.listed.len());
        out.push(u8::from(self.due.is_some()));
        out.extend_from_slice(&self.due.unwrap_or_default());
        out.extend_from_slice(&u64_key(self.exchanges));
        out.extend_from_slice(&self.listed);
        out
    }

    /// Read the stored form back.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < Self::FIXED_BYTES {
            return Err(DecodeError::Short);
        }
        let (fixed, listed) = bytes.split_at(Self::FIXED_BYTES);
        let due: [u8; 8] = fixed[1..9].try_into().map_err(|_| DecodeError::Short)?;
        let due = match fixed[0] {
            0 if due == [0; 8] => None,
            1 => Some(due),
            _ => return Err(DecodeError::Due),
        };
        Ok(Places {
            listed: listed.to_vec(),
            due,
            exchanges: u64_from(&fixed[9..])?,
        })
    }
}

/// Whether `key` is of a kind that a commit's checks never read: the index entries (by
/// protocol, by listing, the due index, histories, the audit trail) and the logs (events,
/// exchanges) are written and removed by key, and read only in ranges, outside commits.
pub(crate) fn unread_by_commits(key: &[u8]) -> bool {
    [
        prefix::BY_PROTOCOL,
        prefix::LISTING,
        prefix::DUE,
        prefix::HISTORY,
        prefix::AUDIT,
        prefix::EVENT,
        prefix::EXCHANGE,
    ]
    .iter()
    .any(|p| key.starts_with(p))
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

/// An order's listing names, as its [`Places`] keep them.
pub fn listed(order: &Order) -> Vec<u8> {
    order
        .listings()
        .map(Listing::name)
        .collect::<Vec<_>>()
        .join(",")
        .into_bytes()
}

/// The listing names of [`Places::listed`].
pub fn listing_names(listed: &[u8]) -> impl Iterator<Item = std::borrow::Cow<'_, str>> {
    listed
        .split(|&b| b == b',')
        .filter(|name| !name.is_empty())
        .map(String::from_utf8_lossy)
}

/// The `l/` keys of an order listed in `listed` ([`Places::listed`]).
pub fn listing_keys(listed: &[u8], out_req_no: &str) -> Vec<Vec<u8>> {
    listing_names(listed)
        .map(|name| {
            let mut k = listing_prefix(&name);
            k.extend_from_slice(out_req_no.as_bytes());
            k
        })
        .collect()
}

/// The audit trail's entry of event `seq`.
pub fn audit_key(seq: u64) -> Vec<u8> {
    key(prefix::AUDIT, &u64_key(seq))
}

/// The prefix of one order's exchanges.
pub fn exchange_prefix(out_req_no: &str) -> Vec<u8> {
    let len = u16::try_from(out_req_no.len()).unwrap_or(u16::MAX);
    let mut k = key(prefix::EXCHANGE, &len.to_be_bytes());
    k.extend_from_slice(out_req_no.as_bytes());
    k
}

/// The key of an order's `n`th exchange.
pub fn exchange_key(out_req_no: &str, n: u64) -> Vec<u8> {
    let mut k = exchange_prefix(out_req_no);
    k.extend_from_slice(&u64_key(n));
    k
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
    fn places_round_trip_and_refuse_garbage() {
        let t = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        for places in [
            Places::default(),
            Places {
                listed: b"submitted,needs_attention".to_vec(),
                due: Some(time_key(t)),
                exchanges: 64,
            },
        ] {
            assert_eq!(Places::from_bytes(&places.to_bytes()).unwrap(), places);
        }
        assert!(matches!(Places::from_bytes(&[0; 16]), Err(DecodeError::Short)));
        let mut flagged = Places::default().to_bytes();
        flagged[0] = 2;
        assert!(matches!(Places::from_bytes(&flagged), Err(DecodeError::Due)));
        let mut timed = Places::default().to_bytes();
        timed[3] = 1;
        assert!(matches!(Places::from_bytes(&timed), Err(DecodeError::Due)));
    }

    proptest::proptest! {
        /// Places read back from any bytes (a disk can return anything) never panic, and what
        /// is accepted is exactly what writing those places gives.
        #[test]
        fn places_from_any_bytes_are_refused_or_exact(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            if let Ok(places) = Places::from_bytes(&bytes) {
                proptest::prop_assert_eq!(places.to_bytes(), bytes);
            }
        }
    }

    #[test]
    fn records_round_trip_and_refuse_garbage() {
        let r = record(7, &vec!["a".to_owned()]).unwrap();
        assert_eq!(from_record::<Vec<String>>(&r).unwrap(), (7, vec!["a".to_owned()]));
        assert!(from_record::<Vec<String>>(&[1, 2]).is_err());
        assert!(from_record::<Vec<String>>(&[0, 0, 0, 0, 0, 0, 0, 1, 0xc1]).is_err());
    }
}
