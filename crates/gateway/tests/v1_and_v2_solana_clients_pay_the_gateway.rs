//! Solana payers on both protocol versions pay the gateway: a v1 client (`X-PAYMENT`,
//! network `solana-devnet`) and a v2 client (`PAYMENT-SIGNATURE`, CAIP-2), each signing with
//! our Solana plug-in. Each gets its answer and a receipt in its version's header naming a
//! transaction on chain; the payee gets the two prices and the journal records both payments
//! as settled on Solana, keyed by their transaction messages.

mod common;

use common::Stack;
use serde_json::{Value, json};
use x402_gateway::payments::PageQuery;
use x402_paywall::PaymentState;
use x402_testkit::{Solana, Wire, challenge_of, solana_offer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_and_v2_solana_payments_are_answered_settled_and_journaled() {
    let solana = Solana::start().await;
    let stack = Stack::with_solana(&solana).await;
    let state = solana.state();
    let before = solana.pay_to_balance().await;
    let mut paid = 0;

    for (payer, wire, header, network) in [
        (0, Wire::V1, "x-payment-response", state.v1_network.as_str()),
        (1, Wire::V2, "payment-response", state.network.as_str()),
    ] {
        let run =
            json!({"service": "embedding-l4", "input": {"text": format!("payer {payer} asks")}});
        let url = format!("{}/run", stack.url);
        let unpaid = stack.http.post(&url).json(&run).send().await.unwrap();
        let price: u64 = solana_offer(&challenge_of(unpaid.headers()))
            .amount
            .to_string()
            .parse()
            .unwrap();
        let payment = solana.payment_for(unpaid, payer, wire).await;
        let response = stack
            .http
            .post(&url)
            .json(&run)
            .header(payment.0, &payment.1)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{wire:?}");
        let receipt: Value =
            x402_proto::decode_header(response.headers()[header].as_bytes()).unwrap();
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["output"]["dimensions"], 384, "{body}");
        assert_eq!(receipt["success"], true, "{receipt}");
        assert_eq!(receipt["network"], network, "{wire:?}");
        assert_eq!(receipt["payer"], state.payers[payer].as_str());
        let signature = receipt["transaction"].as_str().unwrap();
        solana.assert_landed(signature).await;
        paid += price;

        let page = stack
            .gateway
            .journal()
            .store()
            .page(&PageQuery {
                search: Some(signature.to_owned()),
                limit: 10,
                ..PageQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(page.total, 1, "{wire:?}: one journal entry");
        let entry = &page.records[0].entry;
        assert_eq!(entry.state, PaymentState::Settled);
        assert_eq!(
            entry.network.as_str(),
            state.network,
            "CAIP-2 whatever the version"
        );
        assert_eq!(entry.asset, state.mint);
        assert_eq!(entry.payer, state.payers[payer]);
        assert_eq!(entry.amount.to_string(), price.to_string());
        assert!(entry.payment.contains(":svm:"), "{}", entry.payment);
    }
    assert_eq!(solana.pay_to_balance().await, before + paid);
}
