//! Three facilitator instances share one Postgres log and one signer key: 300 distinct
//! payments spread across them at concurrency 16 all settle at the first call, their
//! transactions use exactly the signer's next 300 nonces (none used twice, none skipped), and
//! the chain moved what the log says it settled.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use alloy::primitives::{B256, U256};
use alloy::providers::Provider;
use x402_facilitator::RunningFacilitator;
use x402_testkit::{Stack, TempDatabase};

const PAYMENTS: usize = 300;
const CONCURRENCY: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_hundred_payments_across_three_instances_use_three_hundred_consecutive_nonces() {
    let database = TempDatabase::create().await;
    let stack = Stack::on_postgres(&database, |_| {}).await;
    let others = stack.more_instances(2).await;
    let urls: Arc<Vec<String>> = Arc::new(
        std::iter::once(stack.url())
            .chain(others.iter().map(RunningFacilitator::url))
            .collect(),
    );
    let payers = stack.chain.devnet.payers().len();
    let requests: Arc<Vec<_>> = Arc::new(
        (0..PAYMENTS)
            .map(|n| stack.payment(n % payers, 1_000 + n as u128))
            .collect(),
    );
    let expected_total: u64 = (0..PAYMENTS as u64).map(|n| 1_000 + n).sum();
    let before = stack.before().await;

    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (http, urls, requests, next) = (
            stack.http.clone(),
            urls.clone(),
            requests.clone(),
            next.clone(),
        );
        workers.spawn(async move {
            let mut answers = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                let Some(request) = requests.get(n) else {
                    return answers;
                };
                let response = http
                    .post(format!("{}/settle", urls[n % urls.len()]))
                    .json(request)
                    .send()
                    .await
                    .expect("an instance answers");
                let status = response.status().as_u16();
                let body: serde_json::Value = response.json().await.unwrap();
                answers.push((n, status, body));
            }
        });
    }
    let answers: Vec<_> = workers.join_all().await.into_iter().flatten().collect();
    assert_eq!(answers.len(), PAYMENTS);
    let refused: Vec<_> = answers
        .iter()
        .filter(|(_, status, body)| *status != 200 || body["success"] != true)
        .collect();
    assert!(
        refused.is_empty(),
        "every payment settles at its first call; {} did not, e.g. {:?}",
        refused.len(),
        refused.first()
    );

    // On chain: the signer sent exactly 300 transactions, one per payment, with its next 300
    // nonces, and the payee got every payment.
    stack
        .assert_since(before, PAYMENTS as u64, expected_total)
        .await;
    let provider = stack.chain.devnet.provider();
    let mut chain_nonces = Vec::new();
    for (_, _, body) in &answers {
        let hash: B256 = body["transaction"].as_str().unwrap().parse().unwrap();
        let tx = provider
            .get_transaction_by_hash(hash)
            .await
            .unwrap()
            .expect("the answered transaction is on chain");
        chain_nonces.push(alloy::consensus::Transaction::nonce(&tx));
    }
    chain_nonces.sort_unstable();
    let range: Vec<u64> = (before.sent..before.sent + PAYMENTS as u64).collect();
    assert_eq!(chain_nonces, range, "one nonce each, consecutive");

    // In the log: 300 confirmed settlements totalling what the chain moved, and no signed
    // transaction beyond them (no nonce signed twice, no send refused).
    let (client, connection) = tokio_postgres::connect(&database.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT COUNT(*), SUM(amount)::TEXT FROM settlements WHERE state = 'confirmed'",
            &[],
        )
        .await
        .unwrap();
    let (confirmed, total): (i64, String) = (row.get(0), row.get(1));
    assert_eq!(confirmed, PAYMENTS as i64);
    assert_eq!(total.parse::<U256>().unwrap(), U256::from(expected_total));
    let logged: Vec<i64> = client
        .query(
            "SELECT signer_nonce FROM settlement_txs ORDER BY signer_nonce",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let logged: Vec<u64> = logged.into_iter().map(|n| n as u64).collect();
    assert_eq!(logged, range, "the log signed each nonce once");
    for other in others {
        other.shutdown().await;
    }
}
