//! Reads a Whisper model in CTranslate2's `model.bin` format (as faster-whisper ships it) into
//! the tensors and names candle's `whisper::model::Whisper` loads.
//!
//! The format: `u32 version | str spec | u32 revision | u32 n_vars`, then per variable
//! `str name | u8 rank | u32 dims[rank] | u8 dtype | u32 nbytes | data`, then
//! `u32 n_aliases | (str alias, str target)*`; a `str` is a `u16` length (with its NUL) and
//! the bytes. CTranslate2 fuses the attention projections (`linear_0` is Q, K, V stacked for
//! self attention; the cross attention's `linear_1` is K and V), which candle keeps apart.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::whisper::Config;

/// Why a model file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Ct2Error {
    /// The file ends before a field it announces.
    #[error("the model file is truncated (at byte {at})")]
    Truncated {
        /// Where it ended.
        at: usize,
    },
    /// Not a CTranslate2 Whisper model this loader reads.
    #[error("not a CTranslate2 Whisper model: {0}")]
    Unsupported(String),
    /// A tensor the model needs is missing or misshapen.
    #[error("the model file lacks {0}")]
    Missing(String),
    /// candle refused a tensor.
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// The model's tensors under candle's (Hugging Face) names, and its dimensions.
#[derive(Debug)]
pub struct Ct2Whisper {
    /// Tensors, f32, by candle name.
    pub tensors: HashMap<String, Tensor>,
    /// Dimensions read from the tensors.
    pub config: Config,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Ct2Error> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(Ct2Error::Truncated { at: self.at })?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, Ct2Error> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Ct2Error> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Ct2Error> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Result<String, Ct2Error> {
        let len = usize::from(self.u16()?);
        let bytes = self.take(len)?;
        let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
        String::from_utf8(bytes.to_vec())
            .map_err(|_| Ct2Error::Unsupported("a variable name is not UTF-8".into()))
    }
}

/// One variable as stored.
struct Variable<'a> {
    dims: Vec<usize>,
    dtype: u8,
    data: &'a [u8],
}

impl Variable<'_> {
    fn tensor(&self, name: &str) -> Result<Tensor, Ct2Error> {
        let dtype = match self.dtype {
            0 => DType::F32,
            4 => DType::F16,
            5 => DType::BF16,
            other => {
                return Err(Ct2Error::Unsupported(format!(
                    "{name} has data type {other}; only float32, float16 and bfloat16 models are read (not int8)"
                )));
            }
        };
        let tensor = Tensor::from_raw_buffer(self.data, dtype, &self.dims, &Device::Cpu)?;
        Ok(tensor.to_dtype(DType::F32)?)
    }

    /// A small integer scalar (such as `num_heads`).
    fn int(&self) -> Option<usize> {
        match (self.dtype, self.data) {
            (1, [b]) => Some(usize::from(*b)),
            (2, [a, b]) => Some(usize::from(u16::from_le_bytes([*a, *b]))),
            (3, [a, b, c, d]) => usize::try_from(u32::from_le_bytes([*a, *b, *c, *d])).ok(),
            _ => None,
        }
    }
}

fn variables(bytes: &[u8]) -> Result<HashMap<String, Variable<'_>>, Ct2Error> {
    let mut r = Reader { bytes, at: 0 };
    let version = r.u32()?;
    if !(2..=6).contains(&version) {
        return Err(Ct2Error::Unsupported(format!(
            "format version {version} (this loader reads 2 to 6)"
        )));
    }
    let spec = r.string()?;
    if spec != "WhisperSpec" {
        return Err(Ct2Error::Unsupported(format!("the model is a {spec}")));
    }
    let _revision = r.u32()?;
    let count = r.u32()?;
    let mut vars = HashMap::new();
    for _ in 0..count {
        let name = r.string()?;
        let rank = usize::from(r.u8()?);
        let dims = (0..rank)
            .map(|_| r.u32().map(|d| d as usize))
            .collect::<Result<Vec<_>, _>>()?;
        let dtype = r.u8()?;
        let nbytes = r.u32()? as usize;
        let data = r.take(nbytes)?;
        vars.insert(name, Variable { dims, dtype, data });
    }
    Ok(vars)
}

/// Reads `bytes` (a `model.bin`) and `suppress_tokens` (from its `config.json`).
pub fn load(bytes: &[u8], suppress_tokens: Vec<u32>) -> Result<Ct2Whisper, Ct2Error> {
    let vars = variables(bytes)?;
    let get = |name: &str| -> Result<Tensor, Ct2Error> {
        vars.get(name)
            .ok_or_else(|| Ct2Error::Missing(name.to_owned()))?
            .tensor(name)
    };
    let int = |name: &str| -> Result<usize, Ct2Error> {
        vars.get(name)
            .and_then(Variable::int)
            .ok_or_else(|| Ct2Error::Missing(name.to_owned()))
    };
    let layers = |side: &str| {
        (0..)
            .take_while(|i| vars.contains_key(&format!("{side}/layer_{i}/ffn/linear_0/weight")))
            .count()
    };

    let embeddings = get("decoder/embeddings/weight")?;
    let (vocab_size, d_model) = embeddings.dims2()?;
    let conv1 = get("encoder/conv1/weight")?;
    let num_mel_bins = conv1.dims3()?.1;
    let positions = |name: &str| -> Result<usize, Ct2Error> {
        vars.get(name)
            .and_then(|v| v.dims.first().copied())
            .ok_or_else(|| Ct2Error::Missing(name.to_owned()))
    };
    let config = Config {
        num_mel_bins,
        max_source_positions: positions("encoder/position_encodings/encodings")?,
        d_model,
        encoder_attention_heads: int("encoder/num_heads").unwrap_or(d_model / 64),
        encoder_layers: layers("encoder"),
        vocab_size,
        max_target_positions: positions("decoder/position_encodings/encodings")?,
        decoder_attention_heads: int("decoder/num_heads").unwrap_or(d_model / 64),
        decoder_layers: layers("decoder"),
        suppress_tokens,
    };
    if config.encoder_layers == 0 || config.decoder_layers == 0 {
        return Err(Ct2Error::Missing("encoder or decoder layers".into()));
    }

    let mut tensors = HashMap::new();
    let mut put = |name: String, tensor: Tensor| {
        tensors.insert(name, tensor);
    };
    put("model.decoder.embed_tokens.weight".into(), embeddings);
    put(
        "model.decoder.embed_positions.weight".into(),
        get("decoder/position_encodings/encodings")?,
    );
    put("model.encoder.conv1.weight".into(), conv1);
    put(
        "model.encoder.conv1.bias".into(),
        get("encoder/conv1/bias")?,
    );
    for name in ["conv2.weight", "conv2.bias"] {
        put(
            format!("model.encoder.{name}"),
            get(&format!("encoder/{}", name.replace('.', "/")))?,
        );
    }
    for side in ["encoder", "decoder"] {
        put(
            format!("model.{side}.layer_norm.weight"),
            get(&format!("{side}/layer_norm/gamma"))?,
        );
        put(
            format!("model.{side}.layer_norm.bias"),
            get(&format!("{side}/layer_norm/beta"))?,
        );
        let count = if side == "encoder" {
            config.encoder_layers
        } else {
            config.decoder_layers
        };
        for i in 0..count {
            let from = format!("{side}/layer_{i}");
            let to = format!("model.{side}.layers.{i}");
            let norm = |put: &mut dyn FnMut(String, Tensor), ct2: &str, hf: &str| {
                put(
                    format!("{to}.{hf}.weight"),
                    get(&format!("{from}/{ct2}/gamma"))?,
                );
                put(
                    format!("{to}.{hf}.bias"),
                    get(&format!("{from}/{ct2}/beta"))?,
                );
                Ok::<_, Ct2Error>(())
            };
            let linear = |put: &mut dyn FnMut(String, Tensor), ct2: &str, hf: &str| {
                put(
                    format!("{to}.{hf}.weight"),
                    get(&format!("{from}/{ct2}/weight"))?,
                );
                put(
                    format!("{to}.{hf}.bias"),
                    get(&format!("{from}/{ct2}/bias"))?,
                );
                Ok::<_, Ct2Error>(())
            };
            // Self attention: Q, K, V fused in linear_0 (K has no bias in candle's model).
            let qkv = get(&format!("{from}/self_attention/linear_0/weight"))?;
            let qkv_bias = get(&format!("{from}/self_attention/linear_0/bias"))?;
            for (j, name) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
                put(
                    format!("{to}.self_attn.{name}.weight"),
                    qkv.narrow(0, j * d_model, d_model)?,
                );
                if *name != "k_proj" {
                    put(
                        format!("{to}.self_attn.{name}.bias"),
                        qkv_bias.narrow(0, j * d_model, d_model)?,
                    );
                }
            }
            linear(&mut put, "self_attention/linear_1", "self_attn.out_proj")?;
            norm(
                &mut put,
                "self_attention/layer_norm",
                "self_attn_layer_norm",
            )?;
            if side == "decoder" {
                linear(&mut put, "attention/linear_0", "encoder_attn.q_proj")?;
                let kv = get(&format!("{from}/attention/linear_1/weight"))?;
                let kv_bias = get(&format!("{from}/attention/linear_1/bias"))?;
                put(
                    format!("{to}.encoder_attn.k_proj.weight"),
                    kv.narrow(0, 0, d_model)?,
                );
                put(
                    format!("{to}.encoder_attn.v_proj.weight"),
                    kv.narrow(0, d_model, d_model)?,
                );
                put(
                    format!("{to}.encoder_attn.v_proj.bias"),
                    kv_bias.narrow(0, d_model, d_model)?,
                );
                linear(&mut put, "attention/linear_2", "encoder_attn.out_proj")?;
                norm(&mut put, "attention/layer_norm", "encoder_attn_layer_norm")?;
            }
            linear(&mut put, "ffn/linear_0", "fc1")?;
            linear(&mut put, "ffn/linear_1", "fc2")?;
            norm(&mut put, "ffn/layer_norm", "final_layer_norm")?;
        }
    }
    // Contiguous copies: narrowed views of the fused projections are not.
    let tensors = tensors
        .into_iter()
        .map(|(name, t)| Ok((name, t.contiguous()?)))
        .collect::<Result<HashMap<_, _>, Ct2Error>>()?;
    Ok(Ct2Whisper { tensors, config })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    #[test]
    fn refuses_what_is_not_a_whisper_model_without_panicking() {
        assert!(matches!(
            load(b"", vec![]),
            Err(Ct2Error::Truncated { at: 0 })
        ));
        let mut other = 6u32.to_le_bytes().to_vec();
        string(&mut other, "TransformerSpec");
        other.extend_from_slice(&[0; 8]);
        let error = load(&other, vec![]).unwrap_err();
        assert!(error.to_string().contains("TransformerSpec"), "{error}");

        // A variable announcing more bytes than the file has.
        let mut truncated = 6u32.to_le_bytes().to_vec();
        string(&mut truncated, "WhisperSpec");
        truncated.extend_from_slice(&3u32.to_le_bytes());
        truncated.extend_from_slice(&1u32.to_le_bytes());
        string(&mut truncated, "decoder/embeddings/weight");
        truncated.push(1);
        truncated.extend_from_slice(&4u32.to_le_bytes());
        truncated.push(0);
        truncated.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            load(&truncated, vec![]),
            Err(Ct2Error::Truncated { .. })
        ));
    }
}
