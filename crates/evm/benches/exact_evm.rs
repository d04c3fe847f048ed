//! CPU cost of the `exact` EVM scheme's client and facilitator work, without the chain:
//! signing a payment, and the facilitator's decode + EIP-712 digest + signature recovery.
//!
//! Run: `cargo bench -p x402-evm --bench exact_evm`

use alloy::primitives::Signature;
use alloy::signers::local::PrivateKeySigner;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use std::hint::black_box;
use x402_evm::{ExactEvmPayload, authorization_digest, eip712_domain, sign_exact, sign_payment};
use x402_proto::{Network, PaymentPayload, Scheme, TokenAmount, decode_header, encode_header, v2};

fn requirements() -> v2::PaymentRequirements {
    v2::PaymentRequirements {
        scheme: Scheme::EXACT,
        network: Network::BASE,
        amount: TokenAmount::from_atomic(1_000),
        asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".into(),
        pay_to: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC".into(),
        max_timeout_seconds: 60,
        extra: Some(json!({"name": "USD Coin", "version": "2"})),
    }
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let signer = PrivateKeySigner::random();
    let requirements = requirements();
    let now = 1_800_000_000;

    c.bench_function(
        "client: sign exact payment (nonce + EIP-712 + ECDSA)",
        |b| {
            b.iter(|| {
                runtime
                    .block_on(sign_exact(&signer, black_box(&requirements), now))
                    .unwrap()
            })
        },
    );

    let payment = runtime
        .block_on(sign_payment(&signer, &requirements, None, now))
        .unwrap();
    c.bench_function("client: sign + encode PAYMENT-SIGNATURE header", |b| {
        b.iter(|| {
            let payment = runtime
                .block_on(sign_payment(&signer, black_box(&requirements), None, now))
                .unwrap();
            encode_header(&payment)
        })
    });

    let header = encode_header(&payment);
    let domain = eip712_domain("USD Coin", "2", 8453, requirements.asset.parse().unwrap());
    c.bench_function("facilitator: decode header + recover signer", |b| {
        b.iter(|| {
            let decoded: PaymentPayload = decode_header(black_box(header.as_bytes())).unwrap();
            let exact: ExactEvmPayload = serde_json::from_value(decoded.payload().clone()).unwrap();
            let digest = authorization_digest(&exact.authorization, &domain);
            let signer = Signature::from_raw(&exact.signature)
                .unwrap()
                .recover_address_from_prehash(&digest)
                .unwrap();
            assert_eq!(signer, exact.authorization.from);
        })
    });

    let exact: ExactEvmPayload = serde_json::from_value(payment.payload.clone()).unwrap();
    let digest = authorization_digest(&exact.authorization, &domain);
    let signature = Signature::from_raw(&exact.signature).unwrap();
    c.bench_function("facilitator: ecrecover only", |b| {
        b.iter(|| {
            black_box(&signature)
                .recover_address_from_prehash(black_box(&digest))
                .unwrap()
        })
    });
    c.bench_function("EIP-712 digest only", |b| {
        b.iter(|| authorization_digest(black_box(&exact.authorization), black_box(&domain)))
    });
}

criterion_group!(exact_evm, benches);
criterion_main!(exact_evm);
