//! sled's write-ahead log read back from arbitrary bytes (a disk can return anything): never
//! panics; what it reads is whole groups, or damage at an offset inside the file, or a torn
//! tail that leaves the groups before it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protopay_storage_sled::disk::LogFile;
use protopay_storage_sled::wal::{Wal, WalError};
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug)]
struct Bytes(Vec<u8>, PathBuf);

impl LogFile for Bytes {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        Ok(self.0.clone())
    }
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn replace(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0 = bytes.to_vec();
        Ok(())
    }
    fn path(&self) -> &Path {
        &self.1
    }
}

fuzz_target!(|data: &[u8]| {
    let len = data.len() as u64;
    match Wal::recover(Box::new(Bytes(data.to_vec(), PathBuf::from("fuzz.wal")))) {
        Ok(recovered) => {
            assert!(recovered.torn_bytes <= len);
            assert!(recovered.groups.iter().all(|g| !g.is_empty()));
            // Whatever it read, it can start afresh and take a group.
            let mut wal = recovered.wal;
            wal.reset().unwrap();
            wal.append(&vec![(b"k".to_vec(), Some(b"v".to_vec()))]).unwrap();
        }
        Err(WalError::Damaged { at, .. }) => assert!(at < len.max(1)),
        Err(WalError::Io { .. }) => unreachable!("reading memory cannot fail"),
    }
});
