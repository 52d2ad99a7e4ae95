//! Reads that walk a key range: pages of a list, and the due index.

use crate::{SledStorage, codec};
use chrono::{DateTime, Utc};
use protopay_engine::storage::Result;
use protopay_engine::storage::{Due, Keyed, Versioned};
use serde::de::DeserializeOwned;

impl SledStorage {
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
        for entry in self.tree()?.range(start..) {
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
        let entries = self.tree()?.range(start..end);
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
