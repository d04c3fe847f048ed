//! Speech to text: Whisper run in process by candle, from the CTranslate2 weights
//! `scripts/install-models.sh` installs: tiny.en by default, and, when installed
//! (`--whisper-base`), base (multilingual) for requests in another language than English or
//! asking for the language to be detected (`language: "auto"`).
//!
//! tiny.en loads on a thread of its own when the gateway starts, so the gateway is up at
//! once; transcriptions that come meanwhile wait for it. base loads when its first
//! transcription comes. One transcription runs at a time on each.
//! Input audio (WAV, FLAC, Ogg Vorbis, MP3; by `audio_url` or `audio_base64`) is decoded and
//! measured before payment: the price is per second of audio, and audio that cannot be read
//! is a 400 before anything is paid.

pub mod audio;
pub mod ct2;
pub mod languages;
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
/// Where `scripts/install-models.sh --whisper-base` puts Whisper base (multilingual).
pub const BASE_DIR: &str = "whisper-base";
/// Its name, as answers and the catalog give it.
pub const BASE_NAME: &str = "whisper-base";

/// Progress of a transcription: windows done, windows in all.
pub use super::ProgressFn;

struct Shared {
    dir: PathBuf,
    state: Mutex<LoadState>,
    loaded: Condvar,
    model: Mutex<Option<WhisperModel>>,
}

impl Shared {
    /// Loads the model (blocking) and tells whoever waits for it.
    fn load(&self) {
        let started = Instant::now();
        let state = match WhisperModel::load(&self.dir) {
            Ok(model) => {
                *lock(&self.model) = Some(model);
                let load_ms = started.elapsed().as_millis() as u64;
                tracing::info!(model = %self.dir.display(), load_ms, "Whisper is loaded");
                LoadState::Ready { load_ms }
            }
            Err(why) => {
                tracing::warn!(%why, "Whisper cannot be loaded");
                LoadState::Failed(why)
            }
        };
        *lock(&self.state) = state;
        self.loaded.notify_all();
    }
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
        let stt = Self::new(dir, name, english_only, LoadState::Loading)?;
        let loader = stt.shared.clone();
        std::thread::Builder::new()
            .name("whisper-load".into())
            .spawn(move || loader.load())
            .map_err(|e| format!("cannot start loading Whisper: {e}"))?;
        Ok(stt)
    }

    /// The model in `dir` (named `name`; `english_only` for `.en` models), loaded by its first
    /// transcription (which waits for it); `Err` at once when it is not installed.
    pub fn on_first_use(dir: &Path, name: &str, english_only: bool) -> Result<Self, String> {
        Self::new(dir, name, english_only, LoadState::OnFirstUse)
    }

    fn new(dir: &Path, name: &str, english_only: bool, state: LoadState) -> Result<Self, String> {
        if !dir.join("model.bin").is_file() {
            return Err(format!(
                "speech to text is not installed ({} is missing): run scripts/install-models.sh",
                dir.join("model.bin").display()
            ));
        }
        Ok(Self {
            name: name.into(),
            english_only,
            shared: Arc::new(Shared {
                dir: dir.to_owned(),
                state: Mutex::new(state),
                loaded: Condvar::new(),
                model: Mutex::new(None),
            }),
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

    /// Whether it transcribes English only (a `.en` model).
    pub fn english_only(&self) -> bool {
        self.english_only
    }

    /// Transcribes 16 kHz mono `samples`, blocking until the model is loaded and free.
    pub fn transcribe(
        &self,
        samples: &[f32],
        language: Option<&str>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(String, Vec<Segment>), BackendError> {
        let mut state = lock(&self.shared.state);
        if *state == LoadState::OnFirstUse {
            // This transcription loads it; others wait as for a load begun at start.
            *state = LoadState::Loading;
            drop(state);
            self.shared.load();
            state = lock(&self.shared.state);
        }
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

/// The Whisper models of this gateway: tiny.en, and base (multilingual) when installed.
#[derive(Clone, Debug)]
pub struct Transcribers {
    english: SpeechToText,
    multilingual: Result<SpeechToText, String>,
}

impl Transcribers {
    /// tiny.en from `models_dir` (loading now), and base if it is installed (loaded on first
    /// use); `Err` when tiny.en is not installed.
    pub fn start(models_dir: &Path) -> Result<Self, String> {
        let english = SpeechToText::start(&models_dir.join(TINY_EN_DIR), TINY_EN_NAME, true)?;
        let multilingual = SpeechToText::on_first_use(&models_dir.join(BASE_DIR), BASE_NAME, false)
            .map_err(|why| {
                format!("{why} --whisper-base (Whisper base, for other languages than English)")
            });
        if let Err(why) = &multilingual {
            tracing::info!(%why, "speech to text is in English only");
        }
        Ok(Self {
            english,
            multilingual,
        })
    }

    /// tiny.en.
    pub fn english(&self) -> &SpeechToText {
        &self.english
    }

    /// base, or why it is not there.
    pub fn multilingual(&self) -> Result<&SpeechToText, &String> {
        self.multilingual.as_ref()
    }

    /// The models' names.
    pub fn names(&self) -> Vec<String> {
        std::iter::once(&self.english)
            .chain(self.multilingual.as_ref().ok())
            .map(|m| m.name().to_owned())
            .collect()
    }

    /// The model for `input.language` as asked (lower case; `None` when absent), and the
    /// language code to force on it (`None`: English for tiny.en, detected by base). English
    /// (or no language) goes to tiny.en; another language, or `auto`, to base.
    fn pick(&self, asked: Option<&str>) -> Result<(SpeechToText, Option<String>), Rejection> {
        let Some(asked) = asked else {
            return Ok((self.english.clone(), None));
        };
        if asked == "auto" {
            // Without base, as before it came: tiny.en, which hears English.
            let stt = self.multilingual.as_ref().unwrap_or(&self.english);
            return Ok((stt.clone(), None));
        }
        let code = languages::code(asked).ok_or_else(|| {
            bad(format!(
                "input.language {asked:?} is not a language Whisper knows: write an ISO 639-1 code such as \"en\" or \"de\" (or the language's English name), or \"auto\" to detect it"
            ))
        })?;
        if code == "en" {
            return Ok((self.english.clone(), Some(code.to_owned())));
        }
        match &self.multilingual {
            Ok(base) => Ok((base.clone(), Some(code.to_owned()))),
            Err(why) => Err(bad(format!(
                "input.language {asked:?}: this gateway's Whisper ({}) transcribes English only; send English audio with language \"en\" or none ({why})",
                self.english.name
            ))),
        }
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
    /// The language asked for (`en`, `de`, …; `None`: English for tiny.en, detected by base).
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
        whisper: &Result<Transcribers, String>,
        fetcher: &InputFetcher,
        limits: &GatewayLimits,
    ) -> Result<Self, Rejection> {
        let whisper = whisper
            .as_ref()
            .map_err(|why| bad(format!("speech to text is not available here: {why}")))?;
        let asked = string_field(input, "language")?
            .map(|l| l.trim().to_ascii_lowercase())
            .filter(|l| !l.is_empty());
        let (stt, language) = whisper.pick(asked.as_deref())?;
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
            language,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The installed models, not loaded (`on_first_use` only checks their files).
    fn models() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
    }

    fn tiny_en() -> SpeechToText {
        SpeechToText::on_first_use(&models().join(TINY_EN_DIR), TINY_EN_NAME, true)
            .expect("Whisper tiny.en is installed: run scripts/install-models.sh")
    }

    fn picked(
        whisper: &Transcribers,
        asked: Option<&str>,
    ) -> Result<(String, Option<String>), String> {
        whisper
            .pick(asked)
            .map(|(stt, language)| (stt.name().to_owned(), language))
            .map_err(|r| format!("{r:?}"))
    }

    #[test]
    fn english_goes_to_tiny_en_other_languages_and_auto_to_base() {
        let base = SpeechToText::on_first_use(&models().join(BASE_DIR), BASE_NAME, false)
            .expect("Whisper base is installed: run scripts/install-models.sh --whisper-base");
        let whisper = Transcribers {
            english: tiny_en(),
            multilingual: Ok(base),
        };
        let tiny = TINY_EN_NAME.to_owned();
        let base = BASE_NAME.to_owned();
        assert_eq!(picked(&whisper, None), Ok((tiny.clone(), None)));
        assert_eq!(
            picked(&whisper, Some("en")),
            Ok((tiny.clone(), Some("en".into())))
        );
        assert_eq!(
            picked(&whisper, Some("english")),
            Ok((tiny, Some("en".into())))
        );
        assert_eq!(
            picked(&whisper, Some("de")),
            Ok((base.clone(), Some("de".into())))
        );
        assert_eq!(
            picked(&whisper, Some("french")),
            Ok((base.clone(), Some("fr".into())))
        );
        assert_eq!(picked(&whisper, Some("auto")), Ok((base, None)));
        let unknown = picked(&whisper, Some("klingon")).unwrap_err();
        assert!(
            unknown.contains("not a language Whisper knows"),
            "{unknown}"
        );
        assert_eq!(whisper.names(), [TINY_EN_NAME, BASE_NAME]);
    }

    #[test]
    fn without_base_other_languages_are_refused_and_auto_is_english() {
        let whisper = Transcribers {
            english: tiny_en(),
            multilingual: Err("whisper-base is not installed".into()),
        };
        let refused = picked(&whisper, Some("de")).unwrap_err();
        assert!(refused.contains("English only"), "{refused}");
        assert!(
            refused.contains("whisper-base is not installed"),
            "{refused}"
        );
        assert_eq!(
            picked(&whisper, Some("auto")),
            Ok((TINY_EN_NAME.into(), None))
        );
        assert_eq!(whisper.names(), [TINY_EN_NAME]);
    }
}
