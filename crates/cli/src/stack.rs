//! How the local stack is put together: the dev chain for a chain id, the facilitator and
//! gateway configs that serve it. Used by `x402 dev` and by the benchmarks (`x402-bench`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use x402_devnet::{Devnet, DevnetConfig, SolanaChain};
use x402_facilitator::{FacilitatorConfig, NetworkConfig, SolanaNetworkConfig};

/// What `dev.json` says about a running `x402 dev` stack: written by `x402 dev`, read by the
/// agent commands, the demo and the MCP server, always through this type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DevState {
    /// The chain's JSON-RPC URL.
    pub rpc_url: String,
    /// The chain id.
    pub chain_id: u64,
    /// The CAIP-2 network.
    pub network: String,
    /// The token's address.
    pub asset: String,
    /// The token's EIP-712 name.
    pub asset_name: String,
    /// The token's EIP-712 version.
    pub asset_version: String,
    /// The token's decimals.
    pub decimals: u8,
    /// Who the gateway is paid to.
    pub pay_to: String,
    /// Funded payers' private keys (anvil's well-known dev keys).
    pub payer_private_keys: Vec<String>,
    /// Their addresses.
    pub payer_addresses: Vec<String>,
    /// The facilitator's signer.
    pub facilitator_address: String,
    /// The smart-wallet factory the facilitator allows for ERC-6492 payers.
    pub wallet_factory: String,
    /// The facilitator's URL.
    pub facilitator_url: String,
    /// The gateway's URL.
    pub gateway_url: String,
    /// The token the gateway's operator routes (`POST /operator/claim`) take as
    /// `Authorization: Bearer <token>`; random per run.
    #[serde(default)]
    pub operator_token: String,
    /// anvil's process id, when we started it.
    pub anvil_pid: Option<u32>,
    /// `x402 dev`'s process id.
    pub pid: u32,
    /// The local Solana chain beside anvil (`solana_*` keys), when it runs.
    #[serde(flatten)]
    pub solana: Option<SolanaDevState>,
}

/// What `dev.json` says about the local Solana chain (posing as devnet) and how the dev
/// facilitator serves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SolanaDevState {
    /// Its JSON-RPC URL.
    pub solana_rpc_url: String,
    /// Its CAIP-2 network (devnet's, which the official SDKs know).
    pub solana_network: String,
    /// The USDC mint (at devnet USDC's address, 6 decimals).
    pub solana_mint: String,
    /// Who the gateway is paid to (an owner; its token account is the associated one).
    pub solana_pay_to: String,
    /// The facilitator's fee payer (`extra.feePayer`).
    pub solana_fee_payer: String,
    /// Funded payers' secret keys, base58 of the 64-byte secret as Solana tools write them.
    pub solana_payer_keys: Vec<String>,
    /// The chain's process id.
    pub solana_pid: Option<u32>,
}

impl SolanaDevState {
    /// What `chain` holds.
    pub fn of(chain: &SolanaChain) -> Self {
        let state = chain.state();
        Self {
            solana_rpc_url: state.rpc_url.clone(),
            solana_network: state.network.clone(),
            solana_mint: state.mint.clone(),
            solana_pay_to: state.pay_to.clone(),
            solana_fee_payer: state.fee_payer.clone(),
            solana_payer_keys: state.payer_keys.clone(),
            solana_pid: chain.pid(),
        }
    }
}

/// Writes the local Solana chain's fee-payer key to `state_dir` as the Solana CLI writes key
/// files (a JSON array of the 64 secret bytes), for `solana_networks[].fee_payer_key_file`:
/// the file's path.
pub fn write_solana_fee_payer_key(
    chain: &SolanaChain,
    state_dir: &Path,
) -> std::io::Result<PathBuf> {
    let key = x402_svm::parse_keypair(&chain.state().fee_payer_key)
        .map_err(|why| std::io::Error::new(std::io::ErrorKind::InvalidData, why))?;
    let path = state_dir.join("solana-fee-payer.json");
    let json = serde_json::to_string(&key.to_bytes().to_vec())?;
    std::fs::write(&path, json)?;
    Ok(path)
}

/// The facilitator's config for the local Solana chain: `exact` on its network, in its USDC,
/// fees paid by the key in `fee_payer_key_file`.
pub fn solana_network_config(
    chain: &SolanaChain,
    fee_payer_key_file: PathBuf,
) -> SolanaNetworkConfig {
    let state = chain.state();
    SolanaNetworkConfig {
        network: x402_proto::Network::new(state.network.clone()),
        rpc_url: state
            .rpc_url
            .parse()
            .expect("the Solana front prints a valid URL"),
        fee_payer_key_env: None,
        fee_payer_key_file: Some(fee_payer_key_file),
        mints: Some(vec![state.mint.clone()]),
        min_fee_payer_lamports: None,
    }
}

impl DevState {
    /// Reads `DIR/dev.json`, saying what to do when it is missing or unreadable.
    pub fn read(dir: &Path) -> Result<Self, String> {
        let file = dir.join("dev.json");
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("no {} ({e}; is `x402 dev` running?)", file.display()))?;
        serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} is not a dev state ({e}); restart `x402 dev`",
                file.display()
            )
        })
    }
}

/// The dev chain for `chain_id`: the token is that network's USDC as the official SDKs know it
/// (address, EIP-712 name and version: Base's "USD Coin", Base Sepolia's "USDC", …), or
/// Base's when the chain has no known USDC, so the SDKs' defaults and our facilitator agree.
pub fn devnet_config(chain_id: u64, block_time: Option<u64>, accounts: u32) -> DevnetConfig {
    let defaults = DevnetConfig::default();
    let usdc = x402_evm::default_asset(&x402_proto::Network::eip155(chain_id));
    DevnetConfig {
        chain_id,
        block_time,
        accounts,
        token_address: usdc.as_ref().map_or(defaults.token_address, |a| a.address),
        token_name: usdc
            .as_ref()
            .map_or(defaults.token_name.clone(), |a| a.name.clone()),
        token_version: usdc.map_or(defaults.token_version.clone(), |a| a.version),
        ..defaults
    }
}

/// Facilitator config for `devnet`: listening on `port`, logging to `database`.
pub fn facilitator_config(
    devnet: &Devnet,
    port: u16,
    database: &Path,
    block_time: Option<u64>,
) -> FacilitatorConfig {
    FacilitatorConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        database: database.to_owned().into(),
        database_sync: Default::default(),
        postgres: Default::default(),
        signer: Default::default(),
        auth: Default::default(),
        limits: Default::default(),
        batch_settlement: Default::default(),
        operator_token: None,
        operator_token_env: None,
        dashboard_listen: None,
        networks: vec![NetworkConfig {
            chain_id: devnet.chain_id(),
            rpc_url: devnet.rpc_url().clone(),
            block_time_ms: block_time.map(|s| s * 1000),
            // Exactly the token the devnet placed, whatever the chain id.
            assets: Some(vec![x402_facilitator::AssetConfig {
                address: devnet.token().address,
                name: devnet.token().name.clone(),
                version: devnet.token().version.clone(),
                decimals: devnet.token().decimals,
            }]),
            // The devnet's own smart-wallet factory, so counterfactual wallets can pay in dev.
            eip6492_allowed_factories: vec![devnet.wallet_factory()],
            fee_bump: Default::default(),
            min_signer_balance_wei: None,
            // The devnet has Permit2 and the upto proxy when Permit2's code is installed.
            upto: true,
            // The devnet has the batch-settlement escrow and its collectors.
            batch_settlement: true,
        }],
        solana_networks: Vec::new(),
    }
}

/// Writes the key `x402 dev`'s facilitator signs `batch-settlement` claims and refunds with
/// (the devnet facilitator's own, a well-known dev key) to `state_dir`, for
/// `batch_settlement.receiver_authorizer_key_file`: the file's path.
pub fn write_dev_authorizer_key(devnet: &Devnet, state_dir: &Path) -> std::io::Result<PathBuf> {
    let path = state_dir.join("receiver-authorizer.key");
    std::fs::write(&path, devnet.facilitator().signer.to_bytes().to_string())?;
    Ok(path)
}

/// The gateway's config for `devnet`: listening on `port`, paid in the devnet's token to its
/// payee, models from `models_dir`, jobs recorded in `jobs_db`.
pub fn gateway_config(
    devnet: &Devnet,
    port: u16,
    models_dir: &Path,
    jobs_db: &Path,
) -> x402_gateway::GatewayConfig {
    let token = devnet.token();
    let accept = x402_gateway::AcceptConfig {
        network: devnet.network(),
        asset: token.address.to_checksum(None),
        decimals: token.decimals,
        name: token.name.clone(),
        version: token.version.clone(),
        // Our facilitator serves upto: LLM calls on the dev stack are charged by the token.
        upto: true,
    };
    let payment =
        x402_gateway::PaymentConfig::new(devnet.pay_to().address.to_checksum(None), vec![accept]);
    x402_gateway::GatewayConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        models_dir: models_dir.to_owned(),
        jobs_db: jobs_db.to_owned(),
        ..x402_gateway::GatewayConfig::new(payment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_state_reads_back_what_it_wrote_and_says_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = DevState::read(dir.path()).unwrap_err();
        assert!(missing.contains("is `x402 dev` running?"), "{missing}");
        let state = DevState {
            rpc_url: "http://127.0.0.1:8545".into(),
            chain_id: 84532,
            network: "eip155:84532".into(),
            asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".into(),
            asset_name: "USDC".into(),
            asset_version: "2".into(),
            decimals: 6,
            pay_to: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
            payer_private_keys: vec!["0x01".into()],
            payer_addresses: vec!["0x02".into()],
            facilitator_address: "0x03".into(),
            wallet_factory: "0x04".into(),
            facilitator_url: "http://127.0.0.1:8402".into(),
            gateway_url: "http://127.0.0.1:8080".into(),
            operator_token: "0xabc".into(),
            anvil_pid: Some(7),
            pid: 8,
            solana: Some(SolanaDevState {
                solana_rpc_url: "http://127.0.0.1:8899".into(),
                solana_network: "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1".into(),
                solana_mint: "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU".into(),
                solana_pay_to: "Pay".into(),
                solana_fee_payer: "Fee".into(),
                solana_payer_keys: vec!["Key".into()],
                solana_pid: Some(9),
            }),
        };
        std::fs::write(
            dir.path().join("dev.json"),
            serde_json::to_vec(&state).unwrap(),
        )
        .unwrap();
        assert_eq!(DevState::read(dir.path()).unwrap(), state);
        let written = serde_json::to_value(&state).unwrap();
        assert_eq!(
            written["solana_network"],
            "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"
        );
        // A dev.json without the Solana chain still reads.
        let without = DevState {
            solana: None,
            ..state.clone()
        };
        std::fs::write(
            dir.path().join("dev.json"),
            serde_json::to_vec(&without).unwrap(),
        )
        .unwrap();
        assert_eq!(DevState::read(dir.path()).unwrap(), without);
        std::fs::write(dir.path().join("dev.json"), b"{}").unwrap();
        assert!(
            DevState::read(dir.path())
                .unwrap_err()
                .contains("restart `x402 dev`")
        );
    }

    /// Every chain id `x402 dev` accepts gives a stack whose token, facilitator and clients
    /// agree: a payment signed as the official clients do (the SDK's default asset for the
    /// network) settles through the dev facilitator, which serves batch-settlement as its
    /// receiver authorizer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_accepted_chain_id_settles_a_payment() {
        let ids: Vec<u64> = x402_evm::default_assets()
            .filter_map(|a| a.network.evm_chain_id())
            .collect();
        assert!(ids.contains(&84532), "{ids:?}");
        for id in ids {
            let chain = x402_testkit::Chain::start_with(devnet_config(id, None, 4)).await;
            let usdc = x402_evm::default_asset(&x402_proto::Network::eip155(id)).unwrap();
            assert_eq!(chain.devnet.token().address, usdc.address, "chain {id}");
            let dir = tempfile::tempdir().unwrap();
            let mut config = facilitator_config(&chain.devnet, 0, &dir.path().join("f.db"), None);
            let key_file = write_dev_authorizer_key(&chain.devnet, dir.path()).unwrap();
            config.batch_settlement.receiver_authorizer_key_file = Some(key_file);
            let facilitator =
                x402_facilitator::start(&config, chain.devnet.facilitator().signer.clone())
                    .await
                    .unwrap();
            // batch-settlement is served, the dev facilitator its receiver authorizer.
            let supported = x402_proto::Facilitator::supported(facilitator.service())
                .await
                .unwrap();
            let authorizer = chain.devnet.facilitator().address.to_checksum(None);
            assert!(
                supported.kinds.iter().any(|kind| {
                    kind.scheme == x402_proto::Scheme::BATCH_SETTLEMENT
                        && kind.extra.as_ref().unwrap()["receiverAuthorizer"] == authorizer
                }),
                "chain {id}: {supported:?}"
            );
            let requirements = chain.requirements(1_000);
            let payer = &chain.devnet.payers()[0].signer;
            let request = x402_testkit::v2_request(
                &x402_testkit::honest_payment(payer, &requirements),
                &requirements,
            );
            let receipt = facilitator.service().settle(&request, None).await.unwrap();
            assert!(receipt.success, "chain {id}: {receipt:?}");
            facilitator.shutdown().await;
        }
    }
}
