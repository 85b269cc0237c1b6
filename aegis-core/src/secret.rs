//! A string that never shows itself in `Debug` or `Display` output.

use std::fmt;

/// AutoGen's mask for a secret it will not print. Aegis reads it as "not set".
pub const SECRET_MASK: &str = "**********";

/// An API key or other credential. Formatting prints [`SECRET_MASK`], so a secret that ends up
/// in a log line or an error message by accident still does not leak.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential. Returns `None` for an empty value or AutoGen's mask.
    pub fn new(value: impl Into<String>) -> Option<Secret> {
        let value = value.into();
        if value.is_empty() || value == SECRET_MASK {
            return None;
        }
        Some(Secret(value))
    }

    /// Returns the credential for sending to the provider it belongs to.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SECRET_MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SECRET_MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_and_empty_are_not_set() {
        assert!(Secret::new("").is_none());
        assert!(Secret::new(SECRET_MASK).is_none());
    }

    #[test]
    fn formatting_hides_value() {
        let secret = Secret::new("sk-live-123").unwrap();
        assert_eq!(format!("{secret:?} {secret}"), "********** **********");
    }
}

/// Returns whether a config key names a secret, in any letter case: `api_key`,
/// `azure_ad_token`, `password`, `secret`, `token`, `access_token`, `private_key`, or a key
/// ending in `_secret`, `_password`, `_api_key` or `_access_token`. `max_tokens` and
/// `azure_ad_token_provider` are not secrets.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    matches!(
        key.as_str(),
        "api_key" | "azure_ad_token" | "password" | "secret" | "token" | "access_token" | "private_key"
    ) || ["_secret", "_password", "_api_key", "_access_token"].iter().any(|suffix| key.ends_with(suffix))
}

/// Returns whether an HTTP header name carries a credential (`Authorization`, `api-key`,
/// `x-api-key`, or any name mentioning a key, token, secret or password).
pub fn is_secret_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower == "authorization"
        || lower == "proxy-authorization"
        || ["key", "token", "secret", "password", "cookie"].iter().any(|word| lower.contains(word))
}

/// Replaces every secret string in a JSON tree (at any depth) with [`SECRET_MASK`]: values of
/// secret keys (see [`is_secret_key`]) and credential headers inside `default_headers` (the
/// OpenAI and Anthropic clients) or `headers` (the Ollama client).
pub fn mask_secrets(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if is_secret_key(key) && child.is_string() {
                    *child = serde_json::Value::String(SECRET_MASK.to_owned());
                } else if (key == "default_headers" || key == "headers") && child.is_object() {
                    mask_headers(child);
                } else {
                    mask_secrets(child);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_secrets),
        _ => {}
    }
}

/// Puts stored secrets back where an update sent the mask: every string equal to
/// [`SECRET_MASK`] in `update` takes the value at the same path in `stored`, so a client can
/// send back a component it read (secrets masked) without erasing them. A mask with no
/// stored value at its path stays as it is, which model clients read as "not set".
pub fn restore_masked(update: &mut serde_json::Value, stored: &serde_json::Value) {
    match (update, stored) {
        (serde_json::Value::Object(map), serde_json::Value::Object(stored_map)) => {
            for (key, child) in map.iter_mut() {
                let Some(stored_child) = stored_map.get(key) else { continue };
                if child.as_str() == Some(SECRET_MASK) {
                    *child = stored_child.clone();
                } else {
                    restore_masked(child, stored_child);
                }
            }
        }
        (serde_json::Value::Array(items), serde_json::Value::Array(stored_items)) => {
            for (child, stored_child) in items.iter_mut().zip(stored_items) {
                if child.as_str() == Some(SECRET_MASK) {
                    *child = stored_child.clone();
                } else {
                    restore_masked(child, stored_child);
                }
            }
        }
        _ => {}
    }
}

fn mask_headers(headers: &mut serde_json::Value) {
    let serde_json::Value::Object(map) = headers else { return };
    for (name, value) in map.iter_mut() {
        if is_secret_header(name) && value.is_string() {
            *value = serde_json::Value::String(SECRET_MASK.to_owned());
        }
    }
}

#[cfg(test)]
mod mask_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn restore_keeps_stored_secrets() {
        let stored = json!({"config": {"api_key": "sk-live", "model": "a", "list": [{"password": "p"}]}});
        let mut update = json!({"config": {"api_key": SECRET_MASK, "model": "b", "list": [{"password": SECRET_MASK}]}});
        restore_masked(&mut update, &stored);
        assert_eq!(update, json!({"config": {"api_key": "sk-live", "model": "b", "list": [{"password": "p"}]}}));
    }

    #[test]
    fn restore_takes_new_secrets() {
        let stored = json!({"api_key": "sk-old"});
        let mut update = json!({"api_key": "sk-new", "base_url": SECRET_MASK});
        restore_masked(&mut update, &stored);
        assert_eq!(update, json!({"api_key": "sk-new", "base_url": SECRET_MASK}));
    }

    #[test]
    fn masks_nested_secrets_only() {
        let mut value = json!({"config": {"api_key": "sk-1", "max_tokens": 5, "azure_ad_token_provider": {"x": 1},
            "participants": [{"config": {"db_password": "p", "client_secret": "s", "name": "a"}}]}});
        mask_secrets(&mut value);
        assert_eq!(value["config"]["api_key"], SECRET_MASK);
        assert_eq!(value["config"]["max_tokens"], 5);
        assert_eq!(value["config"]["azure_ad_token_provider"], json!({"x": 1}));
        assert_eq!(value["config"]["participants"][0]["config"]["db_password"], SECRET_MASK);
        assert_eq!(value["config"]["participants"][0]["config"]["client_secret"], SECRET_MASK);
        assert_eq!(value["config"]["participants"][0]["config"]["name"], "a");
    }

    #[test]
    fn masks_credential_headers() {
        let mut value = json!({"default_headers": {"Authorization": "Bearer sk", "X-Api-Key": "k", "X-Trace": "t"}});
        mask_secrets(&mut value);
        assert_eq!(value["default_headers"]["Authorization"], SECRET_MASK);
        assert_eq!(value["default_headers"]["X-Api-Key"], SECRET_MASK);
        assert_eq!(value["default_headers"]["X-Trace"], "t");
    }

    #[test]
    fn masks_ollama_headers() {
        let mut value = json!({"config": {"headers": {"Authorization": "Bearer sk", "X-Trace": "t"}}});
        mask_secrets(&mut value);
        assert_eq!(value["config"]["headers"]["Authorization"], SECRET_MASK);
        assert_eq!(value["config"]["headers"]["X-Trace"], "t");
    }

    #[test]
    fn masks_tokens_in_any_case() {
        let mut value = json!({"API_KEY": "a", "token": "b", "access_token": "c", "private_key": "d",
            "github_access_token": "e", "max_tokens": 5, "token_limit": 7});
        mask_secrets(&mut value);
        for key in ["API_KEY", "token", "access_token", "private_key", "github_access_token"] {
            assert_eq!(value[key], SECRET_MASK, "{key}");
        }
        assert_eq!(value["max_tokens"], 5);
        assert_eq!(value["token_limit"], 7);
    }
}
