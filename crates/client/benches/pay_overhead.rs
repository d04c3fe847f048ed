//! The paying client's own cost per paid call, without the network: read the challenge, choose
//! an offer by policy, sign the EIP-3009 authorization, encode the header; and the ledger's
//! budget reservation and commit (SQLite, on disk).
//!
//! Run: `cargo bench -p x402-client --bench pay_overhead`

use std::hint::black_box;

use alloy::signers::local::PrivateKeySigner;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use x402_client::{Budget, Ledger, PaymentIntent, Policy};
use x402_proto::{Network, Scheme, TokenAmount, V2, decode_header, encode_header, v2};

/// A 402 offering 0.001 of Base's USDC, as the official SDKs know the token.
fn challenge() -> String {
    let usdc = x402_evm::default_asset(&Network::BASE).expect("Base has a default USDC");
    let offer = v2::PaymentRequirements {
        scheme: Scheme::EXACT,
        network: usdc.network,
        amount: TokenAmount::from_atomic(1_000),
        asset: usdc.address.to_checksum(None),
        pay_to: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC".into(),
        max_timeout_seconds: 60,
        extra: Some(json!({"name": usdc.name, "version": usdc.version})),
    };
    encode_header(&v2::PaymentRequired {
        x402_version: V2::default(),
        error: Some("Payment required".into()),
        resource: v2::ResourceInfo {
            url: "http://127.0.0.1:8080/run".into(),
            description: None,
            mime_type: None,
        },
        accepts: vec![offer],
        extensions: None,
    })
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let signer = PrivateKeySigner::random();
    let policy = Policy::default();
    let header = challenge();

    c.bench_function("client: decode 402 + choose + sign + encode header", |b| {
        b.iter(|| {
            let challenge: v2::PaymentRequired =
                decode_header(black_box(header.as_bytes())).unwrap();
            let choice = policy.choose(&challenge.accepts).unwrap();
            let payment = runtime
                .block_on(x402_evm::sign_payment(
                    &signer,
                    &choice.requirements,
                    Some(challenge.resource.clone()),
                    1_700_000_000,
                ))
                .unwrap();
            black_box(encode_header(&payment))
        })
    });

    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("ledger.db")).unwrap();
    ledger
        .set_budget(&Budget {
            per_day: Some(u64::MAX / 2),
            total: Some(u64::MAX / 2),
            ..Budget::default()
        })
        .unwrap();
    let intent = PaymentIntent {
        url: "http://127.0.0.1:8080/run".into(),
        amount: "1000".into(),
        micro_usd: 1000,
        ..PaymentIntent::default()
    };
    c.bench_function(
        "client: ledger reserve + commit (SQLite WAL, on disk)",
        |b| {
            b.iter(|| {
                ledger
                    .reserve(black_box(&intent))
                    .unwrap()
                    .commit("0xabc")
                    .unwrap()
            })
        },
    );
}

criterion_group!(client, benches);
criterion_main!(client);
