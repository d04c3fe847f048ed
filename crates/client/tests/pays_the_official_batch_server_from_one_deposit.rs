//! Our paying client against the official `batch-settlement` stack (the official
//! `@x402/express` server with the official batch-settlement server scheme, settling through
//! the official facilitator library), on anvil: 200 paid requests take exactly one deposit and
//! 199 vouchers; the ledger keeps 200 charges that sum to what the server charged, and the one
//! deposit apart from them; once the official channel manager claims and settles, the payee
//! holds exactly the charged sum more.

mod common;

use alloy::primitives::U256;
use common::batch::{MIN_DEPOSIT, OfficialBatch, USAGE};
use serde_json::json;

const REQUESTS: u128 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_requests_take_one_deposit_and_the_payee_gets_exactly_what_was_charged() {
    let stack = OfficialBatch::start().await;
    let devnet = &stack.chain.devnet;
    let payer = devnet.payers()[0].address;
    let payee = devnet.pay_to().address;
    let client = stack.client(0);
    let (payer_before, payee_before) = (stack.balance(payer).await, stack.balance(payee).await);

    let mut deposits = 0;
    let mut vouchers = 0;
    let started = std::time::Instant::now();
    for n in 0..REQUESTS {
        let paid = stack.pay(&client).await.unwrap();
        assert_eq!(paid.response.status(), 200, "request {n}");
        let receipt = paid.receipt.clone().expect("a receipt");
        assert!(receipt.success, "{receipt:?}");
        // A deposit's receipt names its transaction; a voucher's is settled locally.
        if receipt.transaction.is_empty() {
            vouchers += 1;
        } else {
            deposits += 1;
        }
        let extra = receipt.extra.clone().expect("the channel's state");
        assert_eq!(extra["chargedAmount"], USAGE.to_string());
        assert_eq!(
            extra["channelState"]["chargedCumulativeAmount"],
            (USAGE * (n + 1)).to_string()
        );
        let (charged, _) = paid.paid.expect("paid");
        assert_eq!(charged.atomic, x402_proto::TokenAmount::from_atomic(USAGE));
        assert_eq!(
            paid.response.json::<serde_json::Value>().await.unwrap(),
            json!({"ok": true, "usage": USAGE.to_string()})
        );
    }
    eprintln!(
        "{REQUESTS} batch-settlement requests in {:?}",
        started.elapsed()
    );
    assert_eq!((deposits, vouchers), (1, 199));

    // The ledger: 200 charges at what the server charged, and one deposit, locked apart.
    let ledger = client.ledger();
    let rows = ledger.payments(0).unwrap();
    assert_eq!(rows.len(), REQUESTS as usize);
    assert!(
        rows.iter()
            .all(|r| r.status == "paid" && r.amount == USAGE.to_string())
    );
    assert_eq!(
        u128::from(ledger.spent(0).unwrap()),
        USAGE * REQUESTS,
        "micro-USD"
    );
    let funds = ledger.channel_funds(None).unwrap();
    let deposits: Vec<_> = funds.iter().filter(|f| f.kind == "deposit").collect();
    assert_eq!(deposits.len(), 1, "{funds:?}");
    assert_eq!(deposits[0].amount, MIN_DEPOSIT.to_string());
    assert_eq!(deposits[0].status, "done");
    assert_eq!(
        u128::from(ledger.locked().unwrap()),
        MIN_DEPOSIT - USAGE * REQUESTS
    );
    let channels = ledger.channels().unwrap();
    assert_eq!(channels.len(), 1);
    assert_eq!(channels[0].record.charged, USAGE * REQUESTS);
    assert_eq!(channels[0].record.balance, MIN_DEPOSIT);
    assert_eq!(channels[0].url.as_deref(), Some(stack.resource().as_str()));
    // The deposit left the payer; nothing reached the payee yet.
    assert_eq!(
        stack.balance(payer).await,
        payer_before - U256::from(MIN_DEPOSIT)
    );
    assert_eq!(stack.balance(payee).await, payee_before);

    // The official channel manager claims every voucher and settles: the payee gains exactly
    // what was charged.
    let done = stack.claim_and_settle().await;
    assert_eq!(done["claims"][0]["vouchers"], 1, "{done}");
    assert!(done["settle"]["transaction"].is_string(), "{done}");
    assert_eq!(
        stack.balance(payee).await,
        payee_before + U256::from(USAGE * REQUESTS)
    );

    // The next answer shows the claim, and the ledger records it as seen.
    let paid = stack.pay(&client).await.unwrap();
    let state = &paid.receipt.unwrap().extra.unwrap()["channelState"];
    assert_eq!(state["totalClaimed"], (USAGE * REQUESTS).to_string());
    let claims: Vec<_> = ledger
        .channel_funds(None)
        .unwrap()
        .into_iter()
        .filter(|f| f.kind == "claim")
        .collect();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].amount, (USAGE * REQUESTS).to_string());
}
