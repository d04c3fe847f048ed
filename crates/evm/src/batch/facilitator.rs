//! `batch-settlement` on one EVM chain behind the [`Facilitator`](x402_proto::Facilitator)
//! trait, as the official facilitator (`@x402/evm` 2.27 `batch-settlement/facilitator`) serves
//! it: `/verify` judges a client's `deposit`, `voucher` or `refund` in its order with its
//! reason codes and answers the channel's state on chain in `extra`; `/settle` runs a
//! `deposit`, a `claim`, a `settle` or an enriched `refund` on chain (see [`super::settle`]).
//!
//! With a receiver-authorizer key it advertises that key (`/supported` `extra`) and signs
//! claim batches and refunds servers send unsigned. Such a facilitator can refund any channel
//! naming its key to the payer: put it behind the service's bearer token.
//!
//! Deposits are ERC-3009 `receiveWithAuthorization`s to the ERC-3009 collector, or Permit2
//! witness transfers to the Permit2 collector (see [`super::permit2_deposit`]), as the offer's
//! `assetTransferMethod` says (else the payload's form).

use std::sync::Arc;

use alloy::primitives::{Address, Bytes, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolValue};
use serde_json::json;
use x402_proto::{
    FacilitatorError, PaymentRequest, ReasonCode, Scheme, SupportedKind, SupportedResponse,
    VerifyResponse, v2,
};

use super::onchain::{self, ChannelState, IBatchSettlement};
use super::sends::{BatchSendLog, BatchSends, MemoryBatchLog};
use super::verify::{ChannelTerms, VoucherPurpose, check_ceiling};
use super::wire::{
    AssetTransferMethod, BatchPayload, ChannelConfig, DepositAuthorization, DepositPayload,
    Erc3009Authorization, VoucherFields,
};
use super::{
    BatchDomain, BatchVerifyError, ChannelFunds, ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
    PERMIT2_DEPOSIT_COLLECTOR_ADDRESS,
};
use crate::payload::eip712_domain;
use crate::scheme::ExactEvmScheme;
use crate::smart_wallet::PayerSignature;

/// Seconds an ERC-3009 deposit authorization must still be valid for (the official 6).
const VALID_BEFORE_BUFFER_SECS: u64 = 6;

/// A facilitator for `batch-settlement` on one EVM chain, sending from the chain's signer.
#[derive(Debug, Clone)]
pub struct BatchEvmFacilitator {
    pub(super) chain: Arc<ExactEvmScheme>,
    pub(super) domain: BatchDomain,
    pub(super) authorizer: Option<Arc<PrivateKeySigner>>,
    pub(super) sends: BatchSends,
}

pub(super) use crate::permit2::{Refusal, refuse};

impl From<BatchVerifyError> for Refusal {
    fn from(error: BatchVerifyError) -> Self {
        refuse(error.reason(), error.to_string())
    }
}

/// What a valid payment's verification read: the payer and the channel's state before it,
/// and for a deposit the escrow call running it.
#[derive(Debug)]
pub(super) struct Verified {
    pub(super) payer: Address,
    pub(super) channel_id: super::ChannelId,
    pub(super) state: ChannelState,
    pub(super) deposit_call: Option<Vec<u8>>,
}

/// The payer's code, read once however many of its signatures a check judges.
pub(super) struct PayerCode<'a> {
    chain: &'a ExactEvmScheme,
    payer: Address,
    code: tokio::sync::OnceCell<Bytes>,
}

impl<'a> PayerCode<'a> {
    pub(super) fn new(chain: &'a ExactEvmScheme, payer: Address) -> Self {
        Self {
            chain,
            payer,
            code: tokio::sync::OnceCell::new(),
        }
    }

    /// Whether `signature` over `digest` is the payer's: ECDSA for an account without code,
    /// ERC-1271 for a contract.
    pub(super) async fn signed(
        &self,
        digest: alloy::primitives::B256,
        signature: &Bytes,
    ) -> Result<bool, FacilitatorError> {
        let code = self
            .code
            .get_or_try_init(|| crate::permit2::code_at(self.chain, self.payer))
            .await?;
        Ok(
            crate::permit2::signed_given_code(self.chain, code, digest, self.payer, signature)
                .await,
        )
    }
}

impl BatchEvmFacilitator {
    /// Serves `batch-settlement` on `chain`'s network with its signer, signing claims and
    /// refunds with `authorizer` when given (and advertising it as `receiverAuthorizer`),
    /// remembering what it sent in memory.
    pub fn new(chain: ExactEvmScheme, authorizer: Option<PrivateKeySigner>) -> Self {
        Self::with_log(chain, authorizer, Arc::new(MemoryBatchLog::default()))
    }

    /// [`Self::new`], recording deposits, claims and refunds it sends in `log`.
    pub fn with_log(
        chain: ExactEvmScheme,
        authorizer: Option<PrivateKeySigner>,
        log: Arc<dyn BatchSendLog>,
    ) -> Self {
        Self {
            domain: BatchDomain::new(chain.chain_id()),
            chain: Arc::new(chain),
            authorizer: authorizer.map(Arc::new),
            sends: BatchSends::new(log),
        }
    }

    /// The receiver authorizer it signs as, if it holds that key.
    pub fn receiver_authorizer(&self) -> Option<Address> {
        self.authorizer.as_ref().map(|key| key.address())
    }

    /// The kind it serves, naming its receiver authorizer when it holds that key.
    pub fn kind(&self) -> SupportedKind {
        SupportedKind {
            x402_version: 2,
            scheme: Scheme::BATCH_SETTLEMENT,
            network: self.chain.network().clone(),
            extra: self
                .receiver_authorizer()
                .map(|address| json!({ "receiverAuthorizer": address.to_checksum(None) })),
        }
    }

    /// What `/supported` lists: `batch-settlement` on this chain, and the signer.
    fn supported_now(&self) -> SupportedResponse {
        SupportedResponse {
            kinds: vec![self.kind()],
            extensions: Vec::new(),
            signers: crate::facilitator::evm_signers(self.chain.signer_address()),
        }
    }

    async fn verify_payment(
        &self,
        request: &PaymentRequest,
    ) -> Result<VerifyResponse, FacilitatorError> {
        let payer = payload_payer(request);
        Ok(match self.check(request).await? {
            Ok(verified) => {
                let extra = verified.state.extra(verified.channel_id);
                VerifyResponse {
                    extra: Some(serde_json::to_value(extra).unwrap_or_default()),
                    ..VerifyResponse::valid(verified.payer.to_checksum(None))
                }
            }
            Err(refusal) => VerifyResponse::invalid(refusal.code, refusal.message, payer),
        })
    }

    /// The checks of `/verify` in the official order: the scheme and network, then by
    /// payload type. `Err` only when the chain could not be read.
    pub(super) async fn check(
        &self,
        request: &PaymentRequest,
    ) -> Result<Result<Verified, Refusal>, FacilitatorError> {
        let (requirements, raw) = match opened(request) {
            Ok(opened) => opened,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let Ok(payload) = serde_json::from_value::<BatchPayload>(raw.clone()) else {
            return Ok(Err(refuse(
                ReasonCode::BATCH_SETTLEMENT_EVM_PAYLOAD_TYPE,
                "the payload is not a batch-settlement deposit, voucher or refund",
            )));
        };
        let terms = match ChannelTerms::from_requirements(requirements) {
            Ok(terms) => terms,
            Err(error) => return Ok(Err(error.into())),
        };
        match &payload {
            BatchPayload::Deposit(deposit) => {
                self.check_deposit(request, &terms, requirements, deposit)
                    .await
            }
            BatchPayload::Voucher(p) => {
                let purpose = VoucherPurpose::Payment;
                self.check_voucher(&terms, &p.channel_config, &p.voucher, purpose)
                    .await
            }
            BatchPayload::Refund(p) => {
                let purpose = VoucherPurpose::Refund;
                self.check_voucher(&terms, &p.channel_config, &p.voucher, purpose)
                    .await
            }
        }
    }

    /// Whether `voucher` is signed for `config`'s channel: ECDSA by the payer authorizer, or,
    /// when that is zero, by the payer (ECDSA, or ERC-1271 for a contract).
    async fn voucher_signed(
        &self,
        config: &ChannelConfig,
        voucher: &VoucherFields,
        code: &PayerCode<'_>,
    ) -> Result<Result<(), Refusal>, FacilitatorError> {
        if !config.payer_authorizer.is_zero() {
            return Ok(
                super::check_voucher_signature(&self.domain, config, voucher)
                    .map_err(Refusal::from),
            );
        }
        let digest = self
            .domain
            .voucher_digest(&voucher.channel_id, voucher.max_claimable_amount);
        let signed = code.signed(digest, &voucher.signature).await?;
        Ok(if signed {
            Ok(())
        } else {
            Err(refuse(
                ReasonCode::BATCH_SETTLEMENT_EVM_VOUCHER_SIGNATURE,
                format!("the voucher is not signed by the payer {}", config.payer),
            ))
        })
    }

    /// A `voucher` or `refund`: the config, the signature, then the ceiling against the
    /// channel's state read in one round trip.
    async fn check_voucher(
        &self,
        terms: &ChannelTerms,
        config: &ChannelConfig,
        voucher: &VoucherFields,
        purpose: VoucherPurpose,
    ) -> Result<Result<Verified, Refusal>, FacilitatorError> {
        if let Err(error) = terms.check_config(config, &voucher.channel_id) {
            return Ok(Err(error.into()));
        }
        let code = PayerCode::new(&self.chain, config.payer);
        if let Err(refusal) = self.voucher_signed(config, voucher, &code).await? {
            return Ok(Err(refusal));
        }
        let (state, _) = onchain::read_channel(&self.chain, &voucher.channel_id, None)
            .await
            .map_err(onchain::ReadError::into_facilitator)?;
        let funds = ChannelFunds {
            balance: state.balance,
            total_claimed: state.total_claimed,
        };
        if let Err(error) = check_ceiling(voucher.max_claimable_amount, funds, purpose) {
            return Ok(Err(error.into()));
        }
        Ok(Ok(Verified {
            payer: config.payer,
            channel_id: voucher.channel_id,
            state,
            deposit_call: None,
        }))
    }

    /// A `deposit`: the config, the authorization (ERC-3009 or Permit2, as the offer asks),
    /// the voucher, the payer's balance and the ceiling against the channel after the
    /// deposit, then a simulation of it.
    async fn check_deposit(
        &self,
        request: &PaymentRequest,
        terms: &ChannelTerms,
        requirements: &v2::PaymentRequirements,
        deposit: &DepositPayload,
    ) -> Result<Result<Verified, Refusal>, FacilitatorError> {
        let config = &deposit.channel_config;
        let voucher = &deposit.voucher;
        if let Err(error) = terms.check_config(config, &voucher.channel_id) {
            return Ok(Err(error.into()));
        }
        let code = PayerCode::new(&self.chain, config.payer);
        let authorization = &deposit.deposit.authorization;
        let collection = match (transfer_method(requirements, deposit), authorization) {
            (AssetTransferMethod::Eip3009, DepositAuthorization::Erc3009Authorization(a)) => self
                .check_erc3009(requirements, deposit, a, &code)
                .await?
                .map(|()| (ERC3009_DEPOSIT_COLLECTOR_ADDRESS, erc3009_collector_data(a))),
            (AssetTransferMethod::Eip3009, _) => Err(refuse(
                ReasonCode::BATCH_SETTLEMENT_EVM_ERC3009_AUTHORIZATION_REQUIRED,
                "the offer takes ERC-3009 deposits; this one carries no erc3009Authorization",
            )),
            (AssetTransferMethod::Permit2, DepositAuthorization::Permit2Authorization(a)) => self
                .check_permit2(request, requirements, deposit, a, &code)
                .await?
                .map(|data| (PERMIT2_DEPOSIT_COLLECTOR_ADDRESS, data)),
            (AssetTransferMethod::Permit2, _) => Err(refuse(
                ReasonCode::BATCH_SETTLEMENT_EVM_PAYLOAD_TYPE,
                "the offer takes Permit2 deposits; this one carries no permit2Authorization",
            )),
        };
        let (collector, collector_data) = match collection {
            Ok(collection) => collection,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if let Err(refusal) = self.voucher_signed(config, voucher, &code).await? {
            return Ok(Err(refusal));
        }
        let amount = deposit.deposit.amount;
        let (state, held) = onchain::read_channel(
            &self.chain,
            &voucher.channel_id,
            Some((config.token, config.payer)),
        )
        .await
        .map_err(onchain::ReadError::into_facilitator)?;
        if held.unwrap_or_default() < U256::from(amount) {
            return Ok(Err(refuse(
                ReasonCode::BATCH_SETTLEMENT_EVM_INSUFFICIENT_BALANCE,
                format!("the payer holds less than the {amount} deposited"),
            )));
        }
        let ceiling = voucher.max_claimable_amount;
        let after = state.balance.saturating_add(amount);
        if ceiling > after {
            return Ok(Err(BatchVerifyError::CumulativeExceedsBalance {
                max_claimable_amount: ceiling,
                balance: after,
            }
            .into()));
        }
        if ceiling <= state.total_claimed {
            return Ok(Err(BatchVerifyError::CumulativeBelowClaimed {
                max_claimable_amount: ceiling,
                total_claimed: state.total_claimed,
            }
            .into()));
        }
        let call = deposit_call(deposit, collector, collector_data);
        if let Err(revert) = onchain::simulate(&self.chain, &call).await {
            return Ok(Err(refuse(
                ReasonCode::BATCH_SETTLEMENT_EVM_DEPOSIT_SIMULATION_FAILED,
                revert,
            )));
        }
        Ok(Ok(Verified {
            payer: config.payer,
            channel_id: voucher.channel_id,
            state,
            deposit_call: Some(call),
        }))
    }

    /// The ERC-3009 authorization of a deposit: the token's EIP-712 domain is named, the time
    /// window holds, and the payer signed `receiveWithAuthorization` to the ERC-3009 collector
    /// with the nonce bound to the channel.
    async fn check_erc3009(
        &self,
        requirements: &v2::PaymentRequirements,
        deposit: &DepositPayload,
        authorization: &Erc3009Authorization,
        code: &PayerCode<'_>,
    ) -> Result<Result<(), Refusal>, FacilitatorError> {
        let extra = requirements.extra.as_ref();
        let field = |key: &str| extra?.get(key)?.as_str().filter(|s| !s.is_empty());
        let (Some(name), Some(version)) = (field("name"), field("version")) else {
            return Ok(Err(refuse(
                ReasonCode::BATCH_SETTLEMENT_EVM_MISSING_EIP712_DOMAIN,
                "the offer lacks extra.name / extra.version (the token's EIP-712 domain)",
            )));
        };
        let now = crate::unix_now();
        if authorization.valid_before < U256::from(now + VALID_BEFORE_BUFFER_SECS) {
            return Ok(Err(refuse(
                ReasonCode::BATCH_SETTLEMENT_EVM_VALID_BEFORE,
                "the deposit authorization has expired",
            )));
        }
        if authorization.valid_after > U256::from(now) {
            return Ok(Err(refuse(
                ReasonCode::BATCH_SETTLEMENT_EVM_VALID_AFTER,
                "the deposit authorization is not valid yet",
            )));
        }
        let config = &deposit.channel_config;
        let token_domain = eip712_domain(name, version, self.chain.chain_id(), config.token);
        let digest = authorization.digest(
            config.payer,
            deposit.deposit.amount,
            &deposit.voucher.channel_id,
            &token_domain,
        );
        let inner = inner_signature(&authorization.signature);
        Ok(if code.signed(digest, &inner).await? {
            Ok(())
        } else {
            Err(refuse(
                ReasonCode::BATCH_SETTLEMENT_EVM_RECEIVE_AUTHORIZATION_SIGNATURE,
                format!(
                    "the deposit is not {}'s receiveWithAuthorization to the ERC-3009 collector",
                    config.payer
                ),
            ))
        })
    }
}

crate::facilitator::facilitator_from_methods!(BatchEvmFacilitator);

/// The v2 requirements and raw payload of a batch-settlement request, once its scheme and
/// network are checked as the official facilitator checks them first.
pub(super) fn opened(
    request: &PaymentRequest,
) -> Result<(&v2::PaymentRequirements, &serde_json::Value), Refusal> {
    let (scheme, network) = request.accepted();
    let requirements = match request {
        PaymentRequest::V2 { requirements, .. } => requirements,
        PaymentRequest::V1 { .. } => {
            let message = "batch-settlement is an x402 v2 scheme";
            return Err(refuse(ReasonCode::INVALID_X402_VERSION, message));
        }
    };
    let batch = Scheme::BATCH_SETTLEMENT;
    if *scheme != batch || requirements.scheme != batch {
        let message = "the payment or the requirements are not batch-settlement";
        return Err(refuse(ReasonCode::BATCH_SETTLEMENT_EVM_SCHEME, message));
    }
    if *network != requirements.network {
        let message = "the payment is for another network than the requirements";
        return Err(refuse(
            ReasonCode::BATCH_SETTLEMENT_EVM_NETWORK_MISMATCH,
            message,
        ));
    }
    Ok((requirements, request.payload()))
}

/// The payer a batch-settlement payload names (its channel's), for refusals.
pub(super) fn payload_payer(request: &PaymentRequest) -> Option<String> {
    let payer = request
        .payload()
        .pointer("/channelConfig/payer")?
        .as_str()?;
    Some(payer.to_owned())
}

/// How a deposit takes the tokens: the offer's `assetTransferMethod`, else the payload's form.
fn transfer_method(
    requirements: &v2::PaymentRequirements,
    deposit: &DepositPayload,
) -> AssetTransferMethod {
    let hinted = requirements
        .extra
        .as_ref()
        .and_then(|extra| extra.get("assetTransferMethod"))
        .and_then(|value| serde_json::from_value(value.clone()).ok());
    hinted.unwrap_or(match deposit.deposit.authorization {
        DepositAuthorization::Permit2Authorization(_) => AssetTransferMethod::Permit2,
        DepositAuthorization::Erc3009Authorization(_) => AssetTransferMethod::Eip3009,
    })
}

/// A signature with any ERC-6492 wrapper taken off (what the token judges once the wallet is
/// deployed).
pub(super) fn inner_signature(signature: &Bytes) -> Bytes {
    PayerSignature::parse(signature)
        .map(|parsed| parsed.inner)
        .unwrap_or_else(|_| signature.clone())
}

/// The ERC-3009 collector's `collectorData`: `abi.encode(validAfter, validBefore, salt,
/// signature)`.
fn erc3009_collector_data(authorization: &Erc3009Authorization) -> Bytes {
    (
        authorization.valid_after,
        authorization.valid_before,
        authorization.salt,
        inner_signature(&authorization.signature),
    )
        .abi_encode_params()
        .into()
}

/// The escrow call running `deposit` through `collector` with `collector_data`.
pub(super) fn deposit_call(
    deposit: &DepositPayload,
    collector: Address,
    collector_data: Bytes,
) -> Vec<u8> {
    IBatchSettlement::depositCall {
        config: deposit.channel_config.to_call(),
        amount: deposit.deposit.amount,
        collector,
        collectorData: collector_data,
    }
    .abi_encode()
}
