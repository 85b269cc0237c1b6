//! The read connections: a small pool of read-only connections, used from Tokio's blocking
//! thread pool or, for reads of one row by key, on the calling thread.
//!
//! A read takes a permit (so at most `read_connections` reads run at once), then runs on
//! `tokio::task::spawn_blocking` with an idle connection. WAL mode lets these reads run while
//! the writer commits, and every read returns the writes committed before it started.
//!
//! # Point reads on the calling thread
//!
//! A read of one row by its primary key takes a few microseconds once the page is cached. That
//! is less than handing it to a blocking thread and back, which costs two thread switches. On a
//! server pinned to one core those switches made up about a third of the time of
//! `GET /run/{id}`: inline, the same server served 40 % more requests per second. So
//! [`ReaderPool::read_now`] runs such reads where it is called when a connection is idle at
//! once, and queues for the blocking pool like [`ReaderPool::read`] when none is. The cost is
//! that a read of a page not in memory stalls the runtime thread for one disk read. Scans,
//! sums and listings take longer as the data grows, so they always go to the blocking pool.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use aegis_core::storage::{StorageError, StorageErrorKind};
use rusqlite::Connection;
use tokio::sync::Semaphore;

use crate::config::SqliteConfig;
use crate::error::{StoreOpenError, backend};
use crate::schema;

/// Read-only connections to one database file.
#[derive(Debug)]
pub(crate) struct ReaderPool {
    path: PathBuf,
    config: SqliteConfig,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl ReaderPool {
    /// Opens every read connection up front, so a file the process cannot read fails at open.
    pub(crate) async fn open(path: PathBuf, config: SqliteConfig) -> Result<Arc<ReaderPool>, StoreOpenError> {
        let size = config.read_connections;
        let (thread_path, thread_config) = (path.clone(), config.clone());
        let opened = tokio::task::spawn_blocking(move || {
            (0..size).map(|_| schema::open_reader(&thread_path, &thread_config)).collect::<Result<Vec<_>, _>>()
        })
        .await;

        let connections = match opened {
            Ok(Ok(connections)) => connections,
            Ok(Err(error)) => return Err(StoreOpenError::open(path, error)),
            Err(panicked) => return Err(StoreOpenError::Open { path, source: Box::new(panicked) }),
        };
        Ok(Arc::new(ReaderPool {
            path,
            config,
            idle: Mutex::new(connections),
            permits: Arc::new(Semaphore::new(size)),
        }))
    }

    /// Runs `work` on a read connection off the async runtime, inside one read transaction
    /// so that a run and its messages come from the same snapshot.
    pub(crate) async fn read<T, F>(self: &Arc<Self>, work: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StorageError> + Send + 'static,
    {
        let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
            return Err(StorageError::new(StorageErrorKind::Unavailable, "the sqlite read pool is closed"));
        };
        let pool = Arc::clone(self);

        let joined = tokio::task::spawn_blocking(move || {
            let conn = pool.take()?;
            let result = read_in_transaction(&conn, work);
            pool.idle().push(conn);
            drop(permit);
            result
        })
        .await;

        match joined {
            Ok(result) => result,
            Err(error) => Err(StorageError::new(StorageErrorKind::Backend, format!("a sqlite read panicked: {error}"))),
        }
    }

    /// Runs `work` as [`ReaderPool::read`] does, but on the calling thread when a connection
    /// is free now. Only for reads of a few rows by key (see the module docs).
    pub(crate) async fn read_now<T, F>(self: &Arc<Self>, work: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StorageError> + Send + 'static,
    {
        match self.take_now() {
            Some(inline) => inline.run(|conn| read_in_transaction(conn, work)),
            None => self.read(work).await,
        }
    }

    /// Runs `work` as [`ReaderPool::read_now`] does, but without a read transaction on the
    /// calling thread, because one statement reads one snapshot on its own. Work that may
    /// need a second statement runs it inside [`consistent`].
    pub(crate) async fn read_now_single<T, F>(self: &Arc<Self>, work: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StorageError> + Send + 'static,
    {
        match self.take_now() {
            Some(inline) => inline.run(work),
            None => self.read(work).await,
        }
    }

    /// Takes a permit and a connection if both are free now.
    fn take_now(&self) -> Option<InlineRead<'_>> {
        let permit = self.permits.try_acquire().ok()?;
        let conn = self.take().ok()?;
        Some(InlineRead { pool: self, conn: Some(conn), _permit: permit })
    }

    /// Takes an idle connection, or opens a new one to replace a connection lost to a panic.
    fn take(&self) -> Result<Connection, StorageError> {
        if let Some(conn) = self.idle().pop() {
            return Ok(conn);
        }
        schema::open_reader(&self.path, &self.config).map_err(|error| backend("opening a read connection", error))
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Connection>> {
        // The vector is valid after any panic: a connection is either in it or not.
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A connection and its permit, taken for a read on the calling thread. Both go back when it
/// drops, also if the read panics.
struct InlineRead<'a> {
    pool: &'a ReaderPool,
    conn: Option<Connection>,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl InlineRead<'_> {
    fn run<T>(self, work: impl FnOnce(&Connection) -> Result<T, StorageError>) -> Result<T, StorageError> {
        match &self.conn {
            Some(conn) => work(conn),
            None => {
                Err(StorageError::new(StorageErrorKind::Backend, "the read connection of an inline read is missing"))
            }
        }
    }
}

impl Drop for InlineRead<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        // A read that panicked can leave a transaction open, whose old snapshot the next read
        // would see. Such a connection goes back only once it is out of it.
        if conn.is_autocommit() {
            self.pool.idle().push(conn);
            return;
        }
        match run_cached(&conn, "ROLLBACK") {
            Ok(()) => self.pool.idle().push(conn),
            Err(error) => tracing::warn!(%error, "closing a read connection whose transaction could not end"),
        }
    }
}

/// Runs `work` inside a read transaction, or inside the one `conn` is already in, so that
/// everything it reads comes from one snapshot.
pub(crate) fn consistent<T>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    if !conn.is_autocommit() {
        return work(conn);
    }
    read_in_transaction(conn, work)
}

fn read_in_transaction<T>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    // Cached statements rather than rusqlite's `Transaction`, which parses `BEGIN` and
    // `ROLLBACK` again on every call: that parsing cost a tenth of a point read.
    if !conn.is_autocommit() {
        // An earlier read's rollback failed; `BEGIN` inside its transaction would fail.
        run_cached(conn, "ROLLBACK").map_err(|error| backend("ending an earlier read transaction", error))?;
    }
    run_cached(conn, "BEGIN").map_err(|error| backend("starting a read transaction", error))?;

    let result = work(conn);

    // Rolling back a read only releases its snapshot, so the read's result is valid either way.
    if let Err(error) = run_cached(conn, "ROLLBACK") {
        tracing::warn!(%error, "ending a sqlite read transaction failed");
    }
    result
}

fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}
