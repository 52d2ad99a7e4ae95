//! Writing: a batch encoded outside the commit group, and the closure that checks its
//! versions and stages its writes inside it (see `group.rs`), plus the error mapping both
//! halves share.

use crate::{SledError, SledStorage, codec, group};
use codec::DecodeError;
use protopay_engine::storage::{Batch, MAX_EXCHANGES_PER_ORDER};
use protopay_engine::storage::{Result, StorageError};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::PathBuf;
use std::sync::Arc;

/// Turns sled and decoding failures into the engine's errors, naming the store. Cheap to
/// clone into the closures that run inside a commit group.
#[derive(Clone)]
pub(crate) struct Errors(pub(crate) PathBuf);

impl Errors {
    pub(crate) fn fail(&self, source: sled::Error) -> StorageError {
        StorageError::Failed(Arc::new(SledError::Sled {
            path: self.0.clone(),
            source,
        }))
    }

    pub(crate) fn corrupt(&self, key: &[u8], e: DecodeError) -> StorageError {
        StorageError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: e.to_string(),
        }
    }

    /// A u64 value as a commit group would leave it (0 when absent).
    pub(crate) fn read_u64(&self, w: &mut group::Staging<'_>, key: &[u8]) -> Result<u64> {
        match w.get(key).map_err(|e| self.fail(e))? {
            None => Ok(0),
            Some(b) => codec::u64_from(&b).map_err(|e| self.corrupt(key, e)),
        }
    }
}

fn encode(e: rmp_serde::encode::Error) -> StorageError {
    StorageError::Failed(Arc::new(SledError::Encode(e)))
}

/// A record's bytes at the version a commit writes (`expected + 1`, or 1 for a new one),
/// checked to read back that version before they go near the disk: the check a read makes
/// (`codec::record_version`, then the record's own key) has its pair here.
fn versioned<T: serde::Serialize>(expected: Option<u64>, value: &T) -> Result<Vec<u8>> {
    let version = expected.map_or(1, |v| v + 1);
    let bytes = codec::record(version, value).map_err(encode)?;
    debug_assert_eq!(
        codec::record_version(&bytes).ok(),
        Some(version),
        "a record reads back the version it is written at"
    );
    Ok(bytes)
}

/// An order's index entries: by protocol (fixed for its life: written when the order is) and
/// by listing (moved when its listings change, with the listings' counts; unchanged listings
/// write nothing).
struct Indexes {
    out_req_no: String,
    /// For a new order only.
    by_protocol: Option<Vec<u8>>,
    listed: Vec<u8>,
}

impl Indexes {
    fn stage(self, w: &mut group::Staging<'_>, errors: &Errors, placing: &mut Placing) -> Result<()> {
        if let Some(by_protocol) = self.by_protocol {
            w.insert(by_protocol, Vec::new());
        }
        let places = placing.of(w, errors, &self.out_req_no)?;
        if places.listed == self.listed {
            return Ok(());
        }
        for key in codec::listing_keys(&places.listed, &self.out_req_no) {
            w.remove(key);
        }
        for key in codec::listing_keys(&self.listed, &self.out_req_no) {
            w.insert(key, Vec::new());
        }
        for name in codec::listing_names(&places.listed) {
            count(w, errors, &name, false)?;
        }
        for name in codec::listing_names(&self.listed) {
            count(w, errors, &name, true)?;
        }
        places.listed = self.listed;
        Ok(())
    }
}

/// The places ([`codec::Places`]) of the orders one commit moves: each read once, when first
/// needed, and written once, at the end, if it changed.
#[derive(Default)]
struct Placing {
    /// By `outReqNo`: the places as read, and as the commit leaves them.
    orders: HashMap<String, (codec::Places, codec::Places)>,
}

impl Placing {
    /// The places of `out_req_no`, as this commit has left them so far.
    fn of(&mut self, w: &mut group::Staging<'_>, errors: &Errors, out_req_no: &str) -> Result<&mut codec::Places> {
        let places = match self.orders.entry(out_req_no.to_owned()) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(unknown) => {
                let key = codec::key(codec::prefix::PLACES, out_req_no.as_bytes());
                let read = w
                    .look(&key, |bytes| bytes.map(codec::Places::from_bytes).transpose())
                    .map_err(|e| errors.fail(e))?
                    .map_err(|e| errors.corrupt(&key, e))?
                    .unwrap_or_default();
                unknown.insert((read.clone(), read))
            }
        };
        Ok(&mut places.1)
    }

    /// Write the places that changed (nowhere and none is no key at all).
    fn stage(self, w: &mut group::Staging<'_>) {
        for (out_req_no, (read, left)) in self.orders {
            if read == left {
                continue;
            }
            debug_assert!(
                left.exchanges <= MAX_EXCHANGES_PER_ORDER as u64,
                "an order keeps at most {MAX_EXCHANGES_PER_ORDER} exchanges"
            );
            let key = codec::key(codec::prefix::PLACES, out_req_no.as_bytes());
            if left == codec::Places::default() {
                w.remove(key);
            } else {
                w.insert(key, left.to_bytes());
            }
        }
    }
}

/// One order more (or fewer) in a listing's count.
fn count(w: &mut group::Staging<'_>, errors: &Errors, listing: &str, more: bool) -> Result<()> {
    let key = codec::count_key(listing);
    let n = errors.read_u64(w, &key)?;
    // The count follows the index in every write; below zero it would have left it.
    debug_assert!(more || n > 0, "the count of {listing} would go below zero");
    let n = if more { n.saturating_add(1) } else { n.saturating_sub(1) };
    w.insert(key, codec::u64_key(n).to_vec());
    Ok(())
}

impl SledStorage {
    pub(crate) fn u64_at(&self, key: &[u8]) -> Result<Option<u64>> {
        match self.get(key)? {
            None => Ok(None),
            Some(b) => codec::u64_from(&b).map(Some).map_err(|e| self.corrupt("u64", key, e)),
        }
    }

    /// Encode a batch, and return the closure that checks its versions and stages its writes
    /// inside a commit group.
    pub(crate) fn stage(&self, batch: Batch) -> Result<group::Stage> {
        let mut records = Vec::new();
        for p in &batch.protocols {
            let key = codec::key(codec::prefix::PROTOCOL, p.value.trans_no.as_bytes());
            records.push((key, p.expected, versioned(p.expected, &p.value)?, None));
        }
        for o in &batch.orders {
            let out_req_no = o.value.out_req_no();
            let key = codec::key(codec::prefix::ORDER, out_req_no.as_bytes());
            let mut by_protocol = codec::protocol_prefix(o.value.trans_no());
            by_protocol.extend_from_slice(out_req_no.as_bytes());
            records.push((
                key,
                o.expected,
                versioned(o.expected, &o.value)?,
                Some(Indexes {
                    out_req_no: out_req_no.to_owned(),
                    by_protocol: o.expected.is_none().then_some(by_protocol),
                    listed: codec::listed(&o.value),
                }),
            ));
        }
        let mut events = Vec::with_capacity(batch.events.len());
        for e in &batch.events {
            events.push((
                codec::value(e).map_err(encode)?,
                e.out_req_no.clone(),
                e.kind.is_audit(),
            ));
        }
        let mut orphans = Vec::new();
        for o in &batch.orphans {
            orphans.push((
                codec::key(codec::prefix::ORPHAN, o.sign.as_bytes()),
                codec::value(o).map_err(encode)?,
            ));
        }
        let mut openings = Vec::with_capacity(batch.openings.len());
        for o in &batch.openings {
            openings.push((
                codec::key(codec::prefix::OPENING, o.idempotency_key.as_bytes()),
                codec::value(&o.trans_no).map_err(encode)?,
            ));
        }
        let mut exchanges = Vec::with_capacity(batch.exchanges.len());
        for x in &batch.exchanges {
            exchanges.push((x.out_req_no.clone(), codec::value(x).map_err(encode)?));
        }
        let schedule = batch.schedule;
        let errors = self.errors();
        Ok(Box::new(move |w: &mut group::Staging<'_>| {
            let fail = |e| errors.fail(e);
            for (key, expected, _, _) in &records {
                let have = w
                    .look(key, |record| record.map(codec::record_version).transpose())
                    .map_err(fail)?
                    .map_err(|e| errors.corrupt(key, e))?;
                if have != *expected {
                    return Err(StorageError::Conflict);
                }
            }
            for (key, _) in &openings {
                if w.look(key, |opened| opened.is_some()).map_err(fail)? {
                    return Err(StorageError::Conflict);
                }
            }
            let mut placing = Placing::default();
            for (key, _, bytes, indexes) in records {
                w.insert(key, bytes);
                if let Some(indexes) = indexes {
                    indexes.stage(w, &errors, &mut placing)?;
                }
            }
            let mut last = w.last_seq();
            if !events.is_empty() {
                for (bytes, order, audit) in events {
                    last += 1;
                    w.insert(codec::key(codec::prefix::EVENT, &codec::u64_key(last)), bytes);
                    if let Some(order) = order {
                        w.insert(codec::history_key(&order, last), Vec::new());
                    }
                    if audit {
                        w.insert(codec::audit_key(last), Vec::new());
                    }
                }
                w.set_last_seq(last);
            }
            for (order, bytes) in exchanges {
                let places = placing.of(w, &errors, &order)?;
                if places.exchanges < MAX_EXCHANGES_PER_ORDER as u64 {
                    places.exchanges += 1;
                    let key = codec::exchange_key(&order, places.exchanges);
                    w.insert(key, bytes);
                }
            }
            for (order, at) in schedule {
                let places = placing.of(w, &errors, &order)?;
                if let Some(old) = places.due {
                    let mut due = codec::key(codec::prefix::DUE, &old);
                    due.extend_from_slice(order.as_bytes());
                    w.remove(due);
                }
                places.due = at.map(codec::time_key);
                if let Some(at) = at {
                    w.insert(codec::due_key(at, &order), Vec::new());
                }
            }
            placing.stage(w);
            for (key, bytes) in orphans {
                if w.look(&key, |kept| kept.is_none()).map_err(fail)? {
                    w.insert(key, bytes);
                }
            }
            for (key, bytes) in openings {
                w.insert(key, bytes);
            }
            Ok(last)
        }))
    }
}
