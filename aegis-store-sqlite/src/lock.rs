//! The lock that keeps two stores from writing one database file.
//!
//! SQLite lets several processes write one file, one transaction at a time. This store,
//! though, assumes it is the file's only writer. At open it re-queues every `active` run,
//! because a run left active can only belong to a process that died. A second `aegis serve` on the same
//! file would take over the first one's runs and call their models again. So the store holds
//! an exclusive advisory lock on `<database>.lock` while it is open. The kernel releases it
//! when the process ends, a crash included, so a restart after `kill -9` opens at once.
//!
//! The lock is on a file of its own rather than on the database. On Linux, closing any
//! descriptor of a file drops every POSIX lock the process holds on it, SQLite's own
//! included. So the store never opens a second descriptor of the database.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::StoreOpenError;

/// An exclusive lock on a database file's lock file, released when dropped.
#[derive(Debug)]
pub(crate) struct FileLock {
    /// Kept open for the lock's lifetime.
    _file: File,
}

impl FileLock {
    /// Takes the lock of the database at `path`, creating the lock file when missing.
    pub(crate) fn acquire(path: &Path) -> Result<FileLock, StoreOpenError> {
        let lock = lock_path(path);
        let open_failed = |error: std::io::Error| StoreOpenError::Open { path: lock.clone(), source: Box::new(error) };
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(&lock).map_err(open_failed)?;
        match file.try_lock() {
            Ok(()) => Ok(FileLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(StoreOpenError::InUse { path: path.to_owned(), lock }),
            Err(TryLockError::Error(error)) => Err(open_failed(error)),
        }
    }
}

/// Returns the lock file of the database at `path`: the same name with `.lock` appended.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}
