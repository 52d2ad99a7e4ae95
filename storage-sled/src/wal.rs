//! protopay's write-ahead log: what makes a commit on sled durable.
//!
//! sled 0.34 makes its writes "durable" with `sync_file_range`, which does not flush the
//! disk's volatile write cache (sled issues #1452, #1351): a power cut can lose a commit sled
//! reported flushed. So every commit group is first appended here and `fdatasync`ed — one
//! real sync, the physical floor of a durable write — and only then applied to sled, which
//! serves as the index and is synced for real (`fsync` of its files) at checkpoints, after
//! which the log starts empty again (a new file with the next epoch, replaced atomically). On
//! open, whatever the log holds is applied again: a record is the exact final value of every
//! key a group wrote, so applying it twice leaves the same state.
//!
//! The format, byte for byte, and the crash analysis of every step are in the crate's
//! `codec` documentation ("The write-ahead log"). In short: a file header with the epoch, then
//! records `[magic][payload length][epoch][crc32 of all of that and the payload][payload]`.
//! The checksum covers the length, and zeros are never a record (the magic is not zero), so
//! a hole left by a torn write never reads as data. On open, a bad record is a *torn tail* —
//! the last write, never acknowledged because its sync had not returned — only if no intact
//! record follows it anywhere in the file; then it is dropped. Otherwise it is *damage* to
//! synced data, and the log is refused with the byte where it starts: nothing acknowledged is
//! ever cut.
//!
//! The file is *preallocated*: written with zeros ahead of the records ([`GROW_BYTES`] at a
//! time), so that a commit's `fdatasync` writes data blocks only, and only the one sync that
//! grows the file has to change its size or allocate blocks. (The zeros are written for real: `fallocate` leaves
//! unwritten extents, whose conversion on first write is a metadata change the sync must
//! wait for.) Zeros are never a record, so what follows the last record is free space when
//! it is all zeros, and a torn tail otherwise.
//!
//! Logs written before format 5 (`[length][crc32 of payload][payload]`, no header) are read
//! once, by the same rules, and replaced by a current one.

use crate::disk::{FileLog, LogFile};
use std::io;
use std::path::{Path, PathBuf};

/// The log's file name in the store's directory.
pub const FILE: &str = "protopay.wal";

/// The first bytes of the file: what it is and its format.
const MAGIC: &[u8; 16] = b"protopay-wal/2\n\0";
/// The file header: [`MAGIC`], the epoch (u64 LE), a crc32 of both (u32 LE).
const HEADER_LEN: usize = 28;
/// The first bytes of every record: never zeros.
const RECORD_MAGIC: &[u8; 4] = b"PWR2";
/// A record's header: magic, payload length (u32 LE), epoch (u64 LE), crc32 (u32 LE) of the
/// first 16 bytes and the payload.
const RECORD_HEADER_LEN: usize = 20;
/// The header of a log written before format 5: payload length, crc32 of the payload.
const LEGACY_HEADER_LEN: usize = 8;

/// How much free space (zeros) the log writes ahead of its records at a time: at a reset,
/// and whenever a record would not fit. One sync in this many bytes of records changes the
/// file's size; the others write data only.
pub const GROW_BYTES: u64 = 256 << 10;

/// One group's writes: each key's final value, `None` for removed.
pub type Writes = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// The open log.
#[derive(Debug)]
pub struct Wal {
    file: Box<dyn LogFile>,
    /// The epoch of the file: every record carries it. A reset starts the next one.
    epoch: u64,
    /// Bytes of the file that are its header and intact records: the next record goes here.
    len: u64,
    /// The file's size: past `len` it holds zeros (free space).
    allocated: u64,
    /// How much free space to write ahead at a time ([`GROW_BYTES`] but in tests).
    grow_bytes: u64,
    /// The file holds records already applied, a torn tail or an older format: it must be
    /// reset (after the caller made what it replayed durable in sled) before it takes more.
    needs_reset: bool,
    /// Set when a write or sync failed in a way that leaves the file's state unknown (a
    /// failed `fdatasync` may have dropped dirty pages): every later append fails, until a
    /// restart reads back what is really on disk.
    broken: bool,
}

/// The log as opened, and what it held.
#[derive(Debug)]
pub struct Recovered {
    /// The log, to be reset (see [`Wal::needs_reset`]) once `groups` are durable elsewhere.
    pub wal: Wal,
    /// The groups it held, oldest first.
    pub groups: Vec<Writes>,
    /// Bytes of a torn last write that were dropped (up to the last one that is not zero):
    /// never acknowledged, since the sync that would have acknowledged them never returned.
    pub torn_bytes: u64,
}

/// Where, in the log, the last group sled applied ends. sled stores it with each group's
/// writes, so that a log found shorter than what sled holds — its last record bad although
/// sled applied it, hence synced — is known for damage, not taken for a torn write: dropping
/// that record would leave its writes half in sled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Logged {
    /// The log's epoch.
    pub epoch: u64,
    /// The byte after the group's record.
    pub end: u64,
}

impl Logged {
    /// As stored: epoch, then end, both u64 big-endian.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0; 16];
        out[..8].copy_from_slice(&self.epoch.to_be_bytes());
        out[8..].copy_from_slice(&self.end.to_be_bytes());
        out
    }

    /// From [`Logged::to_bytes`]; `None` if not 16 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Logged> {
        let bytes: &[u8; 16] = bytes.try_into().ok()?;
        let (epoch, end) = bytes.split_at(8);
        Some(Logged {
            epoch: u64::from_be_bytes(epoch.try_into().ok()?),
            end: u64::from_be_bytes(end.try_into().ok()?),
        })
    }
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
    /// Synced data in it is damaged: not a torn last write. Nothing was cut or changed.
    #[error(
        "write-ahead log {path} is damaged at byte {at}: {what}. Nothing was cut or changed. \
         It holds commits that were acknowledged and may be in no backup: stop, copy the \
         store's directory aside with this log, and check the disk; do not delete the log"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Where the bad bytes start.
        at: u64,
        /// What was found there.
        what: Damage,
    },
}

/// What a damaged log holds at the bad offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    /// A bad record with an intact one after it: a torn write is always the last one.
    #[error("a bad record, with an intact record after it at byte {0}")]
    BeforeIntactRecord(u64),
    /// The index (sled) holds a group that ends past the log's last intact record: that
    /// record was synced, so its being bad is damage.
    #[error("the last record is bad, but the index holds its writes (it was synced up to byte {0})")]
    AppliedRecord(u64),
    /// The file header is not protopay's (it is only ever written whole, by an atomic
    /// replace, so it cannot be torn).
    #[error("the file header is not a write-ahead log's")]
    Header,
    /// A record whose checksum holds does not decode.
    #[error("a record with a valid checksum does not decode")]
    Undecodable,
}

impl Recovered {
    /// Refuse the log if the index holds more than it: `logged` is what the index says it
    /// applied last. A torn tail was never synced, so never applied.
    pub fn check_against(&self, logged: Option<Logged>) -> Result<(), WalError> {
        match logged {
            Some(l) if l.epoch == self.wal.epoch && l.end > self.wal.len => Err(WalError::Damaged {
                path: self.wal.path().to_path_buf(),
                at: self.wal.len,
                what: Damage::AppliedRecord(l.end),
            }),
            _ => Ok(()),
        }
    }
}

impl Wal {
    /// Open (or create) the log in `dir` and read back what it holds.
    pub fn open(dir: &Path) -> Result<Recovered, WalError> {
        let file = FileLog::open(dir, FILE).map_err(|source| WalError::Io {
            path: dir.join(FILE),
            source,
        })?;
        Self::recover(Box::new(file))
    }

    /// Read back what `file` holds: its intact groups, a torn tail dropped, damage refused.
    pub fn recover(file: Box<dyn LogFile>) -> Result<Recovered, WalError> {
        Self::recover_growing_by(file, GROW_BYTES)
    }

    /// [`Wal::recover`], writing free space `grow_bytes` at a time (tests and fuzzing use
    /// little, so that the log grows often and stays small).
    pub fn recover_growing_by(mut file: Box<dyn LogFile>, grow_bytes: u64) -> Result<Recovered, WalError> {
        let bytes = file.read_all().map_err(|source| WalError::Io {
            path: file.path().to_path_buf(),
            source,
        })?;
        let parsed = parse(&bytes).map_err(|(at, what)| WalError::Damaged {
            path: file.path().to_path_buf(),
            at,
            what,
        })?;
        // Trailing zeros are free space; anything else after the last record is a torn write.
        let written = bytes.iter().rposition(|&b| b != 0).map_or(0, |last| last + 1);
        let torn_bytes = written.saturating_sub(parsed.valid) as u64;
        if torn_bytes > 0 {
            tracing::warn!(
                path = %file.path().display(),
                at = parsed.valid,
                bytes = torn_bytes,
                "dropping a torn last write (never acknowledged: its sync had not returned)"
            );
        }
        let needs_reset = parsed.legacy || !parsed.groups.is_empty() || torn_bytes > 0;
        let wal = Wal {
            file,
            epoch: parsed.epoch,
            len: parsed.valid as u64,
            allocated: bytes.len() as u64,
            grow_bytes: grow_bytes.max(1),
            needs_reset,
            broken: false,
        };
        Ok(Recovered {
            wal,
            groups: parsed.groups,
            torn_bytes,
        })
    }

    /// Whether the log must be [reset](Wal::reset) before it takes a group: it holds what
    /// recovery replayed, a torn tail, or an older format.
    pub fn needs_reset(&self) -> bool {
        self.needs_reset
    }

    /// Append one group and make it durable. On failure the group is not acknowledged, and
    /// the log takes no more groups in this process.
    pub fn append(&mut self, writes: &Writes) -> io::Result<()> {
        // An empty record would be a group that says nothing; the committer never logs one.
        assert!(!writes.is_empty(), "an empty group reached the write-ahead log");
        if self.broken {
            return Err(io::Error::other(
                "an earlier write to the log failed; restart to recover",
            ));
        }
        if self.needs_reset {
            return Err(io::Error::other("the log was not reset after recovery"));
        }
        let record = encode(self.epoch, writes)?;
        assert_eq!(
            intact_record(&record, 0, self.epoch).map(|(_, next)| next),
            Some(record.len()),
            "a record must read back as written"
        );
        let end = self.len + record.len() as u64;
        // Free space first, where the record would not fit: this sync is the rare one that
        // changes the file's size.
        let grown = if end > self.allocated {
            let to = end.div_ceil(self.grow_bytes) * self.grow_bytes;
            let zeros = vec![0; usize::try_from(to - self.allocated).map_err(io::Error::other)?];
            self.file.write_at(self.allocated, &zeros).map(|()| to)
        } else {
            Ok(self.allocated)
        };
        let written = grown.and_then(|allocated| {
            self.file.write_at(self.len, &record)?;
            self.file.sync()?;
            Ok(allocated)
        });
        match written {
            Ok(allocated) => {
                self.len = end;
                self.allocated = allocated;
                Ok(())
            }
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    /// Where the last group appended ends: to be stored in the index with its writes.
    pub fn logged(&self) -> Logged {
        Logged {
            epoch: self.epoch,
            end: self.len,
        }
    }

    /// Take no more groups (sled failed to apply one that is already in the log).
    pub fn poison(&mut self) {
        self.broken = true;
    }

    /// Bytes in the log's header and records (free space not counted).
    pub fn bytes(&self) -> u64 {
        self.len
    }

    /// Start empty again, in the next epoch (after a checkpoint made everything in it durable
    /// elsewhere). Refused once the log is broken: it may hold a group sled never applied,
    /// which only a restart's replay sets right.
    pub fn reset(&mut self) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other(
                "an earlier write to the log failed; restart to recover",
            ));
        }
        // A damaged-but-checksummed header could say anything; never overflow on it.
        let epoch = self.epoch.wrapping_add(1).max(1);
        let mut fresh = header(epoch);
        fresh.resize(
            usize::try_from(self.grow_bytes).unwrap_or(HEADER_LEN).max(HEADER_LEN),
            0,
        );
        if let Err(e) = self.file.replace(&fresh) {
            self.broken = true;
            return Err(e);
        }
        self.epoch = epoch;
        self.len = HEADER_LEN as u64;
        self.allocated = fresh.len() as u64;
        self.needs_reset = false;
        Ok(())
    }

    /// The file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

fn header(epoch: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&epoch.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&out).to_le_bytes());
    out
}

fn encode(epoch: u64, writes: &Writes) -> io::Result<Vec<u8>> {
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
    let mut record = Vec::with_capacity(RECORD_HEADER_LEN + payload.len());
    record.extend_from_slice(RECORD_MAGIC);
    record.extend_from_slice(&len32(payload.len())?.to_le_bytes());
    record.extend_from_slice(&epoch.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&record);
    crc.update(&payload);
    record.extend_from_slice(&crc.finalize().to_le_bytes());
    record.extend_from_slice(&payload);
    Ok(record)
}

/// What a log's bytes hold.
struct Parsed {
    groups: Vec<Writes>,
    epoch: u64,
    /// The length of the header and the intact records; what follows is a torn tail.
    valid: usize,
    /// Written before format 5.
    legacy: bool,
}

/// Read a log's bytes; `Err((at, what))` for damage.
fn parse(bytes: &[u8]) -> Result<Parsed, (u64, Damage)> {
    // A current log starts with its magic. If the magic itself is damaged, the intact records
    // after it still say which format this is: such a file is not an older log.
    let current = bytes.starts_with(&MAGIC[..13]) || next_intact(bytes, 0, None).is_some();
    if current {
        parse_current(bytes)
    } else {
        parse_legacy(bytes)
    }
}

fn parse_current(bytes: &[u8]) -> Result<Parsed, (u64, Damage)> {
    let epoch = bytes
        .get(..HEADER_LEN)
        .filter(|h| h.starts_with(MAGIC))
        .filter(|h| crc32fast::hash(&h[..24]).to_le_bytes() == h[24..28])
        .map(|h| u64::from_le_bytes(h[16..24].try_into().unwrap_or_default()))
        .ok_or((0, Damage::Header))?;
    let mut groups = Vec::new();
    let mut at = HEADER_LEN;
    while at < bytes.len() {
        match intact_record(bytes, at, epoch) {
            Some((payload, next)) => {
                groups.push(entries(payload).ok_or((at as u64, Damage::Undecodable))?);
                at = next;
            }
            None => {
                if let Some(intact) = next_intact(bytes, at + 1, Some(epoch)) {
                    return Err((at as u64, Damage::BeforeIntactRecord(intact as u64)));
                }
                break;
            }
        }
    }
    Ok(Parsed {
        groups,
        epoch,
        valid: at,
        legacy: false,
    })
}

/// The record at `at` of `epoch`, if whole and intact: its payload and where the next starts.
fn intact_record(bytes: &[u8], at: usize, epoch: u64) -> Option<(&[u8], usize)> {
    let (payload, next, found) = record_of_any_epoch(bytes, at)?;
    (found == epoch).then_some((payload, next))
}

fn record_of_any_epoch(bytes: &[u8], at: usize) -> Option<(&[u8], usize, u64)> {
    let head = bytes.get(at..at.checked_add(RECORD_HEADER_LEN)?)?;
    if &head[..4] != RECORD_MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(head[4..8].try_into().ok()?) as usize;
    let epoch = u64::from_le_bytes(head[8..16].try_into().ok()?);
    let crc = u32::from_le_bytes(head[16..20].try_into().ok()?);
    let start = at + RECORD_HEADER_LEN;
    let payload = bytes.get(start..start.checked_add(len)?)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&head[..16]);
    hasher.update(payload);
    (len > 0 && hasher.finalize() == crc).then_some((payload, start + len, epoch))
}

/// The offset of the first intact record (of `epoch`, or of any) at or after `from`.
fn next_intact(bytes: &[u8], from: usize, epoch: Option<u64>) -> Option<usize> {
    (from..bytes.len().saturating_sub(RECORD_HEADER_LEN)).find(|&at| {
        bytes[at..].starts_with(RECORD_MAGIC)
            && record_of_any_epoch(bytes, at).is_some_and(|(_, _, e)| epoch.is_none_or(|want| want == e))
    })
}

/// A log written before format 5: `[length][crc32 of payload][payload]`, no header, and
/// (as its writer did) empty records allowed. A bad record is a torn tail only if no intact
/// record with a payload follows it: a run of zeros reads as empty records, so those prove
/// nothing.
fn parse_legacy(bytes: &[u8]) -> Result<Parsed, (u64, Damage)> {
    let mut groups = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match legacy_record(bytes, at) {
            Some((payload, next)) => {
                groups.push(entries(payload).ok_or((at as u64, Damage::Undecodable))?);
                at = next;
            }
            None => {
                let intact =
                    (at + 1..bytes.len()).find(|&o| legacy_record(bytes, o).is_some_and(|(p, _)| !p.is_empty()));
                if let Some(intact) = intact {
                    return Err((at as u64, Damage::BeforeIntactRecord(intact as u64)));
                }
                break;
            }
        }
    }
    // Empty records said nothing: they are not groups.
    groups.retain(|g: &Writes| !g.is_empty());
    Ok(Parsed {
        groups,
        epoch: 0,
        valid: at,
        legacy: true,
    })
}

fn legacy_record(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let head = bytes.get(at..at.checked_add(LEGACY_HEADER_LEN)?)?;
    let len = u32::from_le_bytes(head[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(head[4..8].try_into().ok()?);
    let start = at + LEGACY_HEADER_LEN;
    let payload = bytes.get(start..start.checked_add(len)?)?;
    (crc32fast::hash(payload) == crc).then_some((payload, start + len))
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
mod tests;
