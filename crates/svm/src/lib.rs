//! The x402 `exact` scheme on Solana (SVM): an SPL `TransferChecked` in a transaction whose fee
//! the facilitator pays.
//!
//! - [`build_payment`] builds and partially signs the transaction as the official
//!   `@x402/svm` 2.27 client does (same instructions, same account order, same memo), and
//!   [`ExactSvmPayload`] carries it on the wire.
//! - [`DecodedPayment::decode`] reads a payload back; [`check_payment`] runs the official
//!   facilitator's local checks in its order, each refusal a [`VerifyError`] with the SDK's
//!   reason code ([`VerifyError::reason`], the one place errors meet wire codes).
//! - [`ExactSvmScheme`] adds the chain: simulation for verify, and the fee payer's co-signature
//!   for settlement, over [`SolanaRpc`], our small JSON-RPC client.
//! - [`ExactSvmClient`] pays `exact` Solana offers as a paying client's scheme plug-in.

mod build;
mod client;
mod error;
mod facilitator;
mod payload;
mod rpc;
mod scheme;
mod verify;

pub use build::{PaymentTransaction, build_payment, random_memo};
pub use client::ExactSvmClient;
pub use error::VerifyError;
pub use facilitator::{ExactSvmFacilitator, SettlePolicy};
pub use payload::{DecodedPayment, ExactSvmPayload};
pub use rpc::{
    AccountInfo, LatestBlockhash, RpcError, SignatureStatus, SimulationOutcome, SolanaRpc,
};
pub use scheme::{ExactSvmScheme, FeePayers, Landing, VerifiedPayment};
pub use solana_hash::Hash;
pub use solana_keypair::Keypair;
pub use solana_pubkey::Pubkey;
pub use solana_signer::Signer;
pub use verify::{CheckedPayment, PaymentTerms, Refused, VerifyLimits, check_payment};

/// The SPL Token program.
pub const TOKEN_PROGRAM: Pubkey =
    Pubkey::from_str_const("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA");
/// The Token-2022 program.
pub const TOKEN_2022_PROGRAM: Pubkey =
    Pubkey::from_str_const("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb");
/// The Compute Budget program.
pub const COMPUTE_BUDGET_PROGRAM: Pubkey =
    Pubkey::from_str_const("ComputeBudget111111111111111111111111111111");
/// The Memo program (v3) the official client writes its memo with.
pub const MEMO_PROGRAM: Pubkey =
    Pubkey::from_str_const("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr");
/// Phantom's Lighthouse guard program, allowed after the transfer.
pub const LIGHTHOUSE_PROGRAM: Pubkey =
    Pubkey::from_str_const("L2TExMFKdjpN9kozasaurPirfHy9P8sbXoAN1qA3S95");

/// The compute-unit limit the official client sets.
pub const DEFAULT_COMPUTE_UNIT_LIMIT: u32 = 20_000;
/// The compute-unit price (µlamports) the official client sets.
pub const DEFAULT_COMPUTE_UNIT_PRICE_MICROLAMPORTS: u64 = 1;
/// The highest compute-unit price (µlamports) the official facilitator accepts by default.
pub const MAX_COMPUTE_UNIT_PRICE_MICROLAMPORTS: u64 = 5_000_000;
/// The longest seller memo the official client writes, in bytes.
pub const MAX_MEMO_BYTES: usize = 256;

/// Solana mainnet, as CAIP-2.
pub const SOLANA_MAINNET: &str = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp";
/// Solana devnet, as CAIP-2.
pub const SOLANA_DEVNET: &str = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1";
/// Solana testnet, as CAIP-2.
pub const SOLANA_TESTNET: &str = "solana:4uhcVJyU9pJkvQyS88uRDiswHXSCkY3z";

/// USDC's mint on `network` (CAIP-2 or v1 name), the official SDK's default asset there.
pub fn usdc_mint(network: &str) -> Option<Pubkey> {
    match network {
        SOLANA_MAINNET | "solana" => Some(Pubkey::from_str_const(
            "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
        )),
        SOLANA_DEVNET | SOLANA_TESTNET | "solana-devnet" | "solana-testnet" => Some(
            Pubkey::from_str_const("4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU"),
        ),
        _ => None,
    }
}

/// The associated token account of `owner` for `mint` under `token_program`.
pub fn associated_token_account(owner: &Pubkey, mint: &Pubkey, token_program: &Pubkey) -> Pubkey {
    spl_associated_token_account_interface::address::get_associated_token_address_with_program_id(
        owner,
        mint,
        token_program,
    )
}
