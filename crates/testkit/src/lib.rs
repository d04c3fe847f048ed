//! Helpers shared by the workspace's integration tests: a devnet with an `exact` scheme
//! connected to it ([`Chain`]) and our facilitator serving it ([`Stack`]), builders for honest
//! and dishonest payments, verdict assertions, smart-wallet payers, re-encodings of a payment,
//! a scripted [`MockFacilitator`], a cuttable RPC [`Proxy`], a token without EIP-3009 paid
//! through Permit2, the official SDKs as peers, and a throwaway Postgres database
//! ([`TempDatabase`]); the local Solana chain and Solana payers ([`Solana`]).

mod batch;
mod chain;
mod json;
mod mock;
mod official_sdks;
mod payments;
mod plain_token;
mod postgres;
mod process;
mod proxy;
mod reencode;
mod smart_wallet;
mod stack;
mod svm;
mod svm_payer;
mod verdicts;

pub use batch::{BatchPayer, CountingFacilitator};
pub use chain::*;
pub use json::*;
pub use mock::*;
pub use official_sdks::*;
pub use payments::*;
pub use plain_token::*;
pub use postgres::{TempDatabase, postgres_server};
pub use process::*;
pub use proxy::*;
pub use reencode::*;
pub use smart_wallet::*;
pub use stack::*;
pub use svm::*;
pub use svm_payer::*;
pub use verdicts::*;
