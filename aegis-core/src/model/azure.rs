//! `AzureOpenAIChatCompletionClient`: Chat Completions on an Azure OpenAI resource.
//!
//! Azure speaks OpenAI's wire format, so this module only resolves what differs and hands
//! the rest to [`OpenAiClient`]: requests go to
//! `{azure_endpoint}/openai/deployments/{azure_deployment}/chat/completions?api-version=...`
//! and the key travels in the `api-key` header. The key falls back to `AZURE_OPENAI_API_KEY`
//! and the endpoint to `AZURE_OPENAI_ENDPOINT`; the environment's key is only sent to the
//! endpoint that variable names.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::model::ModelInfo;
use crate::model::env::ProviderEnv;
use crate::model::openai::{CommonConfig, KeyHeader, OpenAiClient};
use crate::model::transport::{env_key_may_go_to, normalise_url};
use crate::secret::Secret;

/// The `provider` string AutoGen dumps for this client.
pub const PROVIDER: &str = "autogen_ext.models.openai.AzureOpenAIChatCompletionClient";

/// The config keys of `AzureOpenAIChatCompletionClient` that differ from OpenAI's; the request
/// parameters are the same.
#[derive(Clone, Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct AzureOpenAiConfig {
    /// Model name, used in errors and logs; defaults to the deployment name.
    #[serde(default)]
    pub model: Option<String>,
    /// Resource endpoint, such as `https://my-resource.openai.azure.com`.
    #[serde(default)]
    pub azure_endpoint: Option<String>,
    /// Deployment name.
    #[serde(default)]
    pub azure_deployment: Option<String>,
    /// API version, such as `2024-06-01`.
    #[serde(default)]
    pub api_version: Option<String>,
    /// API key; absent or AutoGen's mask means "use `AZURE_OPENAI_API_KEY`".
    #[serde(default)]
    pub api_key: Option<String>,
    /// Per-request timeout in seconds (default 60).
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Retries after the first attempt (default 2).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Capabilities of the model.
    #[serde(default)]
    pub model_info: Option<ModelInfo>,
    /// Extra headers sent with every request.
    #[serde(default)]
    pub default_headers: Option<Map<String, Value>>,
    /// `response_format` sent with every request unless a call sets its own.
    #[serde(default)]
    pub response_format: Option<Value>,
    /// `stream_options` of streamed requests.
    #[serde(default)]
    pub stream_options: Option<Value>,
}

/// Builds an Azure OpenAI client from a component `config`.
pub fn from_config(config: &Value, env: &ProviderEnv, http: reqwest::Client) -> Result<OpenAiClient, String> {
    let parsed: AzureOpenAiConfig = serde_json::from_value(config.clone()).map_err(|error| error.to_string())?;
    let present =
        |value: &Option<String>| value.as_deref().map(str::trim).filter(|text| !text.is_empty()).map(str::to_owned);

    let env_endpoint = env.azure_openai_endpoint.as_deref();
    let Some(endpoint) = present(&parsed.azure_endpoint).or_else(|| env_endpoint.map(str::to_owned)) else {
        return Err("missing field `azure_endpoint` (or set AZURE_OPENAI_ENDPOINT)".to_owned());
    };
    let Some(deployment) = present(&parsed.azure_deployment) else {
        return Err("missing field `azure_deployment`".to_owned());
    };
    let Some(api_version) = present(&parsed.api_version) else {
        return Err("missing field `api_version`".to_owned());
    };
    let endpoint = normalise_url(&endpoint);

    // Azure has no public default host, so without AZURE_OPENAI_ENDPOINT the environment's
    // key goes nowhere.
    let api_key = match parsed.api_key.as_deref().and_then(Secret::new) {
        Some(key) => Some(key),
        None if env_endpoint.is_some_and(|trusted| env_key_may_go_to(&endpoint, trusted)) => {
            env.azure_openai_api_key.clone()
        }
        None => None,
    };

    let url = reqwest::Url::parse_with_params(
        &format!("{endpoint}/openai/deployments/{deployment}/chat/completions"),
        [("api-version", api_version.as_str())],
    )
    .map_err(|error| format!("azure_endpoint `{endpoint}` is not a valid URL: {error}"))?;

    let common = CommonConfig {
        model: present(&parsed.model).unwrap_or_else(|| deployment.clone()),
        organization: None,
        timeout: parsed.timeout,
        max_retries: parsed.max_retries,
        model_info: parsed.model_info,
        default_headers: parsed.default_headers,
        response_format: parsed.response_format,
        stream_options: parsed.stream_options,
    };
    OpenAiClient::assemble("azure", config, common, url.to_string(), api_key, KeyHeader::AzureApiKey, http)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn url_names_deployment_and_version() {
        let config = json!({"azure_endpoint": "https://r.openai.azure.com/", "azure_deployment": "gpt4o",
            "api_version": "2024-06-01", "model": "gpt-4o", "api_key": "k"});
        let client = from_config(&config, &ProviderEnv::default(), reqwest::Client::new()).unwrap();
        assert_eq!(
            client.endpoint(),
            "https://r.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-06-01"
        );
    }

    #[test]
    fn env_key_goes_only_to_env_endpoint() {
        let env = ProviderEnv {
            azure_openai_api_key: Secret::new("az-env"),
            azure_openai_endpoint: Some("https://mine.openai.azure.com".to_owned()),
            ..ProviderEnv::default()
        };
        let own = json!({"azure_deployment": "d", "api_version": "v"});
        assert!(from_config(&own, &env, reqwest::Client::new()).unwrap().has_api_key());
        let foreign = json!({"azure_endpoint": "https://other.example", "azure_deployment": "d", "api_version": "v"});
        assert!(!from_config(&foreign, &env, reqwest::Client::new()).unwrap().has_api_key());
        let missing = json!({"azure_deployment": "d", "api_version": "v"});
        assert!(from_config(&missing, &ProviderEnv::default(), reqwest::Client::new()).is_err());
    }
}
