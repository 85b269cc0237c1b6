//! Errors of opening a store, and the mapping of SQLite and JSON errors to
//! [`StorageError`].

use std::path::PathBuf;

use aegis_core::storage::{StorageError, StorageErrorKind};
use rusqlite::ErrorCode;
use rusqlite::ffi;

/// An error of another library, kept as the source of a [`StoreOpenError`] without making that
/// library's types part of this crate's API.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A failed [`SqliteStore::open`](crate::SqliteStore::open).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreOpenError {
    /// An option of the [`SqliteConfig`](crate::SqliteConfig) is out of range.
    #[error("invalid sqlite store configuration: {0}")]
    InvalidConfig(String),
    /// SQLite could not open or configure the file.
    #[error("opening the sqlite database {} failed: {source}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        #[source]
        source: BoxError,
    },
    /// Another store, usually another `aegis serve` process, has the file open. A second
    /// writer would re-queue the first one's runs as if that process had died.
    #[error(
        "the sqlite database {} is in use by another process (its lock file {} is held); stop that process or use another file",
        path.display(),
        lock.display()
    )]
    InUse {
        /// The database file.
        path: PathBuf,
        /// The lock file beside it.
        lock: PathBuf,
    },
    /// The file cannot be put in WAL mode, which the store's readers and writer rely on.
    #[error(
        "the sqlite database {} cannot use WAL mode (journal_mode is {journal_mode}); use a file on a local file system",
        path.display()
    )]
    WalUnsupported {
        /// The database file.
        path: PathBuf,
        /// The journal mode SQLite kept.
        journal_mode: String,
    },
    /// The file was written by a newer version of this crate, whose schema this version does
    /// not know.
    #[error(
        "the sqlite database {} has schema version {found} but this version of aegis-store-sqlite supports versions up to {supported}; open it with a newer Aegis or use another file",
        path.display()
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The file's `PRAGMA user_version`.
        found: i64,
        /// The newest schema version this crate migrates to.
        supported: u32,
    },
    /// A migration failed. Its transaction was rolled back, so the file stays at the previous
    /// version.
    #[error("migrating the sqlite database {} to schema version {version} failed: {source}", path.display())]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// The version the failed migration would have reached.
        version: u32,
        /// The SQLite error.
        #[source]
        source: BoxError,
    },
    /// Re-queueing the runs left `active` by an earlier process failed.
    #[error("re-queueing the active runs of the sqlite database {} failed: {source}", path.display())]
    Requeue {
        /// The database file.
        path: PathBuf,
        /// The store error.
        #[source]
        source: StorageError,
    },
    /// The operating system could not start the writer thread.
    #[error("starting the sqlite writer thread failed: {0}")]
    WriterThread(#[source] std::io::Error),
    /// The writer thread panicked while opening the database.
    #[error("the sqlite writer thread stopped while opening {}", path.display())]
    WriterStopped {
        /// The database file.
        path: PathBuf,
    },
}

impl StoreOpenError {
    pub(crate) fn open(path: PathBuf, source: rusqlite::Error) -> StoreOpenError {
        StoreOpenError::Open { path, source: Box::new(source) }
    }
}

/// Maps a failed statement to a `Backend` error that names what was being done.
pub(crate) fn backend(action: &str, error: rusqlite::Error) -> StorageError {
    StorageError::backend(format!("{action} failed"), error)
}

/// Maps a failed insert of a row with primary key `id` to `Conflict` when the key exists.
pub(crate) fn insert_failed(kind: &str, id: impl std::fmt::Display, error: rusqlite::Error) -> StorageError {
    if is_unique_violation(&error) {
        return StorageError::new(StorageErrorKind::Conflict, format!("a {kind} with id {id} already exists"));
    }
    StorageError::backend(format!("inserting {kind} {id} failed"), error)
}

fn is_unique_violation(error: &rusqlite::Error) -> bool {
    let Some(sqlite) = error.sqlite_error() else {
        return false;
    };
    sqlite.code == ErrorCode::ConstraintViolation
        && matches!(sqlite.extended_code, ffi::SQLITE_CONSTRAINT_PRIMARYKEY | ffi::SQLITE_CONSTRAINT_UNIQUE)
}

/// Maps a JSON column that does not decode (a damaged or hand-edited row) to a `Backend` error.
pub(crate) fn corrupt(kind: &str, id: impl std::fmt::Display, error: serde_json::Error) -> StorageError {
    StorageError::backend(format!("the stored {kind} {id} is not valid: decoding its JSON failed"), error)
}

/// Maps a document that does not encode to a `Backend` error.
pub(crate) fn encode_failed(kind: &str, id: impl std::fmt::Display, error: serde_json::Error) -> StorageError {
    StorageError::backend(format!("encoding {kind} {id} as JSON failed"), error)
}
