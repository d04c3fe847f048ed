//! The EIP-712 typed data of `batch-settlement` (`@x402/evm` 2.27 `batch-settlement/constants.ts`):
//! the contract's domain, the channel config whose hash is the channel id, the payer's voucher,
//! the receiver authorizer's refund and claim batch, and the two deposit authorizations (an
//! ERC-3009 `ReceiveWithAuthorization` to the ERC-3009 collector, a Permit2 witness transfer to
//! the Permit2 collector).

use std::sync::LazyLock;

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::sol_types::{Eip712Domain, SolStruct, SolValue};

use crate::TransferWithAuthorization;

use super::encoding::ChannelId;
use super::wire::{self, VoucherClaim};
use super::{BATCH_SETTLEMENT_ADDRESS, DOMAIN_NAME, DOMAIN_VERSION};

alloy::sol! {
    /// A channel's immutable terms; its EIP-712 hash is the channel id.
    #[derive(Debug, PartialEq, Eq)]
    struct ChannelConfig {
        address payer;
        address payerAuthorizer;
        address receiver;
        address receiverAuthorizer;
        address token;
        uint40 withdrawDelay;
        bytes32 salt;
    }

    /// The payer's cumulative voucher: the receiver may claim up to `maxClaimableAmount` in all.
    #[derive(Debug, PartialEq, Eq)]
    struct Voucher {
        bytes32 channelId;
        uint128 maxClaimableAmount;
    }

    /// The receiver authorizer's consent to return `amount` of unclaimed escrow to the payer.
    #[derive(Debug, PartialEq, Eq)]
    struct Refund {
        bytes32 channelId;
        uint256 nonce;
        uint128 amount;
    }

    /// One row of a claim batch.
    #[derive(Debug, PartialEq, Eq)]
    struct ClaimEntry {
        bytes32 channelId;
        uint128 maxClaimableAmount;
        uint128 totalClaimed;
    }

    /// The receiver authorizer's consent to a `claimWithSignature` of these rows.
    #[derive(Debug, PartialEq, Eq)]
    struct ClaimBatch {
        ClaimEntry[] claims;
    }
}

/// The batch-settlement contract's EIP-712 domain on one chain (`"x402 Batch Settlement"`,
/// version `"1"`, the chain, the contract's canonical address), with its separator computed
/// once per chain in the process (a chain's separator is kept and shared), and the type hashes
/// of the channel config and the voucher computed once: each of those digests costs two hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchDomain {
    chain_id: u64,
    separator: B256,
}

impl BatchDomain {
    /// The domain on chain `chain_id`.
    pub fn new(chain_id: u64) -> Self {
        // One per chain this process has met: a handful.
        static SEPARATORS: std::sync::Mutex<Vec<(u64, B256)>> = std::sync::Mutex::new(Vec::new());
        let mut known = SEPARATORS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let separator = match known.iter().find(|(chain, _)| *chain == chain_id) {
            Some((_, separator)) => *separator,
            None => {
                let separator = batch_domain(chain_id).hash_struct();
                known.push((chain_id, separator));
                separator
            }
        };
        Self {
            chain_id,
            separator,
        }
    }

    /// Its chain.
    pub const fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// Its separator (`hashStruct(EIP712Domain)`).
    pub const fn separator(&self) -> &B256 {
        &self.separator
    }

    /// The digest a signature over `message` signs in this domain.
    pub fn signing_hash<T: SolStruct>(&self, message: &T) -> B256 {
        typed_data_digest(&self.separator, &message.eip712_hash_struct())
    }

    /// The id of the channel `config` on this chain (the contract's `getChannelId`).
    pub fn channel_id(&self, config: &wire::ChannelConfig) -> ChannelId {
        static TYPE_HASH: LazyLock<B256> = LazyLock::new(type_hash::<ChannelConfig>);
        let struct_hash = hash_struct(&TYPE_HASH, &config.to_sol());
        ChannelId::new(typed_data_digest(&self.separator, &struct_hash))
    }

    /// The digest a voucher for `max_claimable_amount` on `channel_id` signs.
    pub fn voucher_digest(&self, channel_id: &ChannelId, max_claimable_amount: u128) -> B256 {
        static TYPE_HASH: LazyLock<B256> = LazyLock::new(type_hash::<Voucher>);
        let voucher = Voucher {
            channelId: *channel_id.as_b256(),
            maxClaimableAmount: max_claimable_amount,
        };
        typed_data_digest(&self.separator, &hash_struct(&TYPE_HASH, &voucher))
    }

    /// The digest the receiver authorizer signs to refund `amount` of `channel_id` at refund
    /// nonce `nonce` (the contract's `refundNonce(channelId)`).
    pub fn refund_digest(&self, channel_id: &ChannelId, nonce: U256, amount: u128) -> B256 {
        self.signing_hash(&Refund {
            channelId: *channel_id.as_b256(),
            nonce,
            amount,
        })
    }

    /// The digest the receiver authorizer signs to claim `claims` in one `claimWithSignature`.
    pub fn claim_batch_digest(&self, claims: &[VoucherClaim]) -> B256 {
        self.signing_hash(&ClaimBatch {
            claims: claims
                .iter()
                .map(|claim| ClaimEntry {
                    channelId: *self.channel_id(&claim.voucher.channel).as_b256(),
                    maxClaimableAmount: claim.voucher.max_claimable_amount,
                    totalClaimed: claim.total_claimed,
                })
                .collect(),
        })
    }
}

/// `T`'s EIP-712 type hash (`keccak256(encodeType)`), which alloy computes on every hash.
fn type_hash<T: SolStruct>() -> B256 {
    keccak256(T::eip712_encode_type().as_bytes())
}

/// `hashStruct(message)`, given its type's hash.
fn hash_struct<T: SolStruct>(type_hash: &B256, message: &T) -> B256 {
    let mut hasher = alloy::primitives::Keccak256::new();
    hasher.update(type_hash);
    hasher.update(message.eip712_encode_data());
    hasher.finalize()
}

/// The EIP-712 digest of a message with `struct_hash` under the domain with `separator`.
fn typed_data_digest(separator: &B256, struct_hash: &B256) -> B256 {
    let mut preimage = [0u8; 66];
    preimage[..2].copy_from_slice(&[0x19, 0x01]);
    preimage[2..34].copy_from_slice(separator.as_slice());
    preimage[34..].copy_from_slice(struct_hash.as_slice());
    keccak256(preimage)
}

/// The type of the ERC-3009 authorization a deposit signs: `TransferWithAuthorization`'s fields
/// under another name (the token checks that `to` is its caller, the collector).
pub const RECEIVE_WITH_AUTHORIZATION_TYPE: &str = "ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)";

/// The type of the Permit2 witness transfer a deposit signs, its witness the channel.
pub const PERMIT2_DEPOSIT_TYPE: &str = "PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,DepositWitness witness)DepositWitness(bytes32 channelId)TokenPermissions(address token,uint256 amount)";

const TOKEN_PERMISSIONS_TYPE: &str = "TokenPermissions(address token,uint256 amount)";
const DEPOSIT_WITNESS_TYPE: &str = "DepositWitness(bytes32 channelId)";

/// The batch-settlement contract's EIP-712 domain on chain `chain_id`.
pub fn batch_domain(chain_id: u64) -> Eip712Domain {
    Eip712Domain::new(
        Some(DOMAIN_NAME.into()),
        Some(DOMAIN_VERSION.into()),
        Some(U256::from(chain_id)),
        Some(BATCH_SETTLEMENT_ADDRESS),
        None,
    )
}

/// The id of the channel `config` on chain `chain_id`: the EIP-712 hash of the config under the
/// contract's domain (not `keccak256(abi.encode(config))`). To compute many, keep a
/// [`BatchDomain`].
pub fn channel_id(config: &wire::ChannelConfig, chain_id: u64) -> ChannelId {
    BatchDomain::new(chain_id).channel_id(config)
}

/// The ERC-3009 nonce of a deposit into `channel_id` with `salt`, as the ERC-3009 collector
/// derives it: `keccak256(abi.encode(bytes32 channelId, uint256 salt))`. It binds the token
/// authorization to the channel, so it cannot fund another.
pub fn erc3009_deposit_nonce(channel_id: &ChannelId, salt: &B256) -> B256 {
    let mut preimage = [0u8; 64];
    preimage[..32].copy_from_slice(channel_id.as_b256().as_slice());
    preimage[32..].copy_from_slice(salt.as_slice());
    keccak256(preimage)
}

impl wire::ChannelConfig {
    /// The config as the contract (and its typed data) takes it. A withdraw delay above
    /// `uint40` (which the wire refuses) is taken as the largest one.
    pub fn to_sol(&self) -> ChannelConfig {
        ChannelConfig {
            payer: self.payer,
            payerAuthorizer: self.payer_authorizer,
            receiver: self.receiver,
            receiverAuthorizer: self.receiver_authorizer,
            token: self.token,
            withdrawDelay: alloy::primitives::aliases::U40::saturating_from(self.withdraw_delay),
            salt: self.salt,
        }
    }
}

impl wire::Erc3009Authorization {
    /// The ERC-3009 authorization (as a `TransferWithAuthorization`, whose fields it has) a
    /// payer signs for depositing `amount` into `channel_id` by this authorization: from `payer`
    /// to the ERC-3009 collector, the nonce bound to the channel and this authorization's salt.
    pub fn message(
        &self,
        payer: Address,
        amount: u128,
        channel_id: &ChannelId,
    ) -> TransferWithAuthorization {
        TransferWithAuthorization {
            from: payer,
            to: super::ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
            value: U256::from(amount),
            validAfter: self.valid_after,
            validBefore: self.valid_before,
            nonce: erc3009_deposit_nonce(channel_id, &self.salt),
        }
    }

    /// The digest the payer signs under the token's `token_domain`: [`Self::message`] typed as
    /// a `ReceiveWithAuthorization`.
    pub fn digest(
        &self,
        payer: Address,
        amount: u128,
        channel_id: &ChannelId,
        token_domain: &Eip712Domain,
    ) -> B256 {
        let message = self.message(payer, amount, channel_id);
        let struct_hash = keccak256(
            [
                keccak256(RECEIVE_WITH_AUTHORIZATION_TYPE).as_slice(),
                &message.eip712_encode_data(),
            ]
            .concat(),
        );
        typed_data_digest(&token_domain.separator(), &struct_hash)
    }
}

impl wire::Permit2DepositAuthorization {
    /// The digest the payer signs on chain `chain_id` (Permit2's domain): the
    /// [`PERMIT2_DEPOSIT_TYPE`] witness transfer these fields describe.
    pub fn digest(&self, chain_id: u64) -> B256 {
        let permit = &self.permit;
        let permitted = keccak256(
            (
                keccak256(TOKEN_PERMISSIONS_TYPE),
                permit.permitted.token,
                permit.permitted.amount,
            )
                .abi_encode(),
        );
        let witness = keccak256(
            (
                keccak256(DEPOSIT_WITNESS_TYPE),
                *permit.witness.channel_id.as_b256(),
            )
                .abi_encode(),
        );
        let struct_hash = keccak256(
            (
                keccak256(PERMIT2_DEPOSIT_TYPE),
                permitted,
                permit.spender,
                permit.nonce,
                permit.deadline,
                witness,
            )
                .abi_encode(),
        );
        let domain = crate::permit2::permit2_domain(chain_id);
        typed_data_digest(&domain.separator(), &struct_hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::sol_types::SolStruct;

    #[test]
    fn the_type_strings_are_the_sdks() {
        assert_eq!(
            ChannelConfig::eip712_encode_type(),
            "ChannelConfig(address payer,address payerAuthorizer,address receiver,address receiverAuthorizer,address token,uint40 withdrawDelay,bytes32 salt)"
        );
        assert_eq!(
            Voucher::eip712_encode_type(),
            "Voucher(bytes32 channelId,uint128 maxClaimableAmount)"
        );
        assert_eq!(
            Refund::eip712_encode_type(),
            "Refund(bytes32 channelId,uint256 nonce,uint128 amount)"
        );
        assert_eq!(
            ClaimBatch::eip712_encode_type(),
            "ClaimBatch(ClaimEntry[] claims)ClaimEntry(bytes32 channelId,uint128 maxClaimableAmount,uint128 totalClaimed)"
        );
        // ERC-3009's two authorizations differ in their name alone.
        assert_eq!(
            TransferWithAuthorization::eip712_encode_type().replacen(
                "TransferWithAuthorization",
                "ReceiveWithAuthorization",
                1
            ),
            RECEIVE_WITH_AUTHORIZATION_TYPE
        );
        // The deposit's witness transfer is Permit2's with the channel as witness.
        assert!(
            PERMIT2_DEPOSIT_TYPE
                .ends_with(&format!("{DEPOSIT_WITNESS_TYPE}{TOKEN_PERMISSIONS_TYPE}"))
        );
    }

    #[test]
    fn the_kept_separator_signs_as_alloy_does() {
        let domain = BatchDomain::new(8453);
        let voucher = Voucher {
            channelId: B256::repeat_byte(7),
            maxClaimableAmount: 26_000,
        };
        assert_eq!(
            domain.signing_hash(&voucher),
            voucher.eip712_signing_hash(&batch_domain(8453))
        );
        assert_ne!(*BatchDomain::new(84532).separator(), *domain.separator());
        assert_eq!(*BatchDomain::new(8453).separator(), *domain.separator());
        // The digests with kept type hashes are alloy's.
        assert_eq!(
            domain.voucher_digest(&ChannelId::new(voucher.channelId), 26_000),
            voucher.eip712_signing_hash(&batch_domain(8453))
        );
        let config = wire::ChannelConfig {
            payer: Address::repeat_byte(1),
            payer_authorizer: Address::repeat_byte(2),
            receiver: Address::repeat_byte(3),
            receiver_authorizer: Address::repeat_byte(4),
            token: Address::repeat_byte(5),
            withdraw_delay: 900,
            salt: B256::repeat_byte(6),
        };
        assert_eq!(
            *domain.channel_id(&config).as_b256(),
            config.to_sol().eip712_signing_hash(&batch_domain(8453))
        );
    }

    #[test]
    fn the_deposit_nonce_is_keccak_of_the_abi_encoded_pair() {
        let id = ChannelId::new(B256::repeat_byte(0x94));
        let salt = B256::with_last_byte(0xff);
        let encoded = (*id.as_b256(), U256::from_be_bytes(salt.0)).abi_encode();
        assert_eq!(erc3009_deposit_nonce(&id, &salt), keccak256(encoded));
    }
}
