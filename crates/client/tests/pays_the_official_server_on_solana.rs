//! Our paying client pays the official `@x402/express` server's Solana route (`@x402/svm`
//! 2.27 server scheme, USDC on the local chain posing as devnet, settled through our
//! facilitator with its Solana plug-in) with its Solana key, beside its EVM key: the receipt
//! names a transaction on chain, the payee gets the price, and the ledger and budget count
//! the payment as any other; a second payment past the budget is refused before signing.

mod common;

use x402_client::{Budget, PayError};
use x402_testkit::{Chain, Solana, official_express_server_at, official_sdks, serve_with_solana};

/// The route's price: $0.01 of USDC, in atomic units (and micro-USD).
const PRICE: u64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_pays_the_official_solana_route_within_its_budget() {
    official_sdks("@x402/svm");
    let solana = Solana::start().await;
    let base = serve_with_solana(Chain::start().await, &solana).await;
    let state = solana.state();
    let (_server, port) = official_express_server_at(
        &base.chain.devnet,
        &base.url(),
        None,
        &[
            ("SVM_PAY_TO", state.pay_to.clone()),
            ("SVM_PRICE", "$0.01".to_owned()),
        ],
    )
    .await;
    let url = format!("http://127.0.0.1:{port}/solana");

    let client = common::paying_client(
        reqwest::Client::new(),
        &base.chain.devnet.payers()[0].signer,
    )
    .with_solana(solana.payer_key(0), &state.rpc_url, vec![solana.network()]);
    client
        .ledger()
        .set_budget(&Budget::total(PRICE + PRICE / 2))
        .unwrap();
    let before = solana.pay_to_balance().await;
    let payer_before = solana.payer_balance(0).await;

    let paid = client
        .send(client.http().get(&url).build().unwrap(), None)
        .await
        .unwrap();
    assert_eq!(paid.response.status(), 200);
    let receipt = paid.receipt.expect("a receipt");
    assert!(receipt.success, "{receipt:?}");
    assert_eq!(receipt.network.as_str(), state.network);
    assert_eq!(receipt.payer.as_deref(), Some(state.payers[0].as_str()));
    solana.assert_landed(&receipt.transaction).await;
    assert_eq!(solana.pay_to_balance().await, before + PRICE);
    assert_eq!(solana.payer_balance(0).await, payer_before - PRICE);

    let rows = client.ledger().payments(0).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "paid");
    assert_eq!(rows[0].intent.network, state.network);
    assert_eq!(rows[0].intent.payer, state.payers[0]);
    assert_eq!(rows[0].intent.amount, PRICE.to_string());
    assert_eq!(
        rows[0].transaction.as_deref(),
        Some(receipt.transaction.as_str())
    );
    assert_eq!(client.ledger().spent(0).unwrap(), PRICE, "micro-USD");

    // Past the budget: refused before anything is signed; nothing moves.
    let refused = client
        .send(client.http().get(&url).build().unwrap(), None)
        .await
        .unwrap_err();
    assert!(matches!(refused, PayError::Budget(_)), "{refused}");
    assert_eq!(solana.pay_to_balance().await, before + PRICE);
    assert_eq!(client.ledger().payments(0).unwrap().len(), 1);
}
