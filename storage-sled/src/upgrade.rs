//! Opening a store of an older format: formats 1 and 2 lack the read-model indexes of
//! format 3 (orders by listing, each order's listings, each order's history), which are built
//! from the records and events; formats 1 to 3 lack the listing counts of format 4, which are
//! counted from the listing index. Format 5 changed only the write-ahead log's format, which
//! the log reads by itself (`wal.rs`): its tree is format 4's. Formats 1 to 5 lack the audit
//! index of format 6, built from the events. Formats 1 to 6 keep a `m/last_seq` key, which
//! format 7 drops (the last event's key says it). Formats 1 to 7 keep an order's places in
//! up to three keys (`s/`, `a/`, `w/`), which format 8 gathers into one (`r/`). Each happens
//! once, before the new marker is written. A crash half way leaves the old marker, and the
//! next open does it again: every entry written is a function of records that do not change
//! meanwhile, and a place is gathered before its old key goes, so doing it twice is doing it
//! once.

use crate::codec;
use protopay_engine::domain::{Listing, Order};
use protopay_engine::event::Event;

/// Why an upgrade stopped: sled failed, or a record did not decode (its key and reason).
pub(crate) enum Stop {
    Sled(sled::Error),
    Undecodable { key: Vec<u8>, reason: String },
}

impl From<sled::Error> for Stop {
    fn from(e: sled::Error) -> Self {
        Stop::Sled(e)
    }
}

/// Bring `tree`, of the older format `from` (one of [`codec::OLDER_FORMATS`]), to the current
/// format's content. The caller writes the new marker.
pub(crate) fn upgrade(tree: &sled::Tree, from: &[u8]) -> Result<(), Stop> {
    if matches!(from, b"protopay-sled/1" | b"protopay-sled/2") {
        build_indexes(tree)?;
    }
    if !matches!(from, b"protopay-sled/4" | b"protopay-sled/5" | b"protopay-sled/6") {
        count_listings(tree)?;
    }
    if from != b"protopay-sled/6" {
        index_audit(tree)?;
    }
    // Format 7 reads the last seq from the last event's key.
    tree.remove(codec::key(codec::prefix::META, b"last_seq"))?;
    gather_places(tree)
}

/// Gather each order's places from the keys formats 1 to 7 kept them in (`s/`, `a/`, `w/`)
/// into its format-8 `r/` key, each old key removed only once what it said is in `r/`.
fn gather_places(tree: &sled::Tree) -> Result<(), Stop> {
    use codec::prefix::retired;
    for (prefix, place) in [
        (
            retired::LISTED,
            place_listed as fn(&mut codec::Places, &[u8]) -> Result<(), codec::DecodeError>,
        ),
        (retired::DUE_AT, place_due),
        (retired::EXCHANGES, place_exchanges),
    ] {
        for entry in tree.scan_prefix(prefix) {
            let (key, value) = entry?;
            let out_req_no = key.get(prefix.len()..).unwrap_or_default();
            place_order(tree, out_req_no, &key, |places| place(places, &value))?;
            tree.remove(&key)?;
        }
    }
    Ok(())
}

fn place_listed(places: &mut codec::Places, listed: &[u8]) -> Result<(), codec::DecodeError> {
    places.listed = listed.to_vec();
    Ok(())
}

fn place_due(places: &mut codec::Places, due: &[u8]) -> Result<(), codec::DecodeError> {
    places.due = Some(due.try_into().map_err(|_| codec::DecodeError::Short)?);
    Ok(())
}

fn place_exchanges(places: &mut codec::Places, kept: &[u8]) -> Result<(), codec::DecodeError> {
    places.exchanges = codec::u64_from(kept)?;
    Ok(())
}

/// Change the places of `out_req_no` (in the tree) by `change`, which reads the value of
/// `from` (blamed if it does not decode).
fn place_order(
    tree: &sled::Tree,
    out_req_no: &[u8],
    from: &[u8],
    change: impl FnOnce(&mut codec::Places) -> Result<(), codec::DecodeError>,
) -> Result<(), Stop> {
    let key = codec::key(codec::prefix::PLACES, out_req_no);
    let mut places = match tree.get(&key)? {
        None => codec::Places::default(),
        Some(bytes) => codec::Places::from_bytes(&bytes).map_err(|e| undecodable(&key, e))?,
    };
    change(&mut places).map_err(|e| undecodable(from, e))?;
    tree.insert(key, places.to_bytes())?;
    Ok(())
}

/// The seq of the newest event in `tree`, 0 if none: the store's last seq (seqs here are
/// consecutive from 1, and an event is never removed).
pub(crate) fn last_event_seq(tree: &sled::Tree) -> Result<u64, Stop> {
    let Some(entry) = tree.scan_prefix(codec::prefix::EVENT).next_back() else {
        return Ok(0);
    };
    let (key, _) = entry?;
    codec::u64_from(key.get(codec::prefix::EVENT.len()..).unwrap_or_default()).map_err(|e| undecodable(&key, e))
}

/// Build the format-6 audit index from the events.
fn index_audit(tree: &sled::Tree) -> Result<(), Stop> {
    for_each_event(tree, |seq, event| {
        if event.kind.is_audit() {
            tree.insert(codec::audit_key(seq), Vec::new())?;
        }
        Ok(())
    })
}

/// Call `f` with every event in `tree` and its `seq`, in order.
fn for_each_event(tree: &sled::Tree, mut f: impl FnMut(u64, Event) -> Result<(), Stop>) -> Result<(), Stop> {
    for entry in tree.scan_prefix(codec::prefix::EVENT) {
        let (key, bytes) = entry?;
        let event: Event = codec::from_value(&bytes).map_err(|e| undecodable(&key, e))?;
        let seq = codec::u64_from(key.get(codec::prefix::EVENT.len()..).unwrap_or_default())
            .map_err(|e| undecodable(&key, e))?;
        f(seq, event)?;
    }
    Ok(())
}

fn undecodable(key: &[u8], e: codec::DecodeError) -> Stop {
    Stop::Undecodable {
        key: key.to_vec(),
        reason: e.to_string(),
    }
}

/// Count each listing's index entries into its format-4 count.
fn count_listings(tree: &sled::Tree) -> Result<(), Stop> {
    for listing in Listing::ALL {
        let mut n: u64 = 0;
        for entry in tree.scan_prefix(codec::listing_prefix(listing.name())).keys() {
            entry?;
            n += 1;
        }
        tree.insert(codec::count_key(listing.name()), codec::u64_key(n).to_vec())?;
    }
    Ok(())
}

/// Build the format-3 indexes of every order and event in `tree` (an order's listings into
/// its format-8 places).
fn build_indexes(tree: &sled::Tree) -> Result<(), Stop> {
    for entry in tree.scan_prefix(codec::prefix::ORDER) {
        let (key, bytes) = entry?;
        let (_, order): (u64, Order) = codec::from_record(&bytes).map_err(|e| undecodable(&key, e))?;
        let listed = codec::listed(&order);
        for listing in codec::listing_keys(&listed, order.out_req_no()) {
            tree.insert(listing, Vec::new())?;
        }
        place_order(tree, order.out_req_no().as_bytes(), &key, |places| {
            place_listed(places, &listed)
        })?;
    }
    for_each_event(tree, |seq, event| {
        if let Some(order) = event.out_req_no {
            tree.insert(codec::history_key(&order, seq), Vec::new())?;
        }
        Ok(())
    })
}
