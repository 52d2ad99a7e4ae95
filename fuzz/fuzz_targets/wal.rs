//! sled's write-ahead log read back from arbitrary bytes (a disk can return anything): never
//! panics; what it reads is whole groups, or damage at an offset inside the file, or a torn
//! tail that leaves the groups before it; and whatever it read, it can start afresh, take a
//! group and read that group back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protopay_storage_sled::disk::LogFile;
use protopay_storage_sled::wal::{Wal, WalError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A file in memory; clones share it.
#[derive(Debug, Clone)]
struct Bytes(Arc<Mutex<Vec<u8>>>, PathBuf);

impl LogFile for Bytes {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        Ok(self.0.lock().unwrap().clone())
    }
    fn write_at(&mut self, at: u64, bytes: &[u8]) -> io::Result<()> {
        let mut file = self.0.lock().unwrap();
        let (at, end) = (at as usize, at as usize + bytes.len());
        if file.len() < end {
            file.resize(end, 0);
        }
        file[at..end].copy_from_slice(bytes);
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn replace(&mut self, bytes: &[u8]) -> io::Result<()> {
        *self.0.lock().unwrap() = bytes.to_vec();
        Ok(())
    }
    fn path(&self) -> &Path {
        &self.1
    }
}

fuzz_target!(|data: &[u8]| {
    let len = data.len() as u64;
    let file = Bytes(Arc::new(Mutex::new(data.to_vec())), PathBuf::from("fuzz.wal"));
    // Free space a few records at a time: the log grows often, and each run stays small.
    match Wal::recover_growing_by(Box::new(file.clone()), 64) {
        Ok(recovered) => {
            assert!(recovered.torn_bytes <= len);
            assert!(recovered.groups.iter().all(|g| !g.is_empty()));
            let mut wal = recovered.wal;
            wal.reset().unwrap();
            let group = vec![(b"k".to_vec(), Some(b"v".to_vec()))];
            wal.append(&group).unwrap();
            drop(wal);
            let again = Wal::recover_growing_by(Box::new(file), 64).unwrap();
            assert_eq!(again.groups, vec![group]);
            assert_eq!(again.torn_bytes, 0);
        }
        Err(WalError::Damaged { at, .. }) => assert!(at < len.max(1)),
        Err(WalError::Io { .. }) => unreachable!("reading memory cannot fail"),
    }
});
