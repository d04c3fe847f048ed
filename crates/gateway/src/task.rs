//! A request's input, checked and measured before payment (so it can be priced and refused
//! early), and the work it becomes. Each backend module owns its input, billing units and
//! run; this module only dispatches to them and renders their outputs per API.

use std::sync::Arc;

use serde_json::{Value, json};
use x402_paywall::Rejection;

use crate::backend::BackendError;
use crate::backend::chat::{ChatAnswer, ChatJob};
use crate::backend::documents::ParseJob;
use crate::backend::embed::{DIMENSIONS, EmbedJob, Embeddings, MODEL_NAME, RerankJob};
use crate::backend::input::bad;
use crate::backend::nsfw::NsfwJob;
use crate::backend::ocr::OcrJob;
use crate::backend::piper::PiperJob;
use crate::backend::speech::SpeakJob;
use crate::backend::whisper::TranscribeJob;
use crate::catalog::BackendKind;
use crate::config::GatewayLimits;
use crate::services::{Backends, Offered};

/// Work a service will do, its input already checked.
#[derive(Debug)]
pub enum Task {
    /// Embed texts.
    Embed(EmbedJob),
    /// Score documents against a query.
    Rerank(RerankJob),
    /// Extract a document's text.
    Parse(ParseJob),
    /// Speak text.
    Speak(SpeakJob),
    /// A chat completion.
    Chat(ChatJob),
    /// Transcribe audio.
    Transcribe(TranscribeJob),
    /// Speak text with the Piper voice.
    SpeakNaturally(PiperJob),
    /// Read the text of an image or PDF.
    Ocr(OcrJob),
    /// Score an image's safety.
    Nsfw(NsfwJob),
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
    /// For a job, its id (`job_…`), chosen before payment so that the payment journal ties
    /// the payment to it.
    pub job_id: Option<String>,
}

impl Task {
    /// Whether the answer is an event stream (never run as a job).
    pub fn streams(&self) -> bool {
        matches!(self, Task::Chat(chat) if chat.streams())
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
            let job = EmbedJob::prepare(input, &backends.embeddings, limits)?;
            let tokens = job.tokens;
            (Task::Embed(job), tokens, false)
        }
        BackendKind::Rerank => (Task::Rerank(RerankJob::prepare(input, limits)?), 1, false),
        BackendKind::Documents => {
            let job = ParseJob::prepare(input)?;
            let big = job.bytes.len() >= limits.job_over_bytes;
            (Task::Parse(job), 1, big)
        }
        BackendKind::Speech => {
            let job = SpeakJob::prepare(input, limits)?;
            let chars = job.characters();
            (Task::Speak(job), chars, chars >= 20_000)
        }
        BackendKind::Transcribe => {
            let job =
                TranscribeJob::prepare(input, &backends.transcribe, &backends.inputs, limits)?;
            let seconds = job.seconds();
            let big = seconds >= limits.job_over_audio_seconds;
            (Task::Transcribe(job), seconds, big)
        }
        BackendKind::NeuralSpeech => {
            let job = PiperJob::prepare(input, limits)?;
            let chars = job.characters();
            (Task::SpeakNaturally(job), chars, chars >= 20_000)
        }
        BackendKind::Ocr => {
            let job = OcrJob::prepare(input, &backends.ocr, limits)?;
            let (pages, long) = (job.pages as u64, job.is_long());
            (Task::Ocr(job), pages, long)
        }
        BackendKind::ImageSafety => (Task::Nsfw(NsfwJob::prepare(input, limits)?), 1, false),
        BackendKind::Chat => {
            let backend = offered
                .chat
                .clone()
                .ok_or_else(|| bad(format!("service {service} has no LLM here")))?;
            let job = ChatJob::prepare(input, backend, service == "llm-stream")?;
            let tokens = job.tokens;
            (Task::Chat(job), tokens, false)
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
        job_id: as_job.then(|| format!("job_{}", uuid::Uuid::new_v4().simple())),
    })
}

/// What a finished task produced, before it is rendered for an API.
#[derive(Debug)]
pub enum Output {
    /// Vectors.
    Embeddings(Embeddings),
    /// A chat completion in OpenAI's shape.
    Chat(Value),
    /// A result with one shape in every API (ranking, document text, speech).
    Json(Value),
    /// A chat backend's event stream to pass through.
    Stream(ChatAnswer),
}

impl Output {
    /// The output as GPU-Bridge's `/run` gives it (a stream stays a stream).
    pub fn gpu_bridge(self) -> Result<Value, ChatAnswer> {
        match self {
            Output::Embeddings(e) if e.single => Ok(json!({
                "embedding": e.vectors.into_iter().next(), "dimensions": DIMENSIONS,
                "model": MODEL_NAME, "tokens": e.tokens,
            })),
            Output::Embeddings(e) => Ok(json!({
                "embeddings": e.vectors, "dimensions": DIMENSIONS,
                "model": MODEL_NAME, "tokens": e.tokens,
            })),
            Output::Chat(completion) => {
                let choice = &completion["choices"][0];
                Ok(json!({
                    "text": choice["message"]["content"],
                    "finish_reason": choice["finish_reason"],
                    "model": completion["model"],
                    "usage": completion["usage"],
                }))
            }
            Output::Json(value) => Ok(value),
            Output::Stream(stream) => Err(stream),
        }
    }
}

/// Runs `task`. CPU-bound work runs on the blocking pool.
pub async fn run(task: Arc<Task>, backends: &Backends) -> Result<Output, BackendError> {
    let blocking = |what: &'static str, work: Box<dyn FnOnce() -> _ + Send>| async move {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| BackendError::Failed(format!("{what} task failed: {e}")))?
    };
    match &*task {
        Task::Embed(_) | Task::Rerank(_) => {
            let model = backends
                .embeddings
                .clone()
                .map_err(BackendError::Unavailable)?;
            let task = task.clone();
            blocking(
                "embedding",
                Box::new(move || match &*task {
                    Task::Embed(job) => job.run(&model).map(Output::Embeddings),
                    Task::Rerank(job) => job.run(&model).map(Output::Json),
                    _ => unreachable!("matched above"),
                }),
            )
            .await
        }
        Task::Parse(_) => {
            let task = task.clone();
            blocking(
                "document",
                Box::new(move || match &*task {
                    Task::Parse(job) => job.run().map(|parsed| Output::Json(json!(parsed))),
                    _ => unreachable!("matched above"),
                }),
            )
            .await
        }
        Task::Speak(job) => {
            let espeak = backends.speech.clone().map_err(BackendError::Unavailable)?;
            job.run(&espeak).await.map(Output::Json)
        }
        Task::Transcribe(_) => {
            let task = task.clone();
            blocking(
                "transcription",
                Box::new(move || match &*task {
                    Task::Transcribe(job) => job.run().map(Output::Json),
                    _ => unreachable!("matched above"),
                }),
            )
            .await
        }
        Task::SpeakNaturally(job) => {
            let (voice, espeak) = backends.piper.clone().map_err(BackendError::Unavailable)?;
            job.run(voice.get().await?, &espeak).await.map(Output::Json)
        }
        Task::Ocr(job) => {
            let ocr = backends.ocr.clone().map_err(BackendError::Unavailable)?;
            job.run(&ocr).await.map(Output::Json)
        }
        Task::Nsfw(_) => {
            let model = backends
                .nsfw
                .clone()
                .map_err(BackendError::Unavailable)?
                .get()
                .await?;
            let task = task.clone();
            blocking(
                "image safety",
                Box::new(move || match &*task {
                    Task::Nsfw(job) => job.run(&model).map(Output::Json),
                    _ => unreachable!("matched above"),
                }),
            )
            .await
        }
        Task::Chat(job) => match job.run().await? {
            ChatAnswer::Complete(body) => Ok(Output::Chat(body)),
            stream @ ChatAnswer::Stream(_) => Ok(Output::Stream(stream)),
        },
    }
}
