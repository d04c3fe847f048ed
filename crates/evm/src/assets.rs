//! The default USDC-like assets per network, as the official SDKs know them.

use alloy::primitives::{Address, address};
use x402_proto::Network;

/// An EIP-3009 token on one network, with its EIP-712 domain values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssetInfo {
    /// The CAIP-2 network.
    pub network: Network,
    /// The token contract.
    pub address: Address,
    /// The EIP-712 domain `name` (the token's `name()`).
    pub name: String,
    /// The EIP-712 domain `version` (the token's `version()`).
    pub version: String,
    /// The token's decimals.
    pub decimals: u8,
}

const DEFAULTS: &[(&str, Address, &str, &str)] = &[
    (
        "eip155:8453",
        address!("833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"),
        "USD Coin",
        "2",
    ),
    (
        "eip155:84532",
        address!("036CbD53842c5426634e7929541eC2318f3dCF7e"),
        "USDC",
        "2",
    ),
    (
        "eip155:137",
        address!("3c499c542cEF5E3811e1192ce70d8cC03d5c3359"),
        "USD Coin",
        "2",
    ),
    (
        "eip155:42161",
        address!("af88d065e77c8cC2239327C5EDb3A432268e5831"),
        "USD Coin",
        "2",
    ),
    (
        "eip155:421614",
        address!("75faf114eafb1BDbe2F0316DF893fd58CE46AA4d"),
        "USD Coin",
        "2",
    ),
    (
        "eip155:143",
        address!("754704Bc059F8C67012fEd69BC8A327a5aafb603"),
        "USD Coin",
        "2",
    ),
    (
        "eip155:988",
        address!("779Ded0c9e1022225f8E0630b35a9b54bE713736"),
        "USDT0",
        "1",
    ),
    (
        "eip155:2201",
        address!("78Cf24370174180738C5B8E352B6D14c83a6c9A9"),
        "USDT0",
        "1",
    ),
    (
        "eip155:43114",
        address!("B97EF9Ef8734C71904D8002F8b6Bc66Dd9c48a6E"),
        "USD Coin",
        "2",
    ),
    (
        "eip155:43113",
        address!("5425890298aed601595a70AB815c96711a31Bc65"),
        "USD Coin",
        "2",
    ),
];

/// Every default EIP-3009 asset (all have 6 decimals).
pub fn default_assets() -> impl Iterator<Item = AssetInfo> {
    DEFAULTS
        .iter()
        .map(|(network, address, name, version)| AssetInfo {
            network: Network::from_static(network),
            address: *address,
            name: (*name).to_owned(),
            version: (*version).to_owned(),
            decimals: 6,
        })
}

/// The default asset of a network (CAIP-2 or v1 name), if it has one.
pub fn default_asset(network: &Network) -> Option<AssetInfo> {
    let caip2 = network.to_caip2()?;
    default_assets().find(|asset| asset.network == caip2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_and_base_sepolia_differ_in_name() {
        let base = default_asset(&Network::BASE).unwrap();
        assert_eq!(base.name, "USD Coin");
        assert_eq!(
            base.address,
            address!("833589fCD6eDb6E08f4c7C32D4f71b54bdA02913")
        );
        let sepolia = default_asset(&Network::new("base-sepolia")).unwrap();
        assert_eq!(sepolia.name, "USDC");
        assert_eq!(sepolia.version, "2");
        assert!(default_asset(&Network::new("eip155:31337")).is_none());
    }
}
