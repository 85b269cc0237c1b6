//! Listings: a `WHERE` clause built from a filter, plus the keyset condition of its page.
//!
//! Every listing selects rows by equality on the columns copied out of the documents
//! (`session_id`, `archived`, ...), then keeps the rows after the cursor with one row-value
//! comparison on `(created_at, id)`, which the `*_by_created` and per-parent indexes serve. It
//! fetches one row more than the page holds, so [`Page::from_rows`] can tell whether another page
//! follows. Only column names from this crate go into the SQL text; every value is a bound
//! parameter.

use aegis_core::Timestamp;
use aegis_core::storage::{Keyset, Page, PageRequest, SortOrder, StorageError};
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::conn::Conn;
use crate::error::backend;

/// A bound parameter of a listing.
type Value = Box<dyn ToSql + Sync + Send>;

/// The conditions of one listing.
#[derive(Default)]
pub(crate) struct Conditions {
    clauses: Vec<String>,
    values: Vec<Value>,
}

impl Conditions {
    /// Adds `column = value` when `value` is set.
    pub(crate) fn equal<T: ToSql + Sync + Send + 'static>(&mut self, column: &'static str, value: Option<T>) {
        self.compare(column, "=", value);
    }

    /// Adds `column <operator> value` when `value` is set.
    pub(crate) fn compare<T: ToSql + Sync + Send + 'static>(
        &mut self,
        column: &'static str,
        operator: &'static str,
        value: Option<T>,
    ) {
        if let Some(value) = value {
            self.values.push(Box::new(value));
            self.clauses.push(format!("{column} {operator} ${}", self.values.len()));
        }
    }

    /// Adds the keyset condition of a page: rows strictly after its cursor in its order.
    fn after(&mut self, after: Option<Keyset>, order: SortOrder) {
        let Some(after) = after else {
            return;
        };
        self.values.push(Box::new(after.created_at.as_datetime()));
        self.values.push(Box::new(after.id));
        let operator = match order {
            SortOrder::Asc => ">",
            _ => "<",
        };
        let (created_at, id) = (self.values.len() - 1, self.values.len());
        self.clauses.push(format!("(created_at, id) {operator} (${created_at}, ${id})"));
    }
}

/// Lists one page of rows of `table`, selecting `columns` after `id` and `created_at`, and
/// decodes each row with `decode`. `table` may carry an alias; the key columns are unqualified.
pub(crate) async fn list_page<T>(
    conn: &impl Conn,
    table: &'static str,
    columns: &str,
    mut conditions: Conditions,
    page: &PageRequest,
    mut decode: impl FnMut(&Row) -> Result<T, StorageError>,
) -> Result<Page<T>, StorageError> {
    let name = table.split(' ').next().unwrap_or(table);
    let list_failed = |error| backend(&format!("listing {name}"), error);

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

    let params: Vec<&(dyn ToSql + Sync)> =
        conditions.values.iter().map(|value| value.as_ref() as &(dyn ToSql + Sync)).collect();
    let rows = conn.query(&sql, &params).await.map_err(list_failed)?;
    let mut keyed = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: Uuid = row.try_get(0).map_err(list_failed)?;
        let created_at: OffsetDateTime = row.try_get(1).map_err(list_failed)?;
        keyed.push((Keyset::new(Timestamp::from_datetime(created_at), id), decode(row)?));
    }

    // The keys travel beside the rows, so the page needs no knowledge of the row type.
    Ok(Page::from_rows(keyed, page, |(key, _)| *key).map(|(_, item)| item))
}
