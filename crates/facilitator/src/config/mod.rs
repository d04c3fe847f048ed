//! `facilitator.toml`: what to serve, where to settle, with which key.
//!
//! Every key can be overridden from the environment: `X402_FACILITATOR__LISTEN=…`,
//! `X402_FACILITATOR__NETWORKS__0__RPC_URL=…` (segments separated by `__`, array indexes as
//! numbers). Unknown keys and bad values fail at load with the key's path in the message.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use serde::Deserialize;
use x402_evm::{AssetInfo, FeeBumpPolicy, GWEI, default_assets};
use x402_proto::{Network, Secret};

mod database;
mod env;
mod solana;

pub use database::{Database, PostgresConfig, PostgresUrl};
pub use solana::SolanaNetworkConfig;

use env::apply_override;

/// The environment prefix of config overrides.
pub const ENV_PREFIX: &str = "X402_FACILITATOR__";

/// The environment variable the signer key is read from unless the config names another.
pub const DEFAULT_KEY_ENV: &str = "X402_FACILITATOR_PRIVATE_KEY";

/// Why a config could not be loaded.
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
    /// The TOML (after environment overrides) does not describe a config.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

/// The whole facilitator config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FacilitatorConfig {
    /// Where to listen (`127.0.0.1:8402` by default).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The settlement log: a SQLite file path (`facilitator.db` by default), for one process,
    /// or a `postgres://user[:password]@host[:port]/dbname` URL, which several instances can
    /// share.
    #[serde(default = "default_database")]
    pub database: Database,
    /// SQLite only. `full` (default): every log write is synced to disk before the
    /// transaction it records is broadcast. `normal`: survives the process being killed but
    /// not power loss, for more settlements per second (see docs/benchmarks.md). Postgres
    /// commits are always synchronous.
    #[serde(default)]
    pub database_sync: crate::sqlite::Durability,
    /// Postgres only: the connection pool.
    #[serde(default)]
    pub postgres: PostgresConfig,
    /// The signer that sends settlement transactions.
    #[serde(default)]
    pub signer: SignerConfig,
    /// Access control.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Limits and timeouts.
    #[serde(default)]
    pub limits: Limits,
    /// `batch-settlement` (payment channels): the receiver-authorizer key.
    #[serde(default)]
    pub batch_settlement: BatchSettlementConfig,
    /// The operator token: whoever presents it (`Authorization: Bearer <token>`, or through
    /// the sign-in form) reaches the operators' dashboard at `/dashboard` and its API. Without
    /// it (or `operator_token_env`) no dashboard is served.
    #[serde(default)]
    pub operator_token: Option<Secret>,
    /// The environment variable holding the operator token (instead of `operator_token`).
    #[serde(default)]
    pub operator_token_env: Option<String>,
    /// Where the dashboard listens, apart from `/verify` and `/settle` (say, an address only
    /// operators reach); on `listen`, beside them, when absent. Needs an operator token.
    #[serde(default)]
    pub dashboard_listen: Option<SocketAddr>,
    /// The EVM chains served (at least one, unless Solana networks are).
    #[serde(default)]
    pub networks: Vec<NetworkConfig>,
    /// The Solana networks served with `exact` (`[[solana_networks]]`), beside the EVM chains.
    #[serde(default)]
    pub solana_networks: Vec<SolanaNetworkConfig>,
}

/// `batch-settlement`, served on every network with `batch_settlement = true`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSettlementConfig {
    /// An environment variable holding the receiver-authorizer's hex private key. With a key,
    /// the facilitator advertises it as `receiverAuthorizer` in `/supported` and signs the
    /// claims and refunds of channels naming it when servers send them unsigned; without one,
    /// servers sign their own. Such a facilitator can refund those channels to their payers:
    /// protect `/settle` with `auth.bearer_token`.
    pub receiver_authorizer_key_env: Option<String>,
    /// A file holding that key; used when set, instead of the environment.
    pub receiver_authorizer_key_file: Option<PathBuf>,
}

/// Where the signer's private key comes from. The key itself is never written to the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerConfig {
    /// An environment variable holding the hex private key.
    #[serde(default = "default_key_env")]
    pub private_key_env: String,
    /// A file holding the hex private key; used when set, instead of the environment.
    pub key_file: Option<PathBuf>,
}

impl Default for SignerConfig {
    fn default() -> Self {
        Self {
            private_key_env: default_key_env(),
            key_file: None,
        }
    }
}

/// Access control for `/verify` and `/settle`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// When set, requests must carry `Authorization: Bearer <token>`.
    pub bearer_token: Option<Secret>,
}

/// Limits and timeouts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// The largest request body accepted, in bytes.
    #[serde(default = "default_body_bytes")]
    pub max_body_bytes: usize,
    /// How long a request may take overall, in milliseconds.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// How long `/settle` waits for a receipt before answering `settlement_pending`, in ms.
    #[serde(default = "default_settle_wait_ms")]
    pub settle_wait_ms: u64,
    /// How long shutdown waits for settlements in flight, in milliseconds.
    #[serde(default = "default_shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: default_body_bytes(),
            request_timeout_ms: default_request_timeout_ms(),
            settle_wait_ms: default_settle_wait_ms(),
            shutdown_grace_ms: default_shutdown_grace_ms(),
        }
    }
}

impl Limits {
    /// `settle_wait_ms` as a duration.
    pub fn settle_wait(&self) -> Duration {
        Duration::from_millis(self.settle_wait_ms)
    }

    /// `request_timeout_ms` as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// `shutdown_grace_ms` as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

/// One chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// The chain id; the CAIP-2 network is `eip155:<chain_id>`.
    pub chain_id: u64,
    /// The JSON-RPC endpoint.
    pub rpc_url: alloy::transports::http::reqwest::Url,
    /// The block time in milliseconds; measured from the chain when absent.
    pub block_time_ms: Option<u64>,
    /// The tokens accepted; the chain's default USDC when absent.
    pub assets: Option<Vec<AssetConfig>>,
    /// Factories whose counterfactual (ERC-6492) wallets may pay before they are deployed;
    /// settling deploys the wallet. Empty (the default) refuses undeployed wallets with
    /// `eip6492_factory_not_allowed`; deployed smart wallets (ERC-1271) pay either way.
    #[serde(default)]
    pub eip6492_allowed_factories: Vec<Address>,
    /// How a settlement transaction left unmined is re-priced.
    #[serde(default)]
    pub fee_bump: FeeBumpConfig,
    /// `/health` fails while the signer's balance on this chain (what pays settlement gas) is
    /// below this many wei (an integer, or a decimal string for more than TOML integers
    /// hold). Not checked when absent.
    #[serde(default, deserialize_with = "deserialize_wei")]
    pub min_signer_balance_wei: Option<U256>,
    /// Whether to serve `upto` (Permit2, through the x402 `upto` proxy at its canonical
    /// address) beside `exact`. On by default.
    #[serde(default = "default_true")]
    pub upto: bool,
    /// Whether to serve `batch-settlement` (payment channels in the x402 escrow at its
    /// canonical address, ERC-3009 deposits) beside `exact`. On by default.
    #[serde(default = "default_true")]
    pub batch_settlement: bool,
}

/// Replacing a settlement transaction that sits unmined (underpriced) with a higher-fee one
/// on the same nonce.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeBumpConfig {
    /// How long a transaction may wait unmined before it is replaced, in milliseconds; three
    /// block times (at least 3 s) when absent.
    pub stuck_after_ms: Option<u64>,
    /// How many replacements one transaction may get (3 by default; 0 never replaces).
    #[serde(default = "default_max_fee_bumps")]
    pub max_fee_bumps: u32,
    /// The highest `maxFeePerGas` a replacement may offer, in gwei (200 by default). A
    /// transaction that cannot be raised further is left to wait.
    #[serde(default = "default_max_fee_per_gas_cap_gwei")]
    pub max_fee_per_gas_cap_gwei: u64,
}

impl Default for FeeBumpConfig {
    fn default() -> Self {
        Self {
            stuck_after_ms: None,
            max_fee_bumps: default_max_fee_bumps(),
            max_fee_per_gas_cap_gwei: default_max_fee_per_gas_cap_gwei(),
        }
    }
}

impl FeeBumpConfig {
    /// The policy the chain's scheme applies.
    pub fn policy(&self) -> FeeBumpPolicy {
        FeeBumpPolicy {
            stuck_after: self.stuck_after_ms.map(Duration::from_millis),
            max_bumps: self.max_fee_bumps,
            max_fee_per_gas_cap: u128::from(self.max_fee_per_gas_cap_gwei) * GWEI,
        }
    }
}

/// One accepted token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetConfig {
    /// The token contract.
    pub address: Address,
    /// Its EIP-712 domain name (`"USD Coin"`).
    pub name: String,
    /// Its EIP-712 domain version (`"2"`).
    pub version: String,
    /// Its decimals.
    pub decimals: u8,
}

impl From<&AssetInfo> for AssetConfig {
    fn from(info: &AssetInfo) -> Self {
        Self {
            address: info.address,
            name: info.name.to_owned(),
            version: info.version.to_owned(),
            decimals: info.decimals,
        }
    }
}

impl NetworkConfig {
    /// The CAIP-2 id.
    pub fn network(&self) -> Network {
        Network::eip155(self.chain_id)
    }

    /// The accepted assets: the configured ones, or the chain's defaults.
    pub fn accepted_assets(&self) -> Vec<AssetConfig> {
        match &self.assets {
            Some(assets) => assets.clone(),
            None => default_assets()
                .filter(|a| a.network.evm_chain_id() == Some(self.chain_id))
                .map(|a| AssetConfig::from(&a))
                .collect(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8402))
}
fn default_database() -> Database {
    Database::Sqlite(PathBuf::from("facilitator.db"))
}
fn default_key_env() -> String {
    DEFAULT_KEY_ENV.to_owned()
}
fn default_body_bytes() -> usize {
    64 * 1024
}
fn default_request_timeout_ms() -> u64 {
    60_000
}
fn default_settle_wait_ms() -> u64 {
    30_000
}
fn default_shutdown_grace_ms() -> u64 {
    10_000
}
/// A wei amount written as a TOML integer or a decimal string.
fn deserialize_wei<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<U256>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wei {
        Integer(u64),
        Decimal(String),
    }
    Ok(match Option::<Wei>::deserialize(deserializer)? {
        None => None,
        Some(Wei::Integer(wei)) => Some(U256::from(wei)),
        Some(Wei::Decimal(text)) => Some(U256::from_str_radix(text.trim(), 10).map_err(|_| {
            serde::de::Error::custom(format!("`{text}` is not a whole number of wei"))
        })?),
    })
}

fn default_max_fee_bumps() -> u32 {
    FeeBumpPolicy::default().max_bumps
}
fn default_max_fee_per_gas_cap_gwei() -> u64 {
    u64::try_from(FeeBumpPolicy::default().max_fee_per_gas_cap / GWEI).unwrap_or(u64::MAX)
}

impl FacilitatorConfig {
    /// Reads `path`, applies overrides from the process environment, and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, std::env::vars())
    }

    /// Parses TOML text with the given environment overrides, and validates.
    pub fn parse(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| invalid(format!("facilitator config: {e}")))?;
        let mut overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        overrides.sort();
        for (key, value) in overrides {
            apply_override(&mut table, &key, &value)?;
        }
        let pool_given = table.contains_key("postgres");
        let config: Self = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| invalid(format!("facilitator config: {e}")))?;
        config.validate()?;
        if pool_given && !config.database.is_postgres() {
            return Err(invalid(format!(
                "facilitator config: [postgres] sets the pool of a Postgres database, but `database` is {}; set database = \"postgres://…\" or remove [postgres]",
                config.database
            )));
        }
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match (&self.operator_token, &self.operator_token_env) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "facilitator config: operator_token: set operator_token or operator_token_env, not both",
                ));
            }
            (Some(token), None) if token.is_empty() => {
                return Err(invalid(
                    "facilitator config: operator_token is empty; remove it (no dashboard) or set a token",
                ));
            }
            (None, Some(name)) if name.trim().is_empty() => {
                return Err(invalid(
                    "facilitator config: operator_token_env is empty; name the environment variable holding the operator token",
                ));
            }
            (None, None) if self.dashboard_listen.is_some() => {
                return Err(invalid(
                    "facilitator config: dashboard_listen serves the operators' dashboard, which needs operator_token or operator_token_env",
                ));
            }
            _ => {}
        }
        if let Some(dashboard) = self.dashboard_listen
            && dashboard == self.listen
            && dashboard.port() != 0
        {
            return Err(invalid(format!(
                "facilitator config: dashboard_listen is listen ({dashboard}); remove dashboard_listen to serve the dashboard there"
            )));
        }
        if self.database.is_postgres() {
            if self.database_sync != crate::sqlite::Durability::Full {
                return Err(invalid(
                    "facilitator config: database_sync applies to a SQLite file; a Postgres database commits synchronously (remove database_sync)",
                ));
            }
            if let Some(problem) = self.postgres.problem() {
                return Err(invalid(format!("facilitator config: {problem}")));
            }
        }
        if self.networks.is_empty() && self.solana_networks.is_empty() {
            return Err(invalid(
                "facilitator config: `networks` is empty; add a [[networks]] table with chain_id and rpc_url (or a [[solana_networks]] table)",
            ));
        }
        for (i, network) in self.networks.iter().enumerate() {
            if self.networks[..i]
                .iter()
                .any(|n| n.chain_id == network.chain_id)
            {
                return Err(invalid(format!(
                    "facilitator config: networks[{i}].chain_id {} is listed twice",
                    network.chain_id
                )));
            }
            if network.fee_bump.stuck_after_ms == Some(0) {
                return Err(invalid(format!(
                    "facilitator config: networks[{i}].fee_bump.stuck_after_ms must be positive; remove it for three block times"
                )));
            }
            if network.fee_bump.max_fee_per_gas_cap_gwei == 0 {
                return Err(invalid(format!(
                    "facilitator config: networks[{i}].fee_bump.max_fee_per_gas_cap_gwei must be positive"
                )));
            }
            if network.accepted_assets().is_empty() {
                return Err(invalid(format!(
                    "facilitator config: networks[{i}].assets: chain {} has no default asset; list its tokens as [[networks.assets]] with address, name, version, decimals",
                    network.chain_id
                )));
            }
        }
        for (i, solana) in self.solana_networks.iter().enumerate() {
            if let Some(problem) = solana.problem() {
                return Err(invalid(format!(
                    "facilitator config: solana_networks[{i}]: {problem}"
                )));
            }
            if self.solana_networks[..i]
                .iter()
                .any(|n| n.network == solana.network)
            {
                return Err(invalid(format!(
                    "facilitator config: solana_networks[{i}].network {} is listed twice",
                    solana.network
                )));
            }
        }
        if self.limits.max_body_bytes < 1024 {
            return Err(invalid(
                "facilitator config: limits.max_body_bytes must be at least 1024",
            ));
        }
        if self.limits.settle_wait_ms == 0 || self.limits.request_timeout_ms == 0 {
            return Err(invalid(
                "facilitator config: limits.settle_wait_ms and limits.request_timeout_ms must be positive",
            ));
        }
        if self
            .auth
            .bearer_token
            .as_ref()
            .is_some_and(Secret::is_empty)
        {
            return Err(invalid(
                "facilitator config: auth.bearer_token is empty; remove it or set a token",
            ));
        }
        Ok(())
    }

    /// The operator token: `operator_token`, or the value of the variable `operator_token_env`
    /// names (read now). `None` when neither is set: no dashboard.
    pub fn operator_token(&self) -> Result<Option<Secret>, ConfigError> {
        self.operator_token_from(|name| std::env::var(name).ok())
    }

    fn operator_token_from(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Secret>, ConfigError> {
        match (&self.operator_token, &self.operator_token_env) {
            (Some(_), Some(_)) => Err(invalid(
                "facilitator config: operator_token: set operator_token or operator_token_env, not both",
            )),
            (Some(token), None) if token.is_empty() => Err(invalid(
                "facilitator config: operator_token is empty; remove it (no dashboard) or set a token",
            )),
            (Some(token), None) => Ok(Some(token.clone())),
            (None, Some(name)) => match env(name).filter(|v| !v.is_empty()) {
                Some(value) => Ok(Some(Secret::new(value))),
                None => Err(invalid(format!(
                    "facilitator config: operator_token_env: the environment variable {name} is not set (or empty)"
                ))),
            },
            (None, None) => Ok(None),
        }
    }

    /// Reads the signer key from the key file or the environment. The error never contains
    /// the key.
    pub fn signer(&self) -> Result<PrivateKeySigner, ConfigError> {
        let name = &self.signer.private_key_env;
        let missing = || {
            invalid(format!(
                "no signer key: set {name} to the facilitator's hex private key, or signer.key_file in the config"
            ))
        };
        read_key("signer", self.signer.key_file.as_deref(), Some(name))?.ok_or_else(missing)
    }

    /// Reads the `batch-settlement` receiver-authorizer key, when the config names where it
    /// is (`batch_settlement.receiver_authorizer_key_file` or `…_key_env`). A named source
    /// that is missing or does not hold a key fails. The error never contains the key.
    pub fn receiver_authorizer(&self) -> Result<Option<PrivateKeySigner>, ConfigError> {
        let batch = &self.batch_settlement;
        let name = batch.receiver_authorizer_key_env.as_deref();
        let key = read_key(
            "receiver-authorizer",
            batch.receiver_authorizer_key_file.as_deref(),
            name,
        )?;
        match (key, name) {
            (None, Some(name)) => Err(invalid(format!(
                "no receiver-authorizer key: batch_settlement.receiver_authorizer_key_env names {name}, which is not set"
            ))),
            (key, _) => Ok(key),
        }
    }
}

/// The `what` key in `file` when given, else in the environment variable `env` (none when it
/// is not set). The error never contains the key.
fn read_key(
    what: &str,
    file: Option<&Path>,
    env: Option<&str>,
) -> Result<Option<PrivateKeySigner>, ConfigError> {
    let (text, source) = match (file, env) {
        (Some(path), _) => (
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?,
            format!("key file {}", path.display()),
        ),
        (None, Some(name)) => match std::env::var(name) {
            Ok(value) => (value, format!("environment variable {name}")),
            Err(_) => return Ok(None),
        },
        (None, None) => return Ok(None),
    };
    text.trim().parse().map(Some).map_err(|_| {
        invalid(format!(
            "the {what} key in {source} is not a 32-byte hex private key"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [[networks]]
        chain_id = 8453
        rpc_url = "http://127.0.0.1:8545"
    "#;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<FacilitatorConfig, ConfigError> {
        FacilitatorConfig::parse(
            text,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    /// Asserts that `text` with the environment `env` is refused with a message naming `key`.
    #[track_caller]
    fn assert_refused(text: &str, env: &[(&str, &str)], key: &str) {
        let error = parse(text, env).unwrap_err();
        assert!(error.to_string().contains(key), "{error}");
    }

    #[test]
    fn the_receiver_authorizer_key_is_read_from_where_the_config_names_and_typos_fail() {
        let config = parse(MINIMAL, &[]).unwrap();
        assert!(config.networks[0].batch_settlement);
        assert!(config.receiver_authorizer().unwrap().is_none());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("authorizer.key");
        let key = PrivateKeySigner::random();
        std::fs::write(&file, format!("{}\n", key.to_bytes())).unwrap();
        let named = format!(
            "[batch_settlement]\nreceiver_authorizer_key_file = {:?}\n{MINIMAL}",
            file.display().to_string()
        );
        let read = parse(&named, &[]).unwrap().receiver_authorizer().unwrap();
        assert_eq!(read.map(|k| k.address()), Some(key.address()));
        std::fs::write(&file, "not a key").unwrap();
        let unset = format!(
            "[batch_settlement]\nreceiver_authorizer_key_env = \"X402_TEST_NO_SUCH_VARIABLE\"\n{MINIMAL}"
        );
        for (text, named) in [
            (&named, "receiver-authorizer key"),
            (&unset, "X402_TEST_NO_SUCH_VARIABLE"),
        ] {
            let error = parse(text, &[]).unwrap().receiver_authorizer().unwrap_err();
            let error = error.to_string();
            assert!(
                error.contains(named) && !error.contains("not a key"),
                "{error}"
            );
        }
        assert_refused(
            &format!("[batch_settlement]\nreceiver_authoriser_key_env = \"K\"\n{MINIMAL}"),
            &[],
            "receiver_authoriser_key_env",
        );
        assert_refused(
            &format!("{MINIMAL}batch_setlement = false\n"),
            &[],
            "batch_setlement",
        );
        let off = parse(&format!("{MINIMAL}batch_settlement = false\n"), &[]).unwrap();
        assert!(!off.networks[0].batch_settlement);
    }

    #[test]
    fn minimal_config_gets_defaults_and_the_chain_usdc() {
        let config = parse(MINIMAL, &[]).unwrap();
        assert_eq!(config.listen.port(), 8402);
        assert_eq!(config.database_sync, crate::sqlite::Durability::Full);
        assert_refused(
            &format!("database_sync = \"sometimes\"\n{MINIMAL}"),
            &[],
            "full",
        );
        assert_eq!(config.limits.settle_wait_ms, 30_000);
        let assets = config.networks[0].accepted_assets();
        assert_eq!(assets.len(), 1);
        assert_eq!(assets[0].name, "USD Coin");
        assert_eq!(assets[0].decimals, 6);
        let policy = config.networks[0].fee_bump.policy();
        assert_eq!(policy, FeeBumpPolicy::default());
        assert_eq!(policy.max_bumps, 3);
        assert_eq!(policy.max_fee_per_gas_cap, 200 * GWEI);
        assert_eq!(config.networks[0].min_signer_balance_wei, None);
    }

    #[test]
    fn fee_bumps_and_the_gas_floor_are_per_network() {
        let text = format!(
            "{MINIMAL}min_signer_balance_wei = 5000000000000000
[networks.fee_bump]
stuck_after_ms = 4000
max_fee_bumps = 5
max_fee_per_gas_cap_gwei = 50
"
        );
        let config = parse(&text, &[]).unwrap();
        let network = &config.networks[0];
        assert_eq!(
            network.min_signer_balance_wei,
            Some(U256::from(5_000_000_000_000_000u64))
        );
        let config = parse(
            &format!("{MINIMAL}min_signer_balance_wei = \"100000000000000000000\"\n"),
            &[],
        )
        .unwrap();
        assert_eq!(
            config.networks[0].min_signer_balance_wei,
            Some(U256::from(100u64) * U256::from(10u64).pow(U256::from(18u64)))
        );
        assert_refused(
            &format!("{MINIMAL}min_signer_balance_wei = \"lots\"\n"),
            &[],
            "min_signer_balance_wei",
        );
        assert_eq!(
            network.fee_bump.policy(),
            FeeBumpPolicy {
                stuck_after: Some(Duration::from_secs(4)),
                max_bumps: 5,
                max_fee_per_gas_cap: 50 * GWEI,
            }
        );
        // An unknown key, and a cap of zero.
        for (key, line) in [
            ("max_bumps", "max_bumps = 1"),
            ("max_fee_per_gas_cap_gwei", "max_fee_per_gas_cap_gwei = 0"),
        ] {
            assert_refused(&format!("{MINIMAL}[networks.fee_bump]\n{line}\n"), &[], key);
        }
        let config = parse(
            MINIMAL,
            &[(
                "X402_FACILITATOR__NETWORKS__0__FEE_BUMP__MAX_FEE_BUMPS",
                "0",
            )],
        )
        .unwrap();
        assert_eq!(config.networks[0].fee_bump.max_fee_bumps, 0);
    }

    #[test]
    fn the_log_is_a_sqlite_file_or_a_postgres_url_and_a_bad_one_stops_the_start() {
        let config = parse(MINIMAL, &[]).unwrap();
        assert_eq!(config.database, Database::Sqlite("facilitator.db".into()));
        let url = "postgres://x402:pw@db.internal:5432/x402";
        let text = format!(
            "database = \"{url}\"\n[postgres]\npool_size = 4\nstatement_timeout_ms = 2000\n{MINIMAL}"
        );
        let config = parse(&text, &[]).unwrap();
        let Database::Postgres(given) = &config.database else {
            panic!("a postgres URL is Postgres: {:?}", config.database);
        };
        assert_eq!(given.expose(), url);
        let options = config.postgres.options();
        assert_eq!(options.pool_size, 4);
        assert_eq!(options.statement_timeout, Duration::from_secs(2));
        assert_eq!(options.connect_timeout, Duration::from_secs(5));
        let from_env = parse(MINIMAL, &[("X402_FACILITATOR__DATABASE", url)]).unwrap();
        assert!(from_env.database.is_postgres());

        assert_refused(
            &format!("database = \"postgres://u@h:port/db\"\n{MINIMAL}"),
            &[],
            "not a usable Postgres URL",
        );
        assert_refused(
            &format!("database = \"{url}\"\ndatabase_sync = \"normal\"\n{MINIMAL}"),
            &[],
            "database_sync",
        );
        assert_refused(
            &format!("database = \"{url}\"\n[postgres]\npool_size = 0\n{MINIMAL}"),
            &[],
            "pool_size",
        );
        assert_refused(
            &format!("[postgres]\npool_size = 2\n{MINIMAL}"),
            &[],
            "[postgres]",
        );
        assert_refused(
            &format!("database = \"{url}\"\n[postgres]\npool = 2\n{MINIMAL}"),
            &[],
            "pool",
        );
    }

    #[test]
    fn instances_sharing_postgres_are_named_and_a_bad_name_or_timing_stops_the_start() {
        let url = "postgres://x402@db.internal/x402";
        let text = format!(
            "database = \"{url}\"\n[postgres]\ninstance_id = \"fac-a:1\"\nheartbeat_ms = 500\ntakeover_after_ms = 3000\n{MINIMAL}"
        );
        let config = parse(&text, &[]).unwrap();
        assert_eq!(config.postgres.instance_id(), "fac-a:1");
        assert_eq!(config.postgres.heartbeat(), Duration::from_millis(500));
        assert_eq!(config.postgres.takeover_after(), Duration::from_secs(3));
        let config = parse(&format!("database = \"{url}\"\n{MINIMAL}"), &[]).unwrap();
        let (one, two) = (config.postgres.instance_id(), config.postgres.instance_id());
        assert_ne!(
            one, two,
            "a default id differs per instance, even in one process"
        );
        assert!(one.contains(&std::process::id().to_string()), "{one}");
        for (postgres, said) in [
            ("instance_id = \"a b\"", "instance_id"),
            ("instance_id = \"\"", "instance_id"),
            ("heartbeat_ms = 0", "heartbeat_ms"),
            (
                "heartbeat_ms = 2000\ntakeover_after_ms = 2000",
                "takeover_after_ms",
            ),
        ] {
            assert_refused(
                &format!("database = \"{url}\"\n[postgres]\n{postgres}\n{MINIMAL}"),
                &[],
                said,
            );
        }
    }

    #[test]
    fn the_operator_token_and_the_dashboard_address_are_read_and_checked() {
        let config = parse(MINIMAL, &[]).unwrap();
        assert!(
            config.operator_token().unwrap().is_none(),
            "no token, no dashboard"
        );
        assert_eq!(config.dashboard_listen, None);
        let config = parse(
            &format!("operator_token = \"t0k\"\ndashboard_listen = \"127.0.0.1:9402\"\n{MINIMAL}"),
            &[],
        )
        .unwrap();
        assert_eq!(config.operator_token().unwrap().unwrap().expose(), "t0k");
        assert_eq!(config.dashboard_listen.unwrap().port(), 9402);
        assert!(!format!("{config:?}").contains("t0k"));
        let from_env = parse(&format!("operator_token_env = \"OP\"\n{MINIMAL}"), &[]).unwrap();
        let token = from_env.operator_token_from(|name| (name == "OP").then(|| "s3cret".into()));
        assert_eq!(token.unwrap().unwrap().expose(), "s3cret");
        let missing = from_env
            .operator_token_from(|_| Some(String::new()))
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("operator_token_env") && missing.contains("OP"),
            "{missing}"
        );
        let overridden = parse(MINIMAL, &[("X402_FACILITATOR__OPERATOR_TOKEN", "e")]).unwrap();
        assert_eq!(overridden.operator_token().unwrap().unwrap().expose(), "e");
        for (text, named) in [
            (
                "operator_token = \"a\"\noperator_token_env = \"B\"",
                "not both",
            ),
            ("operator_token = \"\"", "operator_token is empty"),
            ("operator_token_env = \" \"", "operator_token_env is empty"),
            (
                "dashboard_listen = \"127.0.0.1:9402\"",
                "needs operator_token",
            ),
            (
                "operator_token = \"a\"\nlisten = \"127.0.0.1:9402\"\ndashboard_listen = \"127.0.0.1:9402\"",
                "dashboard_listen is listen",
            ),
            (
                "operator_token = \"a\"\ndashboard_listen = \"nowhere\"",
                "dashboard_listen",
            ),
        ] {
            assert_refused(&format!("{text}\n{MINIMAL}"), &[], named);
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        assert_refused(&format!("lisen = \"0.0.0.0:1\"\n{MINIMAL}"), &[], "lisen");
        assert_refused(&format!("{MINIMAL}\nrpc_ur = \"x\""), &[], "rpc_ur");
        assert_refused(
            &format!("[limits]\nsettle_wait = 5\n{MINIMAL}"),
            &[],
            "settle_wait",
        );
    }

    #[test]
    fn bad_values_are_named() {
        assert_refused("listen = \"nowhere\"\n", &[], "listen");
        assert_refused(
            "[[networks]]\nchain_id = 8453\nrpc_url = \"not a url\"",
            &[],
            "rpc_url",
        );
        assert_refused("networks = []", &[], "networks");
        assert_refused(
            "[[networks]]\nchain_id = 999999\nrpc_url = \"http://x\"",
            &[],
            "networks[0].assets",
        );
    }

    #[test]
    fn environment_overrides_any_key() {
        let config = parse(
            MINIMAL,
            &[
                ("X402_FACILITATOR__LISTEN", "0.0.0.0:9000"),
                ("X402_FACILITATOR__LIMITS__SETTLE_WAIT_MS", "1500"),
                (
                    "X402_FACILITATOR__NETWORKS__0__RPC_URL",
                    "http://10.0.0.1:8545",
                ),
                ("X402_FACILITATOR__AUTH__BEARER_TOKEN", "s3cret"),
                ("UNRELATED", "x"),
            ],
        )
        .unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.limits.settle_wait_ms, 1500);
        assert_eq!(config.networks[0].rpc_url.as_str(), "http://10.0.0.1:8545/");
        assert_eq!(
            config.auth.bearer_token.as_ref().map(Secret::expose),
            Some("s3cret")
        );
        assert!(!format!("{config:?}").contains("s3cret"));
        assert_refused(MINIMAL, &[("X402_FACILITATOR__LIMITS__TYPO", "1")], "typo");
    }

    #[test]
    fn eip6492_factories_are_listed_per_network() {
        let factory = "0x4020000000000000000000000000000000006492";
        let config = parse(
            &format!("{MINIMAL}eip6492_allowed_factories = [\"{factory}\"]\n"),
            &[],
        )
        .unwrap();
        let expected: Address = factory.parse().unwrap();
        assert_eq!(config.networks[0].eip6492_allowed_factories, [expected]);
        let config = parse(
            MINIMAL,
            &[(
                "X402_FACILITATOR__NETWORKS__0__EIP6492_ALLOWED_FACTORIES",
                &format!("[\"{factory}\"]"),
            )],
        )
        .unwrap();
        assert_eq!(config.networks[0].eip6492_allowed_factories, [expected]);
        assert_refused(
            &format!("{MINIMAL}eip6492_allowed_factories = [\"0x12\"]\n"),
            &[],
            "eip6492_allowed_factories",
        );
    }

    #[test]
    fn a_network_can_come_from_the_environment_alone() {
        let config = parse(
            "",
            &[
                ("X402_FACILITATOR__NETWORKS__0__CHAIN_ID", "8453"),
                (
                    "X402_FACILITATOR__NETWORKS__0__RPC_URL",
                    "http://127.0.0.1:1",
                ),
            ],
        )
        .unwrap();
        assert_eq!(config.networks[0].chain_id, 8453);
    }

    #[test]
    fn key_errors_never_show_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("key");
        std::fs::write(&key_file, "0xnot-a-key-but-secret\n").unwrap();
        let mut config = parse(MINIMAL, &[]).unwrap();
        config.signer.key_file = Some(key_file);
        let error = config.signer().unwrap_err().to_string();
        assert!(error.contains("not a 32-byte hex private key"), "{error}");
        assert!(!error.contains("secret"), "{error}");
    }

    const SOLANA: &str = r#"
        [[solana_networks]]
        network = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"
        rpc_url = "http://127.0.0.1:8899"
        fee_payer_key_env = "X402_TEST_SOLANA_KEY"
    "#;

    #[test]
    fn solana_networks_default_to_usdc_and_refuse_typos_and_bad_values() {
        let config = parse(&format!("{MINIMAL}{SOLANA}"), &[]).unwrap();
        let solana = &config.solana_networks[0];
        assert_eq!(
            solana.accepted_mints().unwrap(),
            vec![x402_svm::usdc_mint(x402_svm::SOLANA_DEVNET).unwrap()]
        );
        // No Solana network unless configured.
        assert!(parse(MINIMAL, &[]).unwrap().solana_networks.is_empty());
        // A typo in a key, and each bad value, fail naming what to fix.
        assert_refused(
            &format!("{MINIMAL}{SOLANA}fee_payer_key_fil = \"k\"\n"),
            &[],
            "fee_payer_key_fil",
        );
        for (line, expected) in [
            ("mints = [\"not-a-mint\"]", "not-a-mint"),
            ("mints = []", "mints is empty"),
            ("fee_payer_key_file = \"k.json\"", "not both"),
        ] {
            assert_refused(&format!("{MINIMAL}{SOLANA}{line}\n"), &[], expected);
        }
        let devnet = "network = \"solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1\"";
        for bad in ["network = \"solana-devnet\"", "network = \"eip155:8453\""] {
            let text = format!("{MINIMAL}{}", SOLANA.replace(devnet, bad));
            assert_refused(&text, &[], "not a CAIP-2 Solana network");
        }
        let no_key = SOLANA.replace("fee_payer_key_env = \"X402_TEST_SOLANA_KEY\"", "");
        assert_refused(&format!("{MINIMAL}{no_key}"), &[], "no fee payer");
        assert_refused(&format!("{MINIMAL}{SOLANA}{SOLANA}"), &[], "listed twice");
        // Overridden from the environment like any key.
        let config = parse(
            &format!("{MINIMAL}{SOLANA}"),
            &[(
                "X402_FACILITATOR__SOLANA_NETWORKS__0__MIN_FEE_PAYER_LAMPORTS",
                "5000",
            )],
        )
        .unwrap();
        assert_eq!(config.solana_networks[0].min_fee_payer_lamports, Some(5000));
    }

    #[test]
    fn the_solana_fee_payer_is_read_from_a_cli_key_file_or_base58_and_never_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let key = x402_svm::Keypair::new();
        let json = dir.path().join("id.json");
        std::fs::write(
            &json,
            serde_json::to_string(&key.to_bytes().to_vec()).unwrap(),
        )
        .unwrap();
        let base58 = dir.path().join("key.b58");
        std::fs::write(&base58, key.to_base58_string()).unwrap();
        for file in [&json, &base58] {
            let text = SOLANA.replace(
                "fee_payer_key_env = \"X402_TEST_SOLANA_KEY\"",
                &format!("fee_payer_key_file = {:?}", file.display().to_string()),
            );
            let config = parse(&format!("{MINIMAL}{text}"), &[]).unwrap();
            let read = config.solana_networks[0].fee_payer().unwrap();
            assert_eq!(
                x402_svm::Signer::pubkey(&read),
                x402_svm::Signer::pubkey(&key)
            );
        }
        let secret = "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d";
        std::fs::write(&base58, secret).unwrap();
        let text = SOLANA.replace(
            "fee_payer_key_env = \"X402_TEST_SOLANA_KEY\"",
            &format!("fee_payer_key_file = {:?}", base58.display().to_string()),
        );
        let config = parse(&format!("{MINIMAL}{text}"), &[]).unwrap();
        let error = config.solana_networks[0]
            .fee_payer()
            .unwrap_err()
            .to_string();
        assert!(error.contains("cannot be used"), "{error}");
        assert!(!error.contains(secret), "{error}");
        let config = parse(&format!("{MINIMAL}{SOLANA}"), &[]).unwrap();
        let error = config.solana_networks[0]
            .fee_payer()
            .unwrap_err()
            .to_string();
        assert!(error.contains("X402_TEST_SOLANA_KEY"), "{error}");
    }
}

#[cfg(test)]
mod example_tests {
    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../../../../examples/facilitator.toml");
        let config = super::FacilitatorConfig::parse(text, std::iter::empty()).unwrap();
        assert_eq!(config.networks[0].chain_id, 8453);
        assert_eq!(config.networks[0].accepted_assets()[0].name, "USD Coin");
        assert!(config.networks[0].eip6492_allowed_factories.is_empty());
        assert!(config.networks[0].min_signer_balance_wei.is_some());
        assert_eq!(config.networks[0].fee_bump.max_fee_bumps, 3);
        assert!(config.networks[0].batch_settlement);
        assert!(config.receiver_authorizer().unwrap().is_none());
        assert_eq!(
            config.operator_token_env.as_deref(),
            Some("X402_OPERATOR_TOKEN")
        );
        assert_eq!(config.dashboard_listen.map(|a| a.port()), Some(8403));
    }
}
