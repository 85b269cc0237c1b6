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
