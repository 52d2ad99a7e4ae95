//! protopay's write-ahead log: what makes a commit on sled durable.
//!
//! sled 0.34 makes its writes "durable" with `sync_file_range`, which does not flush the
//! disk's volatile write cache (sled issues #1452, #1351): a power cut can lose a commit sled
//! reported flushed. So every commit group is first appended here and `fdatasync`ed — one
//! real sync, the physical floor of a durable write — and only then applied to sled, which
//! serves as the index and is synced for real (`fsync` of its files) at checkpoints, after
//! which the log starts empty again. On open, whatever the log holds is applied again: a
//! record is the exact final value of every key a group wrote, so applying it twice leaves
//! the same state.
//!
//! A record is `[payload length u32 LE][crc32 of payload u32 LE][payload]`; the payload is
//! entries `[1][key length u32][key][value length u32][value]` (write) or
//! `[0][key length u32][key]` (remove). A crash mid-append leaves a torn last record: it
//! was never acknowledged (its sync had not returned) and is cut off. A bad record with
//! intact data after it is not a torn tail but damage, and is reported, never skipped.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// The log's file name in the store's directory.
pub const FILE: &str = "protopay.wal";

/// One group's writes: each key's final value, `None` for removed.
pub type Writes = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// The open log.
#[derive(Debug)]
pub struct Wal {
    file: File,
    path: PathBuf,
    len: u64,
    /// Set when a write or sync failed in a way that leaves the file's state unknown (a
    /// failed `fdatasync` may have dropped dirty pages): every later append fails, until a
    /// restart reads back what is really on disk.
    broken: bool,
}

/// Why the log could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// Reading or writing it failed.
    #[error("write-ahead log {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// A record in the middle of it is damaged (not a torn last record).
    #[error("write-ahead log {path} is damaged at byte {at}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Where the bad record starts.
        at: u64,
    },
}

impl Wal {
    /// Open (or create) the log in `dir`, returning it with the groups it holds, oldest
    /// first. A torn last record is cut off.
    pub fn open(dir: &Path) -> Result<(Wal, Vec<Writes>), WalError> {
        let path = dir.join(FILE);
        let io = |source| WalError::Io {
            path: path.clone(),
            source,
        };
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io)?;
        if !existed {
            // The file's name must survive a power cut as well as its contents.
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let (groups, valid) = parse(&bytes).map_err(|at| WalError::Damaged { path: path.clone(), at })?;
        if valid < bytes.len() {
            tracing::warn!(path = %path.display(), cut = bytes.len() - valid, "cutting a torn last record");
            file.set_len(valid as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        let len = valid as u64;
        Ok((
            Wal {
                file,
                path,
                len,
                broken: false,
            },
            groups,
        ))
    }

    /// Append one group and make it durable. On failure the group is not acknowledged, and
    /// the log takes no more groups in this process.
    pub fn append(&mut self, writes: &Writes) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other(
                "an earlier write to the log failed; restart to recover",
            ));
        }
        let record = encode(writes)?;
        let written = self.file.write_all(&record).and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.len += record.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    /// Take no more groups (sled failed to apply one that is already in the log).
    pub fn poison(&mut self) {
        self.broken = true;
    }

    /// Bytes in the log.
    pub fn bytes(&self) -> u64 {
        self.len
    }

    /// Start empty again (after a checkpoint made everything in it durable elsewhere).
    pub fn reset(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.len = 0;
        Ok(())
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn encode(writes: &Writes) -> io::Result<Vec<u8>> {
    let too_long = || io::Error::new(io::ErrorKind::InvalidInput, "a write-ahead record over 4 GiB");
    let len32 = |n: usize| u32::try_from(n).map_err(|_| too_long());
    let mut payload = Vec::new();
    for (key, value) in writes {
        payload.push(u8::from(value.is_some()));
        payload.extend_from_slice(&len32(key.len())?.to_le_bytes());
        payload.extend_from_slice(key);
        if let Some(value) = value {
            payload.extend_from_slice(&len32(value.len())?.to_le_bytes());
            payload.extend_from_slice(value);
        }
    }
    let mut record = Vec::with_capacity(payload.len() + 8);
    record.extend_from_slice(&len32(payload.len())?.to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    record.extend_from_slice(&payload);
    Ok(record)
}

/// The groups in `bytes` and the length of its valid prefix; `Err(at)` for a bad record
/// followed by more data (damage, not a torn tail).
fn parse(bytes: &[u8]) -> Result<(Vec<Writes>, usize), u64> {
    let mut groups = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let record = record_at(bytes, at);
        match record {
            Some((writes, next)) => {
                groups.push(writes);
                at = next;
            }
            None => {
                // Torn if the record runs to (or past) the end; damaged if data follows it.
                let declared = bytes
                    .get(at..at + 4)
                    .and_then(|b| b.try_into().ok())
                    .map(|b: [u8; 4]| u32::from_le_bytes(b) as usize);
                let end = declared.map_or(usize::MAX, |n| at.saturating_add(8).saturating_add(n));
                if end < bytes.len() {
                    return Err(at as u64);
                }
                break;
            }
        }
    }
    Ok((groups, at))
}

/// The record at `at`, if whole and intact, and where the next one starts.
fn record_at(bytes: &[u8], at: usize) -> Option<(Writes, usize)> {
    let header = bytes.get(at..at.checked_add(8)?)?;
    let len = u32::from_le_bytes(header.get(..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header.get(4..8)?.try_into().ok()?);
    let start = at + 8;
    let payload = bytes.get(start..start.checked_add(len)?)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    Some((entries(payload)?, start + len))
}

fn entries(mut p: &[u8]) -> Option<Writes> {
    fn chunk<'a>(p: &mut &'a [u8]) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(p.get(..4)?.try_into().ok()?) as usize;
        let data = p.get(4..4usize.checked_add(len)?)?;
        *p = p.get(4 + len..)?;
        Some(data)
    }
    let mut writes = Vec::new();
    while let Some((&tag, rest)) = p.split_first() {
        p = rest;
        let key = chunk(&mut p)?.to_vec();
        let value = match tag {
            1 => Some(chunk(&mut p)?.to_vec()),
            0 => None,
            _ => return None,
        };
        writes.push((key, value));
    }
    Some(writes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(i: u8) -> Writes {
        vec![(vec![b'k', i], Some(vec![i; 100])), (vec![b'r', i], None)]
    }

    #[test]
    fn groups_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, none) = Wal::open(dir.path()).unwrap();
        assert!(none.is_empty());
        for i in 0..3 {
            wal.append(&group(i)).unwrap();
        }
        drop(wal);
        let (_, groups) = Wal::open(dir.path()).unwrap();
        assert_eq!(groups, (0..3).map(group).collect::<Vec<_>>());
    }

    #[test]
    fn a_torn_last_record_is_cut_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(&group(1)).unwrap();
        wal.append(&group(2)).unwrap();
        let whole = std::fs::metadata(dir.path().join(FILE)).unwrap().len();
        drop(wal);
        // Every possible tear of the last record.
        let bytes = std::fs::read(dir.path().join(FILE)).unwrap();
        let first_end = encode(&group(1)).unwrap().len();
        for cut in first_end + 1..whole as usize {
            std::fs::write(dir.path().join(FILE), &bytes[..cut]).unwrap();
            let (wal, groups) = Wal::open(dir.path()).unwrap();
            assert_eq!(groups, vec![group(1)], "cut at {cut}");
            assert_eq!(wal.bytes(), first_end as u64);
        }
    }

    #[test]
    fn damage_before_intact_records_is_an_error_not_a_silent_loss() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(&group(1)).unwrap();
        wal.append(&group(2)).unwrap();
        drop(wal);
        let mut bytes = std::fs::read(dir.path().join(FILE)).unwrap();
        bytes[10] ^= 0xFF; // inside the first record's payload
        std::fs::write(dir.path().join(FILE), &bytes).unwrap();
        assert!(matches!(Wal::open(dir.path()), Err(WalError::Damaged { at: 0, .. })));
    }

    #[test]
    fn reset_empties_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(&group(1)).unwrap();
        wal.reset().unwrap();
        wal.append(&group(2)).unwrap();
        drop(wal);
        assert_eq!(Wal::open(dir.path()).unwrap().1, vec![group(2)]);
    }
}
