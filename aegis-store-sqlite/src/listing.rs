//! Listings: a `WHERE` clause built from a filter, plus the keyset condition of its page.
//!
//! Every listing selects rows by equality on copied columns (`session_id`, `archived`, ...),
//! then keeps the rows after the cursor with one row-value comparison on `(created_at, id)`,
//! which the `*_by_created` and per-parent indexes serve. It fetches one row more than the
//! page holds, so [`Page::from_rows`] knows whether another page follows. Only column names
//! from this crate go into the SQL text; every value is a bound parameter.

use aegis_core::Timestamp;
use aegis_core::storage::{Keyset, Page, PageRequest, SortOrder, StorageError, StorageErrorKind};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, Row, params_from_iter};
use uuid::Uuid;

use crate::error::backend;

/// The conditions of one listing.
#[derive(Debug, Default)]
pub(crate) struct Conditions {
    clauses: Vec<String>,
    values: Vec<SqlValue>,
}

impl Conditions {
    /// Adds `column = value` when `value` is set.
    pub(crate) fn equal(&mut self, column: &'static str, value: Option<SqlValue>) {
        if let Some(value) = value {
            self.values.push(value);
            self.clauses.push(format!("{column} = ?{}", self.values.len()));
        }
    }

    /// Adds `column <operator> value` when `value` is set.
    pub(crate) fn compare(&mut self, column: &'static str, operator: &'static str, value: Option<SqlValue>) {
        if let Some(value) = value {
            self.values.push(value);
            self.clauses.push(format!("{column} {operator} ?{}", self.values.len()));
        }
    }

    /// Adds the keyset condition of `page`: rows strictly after its cursor in its order.
    fn after(&mut self, after: Option<Keyset>, order: SortOrder) {
        let Some(after) = after else {
            return;
        };
        self.values.push(SqlValue::Integer(after.created_at.unix_micros()));
        self.values.push(SqlValue::Text(after.id.to_string()));
        let operator = match order {
            SortOrder::Asc => ">",
            _ => "<",
        };
        let (micros, id) = (self.values.len() - 1, self.values.len());
        self.clauses.push(format!("(created_at, id) {operator} (?{micros}, ?{id})"));
    }
}

/// Converts an optional id to a bound value.
pub(crate) fn uuid_value(id: Option<Uuid>) -> Option<SqlValue> {
    id.map(|id| SqlValue::Text(id.to_string()))
}

/// Converts an optional string to a bound value.
pub(crate) fn text_value(text: Option<&String>) -> Option<SqlValue> {
    text.map(|text| SqlValue::Text(text.clone()))
}

/// Converts an optional flag to a bound value (SQLite has no booleans).
pub(crate) fn flag_value(flag: Option<bool>) -> Option<SqlValue> {
    flag.map(|flag| SqlValue::Integer(i64::from(flag)))
}

/// Lists one page of rows of `table` and decodes each with `decode`, which gets the row's id
/// and the row with `columns` from index 2 on (0 and 1 are `id` and `created_at`).
pub(crate) fn list_page<T>(
    conn: &Connection,
    table: &'static str,
    columns: &'static str,
    mut conditions: Conditions,
    page: &PageRequest,
    mut decode: impl FnMut(Uuid, &Row<'_>) -> Result<T, StorageError>,
) -> Result<Page<T>, StorageError> {
    let list_failed = |error| backend(&format!("listing {table}"), error);

    // A position cursor means the caller mixed up lists; the service rejects it first, so
    // here it only starts from the beginning.
    let after = page.after_keyset().unwrap_or(None);
    conditions.after(after, page.order);
    let direction = match page.order {
        SortOrder::Asc => "ASC",
        _ => "DESC",
    };
    let filter = match conditions.clauses.is_empty() {
        true => String::new(),
        false => format!("WHERE {}", conditions.clauses.join(" AND ")),
    };
    let fetch = i64::try_from(page.limit.saturating_add(1)).unwrap_or(i64::MAX);
    let sql = format!(
        "SELECT id, created_at, {columns} FROM {table} {filter} ORDER BY created_at {direction}, id {direction} LIMIT {fetch}"
    );

    let mut statement = conn.prepare_cached(&sql).map_err(list_failed)?;
    let mut rows = statement.query(params_from_iter(conditions.values.iter())).map_err(list_failed)?;
    let mut keyed = Vec::new();
    while let Some(row) = rows.next().map_err(list_failed)? {
        let id: String = row.get(0).map_err(list_failed)?;
        let micros: i64 = row.get(1).map_err(list_failed)?;
        let id = crate::runs::parse_uuid(&id)?;
        let Some(created_at) = Timestamp::from_unix_micros(micros) else {
            let message = format!("the stored {table} row {id} has an invalid created_at {micros}");
            return Err(StorageError::new(StorageErrorKind::Backend, message));
        };
        keyed.push((Keyset::new(created_at, id), decode(id, row)?));
    }

    // The keys travel beside the rows, so the page needs no knowledge of the row type.
    Ok(Page::from_rows(keyed, page, |(key, _)| *key).map(|(_, item)| item))
}
