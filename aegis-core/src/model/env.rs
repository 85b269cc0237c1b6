//! Provider settings taken from the environment, such as `OPENAI_API_KEY`.
//!
//! The engine never reads the process environment itself: the binary (or an embedding
//! application) captures a [`ProviderEnv`] once and hands it to the registry. That keeps runs
//! reproducible in tests and puts every place a key can come from in one struct.
//!
//! An environment key belongs to one host: the host its provider's URL variable names, or
//! the provider's default host when that variable is unset. Clients send it nowhere else.

use crate::secret::Secret;

/// The OpenAI API's default base URL.
pub const OPENAI_DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// The Anthropic API's default base URL (requests go to `{base}/v1/messages`).
pub const ANTHROPIC_DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

/// Ollama's default host.
pub const OLLAMA_DEFAULT_HOST: &str = "http://localhost:11434";

/// Keys and hosts that model clients fall back to when a component does not set them.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ProviderEnv {
    /// `OPENAI_API_KEY`.
    pub openai_api_key: Option<Secret>,
    /// `OPENAI_BASE_URL`.
    pub openai_base_url: Option<String>,
    /// `AZURE_OPENAI_API_KEY`.
    pub azure_openai_api_key: Option<Secret>,
    /// `AZURE_OPENAI_ENDPOINT`, such as `https://my-resource.openai.azure.com`.
    pub azure_openai_endpoint: Option<String>,
    /// `ANTHROPIC_API_KEY`.
    pub anthropic_api_key: Option<Secret>,
    /// `ANTHROPIC_BASE_URL`.
    pub anthropic_base_url: Option<String>,
    /// `OLLAMA_HOST`, such as `127.0.0.1:11434` or `http://gpu-box:11434`.
    pub ollama_host: Option<String>,
}

impl ProviderEnv {
    /// Reads the variables from the process environment. Empty values count as unset.
    pub fn from_process_env() -> ProviderEnv {
        let read = |name: &str| std::env::var(name).ok().filter(|value| !value.trim().is_empty());
        ProviderEnv {
            openai_api_key: read("OPENAI_API_KEY").and_then(Secret::new),
            openai_base_url: read("OPENAI_BASE_URL"),
            azure_openai_api_key: read("AZURE_OPENAI_API_KEY").and_then(Secret::new),
            azure_openai_endpoint: read("AZURE_OPENAI_ENDPOINT"),
            anthropic_api_key: read("ANTHROPIC_API_KEY").and_then(Secret::new),
            anthropic_base_url: read("ANTHROPIC_BASE_URL"),
            ollama_host: read("OLLAMA_HOST"),
        }
    }

    /// Returns an environment with only an OpenAI-compatible base URL set, as tests use.
    pub fn with_openai_base_url(base_url: impl Into<String>) -> ProviderEnv {
        ProviderEnv { openai_base_url: Some(base_url.into()), ..ProviderEnv::default() }
    }
}
