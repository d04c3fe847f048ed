//! Speech to text: Whisper (tiny.en by default) run in process by candle, from the
//! CTranslate2 weights `scripts/install-models.sh` installs.
//!
//! The model loads on a thread of its own when the gateway starts, so the gateway is up at
//! once; transcriptions that come meanwhile wait for it. One transcription runs at a time.
//! Input audio (WAV, FLAC, Ogg Vorbis, MP3; by `audio_url` or `audio_base64`) is decoded and
//! measured before payment: the price is per second of audio, and audio that cannot be read
//! is a 400 before anything is paid.

pub mod audio;
pub mod ct2;
pub mod model;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use serde_json::{Value, json};
use x402_paywall::Rejection;

use super::BackendError;
use super::fetch_input::InputFetcher;
use super::input::{bad, off_the_async_workers, string_field};
use super::local_llm::LoadState;
use crate::config::GatewayLimits;
pub use model::Segment;
use model::WhisperModel;

/// Where `scripts/install-models.sh` puts Whisper tiny.en, under the models directory.
pub const TINY_EN_DIR: &str = "whisper-tiny-en";
/// Its name, as answers and the catalog give it.
pub const TINY_EN_NAME: &str = "whisper-tiny.en";

/// Progress of a transcription: windows done, windows in all.
pub use super::ProgressFn;

struct Shared {
    state: Mutex<LoadState>,
    loaded: Condvar,
    model: Mutex<Option<WhisperModel>>,
}

/// A handle on the Whisper model (cheap to clone).
#[derive(Clone)]
pub struct SpeechToText {
    name: Arc<str>,
    english_only: bool,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SpeechToText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeechToText")
            .field("name", &self.name)
            .field("state", &self.state())
            .finish()
    }
}

impl SpeechToText {
    /// Starts loading the model in `dir` (named `name`; `english_only` for `.en` models) on a
    /// thread of its own; `Err` at once when it is not installed.
    pub fn start(dir: &Path, name: &str, english_only: bool) -> Result<Self, String> {
        if !dir.join("model.bin").is_file() {
            return Err(format!(
                "speech to text is not installed ({} is missing): run scripts/install-models.sh",
                dir.join("model.bin").display()
            ));
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(LoadState::Loading),
            loaded: Condvar::new(),
            model: Mutex::new(None),
        });
        let dir: PathBuf = dir.to_owned();
        let loader = shared.clone();
        std::thread::Builder::new()
            .name("whisper-load".into())
            .spawn(move || {
                let started = Instant::now();
                let state = match WhisperModel::load(&dir) {
                    Ok(model) => {
                        *lock(&loader.model) = Some(model);
                        let load_ms = started.elapsed().as_millis() as u64;
                        tracing::info!(model = %dir.display(), load_ms, "Whisper is loaded");
                        LoadState::Ready { load_ms }
                    }
                    Err(why) => {
                        tracing::warn!(%why, "Whisper cannot be loaded");
                        LoadState::Failed(why)
                    }
                };
                *lock(&loader.state) = state;
                loader.loaded.notify_all();
            })
            .map_err(|e| format!("cannot start loading Whisper: {e}"))?;
        Ok(Self {
            name: name.into(),
            english_only,
            shared,
        })
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it is loading, loaded or failed.
    pub fn state(&self) -> LoadState {
        lock(&self.shared.state).clone()
    }

    /// Transcribes 16 kHz mono `samples`, blocking until the model is loaded and free.
    pub fn transcribe(
        &self,
        samples: &[f32],
        language: Option<&str>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(String, Vec<Segment>), BackendError> {
        let mut state = lock(&self.shared.state);
        while *state == LoadState::Loading {
            state = self
                .shared
                .loaded
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        if let LoadState::Failed(why) = &*state {
            return Err(BackendError::Unavailable(format!(
                "Whisper cannot be loaded: {why}"
            )));
        }
        drop(state);
        let mut model = lock(&self.shared.model);
        let model = model
            .as_mut()
            .ok_or_else(|| BackendError::Unavailable("Whisper is not loaded".into()))?;
        model
            .transcribe(samples, language, progress)
            .map_err(BackendError::Failed)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------
// The whisper-* services: input, billing units, run.

/// Audio to transcribe: billed per second (rounded up).
pub struct TranscribeJob {
    /// 16 kHz mono samples.
    pub audio: audio::Audio,
    /// The language asked for (`en`).
    pub language: Option<String>,
    /// The model that will run it.
    stt: SpeechToText,
    /// Where the job reports its progress, when it runs as one.
    progress: Mutex<Option<ProgressFn>>,
}

impl std::fmt::Debug for TranscribeJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TranscribeJob")
            .field("seconds", &self.audio.seconds())
            .field("format", &self.audio.format)
            .field("language", &self.language)
            .finish()
    }
}

impl TranscribeJob {
    /// Reads the audio (`input.audio_url`: a `data:` URL, or an http URL the operator allows;
    /// or `input.audio_base64`) and `input.language`; decodes and measures the audio.
    pub fn prepare(
        input: &Value,
        stt: &Result<SpeechToText, String>,
        fetcher: &InputFetcher,
        limits: &GatewayLimits,
    ) -> Result<Self, Rejection> {
        let stt = stt
            .clone()
            .map_err(|why| bad(format!("speech to text is not available here: {why}")))?;
        let language = string_field(input, "language")?
            .map(|l| l.trim().to_ascii_lowercase())
            .filter(|l| !l.is_empty() && l != "auto");
        if let Some(language) = &language
            && stt.english_only
            && language != "en"
            && language != "english"
        {
            return Err(bad(format!(
                "input.language {language:?}: this gateway's Whisper ({}) transcribes English only; send English audio with language \"en\" or none",
                stt.name
            )));
        }
        let bytes = if let Some(url) = string_field(input, "audio_url")? {
            off_the_async_workers(|| fetcher.fetch(url, "audio_url"))?.bytes
        } else if let Some(encoded) = string_field(input, "audio_base64")? {
            use base64::Engine;
            let encoded = encoded
                .split_once(";base64,")
                .map_or(encoded, |(_, data)| data);
            let clean: String = encoded
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            if clean.len() / 4 * 3 > fetcher.max_bytes() + 3 {
                return Err(bad(format!(
                    "input.audio_base64 is larger than {} bytes",
                    fetcher.max_bytes()
                )));
            }
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(clean.trim_end_matches('='))
                .map_err(|e| bad(format!("input.audio_base64 is not valid base64: {e}")))?
        } else {
            return Err(bad(format!(
                "input.audio_url (a data: URL) or input.audio_base64 ({} audio) is required",
                audio::FORMATS
            )));
        };
        let audio = off_the_async_workers(|| audio::decode(&bytes, limits.max_audio_seconds))
            .map_err(|e| bad(format!("the input audio cannot be transcribed: {e}")))?;
        if audio.seconds() < 0.1 {
            return Err(bad(format!(
                "the input audio is {:.2} s long; send at least 0.1 s of speech",
                audio.seconds()
            )));
        }
        Ok(Self {
            audio,
            language: language.map(|l| if l == "english" { "en".into() } else { l }),
            stt,
            progress: Mutex::new(None),
        })
    }

    /// Seconds of audio, rounded up: the billed units.
    pub fn seconds(&self) -> u64 {
        self.audio.seconds().ceil().max(1.0) as u64
    }

    /// Where to report progress (windows done, windows in all) when it runs.
    pub fn report_progress(&self, progress: ProgressFn) {
        *lock(&self.progress) = Some(progress);
    }

    /// Transcribes the audio (blocking): text, language, timed segments.
    pub fn run(&self) -> Result<Value, BackendError> {
        let started = Instant::now();
        let mut report = lock(&self.progress).take();
        let mut progress = |done: usize, total: usize| {
            if let Some(report) = report.as_mut() {
                report(done, total);
            }
        };
        let (language, segments) =
            self.stt
                .transcribe(&self.audio.samples, self.language.as_deref(), &mut progress)?;
        let text = segments
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let seconds = self.audio.seconds();
        let elapsed = started.elapsed().as_secs_f64();
        Ok(json!({
            "text": text,
            "language": language,
            "segments": segments,
            "duration_seconds": (seconds * 1000.0).round() / 1000.0,
            "model": self.stt.name(),
            "input_format": self.audio.format,
            "processing_seconds": (elapsed * 1000.0).round() / 1000.0,
        }))
    }
}
