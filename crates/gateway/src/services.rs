//! The catalog as this gateway runs it: every service's price, and whether a backend can
//! run it here (and if not, why).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use x402_gateway_api::{Catalog, CatalogEntry, Pricing};
use x402_proto::Price;

use crate::backend::chat::{ChatBackend, Upstream};
use crate::backend::embed::{self, MiniLm};
use crate::backend::fetch_input::InputFetcher;
use crate::backend::loading::Loading;
use crate::backend::local_llm::{LoadState, LocalChatModel, LocalLlm};
use crate::backend::nsfw::{self, OpenNsfw};
use crate::backend::ocr::Tesseract;
use crate::backend::onnx;
use crate::backend::piper::{self, PiperVoice};
use crate::backend::speech::Espeak;
use crate::backend::whisper;
use crate::catalog::{BackendKind, SERVICES, ServiceDef};
use crate::config::{ConfigError, GatewayConfig};

/// The loaded local backends; each is the backend or why it could not load.
#[derive(Debug, Clone)]
pub struct Backends {
    /// MiniLM for embeddings and rerank.
    pub embeddings: Result<Arc<MiniLm>, String>,
    /// espeak-ng for speech.
    pub speech: Result<Espeak, String>,
    /// The default local chat LLM (SmolLM2), for LLM services without an upstream (loading in
    /// the background).
    pub chat: Result<LocalLlm, String>,
    /// The optional local code LLM (Qwen2.5-Coder), for the `code-*` services without an
    /// upstream and those configured to use it (loaded on first use).
    pub qwen_coder: Result<LocalLlm, String>,
    /// Whisper for speech to text: tiny.en (loading in the background), and base,
    /// multilingual, when installed, for other languages (loaded on first use).
    pub transcribe: Result<whisper::Transcribers, String>,
    /// Fetches inputs given by URL, as `[inputs]` allows.
    pub inputs: InputFetcher,
    /// tesseract (and pdftoppm) for OCR.
    pub ocr: Result<Tesseract, String>,
    /// open_nsfw for image safety (loading in the background).
    pub nsfw: Result<Loading<OpenNsfw>, String>,
    /// The Piper voice for natural speech (loading in the background), and the espeak-ng
    /// program that phonemises for it.
    pub piper: Result<(Loading<PiperVoice>, String), String>,
}

impl Backends {
    /// Loads what is installed: the MiniLM model from `models_dir`, espeak-ng from PATH; starts
    /// loading the local chat LLM from `models_dir` in the background.
    pub async fn load(config: &GatewayConfig) -> Self {
        let dir = config.models_dir.join("all-minilm-l6-v2");
        let embeddings = tokio::task::spawn_blocking(move || MiniLm::load(&dir))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map(Arc::new).map_err(|e| e.to_string()));
        if let Err(why) = &embeddings {
            tracing::warn!(%why, "embeddings and rerank are unavailable");
        }
        let speech = Espeak::detect(&config.tts_program)
            .await
            .map_err(|e| e.to_string());
        if let Err(why) = &speech {
            tracing::warn!(%why, "text to speech is unavailable");
        }
        let chat = LocalLlm::installed(&config.models_dir, LocalChatModel::Smollm2);
        if let Err(why) = &chat {
            tracing::warn!(%why, "LLM services without an upstream are unavailable");
        }
        let qwen_coder = LocalLlm::installed(&config.models_dir, LocalChatModel::QwenCoder);
        if let Err(why) = &qwen_coder {
            tracing::info!(%why, "code services without an upstream use the default local LLM");
        }
        let transcribe = whisper::Transcribers::start(&config.models_dir);
        if let Err(why) = &transcribe {
            tracing::warn!(%why, "speech to text is unavailable");
        }
        // Checked when the configuration was: a bad entry never gets here.
        let inputs = InputFetcher::new(&config.inputs).unwrap_or_else(|e| {
            tracing::error!(%e, "[inputs] is invalid; only data: URLs are accepted");
            InputFetcher::new(&Default::default()).expect("the default [inputs] is valid")
        });
        let ocr = Tesseract::detect().await.map_err(|e| e.to_string());
        if let Err(why) = &ocr {
            tracing::warn!(%why, "OCR is unavailable");
        }
        let (nsfw, piper) = Self::start_onnx_models(config, &speech);
        Self {
            embeddings,
            speech,
            chat,
            qwen_coder,
            transcribe,
            inputs,
            ocr,
            nsfw,
            piper,
        }
    }

    /// Starts loading the ONNX models in the background, each when its file is there (and,
    /// for the Piper voice, espeak-ng to phonemise for it).
    #[allow(clippy::type_complexity)]
    fn start_onnx_models(
        config: &GatewayConfig,
        speech: &Result<Espeak, String>,
    ) -> (
        Result<Loading<OpenNsfw>, String>,
        Result<(Loading<PiperVoice>, String), String>,
    ) {
        let library = onnx::library_path(config.onnxruntime_library.as_deref(), &config.models_dir);
        let installed = |path: &std::path::Path, what: &str| {
            if !library.is_file() {
                Err(format!(
                    "the ONNX Runtime library for {what} is not installed ({} is missing): run scripts/install-models.sh",
                    library.display()
                ))
            } else if !path.is_file() {
                Err(format!(
                    "{what} is not installed ({} is missing): run scripts/install-models.sh",
                    path.display()
                ))
            } else {
                Ok(())
            }
        };
        let model = config.models_dir.join(nsfw::MODEL_FILE);
        let nsfw = installed(&model, "open_nsfw").map(|()| {
            let library = library.clone();
            Loading::on_first_use(nsfw::MODEL_NAME, move || OpenNsfw::load(&library, &model))
        });
        if let Err(why) = &nsfw {
            tracing::warn!(%why, "nsfw-detect is unavailable");
        }
        let voice = config.models_dir.join(piper::VOICE_FILE);
        let piper = installed(&voice, "the Piper voice")
            .and_then(|()| {
                speech
                    .as_ref()
                    .map(|_| ())
                    .map_err(|why| format!("the Piper voice needs espeak-ng to phonemise: {why}"))
            })
            .map(|()| {
                let library = library.clone();
                Loading::on_first_use(piper::VOICE_NAME, move || {
                    PiperVoice::load(&library, &voice)
                })
            })
            .map(|voice| (voice, config.tts_program.clone()));
        if let Err(why) = &piper {
            tracing::warn!(%why, "tts-l4 is unavailable");
        }
        (nsfw, piper)
    }

    /// A model loading in the background that runs services of `kind`, if any.
    pub fn loading_state(&self, kind: BackendKind) -> Option<LoadState> {
        match kind {
            BackendKind::ImageSafety => self.nsfw.as_ref().ok().map(Loading::state),
            BackendKind::NeuralSpeech => self.piper.as_ref().ok().map(|(v, _)| v.state()),
            BackendKind::Transcribe => self.transcribe.as_ref().ok().map(|t| t.english().state()),
            _ => None,
        }
    }

    /// The local model that answers LLM service `key` (configured `choice`, else
    /// [`LocalChatModel::default_for`]), or why none can.
    pub fn local_chat(
        &self,
        key: &str,
        choice: Option<LocalChatModel>,
    ) -> Result<LocalLlm, String> {
        let model =
            choice.unwrap_or_else(|| LocalChatModel::default_for(key, self.qwen_coder.is_ok()));
        match model {
            LocalChatModel::Smollm2 => self.chat.clone(),
            LocalChatModel::QwenCoder => self.qwen_coder.clone(),
        }
    }
}

/// One service as this gateway offers it.
#[derive(Debug, Clone)]
pub struct Offered {
    /// The catalog entry.
    pub def: &'static ServiceDef,
    /// Its price per unit.
    pub price: Price,
    /// What answers it, for LLM services: its upstream, else the local model.
    pub chat: Option<ChatBackend>,
    /// The Whisper models that run it, for speech to text (tiny.en; base for other languages
    /// when installed).
    pub transcribers: Vec<String>,
    /// `Err(why)` when it cannot run here.
    pub available: Result<(), String>,
}

impl Offered {
    /// The models (or engines) that run it, for the catalog.
    pub fn models(&self) -> Vec<String> {
        let one = match self.def.backend {
            BackendKind::Embeddings => Some(embed::MODEL_NAME.to_owned()),
            BackendKind::Rerank => Some(format!("{} (bi-encoder)", embed::MODEL_NAME)),
            BackendKind::Documents => Some("pdf-extract + lopdf, docx-rs, html2text".to_owned()),
            BackendKind::Speech => Some("espeak-ng".to_owned()),
            BackendKind::Transcribe => return self.transcribers.clone(),
            BackendKind::NeuralSpeech => Some(format!("Piper {}", piper::VOICE_NAME)),
            BackendKind::Ocr => Some("tesseract (eng)".to_owned()),
            BackendKind::ImageSafety => Some(nsfw::MODEL_NAME.to_owned()),
            BackendKind::Chat => self.chat.as_ref().map(|c| c.model().to_owned()),
            BackendKind::None => None,
        };
        one.into_iter().collect()
    }
}

/// Every service, by key.
#[derive(Debug, Clone)]
pub struct Registry {
    services: BTreeMap<&'static str, Offered>,
}

impl Registry {
    /// The catalog with `config`'s prices and upstreams, and availability from `backends`.
    pub fn new(config: &GatewayConfig, backends: &Backends) -> Result<Self, ConfigError> {
        let mut services = BTreeMap::new();
        for def in SERVICES {
            let settings = config.services.get(def.key).cloned().unwrap_or_default();
            let price: Price = match settings.price {
                Some(price) => price,
                None => def.price.parse().map_err(|e: x402_proto::AmountError| {
                    ConfigError::Invalid {
                        key: format!("services.{}.price", def.key),
                        message: format!("the catalog's own price: {e}"),
                    }
                })?,
            };
            let mut missing_key = None;
            let upstream = match &settings.upstream {
                Some(u) => {
                    let key = match &u.api_key_env {
                        Some(var) => match std::env::var(var) {
                            Ok(key) => Some(x402_proto::Secret::from(key)),
                            Err(_) => {
                                missing_key = Some(format!(
                                    "the upstream's API key variable {var} is not set"
                                ));
                                None
                            }
                        },
                        None => None,
                    };
                    let timeout = Duration::from_millis(config.limits.upstream_timeout_ms);
                    Some(
                        Upstream::new(&u.base_url, key, &u.model, timeout).map_err(|e| {
                            ConfigError::Invalid {
                                key: format!("services.{}.upstream", def.key),
                                message: e.to_string(),
                            }
                        })?,
                    )
                }
                None => None,
            };
            let available = if !settings.enabled {
                Err("disabled in this gateway's configuration".to_owned())
            } else if let Some(why) = missing_key {
                Err(why)
            } else {
                match def.backend {
                    BackendKind::Embeddings | BackendKind::Rerank => backends
                        .embeddings
                        .as_ref()
                        .map(|_| ())
                        .map_err(Clone::clone),
                    BackendKind::Speech => {
                        backends.speech.as_ref().map(|_| ()).map_err(Clone::clone)
                    }
                    BackendKind::Transcribe => backends
                        .transcribe
                        .as_ref()
                        .map(|_| ())
                        .map_err(Clone::clone),
                    BackendKind::Documents => Ok(()),
                    BackendKind::Ocr => backends.ocr.as_ref().map(|_| ()).map_err(Clone::clone),
                    BackendKind::ImageSafety => {
                        backends.nsfw.as_ref().map(|_| ()).map_err(Clone::clone)
                    }
                    BackendKind::NeuralSpeech => {
                        backends.piper.as_ref().map(|_| ()).map_err(Clone::clone)
                    }
                    BackendKind::Chat if upstream.is_some() => Ok(()),
                    BackendKind::Chat => backends
                        .local_chat(def.key, settings.local_model)
                        .map(|_| ())
                        .map_err(|why| {
                            format!(
                                "no upstream configured (set [services.{}.upstream] base_url and model, any OpenAI-compatible API), and {why}",
                                def.key
                            )
                        }),
                    BackendKind::None => Err(format!(
                        "no backend: this gateway has no local {} model and no upstream adapter for it",
                        def.category
                    )),
                }
            };
            let chat = match (def.backend, upstream) {
                (BackendKind::Chat, Some(upstream)) => Some(ChatBackend::Upstream(upstream)),
                (BackendKind::Chat, None) => backends
                    .local_chat(def.key, settings.local_model)
                    .ok()
                    .map(ChatBackend::Local),
                _ => None,
            };
            let transcribers = match (&backends.transcribe, def.backend) {
                (Ok(whisper), BackendKind::Transcribe) => whisper.names(),
                (Err(_), BackendKind::Transcribe) => vec![whisper::TINY_EN_NAME.to_owned()],
                _ => Vec::new(),
            };
            services.insert(
                def.key,
                Offered {
                    def,
                    price,
                    chat,
                    transcribers,
                    available,
                },
            );
        }
        Ok(Self { services })
    }

    /// The service `key` names (by key or alias).
    pub fn get(&self, key: &str) -> Option<&Offered> {
        crate::catalog::lookup(key).and_then(|def| self.services.get(def.key))
    }

    /// Every service, in key order.
    pub fn all(&self) -> impl Iterator<Item = &Offered> {
        self.services.values()
    }

    /// Keys of the services that can run here.
    pub fn available_keys(&self) -> Vec<&'static str> {
        self.all()
            .filter(|o| o.available.is_ok())
            .map(|o| o.def.key)
            .collect()
    }

    /// `GET /catalog` (without the job policy, which the jobs own).
    pub fn catalog(&self, decimals: u8, backends: &Backends) -> Catalog {
        Catalog {
            active_endpoints: self.available_keys().len(),
            currency: "USD (paid in USDC with x402)".into(),
            services: SERVICES
                .iter()
                .filter_map(|def| self.services.get(def.key))
                .map(|o| catalog_entry(o, decimals, backends))
                .collect(),
            jobs: None,
            payment_methods: Vec::new(),
        }
    }
}

fn catalog_entry(offered: &Offered, decimals: u8, backends: &Backends) -> CatalogEntry {
    let def = offered.def;
    // Local models load in the background: said while they do, and if they fail.
    let (mut available, mut loading) = (offered.available.clone(), false);
    let state = match &offered.chat {
        Some(ChatBackend::Local(local)) => Some(local.state()),
        _ => backends.loading_state(def.backend),
    };
    if let (Ok(()), Some(state)) = (&available, state) {
        match state {
            LoadState::Loading => loading = true,
            LoadState::OnFirstUse => {}
            LoadState::Failed(why) => {
                let what = match def.backend {
                    BackendKind::Chat => "the local LLM",
                    BackendKind::Transcribe => "Whisper",
                    _ => "the local model",
                };
                available = Err(format!("{what} cannot be loaded: {why}"));
            }
            LoadState::Ready { .. } => {}
        }
    }
    CatalogEntry {
        key: def.key.into(),
        aliases: def.aliases.iter().map(|a| (*a).to_owned()).collect(),
        name: def.name.into(),
        category: def.category.into(),
        pricing: Pricing {
            unit: def.unit,
            per: def.unit.label().into(),
            price_usd: offered.price.as_str().into(),
        },
        default_cost_usd: crate::pricing::cost_usd(offered, def.unit.per(), decimals),
        models: offered.models(),
        backend: match (def.backend, &offered.chat) {
            (BackendKind::Chat, Some(chat)) => chat.kind(),
            (BackendKind::Chat, None) => "upstream",
            (BackendKind::None, _) => "none",
            _ => "local",
        }
        .into(),
        available: available.is_ok(),
        unavailable_reason: available.err(),
        loading,
    }
}
