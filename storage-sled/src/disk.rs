//! The write-ahead log's file, behind a trait: the log's rules (what is a record, what is a
//! tear, what is damage) are tested against a simulated disk that loses, tears and flips what
//! a real one can (`sim_disk.rs`), and run in production on [`FileLog`].
//!
//! Only four operations touch the file, and each has one meaning for a crash:
//! a write is not durable until the next sync returns; a replace is atomic (after a crash
//! the file is wholly the old one or wholly the new one) and durable when it returns.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The log's file as the log uses it.
pub trait LogFile: Send + std::fmt::Debug {
    /// Everything the file holds, as a read after a restart sees it.
    fn read_all(&mut self) -> io::Result<Vec<u8>>;
    /// Write `bytes` at offset `at` (the file grows if that is past its end); durable only
    /// once a later [`LogFile::sync`] returns.
    fn write_at(&mut self, at: u64, bytes: &[u8]) -> io::Result<()>;
    /// Make every append so far durable (`fdatasync`).
    fn sync(&mut self) -> io::Result<()>;
    /// Replace the whole file by `bytes`, atomically and durably.
    fn replace(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Where it is, for messages.
    fn path(&self) -> &Path;
}

/// The log on the real file system.
#[derive(Debug)]
pub struct FileLog {
    dir: PathBuf,
    path: PathBuf,
    file: File,
}

impl FileLog {
    /// Open (or create) the file `name` in `dir`.
    pub fn open(dir: &Path, name: &str) -> io::Result<FileLog> {
        let path = dir.join(name);
        let file = Self::open_rw(&path)?;
        Ok(FileLog {
            dir: dir.to_path_buf(),
            path,
            file,
        })
    }

    fn open_rw(path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
    }
}

impl LogFile for FileLog {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        File::open(&self.path)?.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn write_at(&mut self, at: u64, bytes: &[u8]) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(at))?;
        self.file.write_all(bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Write a sibling file, sync it, rename it over the log, sync the directory: a rename is
    /// atomic, and the directory's sync makes the new name the durable one.
    fn replace(&mut self, bytes: &[u8]) -> io::Result<()> {
        let fresh = self.path.with_extension("wal.new");
        {
            let mut file = File::create(&fresh)?;
            file.write_all(bytes)?;
            file.sync_all()?;
        }
        std::fs::rename(&fresh, &self.path)?;
        File::open(&self.dir)?.sync_all()?;
        self.file = Self::open_rw(&self.path)?;
        Ok(())
    }

    fn path(&self) -> &Path {
        &self.path
    }
}
