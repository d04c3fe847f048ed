//! Natural speech: the Piper voice (ONNX, run by ONNX Runtime, phonemes from espeak-ng)
//! renders a known sentence as 22 050 Hz 16-bit WAV whose length fits the text and which is
//! speech, not silence.

mod common;

use std::sync::Arc;

use common::models_dir;
use x402_gateway::backend::onnx;
use x402_gateway::backend::piper::{self, PiperVoice, Rendering};

const SENTENCE: &str = "Hello from the inference gateway. This is an offline text to speech test.";

/// The installed Piper voice.
fn voice() -> Arc<PiperVoice> {
    let dir = models_dir();
    let library = onnx::library_path(None, &dir);
    let voice = PiperVoice::load(&library, &dir.join(piper::VOICE_FILE))
        .expect("the Piper voice and ONNX Runtime are installed by scripts/install-models.sh");
    Arc::new(voice)
}

/// `text` (two sentences) spoken by `voice`.
async fn piper_rendering(voice: &Arc<PiperVoice>, text: &str) -> Rendering {
    let voice = Arc::clone(voice);
    let ids = voice
        .phoneme_ids("espeak-ng", text)
        .await
        .expect("espeak-ng phonemises (scripts/install-system-deps.sh)");
    assert_eq!(ids.len(), 2, "two sentences");
    tokio::task::spawn_blocking(move || voice.synthesize(&ids, 1.0))
        .await
        .unwrap()
        .unwrap()
}

/// The rendering is a 22 050 Hz mono WAV, as long as `text` takes to say, and sound.
fn assert_is_speech_of(rendering: &Rendering, text: &str) {
    let wav = &rendering.wav;
    assert_eq!(&wav[0..4], b"RIFF");
    assert_eq!(&wav[8..16], b"WAVEfmt ");
    assert_eq!(u32::from_le_bytes(wav[24..28].try_into().unwrap()), 22_050);
    assert_eq!(rendering.sample_rate, 22_050);
    assert_eq!(wav.len(), 44 + rendering.samples.len() * 2);

    // People say 10 to 20 characters a second.
    let seconds = rendering.duration_seconds();
    let chars = text.chars().count() as f64;
    assert!(
        (chars / 25.0..chars / 8.0).contains(&seconds),
        "{seconds} s for {chars} characters"
    );

    // Speech: most 20 ms frames carry energy, and the whole is loud (peak-normalised).
    let frame = 441;
    let rms =
        |s: &[i16]| (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len() as f64).sqrt();
    let frames: Vec<f64> = rendering.samples.chunks(frame).map(rms).collect();
    let voiced = frames.iter().filter(|&&r| r > 500.0).count() as f64 / frames.len() as f64;
    assert!(voiced > 0.5, "{voiced} of the frames are voiced");
    assert!(
        rms(&rendering.samples) > 1500.0,
        "{}",
        rms(&rendering.samples)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piper_renders_a_known_sentence_as_speech() {
    let voice = voice();
    let rendering = piper_rendering(&voice, SENTENCE).await;
    assert_is_speech_of(&rendering, SENTENCE);
    let short = piper_rendering(&voice, "Hello there. Goodbye.").await;
    assert!(short.duration_seconds() < rendering.duration_seconds() / 2.0);
}
