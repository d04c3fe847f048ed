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
    /// The ONNX Runtime shared library the ONNX models (open_nsfw, the Piper voice) run on;
    /// by default `$ORT_DYLIB_PATH`, else `onnxruntime/libonnxruntime.so.1.31.1` under
    /// `models_dir` (where `scripts/install-models.sh` puts it).
    #[serde(default)]
    pub onnxruntime_library: Option<PathBuf>,
    /// The SQLite file recording jobs (input, payment, state, output), so they survive a
    /// restart (default `gateway-jobs.db`, beside the facilitator's `facilitator.db`).
    #[serde(default = "default_jobs_db")]
    pub jobs_db: PathBuf,
    /// The SQLite file recording every payment's outcome (settled, charged, pending, failed),
    /// which the operator dashboard reads; by default `gateway-payments.db` beside `jobs_db`.
    /// With `database` set, payments are kept there instead.
    #[serde(default)]
    pub payments_db: Option<PathBuf>,
    /// The Postgres database several gateway replicas share
    /// (`postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`). When set, jobs, the
    /// `batch-settlement` channels and the one-payment-one-response guard with its paid
    /// responses are kept there instead of `jobs_db`, `[batch_settlement] channels_db` and
    /// this process's memory; the schema is created and migrated at start.
    #[serde(default)]
    pub database: Option<Secret>,
    /// The facilitator that verifies and settles payments.
    #[serde(default)]
    pub facilitator: Option<FacilitatorRef>,
    /// How clients pay.
    pub payment: PaymentConfig,
    /// Input limits.
    #[serde(default)]
    pub limits: GatewayLimits,
    /// Inputs given by URL (`audio_url`, `image_url`): which hosts `http` URLs may name, and
    /// size and time limits. By default only `data:` URLs are accepted.
    #[serde(default)]
    pub inputs: crate::backend::fetch_input::InputsConfig,
    /// Per-service prices, upstreams and switches, keyed by catalog key.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceConfig>,
    /// `batch-settlement` channels: where they are kept and when their vouchers are claimed.
    /// Without this table no channel store is opened and no claimer runs.
    #[serde(default)]
    pub batch_settlement: Option<BatchSettlementConfig>,
    /// The token operator routes (`POST /operator/claim`) require as
    /// `Authorization: Bearer <token>`. Without it (or `operator_token_env`) they are not
    /// served.
    #[serde(default)]
    pub operator_token: Option<Secret>,
    /// The environment variable holding the operator token (instead of `operator_token`).
    #[serde(default)]
    pub operator_token_env: Option<String>,
    /// Where the operator dashboard (`/dashboard`) and the operator routes (`/operator/*`)
    /// are served: an address of their own (say a private interface), instead of `listen`.
    /// Unset: on `listen`, with the other routes. Either way only with an operator token.
    #[serde(default)]
    pub dashboard_listen: Option<SocketAddr>,
}

/// `[batch_settlement]`: the channels the gateway is paid through and its claiming policy.
/// Amounts are atomic units of the asset (USDC: 1 000 000 is one dollar).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchSettlementConfig {
    /// The SQLite file keeping the channels and the vouchers held (default
    /// `gateway-channels.db`): lose it and the unclaimed vouchers are lost. One gateway
    /// process per file (a second is refused at start).
    pub channels_db: PathBuf,
    /// Claims whatever is unclaimed at least this often (default 600).
    pub claim_interval_seconds: u64,
    /// How often the bounds below are checked (default 5).
    pub check_interval_seconds: u64,
    /// How often channels with something unclaimed are read on chain, through the
    /// facilitator, for withdrawals their payers started (default 60, at most 300: a third of
    /// the shortest withdraw delay).
    pub chain_check_interval_seconds: u64,
    /// A channel with this much unclaimed is claimed at once (default 1 000 000); no request
    /// is served that could take a channel past twice this until its claim lands (503, retry).
    pub max_unclaimed_per_channel: u64,
    /// All channels together with this much unclaimed are claimed at once (default
    /// 10 000 000).
    pub max_unclaimed_total: u64,
    /// Claims a channel at once when its payer starts a withdrawal (default true).
    pub claim_on_withdrawal: bool,
    /// Most vouchers in one claim transaction (default 100, 1 to 100).
    pub max_claims_per_batch: usize,
    /// The smallest deposit offers ask for (`minDeposit`, a hint to clients; default 100 000,
    /// $0.10 of USDC), or the price when that is more: each deposit is a transaction, so a
    /// deposit should cover many calls.
    pub min_deposit: u64,
}

impl Default for BatchSettlementConfig {
    fn default() -> Self {
        let policy = x402_evm::batch::ClaimPolicy::default();
        Self {
            channels_db: PathBuf::from("gateway-channels.db"),
            claim_interval_seconds: policy.interval.as_secs(),
            check_interval_seconds: policy.check_every.as_secs(),
            chain_check_interval_seconds: policy.chain_check_every.as_secs(),
            max_unclaimed_per_channel: u64::try_from(policy.max_unclaimed_per_channel)
                .unwrap_or(u64::MAX),
            max_unclaimed_total: u64::try_from(policy.max_unclaimed_total).unwrap_or(u64::MAX),
            claim_on_withdrawal: policy.claim_on_withdrawal,
            max_claims_per_batch: policy.max_claims_per_batch,
            min_deposit: 100_000,
        }
    }
}

impl BatchSettlementConfig {
    /// The claimer's policy.
    pub fn policy(&self) -> x402_evm::batch::ClaimPolicy {
        use std::time::Duration;
        x402_evm::batch::ClaimPolicy {
            interval: Duration::from_secs(self.claim_interval_seconds),
            check_every: Duration::from_secs(self.check_interval_seconds),
            chain_check_every: Duration::from_secs(self.chain_check_interval_seconds),
            max_unclaimed_per_channel: u128::from(self.max_unclaimed_per_channel),
            max_unclaimed_total: u128::from(self.max_unclaimed_total),
            claim_on_withdrawal: self.claim_on_withdrawal,
            max_claims_per_batch: self.max_claims_per_batch,
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        let key = |field: &str| format!("batch_settlement.{field}");
        if self.claim_interval_seconds == 0 || self.check_interval_seconds == 0 {
            return Err(invalid(
                key("claim_interval_seconds"),
                "claim_interval_seconds and check_interval_seconds must be at least 1",
            ));
        }
        if !(1..=300).contains(&self.chain_check_interval_seconds) {
            return Err(invalid(
                key("chain_check_interval_seconds"),
                "1 to 300: withdrawals must be seen well within the 900 s shortest withdraw delay",
            ));
        }
        if !(1..=100).contains(&self.max_claims_per_batch) {
            return Err(invalid(key("max_claims_per_batch"), "1 to 100"));
        }
        Ok(())
    }
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
    /// Also accept `exact` on Solana (`[payment.solana]`): offered on every paid route after
    /// the EVM assets, paid to its own `pay_to`.
    #[serde(default)]
    pub solana: Option<SolanaAcceptConfig>,
}

/// Payments on Solana: an SPL token (USDC by default) paid to a Solana address. The
/// facilitator pays the transaction fee; its fee payer comes from its `/supported`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SolanaAcceptConfig {
    /// CAIP-2 network (`solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp` for mainnet,
    /// `solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1` for devnet).
    pub network: Network,
    /// The Solana address paid (base58); payments go to its associated token account.
    pub pay_to: String,
    /// The token's mint (base58); by default the network's USDC.
    #[serde(default)]
    pub mint: Option<String>,
    /// Token decimals (default 6, as USDC).
    #[serde(default = "default_decimals")]
    pub decimals: u8,
}

impl SolanaAcceptConfig {
    /// The mint paid in: `mint`, else the network's USDC (checked to exist by
    /// [`GatewayConfig::check`]).
    pub fn mint(&self) -> String {
        self.mint.clone().unwrap_or_else(|| {
            x402_svm::usdc_mint(self.network.as_str())
                .map(|m| m.to_string())
                .unwrap_or_default()
        })
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.network.namespace() != Some("solana") {
            return Err(invalid(
                "payment.solana.network",
                format!(
                    "{:?} is not a Solana network; write CAIP-2 such as \"{}\" (devnet) or \"{}\" (mainnet)",
                    self.network,
                    x402_svm::SOLANA_DEVNET,
                    x402_svm::SOLANA_MAINNET
                ),
            ));
        }
        if !is_solana_address(&self.pay_to) {
            return Err(invalid(
                "payment.solana.pay_to",
                format!("{:?} is not a base58 Solana address", self.pay_to),
            ));
        }
        match &self.mint {
            Some(mint) if !is_solana_address(mint) => {
                return Err(invalid(
                    "payment.solana.mint",
                    format!("{mint:?} is not a base58 Solana address"),
                ));
            }
            None if x402_svm::usdc_mint(self.network.as_str()).is_none() => {
                return Err(invalid(
                    "payment.solana.mint",
                    format!("no default USDC on {}; set the mint", self.network),
                ));
            }
            _ => {}
        }
        if self.decimals > 36 {
            return Err(invalid("payment.solana.decimals", "at most 36"));
        }
        Ok(())
    }
}

fn is_solana_address(text: &str) -> bool {
    text.parse::<x402_svm::Pubkey>().is_ok()
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
            solana: None,
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
    /// Longest audio transcribed in one request, in seconds (default 3600).
    pub max_audio_seconds: u64,
    /// Audio at least this long (seconds) is transcribed as a job (default 120).
    pub job_over_audio_seconds: u64,
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
            max_audio_seconds: 3600,
            job_over_audio_seconds: 120,
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
    /// For LLM services without an upstream: the local model that answers,
    /// `"smollm2-135m-instruct"` or `"qwen2.5-coder-0.5b-instruct"`. By default the code
    /// services (`code-*`) use Qwen2.5-Coder when it is installed
    /// (`scripts/install-models.sh --qwen-coder`), every other one SmolLM2. A model named here
    /// that is not installed makes the service unavailable (never another model).
    #[serde(default)]
    pub local_model: Option<crate::backend::local_llm::LocalChatModel>,
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
            local_model: None,
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
            onnxruntime_library: None,
            jobs_db: default_jobs_db(),
            payments_db: None,
            database: None,
            facilitator: None,
            payment,
            limits: GatewayLimits::default(),
            inputs: Default::default(),
            services: BTreeMap::new(),
            batch_settlement: None,
            operator_token: None,
            operator_token_env: None,
            dashboard_listen: None,
        }
    }

    /// The payment journal's SQLite file: `payments_db`, or `gateway-payments.db` beside
    /// `jobs_db`.
    pub fn payments_db(&self) -> PathBuf {
        self.payments_db
            .clone()
            .unwrap_or_else(|| self.jobs_db.with_file_name("gateway-payments.db"))
    }

    /// The operator token: `operator_token`, or the value of the variable `operator_token_env`
    /// names (read now). `None` when neither is set.
    pub fn operator_token(&self) -> Result<Option<Secret>, ConfigError> {
        self.operator_token_from(|name| std::env::var(name).ok())
    }

    fn operator_token_from(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Secret>, ConfigError> {
        match (&self.operator_token, &self.operator_token_env) {
            (Some(_), Some(_)) => Err(invalid(
                "operator_token",
                "set operator_token or operator_token_env, not both",
            )),
            (Some(token), None) if token.is_empty() => {
                Err(invalid("operator_token", "must not be empty"))
            }
            (Some(token), None) => Ok(Some(token.clone())),
            (None, Some(name)) => match env(name).filter(|v| !v.is_empty()) {
                Some(value) => Ok(Some(Secret::new(value))),
                None => Err(invalid(
                    "operator_token_env",
                    format!("the environment variable {name} is not set (or empty)"),
                )),
            },
            (None, None) => Ok(None),
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
        if let Some(solana) = &self.payment.solana {
            solana.check()?;
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
            if service.local_model.is_some() && def.backend != BackendKind::Chat {
                return Err(invalid(
                    format!("services.{name}.local_model"),
                    "only LLM services (llm-*, code-*) take a local chat model",
                ));
            }
            if service.local_model.is_some() && service.upstream.is_some() {
                return Err(invalid(
                    format!("services.{name}.local_model"),
                    "set an upstream or a local model, not both (the upstream would answer)",
                ));
            }
        }
        if self.limits.max_body_bytes == 0 || self.limits.max_batch == 0 {
            return Err(invalid(
                "limits",
                "max_body_bytes and max_batch must be positive",
            ));
        }
        if self.limits.max_audio_seconds == 0 {
            return Err(invalid("limits.max_audio_seconds", "must be positive"));
        }
        crate::backend::fetch_input::InputFetcher::new(&self.inputs)?;
        if let Some(batch) = &self.batch_settlement {
            batch.check()?;
        }
        if self.operator_token.is_some() && self.operator_token_env.is_some() {
            return Err(invalid(
                "operator_token",
                "set operator_token or operator_token_env, not both",
            ));
        }
        if let Some(address) = self.dashboard_listen {
            if self.operator_token.is_none() && self.operator_token_env.is_none() {
                return Err(invalid(
                    "dashboard_listen",
                    "the dashboard needs an operator token: set operator_token_env (or operator_token) too",
                ));
            }
            if address == self.listen {
                return Err(invalid(
                    "dashboard_listen",
                    "must differ from listen (leave it unset to serve the dashboard on listen)",
                ));
            }
        }
        if let Some(url) = &self.database {
            crate::postgres::check_url(url.expose())
                .map_err(|message| invalid("database", message))?;
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
        assert_eq!(config.payments_db(), Path::new("gateway-payments.db"));
        assert_eq!(config.dashboard_listen, None);
        assert_eq!(config.limits.job_attempts, 3);
    }

    #[test]
    fn the_payment_journal_sits_beside_the_jobs_unless_named() {
        let beside =
            GatewayConfig::parse(&format!("jobs_db = \"state/jobs.db\"\n{MINIMAL}")).unwrap();
        assert_eq!(beside.payments_db(), Path::new("state/gateway-payments.db"));
        let named = GatewayConfig::parse(&format!(
            "jobs_db = \"state/jobs.db\"\npayments_db = \"p.db\"\n{MINIMAL}"
        ))
        .unwrap();
        assert_eq!(named.payments_db(), Path::new("p.db"));
    }

    #[test]
    fn the_dashboard_listens_apart_only_with_an_operator_token_and_another_address() {
        let config = GatewayConfig::parse(&format!(
            "operator_token_env = \"OP\"\ndashboard_listen = \"127.0.0.1:9090\"\n{MINIMAL}"
        ))
        .unwrap();
        assert_eq!(config.dashboard_listen.unwrap().port(), 9090);
        for (text, says) in [
            (
                format!("dashboard_listen = \"127.0.0.1:9090\"\n{MINIMAL}"),
                "operator token",
            ),
            (
                format!("operator_token = \"t\"\ndashboard_listen = \"127.0.0.1:8080\"\n{MINIMAL}"),
                "must differ from listen",
            ),
            (
                format!("operator_token = \"t\"\ndashboard_listen = \"nowhere\"\n{MINIMAL}"),
                "dashboard_listen",
            ),
        ] {
            let refused = GatewayConfig::parse(&text).unwrap_err().to_string();
            assert!(refused.contains(says), "{refused}\nshould say {says}");
        }
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
            (
                format!("{MINIMAL}\n[services.code-4090]\nlocal_model = \"qwen2.5-coder\"\n"),
                &[
                    "local_model",
                    "qwen2.5-coder",
                    "smollm2-135m-instruct",
                    "qwen2.5-coder-0.5b-instruct",
                ],
            ),
            (
                format!(
                    "{MINIMAL}\n[services.whisper-l4]\nlocal_model = \"smollm2-135m-instruct\"\n"
                ),
                &["services.whisper-l4.local_model"],
            ),
            (
                format!(
                    "{MINIMAL}\n[services.llm-l4]\nlocal_model = \"smollm2-135m-instruct\"\n[services.llm-l4.upstream]\nbase_url = \"http://x\"\nmodel = \"m\"\n"
                ),
                &["services.llm-l4.local_model", "not both"],
            ),
        ] {
            let refused = GatewayConfig::parse(&text).unwrap_err().to_string();
            for key in named {
                assert!(refused.contains(key), "{refused}\nshould name {key}");
            }
        }
    }

    #[test]
    fn a_service_names_its_local_chat_model() {
        use crate::backend::local_llm::LocalChatModel;
        let config = GatewayConfig::parse(&format!(
            "{MINIMAL}\n[services.llm-4090]\nlocal_model = \"qwen2.5-coder-0.5b-instruct\"\n\
             [services.code-4090]\nlocal_model = \"smollm2-135m-instruct\"\n"
        ))
        .unwrap();
        assert_eq!(
            config.services["llm-4090"].local_model,
            Some(LocalChatModel::QwenCoder)
        );
        assert_eq!(
            config.services["code-4090"].local_model,
            Some(LocalChatModel::Smollm2)
        );
    }

    #[test]
    fn solana_payments_are_configured_apart_and_checked() {
        let devnet_usdc = "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU";
        let table = |body: &str| format!("{MINIMAL}\n[payment.solana]\n{body}\n");
        let config = GatewayConfig::parse(&table(
            "network = \"solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1\"\npay_to = \"FZEDhCPULpJtPfm6jcAZVukjdPVZ2xwPTn7kRoe4xPQG\"",
        ))
        .unwrap();
        let solana = config.payment.solana.as_ref().unwrap();
        assert_eq!(solana.mint(), devnet_usdc);
        assert_eq!(solana.decimals, 6);
        assert!(
            GatewayConfig::parse(MINIMAL)
                .unwrap()
                .payment
                .solana
                .is_none()
        );
        let pay_to = "pay_to = \"FZEDhCPULpJtPfm6jcAZVukjdPVZ2xwPTn7kRoe4xPQG\"";
        for (body, named) in [
            (
                format!("network = \"solana-devnet\"\n{pay_to}"),
                &["payment.solana.network", "CAIP-2"][..],
            ),
            (
                format!("network = \"eip155:8453\"\n{pay_to}"),
                &["payment.solana.network"],
            ),
            (
                "network = \"solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1\"\npay_to = \"0x70997970C51812dc3A010C7d01b50e0d17dc79C8\"".to_owned(),
                &["payment.solana.pay_to"],
            ),
            (
                format!("network = \"solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1\"\n{pay_to}\nmint = \"usdc\""),
                &["payment.solana.mint"],
            ),
            (
                format!("network = \"solana:someforkwithnousdc\"\n{pay_to}"),
                &["payment.solana.mint", "set the mint"],
            ),
            (
                format!("network = \"solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1\"\n{pay_to}\npayto = \"x\""),
                &["payto"],
            ),
        ] {
            let refused = GatewayConfig::parse(&table(&body)).unwrap_err().to_string();
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
        let batch = config.batch_settlement.as_ref().unwrap();
        assert_eq!(batch.policy(), x402_evm::batch::ClaimPolicy::default());
        assert_eq!(
            config.operator_token_env.as_deref(),
            Some("X402_OPERATOR_TOKEN")
        );
        assert_eq!(config.payments_db(), Path::new("gateway-payments.db"));
        assert_eq!(
            config.dashboard_listen,
            Some("127.0.0.1:8081".parse().unwrap())
        );
    }

    #[test]
    fn batch_settlement_and_the_operator_token_are_read_and_checked() {
        let text = format!(
            "operator_token = \"t0k\"\n{MINIMAL}\n[batch_settlement]\nchannels_db = \"c.db\"\nclaim_interval_seconds = 30\nmax_unclaimed_total = 5\n"
        );
        let config = GatewayConfig::parse(&text).unwrap();
        let batch = config.batch_settlement.as_ref().unwrap();
        assert_eq!(batch.channels_db, Path::new("c.db"));
        let policy = batch.policy();
        assert_eq!(policy.interval.as_secs(), 30);
        assert_eq!(policy.max_unclaimed_total, 5);
        assert_eq!(policy.max_unclaimed_per_channel, 1_000_000);
        assert_eq!(config.operator_token().unwrap().unwrap().expose(), "t0k");
        for (text, named) in [
            (
                format!("{MINIMAL}\n[batch_settlement]\nclaim_every = 3\n"),
                "claim_every",
            ),
            (
                format!("{MINIMAL}\n[batch_settlement]\nchain_check_interval_seconds = 900\n"),
                "batch_settlement.chain_check_interval_seconds",
            ),
            (
                format!("{MINIMAL}\n[batch_settlement]\nmax_claims_per_batch = 0\n"),
                "batch_settlement.max_claims_per_batch",
            ),
            (
                format!("operator_token = \"a\"\noperator_token_env = \"B\"\n{MINIMAL}"),
                "operator_token",
            ),
        ] {
            let refused = GatewayConfig::parse(&text).unwrap_err().to_string();
            assert!(refused.contains(named), "{refused}\nshould name {named}");
        }
        let from_env =
            GatewayConfig::parse(&format!("operator_token_env = \"OP\"\n{MINIMAL}")).unwrap();
        let token =
            from_env.operator_token_from(|name| (name == "OP").then(|| "s3cret".to_owned()));
        assert_eq!(token.unwrap().unwrap().expose(), "s3cret");
        let missing = from_env
            .operator_token_from(|_| None)
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("operator_token_env") && missing.contains("OP"),
            "{missing}"
        );
    }

    #[test]
    fn a_database_url_is_read_and_a_malformed_one_refused() {
        let url = "postgres://gateway:s3cret@db.internal:5432/x402";
        let config = GatewayConfig::parse(&format!("database = \"{url}\"\n{MINIMAL}")).unwrap();
        assert_eq!(config.database.as_ref().unwrap().expose(), url);
        assert!(
            !format!("{config:?}").contains("s3cret"),
            "the password is not logged"
        );
        assert!(GatewayConfig::parse(MINIMAL).unwrap().database.is_none());
        for bad in ["mysql://u@h/db", "postgres://u@h:port/db", "postgres://u@h"] {
            let refused = GatewayConfig::parse(&format!("database = \"{bad}\"\n{MINIMAL}"))
                .unwrap_err()
                .to_string();
            assert!(
                refused.starts_with("database: ") && refused.contains("postgres://"),
                "{bad}: {refused}"
            );
        }
    }

    #[test]
    fn streams_per_payer_is_read() {
        let text = MINIMAL.replace("[payment]\n", "[payment]\nstreams_per_payer = 3\n");
        let config = GatewayConfig::parse(&text).unwrap();
        assert_eq!(config.payment.streams_per_payer, 3);
    }
}
