//! Our paying client against an x402 stack made only of the official 2.27 libraries, on anvil:
//! the official `@x402/express` server settling through a facilitator built from the official
//! facilitator library (`tools/interop/official-facilitator.mjs`, the reference for how `upto`
//! settles). On the `upto` route, which offers up to $0.02 and reports a smaller usage, our
//! client pays exactly the usage: the receipt names it, the payer's balance moves by it, and the
//! ledger keeps it (not the maximum it reserved) against the budget. A payer that never
//! approved Permit2 is refused with 412 and pays nothing; the `exact` route is paid as priced.

mod common;

use alloy::primitives::{Address, U256};
use serde_json::{Value, json};
use x402_client::{Budget, PayError, PayingClient};
use x402_evm::upto::UPTO_PERMIT2_PROXY;
use x402_proto::TokenAmount;
use x402_testkit::{
    Chain, KillOnDrop, assert_official_upto_offer, assert_settlement_mined,
    official_express_server_at, official_facilitator,
};

/// The most `GET /metered` may cost: $0.02 of the devnet's USDC, in atomic units.
const MAX: u128 = 20_000;
/// What `GET /metered` reports it used, in atomic units.
const USAGE: u128 = 1_234;

/// The official server in front of the official facilitator on a fresh chain.
struct OfficialStack {
    chain: Chain,
    /// The server's base URL.
    url: String,
    _facilitator: KillOnDrop,
    _server: KillOnDrop,
}

impl OfficialStack {
    /// A chain, the official facilitator settling with the devnet's facilitator key, and the
    /// official server with `/paid` ($0.01, `exact`) and `/metered` (`upto`, up to $0.02,
    /// settling [`USAGE`]).
    async fn start() -> Self {
        let chain = Chain::start().await;
        let (facilitator, facilitator_url) =
            official_facilitator(&chain.devnet, &chain.devnet.facilitator().signer).await;
        let env = [
            ("UPTO_PRICE", "$0.02".to_owned()),
            ("UPTO_USAGE", USAGE.to_string()),
        ];
        let (server, port) =
            official_express_server_at(&chain.devnet, &facilitator_url, None, &env).await;
        Self {
            chain,
            url: format!("http://127.0.0.1:{port}"),
            _facilitator: facilitator,
            _server: server,
        }
    }

    /// The `index`th payer's client, with a ledger of its own.
    fn client(&self, index: usize) -> PayingClient {
        let payer = &self.chain.devnet.payers()[index].signer;
        common::paying_client(reqwest::Client::new(), payer)
    }

    /// `client` GETs `path`, paying.
    async fn pay(
        &self,
        client: &PayingClient,
        path: &str,
    ) -> Result<x402_client::PaidResponse, PayError> {
        let request = client.http().get(format!("{}{path}", self.url));
        client.send(request.build().unwrap(), None).await
    }

    /// Asserts that `transaction` was mined, sent by the official facilitator to `to`.
    async fn assert_sent_by_the_official_facilitator(&self, transaction: &str, to: Address) {
        let devnet = &self.chain.devnet;
        assert_settlement_mined(devnet, transaction, devnet.facilitator().address, to).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_pays_the_official_upto_route_its_usage_not_the_maximum() {
    const { assert!(USAGE < MAX) };
    let stack = OfficialStack::start().await;
    let devnet = &stack.chain.devnet;
    let payer = &devnet.payers()[0];
    devnet.approve_permit2(&payer.signer).await.unwrap();

    // The 402 asks for the maximum and names the official facilitator as the one settling.
    let metered = format!("{}/metered", stack.url);
    assert_official_upto_offer(&metered, MAX, devnet.facilitator().address).await;

    // A budget two maxima would cross: the second call fits only if the first was counted at
    // its usage.
    let client = stack.client(0);
    let budget = u64::try_from(2 * MAX - 1).unwrap();
    client.ledger().set_budget(&Budget::total(budget)).unwrap();
    let (payer_before, payee_before) = (
        stack.chain.balance(payer.address).await,
        stack.chain.balance(devnet.pay_to().address).await,
    );

    let paid = stack.pay(&client, "/metered").await.unwrap();
    assert_eq!(paid.response.status(), 200);
    let receipt = paid.receipt.clone().expect("a receipt");
    assert!(receipt.success, "{receipt:?}");
    assert_eq!(receipt.amount, Some(TokenAmount::from_atomic(USAGE)));
    let named: Option<Address> = receipt.payer.as_deref().map(|p| p.parse().unwrap());
    assert_eq!(named, Some(payer.address), "{receipt:?}");
    stack
        .assert_sent_by_the_official_facilitator(&receipt.transaction, UPTO_PERMIT2_PROXY)
        .await;
    let (charged, _) = paid.paid.as_ref().expect("paid");
    assert_eq!(charged.atomic, TokenAmount::from_atomic(USAGE));
    assert_eq!(
        paid.response.json::<Value>().await.unwrap(),
        json!({"ok": true, "usage": USAGE.to_string()})
    );
    assert_eq!(
        stack.chain.balance(payer.address).await,
        payer_before - U256::from(USAGE)
    );
    assert_eq!(
        stack.chain.balance(devnet.pay_to().address).await,
        payee_before + U256::from(USAGE)
    );
    let rows = client.ledger().payments(0).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].status.as_str(), rows[0].amount.as_str()),
        ("paid", "1234")
    );
    assert_eq!(
        rows[0].transaction.as_deref(),
        Some(receipt.transaction.as_str())
    );
    assert_eq!(client.ledger().spent(0).unwrap(), 1_234, "micro-USD");
    assert_eq!(client.ledger().outstanding(0).unwrap(), 0);

    // The difference went back to the budget: a second maximum fits beside the first usage.
    let again = stack.pay(&client, "/metered").await.unwrap();
    assert_eq!(again.response.status(), 200);
    assert_eq!(client.ledger().spent(0).unwrap(), 2 * 1_234);
    assert_eq!(
        stack.chain.balance(payer.address).await,
        payer_before - U256::from(2 * USAGE)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payer_without_a_permit2_allowance_is_refused_with_412_and_pays_nothing() {
    let stack = OfficialStack::start().await;
    // Payer 1 never approved Permit2: the official facilitator's simulation fails and its
    // diagnosis says why; the official server answers 412.
    let payer = stack.chain.devnet.payers()[1].address;
    let before = stack.chain.balance(payer).await;
    let client = stack.client(1);
    match stack.pay(&client, "/metered").await {
        Err(PayError::Refused { status, reason, .. }) => {
            assert_eq!(status, 412);
            assert!(reason.contains("permit2_allowance_required"), "{reason}");
        }
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(paid) => panic!("expected a refusal, got {}", paid.response.status()),
    }
    assert_eq!(stack.chain.balance(payer).await, before);
    assert_eq!(client.ledger().spent(0).unwrap(), 0);
    assert_eq!(client.ledger().outstanding(0).unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_pays_the_official_exact_route_through_the_official_facilitator() {
    let stack = OfficialStack::start().await;
    let devnet = &stack.chain.devnet;
    let payee_before = stack.chain.balance(devnet.pay_to().address).await;
    let client = stack.client(2);
    let paid = stack.pay(&client, "/paid").await.unwrap();
    assert_eq!(paid.response.status(), 200);
    let receipt = paid.receipt.clone().expect("a receipt");
    assert!(receipt.success, "{receipt:?}");
    // EIP-3009: the facilitator calls the token itself.
    stack
        .assert_sent_by_the_official_facilitator(&receipt.transaction, devnet.token().address)
        .await;
    assert_eq!(
        stack.chain.balance(devnet.pay_to().address).await,
        payee_before + U256::from(10_000)
    );
    assert_eq!(client.ledger().spent(0).unwrap(), 10_000, "micro-USD");
}
