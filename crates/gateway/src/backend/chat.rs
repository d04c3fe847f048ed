//! LLMs through any OpenAI-compatible upstream (`POST {base_url}/chat/completions`): Groq,
//! OpenAI, Together, vLLM, Ollama, llama.cpp's server. Streaming answers are passed through
//! as they arrive.

use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use serde_json::Value;

use super::BackendError;

/// One upstream: where it is, the key, and the model to ask for.
#[derive(Clone)]
pub struct Upstream {
    base_url: String,
    api_key: Option<String>,
    model: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// An upstream's answer: a JSON completion, or an event stream to pass through.
pub enum ChatAnswer {
    /// `stream: false`.
    Complete(Value),
    /// `stream: true`: the upstream's `text/event-stream` bytes.
    Stream(Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send + Unpin>),
}

impl std::fmt::Debug for ChatAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Complete(body) => f.debug_tuple("Complete").field(body).finish(),
            Self::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

impl Upstream {
    /// An upstream at `base_url` (`https://api.groq.com/openai/v1`), asking for `model`.
    pub fn new(
        base_url: &str,
        api_key: Option<String>,
        model: &str,
        timeout: Duration,
    ) -> Result<Self, BackendError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(timeout)
            .build()
            .map_err(|e| BackendError::Unavailable(format!("HTTP client: {e}")))?;
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            model: model.to_owned(),
            http,
        })
    }

    /// The model asked for.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Sends an OpenAI chat completions request (its `model` replaced by ours).
    pub async fn chat(&self, mut request: Value) -> Result<ChatAnswer, BackendError> {
        let stream = request
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        request["model"] = Value::String(self.model.clone());
        let mut builder = self
            .http
            .post(format!("{}/chat/completions", self.base_url))
            .json(&request);
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(key);
        }
        let response = builder.send().await.map_err(|e| {
            BackendError::Upstream(format!(
                "cannot reach the LLM upstream {}: {e}",
                self.base_url
            ))
        })?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let excerpt: String = body.chars().take(500).collect();
            return Err(
                if status.is_client_error() && status.as_u16() != 429 && status.as_u16() != 401 {
                    BackendError::BadInput(format!(
                        "the LLM upstream refused the request ({status}): {excerpt}"
                    ))
                } else {
                    BackendError::Upstream(format!("the LLM upstream answered {status}: {excerpt}"))
                },
            );
        }
        if stream {
            return Ok(ChatAnswer::Stream(Box::new(Box::pin(
                response.bytes_stream(),
            ))));
        }
        let body: Value = response
            .json()
            .await
            .map_err(|e| BackendError::Upstream(format!("the LLM upstream sent bad JSON: {e}")))?;
        Ok(ChatAnswer::Complete(body))
    }
}
