//! sled's advisory file lock, as the kernel reports it.

use std::path::Path;

/// Whether another open file holds the exclusive advisory lock sled takes on `db_file` while
/// the store is open (an absent file holds none).
pub(crate) fn held_by_another(db_file: &Path) -> bool {
    let Ok(file) = std::fs::OpenOptions::new().read(true).write(true).open(db_file) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(std::fs::TryLockError::WouldBlock) => true,
        // Locks unsupported here: let sled try, and say what it finds.
        Err(std::fs::TryLockError::Error(_)) => false,
    }
}

/// Whether sled's lock on `db_file` can be taken within a few seconds (it is released again at
/// once).
pub(crate) fn lock_released(db_file: &Path) -> bool {
    for _ in 0..5_000 {
        if !held_by_another(db_file) {
            return true;
        }
        // Waiting on another thread of this process to drop its handle; it takes microseconds.
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    false
}
