//! What the cost bench reads and writes on the devnet: token balances watched across a run,
//! the gas of mined transactions, and calls to the `batch-settlement` escrow sent from the
//! facilitator account.

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use anyhow::{Context, ensure};
use x402_devnet::Devnet;

/// The escrow's calls the bench makes, as its ABI has them. Its structs are spelled as tuples,
/// which encode alike: a `ChannelConfig` is `(payer, payerAuthorizer, receiver,
/// receiverAuthorizer, token, withdrawDelay, salt)` (`x402_evm`'s typed one converts with
/// `to_sol().into()`), a `VoucherClaim` is `((channel, maxClaimableAmount), signature,
/// totalClaimed)`.
pub(super) mod escrow {
    alloy::sol! {
        function deposit((address, address, address, address, address, uint40, bytes32) config, uint128 amount, address collector, bytes collectorData) external;
        function claimWithSignature((((address, address, address, address, address, uint40, bytes32), uint128), bytes, uint128)[] voucherClaims, bytes authorizerSignature) external;
        function settle(address receiver, address token) external;
        function refundWithSignature((address, address, address, address, address, uint40, bytes32) config, uint128 amount, uint256 nonce, bytes receiverAuthorizerSignature) external;
        function channels(bytes32 channelId) external view returns (uint128 balance, uint128 totalClaimed);
        function refundNonce(bytes32 channelId) external view returns (uint256);
    }
}

/// An account's balance of the devnet token, watched from the moment it was read.
pub(super) struct Balance {
    owner: Address,
    at_start: U256,
}

impl Balance {
    /// `owner`'s balance now.
    pub(super) async fn watch(devnet: &Devnet, owner: Address) -> anyhow::Result<Self> {
        let mut balance = Self {
            owner,
            at_start: U256::ZERO,
        };
        balance.at_start = balance.now(devnet).await?;
        Ok(balance)
    }

    /// The balance now.
    async fn now(&self, devnet: &Devnet) -> anyhow::Result<U256> {
        Ok(devnet
            .balance_of(devnet.token().address, self.owner)
            .await?)
    }

    /// How much the balance rose since it was watched (an error if it fell).
    pub(super) async fn rise(&self, devnet: &Devnet) -> anyhow::Result<U256> {
        let now = self.now(devnet).await?;
        now.checked_sub(self.at_start)
            .with_context(|| format!("{}'s balance fell to {now}", self.owner))
    }

    /// How much the balance fell since it was watched (an error if it rose).
    pub(super) async fn fall(&self, devnet: &Devnet) -> anyhow::Result<U256> {
        let now = self.now(devnet).await?;
        self.at_start
            .checked_sub(now)
            .with_context(|| format!("{}'s balance rose to {now}", self.owner))
    }
}

/// The gas the mined transaction `hash` used.
pub(super) async fn gas_of(devnet: &Devnet, hash: B256) -> anyhow::Result<u64> {
    let mined = devnet
        .provider()
        .get_transaction_receipt(hash)
        .await?
        .context("no receipt")?;
    ensure!(mined.status(), "transaction {hash} reverted");
    Ok(mined.gas_used)
}

/// Sends `call` to `to` from the facilitator account, waits until it is mined, and returns
/// the gas it used (an error if it reverted).
pub(super) async fn send<C: SolCall>(devnet: &Devnet, to: Address, call: C) -> anyhow::Result<u64> {
    let pending = devnet
        .provider()
        .send_transaction(request(to, &call))
        .await
        .with_context(|| format!("sending {}", C::SIGNATURE))?;
    let hash = pending.watch().await?;
    gas_of(devnet, hash)
        .await
        .with_context(|| C::SIGNATURE.to_owned())
}

/// What the view `call` of `to` returns.
pub(super) async fn view<C: SolCall>(
    devnet: &Devnet,
    to: Address,
    call: C,
) -> anyhow::Result<C::Return> {
    let out = devnet.provider().call(request(to, &call)).await?;
    Ok(C::abi_decode_returns(&out)?)
}

/// A transaction to `to` carrying `call`.
fn request<C: SolCall>(to: Address, call: &C) -> TransactionRequest {
    TransactionRequest::default()
        .with_to(to)
        .with_input(call.abi_encode())
}

/// The gas of `owner`'s transaction in the latest block (its Permit2 approval).
pub(super) async fn latest_gas_of(devnet: &Devnet, owner: Address) -> anyhow::Result<u64> {
    let block = devnet
        .provider()
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .full()
        .await?
        .context("no latest block")?;
    let tx = block
        .transactions
        .txns()
        .find(|tx| tx.inner.signer() == owner)
        .context("the approval is not in the latest block")?;
    gas_of(devnet, *tx.inner.tx_hash()).await
}
