//! `/health` fails, naming the gas balance, while the signer's balance is below the chain's
//! configured floor, and passes again once it is funded.

use alloy::primitives::U256;
use alloy::providers::Provider;
use serde_json::Value;

const ETH: u128 = 1_000_000_000_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_fails_below_the_gas_floor_and_recovers_above_it() {
    let chain = x402_testkit::Chain::start().await;
    let floor = format!("min_signer_balance_wei = {ETH}");
    let stack = x402_testkit::Stack::on_chain(chain, "", &floor).await;
    let signer = stack.chain.devnet.facilitator().address;
    let provider = stack.chain.devnet.provider();
    let set_balance = |wei: u128| async move {
        provider
            .raw_request::<_, ()>("anvil_setBalance".into(), (signer, U256::from(wei)))
            .await
            .unwrap();
    };
    let health = || async {
        let (status, body) = stack.get("/health").await;
        (status, serde_json::from_str::<Value>(&body).unwrap())
    };

    // anvil's dev account holds far more than the floor.
    let (status, body) = health().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["chains"][0]["healthy"], true);
    assert_eq!(body["chains"][0]["min_signer_balance_wei"], ETH.to_string());
    assert!(body.get("reasons").is_none(), "{body}");

    set_balance(ETH - 1).await;
    let (status, body) = health().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unhealthy");
    let report = &body["chains"][0];
    assert_eq!(report["reachable"], true, "the RPC answers: {body}");
    assert_eq!(report["healthy"], false);
    assert_eq!(report["signer_balance_wei"], (ETH - 1).to_string());
    let reason = report["reason"].as_str().unwrap();
    assert!(reason.contains("gas balance"), "{reason}");
    assert!(reason.contains(&(ETH - 1).to_string()), "{reason}");
    assert!(reason.contains("min_signer_balance_wei"), "{reason}");
    let reasons = body["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1);
    assert!(
        reasons[0].as_str().unwrap().contains("gas balance"),
        "{body}"
    );

    // Exactly at the floor is enough.
    set_balance(ETH).await;
    let (status, body) = health().await;
    assert_eq!(status, 200, "{body}");
    set_balance(2 * ETH).await;
    let (status, body) = health().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["chains"][0]["healthy"], true);
}
