//! Throw-away databases for tests (enabled by the `testing` cargo feature).
//!
//! Tests that need PostgreSQL read a server URL from [`DATABASE_URL_VAR`] and create a
//! database of their own on it, so they can run in parallel and leave each other's rows alone.
//! `scripts/test-postgres.sh` starts a throw-away cluster and sets the variable.
//!
//! Without the variable a test is skipped with a line on stderr, so `cargo test` passes on a
//! machine without PostgreSQL. When `CI` is set the test fails instead: continuous integration
//! must never skip these tests silently.

// This is test support code: a failed setup is a panic that names what to fix.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use tokio_postgres::NoTls;
use uuid::Uuid;

/// The environment variable naming the PostgreSQL server the tests use, such as
/// `postgres://postgres@127.0.0.1:5432/postgres`. Its user must be allowed to create databases.
pub const DATABASE_URL_VAR: &str = "AEGIS_TEST_DATABASE_URL";

/// The environment variable naming the PEM file of the CA that signed the test server's
/// certificate. `scripts/test-postgres.sh` sets it when it starts the cluster with TLS on.
pub const ROOT_CERT_VAR: &str = "AEGIS_TEST_DATABASE_CA";

/// The environment variable naming the PEM file of a CA that did not sign the server's
/// certificate, for tests that expect verification to fail.
pub const OTHER_ROOT_CERT_VAR: &str = "AEGIS_TEST_DATABASE_OTHER_CA";

/// Returns the paths in [`ROOT_CERT_VAR`] and [`OTHER_ROOT_CERT_VAR`], or `None` after
/// printing why the test `test` is skipped. Panics when they are unset while `CI` is set.
pub fn root_certificates(test: &str) -> Option<(String, String)> {
    let read = |name: &str| std::env::var(name).ok().filter(|value| !value.trim().is_empty());
    match (read(ROOT_CERT_VAR), read(OTHER_ROOT_CERT_VAR)) {
        (Some(root), Some(other)) => Some((root, other)),
        _ if running_in_ci() => panic!(
            "{test}: {ROOT_CERT_VAR} and {OTHER_ROOT_CERT_VAR} are not set, but CI is, and CI must run the TLS tests; \
             run them with scripts/test-postgres.sh, which needs openssl"
        ),
        _ => {
            eprintln!(
                "skipping {test}: {ROOT_CERT_VAR} is not set (scripts/test-postgres.sh sets it when openssl is installed)"
            );
            None
        }
    }
}

/// Returns whether a pooled connection of `store` is encrypted, as the server reports it.
pub async fn uses_tls(store: &crate::PostgresStore) -> bool {
    let client = store.client().await.expect("a pooled connection");
    let row = client
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await
        .expect("reading pg_stat_ssl");
    row.get(0)
}

/// A database created for one test.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates an empty database for the test `test`, or returns `None` after printing why the
    /// test is skipped. Panics when [`DATABASE_URL_VAR`] is unset while `CI` is set, or when the
    /// server cannot be reached.
    pub async fn create(test: &str) -> Option<TestDatabase> {
        let admin_url = match std::env::var(DATABASE_URL_VAR) {
            Ok(url) if !url.trim().is_empty() => url,
            _ if running_in_ci() => panic!(
                "{test}: {DATABASE_URL_VAR} is not set, but CI is, and CI must run the PostgreSQL tests; \
                 start a server with scripts/test-postgres.sh or set {DATABASE_URL_VAR}"
            ),
            _ => {
                eprintln!(
                    "skipping {test}: {DATABASE_URL_VAR} is not set (scripts/test-postgres.sh runs the tests against a throw-away PostgreSQL)"
                );
                return None;
            }
        };

        let name = format!("aegis_test_{}", Uuid::now_v7().simple());
        let admin = connect(&admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|error| panic!("{test}: creating database {name} failed: {error}"));
        let url = with_dbname(&admin_url, &name);
        Some(TestDatabase { admin_url, name, url })
    }

    /// Returns the URL of the test's database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Returns the name of the test's database.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database, ending the connections still open to it. A test calls this at its
    /// end; a failed test leaves its database behind for inspection.
    pub async fn drop_database(self) {
        let admin = connect(&self.admin_url).await;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .await
            .unwrap_or_else(|error| panic!("dropping database {} failed: {error}", self.name));
    }
}

/// Returns whether the tests run in continuous integration, which sets `CI` (to `true` on
/// the common CI services).
fn running_in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !matches!(value.trim(), "" | "0" | "false"))
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|error| panic!("connecting to {} failed: {error}", crate::redact_database_url(url)));
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("test database connection ended: {error}");
        }
    });
    client
}

/// Returns `url` naming database `name` instead of its own, for both forms tokio-postgres
/// accepts: a URL gets a new path, a `key=value` string a trailing `dbname` (the last value
/// of a key wins).
fn with_dbname(url: &str, name: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return format!("{url} dbname={name}");
    };
    let rest_start = scheme_end + 3;
    let query_start = url[rest_start..].find('?').map_or(url.len(), |offset| rest_start + offset);
    let path_start = url[rest_start..query_start].find('/').map_or(query_start, |offset| rest_start + offset);
    format!("{}/{name}{}", &url[..path_start], &url[query_start..])
}

#[cfg(test)]
mod tests {
    use super::with_dbname;

    #[test]
    fn dbname_replaces_url_path() {
        assert_eq!(with_dbname("postgres://u@127.0.0.1:5432/postgres", "t1"), "postgres://u@127.0.0.1:5432/t1");
        assert_eq!(with_dbname("postgres://u@127.0.0.1:5432", "t1"), "postgres://u@127.0.0.1:5432/t1");
        assert_eq!(with_dbname("postgres://u@h/postgres?sslmode=disable", "t1"), "postgres://u@h/t1?sslmode=disable");
        assert_eq!(with_dbname("host=h user=u dbname=postgres", "t1"), "host=h user=u dbname=postgres dbname=t1");
    }
}
