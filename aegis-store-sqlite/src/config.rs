//! Options of [`SqliteStore::open`](crate::SqliteStore::open).

use std::time::Duration;

use crate::error::StoreOpenError;

/// The durability of commits: `PRAGMA synchronous` in WAL mode.
///
/// Neither mode can corrupt the database. They differ in which crashes a commit survives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Synchronous {
    /// `NORMAL`: a commit survives a crash of the process, because it is in the operating
    /// system's cache once `COMMIT` returns. The last commits before a power loss or an
    /// operating system crash can roll back, since the WAL is synced only at checkpoints.
    #[default]
    Normal,
    /// `FULL`: every commit syncs the WAL to disk, so it also survives a power loss, at the
    /// cost of one `fsync` per commit (per group of writes, see the crate docs).
    Full,
}

impl Synchronous {
    pub(crate) fn pragma_value(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// Options of a [`SqliteStore`](crate::SqliteStore).
///
/// Start from [`SqliteConfig::default`] and set fields or call the `with_*` methods. The
/// struct is `#[non_exhaustive]` so that new options can come with defaults, which means
/// other crates cannot build it with a struct literal.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqliteConfig {
    /// Durability of commits, [`Synchronous::Normal`] by default.
    pub synchronous: Synchronous,
    /// Time a connection waits for a lock held by another connection before it fails with
    /// `SQLITE_BUSY`. 5 seconds by default.
    pub busy_timeout: Duration,
    /// Number of read-only connections. Concurrent reads beyond it wait for a free one.
    /// 4 by default, at least 1.
    pub read_connections: usize,
    /// Whether [`SqliteStore::open`](crate::SqliteStore::open) re-queues every `active` run,
    /// true by default. One process owns a database file, so a run still `active` at open
    /// was cut off when the previous process died or stopped. Turn it off only if another
    /// process may still be executing runs from the same file.
    pub requeue_on_open: bool,
    /// Maximum attempts of a run: a run found `active` at open that already used this many
    /// ends as `error` instead of being re-queued. 3 by default, at least 1. Set it to the
    /// engine's `max_attempts`.
    pub max_attempts: u32,
}

impl Default for SqliteConfig {
    fn default() -> SqliteConfig {
        SqliteConfig {
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(5),
            read_connections: 4,
            requeue_on_open: true,
            max_attempts: 3,
        }
    }
}

impl SqliteConfig {
    /// Sets [`SqliteConfig::synchronous`].
    pub fn with_synchronous(mut self, synchronous: Synchronous) -> SqliteConfig {
        self.synchronous = synchronous;
        self
    }

    /// Sets [`SqliteConfig::busy_timeout`].
    pub fn with_busy_timeout(mut self, busy_timeout: Duration) -> SqliteConfig {
        self.busy_timeout = busy_timeout;
        self
    }

    /// Sets [`SqliteConfig::read_connections`].
    pub fn with_read_connections(mut self, read_connections: usize) -> SqliteConfig {
        self.read_connections = read_connections;
        self
    }

    /// Sets [`SqliteConfig::requeue_on_open`].
    pub fn with_requeue_on_open(mut self, requeue_on_open: bool) -> SqliteConfig {
        self.requeue_on_open = requeue_on_open;
        self
    }

    /// Sets [`SqliteConfig::max_attempts`].
    pub fn with_max_attempts(mut self, max_attempts: u32) -> SqliteConfig {
        self.max_attempts = max_attempts;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), StoreOpenError> {
        if self.read_connections == 0 {
            return Err(StoreOpenError::InvalidConfig("read_connections must be at least 1".to_owned()));
        }
        if self.max_attempts == 0 {
            return Err(StoreOpenError::InvalidConfig("max_attempts must be at least 1".to_owned()));
        }
        Ok(())
    }
}
