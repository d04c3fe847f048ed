//! Permit2 settlements (`upto`, and `exact` with Permit2) live in the facilitator's durable
//! log: a settle answered `settlement_pending` is answered again after a restart for the
//! transaction already sent, with the amount it moved, to the request it was sent for (another
//! request gets `duplicate_settlement`); a settlement left unmined by a stopped facilitator is
//! concluded at the next start without a new send; a keyless retry (the official server's) gets
//! the success once. The money moves once.

use alloy::primitives::{Address, B256, U256};
use serde_json::{Value, json};
use x402_evm::exact_permit2::ExactPermit2Client;
use x402_evm::permit2::PERMIT2_ADDRESS;
use x402_evm::unix_now;
use x402_evm::upto::UptoEvmClient;
use x402_facilitator::{SettlementKey, SettlementState, SettlementStore, SqliteStore};
use x402_proto::{PaymentRequest, SchemeClient};
use x402_testkit::{Chain, PLAIN_TOKEN, Stack, request_paying, upto_usage};

/// How long `/settle` waits for a receipt before answering `settlement_pending`.
const SETTLE_WAIT_MS: u64 = 500;

/// A stack serving `upto` (on by default) whose first payer approved Permit2 for the devnet's
/// token, and that payer's `upto` payment of at most 20 000 settling `used`.
async fn upto_payment(used: u128) -> (Stack, PaymentRequest) {
    let chain = Chain::start().await;
    let payer = chain.devnet.payers()[0].signer.clone();
    chain.devnet.approve_permit2(&payer).await.unwrap();
    let limits = format!("[limits]\nsettle_wait_ms = {SETTLE_WAIT_MS}");
    let stack = Stack::on_chain(chain, &limits, "").await;
    let offer = stack.chain.upto_offer(20_000);
    let payload = UptoEvmClient::new(payer)
        .sign_upto(&offer, unix_now())
        .await
        .unwrap();
    let request = upto_usage(serde_json::to_value(payload).unwrap(), &offer, used);
    (stack, request)
}

/// The owner and Permit2 nonce a request's permit names.
fn permit_of(request: &PaymentRequest) -> (Address, U256) {
    let permit = &request.payload()["permit2Authorization"];
    let owner = permit["from"].as_str().unwrap().parse().unwrap();
    let nonce = permit["nonce"].as_str().unwrap().parse().unwrap();
    (owner, nonce)
}

/// Where the money stands: the payer's and the payee's balances of a token, and the
/// signer's count of transactions.
#[derive(Debug, PartialEq, Eq)]
struct Balances {
    payer: U256,
    payee: U256,
    sent: u64,
}

impl Balances {
    async fn read(stack: &Stack, token: Address, payer: Address) -> Self {
        let devnet = &stack.chain.devnet;
        Self {
            payer: devnet.balance_of(token, payer).await.unwrap(),
            payee: devnet
                .balance_of(token, devnet.pay_to().address)
                .await
                .unwrap(),
            sent: stack.chain.facilitator_tx_count().await,
        }
    }

    /// Asserts that since `self` one transaction was sent, and it moved `amount` of `token`
    /// from `payer` to the payee.
    async fn assert_one_transfer(
        &self,
        stack: &Stack,
        (token, payer): (Address, Address),
        amount: u64,
    ) {
        let expected = Self {
            payer: self.payer - U256::from(amount),
            payee: self.payee + U256::from(amount),
            sent: self.sent + 1,
        };
        assert_eq!(
            Self::read(stack, token, payer).await,
            expected,
            "exactly one transaction moved {amount}"
        );
    }
}

/// `/settle` with `key` (none when `None`).
async fn settle(stack: &Stack, request: &PaymentRequest, key: Option<&str>) -> Value {
    let (status, answer) = match key {
        Some(key) => stack.settle_with_key(request, key).await,
        None => stack.settle(request).await,
    };
    assert_eq!(status, 200, "{answer}");
    answer
}

/// Settles `request` with a key while no block comes (`settlement_pending`), restarts the
/// facilitator on the same log, mines, and settles again: the same key gets the success of
/// the transaction first sent, naming `amount`; another key, or none, gets
/// `duplicate_settlement`; one transaction moved `amount` of `token`.
async fn a_pending_settlement_is_answered_after_a_restart(
    mut stack: Stack,
    request: PaymentRequest,
    token: Address,
    amount: u64,
) {
    let (payer, _) = permit_of(&request);
    let before = Balances::read(&stack, token, payer).await;
    stack.stop_automine().await;

    let pending = settle(&stack, &request, Some("order-1")).await;
    assert_eq!(pending["errorReason"], "settlement_pending", "{pending}");
    assert_eq!(pending["amount"], "0", "nothing moved yet: {pending}");
    let sent = pending["transaction"].as_str().unwrap().to_owned();
    assert_eq!(sent.len(), 66, "{pending}");

    // A new process knows the settlement only from its log, and tracks it from the start.
    stack.restart().await;
    let reconciled = stack.facilitator.as_ref().unwrap().reconciled();
    assert_eq!(reconciled.tracking, 1, "{reconciled:?}");
    stack.mine().await;

    let settled = settle(&stack, &request, Some("order-1")).await;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(settled["transaction"], json!(sent), "{settled}");
    assert_eq!(settled["amount"], json!(amount.to_string()), "{settled}");
    // Asked again by its request: the same answer.
    let again = settle(&stack, &request, Some("order-1")).await;
    assert_eq!(
        (&again["success"], &again["transaction"]),
        (&json!(true), &json!(sent))
    );
    for other in [Some("order-2"), None] {
        let refused = settle(&stack, &request, other).await;
        assert_eq!(
            refused["errorReason"], "duplicate_settlement",
            "{other:?}: {refused}"
        );
    }
    before
        .assert_one_transfer(&stack, (token, payer), amount)
        .await;
}

#[tokio::test]
async fn a_pending_upto_settlement_is_answered_after_a_restart() {
    let (stack, request) = upto_payment(1_858).await;
    let token = stack.chain.devnet.token().address;
    a_pending_settlement_is_answered_after_a_restart(stack, request, token, 1_858).await;
}

#[tokio::test]
async fn a_pending_exact_permit2_settlement_is_answered_after_a_restart() {
    let mut stack = Stack::with_plain_token(1, 1_000_000).await;
    stack.config.limits.settle_wait_ms = SETTLE_WAIT_MS;
    stack.restart().await;
    let offer = stack.chain.plain_token_offer(2_500);
    let signed = ExactPermit2Client::new(stack.chain.devnet.payers()[0].signer.clone())
        .sign(&offer, unix_now())
        .await
        .unwrap();
    let request = request_paying(signed.payload, &offer);
    a_pending_settlement_is_answered_after_a_restart(stack, request, PLAIN_TOKEN, 2_500).await;
}

#[tokio::test]
async fn a_settlement_left_unmined_by_a_stopped_facilitator_is_concluded_at_start() {
    let (mut stack, request) = upto_payment(4_000).await;
    let token = stack.chain.devnet.token().address;
    let (payer, nonce) = permit_of(&request);
    let before = Balances::read(&stack, token, payer).await;
    stack.stop_automine().await;
    let pending = settle(&stack, &request, Some("order-1")).await;
    assert_eq!(pending["errorReason"], "settlement_pending", "{pending}");
    let sent: B256 = pending["transaction"].as_str().unwrap().parse().unwrap();

    // The facilitator goes away with its transaction broadcast and unmined, as a crash after
    // the broadcast leaves it; the block comes while it is down.
    let down = stack.facilitator.take().unwrap();
    down.shutdown().await;
    stack.mine().await;
    stack.restart().await;
    let reconciled = stack.facilitator.as_ref().unwrap().reconciled();
    assert_eq!(
        (reconciled.confirmed, reconciled.tracking),
        (1, 0),
        "{reconciled:?}"
    );

    // The log row ended confirmed, with the one transaction sent.
    let log = SqliteStore::open(&stack.dir.path().join("facilitator.db")).unwrap();
    let key = SettlementKey {
        chain_id: stack.chain.devnet.chain_id(),
        asset: PERMIT2_ADDRESS,
        payer,
        nonce: B256::from(nonce.to_be_bytes::<32>()),
    };
    let record = log
        .get(&key)
        .await
        .unwrap()
        .expect("the settlement is logged");
    assert_eq!(record.state, SettlementState::Confirmed);
    let hashes: Vec<B256> = record.txs.iter().map(|tx| tx.tx_hash).collect();
    assert_eq!(hashes, vec![sent]);
    assert_eq!(
        (record.settlement.token, record.settlement.amount),
        (token, U256::from(4_000))
    );
    assert_eq!(record.answered_to.as_deref(), Some("key:order-1"));

    // Its request gets the success; nothing else was sent.
    let settled = settle(&stack, &request, Some("order-1")).await;
    assert_eq!(
        (
            &settled["success"],
            &settled["transaction"],
            &settled["amount"]
        ),
        (&json!(true), &json!(sent.to_string()), &json!("4000")),
        "{settled}"
    );
    before
        .assert_one_transfer(&stack, (token, payer), 4_000)
        .await;
}

#[tokio::test]
async fn a_keyless_retry_after_a_restart_gets_the_success_once() {
    // The official server retries once with the identical body, and sends no key.
    let (mut stack, request) = upto_payment(700).await;
    let token = stack.chain.devnet.token().address;
    let (payer, _) = permit_of(&request);
    let before = Balances::read(&stack, token, payer).await;
    stack.stop_automine().await;
    let pending = settle(&stack, &request, None).await;
    assert_eq!(pending["errorReason"], "settlement_pending", "{pending}");

    stack.restart().await;
    stack.mine().await;
    let settled = settle(&stack, &request, None).await;
    assert_eq!(
        (
            &settled["success"],
            &settled["transaction"],
            &settled["amount"]
        ),
        (&json!(true), &pending["transaction"], &json!("700")),
        "{settled}"
    );
    // Its success was handed out; to anyone else the permit is spent.
    let again = settle(&stack, &request, None).await;
    assert_eq!(again["errorReason"], "permit2_invalid_nonce", "{again}");
    before
        .assert_one_transfer(&stack, (token, payer), 700)
        .await;
}
