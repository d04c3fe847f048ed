//! `batch-settlement` on the devnet: offers, payer-signed deposits and vouchers (the core's
//! signing), the server-authored `/settle` requests (claim, settle, refund), and our
//! facilitator holding a receiver-authorizer key.

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use serde_json::{Value, json};
use x402_evm::batch::{
    BatchDomain, ChannelConfig, ChannelId, DEFAULT_WITHDRAW_DELAY, VoucherFields,
    channel_config_for, sign_erc3009_deposit, sign_permit2_deposit, sign_voucher,
};
use x402_proto::{PaymentRequest, Scheme, TokenAmount, v2};

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
