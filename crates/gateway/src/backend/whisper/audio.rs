//! Audio in: any file symphonia reads (WAV with PCM or ADPCM, FLAC, Ogg Vorbis, MP3) decoded to mono and
//! resampled to Whisper's 16 kHz; and the mel filter bank Whisper's spectrogram uses.

use std::io::Cursor;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Whisper's sample rate.
pub const SAMPLE_RATE: u32 = 16_000;

/// The formats [`decode`] reads, for messages.
pub const FORMATS: &str = "WAV (PCM or ADPCM), FLAC, Ogg Vorbis or MP3";

/// Decoded audio: mono samples at [`SAMPLE_RATE`].
#[derive(Debug, Clone)]
pub struct Audio {
    /// Samples in [-1, 1].
    pub samples: Vec<f32>,
    /// The container/codec read, e.g. `flac`.
    pub format: &'static str,
    /// The file's own sample rate.
    pub source_rate: u32,
}

impl Audio {
    /// Length in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(SAMPLE_RATE)
    }
}

/// Why audio cannot be read; every case is the sender's to fix.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// No bytes.
    #[error("the audio is empty")]
    Empty,
    /// Not a format read here.
    #[error("the audio is not in a format read here ({FORMATS}): {0}")]
    Format(String),
    /// Read, but without sound in it.
    #[error("the audio has no samples")]
    NoSamples,
    /// Longer than allowed.
    #[error("the audio is {seconds:.0} s long; at most {max} s per request")]
    TooLong {
        /// Its length.
        seconds: f64,
        /// The limit.
        max: u64,
    },
}

fn format_name(codec: symphonia::core::codecs::CodecType) -> &'static str {
    use symphonia::core::codecs as c;
    match codec {
        c::CODEC_TYPE_FLAC => "flac",
        c::CODEC_TYPE_VORBIS => "vorbis",
        c::CODEC_TYPE_MP3 => "mp3",
        c::CODEC_TYPE_ADPCM_IMA_WAV | c::CODEC_TYPE_ADPCM_MS => "adpcm",
        _ => "wav",
    }
}

/// Decodes `bytes` to 16 kHz mono, refusing audio longer than `max_seconds` (checked as it
/// decodes, so a long file is not decoded whole).
pub fn decode(bytes: &[u8], max_seconds: u64) -> Result<Audio, AudioError> {
    if bytes.is_empty() {
        return Err(AudioError::Empty);
    }
    let stream = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let probed = symphonia::default::get_probe()
        .format(
            &Hint::new(),
            stream,
            // Gapless: the encoder's delay and padding (an MP3's LAME header) are not audio,
            // so they are neither billed nor transcribed.
            &FormatOptions {
                enable_gapless: true,
                ..FormatOptions::default()
            },
            &MetadataOptions::default(),
        )
        .map_err(|e| AudioError::Format(e.to_string()))?;
    let mut reader = probed.format;
    let track = reader
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| AudioError::Format("no audio track".into()))?;
    let track_id = track.id;
    // Frames the file says it holds (a WAV's fact chunk, FLAC's stream info): block codecs pad
    // their last block, which is not audio.
    let declared_frames = match (track.codec_params.n_frames, wav_fact_frames(bytes)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let format = format_name(track.codec_params.codec);
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| AudioError::Format(e.to_string()))?;
    let mut rate = track.codec_params.sample_rate.unwrap_or(0);
    let mut mono = Vec::new();
    let mut buffer: Option<SampleBuffer<f32>> = None;
    loop {
        let packet = match reader.next_packet() {
            Ok(packet) => packet,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break;
            }
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => return Err(AudioError::Format(e.to_string())),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(decoded) => decoded,
            // A damaged or cut packet: skip it, as players do.
            Err(SymphoniaError::DecodeError(_) | SymphoniaError::IoError(_)) => continue,
            Err(e) => return Err(AudioError::Format(e.to_string())),
        };
        let spec = *decoded.spec();
        rate = spec.rate;
        let channels = spec.channels.count().max(1);
        let buf = match &mut buffer {
            Some(buf) if buf.capacity() >= decoded.capacity() * channels => buf,
            _ => buffer.insert(SampleBuffer::new(decoded.capacity() as u64, spec)),
        };
        buf.copy_interleaved_ref(decoded);
        mono.extend(
            buf.samples()
                .chunks(channels)
                .map(|frame| frame.iter().sum::<f32>() / channels as f32),
        );
        if rate > 0 && mono.len() as u64 > max_seconds * u64::from(rate) {
            return Err(AudioError::TooLong {
                seconds: mono.len() as f64 / f64::from(rate),
                max: max_seconds,
            });
        }
    }
    if let Some(frames) = declared_frames.and_then(|n| usize::try_from(n).ok()) {
        mono.truncate(frames);
    }
    if mono.is_empty() || rate == 0 {
        return Err(AudioError::NoSamples);
    }
    Ok(Audio {
        samples: resample(&mono, rate, SAMPLE_RATE),
        format,
        source_rate: rate,
    })
}

/// The frame count a WAV file's `fact` chunk declares (compressed WAVs carry one).
fn wav_fact_frames(bytes: &[u8]) -> Option<u64> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return None;
    }
    let mut at = 12usize;
    while at.checked_add(8)? <= bytes.len() {
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().ok()?) as usize;
        if &bytes[at..at + 4] == b"fact" && size >= 4 && at + 12 <= bytes.len() {
            return Some(u64::from(u32::from_le_bytes(
                bytes[at + 8..at + 12].try_into().ok()?,
            )));
        }
        if &bytes[at..at + 4] == b"data" {
            return None;
        }
        at = at.checked_add(8 + size + (size & 1))?;
    }
    None
}

/// Resamples `samples` from `from` Hz to `to` Hz with a windowed-sinc filter (low-passed
/// below the lower Nyquist frequency when downsampling).
pub fn resample(samples: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || samples.is_empty() {
        return samples.to_vec();
    }
    const HALF_TAPS: i64 = 16;
    let ratio = f64::from(to) / f64::from(from);
    let cutoff = ratio.min(1.0) * 0.95;
    let out_len = (samples.len() as f64 * ratio).round() as usize;
    let window = |x: f64| {
        // Blackman window over [-HALF_TAPS, HALF_TAPS].
        let t = (x / HALF_TAPS as f64 + 1.0) * 0.5;
        0.42 - 0.5 * (2.0 * std::f64::consts::PI * t).cos()
            + 0.08 * (4.0 * std::f64::consts::PI * t).cos()
    };
    let sinc = |x: f64| {
        if x.abs() < 1e-9 {
            1.0
        } else {
            (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x)
        }
    };
    // Taps scale with the cutoff so the filter's length in input samples is fixed.
    let span = (HALF_TAPS as f64 / cutoff).ceil() as i64;
    (0..out_len)
        .map(|i| {
            let center = i as f64 / ratio;
            let first = (center.floor() as i64 - span).max(0);
            let last = (center.floor() as i64 + span).min(samples.len() as i64 - 1);
            let (mut sum, mut weights) = (0.0, 0.0);
            for j in first..=last {
                let x = j as f64 - center;
                let w = cutoff * sinc(cutoff * x) * window((x * cutoff).clamp(-16.0, 16.0));
                sum += w * f64::from(samples[j as usize]);
                weights += w;
            }
            if weights.abs() > 1e-9 {
                (sum / weights) as f32
            } else {
                0.0
            }
        })
        .collect()
}

/// The mel filter bank Whisper uses (librosa's, Slaney scale and normalisation):
/// `n_mels` rows of `n_fft / 2 + 1` weights, row-major.
pub fn mel_filters(sample_rate: u32, n_fft: usize, n_mels: usize) -> Vec<f32> {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;
    let log_step = 6.4f64.ln() / 27.0;
    let hz_to_mel = |hz: f64| {
        if hz >= MIN_LOG_HZ {
            MIN_LOG_MEL + (hz / MIN_LOG_HZ).ln() / log_step
        } else {
            hz / F_SP
        }
    };
    let mel_to_hz = |mel: f64| {
        if mel >= MIN_LOG_MEL {
            MIN_LOG_HZ * (log_step * (mel - MIN_LOG_MEL)).exp()
        } else {
            F_SP * mel
        }
    };
    let bins = n_fft / 2 + 1;
    let fft_freqs: Vec<f64> = (0..bins)
        .map(|k| k as f64 * f64::from(sample_rate) / n_fft as f64)
        .collect();
    let (low, high) = (hz_to_mel(0.0), hz_to_mel(f64::from(sample_rate) / 2.0));
    let mel_f: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(low + (high - low) * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut filters = vec![0f32; n_mels * bins];
    for m in 0..n_mels {
        let norm = 2.0 / (mel_f[m + 2] - mel_f[m]);
        for (k, f) in fft_freqs.iter().enumerate() {
            let lower = (f - mel_f[m]) / (mel_f[m + 1] - mel_f[m]);
            let upper = (mel_f[m + 2] - f) / (mel_f[m + 2] - mel_f[m + 1]);
            filters[m * bins + k] = (lower.min(upper).max(0.0) * norm) as f32;
        }
    }
    filters
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(samples: &[i16], rate: u32, channels: u16) -> Vec<u8> {
        let data_len = (samples.len() * 2) as u32;
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data_len).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&channels.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&(rate * 2 * u32::from(channels)).to_le_bytes());
        out.extend_from_slice(&(2 * channels).to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&data_len.to_le_bytes());
        for s in samples {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }

    #[test]
    fn stereo_44k_wav_becomes_16k_mono_of_the_same_length() {
        let rate = 44_100;
        let tone: Vec<i16> = (0..rate * 2)
            .flat_map(|i| {
                let s = ((i as f64 * 440.0 * 2.0 * std::f64::consts::PI / f64::from(rate)).sin()
                    * 10_000.0) as i16;
                [s, s]
            })
            .collect();
        let audio = decode(&wav(&tone, rate, 2), 60).unwrap();
        assert_eq!(audio.format, "wav");
        assert_eq!(audio.source_rate, rate);
        assert!((audio.seconds() - 2.0).abs() < 0.01, "{}", audio.seconds());
        let peak = audio.samples.iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!((peak - 10_000.0 / 32_768.0).abs() < 0.02, "{peak}");
    }

    #[test]
    fn bad_audio_is_refused_with_the_reason() {
        assert!(matches!(decode(b"", 60), Err(AudioError::Empty)));
        let error = decode(b"this is text, not sound", 60).unwrap_err();
        assert!(matches!(error, AudioError::Format(_)), "{error}");
        assert!(error.to_string().contains("FLAC"), "{error}");
        assert!(matches!(
            decode(&wav(&[], 16_000, 1), 60),
            Err(AudioError::NoSamples) | Err(AudioError::Format(_))
        ));
        let long = vec![0i16; 16_000 * 3];
        assert!(matches!(
            decode(&wav(&long, 16_000, 1), 2),
            Err(AudioError::TooLong { max: 2, .. })
        ));
    }

    #[test]
    fn mel_filters_cover_the_spectrum_like_librosa() {
        let filters = mel_filters(16_000, 400, 80);
        assert_eq!(filters.len(), 80 * 201);
        // Every filter has weight; the first peaks near bin 1 (librosa: 0.0247).
        for m in 0..80 {
            assert!(
                filters[m * 201..(m + 1) * 201].iter().any(|w| *w > 0.0),
                "{m}"
            );
        }
        assert!((filters[1] - 0.02466).abs() < 1e-3, "{}", filters[1]);
    }
}
