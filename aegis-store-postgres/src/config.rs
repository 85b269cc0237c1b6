//! Options of [`PostgresStore::connect`](crate::PostgresStore::connect), and the database
//! URL with its password masked for logs and errors.
//!
//! The URL itself is not part of [`PostgresConfig`], so the config can be printed and logged
//! freely: only [`redact_database_url`] ever turns a URL into text.

use std::time::Duration;

use tokio_postgres::config::Host;

use crate::error::StoreOpenError;

/// Options of a [`PostgresStore`](crate::PostgresStore).
///
/// Start from [`PostgresConfig::default`] and call the `with_*` methods. The struct is
/// `#[non_exhaustive]` so that new options can come with defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostgresConfig {
    /// Connections the pool opens at most. Requests beyond it wait for a free connection.
    /// 16 by default, at least 1.
    pub pool_size: usize,
    /// How long opening one connection may take, unless the URL sets `connect_timeout`.
    /// 10 seconds by default.
    pub connect_timeout: Duration,
    /// How long a store operation waits for a free pooled connection before it fails.
    /// 30 seconds by default.
    pub pool_wait_timeout: Duration,
}

impl Default for PostgresConfig {
    fn default() -> PostgresConfig {
        PostgresConfig {
            pool_size: 16,
            connect_timeout: Duration::from_secs(10),
            pool_wait_timeout: Duration::from_secs(30),
        }
    }
}

impl PostgresConfig {
    /// Sets [`PostgresConfig::pool_size`].
    pub fn with_pool_size(mut self, pool_size: usize) -> PostgresConfig {
        self.pool_size = pool_size;
        self
    }

    /// Sets [`PostgresConfig::connect_timeout`].
    pub fn with_connect_timeout(mut self, connect_timeout: Duration) -> PostgresConfig {
        self.connect_timeout = connect_timeout;
        self
    }

    /// Sets [`PostgresConfig::pool_wait_timeout`].
    pub fn with_pool_wait_timeout(mut self, pool_wait_timeout: Duration) -> PostgresConfig {
        self.pool_wait_timeout = pool_wait_timeout;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), StoreOpenError> {
        if self.pool_size == 0 {
            return Err(StoreOpenError::InvalidConfig("pool_size must be at least 1".to_owned()));
        }
        if self.connect_timeout.is_zero() || self.pool_wait_timeout.is_zero() {
            return Err(StoreOpenError::InvalidConfig(
                "connect_timeout and pool_wait_timeout must be positive".to_owned(),
            ));
        }
        Ok(())
    }
}

/// Returns `url` (a `postgres://` URL or a `key=value` connection string) as a
/// `postgres://user:****@host:port/dbname` URL with the password masked, for logs and errors.
/// A string that does not parse becomes `<invalid database url>`, because its text may hold a
/// password in a place the parser could not find.
pub fn redact_database_url(url: &str) -> String {
    let Ok((url, _)) = crate::tls::split_tls_options(url) else {
        return "<invalid database url>".to_owned();
    };
    let Ok(config) = url.parse::<tokio_postgres::Config>() else {
        return "<invalid database url>".to_owned();
    };
    redact(&config)
}

/// Formats a parsed connection config as [`redact_database_url`] describes.
pub(crate) fn redact(config: &tokio_postgres::Config) -> String {
    let mut text = "postgres://".to_owned();
    if let Some(user) = config.get_user() {
        text.push_str(user);
        if config.get_password().is_some() {
            text.push_str(":****");
        }
        text.push('@');
    }

    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let name = match host {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            };
            // One port applies to every host; otherwise each host has its own.
            match ports.get(index).or(if ports.len() == 1 { ports.first() } else { None }) {
                Some(port) => format!("{name}:{port}"),
                None => name,
            }
        })
        .collect();
    text.push_str(&hosts.join(","));

    if let Some(dbname) = config.get_dbname() {
        text.push('/');
        text.push_str(dbname);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_masks_password() {
        let redacted = redact_database_url("postgres://aegis:s3cret@db.internal:5433/aegis?sslmode=disable");
        assert_eq!(redacted, "postgres://aegis:****@db.internal:5433/aegis");
        assert!(!redacted.contains("s3cret"));
    }

    #[test]
    fn redaction_of_key_value_strings() {
        let redacted = redact_database_url("host=127.0.0.1 port=5432 user=aegis password=s3cret dbname=runs");
        assert_eq!(redacted, "postgres://aegis:****@127.0.0.1:5432/runs");
    }

    #[test]
    fn redaction_without_password() {
        assert_eq!(redact_database_url("postgres://aegis@127.0.0.1/aegis"), "postgres://aegis@127.0.0.1:5432/aegis");
    }

    #[test]
    fn redaction_of_unparsable_url() {
        assert_eq!(redact_database_url("postgres://aegis:s3cret@host:notaport/db"), "<invalid database url>");
    }

    #[test]
    fn config_rejects_empty_pool() {
        assert!(PostgresConfig::default().with_pool_size(0).validate().is_err());
        assert!(PostgresConfig::default().validate().is_ok());
    }
}
