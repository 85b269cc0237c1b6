//! [`backup`]: an online, consistent copy of a database file, taken while a server may be
//! writing to it.
//!
//! SQLite's online backup API copies the pages of the source to the destination. Copying in
//! several steps would restart whenever another connection writes between two steps, which
//! a busy server does all the time, so the copy is one step. In WAL mode that step reads one
//! snapshot while the server's writer goes on committing, and the copy contains exactly the
//! transactions committed before the step began.
//!
//! The copy is written to `<out>.partial` first, checked with `PRAGMA quick_check`, flushed
//! to disk and then renamed to `<out>`, so `<out>` never names a half-written file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::schema::SCHEMA_VERSION;

/// How long one attempt waits for a lock the server holds (a checkpoint, or a writer in
/// rollback-journal mode).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the copy step is retried while the source stays busy or locked.
const BUSY_RETRIES: u32 = 100;

/// The pause between two attempts of a busy copy step.
const BUSY_PAUSE: Duration = Duration::from_millis(50);

/// The summary of a finished [`backup`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupReport {
    /// Database pages copied.
    pub pages: u64,
    /// Size of the copy, in bytes.
    pub bytes: u64,
    /// The copy's schema version (`PRAGMA user_version`).
    pub schema_version: u32,
}

/// A failed [`backup`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The destination exists; a backup never overwrites a file.
    #[error("the backup destination {} already exists; choose a new file or delete it first", path.display())]
    DestinationExists {
        /// The destination.
        path: PathBuf,
    },
    /// The source is missing or cannot be opened.
    #[error("opening the sqlite database {} failed: {source}", path.display())]
    OpenSource {
        /// The source database.
        path: PathBuf,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// The source's schema version is not one this crate writes.
    #[error(
        "{} is not an Aegis database this version can back up: its schema version is {found}, expected 1 to {SCHEMA_VERSION}",
        path.display()
    )]
    NotAegis {
        /// The source database.
        path: PathBuf,
        /// Its `PRAGMA user_version`.
        found: i64,
    },
    /// SQLite failed while copying or checking the copy.
    #[error("backing up {} to {} failed: {source}", from.display(), to.display())]
    Copy {
        /// The source database.
        from: PathBuf,
        /// The file being written.
        to: PathBuf,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// The source stayed locked through every retry.
    #[error("the sqlite database {} stayed locked; try the backup again", path.display())]
    Busy {
        /// The source database.
        path: PathBuf,
    },
    /// The copy failed `PRAGMA quick_check`.
    #[error("the backup {} failed its integrity check: {message}", path.display())]
    Corrupt {
        /// The file that was checked.
        path: PathBuf,
        /// The first problem `quick_check` reported.
        message: String,
    },
    /// Writing, flushing or renaming the copy failed.
    #[error("writing the backup {} failed: {source}", path.display())]
    Io {
        /// The file being written.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Copies the database at `source` to the new file `destination` in one consistent snapshot.
/// A server may have `source` open and keep writing during the copy. Blocks until the copy
/// is written and flushed, so async callers run it on a blocking thread.
///
/// # Errors
///
/// Fails when `destination` exists, `source` is missing or not an Aegis database, stays
/// locked, or the copy cannot be written or fails its integrity check. A failed backup
/// removes its partial file.
pub fn backup(source: &Path, destination: &Path) -> Result<BackupReport, BackupError> {
    if destination.exists() {
        return Err(BackupError::DestinationExists { path: destination.to_owned() });
    }
    let source_conn = open_source(source)?;
    let partial = partial_path(destination);
    if partial.exists() {
        // Left by a backup that was killed; it was never renamed, so nothing refers to it.
        std::fs::remove_file(&partial).map_err(io_error(&partial))?;
    }

    let copied = copy(&source_conn, source, &partial);
    let report = copied.and_then(|pages| finish(&partial, destination, pages));
    if report.is_err() {
        // Removal is best effort: the error being returned matters more.
        let _ = std::fs::remove_file(&partial);
    }
    report
}

/// Opens the source without creating it, and checks that it is an Aegis database.
fn open_source(path: &Path) -> Result<Connection, BackupError> {
    let open_failed = |source| BackupError::OpenSource { path: path.to_owned(), source };
    // Read-write without CREATE: a missing file fails instead of being created, and SQLite can
    // use the server's WAL index, which a read-only connection could not create if missing.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(open_failed)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_failed)?;
    let found: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(open_failed)?;
    if !(1..=i64::from(SCHEMA_VERSION)).contains(&found) {
        return Err(BackupError::NotAegis { path: path.to_owned(), found });
    }
    Ok(conn)
}

/// Copies every page in one step and returns how many were copied.
fn copy(source_conn: &Connection, source: &Path, partial: &Path) -> Result<u64, BackupError> {
    let copy_failed = |error| BackupError::Copy { from: source.to_owned(), to: partial.to_owned(), source: error };
    let mut destination_conn = Connection::open(partial).map_err(copy_failed)?;
    let backup = Backup::new(source_conn, &mut destination_conn).map_err(copy_failed)?;

    for _ in 0..BUSY_RETRIES {
        match backup.step(-1).map_err(copy_failed)? {
            StepResult::Done => {
                let pages = backup.progress().pagecount;
                return Ok(u64::try_from(pages).unwrap_or(0));
            }
            // A step of -1 pages copies everything; `More` is not expected, but stepping
            // again is the documented response to it.
            StepResult::More => {}
            StepResult::Busy | StepResult::Locked => std::thread::sleep(BUSY_PAUSE),
            // `StepResult` is non-exhaustive; treat a future result like a busy source.
            _ => std::thread::sleep(BUSY_PAUSE),
        }
    }
    Err(BackupError::Busy { path: source.to_owned() })
}

/// Checks the copy, flushes it to disk and renames it to `destination`.
fn finish(partial: &Path, destination: &Path, pages: u64) -> Result<BackupReport, BackupError> {
    let check_failed = |error| BackupError::Copy { from: partial.to_owned(), to: partial.to_owned(), source: error };
    let conn = Connection::open_with_flags(partial, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(check_failed)?;
    let verdict: String = conn.query_row("PRAGMA quick_check", [], |row| row.get(0)).map_err(check_failed)?;
    if verdict != "ok" {
        return Err(BackupError::Corrupt { path: partial.to_owned(), message: verdict });
    }
    let schema_version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(check_failed)?;
    drop(conn);

    let file = std::fs::File::open(partial).map_err(io_error(partial))?;
    file.sync_all().map_err(io_error(partial))?;
    let bytes = file.metadata().map_err(io_error(partial))?.len();
    std::fs::rename(partial, destination).map_err(io_error(destination))?;
    sync_parent(destination).map_err(io_error(destination))?;

    Ok(BackupReport { pages, bytes, schema_version: u32::try_from(schema_version).unwrap_or(0) })
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io { path: path.to_owned(), source }
}

fn partial_path(destination: &Path) -> PathBuf {
    let mut name = destination.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Flushes the directory entry of a renamed file, so the rename survives a power loss.
#[cfg(unix)]
fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(parent)?.sync_all()
}

#[cfg(not(unix))]
fn sync_parent(_path: &Path) -> std::io::Result<()> {
    Ok(())
}
