//! Helpers shared by the workspace's integration tests: a devnet with an `exact` scheme
//! connected to it and our facilitator ([`Chain`], [`start_facilitator`]), builders for honest
//! and dishonest payments, smart-wallet payers, re-encodings of a payment, and a scripted
//! [`MockFacilitator`].

mod chain;
mod json;
mod mock;
mod official_sdks;
mod payments;
mod process;
mod reencode;
mod shop;
mod smart_wallet;
mod verdicts;

pub use chain::*;
pub use json::*;
pub use mock::*;
pub use official_sdks::*;
pub use payments::*;
pub use process::*;
pub use reencode::*;
pub use shop::*;
pub use smart_wallet::*;
pub use verdicts::*;
