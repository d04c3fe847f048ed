//! How the local stack is put together: the dev chain for a chain id, the facilitator and
//! gateway configs that serve it. Used by `x402 dev` and by the benchmarks (`x402-bench`).

use std::path::Path;

use x402_devnet::{Devnet, DevnetConfig};
use x402_facilitator::{FacilitatorConfig, NetworkConfig};

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
        database: database.to_owned(),
        database_sync: Default::default(),
        signer: Default::default(),
        auth: Default::default(),
        limits: Default::default(),
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
        }],
    }
}

/// Gateway TOML for `devnet`: listening on `port`, paid in its USDC to its payee, recording
/// jobs in `jobs_db`.
pub fn gateway_toml(devnet: &Devnet, port: u16, models_dir: &Path, jobs_db: &Path) -> String {
    let token = devnet.token();
    format!(
        "listen = \"127.0.0.1:{port}\"\nmodels_dir = {models:?}\njobs_db = {jobs_db:?}\n\n[payment]\npay_to = \"{pay_to}\"\n\n\
         [[payment.accepts]]\nnetwork = \"{network}\"\nasset = \"{asset}\"\ndecimals = {decimals}\n\
         name = {name:?}\nversion = {version:?}\n",
        models = models_dir.display().to_string(),
        jobs_db = jobs_db.display().to_string(),
        pay_to = devnet.pay_to().address.to_checksum(None),
        network = devnet.network(),
        asset = token.address.to_checksum(None),
        decimals = token.decimals,
        name = token.name,
        version = token.version,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every chain id `x402 dev` accepts gives a stack whose token, facilitator and clients
    /// agree: a payment signed as the official clients do (the SDK's default asset for the
    /// network) settles through the dev facilitator.
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
            let config = facilitator_config(&chain.devnet, 0, &dir.path().join("f.db"), None);
            let facilitator =
                x402_facilitator::start(&config, chain.devnet.facilitator().signer.clone())
                    .await
                    .unwrap();
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
