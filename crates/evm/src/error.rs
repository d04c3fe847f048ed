//! Why a payment was refused or could not be settled, and the one place these map to wire codes.

use alloy::primitives::{Address, B256, U256};
use x402_proto::{Network, ReasonCode, Scheme};

/// Why a payment failed verification, or why verification could not be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The scheme is not `exact`.
    #[error("scheme {scheme} is not supported here; use \"exact\"")]
    UnsupportedScheme {
        /// The scheme given.
        scheme: Scheme,
    },
    /// `extra.name` or `extra.version` is missing from the requirements.
    #[error("requirements lack the token's EIP-712 domain: set extra.name and extra.version")]
    MissingEip712Domain,
    /// The payment names another network than the requirements.
    #[error("payment is for network {paid} but the requirements are for {required}")]
    NetworkMismatch {
        /// The network in the payment.
        paid: Network,
        /// The network in the requirements.
        required: Network,
    },
    /// This facilitator does not serve the network.
    #[error("network {network} is not served by this facilitator")]
    UnsupportedNetwork {
        /// The network asked for.
        network: Network,
    },
    /// The requirements hold a value that is not what the field needs.
    #[error("requirements field {field} is invalid: {detail}")]
    InvalidRequirements {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The scheme payload is not an EIP-3009 authorization with a signature.
    #[error("payload is not an exact EVM authorization: {detail}")]
    InvalidPayload {
        /// What is wrong with it.
        detail: String,
    },
    /// The signature is not the payer's signature of this authorization in this domain.
    #[error(
        "signature does not recover to the payer {payer}: it was made for another authorization, token domain (name, version, chain) or key"
    )]
    InvalidSignature {
        /// `authorization.from`.
        payer: Address,
    },
    /// The payer is a contract wallet and its `isValidSignature` (ERC-1271) refused the signature.
    #[error(
        "the payer's smart wallet {payer} refused the signature (ERC-1271 isValidSignature did not return 0x1626ba7e)"
    )]
    WalletRefusedSignature {
        /// `authorization.from`.
        payer: Address,
    },
    /// The signature is a smart-wallet signature but the payer has no code, and no ERC-6492
    /// wrapper says how to deploy it.
    #[error(
        "payer {payer} has no code and the signature carries no ERC-6492 deployment: deploy the wallet or wrap the signature in ERC-6492"
    )]
    UndeployedSmartWallet {
        /// `authorization.from`.
        payer: Address,
    },
    /// The payer is a counterfactual wallet whose ERC-6492 factory this facilitator does not
    /// allow.
    #[error(
        "the ERC-6492 factory {factory} of the undeployed payer is not in this facilitator's allow-list"
    )]
    Eip6492FactoryNotAllowed {
        /// The factory the signature names.
        factory: Address,
    },
    /// `authorization.to` is not the requirements' `payTo`.
    #[error("authorization pays {to} but the requirements pay {pay_to}")]
    RecipientMismatch {
        /// The authorization's recipient.
        to: Address,
        /// The required recipient.
        pay_to: Address,
    },
    /// `validBefore` has passed or is closer than the block-time buffer.
    #[error(
        "authorization expires at {valid_before}, which is before now ({now}) plus 6 s; sign a new one"
    )]
    Expired {
        /// The authorization's `validBefore`.
        valid_before: U256,
        /// The facilitator's clock.
        now: u64,
    },
    /// `validAfter` is in the future.
    #[error("authorization is valid only after {valid_after}, later than now ({now})")]
    NotYetValid {
        /// The authorization's `validAfter`.
        valid_after: U256,
        /// The facilitator's clock.
        now: u64,
    },
    /// `authorization.value` is not the required amount.
    #[error("authorization is for {value} atomic units but exactly {required} are required")]
    AmountMismatch {
        /// The authorized amount.
        value: U256,
        /// The required amount.
        required: U256,
        /// The protocol version (the SDKs word this code differently in v1 and v2).
        x402_version: u8,
    },
    /// The asset address holds no contract.
    #[error("asset {asset} is not a contract on this chain")]
    AssetNotContract {
        /// The asset.
        asset: Address,
    },
    /// The asset does not implement EIP-3009.
    #[error("asset {asset} does not implement EIP-3009 transferWithAuthorization")]
    Eip3009NotSupported {
        /// The asset.
        asset: Address,
    },
    /// The nonce was already used (a replay) or canceled.
    #[error(
        "authorization nonce {nonce} of {payer} was already used or canceled; sign a new payment"
    )]
    NonceAlreadyUsed {
        /// The payer.
        payer: Address,
        /// The nonce.
        nonce: B256,
    },
    /// The token's `name()` differs from `extra.name`.
    #[error("token name is {actual:?} but the requirements say {expected:?}")]
    TokenNameMismatch {
        /// The token's name.
        actual: String,
        /// `extra.name`.
        expected: String,
    },
    /// The token's `version()` differs from `extra.version`.
    #[error("token version is {actual:?} but the requirements say {expected:?}")]
    TokenVersionMismatch {
        /// The token's version.
        actual: String,
        /// `extra.version`.
        expected: String,
    },
    /// The payer holds less than the amount.
    #[error(
        "payer {payer} holds {balance} atomic units but {required} are required; fund the wallet"
    )]
    InsufficientBalance {
        /// The payer.
        payer: Address,
        /// Their balance.
        balance: U256,
        /// The amount.
        required: U256,
    },
    /// The simulated transfer reverted for another reason.
    #[error("simulated transfer reverted: {reason}")]
    SimulationFailed {
        /// The revert reason, as far as known.
        reason: String,
    },
    /// The chain could not be asked (RPC down or failing). Not a verdict on the payment.
    #[error("chain RPC unavailable: {detail}")]
    ChainUnavailable {
        /// The transport error.
        detail: String,
    },
}

impl VerifyError {
    /// Whether this says nothing about the payment itself: asking again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::ChainUnavailable { .. })
    }
}

impl From<&VerifyError> for ReasonCode {
    fn from(error: &VerifyError) -> Self {
        use VerifyError as E;
        match error {
            E::UnsupportedScheme { .. } => Self::EXACT_EVM_SCHEME,
            E::MissingEip712Domain => Self::EXACT_EVM_MISSING_EIP712_DOMAIN,
            E::NetworkMismatch { .. } => Self::EXACT_EVM_NETWORK_MISMATCH,
            E::UnsupportedNetwork { .. } => Self::INVALID_NETWORK,
            E::InvalidRequirements { .. } => Self::INVALID_PAYMENT_REQUIREMENTS,
            E::InvalidPayload { .. } => Self::INVALID_PAYLOAD,
            E::InvalidSignature { .. } | E::WalletRefusedSignature { .. } => {
                Self::EXACT_EVM_SIGNATURE
            }
            E::UndeployedSmartWallet { .. } => Self::EXACT_EVM_UNDEPLOYED_SMART_WALLET,
            E::Eip6492FactoryNotAllowed { .. } => Self::EIP6492_FACTORY_NOT_ALLOWED,
            E::RecipientMismatch { .. } => Self::EXACT_EVM_RECIPIENT_MISMATCH,
            E::Expired { .. } => Self::EXACT_EVM_VALID_BEFORE,
            E::NotYetValid { .. } => Self::EXACT_EVM_VALID_AFTER,
            E::AmountMismatch {
                x402_version: 1, ..
            } => Self::EXACT_EVM_VALUE_MISMATCH_V1,
            E::AmountMismatch { .. } => Self::EXACT_EVM_VALUE_MISMATCH,
            E::AssetNotContract { .. } => Self::ASSET_NOT_DEPLOYED_CONTRACT,
            E::Eip3009NotSupported { .. } => Self::EXACT_EVM_EIP3009_NOT_SUPPORTED,
            E::NonceAlreadyUsed { .. } => Self::EXACT_EVM_NONCE_ALREADY_USED,
            E::TokenNameMismatch { .. } => Self::EXACT_EVM_TOKEN_NAME_MISMATCH,
            E::TokenVersionMismatch { .. } => Self::EXACT_EVM_TOKEN_VERSION_MISMATCH,
            E::InsufficientBalance { .. } => Self::EXACT_EVM_INSUFFICIENT_BALANCE,
            E::SimulationFailed { .. } => Self::EXACT_EVM_SIMULATION_FAILED,
            E::ChainUnavailable { .. } => Self::CHAIN_UNAVAILABLE,
        }
    }
}

/// Why a verified payment did not settle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettleError {
    /// The transaction was refused before it was mined (e.g. the transfer would revert).
    #[error("settlement transaction was refused: {reason}")]
    Rejected {
        /// The code the revert reason maps to.
        code: ReasonCode,
        /// The node's message.
        reason: String,
    },
    /// The transaction was mined and reverted; no money moved.
    #[error("settlement transaction {tx_hash} reverted")]
    Reverted {
        /// The transaction.
        tx_hash: B256,
    },
    /// The transaction succeeded but the token logged no matching Transfer: nothing moved.
    #[error("settlement transaction {tx_hash} succeeded without transferring the payment")]
    TransferEventMissing {
        /// The transaction.
        tx_hash: B256,
    },
    /// The transaction was sent but not confirmed within the wait; it may still confirm.
    #[error("settlement transaction {tx_hash} is not confirmed yet")]
    Pending {
        /// The transaction.
        tx_hash: B256,
    },
    /// The chain could not be reached; nothing is known to have been sent.
    #[error("chain RPC unavailable: {detail}")]
    ChainUnavailable {
        /// The transport error.
        detail: String,
    },
    /// The record of a signer's nonces shared with other instances could not be reached;
    /// nothing was signed.
    #[error("the shared signer nonce record is unavailable: {detail}")]
    NonceLeaseUnavailable {
        /// What failed.
        detail: String,
    },
}

impl SettleError {
    /// The transaction hash, when one was sent.
    pub fn tx_hash(&self) -> Option<B256> {
        match self {
            Self::Reverted { tx_hash }
            | Self::Pending { tx_hash }
            | Self::TransferEventMissing { tx_hash } => Some(*tx_hash),
            Self::Rejected { .. }
            | Self::ChainUnavailable { .. }
            | Self::NonceLeaseUnavailable { .. } => None,
        }
    }

    /// Whether sending again later may succeed. Not `Pending`: that transaction may still
    /// confirm, and its outcome must be awaited, not raced by a second one.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::ChainUnavailable { .. } | Self::NonceLeaseUnavailable { .. }
        )
    }
}

impl From<&SettleError> for ReasonCode {
    fn from(error: &SettleError) -> Self {
        match error {
            SettleError::Rejected { code, .. } => code.clone(),
            SettleError::Reverted { .. } => Self::EXACT_EVM_TRANSACTION_FAILED,
            SettleError::TransferEventMissing { .. } => Self::EXACT_EVM_TRANSFER_EVENT_MISMATCH,
            SettleError::Pending { .. } => Self::SETTLEMENT_PENDING,
            SettleError::ChainUnavailable { .. } | SettleError::NonceLeaseUnavailable { .. } => {
                Self::CHAIN_UNAVAILABLE
            }
        }
    }
}

/// The reason code for a revert message of an EIP-3009 token, as USDC words them.
pub(crate) fn reason_for_revert(message: &str) -> ReasonCode {
    let m = message.to_ascii_lowercase();
    if m.contains("authorization is expired") {
        ReasonCode::EXACT_EVM_VALID_BEFORE
    } else if m.contains("authorization is not yet valid") {
        ReasonCode::EXACT_EVM_VALID_AFTER
    } else if m.contains("authorization is used") {
        ReasonCode::EXACT_EVM_NONCE_ALREADY_USED
    } else if m.contains("exceeds balance") || m.contains("insufficient balance") {
        ReasonCode::EXACT_EVM_INSUFFICIENT_BALANCE
    } else if m.contains("invalid signature") {
        ReasonCode::EXACT_EVM_SIGNATURE
    } else {
        ReasonCode::EXACT_EVM_TRANSACTION_FAILED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revert_messages_map_to_codes() {
        assert_eq!(
            reason_for_revert("execution reverted: FiatTokenV2: authorization is used or canceled"),
            ReasonCode::EXACT_EVM_NONCE_ALREADY_USED
        );
        assert_eq!(
            reason_for_revert("ERC20: transfer amount exceeds balance"),
            ReasonCode::EXACT_EVM_INSUFFICIENT_BALANCE
        );
        assert_eq!(
            reason_for_revert("FiatTokenV2: invalid signature"),
            ReasonCode::EXACT_EVM_SIGNATURE
        );
        assert_eq!(
            reason_for_revert("something else"),
            ReasonCode::EXACT_EVM_TRANSACTION_FAILED
        );
    }

    #[test]
    fn messages_say_what_to_do() {
        let e = VerifyError::MissingEip712Domain;
        assert!(e.to_string().contains("extra.name"));
        assert_eq!(
            ReasonCode::from(&e),
            ReasonCode::EXACT_EVM_MISSING_EIP712_DOMAIN
        );
        assert!(VerifyError::ChainUnavailable { detail: "x".into() }.is_retryable());
    }
}
