//! Open string values of the protocol: networks, schemes and reason codes.
//!
//! Each is a newtype over a string with constants for the values we know, so a value from a
//! newer peer still parses and round-trips unchanged.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! open_string {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Cow<'static, str>);

        impl $name {
            /// Wraps any string, known or not.
            pub fn new(value: impl Into<String>) -> Self {
                Self(Cow::Owned(value.into()))
            }

            /// A value known at compile time.
            pub const fn from_static(value: &'static str) -> Self {
                Self(Cow::Borrowed(value))
            }

            /// The value as written on the wire.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self::new(value)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

/// Declares the values of an open string type that we know, as its constants.
macro_rules! known_values {
    ($name:ident { $($(#[$meta:meta])* $value:ident = $wire:literal,)* }) => {
        impl $name {
            $($(#[$meta])* pub const $value: Self = Self::from_static($wire);)*
        }
    };
}

open_string!(
    /// A payment network: a CAIP-2 id in v2 (`eip155:8453`), a plain name in v1 (`base`).
    Network
);
open_string!(
    /// A payment scheme (`exact`, `upto`, ...).
    Scheme
);
open_string!(
    /// A machine-readable reason for a failed verify or settle (`invalidReason`, `errorReason`).
    ///
    /// The strings differ between the specification and the SDKs; ours follow the TypeScript
    /// SDK so that clients written against it understand us.
    ReasonCode
);

/// v1 network names and their CAIP-2 ids, as the official SDKs map them.
const V1_NETWORKS: &[(&str, &str)] = &[
    ("ethereum", "eip155:1"),
    ("sepolia", "eip155:11155111"),
    ("base", "eip155:8453"),
    ("base-sepolia", "eip155:84532"),
    ("avalanche", "eip155:43114"),
    ("avalanche-fuji", "eip155:43113"),
    ("polygon", "eip155:137"),
    ("polygon-amoy", "eip155:80002"),
    ("abstract", "eip155:2741"),
    ("abstract-testnet", "eip155:11124"),
    ("iotex", "eip155:4689"),
    ("sei", "eip155:1329"),
    ("sei-testnet", "eip155:1328"),
    ("peaq", "eip155:3338"),
    ("story", "eip155:1514"),
    ("educhain", "eip155:41923"),
    ("skale-base-sepolia", "eip155:324705682"),
    ("megaeth", "eip155:4326"),
    ("monad", "eip155:143"),
    ("stable", "eip155:988"),
    ("stable-testnet", "eip155:2201"),
    ("solana", "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"),
    ("solana-devnet", "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"),
    ("solana-testnet", "solana:4uhcVJyU9pJkvQyS88uRDiswHXSCkY3z"),
];

impl Network {
    /// Base mainnet.
    pub const BASE: Self = Self::from_static("eip155:8453");
    /// Base Sepolia.
    pub const BASE_SEPOLIA: Self = Self::from_static("eip155:84532");
    /// Ethereum mainnet.
    pub const ETHEREUM: Self = Self::from_static("eip155:1");
    /// Polygon PoS.
    pub const POLYGON: Self = Self::from_static("eip155:137");
    /// Arbitrum One.
    pub const ARBITRUM: Self = Self::from_static("eip155:42161");
    /// Solana mainnet.
    pub const SOLANA: Self = Self::from_static("solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp");

    /// The CAIP-2 id of an EVM chain.
    pub fn eip155(chain_id: u64) -> Self {
        Self::new(format!("eip155:{chain_id}"))
    }

    /// Whether this is written as CAIP-2 (`namespace:reference`), the v2 form.
    pub fn is_caip2(&self) -> bool {
        self.0.len() >= 3 && self.0.contains(':')
    }

    /// The CAIP-2 namespace (`eip155`, `solana`), if this is a CAIP-2 id.
    pub fn namespace(&self) -> Option<&str> {
        self.is_caip2()
            .then(|| self.0.split(':').next().unwrap_or_default())
    }

    /// The CAIP-2 form: itself if already CAIP-2, else the id a known v1 name maps to.
    pub fn to_caip2(&self) -> Option<Self> {
        if self.is_caip2() {
            return Some(self.clone());
        }
        V1_NETWORKS
            .iter()
            .find(|(v1, _)| *v1 == self.as_str())
            .map(|(_, caip2)| Self::from_static(caip2))
    }

    /// The v1 name of this network, if it has one.
    pub fn to_v1_name(&self) -> Option<Self> {
        if !self.is_caip2() {
            return V1_NETWORKS
                .iter()
                .any(|(v1, _)| *v1 == self.as_str())
                .then(|| self.clone());
        }
        V1_NETWORKS
            .iter()
            .find(|(_, caip2)| *caip2 == self.as_str())
            .map(|(v1, _)| Self::from_static(v1))
    }

    /// The EVM chain id, for `eip155:<id>` or a v1 name of an EVM chain.
    pub fn evm_chain_id(&self) -> Option<u64> {
        let caip2 = self.to_caip2()?;
        let reference = caip2.as_str().strip_prefix("eip155:")?;
        if reference.is_empty() || !reference.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        reference.parse().ok()
    }

    /// Whether two spellings name the same network (`base` and `eip155:8453` do).
    pub fn same_as(&self, other: &Self) -> bool {
        self == other || matches!((self.to_caip2(), other.to_caip2()), (Some(a), Some(b)) if a == b)
    }
}

known_values!(Scheme {
    /// One payment of exactly the stated amount.
    EXACT = "exact",
    /// A payment of up to the stated amount, settled for actual usage.
    UPTO = "upto",
    /// Payment channels: one escrow deposit, then a cumulative signed voucher per request,
    /// claimed on chain in batches.
    BATCH_SETTLEMENT = "batch-settlement",
});

known_values!(ReasonCode {
    // General codes from the v2 specification.
    /// The payer cannot cover the amount.
    INSUFFICIENT_FUNDS = "insufficient_funds",
    /// The network is not one this facilitator serves.
    INVALID_NETWORK = "invalid_network",
    /// The payload could not be read.
    INVALID_PAYLOAD = "invalid_payload",
    /// The requirements are malformed.
    INVALID_PAYMENT_REQUIREMENTS = "invalid_payment_requirements",
    /// The scheme is not one this facilitator serves.
    UNSUPPORTED_SCHEME = "unsupported_scheme",
    /// The protocol version is not supported.
    INVALID_X402_VERSION = "invalid_x402_version",
    /// The chain state does not allow the operation.
    INVALID_TRANSACTION_STATE = "invalid_transaction_state",
    /// Verification failed for an unexpected (internal) reason.
    UNEXPECTED_VERIFY_ERROR = "unexpected_verify_error",
    /// Settlement failed for an unexpected (internal) reason.
    UNEXPECTED_SETTLE_ERROR = "unexpected_settle_error",
    /// The transaction was sent but is not confirmed yet; `transaction` holds its hash.
    SETTLEMENT_PENDING = "settlement_pending",
    /// The chain could not be reached.
    CHAIN_UNAVAILABLE = "chain_unavailable",
    /// The payment is settled, or being settled, for another request; its success was given
    /// to that request's settler.
    DUPLICATE_SETTLEMENT = "duplicate_settlement",
    /// A resource server's refusal: the payment is being used by another request right now
    /// (the same request sent again may wait for it and get the kept answer).
    PAYMENT_IN_USE = "payment_in_use",
    /// A resource server's refusal: the payment already bought the response to another
    /// request.
    PAYMENT_ALREADY_USED = "payment_already_used",

    // `exact` on EVM, as the TypeScript SDK 2.27 names them.
    /// `scheme` is not `exact`.
    EXACT_EVM_SCHEME = "invalid_exact_evm_scheme",
    /// The payload's network differs from the requirements'.
    EXACT_EVM_NETWORK_MISMATCH = "invalid_exact_evm_network_mismatch",
    /// `extra.name` / `extra.version` (the EIP-712 domain) are missing.
    EXACT_EVM_MISSING_EIP712_DOMAIN = "invalid_exact_evm_missing_eip712_domain",
    /// `authorization.to` is not `payTo`.
    EXACT_EVM_RECIPIENT_MISMATCH = "invalid_exact_evm_recipient_mismatch",
    /// The signature does not recover to `authorization.from`.
    EXACT_EVM_SIGNATURE = "invalid_exact_evm_signature",
    /// `validBefore` has passed or is too close.
    EXACT_EVM_VALID_BEFORE = "invalid_exact_evm_payload_authorization_valid_before",
    /// `validAfter` is in the future.
    EXACT_EVM_VALID_AFTER = "invalid_exact_evm_payload_authorization_valid_after",
    /// `authorization.value` differs from the required amount (v2 wording).
    EXACT_EVM_VALUE_MISMATCH = "invalid_exact_evm_payload_authorization_value_mismatch",
    /// `authorization.value` differs from `maxAmountRequired` (v1 wording).
    EXACT_EVM_VALUE_MISMATCH_V1 = "invalid_exact_evm_authorization_value",
    /// The receipt holds no Transfer event matching the authorization.
    EXACT_EVM_TRANSFER_EVENT_MISMATCH = "invalid_exact_evm_transfer_event_mismatch",
    /// The payer has no code and its smart-wallet signature carries no ERC-6492 deployment.
    EXACT_EVM_UNDEPLOYED_SMART_WALLET = "invalid_exact_evm_payload_undeployed_smart_wallet",
    /// A counterfactual (ERC-6492) wallet's factory is not allowed.
    EIP6492_FACTORY_NOT_ALLOWED = "eip6492_factory_not_allowed",
    /// The settlement transaction reverted.
    EXACT_EVM_TRANSACTION_FAILED = "invalid_exact_evm_transaction_failed",
    /// The token's `name()` differs from `extra.name`.
    EXACT_EVM_TOKEN_NAME_MISMATCH = "invalid_exact_evm_token_name_mismatch",
    /// The token's `version()` differs from `extra.version`.
    EXACT_EVM_TOKEN_VERSION_MISMATCH = "invalid_exact_evm_token_version_mismatch",
    /// The asset does not implement EIP-3009.
    EXACT_EVM_EIP3009_NOT_SUPPORTED = "invalid_exact_evm_eip3009_not_supported",
    /// The authorization nonce was already used or canceled.
    EXACT_EVM_NONCE_ALREADY_USED = "invalid_exact_evm_nonce_already_used",
    /// The payer's token balance is below the amount.
    EXACT_EVM_INSUFFICIENT_BALANCE = "invalid_exact_evm_insufficient_balance",
    /// Simulating the transfer failed for another reason.
    EXACT_EVM_SIMULATION_FAILED = "invalid_exact_evm_transaction_simulation_failed",
    /// The asset address holds no contract.
    ASSET_NOT_DEPLOYED_CONTRACT = "asset_not_deployed_contract",
    /// The payload's shape is not one this scheme understands.
    UNSUPPORTED_PAYLOAD_TYPE = "unsupported_payload_type",

    // `upto` on EVM and the Permit2 checks it shares with `exact`-with-Permit2 (SDK 2.27).
    /// `scheme` is not `upto`.
    UPTO_EVM_SCHEME = "invalid_upto_evm_scheme",
    /// The payload's network differs from the requirements'.
    UPTO_EVM_NETWORK_MISMATCH = "invalid_upto_evm_network_mismatch",
    /// The amount to settle is above the signed maximum.
    UPTO_EVM_SETTLEMENT_EXCEEDS_AMOUNT = "invalid_upto_evm_payload_settlement_exceeds_amount",
    /// The settlement transaction reverted.
    UPTO_EVM_TRANSACTION_FAILED = "invalid_upto_evm_transaction_failed",
    /// The proxy refused an amount above the permitted one.
    UPTO_AMOUNT_EXCEEDS_PERMITTED = "upto_amount_exceeds_permitted",
    /// The proxy refused a sender other than the witnessed facilitator.
    UPTO_UNAUTHORIZED_FACILITATOR = "upto_unauthorized_facilitator",
    /// `witness.facilitator` is not an address of this facilitator.
    UPTO_FACILITATOR_MISMATCH = "upto_facilitator_mismatch",
    /// `spender` is not the scheme's Permit2 proxy.
    PERMIT2_INVALID_SPENDER = "invalid_permit2_spender",
    /// `witness.to` is not `payTo`.
    PERMIT2_RECIPIENT_MISMATCH = "invalid_permit2_recipient_mismatch",
    /// The permit's deadline has passed or is too close.
    PERMIT2_DEADLINE_EXPIRED = "permit2_deadline_expired",
    /// `witness.validAfter` is in the future.
    PERMIT2_NOT_YET_VALID = "permit2_not_yet_valid",
    /// The permitted amount differs from the required amount.
    PERMIT2_AMOUNT_MISMATCH = "permit2_amount_mismatch",
    /// The permitted token is not the asset.
    PERMIT2_TOKEN_MISMATCH = "permit2_token_mismatch",
    /// The Permit2 signature is not the payer's.
    PERMIT2_INVALID_SIGNATURE = "invalid_permit2_signature",
    /// No Permit2 proxy answers at its address.
    PERMIT2_PROXY_NOT_DEPLOYED = "permit2_proxy_not_deployed",
    /// The payer's balance is below the amount.
    PERMIT2_INSUFFICIENT_BALANCE = "permit2_insufficient_balance",
    /// The payer has not approved Permit2 for the amount (a server answers 412).
    PERMIT2_ALLOWANCE_REQUIRED = "permit2_allowance_required",
    /// Simulating the settlement failed for another reason.
    PERMIT2_SIMULATION_FAILED = "permit2_simulation_failed",
    /// The permit's nonce was used.
    PERMIT2_INVALID_NONCE = "permit2_invalid_nonce",
    /// The proxy refused a payment before its `validAfter`.
    PERMIT2_PAYMENT_TOO_EARLY = "permit2_payment_too_early",

    // `batch-settlement` on EVM (payment channels), as `@x402/evm` 2.27 names them.
    /// No channel holds a balance under this id.
    BATCH_SETTLEMENT_EVM_CHANNEL_NOT_FOUND = "invalid_batch_settlement_evm_channel_not_found",
    /// `channelConfig.token` is not the asset.
    BATCH_SETTLEMENT_EVM_TOKEN_MISMATCH = "invalid_batch_settlement_evm_token_mismatch",
    /// The voucher signature is not the payer authorizer's (or the payer's).
    BATCH_SETTLEMENT_EVM_VOUCHER_SIGNATURE = "invalid_batch_settlement_evm_voucher_signature",
    /// The voucher's ceiling is above the channel's balance.
    BATCH_SETTLEMENT_EVM_CUMULATIVE_EXCEEDS_BALANCE =
        "invalid_batch_settlement_evm_cumulative_exceeds_balance",
    /// The voucher's ceiling is not above what was already claimed.
    BATCH_SETTLEMENT_EVM_CUMULATIVE_BELOW_CLAIMED =
        "invalid_batch_settlement_evm_cumulative_below_claimed",
    /// The payer's token balance is below the deposit.
    BATCH_SETTLEMENT_EVM_INSUFFICIENT_BALANCE = "invalid_batch_settlement_evm_insufficient_balance",
    /// The deposit transaction reverted.
    BATCH_SETTLEMENT_EVM_DEPOSIT_TRANSACTION_FAILED =
        "invalid_batch_settlement_evm_deposit_transaction_failed",
    /// The claim transaction reverted.
    BATCH_SETTLEMENT_EVM_CLAIM_TRANSACTION_FAILED =
        "invalid_batch_settlement_evm_claim_transaction_failed",
    /// The settle transaction reverted.
    BATCH_SETTLEMENT_EVM_SETTLE_TRANSACTION_FAILED =
        "invalid_batch_settlement_evm_settle_transaction_failed",
    /// `scheme` is not `batch-settlement`.
    BATCH_SETTLEMENT_EVM_SCHEME = "invalid_batch_settlement_evm_scheme",
    /// The payload's network differs from the requirements'.
    BATCH_SETTLEMENT_EVM_NETWORK_MISMATCH = "invalid_batch_settlement_evm_network_mismatch",
    /// `extra.name` / `extra.version` (the token's EIP-712 domain) are missing.
    BATCH_SETTLEMENT_EVM_MISSING_EIP712_DOMAIN =
        "invalid_batch_settlement_evm_missing_eip712_domain",
    /// The deposit authorization's `validBefore` has passed or is too close.
    BATCH_SETTLEMENT_EVM_VALID_BEFORE =
        "invalid_batch_settlement_evm_payload_authorization_valid_before",
    /// The deposit authorization's `validAfter` is in the future.
    BATCH_SETTLEMENT_EVM_VALID_AFTER =
        "invalid_batch_settlement_evm_payload_authorization_valid_after",
    /// The ERC-3009 `ReceiveWithAuthorization` signature is not the payer's.
    BATCH_SETTLEMENT_EVM_RECEIVE_AUTHORIZATION_SIGNATURE =
        "invalid_batch_settlement_evm_receive_authorization_signature",
    /// The deposit carries no ERC-3009 authorization where one is required.
    BATCH_SETTLEMENT_EVM_ERC3009_AUTHORIZATION_REQUIRED =
        "invalid_batch_settlement_evm_erc3009_authorization_required",
    /// The refund transaction reverted.
    BATCH_SETTLEMENT_EVM_REFUND_TRANSACTION_FAILED =
        "invalid_batch_settlement_evm_refund_transaction_failed",
    /// `payload.type` is not one this operation takes.
    BATCH_SETTLEMENT_EVM_PAYLOAD_TYPE = "invalid_batch_settlement_evm_payload_type",
    /// `withdrawDelay` is outside 900 s .. 30 days.
    BATCH_SETTLEMENT_EVM_WITHDRAW_DELAY_OUT_OF_RANGE =
        "invalid_batch_settlement_evm_withdraw_delay_out_of_range",
    /// `voucher.channelId` is not the id of `channelConfig` on this chain.
    BATCH_SETTLEMENT_EVM_CHANNEL_ID_MISMATCH = "invalid_batch_settlement_evm_channel_id_mismatch",
    /// `voucher.channelId` is not `0x` and 64 hex digits.
    BATCH_SETTLEMENT_EVM_CHANNEL_ID_INVALID = "invalid_batch_settlement_evm_channel_id_invalid",
    /// `channelConfig.receiver` is not `payTo`.
    BATCH_SETTLEMENT_EVM_RECEIVER_MISMATCH = "invalid_batch_settlement_evm_receiver_mismatch",
    /// `channelConfig.receiverAuthorizer` is not the offer's (or the offer names none).
    BATCH_SETTLEMENT_EVM_RECEIVER_AUTHORIZER_MISMATCH =
        "invalid_batch_settlement_evm_receiver_authorizer_mismatch",
    /// `channelConfig.withdrawDelay` is not the offer's.
    BATCH_SETTLEMENT_EVM_WITHDRAW_DELAY_MISMATCH =
        "invalid_batch_settlement_evm_withdraw_delay_mismatch",
    /// The rows of a claim name another receiver authorizer than the signer's.
    BATCH_SETTLEMENT_EVM_AUTHORIZER_ADDRESS_MISMATCH =
        "invalid_batch_settlement_evm_authorizer_address_mismatch",
    /// No receiver-authorizer signature came and the facilitator holds no authorizer key.
    BATCH_SETTLEMENT_EVM_AUTHORIZER_NOT_CONFIGURED =
        "invalid_batch_settlement_evm_authorizer_not_configured",
    /// Simulating the deposit failed.
    BATCH_SETTLEMENT_EVM_DEPOSIT_SIMULATION_FAILED =
        "invalid_batch_settlement_evm_deposit_simulation_failed",
    /// The deposit is below the server's `minDeposit`.
    BATCH_SETTLEMENT_EVM_DEPOSIT_BELOW_MIN_DEPOSIT =
        "invalid_batch_settlement_evm_deposit_below_min_deposit",
    /// A counterfactual (ERC-6492) depositor's factory is not allowed.
    BATCH_SETTLEMENT_EVM_EIP6492_FACTORY_NOT_ALLOWED =
        "invalid_batch_settlement_evm_eip6492_factory_not_allowed",
    /// Deploying a counterfactual depositor's wallet failed.
    BATCH_SETTLEMENT_EVM_SMART_WALLET_DEPLOYMENT_FAILED =
        "invalid_batch_settlement_evm_smart_wallet_deployment_failed",
    /// Simulating the claim failed.
    BATCH_SETTLEMENT_EVM_CLAIM_SIMULATION_FAILED =
        "invalid_batch_settlement_evm_claim_simulation_failed",
    /// Simulating the settle failed.
    BATCH_SETTLEMENT_EVM_SETTLE_SIMULATION_FAILED =
        "invalid_batch_settlement_evm_settle_simulation_failed",
    /// The receiver has nothing claimed and unsettled for this token.
    BATCH_SETTLEMENT_EVM_NOTHING_TO_SETTLE = "invalid_batch_settlement_evm_nothing_to_settle",
    /// The refund payload is malformed.
    BATCH_SETTLEMENT_EVM_REFUND_PAYLOAD = "invalid_batch_settlement_evm_refund_payload",
    /// Simulating the refund failed.
    BATCH_SETTLEMENT_EVM_REFUND_SIMULATION_FAILED =
        "invalid_batch_settlement_evm_refund_simulation_failed",
    /// Reading the channel's state from the chain failed.
    BATCH_SETTLEMENT_EVM_RPC_READ_FAILED = "invalid_batch_settlement_evm_rpc_read_failed",
    /// The deposit carries no Permit2 authorization where one is required.
    BATCH_SETTLEMENT_EVM_PERMIT2_AUTHORIZATION_REQUIRED =
        "invalid_batch_settlement_evm_permit2_authorization_required",
    /// The Permit2 `spender` is not the Permit2 deposit collector.
    BATCH_SETTLEMENT_EVM_PERMIT2_INVALID_SPENDER =
        "invalid_batch_settlement_evm_permit2_invalid_spender",
    /// The permitted amount is not the deposit.
    BATCH_SETTLEMENT_EVM_PERMIT2_AMOUNT_MISMATCH =
        "invalid_batch_settlement_evm_permit2_amount_mismatch",
    /// The Permit2 deadline has passed or is too close.
    BATCH_SETTLEMENT_EVM_PERMIT2_DEADLINE_EXPIRED =
        "invalid_batch_settlement_evm_permit2_deadline_expired",
    /// The Permit2 signature is not the payer's.
    BATCH_SETTLEMENT_EVM_PERMIT2_INVALID_SIGNATURE =
        "invalid_batch_settlement_evm_permit2_invalid_signature",
    /// The payer has not approved Permit2 for the deposit.
    BATCH_SETTLEMENT_EVM_PERMIT2_ALLOWANCE_REQUIRED =
        "invalid_batch_settlement_evm_permit2_allowance_required",
    /// The EIP-2612 approval's amount is not the deposit's.
    BATCH_SETTLEMENT_EVM_EIP2612_AMOUNT_MISMATCH =
        "invalid_batch_settlement_evm_eip2612_amount_mismatch",
    /// The EIP-2612 approval's owner is not the payer.
    BATCH_SETTLEMENT_EVM_EIP2612_OWNER_MISMATCH =
        "invalid_batch_settlement_evm_eip2612_owner_mismatch",
    /// The EIP-2612 approval's token is not the asset.
    BATCH_SETTLEMENT_EVM_EIP2612_ASSET_MISMATCH =
        "invalid_batch_settlement_evm_eip2612_asset_mismatch",
    /// The EIP-2612 approval's spender is not Permit2.
    BATCH_SETTLEMENT_EVM_EIP2612_SPENDER_MISMATCH =
        "invalid_batch_settlement_evm_eip2612_spender_mismatch",
    /// The EIP-2612 approval's deadline has passed.
    BATCH_SETTLEMENT_EVM_EIP2612_DEADLINE_EXPIRED =
        "invalid_batch_settlement_evm_eip2612_deadline_expired",
    /// The ERC-20 approval extension cannot be used here.
    BATCH_SETTLEMENT_EVM_ERC20_APPROVAL_UNAVAILABLE =
        "invalid_batch_settlement_evm_erc20_approval_unavailable",
    /// A resource server's refusal: the voucher's ceiling is not the server's charged
    /// cumulative amount plus this request's price (the 402 carries the server's state).
    BATCH_SETTLEMENT_EVM_CUMULATIVE_AMOUNT_MISMATCH =
        "invalid_batch_settlement_evm_cumulative_amount_mismatch",
    /// A resource server's refusal: another request on this channel is in flight.
    BATCH_SETTLEMENT_EVM_CHANNEL_BUSY = "invalid_batch_settlement_evm_channel_busy",
    /// A resource server's refusal: it could not establish the channel's state.
    BATCH_SETTLEMENT_EVM_VERIFICATION_STATE_UNAVAILABLE =
        "invalid_batch_settlement_evm_verification_state_unavailable",
    /// A resource server's refusal: the charge would pass the signed ceiling.
    BATCH_SETTLEMENT_EVM_CHARGE_EXCEEDS_SIGNED_CUMULATIVE =
        "invalid_batch_settlement_evm_charge_exceeds_signed_cumulative",
    /// A resource server's refusal: it holds no record of the channel.
    BATCH_SETTLEMENT_EVM_MISSING_CHANNEL = "invalid_batch_settlement_evm_missing_channel",
    /// Nothing is left to refund in the channel.
    BATCH_SETTLEMENT_EVM_REFUND_NO_BALANCE = "invalid_batch_settlement_evm_refund_no_balance",
    /// The refund amount is not a positive integer.
    BATCH_SETTLEMENT_EVM_REFUND_AMOUNT_INVALID = "invalid_batch_settlement_evm_refund_amount_invalid",

    // The `eip2612GasSponsoring` extension (an EIP-2612 approval of Permit2 riding along).
    /// The extension's `info` is not the expected shape.
    EIP2612_EXTENSION_FORMAT = "invalid_eip2612_extension_format",
    /// `info.from` is not the payer.
    EIP2612_FROM_MISMATCH = "eip2612_from_mismatch",
    /// `info.asset` is not the token paid.
    EIP2612_ASSET_MISMATCH = "eip2612_asset_mismatch",
    /// `info.spender` is not Permit2.
    EIP2612_SPENDER_NOT_PERMIT2 = "eip2612_spender_not_permit2",
    /// `info.deadline` has passed or is too close.
    EIP2612_DEADLINE_EXPIRED = "eip2612_deadline_expired",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_names_map_both_ways() {
        let base = Network::new("base");
        assert_eq!(base.to_caip2(), Some(Network::BASE));
        assert_eq!(Network::BASE.to_v1_name(), Some(base.clone()));
        assert_eq!(base.evm_chain_id(), Some(8453));
        assert!(base.same_as(&Network::BASE));
        assert_eq!(
            Network::new("solana-devnet").to_caip2().unwrap().as_str(),
            "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"
        );
        assert_eq!(Network::new("solana-devnet").evm_chain_id(), None);
    }

    #[test]
    fn every_v1_name_round_trips() {
        for (v1, caip2) in V1_NETWORKS {
            let net = Network::new(*v1);
            assert_eq!(net.to_caip2().unwrap().as_str(), *caip2);
            assert_eq!(Network::new(*caip2).to_v1_name().unwrap().as_str(), *v1);
        }
    }

    #[test]
    fn unknown_networks_still_parse() {
        let n: Network = serde_json::from_str("\"eip155:31337\"").unwrap();
        assert_eq!(n.evm_chain_id(), Some(31337));
        assert_eq!(n.to_v1_name(), None);
        assert_eq!(Network::new("eip155:abc").evm_chain_id(), None);
        assert_eq!(Network::new("eip155:").evm_chain_id(), None);
        assert_eq!(Network::new("mystery").to_caip2(), None);
        assert_eq!(Network::new("aptos:1").namespace(), Some("aptos"));
    }
}
