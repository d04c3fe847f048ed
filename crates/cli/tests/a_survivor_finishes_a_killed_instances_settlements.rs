//! Three facilitator processes share one Postgres log and one signer key. One is SIGKILLed
//! with the settlements it accepted broadcast and not mined (the node losing half of them as
//! well); once its heartbeat is stale a survivor takes them over, rebroadcasts what was lost
//! and confirms every one, none twice, while the survivors go on settling new payments with
//! the signer's next nonces.

use std::time::{Duration, Instant};

use alloy::primitives::{B256, U256};
use alloy::providers::Provider;
use x402_testkit::{Chain, KillOnDrop, TempDatabase};

mod common;

/// Payments accepted by the instance that is killed, and then by the survivors.
const EACH: usize = 24;

struct Instance {
    /// Killed when the test ends, whatever happens.
    child: KillOnDrop,
    url: String,
}

fn spawn(dir: &std::path::Path, database: &str, rpc: &str, key: &str, name: &str) -> Instance {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndatabase = \"{database}\"\n\
             [postgres]\ninstance_id = \"{name}\"\nheartbeat_ms = 200\ntakeover_after_ms = 1500\n\
             [limits]\nsettle_wait_ms = 500\n\
             [[networks]]\nchain_id = 8453\nrpc_url = \"{rpc}\"\n"
        ),
    )
    .unwrap();
    let (child, url) = common::spawn_listening(
        "facilitator",
        &config,
        &[("X402_FACILITATOR_PRIVATE_KEY", key)],
    );
    Instance {
        child: KillOnDrop(child),
        url,
    }
}

async fn settle_all(http: &reqwest::Client, urls: &[&str], bodies: &[serde_json::Value]) {
    let calls = bodies.iter().enumerate().map(|(n, body)| {
        http.post(format!("{}/settle", urls[n % urls.len()]))
            .json(body)
            .send()
    });
    for answer in futures_util::future::join_all(calls).await {
        let status = answer.expect("the instance answers").status().as_u16();
        assert!(matches!(status, 200 | 202), "settle answered {status}");
    }
}

/// `(state, owner, tx hash answered)` of every settlement in the log, oldest first.
async fn log_rows(log: &tokio_postgres::Client) -> Vec<(String, String, Option<String>)> {
    log.query(
        "SELECT state, owner, response::json->>'transaction' FROM settlements ORDER BY seq",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| (row.get(0), row.get(1), row.get(2)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_instances_settlements_are_confirmed_by_a_survivor_once() {
    let database = TempDatabase::create().await;
    let chain = Chain::start().await;
    let provider = chain.devnet.provider().clone();
    let rpc = chain.devnet.rpc_url().to_string();
    let key = chain.devnet.facilitator().signer.to_bytes().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (log, connection) = tokio_postgres::connect(&database.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let http = reqwest::Client::new();
    let pay_to = chain.devnet.pay_to().address;
    let paid_before = chain.balance(pay_to).await;
    let sent_before = chain.facilitator_tx_count().await;
    let payers = chain.devnet.payers();
    let payment = |n: usize| {
        let requirements = chain.requirements(1_000 + n as u128);
        let request = x402_testkit::v2_request(
            &x402_testkit::honest_payment(&payers[n % payers.len()].signer, &requirements),
            &requirements,
        );
        serde_json::to_value(request).unwrap()
    };
    let bodies: Vec<serde_json::Value> = (0..2 * EACH).map(payment).collect();
    let total: u64 = (0..2 * EACH as u64).map(|n| 1_000 + n).sum();

    let mut victim = spawn(dir.path(), &database.url, &rpc, &key, "victim");
    let mut survivors = [
        spawn(dir.path(), &database.url, &rpc, &key, "survivor-1"),
        spawn(dir.path(), &database.url, &rpc, &key, "survivor-2"),
    ];

    // Nothing is mined: the victim accepts its payments, records and broadcasts them, and
    // answers "pending". Then it is killed, and the node loses every other transaction.
    provider
        .raw_request::<_, ()>("evm_setAutomine".into(), (false,))
        .await
        .unwrap();
    settle_all(&http, &[&victim.url], &bodies[..EACH]).await;
    let accepted = log_rows(&log).await;
    assert_eq!(accepted.len(), EACH);
    assert!(
        accepted
            .iter()
            .all(|(state, owner, _)| state == "submitted" && owner == "victim"),
        "{accepted:?}"
    );
    victim.child.0.kill().unwrap(); // SIGKILL
    victim.child.0.wait().unwrap();
    let pool: Vec<String> = log
        .query(
            "SELECT tx_hash FROM settlement_txs ORDER BY signer_nonce",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    // Dropping one transaction drops those after it (on the signer's nonces) too.
    let middle: B256 = pool[EACH / 2].parse().unwrap();
    let dropped: Option<B256> = provider
        .raw_request("anvil_dropTransaction".into(), (middle,))
        .await
        .unwrap();
    assert_eq!(dropped, Some(middle));
    let mut lost = 0;
    for hash in &pool {
        let hash: B256 = hash.parse().unwrap();
        lost += usize::from(
            provider
                .get_transaction_by_hash(hash)
                .await
                .unwrap()
                .is_none(),
        );
    }
    assert!(
        lost >= EACH / 2,
        "the node lost {lost} of the victim's transactions"
    );

    // Blocks again; the survivors settle new payments meanwhile.
    provider
        .raw_request::<_, ()>("evm_setIntervalMining".into(), (1,))
        .await
        .unwrap();
    let urls = [survivors[0].url.as_str(), survivors[1].url.as_str()];
    settle_all(&http, &urls, &bodies[EACH..]).await;

    // Every settlement in the log ends confirmed, the victim's by a survivor.
    let deadline = Instant::now() + Duration::from_secs(60);
    let rows = loop {
        let rows = log_rows(&log).await;
        if rows.iter().all(|(state, _, _)| state == "confirmed") || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(rows.len(), 2 * EACH);
    for (state, owner, _) in &rows {
        assert_eq!(state, "confirmed", "{rows:?}");
        assert!(owner.starts_with("survivor-"), "{rows:?}");
    }

    // Settling every payment again answers the logged transaction; each moved once.
    let mut answered = Vec::new();
    for (n, body) in bodies.iter().enumerate() {
        let answer =
            x402_testkit::fetch_json(http.post(format!("{}/settle", urls[n % 2])).json(body)).await;
        assert_eq!(answer["success"], true, "{answer}");
        answered.push(answer["transaction"].as_str().map(str::to_owned));
    }
    let mut logged: Vec<_> = rows.into_iter().map(|(_, _, hash)| hash).collect();
    logged.sort();
    answered.sort();
    assert_eq!(answered, logged, "the answers are the log's");
    logged.dedup();
    assert_eq!(logged.len(), 2 * EACH, "one transaction each");
    assert_eq!(
        chain.facilitator_tx_count().await,
        sent_before + 2 * EACH as u64,
        "the signer sent one transaction per payment: no nonce reused or skipped"
    );
    assert_eq!(
        chain.balance(pay_to).await,
        paid_before + U256::from(total),
        "the chain moved what the log settled"
    );
    for survivor in &mut survivors {
        common::stop_cleanly(&mut survivor.child.0);
    }
}
