//! Speech for the speech-to-text tests: a known sentence spoken by espeak-ng (WAV), the same
//! audio compressed (FLAC), and how many of its words a transcript gives back.

use base64::Engine;

/// The sentence the tests speak and read back.
pub const SENTENCE: &str = "Hello from the gateway. This is an offline text to speech test. Please send the payment today.";

/// `text` spoken by espeak-ng (a Debian package, scripts/install-system-deps.sh): a WAV file,
/// 22 050 Hz 16-bit mono.
pub fn espeak_wav(text: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("speech.wav");
    let status = std::process::Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&path)
        .arg(text)
        .status()
        .expect("espeak-ng runs (scripts/install-system-deps.sh installs it)");
    assert!(status.success());
    std::fs::read(path).unwrap()
}

/// The 16-bit mono samples and sample rate of a PCM WAV file.
pub fn wav_samples(wav: &[u8]) -> (Vec<i16>, u32) {
    let mut at = 12;
    let mut rate = 0;
    while at + 8 <= wav.len() {
        let size = u32::from_le_bytes(wav[at + 4..at + 8].try_into().unwrap()) as usize;
        if &wav[at..at + 4] == b"fmt " {
            rate = u32::from_le_bytes(wav[at + 12..at + 16].try_into().unwrap());
        } else if &wav[at..at + 4] == b"data" {
            let end = (at + 8 + size).min(wav.len());
            let samples = wav[at + 8..end]
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            return (samples, rate);
        }
        at += 8 + size + (size & 1);
    }
    panic!("not a PCM WAV file");
}

/// A PCM WAV file of 16-bit mono `samples` at `rate`.
pub fn wav_of(samples: &[i16], rate: u32) -> Vec<u8> {
    let data = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// A WAV file at half the sample rate (pairs of samples averaged): smaller, still speech.
pub fn half_rate(wav: &[u8]) -> Vec<u8> {
    let (samples, rate) = wav_samples(wav);
    let halved: Vec<i16> = samples
        .chunks(2)
        .map(|pair| (pair.iter().map(|s| i32::from(*s)).sum::<i32>() / pair.len() as i32) as i16)
        .collect();
    wav_of(&halved, rate / 2)
}

/// `seconds` of silence as a 16 kHz WAV.
pub fn silence_wav(seconds: u32) -> Vec<u8> {
    wav_of(&vec![0; 16_000 * seconds as usize], 16_000)
}

/// A PCM WAV file compressed to FLAC (a real encoder: LPC, Rice coding).
pub fn flac_of(wav: &[u8]) -> Vec<u8> {
    use flacenc::component::BitRepr;
    use flacenc::error::Verify;
    let (samples, rate) = wav_samples(wav);
    let samples: Vec<i32> = samples.into_iter().map(i32::from).collect();
    let config = flacenc::config::Encoder::default()
        .into_verified()
        .expect("the default FLAC config is valid");
    let source = flacenc::source::MemSource::from_samples(&samples, 1, 16, rate as usize);
    let stream = flacenc::encode_with_fixed_block_size(&config, source, config.block_size)
        .expect("FLAC encodes");
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream.write(&mut sink).expect("FLAC writes");
    sink.as_slice().to_vec()
}

/// `bytes` in base64.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Lowercase words of `text`, without punctuation.
pub fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .collect::<String>()
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// The share of `expected`'s words (counted with repeats) found in `got`.
pub fn word_recall(expected: &str, got: &str) -> f64 {
    let mut left = words(got);
    let expected = words(expected);
    let found = expected
        .iter()
        .filter(|w| {
            left.iter()
                .position(|g| g == *w)
                .map(|i| left.remove(i))
                .is_some()
        })
        .count();
    found as f64 / expected.len().max(1) as f64
}

/// POSTs `bad` to `/run` carrying a real payment signed for `good`'s 402: the gateway must
/// refuse it with a 400 before taking the payment. Returns the refusal's body.
pub async fn refused_though_paid(
    stack: &super::Stack,
    good: &serde_json::Value,
    bad: &serde_json::Value,
) -> serde_json::Value {
    let before = stack.pay_to_balance().await;
    let challenge = stack.post_json("/run", good).await;
    let (name, value) =
        x402_testkit::payment_for(challenge, stack.payer(0), x402_testkit::Wire::V2).await;
    let response = stack
        .http
        .post(format!("{}/run", stack.url))
        .header(name, value)
        .json(bad)
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(response.status(), 400, "{bad}");
    assert!(x402_testkit::receipt_of(response.headers()).is_none());
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(stack.pay_to_balance().await, before, "nothing was charged");
    body
}
