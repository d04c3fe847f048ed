//! The same Solana payment settled 50 times at once through the facilitator plug-in: one
//! transfer on chain, one success and 49 `duplicate_settlement` answers; presented again
//! later, still refused as a duplicate. Its payment id is the message's, the same for every
//! presentation.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use x402_devnet::{SolanaChain, SolanaChainConfig};
use x402_proto::{Facilitator, Network, PaymentRequest};
use x402_svm::{
    DEFAULT_COMPUTE_UNIT_PRICE_MICROLAMPORTS, ExactSvmFacilitator, ExactSvmPayload, ExactSvmScheme,
    FeePayers, Keypair, SettlePolicy, SolanaRpc, VerifyLimits, build_payment,
};

#[tokio::test]
async fn fifty_presentations_at_once_settle_one_transfer() {
    let chain = SolanaChain::start(&SolanaChainConfig {
        payers: 1,
        payer_funds: 1_000_000,
        seed: None,
    })
    .await
    .expect("the local Solana chain starts (npm install in tools/)");
    let state = chain.state();
    let rpc = SolanaRpc::new(&state.rpc_url, Duration::from_secs(10));
    let payer = Keypair::try_from_base58_string(&state.payer_keys[0]).unwrap();
    let parts = common::transfer(state, &rpc, 777, DEFAULT_COMPUTE_UNIT_PRICE_MICROLAMPORTS).await;
    let payload = ExactSvmPayload::of(&build_payment(&payer, &parts).unwrap());
    let requirements = json!({
        "scheme": "exact", "network": state.network, "amount": "777",
        "asset": state.mint, "payTo": state.pay_to, "maxTimeoutSeconds": 60,
        "extra": {"feePayer": state.fee_payer},
    });
    let request: PaymentRequest = serde_json::from_value(json!({
        "paymentPayload": {"x402Version": 2, "accepted": requirements, "payload": payload},
        "paymentRequirements": requirements,
    }))
    .unwrap();
    let facilitator = Arc::new(ExactSvmFacilitator::new(
        Network::new(state.network.clone()),
        ExactSvmScheme::new(
            SolanaRpc::new(&state.rpc_url, Duration::from_secs(10)),
            FeePayers::new(vec![
                Keypair::try_from_base58_string(&state.fee_payer_key).unwrap(),
            ]),
            VerifyLimits::default(),
        ),
        SettlePolicy::default(),
    ));

    let supported = facilitator.supported().await.unwrap();
    let kinds: Vec<_> = supported
        .kinds
        .iter()
        .map(|k| {
            (
                k.x402_version,
                k.network.as_str().to_owned(),
                k.extra.clone(),
            )
        })
        .collect();
    let extra = Some(json!({"feePayer": state.fee_payer}));
    assert_eq!(
        kinds,
        vec![
            (2, state.network.clone(), extra.clone()),
            (1, state.v1_network.clone(), extra)
        ]
    );

    let pay_to_account = common::address(&state.pay_to_token_account);
    let before = rpc.token_balance(&pay_to_account).await.unwrap();
    let answers = futures_join(&facilitator, &request, 50).await;
    let successes: Vec<_> = answers.iter().filter(|a| a.success).collect();
    assert_eq!(successes.len(), 1, "{answers:#?}");
    assert!(
        answers
            .iter()
            .filter(|a| !a.success)
            .all(|a| a.error_reason.as_ref().map(|r| r.as_str()) == Some("duplicate_settlement")),
        "{answers:#?}"
    );
    assert_eq!(
        rpc.token_balance(&pay_to_account).await.unwrap(),
        before + 777
    );

    let again = facilitator.settle(&request, None).await.unwrap();
    assert_eq!(
        again.error_reason.as_ref().map(|r| r.as_str()),
        Some("duplicate_settlement")
    );
    assert_eq!(
        rpc.token_balance(&pay_to_account).await.unwrap(),
        before + 777
    );
    let id = facilitator.payment_id(&request).unwrap();
    assert!(
        id.as_str()
            .starts_with(&format!("exact:{}:svm:", state.network)),
        "{id}"
    );
}

async fn futures_join(
    facilitator: &Arc<ExactSvmFacilitator>,
    request: &PaymentRequest,
    times: usize,
) -> Vec<x402_proto::SettleResponse> {
    let tasks: Vec<_> = (0..times)
        .map(|_| {
            let facilitator = facilitator.clone();
            let request = request.clone();
            tokio::spawn(async move { facilitator.settle(&request, None).await.unwrap() })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}
