//! The fees a settlement transaction offers, and what a replacement must offer.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fees {
    pub(super) max_fee_per_gas: u128,
    pub(super) max_priority_fee_per_gas: u128,
}

impl Fees {
    /// The fees to offer from the node's gas price and suggested tip: twice the price
    /// survives several blocks of base fee increases.
    pub(super) fn from_node(gas_price: u128, priority: u128) -> Self {
        let max_fee = gas_price.saturating_mul(2).max(1);
        Self {
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: priority.min(max_fee),
        }
    }
}

/// The fee questions of a batch: `eth_gasPrice` and `eth_maxPriorityFeePerGas`.
pub(super) struct FeeCalls {
    gas_price: Waiter<U256>,
    priority: Waiter<U256>,
}

impl FeeCalls {
    /// Adds the fee questions to `batch`.
    pub(super) fn add(batch: &mut BatchRequest<'_>) -> Result<Self, SettleError> {
        Ok(Self {
            gas_price: batch
                .add_call("eth_gasPrice", &())
                .map_err(chain_unavailable)?,
            priority: batch
                .add_call("eth_maxPriorityFeePerGas", &())
                .map_err(chain_unavailable)?,
        })
    }

    /// The fees to offer, once the batch is sent.
    pub(super) async fn fees(self) -> Result<Fees, SettleError> {
        let gas_price: u128 = self
            .gas_price
            .await
            .map_err(chain_unavailable)?
            .saturating_to();
        // Not every node serves eth_maxPriorityFeePerGas; a tip of zero still gets mined.
        let priority: u128 = self.priority.await.map(|p| p.saturating_to()).unwrap_or(0);
        Ok(Fees::from_node(gas_price, priority))
    }
}

/// `fee` raised by an eighth (rounded up, at least 1 wei): above the 10% nodes require of a
/// replacement.
pub(super) fn bump_fee(fee: u128) -> u128 {
    fee.saturating_add(fee.div_ceil(8).max(1))
}

/// The fees of a replacement for a transaction that offered `old`: both raised by at least
/// an eighth, up to what the node suggests now (`current`), never above `cap`. `None` when
/// the minimum raise would pass the cap.
pub(super) fn bumped_fees(old: Fees, current: Fees, cap: u128) -> Option<Fees> {
    let min_max_fee = bump_fee(old.max_fee_per_gas);
    let min_tip = bump_fee(old.max_priority_fee_per_gas);
    if min_max_fee > cap || min_tip > cap {
        return None;
    }
    let max_fee_per_gas = min_max_fee.max(current.max_fee_per_gas).min(cap);
    let max_priority_fee_per_gas = min_tip
        .max(current.max_priority_fee_per_gas)
        .min(max_fee_per_gas);
    Some(Fees {
        max_fee_per_gas,
        max_priority_fee_per_gas,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GWEI: u128 = crate::GWEI;

    fn fees(max_fee_per_gas: u128, max_priority_fee_per_gas: u128) -> Fees {
        Fees {
            max_fee_per_gas,
            max_priority_fee_per_gas,
        }
    }

    #[test]
    fn a_bump_raises_both_fees_by_an_eighth_at_least() {
        let old = fees(8 * GWEI, 2 * GWEI);
        let bumped = bumped_fees(old, fees(1, 0), 100 * GWEI).unwrap();
        assert_eq!(bumped, fees(9 * GWEI, 2 * GWEI + GWEI / 4));
        // Nodes want +10% on both: an eighth clears it, rounding up.
        for fee in [0u128, 1, 7, 9, 10, 1_000_000_001] {
            let raised = bump_fee(fee);
            assert!(raised > fee, "{fee}");
            assert!(raised * 100 >= fee * 112, "{fee} -> {raised}");
        }
    }

    #[test]
    fn a_bump_follows_the_node_when_it_asks_for_more() {
        let old = fees(2 * GWEI, GWEI);
        let bumped = bumped_fees(old, fees(60 * GWEI, 3 * GWEI), 100 * GWEI).unwrap();
        assert_eq!(bumped, fees(60 * GWEI, 3 * GWEI));
    }

    #[test]
    fn a_bump_never_passes_the_cap() {
        let old = fees(2 * GWEI, GWEI);
        let bumped = bumped_fees(old, fees(500 * GWEI, 400 * GWEI), 100 * GWEI).unwrap();
        assert_eq!(bumped, fees(100 * GWEI, 100 * GWEI));
        // At the cap there is nothing left to raise.
        assert_eq!(bumped_fees(bumped, fees(1, 0), 100 * GWEI), None);
        // Nor when an eighth more would pass it.
        assert_eq!(
            bumped_fees(fees(90 * GWEI, GWEI), fees(1, 0), 100 * GWEI),
            None
        );
    }
}
