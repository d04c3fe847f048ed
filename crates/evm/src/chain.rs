//! How to reach one EVM chain, and how often to look for receipts there.

use std::time::Duration;

use alloy::primitives::Address;
use alloy::transports::http::reqwest::Url;
use x402_proto::Network;

/// One EVM chain a facilitator settles on.
#[derive(Clone, Debug)]
pub struct ChainConfig {
    /// Its CAIP-2 id (`eip155:8453`).
    pub network: Network,
    /// Its chain id.
    pub chain_id: u64,
    /// The JSON-RPC endpoint.
    pub rpc_url: Url,
    /// The chain's block time; measured from recent blocks when `None`.
    pub block_time: Option<Duration>,
    /// How long settle waits for a receipt before answering `settlement_pending`.
    pub receipt_timeout: Duration,
    /// The factories an undeployed (ERC-6492) payer's wallet may come from. Empty (the
    /// default) refuses every counterfactual payer with `eip6492_factory_not_allowed`.
    pub eip6492_allowed_factories: Vec<Address>,
    /// When and how far a settlement transaction left unmined may be re-priced.
    pub fee_bump: FeeBumpPolicy,
}

/// How a settlement transaction that sits unmined (underpriced) is replaced: same nonce, same
/// call, higher fees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeeBumpPolicy {
    /// How long a transaction may wait unmined before it is replaced; three block times (at
    /// least 3 s) when `None`.
    pub stuck_after: Option<Duration>,
    /// How many replacements one transaction may get.
    pub max_bumps: u32,
    /// The highest `maxFeePerGas` a replacement may offer, in wei.
    pub max_fee_per_gas_cap: u128,
}

/// One gwei in wei.
pub const GWEI: u128 = 1_000_000_000;

impl Default for FeeBumpPolicy {
    /// Three block times, three bumps, at most 200 gwei.
    fn default() -> Self {
        Self {
            stuck_after: None,
            max_bumps: 3,
            max_fee_per_gas_cap: 200 * GWEI,
        }
    }
}

impl FeeBumpPolicy {
    /// `stuck_after`, or its default for a chain with `block_time`.
    pub fn stuck_after_for(&self, block_time: Duration) -> Duration {
        self.stuck_after
            .unwrap_or_else(|| (block_time * 3).max(Duration::from_secs(3)))
    }
}

impl ChainConfig {
    /// A chain at `rpc_url` with the defaults: block time measured, 30 s receipt wait, no
    /// ERC-6492 factory allowed, the default fee bumps.
    pub fn new(chain_id: u64, rpc_url: Url) -> Self {
        Self {
            network: Network::eip155(chain_id),
            chain_id,
            rpc_url,
            block_time: None,
            receipt_timeout: Duration::from_secs(30),
            eip6492_allowed_factories: Vec::new(),
            fee_bump: FeeBumpPolicy::default(),
        }
    }
}

/// How often to poll for a receipt on a chain with `block_time`: a tenth of a block, between
/// 10 ms and 250 ms. A receipt is then seen within a small fraction of a block of being mined
/// (peers poll every 4–7 s whatever the chain, which is where their settle latency goes).
pub fn poll_interval_for(block_time: Duration) -> Duration {
    (block_time / 10).clamp(Duration::from_millis(10), Duration::from_millis(250))
}

/// Waits between receipt polls that adapt: the first soon after sending (an automining chain
/// or a fast sequencer has the receipt within milliseconds), then doubling up to the chain's
/// poll interval, so a slow chain is not asked more often than its blocks come.
#[derive(Debug, Clone)]
pub struct PollBackoff {
    next: Duration,
    cap: Duration,
}

impl PollBackoff {
    /// The first wait.
    pub const FIRST: Duration = Duration::from_millis(5);

    /// Waits starting at [`Self::FIRST`] and growing to `cap`.
    pub fn new(cap: Duration) -> Self {
        Self {
            next: Self::FIRST.min(cap),
            cap,
        }
    }

    /// The next wait.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.cap);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_polls_start_soon_and_back_off_to_the_chain_interval() {
        let mut backoff = PollBackoff::new(Duration::from_millis(200));
        let waits: Vec<u64> = (0..8)
            .map(|_| backoff.next_wait().as_millis() as u64)
            .collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 200, 200]);
        let mut tiny = PollBackoff::new(Duration::from_millis(2));
        assert_eq!(tiny.next_wait(), Duration::from_millis(2));
    }

    #[test]
    fn poll_interval_follows_block_time() {
        assert_eq!(
            poll_interval_for(Duration::from_secs(2)),
            Duration::from_millis(200)
        );
        assert_eq!(
            poll_interval_for(Duration::from_secs(12)),
            Duration::from_millis(250)
        );
        assert_eq!(poll_interval_for(Duration::ZERO), Duration::from_millis(10));
    }

    #[test]
    fn stuck_after_defaults_to_three_blocks() {
        let policy = FeeBumpPolicy::default();
        assert_eq!(
            policy.stuck_after_for(Duration::from_secs(12)),
            Duration::from_secs(36)
        );
        assert_eq!(
            policy.stuck_after_for(Duration::ZERO),
            Duration::from_secs(3)
        );
        let set = FeeBumpPolicy {
            stuck_after: Some(Duration::from_millis(500)),
            ..policy
        };
        assert_eq!(
            set.stuck_after_for(Duration::from_secs(12)),
            Duration::from_millis(500)
        );
    }
}
