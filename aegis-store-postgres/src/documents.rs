//! Tasks, teams and sessions: rows of an id, a creation time and a JSON document.

use aegis_core::Timestamp;
use aegis_core::storage::StorageError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_postgres::types::Json;
use uuid::Uuid;

use crate::conn::Conn;
use crate::error::{backend, corrupt, insert_failed};

/// A table of JSON documents.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Table {
    Tasks,
    Teams,
    Sessions,
}

impl Table {
    /// Returns the resource name that error messages use.
    fn kind(self) -> &'static str {
        match self {
            Table::Tasks => "task",
            Table::Teams => "team",
            Table::Sessions => "session",
        }
    }

    fn insert_sql(self) -> &'static str {
        match self {
            Table::Tasks => "INSERT INTO tasks (id, created_at, document) VALUES ($1, $2, $3)",
            Table::Teams => "INSERT INTO teams (id, created_at, document) VALUES ($1, $2, $3)",
            Table::Sessions => "INSERT INTO sessions (id, created_at, document) VALUES ($1, $2, $3)",
        }
    }

    fn get_sql(self) -> &'static str {
        match self {
            Table::Tasks => "SELECT document FROM tasks WHERE id = $1",
            Table::Teams => "SELECT document FROM teams WHERE id = $1",
            Table::Sessions => "SELECT document FROM sessions WHERE id = $1",
        }
    }

    /// `LIMIT NULL` means no limit in PostgreSQL.
    fn list_sql(self) -> &'static str {
        match self {
            Table::Tasks => "SELECT id, document FROM tasks ORDER BY created_at DESC, id DESC LIMIT $1",
            Table::Teams => "SELECT id, document FROM teams ORDER BY created_at DESC, id DESC LIMIT $1",
            Table::Sessions => "SELECT id, document FROM sessions ORDER BY created_at DESC, id DESC LIMIT $1",
        }
    }
}

/// Inserts a document. An existing id is a `Conflict`.
pub(crate) async fn insert<T: Serialize + Sync + std::fmt::Debug>(
    conn: &impl Conn,
    table: Table,
    id: Uuid,
    created_at: Timestamp,
    document: &T,
) -> Result<(), StorageError> {
    conn.execute(table.insert_sql(), &[&id, &created_at.as_datetime(), &Json(document)])
        .await
        .map_err(|error| insert_failed(table.kind(), id, error))?;
    Ok(())
}

/// Reads one document.
pub(crate) async fn get<T: DeserializeOwned>(conn: &impl Conn, table: Table, id: Uuid) -> Result<Option<T>, StorageError> {
    let row = conn
        .query_opt(table.get_sql(), &[&id])
        .await
        .map_err(|error| backend(&format!("reading {} {id}", table.kind()), error))?;

    let Some(row) = row else {
        return Ok(None);
    };
    let Json(document) = row.try_get::<_, Json<T>>(0).map_err(|error| corrupt(table.kind(), id, error))?;
    Ok(Some(document))
}

/// Lists documents newest first, at most `limit` of them.
pub(crate) async fn list<T: DeserializeOwned>(
    conn: &impl Conn,
    table: Table,
    limit: Option<usize>,
) -> Result<Vec<T>, StorageError> {
    let rows = conn
        .query(table.list_sql(), &[&sql_limit(limit)])
        .await
        .map_err(|error| backend(&format!("listing {}s", table.kind()), error))?;

    let mut documents = Vec::with_capacity(rows.len());
    for row in rows {
        let id: Uuid = row.get(0);
        let Json(document) = row.try_get::<_, Json<T>>(1).map_err(|error| corrupt(table.kind(), id, error))?;
        documents.push(document);
    }
    Ok(documents)
}

/// Converts a listing limit to a `LIMIT` parameter, where `NULL` means none.
pub(crate) fn sql_limit(limit: Option<usize>) -> Option<i64> {
    limit.map(|limit| i64::try_from(limit).unwrap_or(i64::MAX))
}
