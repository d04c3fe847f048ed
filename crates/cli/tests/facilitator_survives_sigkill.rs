//! The facilitator killed with SIGKILL after broadcasting a settlement and before its receipt,
//! with the node losing the transaction too, then restarted: the settlement is rebroadcast,
//! confirmed in the log, and no second transfer happens.

use std::process::Child;
use std::time::{Duration, Instant};

use alloy::primitives::{B256, U256};
use alloy::providers::Provider;
use x402_testkit::Chain;

mod common;

struct Facilitator {
    child: Child,
    url: String,
}

fn spawn_facilitator(config: &std::path::Path, key: &str) -> Facilitator {
    let (child, url) = common::spawn_listening(
        "facilitator",
        config,
        &[("X402_FACILITATOR_PRIVATE_KEY", key)],
    );
    Facilitator { child, url }
}

async fn settle(url: &str, body: &serde_json::Value) -> serde_json::Value {
    x402_testkit::fetch_json(
        reqwest::Client::new()
            .post(format!("{url}/settle"))
            .json(body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_killed_in_flight_is_confirmed_after_restart() {
    let chain = Chain::start().await;
    let provider = chain.devnet.provider().clone();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("facilitator.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndatabase = \"{}\"\n[limits]\nsettle_wait_ms = 500\n[[networks]]\nchain_id = 8453\nrpc_url = \"{}\"\n",
            dir.path().join("log.db").display(),
            chain.devnet.rpc_url()
        ),
    )
    .unwrap();
    let key = chain.devnet.facilitator().signer.to_bytes().to_string();
    let pay_to = chain.devnet.pay_to().address;
    let before = chain.balance(pay_to).await;
    let nonce_before = chain.facilitator_tx_count().await;

    // Blocks stop being mined: the settlement stays between broadcast and receipt.
    provider
        .raw_request::<_, ()>("evm_setAutomine".into(), (false,))
        .await
        .unwrap();
    let mut first = spawn_facilitator(&config, &key);
    let requirements = chain.requirements(25_000);
    let payer = &chain.devnet.payers()[0].signer;
    let request = x402_testkit::v2_request(
        &x402_testkit::honest_payment(payer, &requirements),
        &requirements,
    );
    let body = serde_json::to_value(&request).unwrap();
    let pending = settle(&first.url, &body).await;
    assert_eq!(pending["errorReason"], "settlement_pending", "{pending}");
    let tx_hash: B256 = pending["transaction"].as_str().unwrap().parse().unwrap();

    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();

    // The worst case: the node lost the transaction as well.
    let dropped: Option<B256> = provider
        .raw_request("anvil_dropTransaction".into(), (tx_hash,))
        .await
        .unwrap();
    assert_eq!(dropped, Some(tx_hash));
    assert!(
        provider
            .get_transaction_by_hash(tx_hash)
            .await
            .unwrap()
            .is_none()
    );

    // Restart: reconciliation finds the recorded transaction and rebroadcasts it.
    let mut second = spawn_facilitator(&config, &key);
    let deadline = Instant::now() + Duration::from_secs(20);
    while provider
        .get_transaction_by_hash(tx_hash)
        .await
        .unwrap()
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "the settlement was not rebroadcast"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    provider
        .raw_request::<_, String>("evm_mine".into(), ())
        .await
        .unwrap();

    // The same payment settled again answers from the log: the original transaction.
    let deadline = Instant::now() + Duration::from_secs(20);
    let settled = loop {
        let answer = settle(&second.url, &body).await;
        if answer["success"] == true || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(settled["transaction"], tx_hash.to_string());
    assert_eq!(
        chain.balance(pay_to).await,
        before + U256::from(25_000),
        "moved once"
    );
    assert_eq!(
        chain.facilitator_tx_count().await,
        nonce_before + 1,
        "one transaction"
    );

    // A clean stop.
    common::stop_cleanly(&mut second.child);
}
