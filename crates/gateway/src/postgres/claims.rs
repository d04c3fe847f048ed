//! One claim run at a time across replicas: every replica runs a `BatchClaimer` over the same
//! channels, and each run holds a session-level advisory lock of its network
//! ([`PostgresClaimLock`]) from before it reads the channels until after its settles. A run
//! that waited reads what the other run claimed and claims nothing twice.
//!
//! The lock is held on one pooled connection for the run. Released, it goes back to the pool
//! unlocked; dropped unreleased (a run cut off), or held by a replica that died, its connection
//! is closed, and Postgres lets go of a closed session's locks.

use std::time::Duration;

use x402_evm::batch::{ChannelStoreError, ClaimLock, HeldClaimLock};
use x402_proto::{BoxFuture, Network};

use super::{CLAIM_LOCK_CLASS, Database};

/// How often a run waiting for another replica's asks again.
const POLL: Duration = Duration::from_millis(100);

fn lock_error(error: impl std::fmt::Display) -> ChannelStoreError {
    ChannelStoreError(format!("database: the claim lock: {error}"))
}

/// The claim runs of every replica on the database, one at a time per network.
#[derive(Clone, Debug)]
pub struct PostgresClaimLock {
    database: Database,
}

impl PostgresClaimLock {
    /// The claim lock of `database`.
    pub fn new(database: Database) -> Self {
        Self { database }
    }
}

/// The lock's second key: a digest of the network.
fn key(network: &Network) -> i32 {
    let digest = alloy_primitives::keccak256(network.as_str().as_bytes());
    i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

impl ClaimLock for PostgresClaimLock {
    fn acquire<'a>(
        &'a self,
        network: &'a Network,
    ) -> BoxFuture<'a, Result<Box<dyn HeldClaimLock>, ChannelStoreError>> {
        Box::pin(async move {
            let key = key(network);
            let client = self.database.client().await.map_err(lock_error)?;
            // Polled rather than waited for in one statement: a run on a slow chain may
            // outlast the statement timeout.
            loop {
                let taken: bool = client
                    .query_one(
                        "SELECT pg_try_advisory_lock($1, $2)",
                        &[&CLAIM_LOCK_CLASS, &key],
                    )
                    .await
                    .map_err(lock_error)?
                    .get(0);
                if taken {
                    let held: Box<dyn HeldClaimLock> = Box::new(Held {
                        client: Some(client),
                        key,
                    });
                    return Ok(held);
                }
                tokio::time::sleep(POLL).await;
            }
        })
    }
}

/// The lock held on `client`'s session.
struct Held {
    client: Option<deadpool_postgres::Object>,
    key: i32,
}

impl HeldClaimLock for Held {
    fn release(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let Some(client) = self.client.take() else {
                return;
            };
            let unlocked = client
                .query_one(
                    "SELECT pg_advisory_unlock($1, $2)",
                    &[&CLAIM_LOCK_CLASS, &self.key],
                )
                .await
                .map(|row| row.get::<_, bool>(0));
            if !matches!(unlocked, Ok(true)) {
                tracing::warn!(
                    ?unlocked,
                    "the claim lock could not be let go of; closing its connection"
                );
                drop(deadpool_postgres::Object::take(client));
            }
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Cut off before it was released: closing the session lets go of the lock (the
        // connection must not go back to the pool holding it).
        if let Some(client) = self.client.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}
