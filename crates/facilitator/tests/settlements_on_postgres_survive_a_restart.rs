//! A facilitator whose `database` is a Postgres URL keeps its settlement log there: settled
//! payments, a keyed answer and a settlement left pending are all answered after a restart on
//! the same database from the log, without a second transaction, and the pending one is
//! tracked from the log to its end.

use alloy::primitives::{B256, U256};
use x402_facilitator::{
    Database, PostgresOptions, PostgresStore, SettlementKey, SettlementState, SettlementStore,
};
use x402_testkit::{Chain, Stack, TempDatabase, config_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlements_on_postgres_are_answered_from_the_log_after_a_restart() {
    let database = TempDatabase::create().await;
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(
        chain.devnet.rpc_url().as_ref(),
        dir.path(),
        "[limits]\nsettle_wait_ms = 500\nshutdown_grace_ms = 200",
    );
    config.database = Database::parse(&database.url).unwrap();
    let mut stack = Stack::serve(chain, dir, config).await;
    let before = stack.before().await;

    let (status, health) = stack.get("/health").await;
    assert_eq!(status, 200, "{health}");
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["database"]["backend"], "postgres", "{health}");
    assert_eq!(health["database"]["reachable"], true, "{health}");

    // Two payments settled, one of them with a key; a third left pending (no block comes).
    let keyed = stack.payment(0, 1_000);
    let (_, first) = stack.settle_with_key(&keyed, "order-1").await;
    assert_eq!(first["success"], true, "{first}");
    let anonymous = stack.payment(1, 2_000);
    let (_, second) = stack.settle(&anonymous).await;
    assert_eq!(second["success"], true, "{second}");
    stack.stop_automine().await;
    let pending = stack.payment(2, 4_000);
    let (_, waiting) = stack.settle_with_key(&pending, "order-3").await;
    assert_eq!(waiting["errorReason"], "settlement_pending", "{waiting}");
    let sent = waiting["transaction"].as_str().unwrap().to_owned();

    // A new process on the same database, with no file of its own: it finds the pending
    // settlement in Postgres and tracks it.
    stack.restart().await;
    assert!(
        !stack.dir.path().join("facilitator.db").exists(),
        "the log is in Postgres, not in a file"
    );
    let reconciled = stack.facilitator.as_ref().unwrap().reconciled();
    assert_eq!(reconciled.tracking, 1, "{reconciled:?}");
    stack.mine().await;

    // Every repeat is answered from the log: the keyed ones with their first answers, the
    // anonymous one refused (its success was handed out before the restart).
    let (status, again) = stack.settle_with_key(&keyed, "order-1").await;
    assert_eq!((status, &again), (200, &first));
    let (_, refused) = stack.settle(&anonymous).await;
    assert_eq!(refused["errorReason"], "duplicate_settlement", "{refused}");
    let mut settled = stack.settle_with_key(&pending, "order-3").await.1;
    for _ in 0..20 {
        if settled["errorReason"] != "settlement_pending" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        settled = stack.settle_with_key(&pending, "order-3").await.1;
    }
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(
        settled["transaction"],
        sent.as_str(),
        "the transaction sent before"
    );

    // Three transactions in all, each payment moved once.
    stack.assert_since(before, 3, 7_000).await;

    // The log rows, read straight from Postgres.
    let log = PostgresStore::connect(&database.url, &PostgresOptions::default())
        .await
        .unwrap();
    let authorization = &pending.payload()["authorization"];
    let key = SettlementKey {
        chain_id: stack.chain.devnet.chain_id(),
        asset: stack.chain.devnet.token().address,
        payer: authorization["from"].as_str().unwrap().parse().unwrap(),
        nonce: authorization["nonce"]
            .as_str()
            .unwrap()
            .parse::<B256>()
            .unwrap(),
    };
    let record = log.get(&key).await.unwrap().unwrap();
    assert_eq!(record.state, SettlementState::Confirmed);
    assert_eq!(record.settlement.amount, U256::from(4_000));
    assert_eq!(record.txs.len(), 1);
    assert_eq!(record.answered_to.as_deref(), Some("key:order-3"));
    assert!(log.unfinished().await.unwrap().is_empty());
}
