//! Speech for the speech-to-text tests: a known sentence spoken by espeak-ng (WAV), the same
//! audio compressed (IMA ADPCM here; FLAC, Ogg Vorbis and MP3 by Debian's encoders), and how
//! many of its words a transcript gives back.

use base64::Engine;

/// The sentence the tests speak and read back.
pub const SENTENCE: &str = "Hello from the gateway. This is an offline text to speech test. Please send the payment today.";

/// `text` spoken by espeak-ng (a Debian package, scripts/install-system-deps.sh): a WAV file,
/// 22 050 Hz 16-bit mono.
pub fn espeak_wav(text: &str) -> Vec<u8> {
    espeak_wav_in("en-us", text)
}

/// `text` spoken by espeak-ng's `voice` (`en-us`, `de`, `fr`, …), as [`espeak_wav`].
pub fn espeak_wav_in(voice: &str, text: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("speech.wav");
    let status = std::process::Command::new("espeak-ng")
        .args(["-v", voice, "-s", "150", "-w"])
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

/// `seconds` of silence as a 16 kHz WAV.
pub fn silence_wav(seconds: u32) -> Vec<u8> {
    wav_of(&vec![0; 16_000 * seconds as usize], 16_000)
}

/// A PCM WAV file compressed 4:1 to IMA ADPCM in WAV (format 0x11, blocks of 1024 bytes),
/// the codec of many voice recorders and phone systems.
pub fn adpcm_of(wav: &[u8]) -> Vec<u8> {
    const INDEX: [i32; 16] = [-1, -1, -1, -1, 2, 4, 6, 8, -1, -1, -1, -1, 2, 4, 6, 8];
    const STEP: [i32; 89] = [
        7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 19, 21, 23, 25, 28, 31, 34, 37, 41, 45, 50, 55, 60,
        66, 73, 80, 88, 97, 107, 118, 130, 143, 157, 173, 190, 209, 230, 253, 279, 307, 337, 371,
        408, 449, 494, 544, 598, 658, 724, 796, 876, 963, 1060, 1166, 1282, 1411, 1552, 1707, 1878,
        2066, 2272, 2499, 2749, 3024, 3327, 3660, 4026, 4428, 4871, 5358, 5894, 6484, 7132, 7845,
        8630, 9493, 10442, 11487, 12635, 13899, 15289, 16818, 18500, 20350, 22385, 24623, 27086,
        29794, 32767,
    ];
    const BLOCK: usize = 1024;
    const PER_BLOCK: usize = (BLOCK - 4) * 2 + 1;
    let (mut samples, rate) = wav_samples(wav);
    let frames = samples.len();
    samples.resize(frames.div_ceil(PER_BLOCK) * PER_BLOCK, 0);
    let mut data = Vec::new();
    let mut index = 0i32;
    for block in samples.chunks(PER_BLOCK) {
        let mut predictor = i32::from(block[0]);
        data.extend_from_slice(&block[0].to_le_bytes());
        data.extend_from_slice(&[index as u8, 0]);
        let mut nibbles = block[1..].iter().map(|&sample| {
            let mut step = STEP[index as usize];
            let mut diff = i32::from(sample) - predictor;
            let mut nibble = 0u8;
            if diff < 0 {
                nibble = 8;
                diff = -diff;
            }
            let mut delta = step >> 3;
            for bit in [4u8, 2, 1] {
                if diff >= step {
                    nibble |= bit;
                    diff -= step;
                    delta += step;
                }
                step >>= 1;
            }
            predictor = if nibble & 8 != 0 {
                predictor - delta
            } else {
                predictor + delta
            }
            .clamp(-32768, 32767);
            index = (index + INDEX[nibble as usize]).clamp(0, 88);
            nibble
        });
        while let (Some(low), Some(high)) = (nibbles.next(), nibbles.next()) {
            data.push(low | (high << 4));
        }
    }
    let mut out = Vec::new();
    let riff = 4 + (8 + 20) + (8 + 4) + (8 + data.len());
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(riff as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&20u32.to_le_bytes());
    out.extend_from_slice(&0x11u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&((rate as usize * BLOCK / PER_BLOCK) as u32).to_le_bytes());
    out.extend_from_slice(&(BLOCK as u16).to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&(PER_BLOCK as u16).to_le_bytes());
    out.extend_from_slice(b"fact");
    out.extend_from_slice(&4u32.to_le_bytes());
    out.extend_from_slice(&(frames as u32).to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    out
}

/// A compressed format made by a Debian encoder (scripts/install-system-deps.sh installs them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoder {
    /// `flac` (package flac): lossless.
    Flac,
    /// `oggenc` (package vorbis-tools): Ogg Vorbis, quality 2 (about 96 kbit/s).
    Vorbis,
    /// `lame` (package lame): MP3 at 64 kbit/s (enough room in a frame for the LAME header
    /// that gives the encoder's delay and padding, so the length read is exact).
    Mp3,
}

impl Encoder {
    /// All of them.
    pub const ALL: [Encoder; 3] = [Encoder::Flac, Encoder::Vorbis, Encoder::Mp3];

    /// The `input_format` the gateway reports for it.
    pub fn format(self) -> &'static str {
        match self {
            Encoder::Flac => "flac",
            Encoder::Vorbis => "vorbis",
            Encoder::Mp3 => "mp3",
        }
    }

    /// Its media type, for `data:` URLs.
    pub fn media_type(self) -> &'static str {
        match self {
            Encoder::Flac => "audio/flac",
            Encoder::Vorbis => "audio/ogg",
            Encoder::Mp3 => "audio/mpeg",
        }
    }

    /// The WAV file `wav` encoded by this encoder's command-line tool.
    pub fn encode(self, wav: &[u8]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.wav");
        let output = dir.path().join("out");
        std::fs::write(&input, wav).unwrap();
        let mut command = match self {
            Encoder::Flac => {
                let mut c = std::process::Command::new("flac");
                c.args(["--silent", "--force", "-o"])
                    .arg(&output)
                    .arg(&input);
                c
            }
            Encoder::Vorbis => {
                let mut c = std::process::Command::new("oggenc");
                c.args(["--quiet", "-q", "2", "-o"])
                    .arg(&output)
                    .arg(&input);
                c
            }
            Encoder::Mp3 => {
                let mut c = std::process::Command::new("lame");
                c.args(["--quiet", "-b", "64"]).arg(&input).arg(&output);
                c
            }
        };
        let status = command.status().unwrap_or_else(|e| {
            panic!("{self:?}'s encoder runs (scripts/install-system-deps.sh installs it): {e}")
        });
        assert!(status.success(), "{self:?}: {status}");
        std::fs::read(output).unwrap()
    }
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

/// Asserts that `POST /run` of `whisper-l4` with `audio_url: url` is a 400 naming the input and saying `says`,
/// before any 402, and again when a valid payment (for `good`) comes with it, which is not
/// charged.
#[allow(dead_code)]
pub async fn assert_audio_url_refused(
    stack: &super::Stack,
    good: &serde_json::Value,
    url: &str,
    says: &str,
) {
    let bad = serde_json::json!({"service": "whisper-l4", "input": {"audio_url": url}});
    let response = stack.post_json("/run", &bad).await;
    assert!(
        !response.headers().contains_key("payment-required"),
        "{url}"
    );
    assert_eq!(response.status(), 400, "{url}");
    let body: serde_json::Value = response.json().await.unwrap();
    x402_testkit::assert_text_at(&body, "/error", "input.audio_url is refused");
    x402_testkit::assert_text_at(&body, "/error", says);
    let body = refused_though_paid(stack, good, &bad).await;
    x402_testkit::assert_text_at(&body, "/error", says);
}
