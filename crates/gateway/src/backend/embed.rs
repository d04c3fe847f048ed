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

// ---------------------------------------------------------------------------------------
// The embed and rerank services: input, billing units, run.

/// Texts to embed, checked and counted: billed by their tokens.
#[derive(Debug)]
pub struct EmbedJob {
    /// The texts.
    pub texts: Vec<String>,
    /// Whether one text was given as a string (answered with one vector).
    pub single: bool,
    /// Tokens embedded: the billed units.
    pub tokens: u64,
}

/// Vectors, in the order of the texts.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// One vector per text.
    pub vectors: Vec<Vec<f32>>,
    /// Whether one text was given as a string.
    pub single: bool,
    /// Tokens embedded.
    pub tokens: u64,
}

impl EmbedJob {
    /// Reads `input.text`, `input.texts` or `input.input` and counts its tokens.
    pub fn prepare(
        input: &serde_json::Value,
        model: &Result<std::sync::Arc<MiniLm>, String>,
        limits: &crate::config::GatewayLimits,
    ) -> Result<Self, x402_paywall::Rejection> {
        use super::input::{bad, off_the_async_workers, text_list};
        let value = input
            .get("texts")
            .or_else(|| input.get("text"))
            .or_else(|| input.get("input"))
            .ok_or_else(|| {
                bad("input.text (a string) or input.texts (an array of strings) is required")
            })?;
        let texts = text_list(value, "input.text", limits)?;
        let model = model
            .as_ref()
            .map_err(|why| bad(format!("embeddings are unavailable: {why}")))?;
        let tokens =
            off_the_async_workers(|| model.count_tokens(&texts)).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            texts,
            single: value.is_string(),
            tokens: tokens.max(1) as u64,
        })
    }

    /// Embeds the texts (call on the blocking pool).
    pub fn run(&self, model: &MiniLm) -> Result<Embeddings, BackendError> {
        Ok(Embeddings {
            vectors: model.embed(&self.texts)?,
            single: self.single,
            tokens: self.tokens,
        })
    }
}

/// Documents to rank against a query: billed per query.
#[derive(Debug)]
pub struct RerankJob {
    /// The query.
    pub query: String,
    /// The candidates.
    pub documents: Vec<String>,
    /// How many results to return.
    pub top_n: Option<usize>,
}

impl RerankJob {
    /// Reads `input.query`, `input.documents` and `input.top_n`.
    pub fn prepare(
        input: &serde_json::Value,
        limits: &crate::config::GatewayLimits,
    ) -> Result<Self, x402_paywall::Rejection> {
        use super::input::{bad, required_text, text_list};
        let query = required_text(input, "query")?;
        let documents = text_list(
            input
                .get("documents")
                .ok_or_else(|| bad("input.documents (an array of strings) is required"))?,
            "input.documents",
            limits,
        )?;
        let top_n = match input.get("top_n") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad("input.top_n must be a positive integer"))?
                    as usize,
            ),
        };
        Ok(Self {
            query,
            documents,
            top_n,
        })
    }

    /// Ranks the documents by cosine similarity to the query (call on the blocking pool).
    pub fn run(&self, model: &MiniLm) -> Result<serde_json::Value, BackendError> {
        let mut texts = Vec::with_capacity(self.documents.len() + 1);
        texts.push(self.query.clone());
        texts.extend(self.documents.iter().cloned());
        let vectors = model.embed(&texts)?;
        let mut results: Vec<(usize, f32)> = vectors[1..]
            .iter()
            .enumerate()
            .map(|(i, v)| (i, cosine(&vectors[0], v)))
            .collect();
        results.sort_by(|a, b| b.1.total_cmp(&a.1));
        results.truncate(self.top_n.unwrap_or(results.len()));
        let results: Vec<serde_json::Value> = results
            .into_iter()
            .map(|(index, score)| {
                serde_json::json!({"index": index, "score": score, "text": self.documents[index]})
            })
            .collect();
        Ok(serde_json::json!({
            "results": results,
            "model": MODEL_NAME,
            "method": "bi-encoder cosine similarity (not a cross-encoder)",
        }))
    }
}
