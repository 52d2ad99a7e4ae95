//! A disk for tests that does at a power cut what a real one may (after TigerBeetle's
//! `src/testing/storage.zig`): writes not yet synced are lost, or kept, sector by sector or
//! page by page in any order, with the file's new size kept or not (a kept size with lost
//! data reads as zeros); a replace survives whole or not at all. It can also be told to let
//! one sync fail (dropping unsynced pages, as Linux may after a failed `fdatasync`), to lie
//! about syncs, and to flip a bit in synced data. Deterministic: everything it decides
//! comes from its seed.

use crate::disk::LogFile;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// A handle on the simulated disk holding one log file; clones share it.
#[derive(Clone, Debug)]
pub(crate) struct SimDisk {
    state: Arc<Mutex<State>>,
    path: PathBuf,
}

#[derive(Debug)]
struct State {
    /// What survives a power cut.
    durable: Vec<u8>,
    /// What reads see while the power is on: `durable` and the writes not yet synced.
    current: Vec<u8>,
    rng: Rng,
    /// Operations so far: writes, syncs, replaces and [`SimDisk::tick`]s.
    ops: u64,
    faults: Faults,
    off: bool,
}

/// When the disk misbehaves, by operation number (the first is 1).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Faults {
    /// The power goes during this operation: it fails, and so does every later one.
    pub cut_at: Option<u64>,
    /// From this operation on, every sync returns `Ok` without syncing (a disk that ignores
    /// flushes, or a build without its `fdatasync`).
    pub lie_from: Option<u64>,
    /// This operation, if a sync, fails, and the unsynced writes are partly dropped.
    pub fail_at: Option<u64>,
}

impl SimDisk {
    /// An empty disk.
    pub(crate) fn new(seed: u64) -> Self {
        SimDisk {
            state: Arc::new(Mutex::new(State {
                durable: Vec::new(),
                current: Vec::new(),
                rng: Rng(seed),
                ops: 0,
                faults: Faults::default(),
                off: false,
            })),
            path: PathBuf::from("sim/protopay.wal"),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Misbehave from now on as `faults` says (operation numbers count from now).
    pub(crate) fn arm(&self, faults: Faults) {
        let mut s = self.state();
        let now = s.ops;
        let later = |op: Option<u64>| op.map(|n| now + n);
        s.faults = Faults {
            cut_at: later(faults.cut_at),
            lie_from: later(faults.lie_from),
            fail_at: later(faults.fail_at),
        };
    }

    /// Operations since the disk was made.
    pub(crate) fn ops(&self) -> u64 {
        self.state().ops
    }

    /// One operation that is not the log's (a simulated sled sync): it can be where the power
    /// goes.
    pub(crate) fn tick(&self) -> io::Result<()> {
        self.state().step().map(|_| ())
    }

    /// Power back on: what a cut left is what the disk holds.
    pub(crate) fn restart(&self) {
        let mut s = self.state();
        if s.off || s.current != s.durable {
            s.tear();
        }
        s.off = false;
        s.faults = Faults::default();
    }

    /// Flip one bit of synced data at `at` (which must be inside the file).
    pub(crate) fn flip(&self, at: usize, bit: u8) {
        let mut s = self.state();
        s.durable[at] ^= 1 << (bit % 8);
        s.current = s.durable.clone();
    }

    /// The synced bytes.
    pub(crate) fn durable(&self) -> Vec<u8> {
        self.state().durable.clone()
    }
}

impl State {
    /// Count an operation: `Err` if the power is off or goes now.
    fn step(&mut self) -> io::Result<u64> {
        if self.off {
            return Err(io::Error::other("the power is off"));
        }
        self.ops += 1;
        if self.faults.cut_at == Some(self.ops) {
            self.off = true;
            return Err(io::Error::other("the power went"));
        }
        Ok(self.ops)
    }

    /// What a power cut leaves of the writes not yet synced: each changed sector kept or not,
    /// the file's size the old one, the new one or in between (zeros where nothing was kept).
    fn tear(&mut self) {
        let sector = if self.rng.below(2) == 0 { 512 } else { 4096 };
        let old = self.durable.len();
        let new = self.current.len();
        let len = match self.rng.below(3) {
            0 => old,
            1 => new,
            _ => old + self.rng.below((new.saturating_sub(old) + 1) as u64) as usize,
        };
        let mut image = self.durable.clone();
        image.resize(len.max(old), 0);
        let mut start = 0;
        while start < new {
            let end = (start + sector).min(new);
            let changed = self.durable.get(start..end) != Some(&self.current[start..end]);
            if changed && self.rng.below(2) == 0 {
                // A kept sector past the size that survived is not in the file.
                let to = end.min(image.len());
                if start < to {
                    image[start..to].copy_from_slice(&self.current[start..to]);
                }
            }
            start = end;
        }
        self.durable = image;
        self.current = self.durable.clone();
    }
}

impl LogFile for SimDisk {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let s = self.state();
        if s.off {
            return Err(io::Error::other("the power is off"));
        }
        Ok(s.current.clone())
    }

    fn write_at(&mut self, at: u64, bytes: &[u8]) -> io::Result<()> {
        let mut s = self.state();
        if s.off {
            return Err(io::Error::other("the power is off"));
        }
        // The bytes reach the page cache before the power can go: a cut here may keep any of
        // them.
        let at = usize::try_from(at).map_err(io::Error::other)?;
        let end = at + bytes.len();
        if s.current.len() < end {
            s.current.resize(end, 0);
        }
        s.current[at..end].copy_from_slice(bytes);
        s.step().map(|_| ())
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut s = self.state();
        let op = s.step()?;
        if s.faults.lie_from.is_some_and(|from| op >= from) {
            return Ok(());
        }
        if s.faults.fail_at == Some(op) {
            s.tear();
            return Err(io::Error::other("the sync failed"));
        }
        s.durable = s.current.clone();
        Ok(())
    }

    fn replace(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut s = self.state();
        if s.off {
            return Err(io::Error::other("the power is off"));
        }
        s.ops += 1;
        if s.faults.cut_at == Some(s.ops) {
            // A rename is atomic: the new file, or the old one with what was synced of it.
            s.off = true;
            if s.rng.below(2) == 0 {
                s.durable = bytes.to_vec();
                s.current = s.durable.clone();
            }
            return Err(io::Error::other("the power went"));
        }
        s.durable = bytes.to_vec();
        s.current = s.durable.clone();
        Ok(())
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

/// splitmix64: small, seedable, good enough to pick faults.
#[derive(Debug)]
pub(crate) struct Rng(pub u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
