//! Authentication and per-user isolation.
//!
//! With API keys configured ([`AuthConfig::api_keys`]), every route under `/api/v1` except
//! the public ones needs `Authorization: Bearer <key>`, and the key's user id becomes the
//! caller ([`middleware`]). Handlers then act for that user only ([`caller`]): creates are
//! stamped with the user as `created_by_user_id`, and rows of other users get 404 as if
//! they did not exist, so ids of other users' rows do not leak. Without keys every request is
//! anonymous and can read every row, as before keys existed, and [`AuthConfig::check_bind`] keeps
//! such a server on a loopback address unless the operator opts out.

pub(crate) mod caller;
pub mod keys;
pub(crate) mod middleware;

use std::net::SocketAddr;

pub use keys::{ApiKeys, ApiKeysError};

/// The callers allowed to use the API.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct AuthConfig {
    /// The accepted bearer tokens and their users; empty accepts requests without a key.
    pub api_keys: ApiKeys,
    /// Whether a server without keys may listen on an address other than loopback.
    pub allow_unauthenticated: bool,
}

impl AuthConfig {
    /// Settings that require one of `api_keys` on every request but the public routes.
    pub fn with_keys(api_keys: ApiKeys) -> AuthConfig {
        AuthConfig { api_keys, allow_unauthenticated: false }
    }

    /// Rejects serving without keys on a non-loopback address, where anyone who can reach
    /// the address could read and change every row, unless `allow_unauthenticated` is set.
    pub fn check_bind(&self, bind: SocketAddr) -> Result<(), String> {
        if !self.api_keys.is_empty() || self.allow_unauthenticated || bind.ip().is_loopback() {
            return Ok(());
        }
        Err(format!(
            "refusing to listen on {bind} without authentication, because it is not a loopback address and \
             anyone who can reach it could use the API; configure API keys with --api-keys or AEGIS_API_KEYS \
             (KEY=USER_ID,...), bind a loopback address such as 127.0.0.1:8080, or pass --allow-unauthenticated \
             (AEGIS_ALLOW_UNAUTHENTICATED=true) if a proxy in front authenticates requests"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_without_keys_needs_loopback_or_opt_out() {
        let open: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let loopback: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let loopback_v6: SocketAddr = "[::1]:8080".parse().unwrap();

        let none = AuthConfig::default();
        assert!(none.check_bind(loopback).is_ok());
        assert!(none.check_bind(loopback_v6).is_ok());
        let error = none.check_bind(open).unwrap_err();
        assert!(error.contains("0.0.0.0:8080"), "{error}");
        assert!(error.contains("--allow-unauthenticated"), "{error}");

        let opted_out = AuthConfig { allow_unauthenticated: true, ..AuthConfig::default() };
        assert!(opted_out.check_bind(open).is_ok());
        let keyed = AuthConfig::with_keys("alice-key-0123456789=alice".parse().unwrap());
        assert!(keyed.check_bind(open).is_ok());
    }
}
