//! Interop with the official npm SDKs (2.27.0, pinned in `tools/`): the official
//! `@x402/express` server, pointed at our facilitator (with a bearer token), is paid by the
//! official `@x402/fetch` client on anvil; and for the classic failures our `/verify` gives the
//! same `isValid` and reason code as the official facilitator library on the same chain.

use alloy::primitives::U256;
use serde_json::json;
use x402_evm::{ExactEvmPayload, unix_now};
use x402_proto::PaymentRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_server_and_client_settle_through_our_facilitator() {
    let stack = x402_testkit::Stack::start_with(
        Default::default(),
        "[auth]\nbearer_token = \"interop-token\"",
    )
    .await;
    let (server, port) = x402_testkit::official_express_server(&stack, Some("interop-token")).await;

    let before = stack.pay_to_balance().await;
    let payer_key = stack.chain.devnet.payers()[2].signer.to_bytes().to_string();
    let result = x402_testkit::official_fetch(vec![
        ("URL", format!("http://127.0.0.1:{port}/paid")),
        ("PRIVATE_KEY", payer_key),
    ])
    .await;
    assert_eq!(result["status"], 200, "{result}");
    assert_eq!(result["body"], json!({"ok": true}));
    let receipt = &result["paymentResponse"];
    assert_eq!(receipt["success"], true, "{result}");
    assert_eq!(receipt["network"], "eip155:8453");
    assert_eq!(stack.pay_to_balance().await, before + U256::from(10_000));
    drop(server);
}

fn signed(
    stack: &x402_testkit::Stack,
    payer: usize,
    amount: u128,
    edit: impl FnOnce(&mut x402_evm::Authorization),
) -> PaymentRequest {
    let requirements = stack.chain.requirements(amount);
    let signer = &stack.chain.devnet.payers()[payer].signer;
    let mut authorization = x402_testkit::authorization_for(signer.address(), &requirements);
    edit(&mut authorization);
    let signature = x402_testkit::sign_for(signer, &authorization, &requirements);
    x402_testkit::v2_request(
        &ExactEvmPayload {
            signature,
            authorization,
        },
        &requirements,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_verify_agrees_with_the_official_facilitator() {
    let stack = x402_testkit::Stack::start().await;
    // A settled payment, to replay.
    let replayed = stack.payment(3, 1_000);
    let (_, settled) = stack.settle(&replayed).await;
    assert_eq!(settled["success"], true, "{settled}");

    let cases: Vec<(&str, PaymentRequest)> = vec![
        ("valid", stack.payment(4, 1_000)),
        // 2000 USDC asked of a payer holding 1000.
        ("insufficient funds", stack.payment(4, 2_000_000_000)),
        (
            "expired",
            signed(&stack, 4, 1_000, |a| {
                a.valid_before = U256::from(unix_now() - 60);
            }),
        ),
        ("replayed nonce", replayed),
        (
            "wrong amount",
            signed(&stack, 4, 1_000, |a| a.value = U256::from(999)),
        ),
    ];

    let requests: Vec<&PaymentRequest> = cases.iter().map(|(_, request)| request).collect();
    let official = x402_testkit::official_verify(&stack.chain.devnet, &requests, &[]).await;

    for ((name, request), theirs) in cases.iter().zip(&official) {
        let (status, ours) = stack.verify(request).await;
        assert_eq!(status, 200, "{name}: {ours}");
        x402_testkit::assert_same_verdict(name, &ours, theirs);
        if *name != "valid" {
            assert_eq!(ours["isValid"], false, "{name}");
        }
    }
}
