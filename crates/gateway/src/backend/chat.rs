//! LLMs through any OpenAI-compatible upstream (`POST {base_url}/chat/completions`): Groq,
//! OpenAI, Together, vLLM, Ollama, llama.cpp's server. Streaming answers are passed through
//! as they arrive.

use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use serde_json::Value;

use super::BackendError;

/// One upstream: where it is, the key, and the model to ask for.
#[derive(Clone, Debug)]
pub struct Upstream {
    base_url: String,
    api_key: Option<x402_proto::Secret>,
    model: String,
    http: reqwest::Client,
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
        api_key: Option<x402_proto::Secret>,
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
            builder = builder.bearer_auth(key.expose());
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

// ---------------------------------------------------------------------------------------
// The llm-* services: input, billing units, run.

/// The tokens in `chars` characters of text, as the gateway estimates them for LLMs (4
/// characters a token, rounded up) when an upstream does not count them.
pub fn estimated_tokens(chars: u64) -> u64 {
    chars.div_ceil(4)
}

/// Default `max_tokens` for LLM requests that do not say; part of the price.
pub const DEFAULT_MAX_TOKENS: u64 = 512;
/// The most `max_tokens` one request may ask for.
pub const MAX_MAX_TOKENS: u64 = 32_768;

/// A chat completion for an upstream: billed by the prompt's estimated tokens plus
/// `max_tokens`.
#[derive(Debug)]
pub struct ChatJob {
    /// The OpenAI request, `max_tokens` set to what was paid for.
    pub request: Value,
    /// The upstream.
    pub upstream: Upstream,
    /// The billed tokens.
    pub tokens: u64,
}

impl ChatJob {
    /// Reads a GPU-Bridge `/run` input (`prompt` or `messages`) or an OpenAI request for
    /// `upstream`; `force_stream` for services that always stream.
    pub fn prepare(
        input: &Value,
        upstream: Upstream,
        force_stream: bool,
    ) -> Result<Self, x402_paywall::Rejection> {
        let (request, tokens) = chat_request(input, force_stream)?;
        Ok(Self {
            request,
            upstream,
            tokens,
        })
    }

    /// The billed prompt estimate: the billed tokens less `max_tokens`.
    pub fn prompt_tokens(&self) -> u64 {
        let max_tokens = self.request["max_tokens"]
            .as_u64()
            .unwrap_or(DEFAULT_MAX_TOKENS);
        self.tokens.saturating_sub(max_tokens)
    }

    /// Whether the answer is an event stream.
    pub fn streams(&self) -> bool {
        self.request["stream"] == Value::Bool(true)
    }

    /// Asks the upstream.
    pub async fn run(&self) -> Result<ChatAnswer, BackendError> {
        self.upstream.chat(self.request.clone()).await
    }
}

/// An OpenAI chat request from `/run` input (`prompt` or `messages`), with `max_tokens` set,
/// and the tokens it is billed for: the prompt estimated at 4 characters per token, plus
/// `max_tokens` (the most the answer may use).
pub fn chat_request(
    input: &Value,
    force_stream: bool,
) -> Result<(Value, u64), x402_paywall::Rejection> {
    use super::input::{bad, string_field};
    use serde_json::json;
    let messages = match (input.get("messages"), string_field(input, "prompt")?) {
        (Some(Value::Array(messages)), _) if !messages.is_empty() => {
            for (i, m) in messages.iter().enumerate() {
                if m.get("role").and_then(Value::as_str).is_none() || m.get("content").is_none() {
                    return Err(bad(format!("messages[{i}] needs a role and content")));
                }
            }
            Value::Array(messages.clone())
        }
        (Some(_), _) => return Err(bad("messages must be a non-empty array of {role, content}")),
        (None, Some(prompt)) if !prompt.trim().is_empty() => {
            let mut messages = Vec::new();
            if let Some(system) = string_field(input, "system")? {
                messages.push(json!({"role": "system", "content": system}));
            }
            messages.push(json!({"role": "user", "content": prompt}));
            Value::Array(messages)
        }
        _ => {
            return Err(bad(
                "input.prompt (a string) or input.messages (an array) is required",
            ));
        }
    };
    let max_tokens = match input
        .get("max_tokens")
        .or_else(|| input.get("max_completion_tokens"))
    {
        None | Some(Value::Null) => DEFAULT_MAX_TOKENS,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=MAX_MAX_TOKENS).contains(n))
            .ok_or_else(|| {
                bad(format!(
                    "max_tokens must be an integer from 1 to {MAX_MAX_TOKENS}"
                ))
            })?,
    };
    let prompt_chars = messages.to_string().chars().count() as u64;
    let tokens = estimated_tokens(prompt_chars) + max_tokens;
    let mut request = serde_json::Map::new();
    for key in [
        "temperature",
        "top_p",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "response_format",
        "tools",
        "tool_choice",
        "user",
    ] {
        if let Some(v) = input.get(key) {
            request.insert(key.to_owned(), v.clone());
        }
    }
    request.insert("messages".into(), messages);
    request.insert("max_tokens".into(), json!(max_tokens));
    let stream = force_stream
        || input
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(false);
    request.insert("stream".into(), json!(stream));
    Ok((Value::Object(request), tokens))
}
