//! Which of a server's offers a client may pay: allowed networks and assets, an order of
//! preference, and a most-per-payment in human units that respects each asset's decimals.

use x402_proto::{Network, Price, Scheme, TokenAmount, U256, v2};

/// An asset the client knows how to value.
#[derive(Clone, Debug, PartialEq)]
pub struct KnownAsset {
    /// CAIP-2 network.
    pub network: Network,
    /// Token address (compared case-insensitively).
    pub address: String,
    /// Decimals, to read amounts in whole units.
    pub decimals: u8,
}

/// The client's rules for choosing an offer.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Assets that may be paid, in order of preference; their networks are the networks
    /// allowed. By default the USDC deployments the official SDKs know: on EVM chains first,
    /// then on Solana (mainnet and devnet).
    pub assets: Vec<KnownAsset>,
    /// The most one payment may cost, in whole units of the asset (USD for USDC).
    pub max_per_payment: Price,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            assets: x402_evm::default_assets()
                .map(|a| KnownAsset {
                    network: a.network,
                    address: a.address.to_checksum(None),
                    decimals: a.decimals,
                })
                .chain(solana_usdc())
                .collect(),
            max_per_payment: "0.10".parse().expect("a valid price"),
        }
    }
}

/// USDC on Solana mainnet and devnet (6 decimals).
fn solana_usdc() -> impl Iterator<Item = KnownAsset> {
    [x402_svm::SOLANA_MAINNET, x402_svm::SOLANA_DEVNET]
        .into_iter()
        .filter_map(|network| {
            Some(KnownAsset {
                network: Network::new(network),
                address: x402_svm::usdc_mint(network)?.to_string(),
                decimals: 6,
            })
        })
}

impl Policy {
    /// The networks allowed: those of the allowed assets, each once, in order.
    pub fn networks(&self) -> Vec<Network> {
        let mut networks: Vec<Network> = Vec::new();
        for asset in &self.assets {
            if !networks.iter().any(|n| n.same_as(&asset.network)) {
                networks.push(asset.network.clone());
            }
        }
        networks
    }
}

/// An offer the policy accepts.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    /// Index in the server's `accepts`.
    pub index: usize,
    /// The offer, in v2 form.
    pub requirements: v2::PaymentRequirements,
    /// The asset's decimals.
    pub decimals: u8,
}

/// Why no offer could be paid. Each says what to change.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// The server offered nothing this client can pay.
    #[error(
        "none of the {offered} offers is an allowed asset on an allowed network ({detail}); allow the asset or network in the client policy"
    )]
    NotAllowed {
        /// How many offers there were.
        offered: usize,
        /// What was offered.
        detail: String,
    },
    /// Every allowed offer costs more than the most per payment.
    #[error(
        "the price {asked} is above the maximum per payment {max}; raise --max if it is worth it"
    )]
    AboveMax {
        /// The cheapest allowed price, in whole units.
        asked: String,
        /// The maximum.
        max: String,
    },
}

impl Policy {
    /// The preferred allowed `exact` offer within the maximum.
    pub fn choose(&self, offers: &[v2::PaymentRequirements]) -> Result<Choice, PolicyError> {
        self.choose_payable(offers, |offer| offer.scheme == Scheme::EXACT)
    }

    /// The preferred allowed offer within the maximum, among those `payable` accepts (the
    /// offers a scheme plug-in of the client can pay).
    pub fn choose_payable(
        &self,
        offers: &[v2::PaymentRequirements],
        payable: impl Fn(&v2::PaymentRequirements) -> bool,
    ) -> Result<Choice, PolicyError> {
        let mut cheapest_above: Option<(TokenAmount, u8)> = None;
        for asset in &self.assets {
            for (index, offer) in offers.iter().enumerate() {
                let same_asset = payable(offer)
                    && offer.network.same_as(&asset.network)
                    && offer.asset.eq_ignore_ascii_case(&asset.address);
                if !same_asset {
                    continue;
                }
                let max = self
                    .max_per_payment
                    .to_atomic(asset.decimals)
                    .unwrap_or(TokenAmount::ZERO);
                if offer.amount <= max {
                    return Ok(Choice {
                        index,
                        requirements: offer.clone(),
                        decimals: asset.decimals,
                    });
                }
                if cheapest_above.is_none_or(|(a, d)| is_less(offer.amount, asset.decimals, a, d)) {
                    cheapest_above = Some((offer.amount, asset.decimals));
                }
            }
        }
        match cheapest_above {
            Some((amount, decimals)) => Err(PolicyError::AboveMax {
                asked: amount.to_human(decimals),
                max: self.max_per_payment.to_string(),
            }),
            None => Err(PolicyError::NotAllowed {
                offered: offers.len(),
                detail: offers
                    .iter()
                    .map(|o| format!("{} {} on {}", o.scheme, o.asset, o.network))
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
        }
    }
}

/// Whether `a` (in units of `10^-da`) is less than `b` (in units of `10^-db`), compared as
/// numbers: both scaled to the larger number of decimals.
fn is_less(a: TokenAmount, da: u8, b: TokenAmount, db: u8) -> bool {
    let scale = |amount: TokenAmount, from: u8| {
        let factor = U256::from(10u8).pow(U256::from(da.max(db) - from));
        amount.0.saturating_mul(factor)
    };
    scale(a, da) < scale(b, db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn offer(network: &str, asset: &str, amount: u128) -> v2::PaymentRequirements {
        v2::PaymentRequirements {
            scheme: Scheme::EXACT,
            network: Network::new(network.to_owned()),
            amount: TokenAmount::from_atomic(amount),
            asset: asset.to_owned(),
            pay_to: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
            max_timeout_seconds: 60,
            extra: Some(json!({"name": "USD Coin", "version": "2"})),
        }
    }

    const BASE_USDC: &str = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";

    #[test]
    fn chooses_an_allowed_asset_within_the_maximum() {
        let policy = Policy::default();
        let offers = [
            offer("eip155:1", "0x0000000000000000000000000000000000000001", 1),
            offer("eip155:8453", &BASE_USDC.to_lowercase(), 50_000),
        ];
        let choice = policy.choose(&offers).unwrap();
        assert_eq!(choice.index, 1);
        assert_eq!(choice.decimals, 6);
    }

    #[test]
    fn solana_usdc_is_allowed_by_default_after_the_evm_assets() {
        let policy = Policy::default();
        let networks = policy.networks();
        assert!(networks.contains(&Network::new(x402_svm::SOLANA_MAINNET)));
        assert!(networks.contains(&Network::new(x402_svm::SOLANA_DEVNET)));
        assert!(networks[0].as_str().starts_with("eip155:"));
        let devnet_usdc = "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU";
        let solana = v2::PaymentRequirements {
            network: Network::new(x402_svm::SOLANA_DEVNET),
            asset: devnet_usdc.into(),
            amount: TokenAmount::from_atomic(1_000),
            ..offer("eip155:8453", BASE_USDC, 1)
        };
        let choice = policy.choose(std::slice::from_ref(&solana)).unwrap();
        assert_eq!((choice.index, choice.decimals), (0, 6));
        // Base USDC is preferred when both are offered.
        let both = [solana, offer("eip155:8453", BASE_USDC, 1_000)];
        assert_eq!(policy.choose(&both).unwrap().index, 1);
    }

    #[test]
    fn amounts_in_different_decimals_compare_as_numbers() {
        // 2 and 10 whole units: as text "2" > "10", as numbers 2 < 10.
        let two = TokenAmount::from_atomic(2_000_000);
        let ten = TokenAmount::from_atomic(10 * 10u128.pow(18));
        assert!(is_less(two, 6, ten, 18));
        assert!(!is_less(ten, 18, two, 6));
        assert!(!is_less(two, 6, two, 6));
    }

    #[test]
    fn the_cheapest_offer_above_the_maximum_is_named() {
        let policy = Policy {
            assets: vec![
                KnownAsset {
                    network: Network::BASE,
                    address: BASE_USDC.into(),
                    decimals: 6,
                },
                KnownAsset {
                    network: Network::BASE,
                    address: "0x0000000000000000000000000000000000000012".into(),
                    decimals: 18,
                },
            ],
            max_per_payment: "1".parse().unwrap(),
        };
        let error = policy
            .choose(&[
                offer("eip155:8453", BASE_USDC, 10_000_000),
                offer(
                    "eip155:8453",
                    "0x0000000000000000000000000000000000000012",
                    2 * 10u128.pow(18),
                ),
            ])
            .unwrap_err();
        assert_eq!(
            error,
            PolicyError::AboveMax {
                asked: "2".into(),
                max: "1".into()
            }
        );
    }

    #[test]
    fn refuses_prices_above_the_maximum_in_the_assets_decimals() {
        let policy = Policy {
            max_per_payment: "0.10".parse().unwrap(),
            ..Policy::default()
        };
        let error = policy
            .choose(&[offer("eip155:8453", BASE_USDC, 500_000)])
            .unwrap_err();
        assert_eq!(
            error,
            PolicyError::AboveMax {
                asked: "0.5".into(),
                max: "0.10".into()
            }
        );
        let error = policy
            .choose(&[offer(
                "eip155:8453",
                "0x0000000000000000000000000000000000000bad",
                1,
            )])
            .unwrap_err();
        assert!(
            matches!(error, PolicyError::NotAllowed { offered: 1, .. }),
            "{error}"
        );
    }
}
