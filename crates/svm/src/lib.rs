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
mod sends;
mod verify;

pub use build::{PaymentTransaction, build_payment, build_payment_with, random_memo};
pub use client::ExactSvmClient;
pub use error::VerifyError;
pub use facilitator::{ExactSvmFacilitator, SettlePolicy};
pub use payload::{DecodedPayment, ExactSvmPayload};
pub use rpc::{
    AccountInfo, LatestBlockhash, RpcError, SignatureStatus, SimulationOutcome, SolanaRpc,
};
pub use scheme::{ExactSvmScheme, FeePayers, Landing, VerifiedPayment};
pub use sends::{MemorySvmLog, SvmSend, SvmSendLog};
pub use solana_hash::Hash;
pub use solana_instruction::{AccountMeta, Instruction};
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

/// Reads a Solana secret key as Solana tools write it: base58 of the 64-byte secret (what
/// wallets export), or the Solana CLI's key file, a JSON array of those 64 bytes. The error
/// never contains the key.
pub fn parse_keypair(text: &str) -> Result<Keypair, String> {
    let text = text.trim();
    let keypair = if text.starts_with('[') {
        let bytes: Vec<u8> = serde_json::from_str(text)
            .map_err(|_| "a JSON key file holds an array of 64 numbers from 0 to 255".to_owned())?;
        Keypair::try_from(bytes.as_slice())
    } else {
        let mut bytes = [0u8; 64];
        match bs58::decode(text).onto(&mut bytes[..]) {
            Ok(64) => Keypair::try_from(&bytes[..]),
            _ => return Err("not base58 of a 64-byte secret key".to_owned()),
        }
    };
    keypair.map_err(|_| "the 64 bytes are not a secret key followed by its public key".to_owned())
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn keys_are_read_as_base58_or_as_the_cli_json_array() {
        let key = Keypair::new();
        let from_base58 = parse_keypair(&format!(" {}\n", key.to_base58_string())).unwrap();
        assert_eq!(from_base58.pubkey(), key.pubkey());
        let json = serde_json::to_string(&key.to_bytes().to_vec()).unwrap();
        assert_eq!(parse_keypair(&json).unwrap().pubkey(), key.pubkey());
        for bad in ["", "xyz0", "[1,2,3]", &key.pubkey().to_string(), "[300]"] {
            assert!(parse_keypair(bad).is_err(), "{bad}");
        }
        let mut mismatched = key.to_bytes();
        mismatched[40] ^= 1;
        let error = parse_keypair(&bs58::encode(mismatched).into_string()).unwrap_err();
        assert!(!error.contains(&key.to_base58_string()));
    }
}
