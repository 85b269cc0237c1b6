//! Tasks, teams and sessions: rows of an id, a creation time and a JSON document.

use aegis_core::Timestamp;
use aegis_core::storage::StorageError;
use rusqlite::{Connection, OptionalExtension, params};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::{backend, corrupt, insert_failed};

/// A table of JSON documents.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Table {
    Tasks,
    Teams,
    Sessions,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Tasks => "tasks",
            Table::Teams => "teams",
            Table::Sessions => "sessions",
        }
    }

    /// Returns the resource name that error messages use.
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Table::Tasks => "task",
            Table::Teams => "team",
            Table::Sessions => "session",
        }
    }
}

/// A row to insert, its JSON already encoded.
#[derive(Debug)]
pub(crate) struct Document {
    pub(crate) id: Uuid,
    pub(crate) created_at: Timestamp,
    pub(crate) json: String,
}

/// Inserts a document. An existing id is a `Conflict`.
pub(crate) fn insert(conn: &Connection, table: Table, document: &Document) -> Result<(), StorageError> {
    let sql = format!("INSERT INTO {} (id, created_at, json) VALUES (?1, ?2, ?3)", table.name());
    let mut statement = conn.prepare_cached(&sql).map_err(|error| backend("preparing an insert", error))?;
    statement
        .execute(params![document.id.to_string(), document.created_at.unix_micros(), document.json])
        .map_err(|error| insert_failed(table.kind(), document.id, error))?;
    Ok(())
}

/// Reads one document.
pub(crate) fn get<T: DeserializeOwned>(conn: &Connection, table: Table, id: Uuid) -> Result<Option<T>, StorageError> {
    let sql = format!("SELECT json FROM {} WHERE id = ?1", table.name());
    let mut statement = conn.prepare_cached(&sql).map_err(|error| backend("preparing a read", error))?;
    let json: Option<String> = statement
        .query_row(params![id.to_string()], |row| row.get(0))
        .optional()
        .map_err(|error| backend(&format!("reading {} {id}", table.kind()), error))?;

    let Some(json) = json else {
        return Ok(None);
    };
    let document = serde_json::from_str(&json).map_err(|error| corrupt(table.kind(), id, error))?;
    Ok(Some(document))
}

/// Lists documents newest first, at most `limit` of them.
pub(crate) fn list<T: DeserializeOwned>(
    conn: &Connection,
    table: Table,
    limit: Option<usize>,
) -> Result<Vec<T>, StorageError> {
    let sql = format!("SELECT id, json FROM {} ORDER BY created_at DESC, id DESC LIMIT ?1", table.name());
    let list_failed = |error| backend(&format!("listing {}", table.name()), error);
    let mut statement = conn.prepare_cached(&sql).map_err(list_failed)?;
    let mut rows = statement.query(params![sql_limit(limit)]).map_err(list_failed)?;

    let mut documents = Vec::new();
    while let Some(row) = rows.next().map_err(list_failed)? {
        let id: String = row.get(0).map_err(list_failed)?;
        let json: String = row.get(1).map_err(list_failed)?;
        documents.push(serde_json::from_str(&json).map_err(|error| corrupt(table.kind(), id, error))?);
    }
    Ok(documents)
}

/// Converts a listing limit to SQLite's, where a negative `LIMIT` means none.
pub(crate) fn sql_limit(limit: Option<usize>) -> i64 {
    match limit {
        Some(limit) => i64::try_from(limit).unwrap_or(i64::MAX),
        None => -1,
    }
}
