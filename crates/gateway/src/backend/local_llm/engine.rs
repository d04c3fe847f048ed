//! The model itself: a GGUF chat model run on the CPU by candle's quantized llama (SmolLM2) or
//! quantized qwen2 (Qwen2.5-Coder), as the file's architecture says, with the tokenizer and
//! the chat template the file carries. Blocking: only the worker thread calls it.

use std::path::Path;

use candle_core::quantized::tokenizer::TokenizerFromGguf;
use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::{quantized_llama, quantized_qwen2};
use tokenizers::Tokenizer;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;

use super::template::ChatTemplate;
use super::text::TextOut;

/// The longest context (prompt and answer) one generation may use.
pub const CONTEXT_TOKENS: usize = 2048;

/// The network, by architecture. Each generation starts at position 0, which resets its
/// attention cache.
enum Weights {
    Llama(quantized_llama::ModelWeights),
    Qwen2(quantized_qwen2::ModelWeights),
}

impl Weights {
    fn forward(&mut self, input: &Tensor, position: usize) -> candle_core::Result<Tensor> {
        match self {
            Self::Llama(model) => model.forward(input, position),
            Self::Qwen2(model) => model.forward(input, position),
        }
    }
}

/// A loaded chat model.
pub(super) struct Engine {
    model: Weights,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    /// Tokens that end an answer (`<|im_end|>`, `<|endoftext|>`, the file's eos).
    stop_ids: Vec<u32>,
    device: Device,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("stop_ids", &self.stop_ids)
            .finish_non_exhaustive()
    }
}

/// How to pick the answer's tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// The most tokens to generate.
    pub max_tokens: usize,
    /// 0 for greedy decoding; above, sampling at that temperature.
    pub temperature: f64,
    /// Nucleus sampling's mass, when sampling.
    pub top_p: Option<f64>,
    /// The sampler's seed.
    pub seed: u64,
    /// Strings that end the answer (not included in it).
    pub stop: Vec<String>,
}

/// How a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finish {
    /// Tokens of the prompt as templated.
    pub prompt_tokens: u64,
    /// Tokens generated (the stop token not counted).
    pub completion_tokens: u64,
    /// `true` when it stopped at `max_tokens` or the context's end, not at a stop token or
    /// string.
    pub length: bool,
}

impl Engine {
    /// Loads the GGUF file at `path`.
    pub(super) fn load(path: &Path) -> Result<Self, String> {
        let what = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        let mut file = std::fs::File::open(path).map_err(|e| what(&e))?;
        let content = gguf_file::Content::read(&mut file).map_err(|e| what(&e))?;
        let meta = |key: &str| content.metadata.get(key);
        let arch = meta("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        if arch != "llama" && arch != "qwen2" {
            return Err(what(&format!(
                "architecture {arch:?} is not supported (llama or qwen2 only)"
            )));
        }
        let template = meta("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok())
            .ok_or_else(|| what(&"no tokenizer.chat_template"))
            .and_then(|t| ChatTemplate::from_jinja(t).map_err(|e| what(&e)))?;
        // With SmolLM2's default system prompt put first, the model (its weights as
        // re-quantized below) answered "What is the capital of France?" with unrelated
        // French text; without it, "The capital of France is Paris." A conversation that
        // wants a system prompt carries its own. Qwen's ("You are Qwen, created by Alibaba
        // Cloud. You are a helpful assistant.") is the one it was tuned with: kept.
        let template = if arch == "llama" {
            template.without_default_system()
        } else {
            template
        };
        let tokenizer = tokenizer(&content).map_err(|e| what(&e))?;
        let mut stop_ids: Vec<u32> = ["<|im_end|>", "<|endoftext|>"]
            .iter()
            .filter_map(|t| tokenizer.token_to_id(t))
            .collect();
        if let Some(eos) = meta("tokenizer.ggml.eos_token_id").and_then(|v| v.to_u32().ok()) {
            stop_ids.push(eos);
        }
        let device = Device::Cpu;
        let (content, mut weights) =
            requantized(content, &mut file, &device).map_err(|e| what(&e))?;
        let model = if arch == "llama" {
            quantized_llama::ModelWeights::from_gguf(content, &mut weights, &device)
                .map(Weights::Llama)
        } else {
            quantized_qwen2::ModelWeights::from_gguf(content, &mut weights, &device)
                .map(Weights::Qwen2)
        }
        .map_err(|e| what(&e))?;
        Ok(Self {
            model,
            tokenizer,
            template,
            stop_ids,
            device,
        })
    }

    /// The tokens of `text` (special tokens written in it are read as such).
    pub(super) fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| format!("tokenizer: {e}"))
    }

    /// The text of `ids`, special tokens left out.
    pub(super) fn decode(&self, ids: &[u32]) -> Result<String, String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| format!("tokenizer: {e}"))
    }

    /// The prompt for `messages` (role, content) in the model's chat template, ready for the
    /// assistant's answer.
    pub(super) fn prompt(&self, messages: &[(String, String)]) -> String {
        self.template.render(messages)
    }

    /// Generates the answer to `prompt` (its tokens), giving each new piece of text to `out`;
    /// stops early when `out` returns `false` (nobody listens any more).
    pub(super) fn generate(
        &mut self,
        prompt: &[u32],
        params: &Params,
        mut out: impl FnMut(&str) -> bool,
    ) -> Result<Finish, String> {
        let fail = |e: candle_core::Error| format!("inference: {e}");
        let sampling = if params.temperature <= 0.0 {
            Sampling::ArgMax
        } else {
            match params.top_p {
                Some(p) if p > 0.0 && p < 1.0 => Sampling::TopP {
                    p,
                    temperature: params.temperature,
                },
                _ => Sampling::All {
                    temperature: params.temperature,
                },
            }
        };
        let mut sampler = LogitsProcessor::from_sampling(params.seed, sampling);
        let budget = params
            .max_tokens
            .min(CONTEXT_TOKENS.saturating_sub(prompt.len()));
        let mut finish = Finish {
            prompt_tokens: prompt.len() as u64,
            completion_tokens: 0,
            length: true,
        };
        let mut text = TextOut::new(&params.stop);
        let mut ids = Vec::new();
        let mut input = Tensor::new(prompt, &self.device)
            .and_then(|t| t.unsqueeze(0))
            .map_err(fail)?;
        let mut position = 0;
        while (finish.completion_tokens as usize) < budget {
            let logits = self
                .model
                .forward(&input, position)
                .and_then(|l| l.squeeze(0))
                .map_err(fail)?;
            position += input.dim(1).map_err(fail)?;
            let next = sampler.sample(&logits).map_err(fail)?;
            if self.stop_ids.contains(&next) {
                finish.length = false;
                break;
            }
            finish.completion_tokens += 1;
            ids.push(next);
            let (piece, stopped) = text.update(&self.decode(&ids)?);
            if !piece.is_empty() && !out(piece) {
                return Ok(finish);
            }
            if stopped {
                finish.length = false;
                return Ok(finish);
            }
            input = Tensor::new(&[next], &self.device)
                .and_then(|t| t.unsqueeze(0))
                .map_err(fail)?;
        }
        let rest = text.finish();
        if !rest.is_empty() {
            out(rest);
        }
        Ok(finish)
    }
}

/// The file's tensors, its Q4_1, Q5_0 and Q5_1 ones turned into Q8_0, as a GGUF file in
/// memory: candle 0.11 multiplies those blocks (SmolLM2's Q4_1, most of Qwen2.5-Coder's
/// Q5_0) with a scalar loop only, Q8_0 ones with SIMD. Q8_0 keeps each value to within half a
/// step of 1/127 of its block's largest (finer than the 1/15 or 1/31 steps it had).
fn requantized(
    content: gguf_file::Content,
    file: &mut std::fs::File,
    device: &Device,
) -> candle_core::Result<(gguf_file::Content, std::io::Cursor<Vec<u8>>)> {
    let mut tensors = Vec::new();
    for name in content.tensor_infos.keys() {
        let tensor = content.tensor(file, name, device)?;
        let scalar_only = matches!(
            tensor.dtype(),
            GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1
        );
        let tensor = if scalar_only {
            QTensor::quantize(&tensor.dequantize(device)?, GgmlDType::Q8_0)?
        } else {
            tensor
        };
        tensors.push((name.as_str(), tensor));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(key, value)| (key.as_str(), value))
        .collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let mut buffer = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut buffer, &metadata, &tensors)?;
    buffer.set_position(0);
    let content = gguf_file::Content::read(&mut buffer)?;
    Ok((content, buffer))
}

/// The byte-level BPE tokenizer the GGUF file carries (vocabulary, merges, special tokens),
/// read by candle; for SmolLM2's `smollm` pre-tokenizer, which candle does not know, its
/// splitting: every digit apart, then GPT-2's byte-level split without a leading space.
fn tokenizer(content: &gguf_file::Content) -> Result<Tokenizer, String> {
    let mut tokenizer = Tokenizer::from_gguf(content).map_err(|e| e.to_string())?;
    let pre = content
        .metadata
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .map(String::as_str);
    if matches!(pre, Some("smollm") | Some("gpt2") | None) {
        let split: Vec<PreTokenizerWrapper> = vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ];
        tokenizer.with_pre_tokenizer(Some(Sequence::new(split)));
    }
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installed(file: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../models")
            .join(file)
    }

    /// The default model, installed by scripts/install-models.sh.
    fn smollm2() -> Engine {
        Engine::load(&installed(super::super::SMOLLM2_FILE))
            .expect("SmolLM2 is installed: run scripts/install-models.sh")
    }

    #[test]
    fn qwen_coders_file_gives_its_tokenizer_template_and_stops() {
        let path = installed(super::super::QWEN_CODER_FILE);
        let mut file = std::fs::File::open(&path)
            .expect("Qwen2.5-Coder is installed: run scripts/install-models.sh --qwen-coder");
        let content = gguf_file::Content::read(&mut file).unwrap();
        let tokenizer = tokenizer(&content).unwrap();
        let template = content.metadata["tokenizer.chat_template"]
            .to_string()
            .unwrap();
        let prompt = ChatTemplate::from_jinja(template)
            .unwrap()
            .render(&[("user".into(), "Hi 2024".into())]);
        assert_eq!(
            prompt,
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n\
             <|im_start|>user\nHi 2024<|im_end|>\n<|im_start|>assistant\n"
        );
        let ids = tokenizer.encode(prompt.as_str(), false).unwrap();
        let ids = ids.get_ids();
        // The markers are single special tokens (<|im_start|> 151644, <|im_end|> 151645).
        assert_eq!(ids[0], 151_644);
        assert_eq!(ids.iter().filter(|id| **id == 151_645).count(), 2);
        assert_eq!(
            tokenizer.decode(ids, true).unwrap(),
            prompt.replace("<|im_start|>", "").replace("<|im_end|>", "")
        );
        // qwen2's split: digits one by one, words with their leading space.
        assert_eq!(tokenizer.encode("2024", false).unwrap().len(), 4);
        assert_eq!(tokenizer.encode("the capital", false).unwrap().len(), 2);
        assert_eq!(tokenizer.token_to_id("<|im_end|>"), Some(151_645));
    }

    #[test]
    fn smollm2s_file_gives_its_template_tokens_and_stops() {
        let engine = smollm2();
        let prompt = engine.prompt(&[("user".into(), "Hi 2024".into())]);
        assert!(prompt.starts_with("<|im_start|>user\nHi 2024"), "{prompt}");
        let ids = engine.encode(&prompt).unwrap();
        // The markers are single special tokens, the text around them ordinary ones.
        assert_eq!(ids[0], 1, "<|im_start|>");
        assert_eq!(
            ids.iter().filter(|id| **id == 2).count(),
            1,
            "<|im_end|> once"
        );
        assert_eq!(
            engine.decode(&ids).unwrap(),
            prompt.replace("<|im_start|>", "").replace("<|im_end|>", "")
        );
        // Digits one by one, words with their leading space.
        let digits = engine.encode("2024").unwrap();
        assert_eq!(digits.len(), 4);
        let words = engine.encode("the capital").unwrap();
        assert_eq!(words.len(), 2, "{words:?}");
        assert!(engine.stop_ids.contains(&2));
    }

    #[test]
    fn greedy_decoding_is_deterministic_and_bounded() {
        let mut engine = smollm2();
        let prompt = engine
            .encode(&engine.prompt(&[("user".into(), "What is the capital of France?".into())]))
            .unwrap();
        let params = Params {
            max_tokens: 40,
            temperature: 0.0,
            top_p: None,
            seed: 1,
            stop: Vec::new(),
        };
        let mut answer = |params: &Params| {
            let mut text = String::new();
            let finish = engine
                .generate(&prompt, params, |piece| {
                    text.push_str(piece);
                    true
                })
                .unwrap();
            (text, finish)
        };
        let (first, finish) = answer(&params);
        assert!(first.contains("Paris"), "{first}");
        assert!(!finish.length);
        assert_eq!(finish.prompt_tokens, prompt.len() as u64);
        assert_eq!(answer(&params).0, first);
        let (short, finish) = answer(&Params {
            max_tokens: 2,
            ..params.clone()
        });
        assert!(finish.length && finish.completion_tokens == 2, "{short}");
        assert!(first.starts_with(&short));
    }
}
