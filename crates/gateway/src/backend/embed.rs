//! Sentence embeddings with all-MiniLM-L6-v2 in candle (pure Rust, CPU): BERT, masked mean
//! pooling, L2 normalisation. Rerank is cosine similarity of the same vectors (a bi-encoder).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::BackendError;

/// The model's name, as the catalog and the OpenAI routes report it.
pub const MODEL_NAME: &str = "all-MiniLM-L6-v2";
/// Vector length.
pub const DIMENSIONS: usize = 384;
/// Longest input in tokens; longer inputs are truncated (sentence-transformers' setting).
pub const MAX_TOKENS: usize = 256;
/// Texts embedded per forward pass.
const BATCH: usize = 32;

/// The loaded model and its tokenizer.
pub struct MiniLm {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl std::fmt::Debug for MiniLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLm").finish_non_exhaustive()
    }
}

fn model_error(what: &str, dir: &Path, error: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable(format!(
        "{what} in {}: {error} (run scripts/install-models.sh)",
        dir.display()
    ))
}

impl MiniLm {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, BackendError> {
        let file = |name: &str| -> PathBuf { dir.join(name) };
        let config_text = std::fs::read_to_string(file("config.json"))
            .map_err(|e| model_error("cannot read config.json", dir, e))?;
        let config: Config = serde_json::from_str(&config_text)
            .map_err(|e| model_error("bad config.json", dir, e))?;
        let mut tokenizer = Tokenizer::from_file(file("tokenizer.json"))
            .map_err(|e| model_error("cannot load tokenizer.json", dir, e))?;
        // The packaged tokenizer pads every input to 128 tokens. Pad only to the longest
        // input of a batch, and mask the padding out of the pooling, or every sentence is
        // averaged with ~100 [PAD] states and all cosines come out near 0.9.
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| model_error("bad truncation", dir, e))?;
        let device = Device::Cpu;
        let weights = file("model.safetensors");
        if !weights.is_file() {
            return Err(model_error(
                "model.safetensors is missing",
                dir,
                "not found",
            ));
        }
        let vb = load_weights(&weights, &device)
            .map_err(|e| model_error("cannot map model.safetensors", dir, e))?;
        let model =
            BertModel::load(vb, &config).map_err(|e| model_error("cannot load BERT", dir, e))?;
        Ok(Self {
            model,
            tokenizer,
            device,
        })
    }

    /// Tokens each text is embedded from (after truncation), for pricing before any work.
    pub fn count_tokens(&self, texts: &[String]) -> Result<usize, BackendError> {
        let mut total = 0;
        for text in texts {
            let encoding = self
                .tokenizer
                .encode(text.as_str(), true)
                .map_err(|e| BackendError::Failed(format!("tokenizer: {e}")))?;
            total += encoding.get_ids().len();
        }
        Ok(total)
    }

    /// Unit-length embeddings of `texts`, in order.
    pub fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, BackendError> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(BATCH) {
            vectors.extend(
                self.embed_batch(batch)
                    .map_err(|e| BackendError::Failed(format!("embedding failed: {e}")))?,
            );
        }
        Ok(vectors)
    }

    fn embed_batch(
        &self,
        texts: &[String],
    ) -> Result<Vec<Vec<f32>>, Box<dyn std::error::Error + Send + Sync>> {
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encodings = self.tokenizer.encode_batch(inputs, true)?;
        let rows = |get: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> candle_core::Result<Tensor> {
            let rows = encodings
                .iter()
                .map(|e| Tensor::new(get(e), &self.device))
                .collect::<candle_core::Result<Vec<_>>>()?;
            Tensor::stack(&rows, 0)
        };
        let ids = rows(&|e| e.get_ids())?;
        let mask = rows(&|e| e.get_attention_mask())?;
        let type_ids = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &type_ids, Some(&mask))?;
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
        Ok(mean.broadcast_div(&norms)?.to_vec2::<f32>()?)
    }
}

fn load_weights(path: &Path, device: &Device) -> Result<VarBuilder<'static>, String> {
    // Read into memory rather than mmap: mapping is `unsafe`, which this workspace forbids,
    // and 91 MB read once at start costs ~50 ms.
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    VarBuilder::from_buffered_safetensors(bytes, DType::F32, device).map_err(|e| e.to_string())
}

/// Cosine similarity of two unit vectors (their dot product).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
