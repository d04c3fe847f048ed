//! Whisper on candle: the model loaded from a CTranslate2 directory (`model.bin`,
//! `config.json`, `tokenizer.json`), and greedy decoding of 30-second windows with timestamp
//! tokens (OpenAI's timestamp rules), giving timed segments.

use std::path::Path;

use candle_core::{Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::whisper::{self as w, audio::pcm_to_mel, model::Whisper};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::audio::{SAMPLE_RATE, mel_filters};
use super::ct2;

/// Seconds per timestamp token.
const TIME_STEP: f64 = 0.02;
/// The latest timestamp a window may start its first segment at (OpenAI: 1 s).
const MAX_INITIAL_TIMESTAMP_TOKENS: u32 = 50;
/// Samples in one window.
pub const WINDOW_SAMPLES: usize = w::N_SAMPLES;

/// A stretch of speech with its text.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Segment {
    /// Start, in seconds from the start of the audio.
    pub start: f64,
    /// End, in seconds.
    pub end: f64,
    /// What was said.
    pub text: String,
}

/// `config.json` of a CTranslate2 Whisper model.
#[derive(Deserialize)]
struct Ct2Config {
    #[serde(default)]
    suppress_ids: Vec<u32>,
    #[serde(default)]
    suppress_ids_begin: Vec<u32>,
    #[serde(default)]
    lang_ids: Vec<u32>,
}

struct Tokens {
    sot: u32,
    eot: u32,
    transcribe: Option<u32>,
    no_timestamps: u32,
    /// The first timestamp token (`<|0.00|>`).
    timestamp_begin: u32,
}

/// A loaded Whisper model.
pub struct WhisperModel {
    model: Whisper,
    tokenizer: Tokenizer,
    tokens: Tokens,
    filters: Vec<f32>,
    suppress: Vec<u32>,
    suppress_begin: Vec<u32>,
    /// Language tokens (multilingual models), with their codes.
    languages: Vec<(u32, String)>,
    /// Whether the model transcribes many languages (its vocabulary has the language
    /// tokens' slots: 51 865 tokens or more, as OpenAI tells them apart); `.en` models' files
    /// list language tokens too, which they were not trained to follow.
    multilingual: bool,
}

impl std::fmt::Debug for WhisperModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperModel")
            .field("multilingual", &self.multilingual())
            .finish_non_exhaustive()
    }
}

fn candle(e: candle_core::Error) -> String {
    format!("whisper: {e}")
}

impl WhisperModel {
    /// Loads the model in `dir`.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let read = |name: &str| {
            std::fs::read(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()))
        };
        let config: Ct2Config = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| format!("{}/config.json: {e}", dir.display()))?;
        let tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?)
            .map_err(|e| format!("{}/tokenizer.json: {e}", dir.display()))?;
        let bin = read("model.bin")?;
        let loaded = ct2::load(&bin, config.suppress_ids.clone())
            .map_err(|e| format!("{}/model.bin: {e}", dir.display()))?;
        drop(bin);
        let id = |token: &str| {
            tokenizer
                .token_to_id(token)
                .ok_or_else(|| format!("the tokenizer has no {token}"))
        };
        let no_timestamps = id(w::NO_TIMESTAMPS_TOKEN)?;
        let tokens = Tokens {
            sot: id(w::SOT_TOKEN)?,
            eot: id(w::EOT_TOKEN)?,
            transcribe: tokenizer.token_to_id(w::TRANSCRIBE_TOKEN),
            no_timestamps,
            timestamp_begin: no_timestamps + 1,
        };
        let languages = config
            .lang_ids
            .iter()
            .filter_map(|&id| {
                let token = tokenizer.id_to_token(id)?;
                let code = token.strip_prefix("<|")?.strip_suffix("|>")?.to_owned();
                Some((id, code))
            })
            .collect();
        let multilingual = loaded.config.vocab_size >= 51_865 && tokens.transcribe.is_some();
        let filters = mel_filters(SAMPLE_RATE, w::N_FFT, loaded.config.num_mel_bins);
        let vb = VarBuilder::from_tensors(loaded.tensors, w::DTYPE, &Device::Cpu);
        let model = Whisper::load(&vb, loaded.config).map_err(candle)?;
        Ok(Self {
            model,
            tokenizer,
            tokens,
            filters,
            suppress: config.suppress_ids,
            suppress_begin: config.suppress_ids_begin,
            languages,
            multilingual,
        })
    }

    /// Whether the model transcribes many languages (else English only).
    pub fn multilingual(&self) -> bool {
        self.multilingual
    }

    /// Whether `code` (`en`, `de`, …) is a language the model knows.
    pub fn knows_language(&self, code: &str) -> bool {
        if self.multilingual() {
            self.languages.iter().any(|(_, c)| c == code)
        } else {
            code == "en"
        }
    }

    /// Transcribes `samples` (16 kHz mono) window by window, calling `progress(done, total)`
    /// after each. `language` forces a language on a multilingual model (else it is detected
    /// from the first window). Returns the language and the segments.
    pub fn transcribe(
        &mut self,
        samples: &[f32],
        language: Option<&str>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(String, Vec<Segment>), String> {
        let windows = samples.len().div_ceil(WINDOW_SAMPLES).max(1);
        let mut language = language.map(str::to_owned);
        let mut segments = Vec::new();
        for i in 0..windows {
            let start = i * WINDOW_SAMPLES;
            let end = (start + WINDOW_SAMPLES).min(samples.len());
            let chunk = &samples[start..end];
            let offset = start as f64 / f64::from(SAMPLE_RATE);
            let length = chunk.len() as f64 / f64::from(SAMPLE_RATE);
            let features = self.encode(chunk)?;
            if self.multilingual() && language.is_none() {
                language = Some(self.detect_language(&features)?);
            }
            let lang_token = language.as_deref().and_then(|code| {
                self.languages
                    .iter()
                    .find(|(_, c)| c == code)
                    .map(|(id, _)| *id)
            });
            let tokens = self.decode(&features, lang_token)?;
            segments.extend(self.segments(&tokens, offset, length));
            progress(i + 1, windows);
        }
        Ok((language.unwrap_or_else(|| "en".to_owned()), segments))
    }

    /// The encoder's output for up to 30 s of audio (padded to 30 s).
    fn encode(&mut self, chunk: &[f32]) -> Result<Tensor, String> {
        let mels = self.model.config.num_mel_bins;
        let mel = pcm_to_mel(&self.model.config, chunk, &self.filters);
        let frames = mel.len() / mels;
        let mel = Tensor::from_vec(mel, (1, mels, frames), &Device::Cpu)
            .and_then(|m| m.narrow(2, 0, w::N_FRAMES.min(frames)))
            .map_err(candle)?;
        self.model.encoder.forward(&mel, true).map_err(candle)
    }

    fn logits(
        &mut self,
        features: &Tensor,
        tokens: &[u32],
        flush: bool,
    ) -> Result<Vec<f32>, String> {
        let input = Tensor::new(tokens, &Device::Cpu)
            .and_then(|t| t.unsqueeze(0))
            .map_err(candle)?;
        let ys = self
            .model
            .decoder
            .forward(&input, features, flush)
            .map_err(candle)?;
        let last = ys.i((..1, tokens.len() - 1..)).map_err(candle)?;
        self.model
            .decoder
            .final_linear(&last)
            .and_then(|l| l.i(0)?.i(0))
            .and_then(|l| l.to_vec1::<f32>())
            .map_err(candle)
    }

    fn detect_language(&mut self, features: &Tensor) -> Result<String, String> {
        let logits = self.logits(features, &[self.tokens.sot], true)?;
        self.languages
            .iter()
            .max_by(|a, b| logits[a.0 as usize].total_cmp(&logits[b.0 as usize]))
            .map(|(_, code)| code.clone())
            .ok_or_else(|| "the model has no languages".to_owned())
    }

    /// Greedy decoding with timestamps; returns the sampled tokens (no prompt).
    fn decode(&mut self, features: &Tensor, language: Option<u32>) -> Result<Vec<u32>, String> {
        let mut prompt = vec![self.tokens.sot];
        if self.multilingual() {
            prompt.extend(language);
            prompt.extend(self.tokens.transcribe);
        }
        let max_new = self.model.config.max_target_positions / 2;
        let mut sampled: Vec<u32> = Vec::new();
        for step in 0..max_new {
            let all: Vec<u32> = prompt.iter().chain(&sampled).copied().collect();
            let mut logits = self.logits(features, &all, step == 0)?;
            self.apply_rules(&mut logits, &sampled);
            let next = argmax(&logits);
            if next == self.tokens.eot {
                break;
            }
            sampled.push(next);
        }
        Ok(sampled)
    }

    /// Suppressed tokens, and OpenAI's timestamp rules: timestamps come in pairs (a segment's
    /// end then the next one's start) and never go back; the first token is a timestamp no
    /// later than 1 s; when timestamps are likelier than any text token, one is taken.
    fn apply_rules(&self, logits: &mut [f32], sampled: &[u32]) {
        let ts = self.tokens.timestamp_begin as usize;
        let eot = self.tokens.eot as usize;
        let vocab = logits.len();
        let ban = |logits: &mut [f32], range: std::ops::Range<usize>| {
            for l in &mut logits[range.start.min(vocab)..range.end.min(vocab)] {
                *l = f32::NEG_INFINITY;
            }
        };
        for &id in &self.suppress {
            if let Some(l) = logits.get_mut(id as usize) {
                *l = f32::NEG_INFINITY;
            }
        }
        if sampled.is_empty() {
            for &id in &self.suppress_begin {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        logits[self.tokens.no_timestamps as usize] = f32::NEG_INFINITY;
        let is_ts = |t: u32| t >= self.tokens.timestamp_begin;
        let last_was_ts = sampled.last().is_some_and(|&t| is_ts(t));
        let penultimate_was_ts = sampled.len() < 2 || is_ts(sampled[sampled.len() - 2]);
        if last_was_ts {
            if penultimate_was_ts {
                ban(logits, ts..vocab);
            } else {
                ban(logits, 0..eot);
            }
        }
        if let Some(&last_ts) = sampled.iter().rev().find(|&&t| is_ts(t)) {
            // Never earlier than the last timestamp; strictly later after a closed pair.
            let floor = if last_was_ts && !penultimate_was_ts {
                last_ts
            } else {
                last_ts + 1
            };
            ban(logits, ts..floor as usize);
        }
        if sampled.is_empty() {
            ban(logits, 0..ts);
            ban(
                logits,
                ts + MAX_INITIAL_TIMESTAMP_TOKENS as usize + 1..vocab,
            );
        }
        // Timestamps likelier together than the likeliest text token: take a timestamp.
        let log_sum_exp = |values: &[f32]| {
            let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if max == f32::NEG_INFINITY {
                return max;
            }
            max + values.iter().map(|v| (v - max).exp()).sum::<f32>().ln()
        };
        let ts_mass = log_sum_exp(&logits[ts.min(vocab)..]);
        let text_max = logits[..ts.min(vocab)]
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        if ts_mass > text_max {
            ban(logits, 0..ts);
        }
    }

    /// Splits sampled tokens into timed segments, offset to the window's start.
    fn segments(&self, tokens: &[u32], offset: f64, length: f64) -> Vec<Segment> {
        let ts_begin = self.tokens.timestamp_begin;
        let time = |t: u32| offset + (f64::from(t - ts_begin) * TIME_STEP).min(length);
        let mut segments = Vec::new();
        let mut start = offset;
        let mut text = Vec::new();
        for &token in tokens {
            if token >= ts_begin {
                if text.is_empty() {
                    start = time(token);
                } else {
                    segments.push((start, time(token), std::mem::take(&mut text)));
                    start = time(token);
                }
            } else if token < self.tokens.eot {
                text.push(token);
            }
        }
        if !text.is_empty() {
            segments.push((start, offset + length, text));
        }
        segments
            .into_iter()
            .filter_map(|(start, end, ids)| {
                let text = self.tokenizer.decode(&ids, true).ok()?.trim().to_owned();
                (!text.is_empty()).then(|| Segment {
                    start: round(start),
                    end: round(end.max(start)),
                    text,
                })
            })
            .collect()
    }
}

fn round(seconds: f64) -> f64 {
    (seconds * 100.0).round() / 100.0
}

fn argmax(logits: &[f32]) -> u32 {
    logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_picks_the_largest() {
        assert_eq!(argmax(&[0.1, 3.0, -1.0, f32::NEG_INFINITY]), 1);
    }

    #[test]
    fn rounding_keeps_centiseconds() {
        assert_eq!(round(1.23456), 1.23);
    }
}
