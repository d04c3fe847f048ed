//! What the tests on the local Solana chain share: the inputs of a payment our builder signs.

use x402_devnet::SolanaChainState;
use x402_svm::{DEFAULT_COMPUTE_UNIT_LIMIT, PaymentTransaction, Pubkey, SolanaRpc, random_memo};

/// A base58 address of the chain's ready line.
pub(crate) fn address(text: &str) -> Pubkey {
    text.parse().unwrap()
}

/// A transfer of `amount` of the chain's USDC to its `payTo`, on its latest blockhash, with a
/// random memo, at `compute_unit_price` µlamports per compute unit.
pub(crate) async fn transfer(
    state: &SolanaChainState,
    rpc: &SolanaRpc,
    amount: u64,
    compute_unit_price: u64,
) -> PaymentTransaction {
    PaymentTransaction {
        fee_payer: address(&state.fee_payer),
        mint: address(&state.mint),
        token_program: address(&state.token_program),
        decimals: state.decimals,
        pay_to: address(&state.pay_to),
        amount,
        recent_blockhash: rpc.latest_blockhash().await.unwrap().blockhash,
        memo: random_memo(),
        compute_unit_limit: DEFAULT_COMPUTE_UNIT_LIMIT,
        compute_unit_price,
    }
}
