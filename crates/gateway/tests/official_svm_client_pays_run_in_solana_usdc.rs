//! The official `@x402/fetch` client with `@x402/svm` 2.27 pays the gateway's `POST /run` in
//! Solana USDC on the local chain: the 402 offers Solana USDC beside the devnet's, with the
//! fee payer our facilitator advertises; the call is answered, its receipt names a
//! transaction on chain, and the payee's balance grew by exactly the price.

mod common;

use common::Stack;
use serde_json::{Value, json};
use x402_testkit::{Solana, challenge_of, interop_dir, official_sdks, solana_offer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_svm_client_pays_run_and_the_transfer_is_on_chain() {
    official_sdks("@x402/svm");
    let solana = Solana::start().await;
    let stack = Stack::with_solana(&solana).await;
    let state = solana.state();
    let run = json!({"service": "embedding-l4", "input": {"text": "The cat sits outside"}});

    // The challenge: the devnet's USDC first, then Solana USDC to the Solana payee.
    let unpaid = stack
        .http
        .post(format!("{}/run", stack.url))
        .json(&run)
        .send()
        .await
        .unwrap();
    assert_eq!(unpaid.status(), 402);
    let challenge = challenge_of(unpaid.headers());
    assert!(challenge.accepts[0].network.as_str().starts_with("eip155:"));
    let offer = solana_offer(&challenge);
    assert_eq!(offer.asset, state.mint);
    assert_eq!(offer.pay_to, state.pay_to);
    let extra = offer.extra.clone().unwrap();
    assert_eq!(
        extra["feePayer"], state.fee_payer,
        "from the facilitator's /supported"
    );
    let price: u64 = offer.amount.to_string().parse().unwrap();
    assert!(price > 0);

    let before = solana.pay_to_balance().await;
    let output = tokio::process::Command::new("node")
        .arg(interop_dir().join("svm-fetch-client.mjs"))
        .env("URL", format!("{}/run", stack.url))
        .env("METHOD", "POST")
        .env("BODY", run.to_string())
        .env("SECRET_KEY", &state.payer_keys[0])
        .env("RPC_URL", &state.rpc_url)
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .expect("node runs");
    assert!(output.status.success(), "the official client failed");
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(answer["body"]["status"], "completed", "{answer}");
    assert_eq!(answer["body"]["output"]["dimensions"], 384, "{answer}");

    let receipt = &answer["paymentResponse"];
    assert_eq!(receipt["success"], true, "{receipt}");
    assert_eq!(receipt["network"], state.network.as_str());
    assert_eq!(receipt["payer"], state.payers[0].as_str());
    let signature = receipt["transaction"].as_str().unwrap();
    solana.assert_landed(signature).await;
    assert_eq!(solana.pay_to_balance().await, before + price);
}
