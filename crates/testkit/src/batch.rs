//! `batch-settlement` on the devnet: offers, payer-signed deposits and vouchers (the core's
//! signing), a payer keeping its count as the official client does ([`BatchPayer`]), the
//! server-authored `/settle` requests (claim, settle, refund), our facilitator holding a
//! receiver-authorizer key, channels funded and charged as the record a server keeps of them,
//! and a facilitator wrapper counting the calls a server makes ([`CountingFacilitator`]).

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use x402_evm::batch::{
    BatchDomain, ChannelConfig, ChannelId, ChannelRecord, ChannelStateExtra,
    DEFAULT_WITHDRAW_DELAY, HeldVoucher, OnchainMirror, VoucherFields, channel_config_for,
    sign_erc3009_deposit, sign_permit2_deposit, sign_voucher,
};

use x402_proto::{
    BoxFuture, Facilitator, FacilitatorError, IdempotencyKey, PaymentId, PaymentIdError,
    PaymentRequest, Scheme, SettleResponse, SupportedResponse, TokenAmount, VerifyResponse, v2,
};

use crate::{Chain, Stack, request_paying};

impl Chain {
    /// A `batch-settlement` offer of `price` atomic units of the devnet token per request,
    /// paid to account 1, whose channels name `receiver_authorizer` (ERC-3009 deposits,
    /// signed payments valid five minutes, the default withdraw delay).
    pub fn batch_offer(
        &self,
        price: u128,
        receiver_authorizer: Address,
    ) -> v2::PaymentRequirements {
        let mut offer = self.requirements(price);
        offer.scheme = Scheme::BATCH_SETTLEMENT;
        offer.max_timeout_seconds = 300;
        let extra = offer.extra.get_or_insert_with(|| json!({}));
        extra["receiverAuthorizer"] = json!(receiver_authorizer.to_checksum(None));
        extra["withdrawDelay"] = json!(DEFAULT_WITHDRAW_DELAY);
        extra["assetTransferMethod"] = json!("eip3009");
        offer
    }

    /// [`Chain::batch_offer`] taking Permit2 deposits (`assetTransferMethod: "permit2"`).
    pub fn batch_permit2_offer(
        &self,
        price: u128,
        receiver_authorizer: Address,
    ) -> v2::PaymentRequirements {
        let mut offer = self.batch_offer(price, receiver_authorizer);
        if let Some(extra) = offer.extra.as_mut() {
            extra["assetTransferMethod"] = json!("permit2");
        }
        offer
    }

    /// The batch-settlement domain of the devnet.
    pub fn batch_domain(&self) -> BatchDomain {
        BatchDomain::new(self.devnet.chain_id())
    }

    /// `payer`'s channel (lane `salt`) for `offer`, the payer signing its own vouchers.
    pub fn batch_channel(
        &self,
        offer: &v2::PaymentRequirements,
        payer: &PrivateKeySigner,
        salt: B256,
    ) -> (ChannelConfig, ChannelId) {
        let config = channel_config_for(offer, payer.address(), payer.address(), salt)
            .expect("a batch-settlement offer");
        (config, self.batch_domain().channel_id(&config))
    }

    /// A `voucher` payload: `payer` vouches for `ceiling` in all on `config`'s channel.
    pub async fn batch_voucher(
        &self,
        payer: &PrivateKeySigner,
        config: &ChannelConfig,
        ceiling: u128,
    ) -> Value {
        let voucher = self.signed_voucher(payer, config, ceiling).await;
        json!({"type": "voucher", "channelConfig": config, "voucher": voucher})
    }

    /// `payer`'s voucher for `ceiling` in all on `config`'s channel.
    async fn signed_voucher(
        &self,
        payer: &PrivateKeySigner,
        config: &ChannelConfig,
        ceiling: u128,
    ) -> VoucherFields {
        let domain = self.batch_domain();
        sign_voucher(payer, &domain, domain.channel_id(config), ceiling)
            .await
            .expect("the voucher signs")
    }

    /// A `deposit` payload: `payer` deposits `amount` into `config`'s channel by an ERC-3009
    /// authorization and vouches for `ceiling` in all.
    pub async fn batch_deposit(
        &self,
        offer: &v2::PaymentRequirements,
        payer: &PrivateKeySigner,
        config: &ChannelConfig,
        amount: u128,
        ceiling: u128,
    ) -> Value {
        let voucher = self.signed_voucher(payer, config, ceiling).await;
        let now = x402_evm::unix_now();
        let deposit =
            sign_erc3009_deposit(payer, offer, *config, voucher, amount, B256::random(), now)
                .await
                .expect("the deposit signs");
        let mut payload = serde_json::to_value(deposit).unwrap();
        payload["type"] = json!("deposit");
        payload
    }

    /// A `deposit` payload: `payer` deposits `amount` into `config`'s channel by a Permit2
    /// witness transfer to the Permit2 deposit collector (a random Permit2 nonce) and vouches
    /// for `ceiling` in all. The payer must have approved Permit2 (or send an EIP-2612
    /// approval beside it).
    pub async fn batch_permit2_deposit(
        &self,
        offer: &v2::PaymentRequirements,
        payer: &PrivateKeySigner,
        config: &ChannelConfig,
        amount: u128,
        ceiling: u128,
    ) -> Value {
        let voucher = self.signed_voucher(payer, config, ceiling).await;
        let nonce = U256::from_be_bytes(B256::random().0);
        let now = x402_evm::unix_now();
        let deposit = sign_permit2_deposit(payer, offer, *config, voucher, amount, nonce, now)
            .await
            .expect("the deposit signs");
        let mut payload = serde_json::to_value(deposit).unwrap();
        payload["type"] = json!("deposit");
        payload
    }

    /// A claim row for `payer`'s voucher of `ceiling` on `config`, claiming `claimed` in all.
    pub async fn batch_claim_row(
        &self,
        payer: &PrivateKeySigner,
        config: &ChannelConfig,
        ceiling: u128,
        claimed: u128,
    ) -> Value {
        let voucher = self.signed_voucher(payer, config, ceiling).await;
        json!({
            "voucher": {"channel": config, "maxClaimableAmount": ceiling.to_string()},
            "signature": voucher.signature,
            "totalClaimed": claimed.to_string(),
        })
    }

    /// The `/settle` request of a server-authored `payload` (claim, settle, enriched refund)
    /// for the devnet token paid to account 1: the requirements official servers send with
    /// them (amount zero, no extra).
    pub fn batch_settle_request(&self, payload: Value) -> PaymentRequest {
        let mut requirements = self.requirements(0);
        requirements.scheme = Scheme::BATCH_SETTLEMENT;
        requirements.amount = TokenAmount::from_atomic(0);
        requirements.max_timeout_seconds = 0;
        requirements.extra = Some(json!({}));
        request_paying(payload, &requirements)
    }
}

impl Stack {
    /// Funds `payer`'s channel (lane `salt`) for `offer` with `deposit` through this
    /// facilitator, and answers the record a server keeps of it once it has charged `charged`
    /// on it: the payer's voucher for exactly `charged` held, the chain mirrored from the
    /// deposit's answer.
    pub async fn batch_charged_channel(
        &self,
        offer: &v2::PaymentRequirements,
        payer: &PrivateKeySigner,
        salt: B256,
        deposit: u128,
        charged: u128,
    ) -> ChannelRecord {
        let chain = &self.chain;
        let (config, id) = chain.batch_channel(offer, payer, salt);
        let payload = chain
            .batch_deposit(offer, payer, &config, deposit, charged)
            .await;
        let (_, answer) = self.settle(&request_paying(payload, offer)).await;
        assert_eq!(answer["success"], true, "the deposit settles: {answer}");
        let state: ChannelStateExtra =
            serde_json::from_value(answer["extra"]["channelState"].clone())
                .expect("the deposit's answer has the channel's state");
        let voucher = chain.signed_voucher(payer, &config, charged).await;
        let now = x402_evm::unix_now();
        ChannelRecord {
            charged,
            voucher: Some(HeldVoucher {
                max_claimable: charged,
                signature: voucher.signature,
            }),
            onchain: OnchainMirror::from_state(&state, now),
            last_charged_at: now,
            ..ChannelRecord::new(id, chain.devnet.network(), config)
        }
    }

    /// Our facilitator serving `chain`, with `authorizer` as its `batch-settlement`
    /// receiver-authorizer key (read from a key file in its folder).
    pub async fn with_receiver_authorizer(chain: Chain, authorizer: &PrivateKeySigner) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("receiver-authorizer.key");
        std::fs::write(&key_file, authorizer.to_bytes().to_string()).unwrap();
        let extra = format!(
            "[batch_settlement]\nreceiver_authorizer_key_file = {:?}\n",
            key_file.display().to_string()
        );
        let rpc_url = chain.devnet.rpc_url().to_string();
        let config =
            crate::stack::config_on(chain.devnet.chain_id(), &rpc_url, dir.path(), &extra, "");
        Self::serve(chain, dir, config).await
    }
}

/// A payer of `batch-settlement` offers, paying as the official client pays: one channel
/// (lane `salt`) whose payer signs its own vouchers, and what it believes it was charged on it
/// so far (`charged`, which a test advances from the receipts it gets).
#[derive(Debug, Clone)]
pub struct BatchPayer {
    /// The payer's key (it signs deposits and vouchers).
    pub signer: PrivateKeySigner,
    /// The channel.
    pub config: ChannelConfig,
    /// Its id.
    pub id: ChannelId,
    /// What the payer believes the server charged on the channel so far.
    pub charged: u128,
}

impl Chain {
    /// Devnet payer `index`'s channel (lane `salt`) for `offer`, nothing charged on it yet.
    pub fn batch_payer(
        &self,
        offer: &v2::PaymentRequirements,
        index: usize,
        salt: B256,
    ) -> BatchPayer {
        let signer = self.devnet.payers()[index].signer.clone();
        let (config, id) = self.batch_channel(offer, &signer, salt);
        BatchPayer {
            signer,
            config,
            id,
            charged: 0,
        }
    }
}

impl BatchPayer {
    /// The ceiling of the voucher paying `offer` next: what was charged plus its price.
    pub fn next_ceiling(&self, offer: &v2::PaymentRequirements) -> u128 {
        self.charged + u128::try_from(offer.amount.0).expect("a price within uint128")
    }

    /// A `deposit` of `amount` paying `offer` (its voucher at [`Self::next_ceiling`]).
    pub async fn deposit(
        &self,
        chain: &Chain,
        offer: &v2::PaymentRequirements,
        amount: u128,
    ) -> Value {
        let ceiling = self.next_ceiling(offer);
        chain
            .batch_deposit(offer, &self.signer, &self.config, amount, ceiling)
            .await
    }

    /// A `voucher` paying `offer` (at [`Self::next_ceiling`]).
    pub async fn voucher(&self, chain: &Chain, offer: &v2::PaymentRequirements) -> Value {
        self.voucher_at(chain, self.next_ceiling(offer)).await
    }

    /// A `voucher` for `ceiling` in all.
    pub async fn voucher_at(&self, chain: &Chain, ceiling: u128) -> Value {
        chain
            .batch_voucher(&self.signer, &self.config, ceiling)
            .await
    }

    /// A `refund` request (a zero-charge voucher at what was charged), of `amount` or of
    /// everything left.
    pub async fn refund(&self, chain: &Chain, amount: Option<u128>) -> Value {
        let mut payload = self.voucher_at(chain, self.charged).await;
        payload["type"] = json!("refund");
        if let Some(amount) = amount {
            payload["amount"] = json!(amount.to_string());
        }
        payload
    }

    /// The `PAYMENT-SIGNATURE` header paying `offer` with `payload`.
    pub fn header(offer: &v2::PaymentRequirements, payload: Value) -> String {
        let payment: x402_proto::PaymentPayload = serde_json::from_value(json!({
            "x402Version": 2, "accepted": offer, "payload": payload,
        }))
        .expect("a v2 payment");
        x402_proto::encode_header(&payment)
    }
}

/// A facilitator that counts the verify and settle calls it passes on to another (to prove a
/// server verified locally, or sent nothing).
pub struct CountingFacilitator {
    inner: std::sync::Arc<dyn Facilitator>,
    verifies: AtomicUsize,
    settles: AtomicUsize,
}

impl std::fmt::Debug for CountingFacilitator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountingFacilitator")
            .field("verifies", &self.verifies())
            .field("settles", &self.settles())
            .finish_non_exhaustive()
    }
}

impl CountingFacilitator {
    /// Counts the calls passed on to `inner`.
    pub fn new(inner: std::sync::Arc<dyn Facilitator>) -> Self {
        Self {
            inner,
            verifies: AtomicUsize::new(0),
            settles: AtomicUsize::new(0),
        }
    }

    /// Verify calls so far.
    pub fn verifies(&self) -> usize {
        self.verifies.load(Ordering::SeqCst)
    }

    /// Settle calls so far.
    pub fn settles(&self) -> usize {
        self.settles.load(Ordering::SeqCst)
    }
}

impl Facilitator for CountingFacilitator {
    fn verify<'a>(
        &'a self,
        request: &'a PaymentRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        self.verifies.fetch_add(1, Ordering::SeqCst);
        self.inner.verify(request)
    }

    fn settle<'a>(
        &'a self,
        request: &'a PaymentRequest,
        idempotency_key: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        self.settles.fetch_add(1, Ordering::SeqCst);
        self.inner.settle(request, idempotency_key)
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        self.inner.supported()
    }

    fn payment_id(&self, request: &PaymentRequest) -> Result<PaymentId, PaymentIdError> {
        self.inner.payment_id(request)
    }
}
