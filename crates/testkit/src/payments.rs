//! Builders of honest and dishonest payments, and reading 402s and receipts as clients do.

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use x402_evm::{Authorization, ExactEvmPayload, authorization_digest, eip712_domain, unix_now};
use x402_proto::{PaymentRequest, Scheme, V1, V2, v1, v2};

/// An honest authorization by `payer` for `requirements`, valid from 10 minutes ago for
/// `maxTimeoutSeconds`.
pub fn authorization_for(payer: Address, requirements: &v2::PaymentRequirements) -> Authorization {
    let now = unix_now();
    Authorization {
        from: payer,
        to: requirements.pay_to.parse().expect("payTo is an address"),
        value: requirements.amount.0,
        valid_after: U256::from(now - 600),
        valid_before: U256::from(now + requirements.max_timeout_seconds),
        nonce: B256::random(),
    }
}

/// Signs `authorization` under an explicit EIP-712 domain.
pub fn sign_with_domain(
    signer: &PrivateKeySigner,
    authorization: &Authorization,
    name: &str,
    version: &str,
    chain_id: u64,
    token: Address,
) -> Bytes {
    let digest = authorization_digest(
        authorization,
        &eip712_domain(name, version, chain_id, token),
    );
    let signature = signer.sign_hash_sync(&digest).expect("local signing works");
    signature.as_bytes().to_vec().into()
}

/// Signs `authorization` under the domain `requirements` describe.
pub fn sign_for(
    signer: &PrivateKeySigner,
    authorization: &Authorization,
    requirements: &v2::PaymentRequirements,
) -> Bytes {
    let extra = requirements.extra.as_ref().expect("extra present");
    sign_with_domain(
        signer,
        authorization,
        extra["name"].as_str().expect("name"),
        extra["version"].as_str().expect("version"),
        requirements.network.evm_chain_id().expect("EVM network"),
        requirements.asset.parse().expect("asset is an address"),
    )
}

/// A v2 facilitator request carrying `payload` against `requirements` (accepted = requirements).
pub fn v2_request(
    payload: &ExactEvmPayload,
    requirements: &v2::PaymentRequirements,
) -> PaymentRequest {
    PaymentRequest::V2 {
        payload: v2::PaymentPayload {
            x402_version: V2::default(),
            resource: None,
            accepted: requirements.clone(),
            payload: serde_json::to_value(payload).expect("payload serializes"),
            extensions: None,
        },
        requirements: requirements.clone(),
    }
}

/// A v1 facilitator request carrying `payload` against the v1 form of `requirements`.
pub fn v1_request(
    payload: &ExactEvmPayload,
    requirements: &v2::PaymentRequirements,
) -> PaymentRequest {
    let resource = v2::ResourceInfo {
        url: "http://127.0.0.1/test".into(),
        description: Some("test".into()),
        mime_type: None,
    };
    let v1_requirements =
        v1::PaymentRequirements::from_v2(requirements, &resource).expect("network has a v1 name");
    PaymentRequest::V1 {
        payload: v1::PaymentPayload {
            x402_version: V1::default(),
            scheme: Scheme::EXACT,
            network: v1_requirements.network.clone(),
            payload: serde_json::to_value(payload).expect("payload serializes"),
        },
        requirements: v1_requirements,
    }
}

/// An honest, signed v2 payment by `payer`.
pub fn honest_payment(
    payer: &PrivateKeySigner,
    requirements: &v2::PaymentRequirements,
) -> ExactEvmPayload {
    let authorization = authorization_for(payer.address(), requirements);
    let signature = sign_for(payer, &authorization, requirements);
    ExactEvmPayload {
        signature,
        authorization,
    }
}

/// Which protocol version a test client pays with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// `X-PAYMENT`, requirements from the v1 JSON body.
    V1,
    /// `PAYMENT-SIGNATURE`, requirements from the `PAYMENT-REQUIRED` header.
    V2,
}

/// The v2 challenge in a 402's `PAYMENT-REQUIRED` header.
pub fn challenge_of(headers: &reqwest::header::HeaderMap) -> v2::PaymentRequired {
    let header = headers
        .get("payment-required")
        .expect("a 402 carries PAYMENT-REQUIRED");
    x402_proto::decode_header(header.as_bytes()).expect("PAYMENT-REQUIRED decodes")
}

/// Reads a 402 and signs a payment for its first accepted option, as a client of `wire`
/// would: returns the header name and value to retry with.
pub async fn payment_for(
    response: reqwest::Response,
    payer: &PrivateKeySigner,
    wire: Wire,
) -> (&'static str, String) {
    assert_eq!(response.status(), 402, "expected a 402 challenge");
    let now = unix_now();
    match wire {
        Wire::V2 => {
            let challenge = challenge_of(response.headers());
            let payment = x402_evm::sign_payment(
                payer,
                &challenge.accepts[0],
                Some(challenge.resource.clone()),
                now,
            )
            .await
            .expect("signs");
            ("PAYMENT-SIGNATURE", x402_proto::encode_header(&payment))
        }
        Wire::V1 => {
            let body: v1::PaymentRequired = response.json().await.expect("v1 JSON challenge");
            let payment = x402_evm::sign_payment_v1(payer, &body.accepts[0], now)
                .await
                .expect("signs");
            ("X-PAYMENT", x402_proto::encode_header(&payment))
        }
    }
}

/// The settlement receipt of a response, from `PAYMENT-RESPONSE` or `X-PAYMENT-RESPONSE`.
pub fn receipt_of(headers: &reqwest::header::HeaderMap) -> Option<x402_proto::SettleResponse> {
    let header = headers
        .get("payment-response")
        .or_else(|| headers.get("x-payment-response"))?;
    Some(x402_proto::decode_header(header.as_bytes()).expect("receipt decodes"))
}

/// Sends the request `build` makes, pays its 402 with `payer` as a client of `wire` would, and
/// sends the request again with the payment: the paid answer.
pub async fn pay_and_retry(
    build: impl Fn() -> reqwest::RequestBuilder,
    payer: &PrivateKeySigner,
    wire: Wire,
) -> reqwest::Response {
    let first = build().send().await.expect("the first request is answered");
    let (name, value) = payment_for(first, payer, wire).await;
    build()
        .header(name, value)
        .send()
        .await
        .expect("the paid request is answered")
}
