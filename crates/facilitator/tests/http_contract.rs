//! The HTTP contract: wire shapes and status codes as the official facilitator, bearer token,
//! malformed bodies, v1 and v2 payloads, `/supported`, `/metrics`.

use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_contract() {
    let stack =
        x402_testkit::Stack::start_with(Default::default(), "[auth]\nbearer_token = \"t0ken\"")
            .await;
    let http = &stack.http;
    let url = stack.url();
    let request = stack.payment(0, 1_000);
    let body = serde_json::to_value(&request).unwrap();

    // Without or with a wrong token: 401, saying what to send.
    for auth in [None, Some("Bearer nope")] {
        let mut call = http.post(format!("{url}/verify")).json(&body);
        if let Some(auth) = auth {
            call = call.header("authorization", auth);
        }
        let response = call.send().await.unwrap();
        assert_eq!(response.status(), 401);
        let text = response.text().await.unwrap();
        assert!(text.contains("Authorization: Bearer"), "{text}");
    }
    // With the token.
    let call = |path: &str| http.post(format!("{url}{path}")).bearer_auth("t0ken");
    let post = |path: &str, body: Value| {
        let sent = call(path).json(&body).send();
        async move { sent.await.unwrap().json::<Value>().await.unwrap() }
    };

    // Malformed: 400 naming the problem.
    let response = call("/verify")
        .json(&json!({"paymentPayload": {"x402Version": 2}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(text.contains("invalid_request"), "{text}");
    // Not JSON: 400; too large: 413, refused before parsing.
    for (path, body, status) in [
        ("/settle", b"{not json".to_vec(), 400),
        ("/verify", vec![b' '; 200_000], 413),
    ] {
        let response = call(path)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{path}");
    }

    // A valid v2 payment: 200 isValid true with the payer, then settled.
    let payer = stack.chain.devnet.payers()[0].address.to_checksum(None);
    let verified = post("/verify", body.clone()).await;
    assert_eq!(verified, json!({"isValid": true, "payer": payer}));
    let settled = post("/settle", body.clone()).await;
    assert_eq!(settled["success"], true);
    assert_eq!(settled["network"], "eip155:8453");
    assert_eq!(settled["payer"], payer);
    assert!(settled["transaction"].as_str().unwrap().starts_with("0x"));

    // A refused payment: 200 with the reason.
    let refused = post("/verify", body.clone()).await;
    assert_eq!(refused["isValid"], false);
    assert_eq!(
        refused["invalidReason"],
        "invalid_exact_evm_nonce_already_used"
    );
    assert!(refused["invalidMessage"].as_str().is_some());

    // v1: the same facilitator settles the legacy shape, answering with the v1 network name.
    let requirements = stack.chain.requirements(2_000);
    let v1 = x402_testkit::v1_request(
        &x402_testkit::honest_payment(&stack.chain.devnet.payers()[1].signer, &requirements),
        &requirements,
    );
    let settled = post("/settle", serde_json::to_value(&v1).unwrap()).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(settled["network"], "base");

    // An unserved network and an unaccepted asset are refused with reasons.
    let mut other = serde_json::to_value(stack.payment(2, 1_000)).unwrap();
    other["paymentRequirements"]["network"] = json!("eip155:1");
    other["paymentPayload"]["accepted"]["network"] = json!("eip155:1");
    let refused = post("/verify", other).await;
    assert_eq!(refused["invalidReason"], "invalid_network", "{refused}");
    let mut other = serde_json::to_value(stack.payment(2, 1_000)).unwrap();
    let foreign = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
    other["paymentRequirements"]["asset"] = json!(foreign);
    other["paymentPayload"]["accepted"]["asset"] = json!(foreign);
    let refused = post("/settle", other).await;
    assert_eq!(refused["success"], false);
    assert_eq!(
        refused["errorReason"], "invalid_payment_requirements",
        "{refused}"
    );
    assert!(
        refused["errorMessage"]
            .as_str()
            .unwrap()
            .contains("not accepted"),
        "{refused}"
    );

    // /supported needs no token and lists the v2 and v1 kinds, `upto` with the address payers
    // witness, `batch-settlement` (no receiver authorizer without its key), the EIP-2612
    // gas-sponsoring extension, and the signer.
    let (status, supported) = stack.get("/supported").await;
    assert_eq!(status, 200);
    let supported: serde_json::Value = serde_json::from_str(&supported).unwrap();
    let facilitator = stack.chain.devnet.facilitator().address.to_checksum(None);
    assert_eq!(
        supported,
        json!({
            "kinds": [
                {"x402Version": 2, "scheme": "exact", "network": "eip155:8453"},
                {"x402Version": 1, "scheme": "exact", "network": "base"},
                {"x402Version": 2, "scheme": "upto", "network": "eip155:8453",
                 "extra": {"facilitatorAddress": facilitator}},
                {"x402Version": 2, "scheme": "batch-settlement", "network": "eip155:8453"}
            ],
            "extensions": ["eip2612GasSponsoring"],
            "signers": {"eip155:*": [facilitator]}
        })
    );

    // /metrics counts by outcome and reason.
    let (status, metrics) = stack.get("/metrics").await;
    assert_eq!(status, 200);
    for line in [
        r#"x402_facilitator_verify_total{outcome="valid",reason=""} 1"#,
        r#"x402_facilitator_verify_total{outcome="invalid",reason="invalid_exact_evm_nonce_already_used"} 1"#,
        r#"x402_facilitator_settle_total{outcome="success",reason=""} 2"#,
        r#"x402_facilitator_settle_total{outcome="failure",reason="invalid_payment_requirements"} 1"#,
        "x402_facilitator_pending_settlements 0",
        "x402_facilitator_settle_duration_seconds_count 3",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }

    // /health reports the chain and the signer's gas.
    let (status, health) = stack.get("/health").await;
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["chains"][0]["reachable"], true);
    assert_eq!(health["chains"][0]["signer"], facilitator);
    assert!(
        health["chains"][0]["signer_balance_wei"]
            .as_str()
            .unwrap()
            .len()
            > 18
    );

    // Unknown paths say what is served.
    let (status, text) = stack.get("/nope").await;
    assert_eq!(status, 404);
    assert!(text.contains("/settle"), "{text}");
}
