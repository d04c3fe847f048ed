//! Reading a wallet's token balance from a chain (one `eth_call` of `balanceOf`).

use serde_json::{Value, json};
use x402_proto::{TokenAmount, U256};

/// Why a balance could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BalanceError {
    /// The RPC endpoint could not be reached or answered badly.
    #[error("cannot reach the chain: {0}")]
    Http(#[from] reqwest::Error),
    /// The node refused the call or answered something that is not a quantity.
    #[error("the chain answered {0}")]
    Rpc(String),
}

/// The `asset` (ERC-20) balance of `owner`, in atomic units, from the node at `rpc_url`.
pub async fn token_balance(
    http: &reqwest::Client,
    rpc_url: &str,
    asset: &str,
    owner: &str,
) -> Result<TokenAmount, BalanceError> {
    let owner = owner.trim_start_matches("0x").to_lowercase();
    let call = json!({"to": asset, "data": format!("0x70a08231{owner:0>64}")});
    let answer: Value = http
        .post(rpc_url)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [call, "latest"]}))
        .send()
        .await?
        .json()
        .await?;
    let hex = answer["result"]
        .as_str()
        .ok_or_else(|| BalanceError::Rpc(answer.to_string()))?
        .trim_start_matches("0x");
    U256::from_str_radix(if hex.is_empty() { "0" } else { hex }, 16)
        .map(TokenAmount)
        .map_err(|e| BalanceError::Rpc(e.to_string()))
}
