//! Provider settings taken from the environment, such as `OPENAI_API_KEY`.
//!
//! The engine never reads the process environment itself: the binary (or an embedding
//! application) captures a [`ProviderEnv`] once and hands it to the registry. That keeps runs
//! reproducible in tests and puts every place a key can come from in one struct.

use crate::secret::Secret;

/// The OpenAI API's default base URL.
pub const OPENAI_DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Keys and hosts that model clients fall back to when a component does not set them.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ProviderEnv {
    /// `OPENAI_API_KEY`.
    pub openai_api_key: Option<Secret>,
    /// `OPENAI_BASE_URL`.
    pub openai_base_url: Option<String>,
}

impl ProviderEnv {
    /// Reads the variables from the process environment. Empty values count as unset.
    pub fn from_process_env() -> ProviderEnv {
        let read = |name: &str| std::env::var(name).ok().filter(|value| !value.trim().is_empty());
        ProviderEnv {
            openai_api_key: read("OPENAI_API_KEY").and_then(Secret::new),
            openai_base_url: read("OPENAI_BASE_URL"),
        }
    }

    /// Returns an environment with only an OpenAI-compatible base URL set, as tests use.
    pub fn with_openai_base_url(base_url: impl Into<String>) -> ProviderEnv {
        ProviderEnv { openai_base_url: Some(base_url.into()), ..ProviderEnv::default() }
    }
}
