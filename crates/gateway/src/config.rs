//! `gateway.toml`: where to listen, how to be paid, which facilitator settles, and per-service
//! prices and upstreams. Unknown keys are errors that name the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use x402_proto::{Network, Price, Secret};

use crate::catalog::{self, BackendKind};

/// Why a configuration was refused. Every message names the key to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown or mistyped keys.
    #[error("{0}")]
    Parse(String),
    /// A value is out of range or inconsistent.
    #[error("{key}: {message}")]
    Invalid {
        /// The key, dotted (`services.llm-4090.price`).
        key: String,
        /// What is wrong and what to write instead.
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The whole gateway configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where to listen (default `127.0.0.1:8080`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The public base URL written into payment challenges; by default the request's Host.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Where `scripts/install-models.sh` put the models (default `models`).
    #[serde(default = "default_models_dir")]
    pub models_dir: PathBuf,
    /// The text-to-speech program (default `espeak-ng`).
    #[serde(default = "default_tts_program")]
    pub tts_program: String,
    /// The SQLite file recording jobs (input, payment, state, output), so they survive a
    /// restart (default `gateway-jobs.db`, beside the facilitator's `facilitator.db`).
    #[serde(default = "default_jobs_db")]
    pub jobs_db: PathBuf,
    /// The facilitator that verifies and settles payments.
    #[serde(default)]
    pub facilitator: Option<FacilitatorRef>,
    /// How clients pay.
    pub payment: PaymentConfig,
    /// Input limits.
    #[serde(default)]
    pub limits: GatewayLimits,
    /// Per-service prices, upstreams and switches, keyed by catalog key.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceConfig>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_models_dir() -> PathBuf {
    PathBuf::from("models")
}

fn default_jobs_db() -> PathBuf {
    PathBuf::from("gateway-jobs.db")
}

fn default_tts_program() -> String {
    "espeak-ng".to_owned()
}

/// A remote facilitator.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FacilitatorRef {
    /// Its base URL (`http://127.0.0.1:8402`).
    pub url: String,
    /// Sent as `Authorization: Bearer …` when the facilitator requires it.
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    /// Per-call timeout, longer than a block time (default 60 000).
    #[serde(default = "default_facilitator_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_facilitator_timeout_ms() -> u64 {
    60_000
}

/// How clients pay.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentConfig {
    /// The address paid.
    pub pay_to: String,
    /// How long a signed payment stays valid (default 300).
    #[serde(default = "default_max_timeout_seconds")]
    pub max_timeout_seconds: u64,
    /// The accepted assets, in order of preference.
    pub accepts: Vec<AcceptConfig>,
    /// How long a paid response is kept so that a client that lost it gets it again for the
    /// same payment (default 600 s).
    #[serde(default = "default_paid_response_ttl_seconds")]
    pub paid_response_ttl_seconds: u64,
    /// The most bytes of paid responses kept in all (default 64 MiB); larger or older ones
    /// are run again on a retry, still charged once.
    #[serde(default = "default_paid_response_cache_bytes")]
    pub paid_response_cache_bytes: usize,
    /// Whether every payment must carry a `payment-identifier` id (default false).
    #[serde(default)]
    pub require_payment_identifier: bool,
    /// How many metered streams (answers streamed under `upto`, sent before their payment
    /// settles) one payer may have unsettled at once (default 1, at least 1); more are
    /// answered 429 until one is over.
    #[serde(default = "default_streams_per_payer")]
    pub streams_per_payer: usize,
}

impl PaymentConfig {
    /// Payments to `pay_to` in `accepts`, every other setting at its default.
    pub fn new(pay_to: impl Into<String>, accepts: Vec<AcceptConfig>) -> Self {
        Self {
            pay_to: pay_to.into(),
            max_timeout_seconds: default_max_timeout_seconds(),
            accepts,
            paid_response_ttl_seconds: default_paid_response_ttl_seconds(),
            paid_response_cache_bytes: default_paid_response_cache_bytes(),
            require_payment_identifier: false,
            streams_per_payer: default_streams_per_payer(),
        }
    }
}

fn default_max_timeout_seconds() -> u64 {
    300
}
fn default_paid_response_ttl_seconds() -> u64 {
    600
}
fn default_paid_response_cache_bytes() -> usize {
    64 * 1024 * 1024
}
fn default_streams_per_payer() -> usize {
    1
}

/// One accepted asset.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptConfig {
    /// CAIP-2 network (`eip155:8453`).
    pub network: Network,
    /// Token address.
    pub asset: String,
    /// Token decimals (default 6, as USDC).
    #[serde(default = "default_decimals")]
    pub decimals: u8,
    /// The token's EIP-712 domain name (default `USD Coin`).
    #[serde(default = "default_token_name")]
    pub name: String,
    /// The token's EIP-712 domain version (default `2`).
    #[serde(default = "default_token_version")]
    pub version: String,
    /// Also offer `upto` (Permit2) in this token: metered services (LLM chat) then charge the
    /// tokens used instead of the estimate plus `max_tokens`. The facilitator must serve it
    /// (ours does). Off by default; `exact` is always offered, first.
    #[serde(default)]
    pub upto: bool,
}

fn default_decimals() -> u8 {
    6
}
fn default_token_name() -> String {
    "USD Coin".to_owned()
}
fn default_token_version() -> String {
    "2".to_owned()
}

/// Input limits, checked before any payment.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayLimits {
    /// Largest request body (default 10 MiB).
    pub max_body_bytes: usize,
    /// Largest text input in characters (default 200 000).
    pub max_text_chars: usize,
    /// Most texts in one embeddings request or documents in one rerank (default 256).
    pub max_batch: usize,
    /// Inputs at least this large run as jobs (`{job_id}` then `/status`), settled before
    /// they start (default 1 MiB of document, or 20 000 characters of speech).
    pub job_over_bytes: usize,
    /// How long finished jobs are kept for `/status` (default 3600 s).
    pub job_ttl_seconds: u64,
    /// How many times a job is attempted, restarts of the gateway included, before it is
    /// reported failed (default 3).
    pub job_attempts: u32,
    /// Longest wait for an LLM upstream (default 120 000 ms).
    pub upstream_timeout_ms: u64,
}

impl Default for GatewayLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 * 1024 * 1024,
            max_text_chars: 200_000,
            max_batch: 256,
            job_over_bytes: 1024 * 1024,
            job_ttl_seconds: 3600,
            job_attempts: 3,
            upstream_timeout_ms: 120_000,
        }
    }
}

/// Settings of one service.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Price per unit in USD, replacing the catalog default (`"0.0002"`).
    #[serde(default)]
    pub price: Option<Price>,
    /// `false` lists the service as unavailable.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// For LLM services: the OpenAI-compatible upstream.
    #[serde(default)]
    pub upstream: Option<UpstreamConfig>,
}

fn yes() -> bool {
    true
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            price: None,
            enabled: true,
            upstream: None,
        }
    }
}

/// An OpenAI-compatible upstream.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URL including `/v1` (`https://api.groq.com/openai/v1`).
    pub base_url: String,
    /// The model to ask for (`llama-3.3-70b-versatile`).
    pub model: String,
    /// The environment variable holding the API key (never the key itself in the file).
    #[serde(default)]
    pub api_key_env: Option<String>,
}

impl GatewayConfig {
    /// A gateway paid as `payment` says, every other setting at its default (as a config
    /// file with only a `[payment]` table); [`GatewayConfig::check`] it once built.
    pub fn new(payment: PaymentConfig) -> Self {
        Self {
            listen: default_listen(),
            public_url: None,
            models_dir: default_models_dir(),
            tts_program: default_tts_program(),
            jobs_db: default_jobs_db(),
            facilitator: None,
            payment,
            limits: GatewayLimits::default(),
            services: BTreeMap::new(),
        }
    }

    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses and checks TOML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    /// Checks what serde cannot: known services, parsable prices, sane addresses.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !is_address(&self.payment.pay_to) {
            return Err(invalid(
                "payment.pay_to",
                format!(
                    "{:?} is not a 0x-prefixed 20-byte address",
                    self.payment.pay_to
                ),
            ));
        }
        if self.payment.accepts.is_empty() {
            return Err(invalid(
                "payment.accepts",
                "list at least one accepted asset ([[payment.accepts]] with network and asset)",
            ));
        }
        if self.payment.streams_per_payer == 0 {
            return Err(invalid(
                "payment.streams_per_payer",
                "at least 1 (a payer's metered streams unsettled at once)",
            ));
        }
        for (i, accept) in self.payment.accepts.iter().enumerate() {
            let key = |field: &str| format!("payment.accepts[{i}].{field}");
            if accept.network.evm_chain_id().is_none() {
                return Err(invalid(
                    key("network"),
                    format!(
                        "{:?} is not an EVM network; write CAIP-2 such as \"eip155:8453\"",
                        accept.network
                    ),
                ));
            }
            if !is_address(&accept.asset) {
                return Err(invalid(key("asset"), "not a 0x-prefixed token address"));
            }
            if accept.decimals > 36 {
                return Err(invalid(key("decimals"), "at most 36"));
            }
        }
        for (name, service) in &self.services {
            let Some(def) = catalog::lookup(name) else {
                return Err(invalid(
                    format!("services.{name}"),
                    "no such service; see GET /catalog for the keys",
                ));
            };
            if def.key != name {
                return Err(invalid(
                    format!("services.{name}"),
                    format!("{name} is an alias; configure it as services.{}", def.key),
                ));
            }
            if service.upstream.is_some() && def.backend != BackendKind::Chat {
                return Err(invalid(
                    format!("services.{name}.upstream"),
                    "only LLM services (llm-*, code-*) take an OpenAI-compatible upstream",
                ));
            }
        }
        if self.limits.max_body_bytes == 0 || self.limits.max_batch == 0 {
            return Err(invalid(
                "limits",
                "max_body_bytes and max_batch must be positive",
            ));
        }
        if self.limits.job_attempts == 0 {
            return Err(invalid(
                "limits.job_attempts",
                "at least 1 (the first attempt counts)",
            ));
        }
        Ok(())
    }
}

fn is_address(text: &str) -> bool {
    text.strip_prefix("0x")
        .is_some_and(|hex| hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[payment]
pay_to = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
[[payment.accepts]]
network = "eip155:8453"
asset = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let config = GatewayConfig::parse(MINIMAL).unwrap();
        assert_eq!(config.listen.port(), 8080);
        assert_eq!(config.payment.accepts[0].decimals, 6);
        assert_eq!(config.payment.accepts[0].name, "USD Coin");
        assert_eq!(config.payment.max_timeout_seconds, 300);
        assert_eq!(config.payment.streams_per_payer, 1);
        assert!(config.facilitator.is_none());
        assert_eq!(config.jobs_db, Path::new("gateway-jobs.db"));
        assert_eq!(config.limits.job_attempts, 3);
    }

    #[test]
    fn typos_and_bad_values_name_the_key() {
        let bad_pay_to = MINIMAL.replace("0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "alice");
        for (text, named) in [
            (
                format!("{MINIMAL}\n[limits]\nmax_body_byte = 5\n"),
                &["max_body_byte"][..],
            ),
            (
                format!("{MINIMAL}\n[services.teleport-l4]\nprice = \"1\"\n"),
                &["services.teleport-l4"],
            ),
            (
                format!("{MINIMAL}\n[services.embedding-l4]\nprice = \"1\"\n"),
                &["services.embed-l4"],
            ),
            (
                format!("{MINIMAL}\n[services.embed-l4]\nprice = \"-1\"\n"),
                &["price = \"-1\"", "has a sign"],
            ),
            (
                format!(
                    "{MINIMAL}\n[services.pdf-parse.upstream]\nbase_url = \"http://x\"\nmodel = \"m\"\n"
                ),
                &["services.pdf-parse.upstream"],
            ),
            (bad_pay_to, &["payment.pay_to"]),
            (
                MINIMAL.replace("[payment]\n", "[payment]\nstreams_per_payer = 0\n"),
                &["payment.streams_per_payer", "at least 1"],
            ),
            (
                MINIMAL.replace("[payment]\n", "[payment]\nstream_per_payer = 2\n"),
                &["stream_per_payer"],
            ),
        ] {
            let refused = GatewayConfig::parse(&text).unwrap_err().to_string();
            for key in named {
                assert!(refused.contains(key), "{refused}\nshould name {key}");
            }
        }
    }

    #[test]
    fn the_example_config_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/gateway.toml");
        let config = GatewayConfig::load(Path::new(path)).unwrap();
        assert_eq!(config.payment.streams_per_payer, 1);
    }

    #[test]
    fn streams_per_payer_is_read() {
        let text = MINIMAL.replace("[payment]\n", "[payment]\nstreams_per_payer = 3\n");
        let config = GatewayConfig::parse(&text).unwrap();
        assert_eq!(config.payment.streams_per_payer, 3);
    }
}
