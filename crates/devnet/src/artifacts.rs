//! The compiled contracts committed under `contracts/out/`.

use alloy::primitives::{Address, Bytes, address};
use serde::Deserialize;

/// Where Multicall3 lives on every chain that has it (and on our devnet).
pub const MULTICALL3_ADDRESS: Address = address!("cA11bde05977b3631167028862bE2a173976CA11");

/// Where the devnet places [`WALLET_FACTORY_ARTIFACT`] (an address of our choosing; the
/// factory has no constructor, so its runtime code works anywhere).
pub const WALLET_FACTORY_ADDRESS: Address = address!("4020000000000000000000000000000000006492");

/// A compiled contract.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// The contract's name.
    pub contract_name: String,
    /// sha256 of the source it was compiled from.
    pub source_sha256: String,
    /// Creation code.
    pub bytecode: Bytes,
    /// Runtime code, as placed with `anvil_setCode`.
    pub deployed_bytecode: Bytes,
}

/// Our USDC-compatible EIP-3009 token (`contracts/src/X402Token.sol`).
pub const TOKEN_ARTIFACT: &str = include_str!("../../../contracts/out/X402Token.json");
/// Our Multicall3-compatible contract (`contracts/src/Multicall3.sol`).
pub const MULTICALL3_ARTIFACT: &str = include_str!("../../../contracts/out/Multicall3.json");
/// Our minimal ERC-1271 smart wallet (`contracts/src/X402Wallet.sol`).
pub const WALLET_ARTIFACT: &str = include_str!("../../../contracts/out/X402Wallet.json");
/// The CREATE2 factory of [`WALLET_ARTIFACT`] wallets (`contracts/src/X402WalletFactory.sol`).
pub const WALLET_FACTORY_ARTIFACT: &str =
    include_str!("../../../contracts/out/X402WalletFactory.json");

/// Our `exact`-with-Permit2 proxy (`contracts/src/X402Permit2Proxies.sol`).
pub const EXACT_PERMIT2_PROXY_ARTIFACT: &str =
    include_str!("../../../contracts/out/X402ExactPermit2Proxy.json");
/// Where official x402 clients send `exact` payments made with Permit2 (the same on every
/// chain); the devnet places [`EXACT_PERMIT2_PROXY_ARTIFACT`] there.
pub const EXACT_PERMIT2_PROXY_ADDRESS: Address =
    address!("402085c248EeA27D92E8b30b2C58ed07f9E20001");

/// Our `upto` proxy (`contracts/src/X402Permit2Proxies.sol`).
pub const UPTO_PERMIT2_PROXY_ARTIFACT: &str =
    include_str!("../../../contracts/out/X402UptoPermit2Proxy.json");
/// Where official x402 clients send `upto` payments (the same on every chain); the devnet
/// places [`UPTO_PERMIT2_PROXY_ARTIFACT`] there.
pub const UPTO_PERMIT2_PROXY_ADDRESS: Address =
    address!("4020A4f3b7b90ccA423B9fabCc0CE57C6C240002");

/// Our batch-settlement escrow (`contracts/src/X402BatchSettlement.sol`).
pub const BATCH_SETTLEMENT_ARTIFACT: &str =
    include_str!("../../../contracts/out/X402BatchSettlement.json");
/// Where official x402 clients find the `batch-settlement` escrow (the same on every chain); the
/// devnet places [`BATCH_SETTLEMENT_ARTIFACT`] there.
pub const BATCH_SETTLEMENT_ADDRESS: Address = address!("4020074e9dF2ce1deE5A9C1b5c3f541D02a10003");

/// Our EIP-3009 deposit collector (`contracts/src/X402DepositCollectors.sol`).
pub const ERC3009_DEPOSIT_COLLECTOR_ARTIFACT: &str =
    include_str!("../../../contracts/out/ERC3009DepositCollector.json");
/// Where official x402 clients send `batch-settlement` deposits made with EIP-3009 (the `to` of
/// the payer's `ReceiveWithAuthorization`); the devnet places
/// [`ERC3009_DEPOSIT_COLLECTOR_ARTIFACT`] there.
pub const ERC3009_DEPOSIT_COLLECTOR_ADDRESS: Address =
    address!("4020806089470a89826cB9fB1f4059150b550004");

/// Our Permit2 deposit collector (`contracts/src/X402DepositCollectors.sol`).
pub const PERMIT2_DEPOSIT_COLLECTOR_ARTIFACT: &str =
    include_str!("../../../contracts/out/Permit2DepositCollector.json");
/// The spender of `batch-settlement` deposits made with Permit2; the devnet places
/// [`PERMIT2_DEPOSIT_COLLECTOR_ARTIFACT`] there.
pub const PERMIT2_DEPOSIT_COLLECTOR_ADDRESS: Address =
    address!("4020425FAf3B746C082C2f942b4E5159887B0005");

impl Artifact {
    /// Parses one of the committed artifacts.
    pub fn parse(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_artifacts_parse_and_hold_runtime_code() {
        for json in [
            TOKEN_ARTIFACT,
            MULTICALL3_ARTIFACT,
            WALLET_ARTIFACT,
            WALLET_FACTORY_ARTIFACT,
            EXACT_PERMIT2_PROXY_ARTIFACT,
            UPTO_PERMIT2_PROXY_ARTIFACT,
            BATCH_SETTLEMENT_ARTIFACT,
            ERC3009_DEPOSIT_COLLECTOR_ARTIFACT,
            PERMIT2_DEPOSIT_COLLECTOR_ARTIFACT,
        ] {
            let artifact = Artifact::parse(json).unwrap();
            assert!(
                artifact.deployed_bytecode.len() > 1000,
                "{}",
                artifact.contract_name
            );
            assert_eq!(artifact.source_sha256.len(), 64);
        }
    }
}
