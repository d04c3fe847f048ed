//! A smart-contract wallet pays a paywalled route: first while it is still counterfactual
//! (ERC-6492; settling deploys it), then again as a deployed ERC-1271 wallet.

mod common;

use std::sync::Arc;

use alloy::primitives::U256;
use common::{PRICE_ATOMIC, app, option};
use serde_json::Value;
use x402_facilitator::FacilitatorConfig;
use x402_paywall::{Paywall, PaywallConfig};
use x402_proto::Facilitator;
use x402_testkit::{Chain, SmartWallet, challenge_of, receipt_of};

#[tokio::test]
async fn a_counterfactual_then_deployed_smart_wallet_pays_a_route() {
    let chain = Chain::start().await;
    let devnet = &chain.devnet;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndatabase = \"{}\"\n[[networks]]\nchain_id = {}\nrpc_url = \"{}\"\n\
         eip6492_allowed_factories = [\"{}\"]\n",
        dir.path().join("facilitator.db").display(),
        devnet.chain_id(),
        devnet.rpc_url(),
        devnet.wallet_factory(),
    );
    let config = FacilitatorConfig::parse(&text, std::iter::empty()).unwrap();
    let facilitator = x402_facilitator::start(&config, devnet.facilitator().signer.clone())
        .await
        .expect("facilitator starts");
    let in_process: Arc<dyn Facilitator> = Arc::new(facilitator.service().clone());
    let paywall = Paywall::new(in_process, vec![option(&chain)], PaywallConfig::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/weather", listener.local_addr().unwrap());
    let router = app(&paywall);
    tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::new();

    let owner = devnet.payers()[0].signer.clone();
    let wallet = SmartWallet::counterfactual(devnet, &owner).await;
    devnet
        .mint(
            devnet.token().address,
            wallet.address,
            x402_proto::TokenAmount::from_atomic(u128::from(2 * PRICE_ATOMIC)),
        )
        .await
        .unwrap();
    let pay_to = devnet.pay_to().address;
    let before = chain.balance(pay_to).await;

    for counterfactual in [true, false] {
        let challenge = http.get(&url).send().await.unwrap();
        assert_eq!(challenge.status(), 402);
        let header = wallet.pay_challenge(&challenge_of(challenge.headers()), counterfactual);
        let paid = http
            .get(&url)
            .header("PAYMENT-SIGNATURE", header)
            .send()
            .await
            .unwrap();
        assert_eq!(paid.status(), 200, "counterfactual: {counterfactual}");
        let receipt = receipt_of(paid.headers()).unwrap();
        assert!(receipt.success, "{receipt:?}");
        let body: Value = paid.json().await.unwrap();
        assert_eq!(
            body["payer"].as_str().unwrap().to_lowercase(),
            wallet.address.to_string().to_lowercase()
        );
        // The first payment deployed the wallet.
        assert!(devnet.has_code(wallet.address).await.unwrap());
    }
    assert_eq!(chain.balance(wallet.address).await, U256::ZERO);
    assert_eq!(
        chain.balance(pay_to).await - before,
        U256::from(2 * PRICE_ATOMIC)
    );
}
