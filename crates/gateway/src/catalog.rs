//! The services the gateway knows, by GPU-Bridge key (with the aliases its keys were renamed
//! from), their units and default prices, and which backend runs them.

use serde::Serialize;

pub use x402_gateway_api::Unit;

/// Which backend can run a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// Local sentence embeddings (MiniLM, candle).
    Embeddings,
    /// Local bi-encoder rerank (MiniLM cosine).
    Rerank,
    /// Local document text extraction (PDF, DOCX, HTML).
    Documents,
    /// Local text-to-speech (espeak-ng).
    Speech,
    /// Local speech-to-text (Whisper, candle).
    Transcribe,
    /// Local natural text-to-speech (a Piper voice, ONNX).
    NeuralSpeech,
    /// Local OCR (tesseract).
    Ocr,
    /// Local image safety (open_nsfw, ONNX).
    ImageSafety,
    /// A chat LLM: the service's OpenAI-compatible upstream when configured, else the local
    /// model.
    Chat,
    /// No backend in this gateway: listed, never faked.
    None,
}

/// One service in the catalog.
#[derive(Debug)]
pub struct ServiceDef {
    /// The GPU-Bridge key.
    pub key: &'static str,
    /// Older or alternative keys that mean the same service.
    pub aliases: &'static [&'static str],
    /// What it is.
    pub name: &'static str,
    /// Its category (`llm`, `image`, `search`, …).
    pub category: &'static str,
    /// What it is billed by.
    pub unit: Unit,
    /// The default price per unit, in USD.
    pub price: &'static str,
    /// Which backend runs it.
    pub backend: BackendKind,
}

const fn def(
    key: &'static str,
    aliases: &'static [&'static str],
    name: &'static str,
    category: &'static str,
    unit: Unit,
    price: &'static str,
    backend: BackendKind,
) -> ServiceDef {
    ServiceDef {
        key,
        aliases,
        name,
        category,
        unit,
        price,
        backend,
    }
}

use BackendKind as B;
use Unit as U;

/// Every service, in catalog order.
pub static SERVICES: &[ServiceDef] = &[
    // LLMs: an OpenAI-compatible upstream, else the local model.
    def(
        "llm-4090",
        &[],
        "Llama 3.3 70B (fast)",
        "llm",
        U::Tokens1k,
        "0.0008",
        B::Chat,
    ),
    def(
        "llm-a100",
        &[],
        "Large language model (A100 class)",
        "llm",
        U::Tokens1k,
        "0.003",
        B::Chat,
    ),
    def(
        "llm-l4",
        &[],
        "Large language model (L4 class)",
        "llm",
        U::Tokens1k,
        "0.003",
        B::Chat,
    ),
    def(
        "code-4090",
        &[],
        "Code model",
        "llm",
        U::Tokens1k,
        "0.003",
        B::Chat,
    ),
    def(
        "llm-stream",
        &[],
        "Streaming chat completions",
        "llm",
        U::Tokens1k,
        "0.003",
        B::Chat,
    ),
    // Search: local MiniLM.
    def(
        "embed-l4",
        &["embedding-l4"],
        "Sentence embeddings (all-MiniLM-L6-v2, 384-d)",
        "search",
        U::Tokens1k,
        "0.0001",
        B::Embeddings,
    ),
    def(
        "embed-code",
        &[],
        "Code embeddings (all-MiniLM-L6-v2, 384-d)",
        "search",
        U::Tokens1k,
        "0.0001",
        B::Embeddings,
    ),
    def(
        "rerank",
        &[],
        "Rerank (all-MiniLM-L6-v2 bi-encoder cosine, not a cross-encoder)",
        "search",
        U::Query,
        "0.001",
        B::Rerank,
    ),
    // Utility: local document parsing.
    def(
        "pdf-parse",
        &[],
        "Document to text (PDF, DOCX, HTML)",
        "utility",
        U::Document,
        "0.002",
        B::Documents,
    ),
    // Speech.
    def(
        "tts-fast",
        &[],
        "Text to speech (espeak-ng, WAV)",
        "tts",
        U::Chars1k,
        "0.002",
        B::Speech,
    ),
    def(
        "tts-l4",
        &[],
        "Text to speech, neural (Piper en_US-joe-medium, WAV)",
        "tts",
        U::Chars1k,
        "0.005",
        B::NeuralSpeech,
    ),
    def(
        "bark-4090",
        &["bark"],
        "Bark expressive speech",
        "tts",
        U::Chars1k,
        "0.01",
        B::None,
    ),
    def(
        "whisper-l4",
        &[],
        "Speech to text (Whisper)",
        "stt",
        U::Minute,
        "0.005",
        B::Transcribe,
    ),
    def(
        "whisper-a100",
        &[],
        "Speech to text (Whisper, A100 class)",
        "stt",
        U::Minute,
        "0.008",
        B::Transcribe,
    ),
    def(
        "diarize-l4",
        &["whisperx"],
        "Speech to text with speaker diarization",
        "stt",
        U::Minute,
        "0.01",
        B::None,
    ),
    // Images and vision.
    def(
        "flux-schnell",
        &[],
        "FLUX.1 schnell image generation",
        "image",
        U::Image,
        "0.004",
        B::None,
    ),
    def(
        "flux-dev",
        &[],
        "FLUX.1 dev image generation",
        "image",
        U::Image,
        "0.01",
        B::None,
    ),
    def(
        "sdxl-4090",
        &["image-4090"],
        "Stable Diffusion XL",
        "image",
        U::Image,
        "0.006",
        B::None,
    ),
    def(
        "sd35-l4",
        &[],
        "Stable Diffusion 3.5",
        "image",
        U::Image,
        "0.008",
        B::None,
    ),
    def(
        "img2img-4090",
        &["image-variation"],
        "Image to image",
        "image",
        U::Image,
        "0.006",
        B::None,
    ),
    def(
        "llava-4090",
        &[],
        "Visual question answering (LLaVA)",
        "vision",
        U::Call,
        "0.005",
        B::None,
    ),
    def(
        "ocr-l4",
        &["ocr"],
        "Optical character recognition (tesseract; PNG, JPEG, PDF pages)",
        "vision",
        U::Page,
        "0.002",
        B::Ocr,
    ),
    def(
        "rembg-l4",
        &[],
        "Background removal",
        "vision",
        U::Image,
        "0.003",
        B::None,
    ),
    def(
        "caption-4090",
        &["caption"],
        "Image captioning",
        "vision",
        U::Image,
        "0.003",
        B::None,
    ),
    def(
        "nsfw-detect",
        &[],
        "NSFW detection (Yahoo open_nsfw)",
        "vision",
        U::Image,
        "0.001",
        B::ImageSafety,
    ),
    // Audio and video.
    def(
        "musicgen-l4",
        &[],
        "Music generation",
        "audio",
        U::Second,
        "0.003",
        B::None,
    ),
    def(
        "audiogen-l4",
        &[],
        "Sound effect generation",
        "audio",
        U::Second,
        "0.003",
        B::None,
    ),
    def(
        "animatediff",
        &["animate", "video"],
        "Text to video (AnimateDiff)",
        "video",
        U::Call,
        "0.3",
        B::None,
    ),
    def(
        "video-enhance",
        &[],
        "Video enhancement",
        "video",
        U::Second,
        "0.02",
        B::None,
    ),
];

/// The service `key` names, by key or alias (case-insensitive).
pub fn lookup(key: &str) -> Option<&'static ServiceDef> {
    let key = key.trim();
    SERVICES.iter().find(|s| {
        s.key.eq_ignore_ascii_case(key) || s.aliases.iter().any(|a| a.eq_ignore_ascii_case(key))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_aliases_are_unique_and_resolve() {
        let mut seen = std::collections::HashSet::new();
        for service in SERVICES {
            for name in std::iter::once(&service.key).chain(service.aliases) {
                assert!(seen.insert(*name), "{name} listed twice");
                assert_eq!(lookup(name).unwrap().key, service.key);
            }
            assert!(
                service.price.parse::<x402_proto::Price>().is_ok(),
                "{}",
                service.key
            );
        }
        assert_eq!(lookup("EMBEDDING-L4").unwrap().key, "embed-l4");
        assert!(lookup("teleport-l4").is_none());
        // The README's 30 GPU-Bridge keys minus the ones only its MCP list has are here.
        assert!(SERVICES.len() >= 29);
    }
}
