//! The LLM services: their input, billing and backend, which is a service's OpenAI-compatible
//! upstream when one is configured (`POST {base_url}/chat/completions`: Groq, OpenAI, Together,
//! vLLM, Ollama, llama.cpp's server; streaming answers passed through as they arrive), else the
//! local model ([`super::local_llm`]), which answers in the same shapes.

use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use serde_json::Value;

use super::BackendError;
use super::local_llm::LocalLlm;

/// What answers an LLM service: its upstream, which wins when configured, or the local model.
#[derive(Clone, Debug)]
pub enum ChatBackend {
    /// An OpenAI-compatible upstream.
    Upstream(Upstream),
    /// The model run in process.
    Local(LocalLlm),
}

impl ChatBackend {
    /// The model that answers.
    pub fn model(&self) -> &str {
        match self {
            Self::Upstream(upstream) => upstream.model(),
            Self::Local(local) => local.name(),
        }
    }

    /// `upstream` or `local`, for the catalog.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Upstream(_) => "upstream",
            Self::Local(_) => "local",
        }
    }

    /// Answers an OpenAI chat completions request paid for `billed` tokens (prompt and
    /// answer): the local model never uses more; an upstream is trusted with `max_tokens`.
    pub async fn chat(&self, request: Value, billed: u64) -> Result<ChatAnswer, BackendError> {
        match self {
            Self::Upstream(upstream) => upstream.chat(request).await,
            Self::Local(local) => local.chat(&request, billed).await,
        }
    }
}

/// One upstream: where it is, the key, and the model to ask for.
#[derive(Clone, Debug)]
pub struct Upstream {
    base_url: String,
    api_key: Option<x402_proto::Secret>,
    model: String,
    http: reqwest::Client,
}

/// A chat backend's answer: a JSON completion, or an event stream to pass through.
pub enum ChatAnswer {
    /// `stream: false`.
    Complete(Value),
    /// `stream: true`: the `text/event-stream` bytes.
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

/// The tokens in `text` as the gateway estimates them for LLMs where an upstream does not count
/// them: ASCII at 4 characters a token (rounded up), and every other character at one token per
/// byte of its UTF-8 form, the most a byte-level tokenizer (GPT, Llama 3, Qwen) or one with byte
/// fallback (Llama 2, Mistral) can make of it: CJK or emoji are never counted below what they
/// cost. The one estimate behind the prompt in a quote, the meter of a stream and an answer
/// without `usage`.
pub fn estimated_tokens(text: &str) -> u64 {
    let mut estimate = TokenEstimate::default();
    estimate.add(text);
    estimate.tokens()
}

/// [`estimated_tokens`] of text that arrives in pieces: the same as of the pieces joined.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokenEstimate {
    ascii: u64,
    other_bytes: u64,
}

impl TokenEstimate {
    /// Adds the next piece of text.
    pub fn add(&mut self, text: &str) {
        let ascii = text.bytes().filter(u8::is_ascii).count() as u64;
        self.ascii += ascii;
        self.other_bytes += text.len() as u64 - ascii;
    }

    /// The tokens of the text added so far.
    pub fn tokens(&self) -> u64 {
        self.ascii.div_ceil(4) + self.other_bytes
    }
}

/// The text fields of an answer's `message` or a streamed `delta` that a model writes and an
/// upstream bills as completion tokens: `content`, `reasoning_content`, `reasoning`, `refusal`,
/// and the `arguments` of its tool (or legacy function) calls.
pub fn answer_texts(message: &Value) -> impl Iterator<Item = &str> {
    let fields = ["content", "reasoning_content", "reasoning", "refusal"]
        .into_iter()
        .map(|field| &message[field]);
    let calls = message["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|call| &call["function"]["arguments"]);
    fields
        .chain(calls)
        .chain(std::iter::once(&message["function_call"]["arguments"]))
        .filter_map(Value::as_str)
}

/// Default `max_tokens` for LLM requests that do not say; part of the price.
pub const DEFAULT_MAX_TOKENS: u64 = 512;
/// The most `max_tokens` one request may ask for.
pub const MAX_MAX_TOKENS: u64 = 32_768;

/// A chat completion: billed by the prompt's estimated tokens plus
/// `max_tokens`.
#[derive(Debug)]
pub struct ChatJob {
    /// The OpenAI request, `max_tokens` set to what was paid for.
    pub request: Value,
    /// What answers it.
    pub backend: ChatBackend,
    /// The billed tokens.
    pub tokens: u64,
    /// Whether the client asked for the usage chunk of a stream
    /// (`stream_options.include_usage`); the upstream is always asked, and its usage chunk is
    /// passed on only then.
    pub usage_to_client: bool,
}

impl ChatJob {
    /// Reads a GPU-Bridge `/run` input (`prompt` or `messages`) or an OpenAI request for
    /// `backend`; `force_stream` for services that always stream.
    pub fn prepare(
        input: &Value,
        backend: ChatBackend,
        force_stream: bool,
    ) -> Result<Self, x402_paywall::Rejection> {
        let (request, mut tokens) = chat_request(input, force_stream)?;
        if let ChatBackend::Local(_) = backend {
            // The local template's own tokens (the model's default system prompt, the turn
            // markers) are part of the prompt it reads.
            tokens += super::local_llm::TEMPLATE_TOKENS;
        }
        Ok(Self {
            request,
            backend,
            tokens,
            usage_to_client: input["stream_options"]["include_usage"] == Value::Bool(true),
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

    /// Asks the backend.
    pub async fn run(&self) -> Result<ChatAnswer, BackendError> {
        self.backend.chat(self.request.clone(), self.tokens).await
    }
}

/// An OpenAI chat request from `/run` input (`prompt` or `messages`), with `max_tokens` set,
/// and the tokens it is billed for: the prompt's [`estimated_tokens`], plus `max_tokens` (the
/// most the answer may use). A streamed request asks the upstream for its usage chunk.
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
    let tokens = estimated_tokens(&messages.to_string()) + max_tokens;
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
    if stream {
        // The upstream's count is what a stream is charged: OpenAI-style upstreams send it in
        // a last chunk (empty `choices`, a `usage`) only when asked.
        request.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok((Value::Object(request), tokens))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ascii_counts_four_characters_a_token_and_other_text_a_token_a_byte() {
        assert_eq!(estimated_tokens(""), 0);
        assert_eq!(estimated_tokens("abcde"), 2);
        // Cyrillic (two bytes), CJK (three), emoji (four).
        assert_eq!(estimated_tokens("да"), 4);
        assert_eq!(estimated_tokens("日本語"), 9);
        assert_eq!(estimated_tokens("🦀"), 4);
        // In pieces the same as whole.
        let mut pieces = TokenEstimate::default();
        ["ab", "c日", "de"].into_iter().for_each(|p| pieces.add(p));
        assert_eq!(pieces.tokens(), estimated_tokens("abc日de"));
    }

    #[test]
    fn a_cjk_prompt_is_billed_at_least_a_token_a_character() {
        let prompt = "请写一首关于大海的长诗".repeat(10);
        let (_, tokens) = chat_request(&json!({"prompt": prompt, "max_tokens": 1}), false).unwrap();
        assert!(tokens > prompt.chars().count() as u64, "{tokens}");
    }

    #[test]
    fn a_streamed_request_asks_the_upstream_for_its_usage() {
        let input = json!({"prompt": "hi", "stream_options": {"include_usage": false}});
        let (streamed, _) = chat_request(&input, true).unwrap();
        assert_eq!(streamed["stream_options"], json!({"include_usage": true}));
        let (whole, _) = chat_request(&input, false).unwrap();
        assert!(whole.get("stream_options").is_none(), "{whole}");
    }
}
