//! A local EVM chain that looks like Base to x402 software: anvil on a free port, our
//! EIP-3009 token at the Base USDC address posing as "USD Coin" version "2", a Multicall3 at its
//! canonical address (the official facilitator uses it to diagnose failed simulations), a
//! factory of our minimal ERC-1271 smart wallet (for ERC-6492 counterfactual payers), Uniswap's
//! Permit2 at its canonical address (deployed by CREATE2, code read from npm at install time),
//! our clean-room x402 Permit2 proxies (`exact` and `upto`) at the addresses official clients
//! sign for, our clean-room `batch-settlement` escrow and its EIP-3009 and Permit2 deposit
//! collectors at theirs, and funded payer accounts. Used by tests and by `x402 dev`.

mod anvil;
mod artifacts;
mod devnet;
mod permit2;
mod solana;

pub use anvil::{AnvilProcess, find_anvil};
pub use artifacts::{
    Artifact, BATCH_SETTLEMENT_ADDRESS, BATCH_SETTLEMENT_ARTIFACT,
    ERC3009_DEPOSIT_COLLECTOR_ADDRESS, ERC3009_DEPOSIT_COLLECTOR_ARTIFACT,
    EXACT_PERMIT2_PROXY_ADDRESS, EXACT_PERMIT2_PROXY_ARTIFACT, MULTICALL3_ADDRESS,
    MULTICALL3_ARTIFACT, PERMIT2_DEPOSIT_COLLECTOR_ADDRESS, PERMIT2_DEPOSIT_COLLECTOR_ARTIFACT,
    TOKEN_ARTIFACT, UPTO_PERMIT2_PROXY_ADDRESS, UPTO_PERMIT2_PROXY_ARTIFACT, WALLET_ARTIFACT,
    WALLET_FACTORY_ADDRESS, WALLET_FACTORY_ARTIFACT,
};
pub use devnet::{BASE_USDC, DevAccount, DevToken, Devnet, DevnetConfig, DevnetError};
pub use permit2::{
    CREATE2_DEPLOYER, PERMIT2_ADDRESS, PERMIT2_INITCODE_HASH, PERMIT2_SALT, create2_address,
    create2_calldata, permit2_initcode,
};
pub use solana::{SolanaChain, SolanaChainConfig, SolanaChainState, find_solana_front};
