//! `ReplayChatCompletionClient`: returns scripted completions in order, for tests and
//! benchmarks that must not touch a network.
//!
//! Entries are strings or `CreateResult` objects. Token counts follow AgentChat 0.7: for a
//! string entry, `prompt_tokens` is the whitespace-split word count of every prompt message
//! whose content is a string and `completion_tokens` the word count of the reply; an object
//! entry carries its own `usage`. When the list runs out the call fails with AgentChat's
//! `ValueError: No more mock responses available`.
//!
//! Streaming follows AgentChat too: a text entry arrives as its whitespace-split words, each
//! but the last followed by one space, and an object entry (a function call, say) arrives
//! whole, with no pieces.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use crate::message::RequestUsage;
use crate::model::{
    AssistantContent, ChunkSink, CreateContent, CreateRequest, CreateResult, FinishReason, LlmMessage, ModelClient,
    ModelError, ModelErrorKind, ModelInfo,
};

/// The `provider` string AutoGen dumps for this client.
pub const PROVIDER: &str = "autogen_ext.models.replay.ReplayChatCompletionClient";

/// One scripted completion.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ReplayEntry {
    /// A text reply whose usage is counted from the words.
    Text(String),
    /// A complete result, usage included.
    Result(CreateResult),
}

#[derive(Deserialize)]
struct ReplayConfig {
    #[serde(default)]
    chat_completions: Vec<Value>,
    #[serde(default)]
    model_info: Option<ModelInfo>,
}

/// A model client that replays scripted completions.
#[derive(Debug)]
pub struct ReplayClient {
    entries: Vec<ReplayEntry>,
    next: AtomicUsize,
    model_info: ModelInfo,
}

impl ReplayClient {
    /// Creates a client that replays `entries` in order.
    pub fn new(entries: Vec<ReplayEntry>) -> ReplayClient {
        ReplayClient { entries, next: AtomicUsize::new(0), model_info: ModelInfo::default() }
    }

    /// Creates a client that replays text replies in order.
    pub fn from_texts<I, S>(texts: I) -> ReplayClient
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ReplayClient::new(texts.into_iter().map(|text| ReplayEntry::Text(text.into())).collect())
    }

    /// Builds a client from a component `config` (`chat_completions`, `model_info`).
    pub fn from_config(config: &Value) -> Result<ReplayClient, String> {
        let parsed: ReplayConfig = serde_json::from_value(config.clone()).map_err(|error| error.to_string())?;
        let mut entries = Vec::with_capacity(parsed.chat_completions.len());
        for (index, entry) in parsed.chat_completions.into_iter().enumerate() {
            let entry =
                match entry {
                    Value::String(text) => ReplayEntry::Text(text),
                    other => ReplayEntry::Result(serde_json::from_value(other).map_err(|error| {
                        format!("chat_completions[{index}] is not a string or CreateResult: {error}")
                    })?),
                };
            entries.push(entry);
        }
        let mut client = ReplayClient::new(entries);
        if let Some(info) = parsed.model_info {
            client.model_info = info;
        }
        Ok(client)
    }
}

#[async_trait]
impl ModelClient for ReplayClient {
    fn model(&self) -> &str {
        "replay"
    }

    fn provider(&self) -> &str {
        "replay"
    }

    fn model_info(&self) -> ModelInfo {
        self.model_info.clone()
    }

    async fn create(&self, request: &CreateRequest) -> Result<CreateResult, ModelError> {
        self.next_result(request)
    }

    async fn create_stream(
        &self,
        request: &CreateRequest,
        chunks: &mut dyn ChunkSink,
    ) -> Result<CreateResult, ModelError> {
        let result = self.next_result(request)?;
        if let CreateContent::Text(text) = &result.content {
            let words: Vec<&str> = text.split_whitespace().collect();
            for (index, word) in words.iter().enumerate() {
                if index + 1 < words.len() {
                    chunks.on_chunk(&format!("{word} "));
                } else {
                    chunks.on_chunk(word);
                }
            }
        }
        Ok(result)
    }
}

impl ReplayClient {
    fn next_result(&self, request: &CreateRequest) -> Result<CreateResult, ModelError> {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        let Some(entry) = self.entries.get(index) else {
            let kind = ModelErrorKind::Other("ValueError".to_owned());
            return Err(ModelError::new(kind, "No more mock responses available", "replay", "replay"));
        };
        Ok(match entry {
            ReplayEntry::Result(result) => result.clone(),
            ReplayEntry::Text(text) => CreateResult {
                finish_reason: FinishReason::Stop,
                content: CreateContent::Text(text.clone()),
                usage: RequestUsage { prompt_tokens: prompt_words(&request.messages), completion_tokens: words(text) },
                cached: false,
                thought: None,
            },
        })
    }
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Counts words of the prompt messages whose content is a string; function calls and their
/// results count as nothing, as in AgentChat's replay client.
fn prompt_words(messages: &[LlmMessage]) -> u64 {
    messages
        .iter()
        .map(|message| match message {
            LlmMessage::SystemMessage { content } | LlmMessage::UserMessage { content, .. } => words(content),
            LlmMessage::AssistantMessage { content: AssistantContent::Text(text), .. } => words(text),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replays_in_order_then_fails() {
        let client = ReplayClient::from_texts(["one two", "three"]);
        let request = CreateRequest::new(vec![LlmMessage::SystemMessage { content: "a b c".to_owned() }]);
        let first = client.create(&request).await.unwrap();
        assert_eq!(first.content, CreateContent::Text("one two".to_owned()));
        assert_eq!(first.usage, RequestUsage { prompt_tokens: 3, completion_tokens: 2 });
        client.create(&request).await.unwrap();
        let error = client.create(&request).await.unwrap_err();
        assert_eq!(error.error_message(), "ValueError: No more mock responses available");
    }

    struct Pieces(Vec<String>);

    impl ChunkSink for Pieces {
        fn on_chunk(&mut self, text: &str) {
            self.0.push(text.to_owned());
        }
    }

    #[tokio::test]
    async fn streams_text_as_words() {
        let client = ReplayClient::from_texts(["Bob here.  TERMINATE"]);
        let mut pieces = Pieces(Vec::new());
        let result = client.create_stream(&CreateRequest::default(), &mut pieces).await.unwrap();
        assert_eq!(pieces.0, ["Bob ", "here. ", "TERMINATE"]);
        assert_eq!(result.content, CreateContent::Text("Bob here.  TERMINATE".to_owned()));
    }

    #[tokio::test]
    async fn streams_function_calls_whole() {
        let config = serde_json::json!({"chat_completions": [{
            "finish_reason": "function_calls",
            "content": [{"id": "call_1", "arguments": "{}", "name": "transfer_to_bob"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 5},
            "cached": false
        }]});
        let client = ReplayClient::from_config(&config).unwrap();
        let mut pieces = Pieces(Vec::new());
        let result = client.create_stream(&CreateRequest::default(), &mut pieces).await.unwrap();
        assert!(pieces.0.is_empty());
        assert_eq!(result.usage, RequestUsage { prompt_tokens: 0, completion_tokens: 5 });
        assert!(matches!(result.content, CreateContent::FunctionCalls(calls) if calls[0].name == "transfer_to_bob"));
    }
}
