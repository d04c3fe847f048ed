//! `x402 dev`: the local stack, described in `dev.json`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use x402_cli::stack::{
    DevState, SolanaDevState, devnet_config, facilitator_config, solana_network_config,
    write_dev_authorizer_key, write_solana_fee_payer_key,
};
use x402_devnet::{Devnet, SolanaChain, SolanaChainConfig};

use crate::signals::wait_for_shutdown;

/// Options of `x402 dev`.
#[derive(Debug, clap::Args)]
pub(crate) struct DevArgs {
    /// Where to write dev.json (created if missing).
    #[arg(long, value_name = "DIR", default_value = ".x402/dev")]
    state_dir: PathBuf,
    /// Seconds between blocks, like Base's 2 s; by default a block is mined per transaction.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=60))]
    block_time: Option<u64>,
    /// Chain id: a chain whose USDC the official SDKs know (8453 Base, 84532 Base Sepolia, …);
    /// its token is placed at that USDC's address with its EIP-712 name and version.
    #[arg(long, default_value_t = 8453, value_parser = known_chain_id)]
    chain_id: u64,
    /// Number of dev accounts: the facilitator, the payee, and the rest funded payers.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(3..=100))]
    accounts: u32,
    /// Port for the facilitator (0 picks a free one).
    #[arg(long, default_value_t = 8402)]
    facilitator_port: u16,
    /// Port for the inference gateway (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    gateway_port: u16,
    /// Where scripts/install-models.sh put the models.
    #[arg(long, value_name = "DIR", default_value = "models")]
    models_dir: PathBuf,
    /// An OpenAI-compatible API for the gateway's LLM services (e.g.
    /// https://api.groq.com/openai/v1); without it the local model answers them.
    #[arg(long, value_name = "URL", requires = "llm_model")]
    llm_base_url: Option<String>,
    /// The model to ask the LLM upstream for.
    #[arg(long, value_name = "MODEL")]
    llm_model: Option<String>,
    /// The environment variable holding the LLM upstream's API key.
    #[arg(long, value_name = "VAR")]
    llm_api_key_env: Option<String>,
}

pub(crate) async fn run(args: DevArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("creating state dir {}", args.state_dir.display()))?;
    let mut config = devnet_config(args.chain_id, args.block_time, args.accounts);
    if let Err(error) = x402_devnet::permit2_initcode() {
        eprintln!("warning: the dev chain starts without Permit2 ({error})");
        config.permit2 = false;
    }
    eprintln!(
        "starting anvil (chain {}) and placing the token…",
        args.chain_id
    );
    let devnet = Devnet::start(config)
        .await
        .context("starting the dev chain")?;
    eprintln!("starting the local Solana chain (posing as devnet)…");
    let solana = SolanaChain::start(&SolanaChainConfig::default())
        .await
        .context("starting the local Solana chain (tools/solana; npm install in tools/)")?;
    let mut facilitator_config = facilitator_config(
        &devnet,
        args.facilitator_port,
        &args.state_dir.join("facilitator.db"),
        args.block_time,
    );
    // batch-settlement with the facilitator as the receiver authorizer: servers on the dev
    // stack need no key of their own.
    facilitator_config
        .batch_settlement
        .receiver_authorizer_key_file = Some(
        write_dev_authorizer_key(&devnet, &args.state_dir)
            .context("writing the dev receiver-authorizer key")?,
    );
    // exact on the local Solana chain, its fees paid by the chain's funded fee payer.
    let fee_payer_key = write_solana_fee_payer_key(&solana, &args.state_dir)
        .context("writing the dev Solana fee-payer key")?;
    facilitator_config
        .solana_networks
        .push(solana_network_config(&solana, fee_payer_key));
    // One operator token for the gateway and the facilitator's dashboard.
    let operator_token = alloy::primitives::B256::random().to_string();
    facilitator_config.operator_token = Some(x402_proto::Secret::new(&operator_token));
    let facilitator =
        x402_facilitator::start(&facilitator_config, devnet.facilitator().signer.clone())
            .await
            .context("starting the facilitator")?;
    let token = devnet.token();
    let gateway_config = gateway_config(&args, &devnet, solana.state(), &operator_token)?;
    eprintln!(
        "loading the gateway's models from {}…",
        args.models_dir.display()
    );
    let in_process: std::sync::Arc<dyn x402_proto::Facilitator> =
        std::sync::Arc::new(facilitator.service().clone());
    let gateway = crate::gateway::start_with_mcp(&gateway_config, Some(in_process)).await?;
    let state = DevState {
        rpc_url: devnet.rpc_url().to_string(),
        chain_id: devnet.chain_id(),
        network: devnet.network().to_string(),
        asset: token.address.to_checksum(None),
        asset_name: token.name.clone(),
        asset_version: token.version.clone(),
        decimals: token.decimals,
        pay_to: devnet.pay_to().address.to_checksum(None),
        payer_private_keys: devnet
            .payers()
            .iter()
            .map(|a| a.signer.to_bytes().to_string())
            .collect(),
        payer_addresses: devnet
            .payers()
            .iter()
            .map(|a| a.address.to_checksum(None))
            .collect(),
        facilitator_address: devnet.facilitator().address.to_checksum(None),
        wallet_factory: devnet.wallet_factory().to_checksum(None),
        facilitator_url: facilitator.url(),
        gateway_url: gateway.url(),
        operator_token,
        anvil_pid: devnet.anvil_pid(),
        pid: std::process::id(),
        solana: Some(SolanaDevState::of(&solana)),
    };
    let state_file = args.state_dir.join("dev.json");
    write_atomically(&state_file, &serde_json::to_vec_pretty(&state)?)?;
    eprintln!(
        "dev stack ready\n  rpc:         {}\n  facilitator: {}\n  gateway:     {} (GET /catalog, POST /run, MCP at /mcp, GET /metrics; POST /operator/claim with the operator_token of dev.json)\n  dashboards:  {} and {}/dashboard (sign in with the operator_token of dev.json)\n  network:     {}\n  USDC:        {} (\"{}\" v{}, {} decimals)\n  payers:      {} accounts with 1000 USDC each\n  solana:      {} ({}, USDC {}, {} payers)\n  state:       {}\nCtrl-C stops everything.",
        state.rpc_url,
        state.facilitator_url,
        state.gateway_url,
        gateway.dashboard_url(),
        state.facilitator_url,
        state.network,
        state.asset,
        state.asset_name,
        state.asset_version,
        state.decimals,
        state.payer_addresses.len(),
        solana.rpc_url(),
        solana.state().network,
        solana.state().mint,
        solana.state().payer_keys.len(),
        state_file.display(),
    );

    wait_for_shutdown().await?;
    eprintln!("stopping…");
    gateway.shutdown().await;
    facilitator.shutdown().await;
    devnet.stop().await;
    solana.stop().await;
    let _ = std::fs::remove_file(&state_file);
    Ok(())
}

/// Accepts a chain id whose default USDC (or EIP-3009 stablecoin) the official SDKs know.
fn known_chain_id(text: &str) -> Result<u64, String> {
    let id: u64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a chain id (a positive integer)"))?;
    if x402_evm::default_asset(&x402_proto::Network::eip155(id)).is_some() {
        return Ok(id);
    }
    let known: Vec<String> = x402_evm::default_assets()
        .filter_map(|a| a.network.evm_chain_id())
        .map(|id| id.to_string())
        .collect();
    Err(format!(
        "chain {id} has no USDC the official SDKs know, so no client would pay it; use one of {}",
        known.join(", ")
    ))
}

/// The gateway's config for the dev chains: paid in the devnet's USDC to its payee and in the
/// local Solana chain's USDC to its payee, its batch-settlement channels kept (and claimed
/// from) in the state dir, its operator routes behind `operator_token`.
fn gateway_config(
    args: &DevArgs,
    devnet: &Devnet,
    solana: &x402_devnet::SolanaChainState,
    operator_token: &str,
) -> anyhow::Result<x402_gateway::GatewayConfig> {
    let mut config = x402_cli::stack::gateway_config(
        devnet,
        args.gateway_port,
        &args.models_dir,
        &args.state_dir.join("gateway-jobs.db"),
    );
    config.operator_token = Some(x402_proto::Secret::new(operator_token));
    config.payment.solana = Some(x402_gateway::SolanaAcceptConfig {
        network: x402_proto::Network::new(solana.network.clone()),
        pay_to: solana.pay_to.clone(),
        mint: Some(solana.mint.clone()),
        decimals: solana.decimals,
    });
    config.batch_settlement = Some(x402_gateway::BatchSettlementConfig {
        channels_db: args.state_dir.join("gateway-channels.db"),
        ..Default::default()
    });
    if let (Some(base_url), Some(model)) = (&args.llm_base_url, &args.llm_model) {
        for service in ["llm-4090", "llm-a100", "llm-l4", "code-4090", "llm-stream"] {
            let upstream = x402_gateway::UpstreamConfig {
                base_url: base_url.clone(),
                model: model.clone(),
                api_key_env: args.llm_api_key_env.clone(),
            };
            config.services.insert(
                service.to_owned(),
                x402_gateway::ServiceConfig {
                    upstream: Some(upstream),
                    ..Default::default()
                },
            );
        }
    }
    config.check().context("building the gateway config")?;
    Ok(config)
}

/// Writes through a temporary file and a rename, so readers never see half a file.
fn write_atomically(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_chain_ids_are_refused_with_the_list() {
        assert_eq!(known_chain_id("84532"), Ok(84532));
        let error = known_chain_id("31337").unwrap_err();
        assert!(error.contains("8453") && error.contains("84532"), "{error}");
        assert!(
            known_chain_id("base")
                .unwrap_err()
                .contains("not a chain id")
        );
    }
}
