//! The example paid API, run as its binary in front of our facilitator on a dev chain, is
//! paid by the official `@x402/fetch` client (2.27): the fixed-price joke and the per-word
//! count, each settled once on chain for exactly its price.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use x402_proto::U256;
use x402_testkit::Chain;

fn interop(script: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/interop");
    assert!(
        dir.join("../node_modules/@x402/fetch").exists(),
        "the official SDKs are not installed: run scripts/install-tools.sh"
    );
    dir.join(script)
}

/// The official client pays `url` (with `body` as a JSON POST when given); its JSON report.
async fn official_client_pays(url: String, key: String, body: Option<&str>) -> serde_json::Value {
    let body = body.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new("node");
        command
            .arg(interop("fetch-client.mjs"))
            .env("URL", url)
            .env("PRIVATE_KEY", key)
            .stderr(Stdio::inherit());
        if let Some(body) = body {
            command.env("METHOD", "POST").env("BODY", body);
        }
        let output = command.output().expect("node runs");
        assert!(output.status.success(), "the official client failed");
        serde_json::from_slice(&output.stdout).expect("the client prints JSON")
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_client_pays_both_routes() {
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let facilitator = x402_testkit::start_facilitator(&chain, dir.path()).await;
    let pay_to = chain.devnet.pay_to().address;

    let mut command = Command::new(env!("CARGO_BIN_EXE_paid-api"));
    command
        .env("FACILITATOR_URL", facilitator.url())
        .env("PAY_TO", pay_to.to_checksum(None))
        .env("LISTEN", "127.0.0.1:0");
    let (_api, port) = x402_testkit::spawn_announcing(command, "LISTENING ").await;
    let base = format!("http://127.0.0.1:{port}");
    let key = chain.devnet.payers()[1].signer.to_bytes().to_string();

    let before = chain.balance(pay_to).await;
    let joke = official_client_pays(format!("{base}/joke"), key.clone(), None).await;
    assert_eq!(joke["status"], 200, "{joke}");
    assert!(
        joke["body"]["joke"].as_str().unwrap().contains("402"),
        "{joke}"
    );
    assert_eq!(joke["paymentResponse"]["success"], true, "{joke}");
    let after_joke = chain.balance(pay_to).await;
    assert_eq!(
        after_joke - before,
        U256::from(1_000u64),
        "$0.001 = 1000 atomic USDC"
    );

    let count = official_client_pays(
        format!("{base}/count-words"),
        key,
        Some(r#""three little words""#),
    )
    .await;
    assert_eq!(count["status"], 200, "{count}");
    assert_eq!(count["body"]["words"], 3, "{count}");
    assert_eq!(count["body"]["charged_usd"], "0.0003", "{count}");
    assert_eq!(chain.balance(pay_to).await - after_joke, U256::from(300u64));
}
