//! Tasks, teams and sessions: rows of an id, a creation time and a JSON document.

use aegis_core::Timestamp;
use aegis_core::storage::{ListFilter, Page, StorageError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_postgres::types::Json;
use uuid::Uuid;

use crate::conn::Conn;
use crate::error::{backend, corrupt, insert_failed};
use crate::listing::{self, Conditions};

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

    /// Returns the table's name in SQL.
    fn name(self) -> &'static str {
        match self {
            Table::Tasks => "tasks",
            Table::Teams => "teams",
            Table::Sessions => "sessions",
        }
    }

    fn update_sql(self) -> &'static str {
        match self {
            Table::Tasks => "UPDATE tasks SET document = $2 WHERE id = $1",
            Table::Teams => "UPDATE teams SET document = $2 WHERE id = $1",
            Table::Sessions => "UPDATE sessions SET document = $2 WHERE id = $1",
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
pub(crate) async fn get<T: DeserializeOwned>(
    conn: &impl Conn,
    table: Table,
    id: Uuid,
) -> Result<Option<T>, StorageError> {
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

/// Replaces a document; returns whether a row had its id. The columns that listings filter
/// on are generated from the document, so they change with it.
pub(crate) async fn update<T: Serialize + Sync + std::fmt::Debug>(
    conn: &impl Conn,
    table: Table,
    id: Uuid,
    document: &T,
) -> Result<bool, StorageError> {
    let changed = conn
        .execute(table.update_sql(), &[&id, &Json(document)])
        .await
        .map_err(|error| backend(&format!("updating {} {id}", table.kind()), error))?;
    Ok(changed > 0)
}

/// Lists the page of documents that `filter` selects.
pub(crate) async fn list<T: DeserializeOwned>(
    conn: &impl Conn,
    table: Table,
    filter: &ListFilter,
) -> Result<Page<T>, StorageError> {
    let mut conditions = Conditions::default();
    conditions.equal("archived", filter.archived);
    conditions.equal("created_by_user_id", filter.created_by_user_id.clone());
    if let Table::Sessions = table {
        conditions.equal("task_id", filter.task_id);
        conditions.equal("team_id", filter.team_id);
    }
    listing::list_page(conn, table.name(), "document", conditions, &filter.page, |row| {
        let id: Uuid = row.get(0);
        let Json(document) = row.try_get::<_, Json<T>>(2).map_err(|error| corrupt(table.kind(), id, error))?;
        Ok(document)
    })
    .await
}
