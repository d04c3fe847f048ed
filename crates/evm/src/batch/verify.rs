//! Judging a voucher without the chain: a server's hot path. The checks and their order are the
//! official facilitator's (`facilitator/utils.ts#validateChannelConfig`, `facilitator/voucher.ts`)
//! with the channel's funds taken from a mirror of the chain instead of a read:
//!
//! 1. the config is the offer's: its id is the claimed one, then receiver, receiver
//!    authorizer, token, withdraw delay (equal to the offer's, then within 900 s .. 30 days);
//! 2. the voucher is signed by the config's payer authorizer (ECDSA, as the contract's
//!    `ecrecover` takes it);
//! 3. the channel is funded and the ceiling is covered: balance > 0, ceiling ≤ balance, and
//!    ceiling > total claimed (≥ for a refund's zero-charge voucher).
//!
//! Every refusal is one [`BatchVerifyError`], mapped to its wire reason in one place
//! (`From<&BatchVerifyError> for ReasonCode`). No I/O: two hashes of small buffers and one
//! `ecrecover` are the whole cost.

use alloy::primitives::{Address, B256, Signature, U256, uint};
use serde_json::Value;
use x402_proto::{ReasonCode, v2};

use super::encoding::{ChannelId, ChannelIdError};
use super::wire::{ChannelConfig, VoucherFields};
use super::{BatchDomain, MAX_WITHDRAW_DELAY, MIN_WITHDRAW_DELAY};

/// Why a voucher is refused (or, for [`Self::PayerAuthorizerUnset`], cannot be judged here).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchVerifyError {
    /// The offer cannot be paid with batch-settlement on an EVM chain.
    #[error("the offer is not a batch-settlement offer on an EVM chain: {0}")]
    InvalidRequirements(&'static str),
    /// A channel id is not `0x` and 64 hex digits.
    #[error(transparent)]
    ChannelIdInvalid(#[from] ChannelIdError),
    /// The claimed channel id is not the config's on this chain.
    #[error("the voucher names channel {claimed}, but its config is channel {computed}")]
    ChannelIdMismatch {
        /// The voucher's channel id.
        claimed: ChannelId,
        /// The config's.
        computed: ChannelId,
    },
    /// The channel pays someone other than `payTo`.
    #[error("the channel pays {receiver}, the offer {pay_to}")]
    ReceiverMismatch {
        /// The config's receiver.
        receiver: Address,
        /// The offer's `payTo`.
        pay_to: Address,
    },
    /// The channel's receiver authorizer is not the offer's (or the offer names none).
    #[error("the channel's receiver authorizer is {config}, the offer's {offered:?}")]
    ReceiverAuthorizerMismatch {
        /// The config's.
        config: Address,
        /// The offer's `extra.receiverAuthorizer`, if it names a non-zero one.
        offered: Option<Address>,
    },
    /// The channel holds another token than the offer's asset.
    #[error("the channel holds {token}, the offer asks for {asset}")]
    TokenMismatch {
        /// The config's token.
        token: Address,
        /// The offer's asset.
        asset: Address,
    },
    /// The channel's withdraw delay is not the offer's.
    #[error("the channel's withdraw delay is {config} s, not the offer's")]
    WithdrawDelayMismatch {
        /// The config's delay.
        config: u64,
    },
    /// The channel's withdraw delay is outside what the contract allows.
    #[error("the channel's withdraw delay {0} s is outside 900 s .. 2,592,000 s")]
    WithdrawDelayOutOfRange(u64),
    /// The payer authorizer is zero: only the payer's ERC-1271 wallet can vouch for the
    /// voucher, which takes the chain. Not a refusal; ask the facilitator.
    #[error("the channel has no payer authorizer: its vouchers are checked on chain")]
    PayerAuthorizerUnset,
    /// The voucher's signature is not the payer authorizer's.
    #[error("the voucher is not signed by the channel's payer authorizer {payer_authorizer}")]
    VoucherSignature {
        /// Who should have signed.
        payer_authorizer: Address,
    },
    /// Nothing is escrowed under this channel.
    #[error("the channel has no balance")]
    ChannelNotFound,
    /// The voucher's ceiling is above the escrowed balance.
    #[error(
        "the voucher's ceiling {max_claimable_amount} is above the channel's balance {balance}"
    )]
    CumulativeExceedsBalance {
        /// The ceiling.
        max_claimable_amount: u128,
        /// The balance.
        balance: u128,
    },
    /// The voucher's ceiling does not pass what was claimed already.
    #[error(
        "the voucher's ceiling {max_claimable_amount} does not pass the {total_claimed} claimed"
    )]
    CumulativeBelowClaimed {
        /// The ceiling.
        max_claimable_amount: u128,
        /// Claimed so far.
        total_claimed: u128,
    },
}

impl BatchVerifyError {
    /// Whether the voucher was not judged at all and the facilitator (the chain) must judge it.
    pub fn needs_chain(&self) -> bool {
        matches!(self, Self::PayerAuthorizerUnset)
    }

    /// The reason code official peers expect for it.
    pub fn reason(&self) -> ReasonCode {
        self.into()
    }
}

impl From<&BatchVerifyError> for ReasonCode {
    fn from(error: &BatchVerifyError) -> Self {
        use BatchVerifyError as E;
        match error {
            E::InvalidRequirements(_) => Self::INVALID_PAYMENT_REQUIREMENTS,
            E::ChannelIdInvalid(_) => Self::BATCH_SETTLEMENT_EVM_CHANNEL_ID_INVALID,
            E::ChannelIdMismatch { .. } => Self::BATCH_SETTLEMENT_EVM_CHANNEL_ID_MISMATCH,
            E::ReceiverMismatch { .. } => Self::BATCH_SETTLEMENT_EVM_RECEIVER_MISMATCH,
            E::ReceiverAuthorizerMismatch { .. } => {
                Self::BATCH_SETTLEMENT_EVM_RECEIVER_AUTHORIZER_MISMATCH
            }
            E::TokenMismatch { .. } => Self::BATCH_SETTLEMENT_EVM_TOKEN_MISMATCH,
            E::WithdrawDelayMismatch { .. } => Self::BATCH_SETTLEMENT_EVM_WITHDRAW_DELAY_MISMATCH,
            E::WithdrawDelayOutOfRange(_) => Self::BATCH_SETTLEMENT_EVM_WITHDRAW_DELAY_OUT_OF_RANGE,
            E::PayerAuthorizerUnset => Self::BATCH_SETTLEMENT_EVM_VERIFICATION_STATE_UNAVAILABLE,
            E::VoucherSignature { .. } => Self::BATCH_SETTLEMENT_EVM_VOUCHER_SIGNATURE,
            E::ChannelNotFound => Self::BATCH_SETTLEMENT_EVM_CHANNEL_NOT_FOUND,
            E::CumulativeExceedsBalance { .. } => {
                Self::BATCH_SETTLEMENT_EVM_CUMULATIVE_EXCEEDS_BALANCE
            }
            E::CumulativeBelowClaimed { .. } => Self::BATCH_SETTLEMENT_EVM_CUMULATIVE_BELOW_CLAIMED,
        }
    }
}

/// What the offer's `extra.withdrawDelay` asks of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OfferedDelay {
    /// Nothing: any delay in range.
    Any,
    /// Exactly this many seconds.
    Exactly(u64),
    /// Something no delay equals.
    Unmatchable,
}

impl OfferedDelay {
    /// Read as the official facilitator reads it (`Number(extra.withdrawDelay)`), for numbers
    /// and decimal strings.
    fn read(value: Option<&Value>) -> Self {
        match value {
            None => Self::Any,
            Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
                (Some(whole), _) => Self::Exactly(whole),
                // `900.0` is 900 to JavaScript; other fractions match no delay.
                (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f <= u64::MAX as f64 => {
                    Self::Exactly(f as u64)
                }
                _ => Self::Unmatchable,
            },
            Some(Value::String(s)) => s.trim().parse().map_or(Self::Unmatchable, Self::Exactly),
            Some(Value::Null) => Self::Exactly(0),
            Some(_) => Self::Unmatchable,
        }
    }

    fn admits(self, delay: u64) -> bool {
        match self {
            Self::Any => true,
            Self::Exactly(offered) => offered == delay,
            Self::Unmatchable => false,
        }
    }
}

/// What an offer asks of a channel, read once from its requirements and kept (per route):
/// the chain's domain, `payTo`, the asset, the receiver authorizer and the withdraw delay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelTerms {
    domain: BatchDomain,
    pay_to: Address,
    asset: Address,
    receiver_authorizer: Option<Address>,
    withdraw_delay: OfferedDelay,
}

impl ChannelTerms {
    /// The terms of `requirements`; refused when its network is not EVM or `payTo` / `asset`
    /// are not addresses. A missing or zero `extra.receiverAuthorizer` is kept as none: every
    /// channel is then refused for it, in its turn.
    pub fn from_requirements(
        requirements: &v2::PaymentRequirements,
    ) -> Result<Self, BatchVerifyError> {
        let chain_id =
            requirements
                .network
                .evm_chain_id()
                .ok_or(BatchVerifyError::InvalidRequirements(
                    "the network is not eip155",
                ))?;
        let address = |value: &str, what| {
            value
                .parse::<Address>()
                .map_err(|_| BatchVerifyError::InvalidRequirements(what))
        };
        let extra = requirements.extra.as_ref();
        Ok(Self {
            domain: BatchDomain::new(chain_id),
            pay_to: address(&requirements.pay_to, "payTo is not an address")?,
            asset: address(&requirements.asset, "asset is not an address")?,
            receiver_authorizer: extra
                .and_then(|extra| extra.get("receiverAuthorizer")?.as_str()?.parse().ok())
                .filter(|address: &Address| !address.is_zero()),
            withdraw_delay: OfferedDelay::read(extra.and_then(|extra| extra.get("withdrawDelay"))),
        })
    }

    /// The chain's batch-settlement domain.
    pub fn domain(&self) -> &BatchDomain {
        &self.domain
    }

    /// Whether `config` is a channel of this offer whose id is `claimed`, in the official
    /// order: id, receiver, receiver authorizer, token, withdraw delay, its range.
    pub fn check_config(
        &self,
        config: &ChannelConfig,
        claimed: &ChannelId,
    ) -> Result<(), BatchVerifyError> {
        let computed = self.domain.channel_id(config);
        if computed != *claimed {
            return Err(BatchVerifyError::ChannelIdMismatch {
                claimed: *claimed,
                computed,
            });
        }
        if config.receiver != self.pay_to {
            return Err(BatchVerifyError::ReceiverMismatch {
                receiver: config.receiver,
                pay_to: self.pay_to,
            });
        }
        if self.receiver_authorizer != Some(config.receiver_authorizer) {
            return Err(BatchVerifyError::ReceiverAuthorizerMismatch {
                config: config.receiver_authorizer,
                offered: self.receiver_authorizer,
            });
        }
        if config.token != self.asset {
            return Err(BatchVerifyError::TokenMismatch {
                token: config.token,
                asset: self.asset,
            });
        }
        if !self.withdraw_delay.admits(config.withdraw_delay) {
            return Err(BatchVerifyError::WithdrawDelayMismatch {
                config: config.withdraw_delay,
            });
        }
        if !(MIN_WITHDRAW_DELAY..=MAX_WITHDRAW_DELAY).contains(&config.withdraw_delay) {
            return Err(BatchVerifyError::WithdrawDelayOutOfRange(
                config.withdraw_delay,
            ));
        }
        Ok(())
    }
}

/// A channel's funds on chain (`channels(channelId)`), or a mirror of them no older than the
/// safe bound (under a third of the withdraw delay).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelFunds {
    /// Escrowed atomic units.
    pub balance: u128,
    /// Atomic units the receiver has claimed.
    pub total_claimed: u128,
}

/// What a voucher is for: a payment must raise the ceiling past what was claimed; a refund's
/// zero-charge voucher may equal it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoucherPurpose {
    /// A `deposit` or `voucher` payload.
    Payment,
    /// A `refund` payload.
    Refund,
}

/// A voucher that passed every check: its channel, payer and ceiling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedVoucher {
    /// The channel.
    pub channel_id: ChannelId,
    /// The channel's payer.
    pub payer: Address,
    /// The signed ceiling.
    pub max_claimable_amount: u128,
}

/// Half the order of secp256k1: the contract (OpenZeppelin's `ECDSA`) refuses larger `s`.
const SECP256K1_HALF_ORDER: U256 =
    uint!(0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0_U256);

/// The signer of `digest`, recovered as the contract's `ecrecover` path accepts signatures:
/// 65 bytes, `v` 27 or 28, `s` in the lower half of the order. A signature the contract would
/// refuse is refused here, so a voucher served on is a voucher that can be claimed.
pub fn recover_strict(signature: &[u8], digest: &B256) -> Option<Address> {
    let bytes: &[u8; 65] = signature.try_into().ok()?;
    if !matches!(bytes[64], 27 | 28) || U256::from_be_slice(&bytes[32..64]) > SECP256K1_HALF_ORDER {
        return None;
    }
    Signature::from_raw_array(bytes)
        .ok()?
        .recover_address_from_prehash(digest)
        .ok()
}

/// Whether `voucher` is signed by `config`'s payer authorizer, checked by ECDSA alone (no
/// chain). A zero payer authorizer is [`BatchVerifyError::PayerAuthorizerUnset`].
pub fn check_voucher_signature(
    domain: &BatchDomain,
    config: &ChannelConfig,
    voucher: &VoucherFields,
) -> Result<(), BatchVerifyError> {
    if config.payer_authorizer.is_zero() {
        return Err(BatchVerifyError::PayerAuthorizerUnset);
    }
    let digest = domain.voucher_digest(&voucher.channel_id, voucher.max_claimable_amount);
    if recover_strict(&voucher.signature, &digest) != Some(config.payer_authorizer) {
        return Err(BatchVerifyError::VoucherSignature {
            payer_authorizer: config.payer_authorizer,
        });
    }
    Ok(())
}

/// Whether `funds` cover a voucher with ceiling `max_claimable_amount` for `purpose`.
pub fn check_ceiling(
    max_claimable_amount: u128,
    funds: ChannelFunds,
    purpose: VoucherPurpose,
) -> Result<(), BatchVerifyError> {
    if funds.balance == 0 {
        return Err(BatchVerifyError::ChannelNotFound);
    }
    if max_claimable_amount > funds.balance {
        return Err(BatchVerifyError::CumulativeExceedsBalance {
            max_claimable_amount,
            balance: funds.balance,
        });
    }
    let below = match purpose {
        VoucherPurpose::Payment => max_claimable_amount <= funds.total_claimed,
        VoucherPurpose::Refund => max_claimable_amount < funds.total_claimed,
    };
    if below {
        return Err(BatchVerifyError::CumulativeBelowClaimed {
            max_claimable_amount,
            total_claimed: funds.total_claimed,
        });
    }
    Ok(())
}

/// Judges `voucher` on the channel `config` for an offer with `terms`, against `funds`
/// (mirrored on-chain state): the payer authorizer must be set (else the chain must judge,
/// [`BatchVerifyError::needs_chain`]), then the config, the signature and the ceiling, in the
/// official order.
pub fn verify_voucher_locally(
    terms: &ChannelTerms,
    config: &ChannelConfig,
    voucher: &VoucherFields,
    funds: ChannelFunds,
    purpose: VoucherPurpose,
) -> Result<VerifiedVoucher, BatchVerifyError> {
    if config.payer_authorizer.is_zero() {
        return Err(BatchVerifyError::PayerAuthorizerUnset);
    }
    terms.check_config(config, &voucher.channel_id)?;
    check_voucher_signature(terms.domain(), config, voucher)?;
    check_ceiling(voucher.max_claimable_amount, funds, purpose)?;
    Ok(VerifiedVoucher {
        channel_id: voucher.channel_id,
        payer: config.payer,
        max_claimable_amount: voucher.max_claimable_amount,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::Bytes;
    use alloy::signers::SignerSync;
    use alloy::signers::local::PrivateKeySigner;
    use serde_json::json;

    const RECEIVER_AUTHORIZER: Address = Address::repeat_byte(0x3c);
    const PAY_TO: Address = Address::repeat_byte(0x70);
    const ASSET: Address = Address::repeat_byte(0x83);

    fn offer(extra: Value) -> v2::PaymentRequirements {
        serde_json::from_value(json!({
            "scheme": "batch-settlement", "network": "eip155:8453", "amount": "1000",
            "asset": ASSET, "payTo": PAY_TO, "maxTimeoutSeconds": 300, "extra": extra,
        }))
        .unwrap()
    }

    fn terms() -> ChannelTerms {
        ChannelTerms::from_requirements(&offer(
            json!({"receiverAuthorizer": RECEIVER_AUTHORIZER, "withdrawDelay": 900}),
        ))
        .unwrap()
    }

    struct Channel {
        key: PrivateKeySigner,
        config: ChannelConfig,
    }

    impl Channel {
        fn new() -> Self {
            let key = PrivateKeySigner::random();
            let config = ChannelConfig {
                payer: Address::repeat_byte(0x90),
                payer_authorizer: key.address(),
                receiver: PAY_TO,
                receiver_authorizer: RECEIVER_AUTHORIZER,
                token: ASSET,
                withdraw_delay: 900,
                salt: B256::ZERO,
            };
            Self { key, config }
        }

        fn voucher(&self, max_claimable_amount: u128) -> VoucherFields {
            let domain = *terms().domain();
            let channel_id = domain.channel_id(&self.config);
            let digest = domain.voucher_digest(&channel_id, max_claimable_amount);
            VoucherFields {
                channel_id,
                max_claimable_amount,
                signature: self.key.sign_hash_sync(&digest).unwrap().as_bytes().into(),
            }
        }
    }

    const FUNDED: ChannelFunds = ChannelFunds {
        balance: 100_000,
        total_claimed: 10_000,
    };

    fn verdict(
        terms: &ChannelTerms,
        config: &ChannelConfig,
        voucher: &VoucherFields,
        funds: ChannelFunds,
        purpose: VoucherPurpose,
    ) -> Result<VerifiedVoucher, ReasonCode> {
        verify_voucher_locally(terms, config, voucher, funds, purpose).map_err(|e| e.reason())
    }

    #[test]
    fn a_covered_voucher_of_the_payer_authorizer_passes() {
        let channel = Channel::new();
        let voucher = channel.voucher(26_000);
        let verified = verdict(
            &terms(),
            &channel.config,
            &voucher,
            FUNDED,
            VoucherPurpose::Payment,
        )
        .unwrap();
        assert_eq!(verified.payer, channel.config.payer);
        assert_eq!(verified.max_claimable_amount, 26_000);
        assert_eq!(verified.channel_id, voucher.channel_id);
        // The ceiling may be exactly the balance.
        let full = channel.voucher(FUNDED.balance);
        assert!(
            verify_voucher_locally(
                &terms(),
                &channel.config,
                &full,
                FUNDED,
                VoucherPurpose::Payment
            )
            .is_ok()
        );
    }

    #[test]
    fn every_config_refusal_has_its_code_in_the_official_order() {
        let channel = Channel::new();
        let terms = terms();
        let check = |edit: &dyn Fn(&mut ChannelConfig)| {
            let mut config = channel.config;
            edit(&mut config);
            // The voucher names the edited config's id, so only the edited field is wrong.
            let channel_id = terms.domain().channel_id(&config);
            let voucher = VoucherFields {
                channel_id,
                ..channel.voucher(26_000)
            };
            verdict(&terms, &config, &voucher, FUNDED, VoucherPurpose::Payment).unwrap_err()
        };
        type Edit<'a> = &'a dyn Fn(&mut ChannelConfig);
        let cases: [(Edit<'_>, ReasonCode); 6] = [
            (
                &|c| c.receiver = Address::repeat_byte(1),
                ReasonCode::BATCH_SETTLEMENT_EVM_RECEIVER_MISMATCH,
            ),
            (
                &|c| c.receiver_authorizer = Address::repeat_byte(2),
                ReasonCode::BATCH_SETTLEMENT_EVM_RECEIVER_AUTHORIZER_MISMATCH,
            ),
            (
                &|c| c.token = Address::repeat_byte(3),
                ReasonCode::BATCH_SETTLEMENT_EVM_TOKEN_MISMATCH,
            ),
            (
                &|c| c.withdraw_delay = 901,
                ReasonCode::BATCH_SETTLEMENT_EVM_WITHDRAW_DELAY_MISMATCH,
            ),
            // Receiver first: a config wrong in two fields gets the earlier code.
            (
                &|c| {
                    c.token = Address::repeat_byte(3);
                    c.receiver = Address::repeat_byte(1);
                },
                ReasonCode::BATCH_SETTLEMENT_EVM_RECEIVER_MISMATCH,
            ),
            (
                &|c| {
                    c.withdraw_delay = 901;
                    c.receiver_authorizer = Address::repeat_byte(2);
                },
                ReasonCode::BATCH_SETTLEMENT_EVM_RECEIVER_AUTHORIZER_MISMATCH,
            ),
        ];
        for (edit, code) in cases {
            assert_eq!(check(edit), code);
        }

        // An id that is not the config's comes first of all.
        let mut voucher = channel.voucher(26_000);
        voucher.channel_id = ChannelId::new(B256::repeat_byte(9));
        let mut config = channel.config;
        config.receiver = Address::repeat_byte(1);
        assert_eq!(
            verdict(&terms, &config, &voucher, FUNDED, VoucherPurpose::Payment).unwrap_err(),
            ReasonCode::BATCH_SETTLEMENT_EVM_CHANNEL_ID_MISMATCH
        );
    }

    #[test]
    fn the_withdraw_delay_must_be_the_offers_and_in_range() {
        let channel = Channel::new();
        let with_delay = |offered: Value, delay: u64| {
            let terms = ChannelTerms::from_requirements(&offer(
                json!({"receiverAuthorizer": RECEIVER_AUTHORIZER, "withdrawDelay": offered}),
            ))
            .unwrap();
            let config = ChannelConfig {
                withdraw_delay: delay,
                ..channel.config
            };
            terms
                .check_config(&config, &terms.domain().channel_id(&config))
                .map_err(|e| e.reason())
        };
        let out_of_range = ReasonCode::BATCH_SETTLEMENT_EVM_WITHDRAW_DELAY_OUT_OF_RANGE;
        let mismatch = ReasonCode::BATCH_SETTLEMENT_EVM_WITHDRAW_DELAY_MISMATCH;
        assert_eq!(with_delay(json!(899), 899), Err(out_of_range.clone()));
        assert_eq!(with_delay(json!(2_592_001), 2_592_001), Err(out_of_range));
        assert_eq!(with_delay(json!(2_592_000), 2_592_000), Ok(()));
        // Read as the official facilitator reads it: a decimal string counts.
        assert_eq!(with_delay(json!("3600"), 3600), Ok(()));
        assert_eq!(with_delay(json!("soon"), 3600), Err(mismatch.clone()));
        assert_eq!(with_delay(json!(3600.5), 3600), Err(mismatch));
        assert_eq!(with_delay(json!(3600.0), 3600), Ok(()));
        // No delay in the offer: any in range.
        let terms = ChannelTerms::from_requirements(&offer(
            json!({"receiverAuthorizer": RECEIVER_AUTHORIZER}),
        ))
        .unwrap();
        let config = ChannelConfig {
            withdraw_delay: 86_400,
            ..channel.config
        };
        assert_eq!(
            terms.check_config(&config, &terms.domain().channel_id(&config)),
            Ok(())
        );
    }

    #[test]
    fn an_offer_without_a_receiver_authorizer_refuses_every_channel() {
        let channel = Channel::new();
        for extra in [
            json!({}),
            json!({"receiverAuthorizer": Address::ZERO}),
            json!({"receiverAuthorizer": "nobody"}),
        ] {
            let terms = ChannelTerms::from_requirements(&offer(extra)).unwrap();
            let config = ChannelConfig {
                receiver_authorizer: Address::ZERO,
                ..channel.config
            };
            for config in [channel.config, config] {
                assert_eq!(
                    terms
                        .check_config(&config, &terms.domain().channel_id(&config))
                        .map_err(|e| e.reason()),
                    Err(ReasonCode::BATCH_SETTLEMENT_EVM_RECEIVER_AUTHORIZER_MISMATCH)
                );
            }
        }
    }

    #[test]
    fn an_offer_off_evm_or_with_bad_addresses_is_refused() {
        for (edit, what) in [
            (
                json!({"network": "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"}),
                "network",
            ),
            (json!({"payTo": "merchant"}), "payTo"),
            (json!({"asset": "USD"}), "asset"),
        ] {
            let mut requirements = serde_json::to_value(offer(json!({}))).unwrap();
            requirements
                .as_object_mut()
                .unwrap()
                .extend(edit.as_object().unwrap().clone());
            let error =
                ChannelTerms::from_requirements(&serde_json::from_value(requirements).unwrap())
                    .unwrap_err();
            assert_eq!(
                error.reason(),
                ReasonCode::INVALID_PAYMENT_REQUIREMENTS,
                "{what}"
            );
        }
    }

    #[test]
    fn a_signature_not_the_payer_authorizers_is_refused() {
        let channel = Channel::new();
        let terms = terms();
        let good = channel.voucher(26_000);
        let refused = |voucher: &VoucherFields| {
            verdict(
                &terms,
                &channel.config,
                voucher,
                FUNDED,
                VoucherPurpose::Payment,
            )
            .unwrap_err()
        };
        let code = ReasonCode::BATCH_SETTLEMENT_EVM_VOUCHER_SIGNATURE;

        // Signed by another key.
        let stranger = Channel::new();
        let mut voucher = stranger.voucher(26_000);
        voucher.channel_id = good.channel_id;
        voucher.signature = {
            let digest = terms.domain().voucher_digest(&good.channel_id, 26_000);
            stranger
                .key
                .sign_hash_sync(&digest)
                .unwrap()
                .as_bytes()
                .into()
        };
        assert_eq!(refused(&voucher), code);

        // Signed for another ceiling (a raised amount).
        let raised = VoucherFields {
            max_claimable_amount: 27_000,
            ..good.clone()
        };
        assert_eq!(refused(&raised), code);

        // The same signature with `s` flipped to the high half recovers the same key, but the
        // contract refuses it; so do other `v` encodings, compact and truncated signatures.
        let signature = Signature::from_raw(&good.signature).unwrap();
        let order = U256::from_be_slice(&alloy::hex!(
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141"
        ));
        let high_s = Signature::new(signature.r(), order - signature.s(), !signature.v());
        assert_eq!(
            high_s
                .recover_address_from_prehash(
                    &terms.domain().voucher_digest(&good.channel_id, 26_000)
                )
                .ok(),
            Some(channel.key.address())
        );
        let mut v_as_parity = good.signature.to_vec();
        v_as_parity[64] -= 27;
        let forms: [Bytes; 5] = [
            high_s.as_bytes().into(),
            v_as_parity.into(),
            Bytes::copy_from_slice(&signature.as_erc2098()),
            Bytes::copy_from_slice(&good.signature[..64]),
            Bytes::new(),
        ];
        for signature in forms {
            assert_eq!(
                refused(&VoucherFields {
                    signature,
                    ..good.clone()
                }),
                code
            );
        }
    }

    #[test]
    fn a_channel_without_payer_authorizer_is_left_to_the_chain() {
        let channel = Channel::new();
        let config = ChannelConfig {
            payer_authorizer: Address::ZERO,
            ..channel.config
        };
        let voucher = VoucherFields {
            channel_id: terms().domain().channel_id(&config),
            ..channel.voucher(26_000)
        };
        let error =
            verify_voucher_locally(&terms(), &config, &voucher, FUNDED, VoucherPurpose::Payment)
                .unwrap_err();
        assert!(error.needs_chain());
        assert!(!BatchVerifyError::ChannelNotFound.needs_chain());
    }

    #[test]
    fn the_ceiling_must_be_funded_and_pass_what_was_claimed() {
        let channel = Channel::new();
        let terms = terms();
        let judge = |max: u128, funds: ChannelFunds, purpose| {
            verdict(
                &terms,
                &channel.config,
                &channel.voucher(max),
                funds,
                purpose,
            )
            .map(|_| ())
        };
        let payment = VoucherPurpose::Payment;
        let refund = VoucherPurpose::Refund;
        assert_eq!(
            judge(26_000, ChannelFunds::default(), payment),
            Err(ReasonCode::BATCH_SETTLEMENT_EVM_CHANNEL_NOT_FOUND)
        );
        assert_eq!(
            judge(100_001, FUNDED, payment),
            Err(ReasonCode::BATCH_SETTLEMENT_EVM_CUMULATIVE_EXCEEDS_BALANCE)
        );
        let below = ReasonCode::BATCH_SETTLEMENT_EVM_CUMULATIVE_BELOW_CLAIMED;
        assert_eq!(judge(10_000, FUNDED, payment), Err(below.clone()));
        assert_eq!(judge(9_999, FUNDED, payment), Err(below.clone()));
        // A refund's zero-charge voucher may equal what was claimed, not go below it.
        assert_eq!(judge(10_000, FUNDED, refund), Ok(()));
        assert_eq!(judge(9_999, FUNDED, refund), Err(below));
        assert_eq!(judge(10_001, FUNDED, payment), Ok(()));
    }

    #[test]
    fn every_refusal_maps_to_a_batch_settlement_code() {
        let errors = [
            BatchVerifyError::ChannelIdInvalid(ChannelIdError),
            BatchVerifyError::WithdrawDelayOutOfRange(1),
            BatchVerifyError::PayerAuthorizerUnset,
        ];
        for error in errors {
            assert!(
                error
                    .reason()
                    .as_str()
                    .starts_with("invalid_batch_settlement_evm_"),
                "{error}"
            );
        }
    }
}
