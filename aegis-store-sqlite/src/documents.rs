//! Tasks, teams and sessions: rows of an id, a creation time and a JSON document.

use aegis_core::Timestamp;
use aegis_core::storage::{ListFilter, Page, StorageError};
use rusqlite::{Connection, OptionalExtension, params};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::{backend, corrupt, insert_failed};
use crate::listing::{self, Conditions, flag_value, text_value, uuid_value};

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

/// A row to write, its JSON already encoded, with the fields that listings filter on.
#[derive(Debug)]
pub(crate) struct Document {
    pub(crate) id: Uuid,
    pub(crate) created_at: Timestamp,
    pub(crate) json: String,
    pub(crate) archived: bool,
    pub(crate) created_by_user_id: Option<String>,
    /// A session's task and team; `None` for tasks and teams.
    pub(crate) parents: Option<(Uuid, Uuid)>,
}

impl Document {
    /// Creates a row whose `json` the caller fills in.
    pub(crate) fn new(
        id: Uuid,
        created_at: Timestamp,
        archived: bool,
        created_by_user_id: Option<String>,
        parents: Option<(Uuid, Uuid)>,
    ) -> Document {
        Document { id, created_at, json: String::new(), archived, created_by_user_id, parents }
    }
}

/// Inserts a document. An existing id is a `Conflict`.
pub(crate) fn insert(conn: &Connection, table: Table, document: &Document) -> Result<(), StorageError> {
    let sql = format!(
        "INSERT INTO {} (id, created_at, json, archived, created_by_user_id{}) VALUES (?1, ?2, ?3, ?4, ?5{})",
        table.name(),
        if document.parents.is_some() { ", task_id, team_id" } else { "" },
        if document.parents.is_some() { ", ?6, ?7" } else { "" },
    );
    let mut statement = conn.prepare_cached(&sql).map_err(|error| backend("preparing an insert", error))?;
    let (id, created_at) = (document.id.to_string(), document.created_at.unix_micros());
    let inserted = match document.parents {
        Some((task_id, team_id)) => statement.execute(params![
            id,
            created_at,
            document.json,
            document.archived,
            document.created_by_user_id,
            task_id.to_string(),
            team_id.to_string()
        ]),
        None => {
            statement.execute(params![id, created_at, document.json, document.archived, document.created_by_user_id])
        }
    };
    inserted.map_err(|error| insert_failed(table.kind(), document.id, error))?;
    Ok(())
}

/// Replaces a document and its copied columns; returns whether a row had its id.
pub(crate) fn update(conn: &Connection, table: Table, document: &Document) -> Result<bool, StorageError> {
    let update_failed = |error| backend(&format!("updating {} {}", table.kind(), document.id), error);
    let (task_id, team_id) = match document.parents {
        Some((task_id, team_id)) => (Some(task_id.to_string()), Some(team_id.to_string())),
        None => (None, None),
    };
    let sql = format!(
        "UPDATE {} SET json = ?2, archived = ?3, created_by_user_id = ?4{} WHERE id = ?1",
        table.name(),
        if document.parents.is_some() { ", task_id = ?5, team_id = ?6" } else { "" },
    );
    let mut statement = conn.prepare_cached(&sql).map_err(update_failed)?;
    let id = document.id.to_string();
    let changed = match document.parents {
        Some(_) => statement.execute(params![
            id,
            document.json,
            document.archived,
            document.created_by_user_id,
            task_id,
            team_id
        ]),
        None => statement.execute(params![id, document.json, document.archived, document.created_by_user_id]),
    };
    Ok(changed.map_err(update_failed)? > 0)
}

/// Reads one document.
pub(crate) fn get<T: DeserializeOwned>(conn: &Connection, table: Table, id: Uuid) -> Result<Option<T>, StorageError> {
    let Some(json) = get_text(conn, table, id)? else {
        return Ok(None);
    };
    let document = serde_json::from_str(&json).map_err(|error| corrupt(table.kind(), id, error))?;
    Ok(Some(document))
}

/// Reads a document's JSON text without decoding it.
pub(crate) fn get_text(conn: &Connection, table: Table, id: Uuid) -> Result<Option<String>, StorageError> {
    let sql = format!("SELECT json FROM {} WHERE id = ?1", table.name());
    let mut statement = conn.prepare_cached(&sql).map_err(|error| backend("preparing a read", error))?;
    statement
        .query_row(params![id.to_string()], |row| row.get(0))
        .optional()
        .map_err(|error| backend(&format!("reading {} {id}", table.kind()), error))
}

/// Lists the page of documents that `filter` selects.
pub(crate) fn list<T: DeserializeOwned>(
    conn: &Connection,
    table: Table,
    filter: &ListFilter,
) -> Result<Page<T>, StorageError> {
    let mut conditions = Conditions::default();
    conditions.equal("archived", flag_value(filter.archived));
    conditions.equal("created_by_user_id", text_value(filter.created_by_user_id.as_ref()));
    if let Table::Sessions = table {
        conditions.equal("task_id", uuid_value(filter.task_id));
        conditions.equal("team_id", uuid_value(filter.team_id));
    }
    listing::list_page(conn, table.name(), "json", conditions, &filter.page, |id, row| {
        let json: String = row.get(2).map_err(|error| backend(&format!("listing {}", table.name()), error))?;
        serde_json::from_str(&json).map_err(|error| corrupt(table.kind(), id, error))
    })
}
