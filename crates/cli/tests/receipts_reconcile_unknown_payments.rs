//! `x402 receipts` shows payments whose answer was lost as `unknown` and says how to settle
//! them; `x402 receipts --reconcile --rpc URL` asks the chain and records one that was used as
//! `paid` (with its transaction) and one that expired unused as `released`.

use std::path::Path;
use std::process::{Command, Output};

use alloy::primitives::B256;
use serde_json::Value;
use x402_client::{Ledger, PaymentIntent};
use x402_testkit::{Chain, honest_payment, v2_request};

fn x402(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_x402"))
        .args(args)
        .env("X402_HOME", home)
        .env_remove("X402_PRIVATE_KEY")
        .output()
        .expect("x402 runs")
}

/// Records a payment of $0.01 by `payer` as sent with `nonce` and then lost.
fn lost_payment(ledger: &Ledger, chain: &Chain, payer: &str, nonce: B256, valid_before: u64) {
    let requirements = chain.requirements(10_000);
    let mut reservation = ledger
        .reserve(&PaymentIntent {
            url: "http://shop/data".into(),
            service: Some("data".into()),
            amount: "10000".into(),
            micro_usd: 10_000,
            asset: requirements.asset,
            network: requirements.network.to_string(),
            payer: payer.to_owned(),
            pay_to: requirements.pay_to,
        })
        .unwrap();
    reservation
        .signed(&nonce.to_string(), valid_before)
        .unwrap();
    reservation.mark_unknown("sent, no answer").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_show_unknown_payments_and_reconcile_them_from_the_chain() {
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("ledger.db")).unwrap();
    let payer = &chain.devnet.payers()[0];
    let payer_address = payer.address.to_checksum(None);

    // One authorization the facilitator did settle (the answer never came back)...
    let requirements = chain.requirements(10_000);
    let payment = honest_payment(&payer.signer, &requirements);
    let verified = chain
        .scheme
        .verify(&v2_request(&payment, &requirements))
        .await
        .unwrap();
    let settled = chain.scheme.settle(verified).await.unwrap();
    let valid_before = u64::try_from(payment.authorization.valid_before).unwrap();
    lost_payment(
        &ledger,
        &chain,
        &payer_address,
        payment.authorization.nonce,
        valid_before,
    );
    // ...and one that never reached the chain and expired long ago.
    lost_payment(&ledger, &chain, &payer_address, B256::random(), 1_000);
    drop(ledger);

    let out = x402(&["receipts"], dir.path());
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8(out.stdout).unwrap();
    assert_eq!(table.matches(" unknown ").count(), 2, "{table}");
    let notes = String::from_utf8(out.stderr).unwrap();
    assert!(
        notes.contains("2 unknown ($0.02)") && notes.contains("x402 receipts --reconcile"),
        "{notes}"
    );

    let rpc = chain.devnet.rpc_url().to_string();
    let out = x402(
        &["receipts", "--reconcile", "--rpc", &rpc, "--json"],
        dir.path(),
    );
    assert!(out.status.success(), "{out:?}");
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    // Newest first: the expired one, then the settled one.
    assert_eq!(rows[0]["status"], "released", "{rows:?}");
    assert_eq!(rows[1]["status"], "paid", "{rows:?}");
    assert_eq!(
        rows[1]["transaction"].as_str(),
        Some(settled.tx_hash.to_string().as_str())
    );
    assert_eq!(rows[1]["valid_before"], valid_before);
    let notes = String::from_utf8(out.stderr).unwrap();
    assert!(
        notes.contains("released (the authorization expired unused)"),
        "{notes}"
    );

    // Nothing is left to do, and the table no longer mentions unknown payments.
    let out = x402(&["receipts", "--reconcile", "--rpc", &rpc], dir.path());
    let notes = String::from_utf8(out.stderr).unwrap();
    assert!(notes.contains("nothing to reconcile"), "{notes}");
    assert!(!notes.contains("unknown"), "{notes}");
}
