//! Text to speech with espeak-ng (a Debian package), run as a subprocess: WAV out, 22 050 Hz
//! 16-bit mono.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use super::BackendError;

/// The espeak-ng program, if it runs here.
#[derive(Clone, Debug)]
pub struct Espeak {
    program: String,
    version: String,
}

/// Synthesised speech.
#[derive(Clone, Debug)]
pub struct Speech {
    /// A WAV file.
    pub wav: Vec<u8>,
    /// Samples per second.
    pub sample_rate: u32,
    /// Length of the audio.
    pub duration_seconds: f64,
    /// The espeak-ng voice used.
    pub voice: String,
    /// Set when the requested voice was not an espeak-ng voice and another was used.
    pub notice: Option<String>,
}

/// The voice used when none (or a voice of another engine) is asked for.
pub const DEFAULT_VOICE: &str = "en-us";

impl Espeak {
    /// Finds `program` (`espeak-ng`) and reads its version; `Err` says why it cannot run.
    pub async fn detect(program: &str) -> Result<Self, BackendError> {
        let output = tokio::process::Command::new(program)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| {
                BackendError::Unavailable(format!(
                    "{program} is not installed ({e}); install the Debian package espeak-ng (scripts/install-system-deps.sh)"
                ))
            })?;
        let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        Ok(Self {
            program: program.to_owned(),
            version,
        })
    }

    /// What `--version` said.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Speaks `text` with `voice` (an espeak-ng voice such as `en-us`, `de`, `fr`; names of
    /// other engines' voices such as `af_alloy` fall back to `en-us`, with a notice).
    pub async fn speak(
        &self,
        text: &str,
        voice: Option<&str>,
        words_per_minute: Option<u32>,
    ) -> Result<Speech, BackendError> {
        let (voice, notice) = match voice {
            None => (DEFAULT_VOICE.to_owned(), None),
            Some(v) if is_espeak_voice(v) => (v.to_owned(), None),
            Some(v) => (
                DEFAULT_VOICE.to_owned(),
                Some(format!(
                    "voice {v:?} is not available here; spoke with the espeak-ng voice {DEFAULT_VOICE}"
                )),
            ),
        };
        let speed = words_per_minute.unwrap_or(175).clamp(80, 450);
        let mut child = tokio::process::Command::new(&self.program)
            .args([
                "-v",
                &voice,
                "-s",
                &speed.to_string(),
                "--stdin",
                "--stdout",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BackendError::Unavailable(format!("cannot run {}: {e}", self.program)))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let input = text.to_owned();
        let writer = tokio::spawn(async move {
            let _ = stdin.write_all(input.as_bytes()).await;
            let _ = stdin.shutdown().await;
        });
        let output = child
            .wait_with_output()
            .await
            .map_err(|e| BackendError::Failed(format!("espeak-ng failed: {e}")))?;
        let _ = writer.await;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(if stderr.contains("voice") {
                BackendError::BadInput(format!(
                    "espeak-ng cannot use voice {voice:?}: {}",
                    stderr.trim()
                ))
            } else {
                BackendError::Failed(format!(
                    "espeak-ng exited with {}: {}",
                    output.status,
                    stderr.trim()
                ))
            });
        }
        let mut wav = output.stdout;
        let (sample_rate, duration_seconds) = fix_wav_sizes(&mut wav)?;
        Ok(Speech {
            wav,
            sample_rate,
            duration_seconds,
            voice,
            notice,
        })
    }
}

fn is_espeak_voice(voice: &str) -> bool {
    // espeak-ng voices are language codes with optional variants: en, en-us, pt-br, en+f3.
    !voice.is_empty()
        && voice.len() <= 20
        && !voice.contains('_')
        && voice
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'+')
}

/// Written to a pipe, espeak-ng's WAV header carries placeholder sizes; set the real RIFF
/// and data sizes and return (sample rate, duration in seconds).
fn fix_wav_sizes(wav: &mut [u8]) -> Result<(u32, f64), BackendError> {
    let bad = || BackendError::Failed("espeak-ng wrote something that is not a WAV file".into());
    if wav.len() < 44 || &wav[0..4] != b"RIFF" || &wav[8..12] != b"WAVE" {
        return Err(bad());
    }
    let u32_at = |wav: &[u8], at: usize| {
        u32::from_le_bytes([wav[at], wav[at + 1], wav[at + 2], wav[at + 3]])
    };
    let u16_at = |wav: &[u8], at: usize| u16::from_le_bytes([wav[at], wav[at + 1]]);
    // Walk the chunks to find "fmt " and "data".
    let mut at = 12;
    let mut format = None;
    while at + 8 <= wav.len() {
        let id = &wav[at..at + 4];
        let size = u32_at(wav, at + 4) as usize;
        if id == b"fmt " && at + 24 <= wav.len() {
            let channels = u16_at(wav, at + 10);
            let sample_rate = u32_at(wav, at + 12);
            let bits = u16_at(wav, at + 22);
            format = Some((channels, sample_rate, bits));
        } else if id == b"data" {
            let (channels, sample_rate, bits) = format.ok_or_else(bad)?;
            let data_len = wav.len() - (at + 8);
            let data_size = u32::try_from(data_len).map_err(|_| bad())?;
            wav[at + 4..at + 8].copy_from_slice(&data_size.to_le_bytes());
            let riff_size = u32::try_from(wav.len() - 8).map_err(|_| bad())?;
            wav[4..8].copy_from_slice(&riff_size.to_le_bytes());
            let bytes_per_second =
                f64::from(sample_rate) * f64::from(channels) * f64::from(bits) / 8.0;
            let duration = if bytes_per_second > 0.0 {
                data_len as f64 / bytes_per_second
            } else {
                0.0
            };
            return Ok((sample_rate, duration));
        }
        at += 8 + size + (size & 1);
    }
    Err(bad())
}

// ---------------------------------------------------------------------------------------
// The tts-fast service: input, billing units, run.

/// Text to speak: billed per character.
#[derive(Debug)]
pub struct SpeakJob {
    /// The text.
    pub text: String,
    /// The voice asked for.
    pub voice: Option<String>,
    /// Words per minute.
    pub speed: Option<u32>,
}

impl SpeakJob {
    /// Reads `input.text`, `input.voice` and `input.speed` (words per minute, 80 to 450).
    pub fn prepare(
        input: &serde_json::Value,
        limits: &crate::config::GatewayLimits,
    ) -> Result<Self, x402_paywall::Rejection> {
        use super::input::{bad, string_field, text_to_speak};
        let text = text_to_speak(input, limits)?;
        let voice = string_field(input, "voice")?.map(str::to_owned);
        let speed = match input.get("speed") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .filter(|s| (80..=450).contains(s))
                    .ok_or_else(|| bad("input.speed must be words per minute between 80 and 450"))?
                    as u32,
            ),
        };
        Ok(Self { text, voice, speed })
    }

    /// Characters spoken: the billed units.
    pub fn characters(&self) -> u64 {
        self.text.chars().count() as u64
    }

    /// Speaks the text: the WAV in base64 with its format.
    pub async fn run(&self, espeak: &Espeak) -> Result<serde_json::Value, BackendError> {
        use base64::Engine;
        let speech = espeak
            .speak(&self.text, self.voice.as_deref(), self.speed)
            .await?;
        let mut output = serde_json::json!({
            "audio_base64": base64::engine::general_purpose::STANDARD.encode(&speech.wav),
            "content_type": "audio/wav",
            "sample_rate": speech.sample_rate,
            "duration_seconds": (speech.duration_seconds * 1000.0).round() / 1000.0,
            "voice": speech.voice,
        });
        if let Some(notice) = speech.notice {
            output["output_notice"] = serde_json::Value::String(notice);
        }
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_espeak_voice_names_are_passed_through() {
        assert!(is_espeak_voice("en-us"));
        assert!(is_espeak_voice("en+f3"));
        assert!(!is_espeak_voice("af_alloy"));
        assert!(!is_espeak_voice("--path=/etc"));
        assert!(!is_espeak_voice(""));
    }

    #[tokio::test]
    async fn speaks_a_real_wav() {
        let espeak = Espeak::detect("espeak-ng")
            .await
            .expect("espeak-ng is installed by scripts/install-system-deps.sh");
        let speech = espeak
            .speak("Hello from the inference gateway.", Some("af_alloy"), None)
            .await
            .unwrap();
        assert_eq!(&speech.wav[0..4], b"RIFF");
        assert_eq!(speech.sample_rate, 22050);
        assert!(
            speech.duration_seconds > 1.0 && speech.duration_seconds < 5.0,
            "{}",
            speech.duration_seconds
        );
        assert_eq!(
            u32::from_le_bytes(speech.wav[4..8].try_into().unwrap()) as usize,
            speech.wav.len() - 8
        );
        assert_eq!(speech.voice, "en-us");
        assert!(speech.notice.unwrap().contains("af_alloy"));
    }
}
