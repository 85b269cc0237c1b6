//! Errors of connecting a store, and the mapping of PostgreSQL, pool and JSON errors to
//! [`StorageError`].

use aegis_core::storage::{StorageError, StorageErrorKind};
use tokio_postgres::error::SqlState;

/// An error of another library, kept as the source of a [`StoreOpenError`] without making that
/// library's types part of this crate's API.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A failed [`PostgresStore::connect`](crate::PostgresStore::connect). Messages name the
/// database by its URL with the password masked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreOpenError {
    /// An option of the [`PostgresConfig`](crate::PostgresConfig) is out of range.
    #[error("invalid postgres store configuration: {0}")]
    InvalidConfig(String),
    /// The database URL does not parse. The message leaves the URL out, since it may hold a
    /// password.
    #[error("the postgres database url is invalid: {0}; expected postgres://user:password@host:port/dbname")]
    InvalidUrl(String),
    /// The TLS settings of the URL cannot be used, such as an `sslrootcert` file that cannot
    /// be read.
    #[error("setting up TLS for the postgres database {url} failed: {message}")]
    Tls {
        /// The database URL, password masked.
        url: String,
        /// What failed.
        message: String,
    },
    /// No connection to the server could be opened. The message lists the causes, such as
    /// the TLS error under a failed handshake.
    #[error("connecting to the postgres database {url} failed: {}", with_causes(.source.as_ref()))]
    Connect {
        /// The database URL, password masked.
        url: String,
        /// The connection error.
        #[source]
        source: BoxError,
    },
    /// The database has a schema written by a newer version of this crate.
    #[error(
        "the postgres database {url} has schema version {found} but this version of aegis-store-postgres supports versions up to {supported}; upgrade every replica to the newer Aegis"
    )]
    NewerSchema {
        /// The database URL, password masked.
        url: String,
        /// The newest version recorded in the database.
        found: i32,
        /// The newest schema version this crate migrates to.
        supported: i32,
    },
    /// A migration failed. Its transaction was rolled back, so the database stays at the
    /// previous version.
    #[error("migrating the postgres database {url} to schema version {version} failed: {source}")]
    Migrate {
        /// The database URL, password masked.
        url: String,
        /// The version the failed migration would have reached.
        version: i32,
        /// The PostgreSQL error.
        #[source]
        source: BoxError,
    },
}

/// Formats an error followed by its sources, each after a colon.
fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

/// Maps a failed statement to a `Backend` error that names what was being done.
pub(crate) fn backend(action: &str, error: tokio_postgres::Error) -> StorageError {
    StorageError::backend(format!("{action} failed"), error)
}

/// Maps a failure to get a pooled connection. A closed pool means the store is shutting
/// down; a timeout or a failed connect is a backend failure the caller may retry.
pub(crate) fn pool(error: deadpool_postgres::PoolError) -> StorageError {
    if matches!(error, deadpool_postgres::PoolError::Closed) {
        return StorageError::new(StorageErrorKind::Unavailable, "the postgres store is closed");
    }
    StorageError::backend("getting a postgres connection from the pool failed", error)
}

/// Maps a failed insert of a row with primary key `id` to `Conflict` when the key exists.
pub(crate) fn insert_failed(kind: &str, id: impl std::fmt::Display, error: tokio_postgres::Error) -> StorageError {
    if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        return StorageError::new(StorageErrorKind::Conflict, format!("a {kind} with id {id} already exists"));
    }
    StorageError::backend(format!("inserting {kind} {id} failed"), error)
}

/// Maps a JSON column that does not decode (a damaged or hand-edited row) to a `Backend`
/// error. The driver reports decoding failures as its own error type.
pub(crate) fn corrupt(kind: &str, id: impl std::fmt::Display, error: tokio_postgres::Error) -> StorageError {
    StorageError::backend(format!("the stored {kind} {id} could not be read"), error)
}
