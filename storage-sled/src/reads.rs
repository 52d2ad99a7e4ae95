//! Reads: a key, or a key range, as the store holds it (the groups logged but not yet applied
//! over sled, see `unapplied.rs`); pages of a list, and the due index.

use crate::{SledStorage, codec, unapplied};
use chrono::{DateTime, Utc};
use protopay_engine::storage::Result;
use protopay_engine::storage::{Due, Keyed, Versioned};
use serde::de::DeserializeOwned;

/// Entries of a key range, as sled yields them.
pub(crate) type Entries = Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>>;

impl SledStorage {
    /// `key`'s value as the store holds it.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>> {
        let handles = self.handles()?;
        if let Some(value) = handles.group.unapplied().get(key) {
            return Ok(value.map(sled::IVec::from));
        }
        handles.tree.get(key).map_err(|e| self.fail(e))
    }

    /// The entries from `start` up to `end` (to the last key if `None`) as the store holds
    /// them, from the first or, if `reverse`, from the last.
    pub(crate) fn scan(&self, start: Vec<u8>, end: Option<Vec<u8>>, reverse: bool) -> Result<Entries> {
        let handles = self.handles()?;
        // The overlay first: what it misses now, sled holds before the walk below begins.
        let over = handles.group.unapplied().range(&start, end.as_deref());
        let under = match end {
            Some(end) => handles.tree.range(start..end),
            None => handles.tree.range(start..),
        };
        let under: Entries = if reverse {
            Box::new(under.rev())
        } else {
            Box::new(under)
        };
        Ok(Box::new(unapplied::merged(over, under, reverse)))
    }

    /// The entries whose keys start with `prefix`, in order.
    pub(crate) fn scan_prefix(&self, prefix: Vec<u8>) -> Result<Entries> {
        let end = codec::prefix_end(&prefix);
        self.scan(prefix, end, false)
    }

    /// Up to `limit` records named by the keys under `index` that come after `after`, read
    /// from `records` and kept when `keep` says so: a page of a list.
    pub(crate) fn page<T: DeserializeOwned + Keyed>(
        &self,
        index: Vec<u8>,
        after: Option<&str>,
        records: &[u8],
        keep: impl Fn(&T) -> bool,
        limit: usize,
    ) -> Result<Vec<Versioned<T>>> {
        let mut start = index.clone();
        if let Some(after) = after {
            // The first key past `after` itself.
            start.extend_from_slice(after.as_bytes());
            start.push(0);
        }
        let mut out = Vec::new();
        for entry in self.scan(start, codec::prefix_end(&index), false)? {
            if out.len() >= limit {
                break;
            }
            let (key, _) = entry.map_err(|e| self.fail(e))?;
            let Some(name) = key.strip_prefix(index.as_slice()) else {
                break;
            };
            match self.read_record::<T>(records, name)? {
                Some(record) if keep(&record.value) => out.push(record),
                _ => {}
            }
        }
        Ok(out)
    }

    /// The due index up to `now`, earliest first.
    pub(crate) fn due_until(&self, now: DateTime<Utc>) -> Result<impl Iterator<Item = Result<Due>> + '_> {
        let start = codec::prefix::DUE.to_vec();
        // Past every entry due at `now`: an `outReqNo` is UTF-8, which never holds 0xFF.
        let mut end = codec::key(codec::prefix::DUE, &codec::time_key(now));
        end.push(0xFF);
        let entries = self.scan(start, Some(end), false)?;
        Ok(entries.map(|entry| {
            let (key, _) = entry.map_err(|e| self.fail(e))?;
            self.due_entry(&key)
        }))
    }

    pub(crate) fn due_entry(&self, key: &[u8]) -> Result<Due> {
        let rest = key.get(codec::prefix::DUE.len()..).unwrap_or_default();
        let at = codec::time_from(rest).map_err(|e| self.corrupt("due", key, e))?;
        let out_req_no = String::from_utf8_lossy(rest.get(8..).unwrap_or_default()).into_owned();
        Ok(Due { at, out_req_no })
    }
}
