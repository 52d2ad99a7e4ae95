//! Opening a store of an older format: formats 1 and 2 lack the read-model indexes of
//! format 3 (orders by listing, each order's listings, each order's history), so they are
//! built from the records and events once, before the new marker is written. A crash half
//! way leaves the old marker, and the next open builds them again: every entry written is
//! a function of a record that does not change meanwhile, so building twice is building once.

use crate::codec;
use protopay_engine::domain::Order;
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

/// Build the format-3 indexes of every order and event in `tree`.
pub(crate) fn build_indexes(tree: &sled::Tree) -> Result<(), Stop> {
    let undecodable = |key: &[u8], e: codec::DecodeError| Stop::Undecodable {
        key: key.to_vec(),
        reason: e.to_string(),
    };
    for entry in tree.scan_prefix(codec::prefix::ORDER) {
        let (key, bytes) = entry?;
        let (_, order): (u64, Order) = codec::from_record(&bytes).map_err(|e| undecodable(&key, e))?;
        let listed = codec::listed(&order);
        for listing in codec::listing_keys(&listed, order.out_req_no()) {
            tree.insert(listing, Vec::new())?;
        }
        tree.insert(codec::key(codec::prefix::LISTED, order.out_req_no().as_bytes()), listed)?;
    }
    for entry in tree.scan_prefix(codec::prefix::EVENT) {
        let (key, bytes) = entry?;
        let event: Event = codec::from_value(&bytes).map_err(|e| undecodable(&key, e))?;
        let seq = codec::u64_from(key.get(codec::prefix::EVENT.len()..).unwrap_or_default())
            .map_err(|e| undecodable(&key, e))?;
        if let Some(order) = event.out_req_no {
            tree.insert(codec::history_key(&order, seq), Vec::new())?;
        }
    }
    Ok(())
}
