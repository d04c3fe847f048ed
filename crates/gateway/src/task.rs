//! A request's input, checked and measured before payment (so it can be priced and refused
//! early), and the work it becomes.

use std::sync::Arc;

use base64::Engine;
use serde_json::{Value, json};
use x402_paywall::{Quote, Rejection};

use crate::backend::BackendError;
use crate::backend::chat::{ChatAnswer, Upstream};
use crate::backend::documents::{self, Format};
use crate::backend::embed::{self, DIMENSIONS, MODEL_NAME};
use crate::catalog::BackendKind;
use crate::config::GatewayLimits;
use crate::services::{Backends, Offered};

/// Default `max_tokens` for LLM requests that do not say; part of the price.
pub const DEFAULT_MAX_TOKENS: u64 = 512;
/// The most `max_tokens` one request may ask for.
pub const MAX_MAX_TOKENS: u64 = 32_768;

/// Work a service will do, its input already checked.
#[derive(Debug)]
pub enum Task {
    /// Embed texts; `single` when one text was given as a string.
    Embed {
        /// The texts.
        texts: Vec<String>,
        /// Whether to answer with one vector rather than a list.
        single: bool,
        /// Tokens embedded (counted when the request was priced).
        tokens: u64,
    },
    /// Score documents against a query.
    Rerank {
        /// The query.
        query: String,
        /// The candidates.
        documents: Vec<String>,
        /// How many results to return.
        top_n: Option<usize>,
    },
    /// Extract a document's text.
    Parse {
        /// The file.
        bytes: Vec<u8>,
        /// Its format.
        format: Format,
    },
    /// Speak text.
    Speak {
        /// The text.
        text: String,
        /// The voice asked for.
        voice: Option<String>,
        /// Words per minute.
        speed: Option<u32>,
    },
    /// A chat completion upstream.
    Chat {
        /// The OpenAI request, `max_tokens` set to what was paid for.
        request: Value,
        /// The upstream.
        upstream: Upstream,
    },
}

/// A checked request: the service, the work, how many units it is billed for.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The service key.
    pub service: &'static str,
    /// The work.
    pub task: Arc<Task>,
    /// Billed units (tokens, characters, documents, …).
    pub units: u64,
    /// Whether it runs as a job (answered with a `job_id`).
    pub as_job: bool,
    /// For a job, the checked input, recorded so the job can be run again after a restart.
    pub job_input: Option<Value>,
}

impl Prepared {
    /// The price of this request: the service's rate times its units.
    pub fn quote(&self, offered: &Offered) -> Quote {
        let unit = offered.def.unit;
        let mut quote =
            Quote::per_unit(offered.price.clone(), self.units, unit.per()).describe(format!(
                "{} ({}: {} {})",
                offered.def.name,
                offered.def.key,
                self.units,
                unit.measure()
            ));
        if self.as_job {
            quote = quote.settle_before_handler();
        }
        quote.with_extension(self.clone())
    }
}

impl Task {
    /// Whether the answer is an upstream event stream (never run as a job).
    pub fn streams(&self) -> bool {
        matches!(self, Task::Chat { request, .. } if request["stream"] == json!(true))
    }
}

fn bad(message: impl Into<String>) -> Rejection {
    Rejection::bad_request(message)
}

fn text_list(value: &Value, field: &str, limits: &GatewayLimits) -> Result<Vec<String>, Rejection> {
    let items = match value {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(text) => Ok(text.clone()),
                Value::Object(map) => map
                    .get("text")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        bad(format!(
                            "{field}[{i}] must be a string or {{\"text\": string}}"
                        ))
                    }),
                _ => Err(bad(format!("{field}[{i}] must be a string"))),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(bad(format!(
                "{field} must be a string or an array of strings"
            )));
        }
    };
    if items.is_empty() {
        return Err(bad(format!("{field} is empty: give at least one text")));
    }
    if items.len() > limits.max_batch {
        return Err(bad(format!(
            "{field} has {} items; at most {} per request",
            items.len(),
            limits.max_batch
        )));
    }
    let chars: usize = items.iter().map(|t| t.chars().count()).sum();
    if chars > limits.max_text_chars {
        return Err(bad(format!(
            "{field} has {chars} characters; at most {} per request",
            limits.max_text_chars
        )));
    }
    if let Some(i) = items.iter().position(|t| t.trim().is_empty()) {
        return Err(bad(format!("{field}[{i}] is empty")));
    }
    Ok(items)
}

fn string_field<'a>(input: &'a Value, field: &str) -> Result<Option<&'a str>, Rejection> {
    match input.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("input.{field} must be a string"))),
    }
}

/// Checks `input` for `offered` and measures it.
pub fn prepare(
    offered: &Offered,
    input: &Value,
    backends: &Backends,
    limits: &GatewayLimits,
    wants_job: bool,
) -> Result<Prepared, Rejection> {
    if !input.is_object() {
        return Err(bad("input must be a JSON object, e.g. {\"text\": \"…\"}"));
    }
    let service = offered.def.key;
    let (task, units, big) = match offered.def.backend {
        BackendKind::Embeddings => {
            let value = input
                .get("texts")
                .or_else(|| input.get("text"))
                .or_else(|| input.get("input"))
                .ok_or_else(|| {
                    bad("input.text (a string) or input.texts (an array of strings) is required")
                })?;
            let texts = text_list(value, "input.text", limits)?;
            let tokens = count_tokens(backends, &texts)?;
            let single = value.is_string();
            (
                Task::Embed {
                    texts,
                    single,
                    tokens,
                },
                tokens,
                false,
            )
        }
        BackendKind::Rerank => {
            let query = string_field(input, "query")?
                .filter(|q| !q.trim().is_empty())
                .ok_or_else(|| bad("input.query (a non-empty string) is required"))?
                .to_owned();
            let documents = text_list(
                input
                    .get("documents")
                    .ok_or_else(|| bad("input.documents (an array of strings) is required"))?,
                "input.documents",
                limits,
            )?;
            let top_n = match input.get("top_n") {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    v.as_u64()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad("input.top_n must be a positive integer"))?
                        as usize,
                ),
            };
            (
                Task::Rerank {
                    query,
                    documents,
                    top_n,
                },
                1,
                false,
            )
        }
        BackendKind::Documents => {
            let (bytes, declared) = document_bytes(input)?;
            let format = Format::detect(&bytes, declared.as_deref()).ok_or_else(|| {
                bad("the document is not a PDF, DOCX or HTML file (checked by its first bytes)")
            })?;
            if format == Format::Pdf {
                // Refuse unreadable PDFs before payment; the page count is not billed (per document).
                documents::pdf_pages(&bytes).map_err(|e| bad(e.to_string()))?;
            }
            let big = bytes.len() >= limits.job_over_bytes;
            (Task::Parse { bytes, format }, 1, big)
        }
        BackendKind::Speech => {
            let text = string_field(input, "text")?
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| bad("input.text (a non-empty string) is required"))?
                .to_owned();
            let chars = text.chars().count();
            if chars > limits.max_text_chars {
                return Err(bad(format!(
                    "input.text has {chars} characters; at most {}",
                    limits.max_text_chars
                )));
            }
            let voice = string_field(input, "voice")?.map(str::to_owned);
            let speed =
                match input.get("speed") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(v.as_u64().filter(|s| (80..=450).contains(s)).ok_or_else(
                        || bad("input.speed must be words per minute between 80 and 450"),
                    )? as u32),
                };
            let big = chars >= 20_000;
            (Task::Speak { text, voice, speed }, chars as u64, big)
        }
        BackendKind::Chat => {
            let upstream = offered
                .upstream
                .clone()
                .ok_or_else(|| bad(format!("service {service} has no upstream")))?;
            let (request, tokens) = chat_request(input, service == "llm-stream")?;
            (Task::Chat { request, upstream }, tokens, false)
        }
        BackendKind::None => {
            return Err(bad(format!("service {service} has no backend here")));
        }
    };
    let task = Arc::new(task);
    let as_job = (wants_job || big) && !task.streams();
    Ok(Prepared {
        service,
        task,
        units,
        as_job,
        job_input: as_job.then(|| input.clone()),
    })
}

fn count_tokens(backends: &Backends, texts: &[String]) -> Result<u64, Rejection> {
    let model = backends
        .embeddings
        .as_ref()
        .map_err(|why| bad(format!("embeddings are unavailable: {why}")))?;
    let tokens = model.count_tokens(texts).map_err(|e| bad(e.to_string()))?;
    Ok(tokens.max(1) as u64)
}

fn document_bytes(input: &Value) -> Result<(Vec<u8>, Option<String>), Rejection> {
    let declared = string_field(input, "filename")?
        .or(string_field(input, "content_type")?)
        .map(str::to_owned);
    if let Some(html) = string_field(input, "html")? {
        return Ok((html.as_bytes().to_vec(), Some("text/html".to_owned())));
    }
    for field in ["file_base64", "document_base64", "data_base64"] {
        if let Some(encoded) = string_field(input, field)? {
            let encoded = encoded
                .split_once(";base64,")
                .map_or(encoded, |(_, data)| data)
                .trim();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| bad(format!("input.{field} is not valid base64: {e}")))?;
            if bytes.is_empty() {
                return Err(bad(format!("input.{field} is empty")));
            }
            return Ok((bytes, declared));
        }
    }
    if input.get("url").is_some() || input.get("file_url").is_some() {
        return Err(bad(
            "documents by URL are not fetched by this gateway; send the file as input.file_base64",
        ));
    }
    Err(bad(
        "input.file_base64 (a base64 PDF, DOCX or HTML file) or input.html is required",
    ))
}

/// An OpenAI chat request from `/run` input (`prompt` or `messages`), with `max_tokens` set,
/// and the tokens it is billed for: the prompt estimated at 4 characters per token, plus
/// `max_tokens` (the most the answer may use).
pub fn chat_request(input: &Value, force_stream: bool) -> Result<(Value, u64), Rejection> {
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
    let tokens = prompt_chars.div_ceil(4) + max_tokens;
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

/// What a finished task produced.
#[derive(Debug)]
pub enum Output {
    /// A JSON result.
    Json(Value),
    /// An upstream event stream to pass through.
    Stream(ChatAnswer),
}

/// Runs `task`. CPU-bound work runs on the blocking pool.
pub async fn run(task: Arc<Task>, backends: &Backends) -> Result<Output, BackendError> {
    match &*task {
        Task::Embed { .. } | Task::Rerank { .. } => {
            let model = backends
                .embeddings
                .clone()
                .map_err(BackendError::Unavailable)?;
            let task = task.clone();
            tokio::task::spawn_blocking(move || embed_or_rerank(&model, &task))
                .await
                .map_err(|e| BackendError::Failed(format!("embedding task failed: {e}")))?
                .map(Output::Json)
        }
        Task::Parse { .. } => {
            let task = task.clone();
            tokio::task::spawn_blocking(move || match &*task {
                Task::Parse { bytes, format } => documents::parse(bytes, *format),
                _ => unreachable!("matched above"),
            })
            .await
            .map_err(|e| BackendError::Failed(format!("document task failed: {e}")))?
            .map(|parsed| Output::Json(json!(parsed)))
        }
        Task::Speak { text, voice, speed } => {
            let espeak = backends.speech.clone().map_err(BackendError::Unavailable)?;
            let speech = espeak.speak(text, voice.as_deref(), *speed).await?;
            let mut output = json!({
                "audio_base64": base64::engine::general_purpose::STANDARD.encode(&speech.wav),
                "content_type": "audio/wav",
                "sample_rate": speech.sample_rate,
                "duration_seconds": (speech.duration_seconds * 1000.0).round() / 1000.0,
                "voice": speech.voice,
            });
            if let Some(notice) = speech.notice {
                output["output_notice"] = Value::String(notice);
            }
            Ok(Output::Json(output))
        }
        Task::Chat { request, upstream } => match upstream.chat(request.clone()).await? {
            ChatAnswer::Complete(body) => Ok(Output::Json(body)),
            stream @ ChatAnswer::Stream(_) => Ok(Output::Stream(stream)),
        },
    }
}

fn embed_or_rerank(model: &embed::MiniLm, task: &Task) -> Result<Value, BackendError> {
    match task {
        Task::Embed {
            texts,
            single,
            tokens,
        } => {
            let vectors = model.embed(texts)?;
            Ok(if *single {
                json!({"embedding": vectors[0], "dimensions": DIMENSIONS, "model": MODEL_NAME, "tokens": tokens})
            } else {
                json!({"embeddings": vectors, "dimensions": DIMENSIONS, "model": MODEL_NAME, "tokens": tokens})
            })
        }
        Task::Rerank {
            query,
            documents,
            top_n,
        } => {
            let mut texts = Vec::with_capacity(documents.len() + 1);
            texts.push(query.clone());
            texts.extend(documents.iter().cloned());
            let vectors = model.embed(&texts)?;
            let mut results: Vec<(usize, f32)> = vectors[1..]
                .iter()
                .enumerate()
                .map(|(i, v)| (i, embed::cosine(&vectors[0], v)))
                .collect();
            results.sort_by(|a, b| b.1.total_cmp(&a.1));
            results.truncate(top_n.unwrap_or(results.len()));
            let results: Vec<Value> = results
                .into_iter()
                .map(|(index, score)| json!({"index": index, "score": score, "text": documents[index]}))
                .collect();
            Ok(json!({
                "results": results,
                "model": MODEL_NAME,
                "method": "bi-encoder cosine similarity (not a cross-encoder)",
            }))
        }
        _ => unreachable!("only embedding tasks come here"),
    }
}
