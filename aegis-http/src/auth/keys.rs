//! [`ApiKeys`]: the bearer tokens a server accepts, each mapped to the user id it acts as.
//!
//! Keys come from one string, `KEY=USER_ID` pairs separated by commas, as `--api-keys` and
//! `AEGIS_API_KEYS` take them. Only the SHA-256 digest of each key is kept, and a presented
//! token is hashed and compared with every digest in constant time, so neither the time a
//! lookup takes nor the memory of the process reveals a key. Formatting an [`ApiKeys`] shows
//! the user ids, never a key, and parse errors name the position of a bad entry, not its text.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The shortest key accepted: 16 characters, because a short key can be guessed.
pub const MIN_KEY_LENGTH: usize = 16;

/// The user a valid key authenticates, with the position of the key in the configured list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyOwner {
    /// Position of the key in [`ApiKeys`], which names its rate-limit bucket.
    pub(crate) index: usize,
    /// The user id the key acts as.
    pub(crate) user_id: Arc<str>,
}

#[derive(Clone)]
struct Entry {
    digest: [u8; 32],
    user_id: Arc<str>,
}

/// The configured API keys; empty when the server accepts requests without a key.
#[derive(Clone, Default)]
pub struct ApiKeys {
    entries: Arc<[Entry]>,
}

impl ApiKeys {
    /// Returns whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Returns how many keys are configured.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Returns the user of `token`, comparing it with every key in constant time.
    pub(crate) fn find(&self, token: &str) -> Option<KeyOwner> {
        let presented = digest(token);
        let mut found = None;
        // Every entry is compared, so the time taken does not depend on which key matched.
        for (index, entry) in self.entries.iter().enumerate() {
            if bool::from(entry.digest.ct_eq(&presented)) {
                found = Some(KeyOwner { index, user_id: Arc::clone(&entry.user_id) });
            }
        }
        found
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Lists the user ids only.
impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let users: Vec<&str> = self.entries.iter().map(|entry| &*entry.user_id).collect();
        f.debug_struct("ApiKeys").field("users", &users).finish()
    }
}

/// A malformed `--api-keys` value. The message never contains a key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeysError {
    /// An entry is not `KEY=USER_ID`.
    #[error("API key entry {position} is not KEY=USER_ID; separate entries with commas, as in key1=alice,key2=bob")]
    NotAPair {
        /// Position of the entry, from 1.
        position: usize,
    },
    /// An entry's user id is empty.
    #[error("API key entry {position} has an empty user id; write KEY=USER_ID")]
    EmptyUser {
        /// Position of the entry, from 1.
        position: usize,
    },
    /// An entry's key is too short.
    #[error(
        "API key entry {position} (user {user_id:?}) has a key of {length} characters; use at least {MIN_KEY_LENGTH}, \
         such as the output of `openssl rand -hex 32`"
    )]
    TooShort {
        /// Position of the entry, from 1.
        position: usize,
        /// The user id of the entry.
        user_id: String,
        /// Characters in the key.
        length: usize,
    },
    /// Two entries have the same key.
    #[error("API key entry {position} repeats the key of entry {first}; give every key its own value")]
    Duplicate {
        /// Position of the repeated entry, from 1.
        position: usize,
        /// Position of the first entry with that key.
        first: usize,
    },
}

/// Parses `KEY=USER_ID,KEY=USER_ID`. A key may contain `=` (as base64 does), because the
/// user id is what follows the last `=`; neither may contain a comma. Whitespace around
/// entries, keys and user ids is ignored, and an empty string means no keys.
impl FromStr for ApiKeys {
    type Err = ApiKeysError;

    fn from_str(text: &str) -> Result<ApiKeys, ApiKeysError> {
        let mut entries: Vec<Entry> = Vec::new();
        let pairs = text.split(',').map(str::trim).filter(|pair| !pair.is_empty());
        for (index, pair) in pairs.enumerate() {
            let position = index + 1;
            let Some((key, user_id)) = pair.rsplit_once('=') else {
                return Err(ApiKeysError::NotAPair { position });
            };
            let (key, user_id) = (key.trim(), user_id.trim());
            if user_id.is_empty() {
                return Err(ApiKeysError::EmptyUser { position });
            }
            let length = key.chars().count();
            if length < MIN_KEY_LENGTH {
                return Err(ApiKeysError::TooShort { position, user_id: user_id.to_owned(), length });
            }
            let entry = Entry { digest: digest(key), user_id: Arc::from(user_id) };
            if let Some(first) = entries.iter().position(|earlier| earlier.digest == entry.digest) {
                return Err(ApiKeysError::Duplicate { position, first: first + 1 });
            }
            entries.push(entry);
        }
        Ok(ApiKeys { entries: entries.into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE_KEY: &str = "alice-key-0123456789";
    const BOB_KEY: &str = "bob-key-0123456789==";

    #[test]
    fn parse_maps_keys_to_users() {
        let keys: ApiKeys = format!(" {ALICE_KEY}=alice , {BOB_KEY}=bob ,").parse().unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.find(ALICE_KEY), Some(KeyOwner { index: 0, user_id: Arc::from("alice") }));
        assert_eq!(keys.find(BOB_KEY), Some(KeyOwner { index: 1, user_id: Arc::from("bob") }));
        assert_eq!(keys.find("alice-key-012345678"), None);
        assert_eq!(keys.find(""), None);
    }

    #[test]
    fn parse_empty_is_no_keys() {
        assert!("".parse::<ApiKeys>().unwrap().is_empty());
        assert!(" , ".parse::<ApiKeys>().unwrap().is_empty());
    }

    #[test]
    fn parse_rejects_bad_entries_without_echoing_keys() {
        let cases = [
            (ALICE_KEY.to_owned(), ApiKeysError::NotAPair { position: 1 }),
            (format!("{ALICE_KEY}=alice,{BOB_KEY}= "), ApiKeysError::EmptyUser { position: 2 }),
            ("short=carol".to_owned(), ApiKeysError::TooShort { position: 1, user_id: "carol".to_owned(), length: 5 }),
            (format!("{ALICE_KEY}=alice,{ALICE_KEY}=bob"), ApiKeysError::Duplicate { position: 2, first: 1 }),
        ];
        for (text, expected) in cases {
            let error = text.parse::<ApiKeys>().unwrap_err();
            assert_eq!(error, expected, "{text}");
            assert!(!error.to_string().contains(ALICE_KEY), "{error}");
        }
    }

    #[test]
    fn debug_shows_users_not_keys() {
        let keys: ApiKeys = format!("{ALICE_KEY}=alice").parse().unwrap();
        let printed = format!("{keys:?}");
        assert!(printed.contains("alice"), "{printed}");
        assert!(!printed.contains(ALICE_KEY), "{printed}");
    }
}
