//! Every way a payment can be wrong is refused with its reason code, by verify and by settle,
//! on a real chain, and no money moves and no transaction is sent.

use alloy::primitives::{Address, Bytes, U256};
use alloy::signers::local::PrivateKeySigner;
use serde_json::json;
use x402_evm::{Authorization, ExactEvmFacilitator, ExactEvmPayload, unix_now};
use x402_proto::{Facilitator, Network, PaymentRequest, ReasonCode, Scheme, v2};
use x402_testkit::{
    Chain, authorization_for, honest_payment, sign_for, sign_with_domain, v1_request, v2_request,
};

/// A chain, its facilitator and requirements for 5,000 atomic units: what each case starts from.
struct Fixture {
    chain: Chain,
    facilitator: ExactEvmFacilitator,
    requirements: v2::PaymentRequirements,
}

impl Fixture {
    async fn start() -> Self {
        let chain = Chain::start().await;
        let facilitator = ExactEvmFacilitator::new(chain.scheme.clone());
        let requirements = chain.requirements(5_000);
        Self {
            chain,
            facilitator,
            requirements,
        }
    }

    /// A copy of the requirements, changed by `edit`.
    fn requirements_with(
        &self,
        edit: impl FnOnce(&mut v2::PaymentRequirements),
    ) -> v2::PaymentRequirements {
        let mut requirements = self.requirements.clone();
        edit(&mut requirements);
        requirements
    }

    /// The funded payer whose payments the cases spoil.
    fn payer(&self) -> &PrivateKeySigner {
        &self.chain.devnet.payers()[0].signer
    }

    /// Funded devnet payer number `index`, a stranger to the payer's authorizations.
    fn stranger(&self, index: usize) -> &PrivateKeySigner {
        &self.chain.devnet.payers()[index].signer
    }

    /// An honest payment by the payer for the requirements.
    fn honest(&self) -> ExactEvmPayload {
        honest_payment(self.payer(), &self.requirements)
    }

    /// The payer's authorization for the requirements, changed by `edit`.
    fn authorization(&self, edit: impl FnOnce(&mut Authorization)) -> Authorization {
        let mut authorization = authorization_for(self.payer().address(), &self.requirements);
        edit(&mut authorization);
        authorization
    }

    /// `authorization` signed by `signer` under the requirements' domain.
    fn signed_by(
        &self,
        signer: &PrivateKeySigner,
        authorization: Authorization,
    ) -> ExactEvmPayload {
        ExactEvmPayload {
            signature: sign_for(signer, &authorization, &self.requirements),
            authorization,
        }
    }

    /// The payer's authorization, changed by `edit`, then signed by the payer.
    fn signed_after(&self, edit: impl FnOnce(&mut Authorization)) -> ExactEvmPayload {
        self.signed_by(self.payer(), self.authorization(edit))
    }

    /// Asserts that `payload`, sent as v2 against the requirements, is refused with `expected`.
    async fn assert_payload_refused(&self, payload: &ExactEvmPayload, expected: ReasonCode) {
        let request = v2_request(payload, &self.requirements);
        self.assert_refused(&request, expected).await;
    }

    /// Asserts that verify and settle both refuse `request` with `expected`, with a message,
    /// and that neither balances nor the facilitator's nonce change.
    async fn assert_refused(&self, request: &PaymentRequest, expected: ReasonCode) {
        let chain = &self.chain;
        let watched: Vec<Address> = chain.devnet.accounts().iter().map(|a| a.address).collect();
        let mut before = Vec::new();
        for account in &watched {
            before.push(chain.balance(*account).await);
        }
        let txs_before = chain.facilitator_tx_count().await;

        let verdict = self.facilitator.verify(request).await.unwrap();
        assert!(!verdict.is_valid, "verify accepted: {verdict:?}");
        assert_eq!(
            verdict.invalid_reason.as_ref(),
            Some(&expected),
            "{verdict:?}"
        );
        assert!(!verdict.invalid_message.unwrap_or_default().is_empty());

        let receipt = self.facilitator.settle(request, None).await.unwrap();
        assert!(!receipt.success, "settle succeeded: {receipt:?}");
        assert_eq!(
            receipt.error_reason.as_ref(),
            Some(&expected),
            "{receipt:?}"
        );
        assert_eq!(
            receipt.transaction, "",
            "a transaction was sent: {receipt:?}"
        );

        for (account, balance) in watched.iter().zip(before) {
            assert_eq!(
                chain.balance(*account).await,
                balance,
                "balance of {account} moved"
            );
        }
        assert_eq!(
            chain.facilitator_tx_count().await,
            txs_before,
            "a transaction was sent"
        );
    }

    /// Settles `request` once, successfully, then asserts that it is refused as a replay.
    async fn assert_settles_once(&self, request: &PaymentRequest) {
        let first = self.facilitator.settle(request, None).await.unwrap();
        assert!(first.success, "{first:?}");
        self.assert_refused(request, ReasonCode::EXACT_EVM_NONCE_ALREADY_USED)
            .await;
    }
}

/// The payment inside a v2 `request`, to spoil.
fn v2_payment(request: &mut PaymentRequest) -> &mut v2::PaymentPayload {
    let PaymentRequest::V2 { payload, .. } = request else {
        panic!("not a v2 request: {request:?}");
    };
    payload
}

#[tokio::test]
async fn replayed_nonce_is_refused_after_one_transfer() {
    let fx = Fixture::start().await;
    let request = v2_request(&fx.honest(), &fx.requirements);
    fx.assert_settles_once(&request).await;
}

#[tokio::test]
async fn insufficient_balance_is_refused() {
    let fx = Fixture::start().await;
    let pauper = PrivateKeySigner::random();
    let request = v2_request(&honest_payment(&pauper, &fx.requirements), &fx.requirements);
    fx.assert_refused(&request, ReasonCode::EXACT_EVM_INSUFFICIENT_BALANCE)
        .await;
}

#[tokio::test]
async fn expired_and_nearly_expired_authorizations_are_refused() {
    let fx = Fixture::start().await;
    for valid_before in [unix_now() - 1, unix_now() + 3] {
        let payload = fx.signed_after(|a| a.valid_before = U256::from(valid_before));
        fx.assert_payload_refused(&payload, ReasonCode::EXACT_EVM_VALID_BEFORE)
            .await;
    }
}

#[tokio::test]
async fn not_yet_valid_authorization_is_refused() {
    let fx = Fixture::start().await;
    let payload = fx.signed_after(|a| a.valid_after = U256::from(unix_now() + 120));
    fx.assert_payload_refused(&payload, ReasonCode::EXACT_EVM_VALID_AFTER)
        .await;
}

#[tokio::test]
async fn wrong_recipient_is_refused() {
    let fx = Fixture::start().await;
    let payload = fx.signed_after(|a| a.to = fx.chain.devnet.payers()[3].address);
    fx.assert_payload_refused(&payload, ReasonCode::EXACT_EVM_RECIPIENT_MISMATCH)
        .await;
}

#[tokio::test]
async fn wrong_amount_is_refused_with_each_versions_code() {
    let fx = Fixture::start().await;
    for value in [4_999u64, 5_001] {
        let payload = fx.signed_after(|a| a.value = U256::from(value));
        fx.assert_payload_refused(&payload, ReasonCode::EXACT_EVM_VALUE_MISMATCH)
            .await;
        let v1 = v1_request(&payload, &fx.requirements);
        fx.assert_refused(&v1, ReasonCode::EXACT_EVM_VALUE_MISMATCH_V1)
            .await;
    }
}

#[tokio::test]
async fn signature_over_another_domain_name_or_version_is_refused() {
    let fx = Fixture::start().await;
    let token = fx.chain.devnet.token().address;
    for (name, version) in [("USDC", "2"), ("USD Coin", "1")] {
        let authorization = fx.authorization(|_| {});
        let payload = ExactEvmPayload {
            signature: sign_with_domain(fx.payer(), &authorization, name, version, 8453, token),
            authorization,
        };
        fx.assert_payload_refused(&payload, ReasonCode::EXACT_EVM_SIGNATURE)
            .await;
    }
}

#[tokio::test]
async fn requirements_naming_the_wrong_token_domain_are_diagnosed() {
    let mut fx = Fixture::start().await;
    let cases = [
        (
            json!({"name": "USDC", "version": "2"}),
            ReasonCode::EXACT_EVM_TOKEN_NAME_MISMATCH,
        ),
        (
            json!({"name": "USD Coin", "version": "1"}),
            ReasonCode::EXACT_EVM_TOKEN_VERSION_MISMATCH,
        ),
    ];
    for (extra, expected) in cases {
        fx.requirements.extra = Some(extra);
        // Signed consistently with the (wrong) requirements: only the chain can tell.
        fx.assert_payload_refused(&fx.honest(), expected).await;
    }
}

#[tokio::test]
async fn wrong_chain_is_refused() {
    let fx = Fixture::start().await;
    let requirements = &fx.requirements;
    let token = fx.chain.devnet.token().address;

    // Signed for Base Sepolia's chain id, presented for Base.
    let authorization = fx.authorization(|_| {});
    let payload = ExactEvmPayload {
        signature: sign_with_domain(fx.payer(), &authorization, "USD Coin", "2", 84532, token),
        authorization,
    };
    fx.assert_payload_refused(&payload, ReasonCode::EXACT_EVM_SIGNATURE)
        .await;

    // Requirements for a chain this facilitator does not settle on.
    let sepolia = fx.requirements_with(|r| r.network = Network::BASE_SEPOLIA);
    let request = v2_request(&honest_payment(fx.payer(), &sepolia), &sepolia);
    fx.assert_refused(&request, ReasonCode::INVALID_NETWORK)
        .await;

    // The payment says it chose another network than the requirements name.
    let mut request = v2_request(&fx.honest(), requirements);
    v2_payment(&mut request).accepted.network = Network::BASE_SEPOLIA;
    fx.assert_refused(&request, ReasonCode::EXACT_EVM_NETWORK_MISMATCH)
        .await;
}

#[tokio::test]
async fn malformed_and_foreign_signatures_are_refused() {
    let fx = Fixture::start().await;
    let honest = fx.honest();
    let mut garbage = honest.signature.to_vec();
    garbage[10] ^= 0xff;
    let mut high_s_v = honest.signature.to_vec();
    high_s_v[64] = 5;
    let foreign = fx.signed_by(fx.stranger(4), honest.authorization.clone());
    let signatures: [Bytes; 5] = [
        garbage.into(),
        high_s_v.into(),
        Bytes::from(vec![0u8; 65]),
        Bytes::from(vec![1u8; 10]),
        foreign.signature,
    ];
    for signature in signatures {
        let payload = ExactEvmPayload {
            signature,
            authorization: honest.authorization.clone(),
        };
        fx.assert_payload_refused(&payload, ReasonCode::EXACT_EVM_SIGNATURE)
            .await;
    }
}

#[tokio::test]
async fn malformed_requests_are_refused_with_what_is_wrong() {
    let fx = Fixture::start().await;
    let no_domain = fx.requirements_with(|r| r.extra = None);
    let honest = fx.honest();
    let request = v2_request(&honest, &no_domain);
    fx.assert_refused(&request, ReasonCode::EXACT_EVM_MISSING_EIP712_DOMAIN)
        .await;

    let upto = fx.requirements_with(|r| r.scheme = Scheme::UPTO);
    let request = v2_request(&honest, &upto);
    fx.assert_refused(&request, ReasonCode::EXACT_EVM_SCHEME)
        .await;

    let mut no_signature = v2_request(&honest, &fx.requirements);
    let payment = v2_payment(&mut no_signature);
    payment.payload = json!({"authorization": payment.payload["authorization"].clone()});
    fx.assert_refused(&no_signature, ReasonCode::INVALID_PAYLOAD)
        .await;
}

#[tokio::test]
async fn asset_that_is_not_a_contract_is_refused() {
    let mut fx = Fixture::start().await;
    fx.requirements.asset = Address::repeat_byte(0x42).to_checksum(None);
    fx.assert_payload_refused(&fx.honest(), ReasonCode::ASSET_NOT_DEPLOYED_CONTRACT)
        .await;
}

#[tokio::test]
async fn malleable_high_s_twin_of_a_valid_signature_is_refused() {
    let fx = Fixture::start().await;
    let honest = fx.honest();
    let order: U256 = "0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141"
        .parse()
        .unwrap();
    let sig = alloy::primitives::Signature::from_raw(&honest.signature).unwrap();
    // (r, n - s, !v) recovers to the same key: valid ECDSA, but tokens refuse it.
    let twin = alloy::primitives::Signature::new(sig.r(), order - sig.s(), !sig.v());
    let payload = ExactEvmPayload {
        signature: twin.as_bytes().to_vec().into(),
        authorization: honest.authorization,
    };
    fx.assert_payload_refused(&payload, ReasonCode::EXACT_EVM_SIGNATURE)
        .await;
}

#[tokio::test]
async fn with_several_faults_the_reference_order_decides_the_reason() {
    let fx = Fixture::start().await;
    let expired = || U256::from(unix_now() - 10);

    // Foreign signature and expired: the signature is checked first.
    let authorization = fx.authorization(|a| a.valid_before = expired());
    let payload = fx.signed_by(fx.stranger(5), authorization);
    fx.assert_payload_refused(&payload, ReasonCode::EXACT_EVM_SIGNATURE)
        .await;

    // Wrong recipient, expired and wrong amount: the recipient is checked first.
    let payload = fx.signed_after(|a| {
        a.to = fx.chain.devnet.payers()[3].address;
        a.valid_before = expired();
        a.value = U256::from(1);
    });
    fx.assert_payload_refused(&payload, ReasonCode::EXACT_EVM_RECIPIENT_MISMATCH)
        .await;

    // Not yet valid and wrong amount: time before amount.
    let payload = fx.signed_after(|a| {
        a.valid_after = U256::from(unix_now() + 100);
        a.value = U256::from(1);
    });
    fx.assert_payload_refused(&payload, ReasonCode::EXACT_EVM_VALID_AFTER)
        .await;

    // Replayed nonce of a pauper: the nonce is diagnosed before the balance.
    let pauper = PrivateKeySigner::random();
    let token = fx.chain.devnet.token().address;
    let amount = x402_proto::TokenAmount::from_atomic(5_000);
    fx.chain
        .devnet
        .mint(token, pauper.address(), amount)
        .await
        .unwrap();
    let request = v2_request(&honest_payment(&pauper, &fx.requirements), &fx.requirements);
    fx.assert_settles_once(&request).await;
}
