//! [`Conn`]: statements on a pooled connection or inside a transaction, through one interface.
//!
//! Each statement is prepared once per connection (deadpool's statement cache), so a query
//! costs one round trip after its first use. The helpers of the other modules take `&impl
//! Conn`, so a read runs on a plain connection and the same code runs inside a transaction
//! where a write needs one.

use async_trait::async_trait;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

/// Query parameters, as tokio-postgres takes them.
pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A connection or transaction that runs cached prepared statements.
#[async_trait]
pub(crate) trait Conn: Sync {
    /// Runs a statement and returns its rows.
    async fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, tokio_postgres::Error>;

    /// Runs a statement that returns at most one row.
    async fn query_opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>, tokio_postgres::Error>;

    /// Runs a statement and returns the number of rows it changed.
    async fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, tokio_postgres::Error>;
}

#[async_trait]
impl Conn for deadpool_postgres::ClientWrapper {
    async fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, tokio_postgres::Error> {
        let statement = self.prepare_cached(sql).await?;
        tokio_postgres::Client::query(self, &statement, params).await
    }

    async fn query_opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>, tokio_postgres::Error> {
        let statement = self.prepare_cached(sql).await?;
        tokio_postgres::Client::query_opt(self, &statement, params).await
    }

    async fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, tokio_postgres::Error> {
        let statement = self.prepare_cached(sql).await?;
        tokio_postgres::Client::execute(self, &statement, params).await
    }
}

#[async_trait]
impl Conn for deadpool_postgres::Transaction<'_> {
    async fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, tokio_postgres::Error> {
        let statement = self.prepare_cached(sql).await?;
        tokio_postgres::Transaction::query(self, &statement, params).await
    }

    async fn query_opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>, tokio_postgres::Error> {
        let statement = self.prepare_cached(sql).await?;
        tokio_postgres::Transaction::query_opt(self, &statement, params).await
    }

    async fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, tokio_postgres::Error> {
        let statement = self.prepare_cached(sql).await?;
        tokio_postgres::Transaction::execute(self, &statement, params).await
    }
}
