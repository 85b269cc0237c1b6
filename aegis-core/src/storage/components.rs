//! Shared copies of the team components that runs carry, for store implementations.
//!
//! A store keeps each run's team component as it was when the run was accepted, usually as
//! JSON text, so that a later edit of the team never changes a run. Runs of one team nearly
//! always carry the same text, though. Decoding it on every claim costs time. It also gives
//! each run in flight its own copy of the component for as long as it executes, a few KiB
//! each, which adds up with thousands of runs waiting on a slow model. A [`ComponentCache`] keeps the
//! last few decoded components beside their text, and a text equal byte for byte gets the
//! shared copy. Keying by the text rather than by a team's id means an edited team can never
//! be served from an old entry. The copy sits behind an `Arc` with no interior mutability, so
//! no run can change it for another.
//!
//! The SQLite store keeps two caches. One is keyed by the component text of run rows, the
//! other by the text of team documents, because a run that starts in the write that stores it
//! takes its component from the team. The PostgreSQL store keeps one cache, for claims.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::component::ComponentModel;

/// Components kept. A server usually runs a handful of teams at a time, and comparing a text
/// with each entry costs a length check and, for equal lengths, a memory comparison.
const CAPACITY: usize = 16;

/// The most recently used team components, newest first, each beside the text it came from.
///
/// A store that shares one cache between threads puts it behind a mutex. Lookups compare the
/// text with each entry, so the lock is best held briefly.
#[derive(Debug, Default)]
pub struct ComponentCache {
    entries: VecDeque<(String, Arc<ComponentModel>)>,
}

impl ComponentCache {
    /// Returns the component that `text` encodes, decoding it only when no cached entry has
    /// the same text.
    ///
    /// # Errors
    ///
    /// Fails when `text` is not a component's JSON; nothing is cached then.
    pub fn get_or_decode(&mut self, text: String) -> Result<Arc<ComponentModel>, serde_json::Error> {
        self.get_or_decode_with(text, |text| serde_json::from_str(text))
    }

    /// Returns the component that `decode` finds in `text`, calling it only when no cached
    /// entry has the same text. A store uses it for texts that contain more than the component,
    /// such as a team's whole document.
    ///
    /// # Errors
    ///
    /// Fails with the error of `decode`; nothing is cached then.
    pub fn get_or_decode_with(
        &mut self,
        text: String,
        decode: impl FnOnce(&str) -> Result<ComponentModel, serde_json::Error>,
    ) -> Result<Arc<ComponentModel>, serde_json::Error> {
        if let Some(position) = self.entries.iter().position(|(cached, _)| *cached == text) {
            // Moved to the front, so the entry that goes when the cache is full is the one
            // used longest ago.
            if let Some(entry) = self.entries.remove(position) {
                let component = Arc::clone(&entry.1);
                self.entries.push_front(entry);
                return Ok(component);
            }
        }

        let component = Arc::new(decode(&text)?);
        if self.entries.len() == CAPACITY {
            self.entries.pop_back();
        }
        self.entries.push_front((text, Arc::clone(&component)));
        Ok(component)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(name: &str) -> String {
        format!(r#"{{"provider": "autogen_agentchat.teams.RoundRobinGroupChat", "config": {{"name": "{name}"}}}}"#)
    }

    #[test]
    fn equal_text_shares_one_copy() {
        let mut cache = ComponentCache::default();
        let first = cache.get_or_decode(text("a")).unwrap();
        let second = cache.get_or_decode(text("a")).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
    }

    #[test]
    fn different_text_decodes_again() {
        let mut cache = ComponentCache::default();
        let first = cache.get_or_decode(text("a")).unwrap();
        let second = cache.get_or_decode(text("b")).unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(second.config["name"], "b");
    }

    #[test]
    fn oldest_entry_leaves_when_full() {
        let mut cache = ComponentCache::default();
        let first = cache.get_or_decode(text("0")).unwrap();
        for index in 1..=CAPACITY {
            cache.get_or_decode(text(&index.to_string())).unwrap();
        }
        assert_eq!(cache.entries.len(), CAPACITY);
        let again = cache.get_or_decode(text("0")).unwrap();
        assert!(!Arc::ptr_eq(&first, &again), "the first entry was evicted, so it is decoded anew");
    }

    #[test]
    fn least_recently_used_leaves_first() {
        let mut cache = ComponentCache::default();
        let decoded: Vec<_> =
            (0..CAPACITY).map(|index| cache.get_or_decode(text(&index.to_string())).unwrap()).collect();

        // Using the oldest entry leaves the second oldest as the one to go.
        cache.get_or_decode(text("0")).unwrap();
        cache.get_or_decode(text("new")).unwrap();
        let newest = cache.get_or_decode(text(&(CAPACITY - 1).to_string())).unwrap();
        assert!(Arc::ptr_eq(&newest, &decoded[CAPACITY - 1]), "the newest entry was evicted");
        let used = cache.get_or_decode(text("0")).unwrap();
        assert!(Arc::ptr_eq(&used, &decoded[0]), "a recently used entry was evicted");
        let oldest = cache.get_or_decode(text("1")).unwrap();
        assert!(!Arc::ptr_eq(&oldest, &decoded[1]), "the entry used longest ago was kept");
    }

    #[test]
    fn invalid_text_is_an_error() {
        let mut cache = ComponentCache::default();
        assert!(cache.get_or_decode("{not json".to_owned()).is_err());
        assert!(cache.entries.is_empty());
    }
}
