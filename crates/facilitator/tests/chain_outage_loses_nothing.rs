//! With the chain's RPC down, `/health` fails and verify and settle say why; once it is back,
//! nothing has been lost: a payment refused during the outage settles, and a settlement that
//! was in flight when the RPC went down is confirmed.

use alloy::primitives::U256;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_is_reported_and_nothing_is_lost() {
    let chain = x402_testkit::Chain::start().await;
    let rpc = chain.devnet.rpc_url();
    let target = format!("{}:{}", rpc.host_str().unwrap(), rpc.port().unwrap());
    let proxy = x402_testkit::Proxy::start(target.parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let config =
        x402_testkit::config_for(&proxy.url(), dir.path(), "[limits]\nsettle_wait_ms = 1000");
    let stack = x402_testkit::Stack::serve(chain, dir, config).await;
    let (status, _) = stack.get("/health").await;
    assert_eq!(status, 200);

    let before = stack.before().await;
    let request = stack.payment(0, 5_000);

    proxy.cut().await;
    let (status, health) = stack.get("/health").await;
    assert_eq!(status, 503, "{health}");
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "unhealthy");
    assert_eq!(health["chains"][0]["reachable"], false);
    assert!(
        health["chains"][0]["error"]
            .as_str()
            .unwrap()
            .contains("RPC"),
        "{health}"
    );

    let (status, verified) = stack.verify(&request).await;
    assert_eq!(status, 503, "{verified}");
    assert_eq!(verified["isValid"], false);
    assert_eq!(verified["invalidReason"], "chain_unavailable");
    let (status, settled) = stack.settle(&request).await;
    assert_eq!(status, 503, "{settled}");
    assert_eq!(settled["success"], false);
    assert_eq!(settled["errorReason"], "chain_unavailable");
    assert!(
        settled["errorMessage"]
            .as_str()
            .unwrap()
            .contains("unavailable"),
        "{settled}"
    );

    proxy.restore();
    let (status, _) = stack.get("/health").await;
    assert_eq!(status, 200);
    let (status, settled) = stack.settle(&request).await;
    assert_eq!(status, 200);
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(
        stack.pay_to_balance().await,
        before.paid + U256::from(5_000)
    );

    // An outage while a settlement is in flight: the transaction is in the pool, the RPC goes
    // away, the block is mined meanwhile, the RPC comes back.
    stack.stop_automine().await;
    let second = stack.payment(1, 7_000);
    let (_, pending) = stack.settle(&second).await;
    assert_eq!(pending["errorReason"], "settlement_pending", "{pending}");
    let tx_hash = pending["transaction"].as_str().unwrap().to_owned();
    proxy.cut().await;
    stack.mine().await;
    let (status, during) = stack.settle(&second).await;
    assert_eq!(status, 200, "{during}");
    assert_eq!(during["errorReason"], "settlement_pending", "{during}");
    proxy.restore();
    let (_, settled) = stack.settle(&second).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(settled["transaction"], tx_hash.as_str());

    // Both payments moved once.
    stack.assert_since(before, 2, 12_000).await;
}
