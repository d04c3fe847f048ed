//! Signing `batch-settlement` messages. Payer side, as the official client does: the channel
//! config for an offer, a voucher, the ERC-3009 or Permit2 deposit authorization. Receiver side: the
//! receiver authorizer's claim batch and refund.

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::signers::Signer;
use x402_proto::{Network, v2};

use super::encoding::{AboveUint128, ChannelId, UINT40_MAX, to_uint128};
use super::wire::{
    ChannelConfig, Deposit, DepositAuthorization, DepositPayload, DepositWitness,
    Erc3009Authorization, Permit2DepositAuthorization, VoucherClaim, VoucherFields,
};
use super::{BatchDomain, DEFAULT_WITHDRAW_DELAY, PERMIT2_DEPOSIT_COLLECTOR_ADDRESS};
use crate::payload::eip712_domain;
use crate::permit2::{Permit2Authorization, Permitted};

/// Why a `batch-settlement` message could not be built or signed.
#[derive(Debug, thiserror::Error)]
pub enum BatchSignError {
    /// The offer's network is not an EVM chain.
    #[error("network {0} is not an EVM chain (eip155:<id>)")]
    UnsupportedNetwork(Network),
    /// An address field of the offer is not an address.
    #[error("the offer's {field} is not an EVM address: {value:?}")]
    InvalidAddress {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// The offer names no receiver authorizer, or the zero address.
    #[error("the offer must name a non-zero extra.receiverAuthorizer")]
    NoReceiverAuthorizer,
    /// The offer's `extra.withdrawDelay` is a number that is not a whole `uint40`.
    #[error("the offer's extra.withdrawDelay is not a whole number of seconds below 2^40")]
    InvalidWithdrawDelay,
    /// `extra.name` / `extra.version` (the token's EIP-712 domain) are missing.
    #[error("the offer lacks extra.name / extra.version (the token's EIP-712 domain)")]
    MissingEip712Domain,
    /// The deposit's signer is not the channel's payer.
    #[error("{signer} signs the deposit, but the channel's payer is {payer}")]
    PayerMismatch {
        /// Who signs.
        signer: Address,
        /// The channel's payer.
        payer: Address,
    },
    /// The voucher given for a deposit is for another channel than the deposit's config.
    #[error("the voucher is for channel {voucher}, the deposit funds {config}")]
    VoucherForAnotherChannel {
        /// The voucher's channel.
        voucher: ChannelId,
        /// The config's channel.
        config: ChannelId,
    },
    /// An amount does not fit the contract's `uint128`.
    #[error(transparent)]
    AboveUint128(#[from] AboveUint128),
    /// The signer failed.
    #[error("signing failed: {0}")]
    Signer(#[from] alloy::signers::Error),
}

fn address_field(field: &'static str, value: &str) -> Result<Address, BatchSignError> {
    value.parse().map_err(|_| BatchSignError::InvalidAddress {
        field,
        value: value.to_owned(),
    })
}

/// The batch-settlement domain of `requirements`' chain.
pub fn domain_of(requirements: &v2::PaymentRequirements) -> Result<BatchDomain, BatchSignError> {
    requirements
        .network
        .evm_chain_id()
        .map(BatchDomain::new)
        .ok_or_else(|| BatchSignError::UnsupportedNetwork(requirements.network.clone()))
}

/// The channel config a payer opens for `requirements`, as the official client builds it:
/// `payer`, `payer_authorizer` (the key that will sign vouchers), `receiver` = `payTo`,
/// `receiverAuthorizer` from `extra` (required, non-zero), `token` = `asset`, `withdrawDelay`
/// from `extra` when it is a number and 900 s otherwise, and `salt` (zero for the first lane).
pub fn channel_config_for(
    requirements: &v2::PaymentRequirements,
    payer: Address,
    payer_authorizer: Address,
    salt: B256,
) -> Result<ChannelConfig, BatchSignError> {
    let extra = requirements.extra.as_ref();
    let receiver_authorizer = extra
        .and_then(|extra| extra.get("receiverAuthorizer"))
        .and_then(|value| value.as_str())
        .and_then(|value| value.parse::<Address>().ok())
        .filter(|address| !address.is_zero())
        .ok_or(BatchSignError::NoReceiverAuthorizer)?;
    let withdraw_delay = match extra.and_then(|extra| extra.get("withdrawDelay")) {
        Some(serde_json::Value::Number(number)) => number
            .as_u64()
            .filter(|delay| *delay <= UINT40_MAX)
            .ok_or(BatchSignError::InvalidWithdrawDelay)?,
        _ => DEFAULT_WITHDRAW_DELAY,
    };
    Ok(ChannelConfig {
        payer,
        payer_authorizer,
        receiver: address_field("payTo", &requirements.pay_to)?,
        receiver_authorizer,
        token: address_field("asset", &requirements.asset)?,
        withdraw_delay,
        salt,
    })
}

/// The ceiling of the voucher paying the next request: what was charged so far plus this
/// request's price (`requirements.amount`, the most it may cost).
pub fn next_ceiling(charged_cumulative: u128, price: U256) -> Result<u128, AboveUint128> {
    let ceiling = U256::from(charged_cumulative).saturating_add(price);
    to_uint128("voucher ceiling", ceiling)
}

/// `signer`'s signature over `digest`, as payloads carry it (65 bytes, `v` 27 or 28).
async fn sign<S: Signer + ?Sized>(signer: &S, digest: B256) -> Result<Bytes, BatchSignError> {
    Ok(signer.sign_hash(&digest).await?.as_bytes().into())
}

/// A voucher letting the receiver claim up to `max_claimable_amount` of `channel_id` in all,
/// signed by `signer` (the channel's payer authorizer).
pub async fn sign_voucher<S: Signer + ?Sized>(
    signer: &S,
    domain: &BatchDomain,
    channel_id: ChannelId,
    max_claimable_amount: u128,
) -> Result<VoucherFields, BatchSignError> {
    let signature = sign(
        signer,
        domain.voucher_digest(&channel_id, max_claimable_amount),
    )
    .await?;
    Ok(VoucherFields {
        channel_id,
        max_claimable_amount,
        signature,
    })
}

/// A `deposit` payload funding `config` with `amount` through ERC-3009, as the official client
/// signs it: `signer` (the payer) authorizes a `receiveWithAuthorization` of `amount` to the
/// ERC-3009 collector, valid from 0 until `now + maxTimeoutSeconds`, its nonce bound to the
/// channel and `salt` (draw it at random: `B256::random()`); `voucher` pays this request.
pub async fn sign_erc3009_deposit<S: Signer + ?Sized>(
    signer: &S,
    requirements: &v2::PaymentRequirements,
    config: ChannelConfig,
    voucher: VoucherFields,
    amount: u128,
    salt: B256,
    now: u64,
) -> Result<DepositPayload, BatchSignError> {
    let (domain, channel_id) = deposit_channel(signer.address(), requirements, &config, &voucher)?;
    let extra = requirements.extra.as_ref();
    let field = |key: &str| extra?.get(key)?.as_str().filter(|s| !s.is_empty());
    let (Some(name), Some(version)) = (field("name"), field("version")) else {
        return Err(BatchSignError::MissingEip712Domain);
    };
    let token_domain = eip712_domain(name, version, domain.chain_id(), config.token);
    let authorization = Erc3009Authorization {
        valid_after: U256::ZERO,
        valid_before: U256::from(now.saturating_add(requirements.max_timeout_seconds)),
        salt,
        signature: Bytes::new(),
    };
    let digest = authorization.digest(config.payer, amount, &channel_id, &token_domain);
    let signature = sign(signer, digest).await?;
    Ok(DepositPayload {
        channel_config: config,
        voucher,
        deposit: Deposit {
            amount,
            authorization: DepositAuthorization::Erc3009Authorization(Erc3009Authorization {
                signature,
                ..authorization
            }),
        },
    })
}

/// The offer's domain and the channel a deposit by `signer` funds: refused when `signer` is not
/// the channel's payer or `voucher` pays another channel.
fn deposit_channel(
    signer: Address,
    requirements: &v2::PaymentRequirements,
    config: &ChannelConfig,
    voucher: &VoucherFields,
) -> Result<(BatchDomain, ChannelId), BatchSignError> {
    if signer != config.payer {
        return Err(BatchSignError::PayerMismatch {
            signer,
            payer: config.payer,
        });
    }
    let domain = domain_of(requirements)?;
    let channel_id = domain.channel_id(config);
    if voucher.channel_id != channel_id {
        return Err(BatchSignError::VoucherForAnotherChannel {
            voucher: voucher.channel_id,
            config: channel_id,
        });
    }
    Ok((domain, channel_id))
}

/// A `deposit` payload funding `config` with `amount` through Permit2, as the official client
/// signs it: `signer` (the payer) signs a Permit2 witness transfer of exactly `amount` of the
/// offer's asset to the Permit2 deposit collector, the channel as witness, with Permit2 nonce
/// `nonce` (draw it at random: each settles once) and deadline `now + maxTimeoutSeconds`;
/// `voucher` pays this request. The payer must have approved Permit2 for the token (or send
/// an EIP-2612 approval of it alongside).
pub async fn sign_permit2_deposit<S: Signer + ?Sized>(
    signer: &S,
    requirements: &v2::PaymentRequirements,
    config: ChannelConfig,
    voucher: VoucherFields,
    amount: u128,
    nonce: U256,
    now: u64,
) -> Result<DepositPayload, BatchSignError> {
    let (domain, channel_id) = deposit_channel(signer.address(), requirements, &config, &voucher)?;
    let token = address_field("asset", &requirements.asset)?;
    let mut authorization = Permit2DepositAuthorization {
        permit: Permit2Authorization {
            from: config.payer,
            permitted: Permitted {
                token,
                amount: U256::from(amount),
            },
            spender: PERMIT2_DEPOSIT_COLLECTOR_ADDRESS,
            nonce,
            deadline: U256::from(now.saturating_add(requirements.max_timeout_seconds)),
            witness: DepositWitness { channel_id },
        },
        signature: Bytes::new(),
    };
    authorization.signature = sign(signer, authorization.digest(domain.chain_id())).await?;
    Ok(DepositPayload {
        channel_config: config,
        voucher,
        deposit: Deposit {
            amount,
            authorization: DepositAuthorization::Permit2Authorization(authorization),
        },
    })
}

/// The receiver authorizer's signature letting anyone submit `claims` in one
/// `claimWithSignature`.
pub async fn sign_claim_batch<S: Signer + ?Sized>(
    signer: &S,
    domain: &BatchDomain,
    claims: &[VoucherClaim],
) -> Result<Bytes, BatchSignError> {
    sign(signer, domain.claim_batch_digest(claims)).await
}

/// The receiver authorizer's signature refunding `amount` of `channel_id` at refund nonce
/// `nonce` (the channel's current `refundNonce`).
pub async fn sign_refund<S: Signer + ?Sized>(
    signer: &S,
    domain: &BatchDomain,
    channel_id: &ChannelId,
    nonce: U256,
    amount: u128,
) -> Result<Bytes, BatchSignError> {
    sign(signer, domain.refund_digest(channel_id, nonce, amount)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::signers::local::PrivateKeySigner;
    use serde_json::json;

    fn offer(extra: serde_json::Value) -> v2::PaymentRequirements {
        serde_json::from_value(json!({
            "scheme": "batch-settlement", "network": "eip155:8453", "amount": "1000",
            "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
            "payTo": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            "maxTimeoutSeconds": 300, "extra": extra,
        }))
        .unwrap()
    }

    #[test]
    fn the_config_follows_the_official_client() {
        let payer = Address::repeat_byte(1);
        let authorizer = Address::repeat_byte(2);
        let receiver_authorizer = Address::repeat_byte(3);
        let config = channel_config_for(
            &offer(json!({"receiverAuthorizer": receiver_authorizer})),
            payer,
            authorizer,
            B256::ZERO,
        )
        .unwrap();
        assert_eq!((config.payer, config.payer_authorizer), (payer, authorizer));
        assert_eq!(config.receiver_authorizer, receiver_authorizer);
        assert_eq!(config.withdraw_delay, DEFAULT_WITHDRAW_DELAY);

        let with_delay = |delay: serde_json::Value| {
            channel_config_for(
                &offer(json!({"receiverAuthorizer": receiver_authorizer, "withdrawDelay": delay})),
                payer,
                payer,
                B256::ZERO,
            )
            .map(|c| c.withdraw_delay)
        };
        assert_eq!(with_delay(json!(86_400)).unwrap(), 86_400);
        // The official client takes only a number; anything else falls back to 900 s.
        assert_eq!(with_delay(json!("86400")).unwrap(), DEFAULT_WITHDRAW_DELAY);
        assert!(matches!(
            with_delay(json!(1u64 << 40)),
            Err(BatchSignError::InvalidWithdrawDelay)
        ));

        for extra in [
            json!({}),
            json!({"receiverAuthorizer": Address::ZERO}),
            json!({"receiverAuthorizer": "not an address"}),
        ] {
            assert!(matches!(
                channel_config_for(&offer(extra), payer, payer, B256::ZERO),
                Err(BatchSignError::NoReceiverAuthorizer)
            ));
        }
    }

    #[test]
    fn the_next_ceiling_must_fit_uint128() {
        assert_eq!(next_ceiling(25_000, U256::from(1_000)).unwrap(), 26_000);
        assert_eq!(
            next_ceiling(u128::MAX - 1, U256::from(1)).unwrap(),
            u128::MAX
        );
        assert!(next_ceiling(u128::MAX, U256::from(1)).is_err());
        assert!(next_ceiling(0, U256::MAX).is_err());
    }

    #[tokio::test]
    async fn only_the_payer_signs_its_deposit() {
        let payer = PrivateKeySigner::random();
        let stranger = PrivateKeySigner::random();
        let requirements = offer(json!({
            "receiverAuthorizer": Address::repeat_byte(3), "name": "USD Coin", "version": "2",
        }));
        let config =
            channel_config_for(&requirements, payer.address(), payer.address(), B256::ZERO)
                .unwrap();
        let domain = domain_of(&requirements).unwrap();
        let voucher = sign_voucher(&payer, &domain, domain.channel_id(&config), 1_000)
            .await
            .unwrap();
        let deposit = |signer: PrivateKeySigner, requirements: v2::PaymentRequirements| {
            let voucher = voucher.clone();
            async move {
                sign_erc3009_deposit(
                    &signer,
                    &requirements,
                    config,
                    voucher,
                    10_000,
                    B256::ZERO,
                    0,
                )
                .await
            }
        };
        assert!(matches!(
            deposit(stranger, requirements.clone()).await,
            Err(BatchSignError::PayerMismatch { .. })
        ));
        let other_lane = sign_voucher(
            &payer,
            &domain,
            domain.channel_id(&ChannelConfig {
                salt: B256::with_last_byte(1),
                ..config
            }),
            1_000,
        )
        .await
        .unwrap();
        assert!(matches!(
            sign_erc3009_deposit(
                &payer,
                &requirements,
                config,
                other_lane,
                10_000,
                B256::ZERO,
                0
            )
            .await,
            Err(BatchSignError::VoucherForAnotherChannel { .. })
        ));
        let no_domain = offer(json!({"receiverAuthorizer": Address::repeat_byte(3)}));
        assert!(matches!(
            deposit(payer.clone(), no_domain).await,
            Err(BatchSignError::MissingEip712Domain)
        ));
        let signed = deposit(payer, requirements).await.unwrap();
        assert_eq!(signed.deposit.amount, 10_000);
        let DepositAuthorization::Erc3009Authorization(auth) = signed.deposit.authorization else {
            panic!("an ERC-3009 deposit");
        };
        assert_eq!(auth.valid_before, U256::from(300));
        assert_eq!(auth.signature.len(), 65);
    }

    #[tokio::test]
    async fn a_permit2_deposit_is_the_payers_witness_transfer_to_the_collector() {
        let payer = PrivateKeySigner::random();
        let requirements = offer(json!({"receiverAuthorizer": Address::repeat_byte(3)}));
        let config =
            channel_config_for(&requirements, payer.address(), payer.address(), B256::ZERO)
                .unwrap();
        let domain = domain_of(&requirements).unwrap();
        let channel_id = domain.channel_id(&config);
        let voucher = sign_voucher(&payer, &domain, channel_id, 1_000)
            .await
            .unwrap();
        let nonce = U256::from(77);
        let signed =
            sign_permit2_deposit(&payer, &requirements, config, voucher, 5_000, nonce, 100)
                .await
                .unwrap();
        let DepositAuthorization::Permit2Authorization(auth) = signed.deposit.authorization else {
            panic!("a Permit2 deposit");
        };
        let permit = &auth.permit;
        assert_eq!(permit.spender, PERMIT2_DEPOSIT_COLLECTOR_ADDRESS);
        assert_eq!((permit.from, permit.nonce), (payer.address(), nonce));
        assert_eq!(permit.permitted.amount, U256::from(5_000));
        assert_eq!(permit.deadline, U256::from(400));
        assert_eq!(permit.witness.channel_id, channel_id);
        let signature = alloy::primitives::Signature::try_from(auth.signature.as_ref()).unwrap();
        let signer = signature
            .recover_address_from_prehash(&auth.digest(domain.chain_id()))
            .unwrap();
        assert_eq!(signer, payer.address());
        // Written as the official client writes it.
        let wire = serde_json::to_value(&auth).unwrap();
        assert_eq!(wire["witness"]["channelId"], json!(channel_id));
        assert_eq!(wire["nonce"], "77");
        assert!(wire["signature"].is_string());
    }
}
