//! Signer nonces leased from the shared log: instances sharing one signer key take its next
//! nonce in turn (see [`x402_evm::NonceLeases`]).
//!
//! A lease is a transaction on a connection of its own holding the signer's `signer_nonces`
//! row locked (`INSERT … ON CONFLICT DO UPDATE … RETURNING`: created on first use, locked
//! either way, in one statement). Consuming a nonce moves the row past it and commits; a lease
//! let go of any other way closes its connection, so the server rolls back and unlocks: the row
//! is left as it was and the next holder signs the same nonce again. A holder that dies (its
//! process killed, its connection cut) unlocks the same way.

use alloy::primitives::Address;
use deadpool_postgres::Object;
use x402_evm::{NonceLease, NonceLeases};
use x402_proto::BoxFuture;

use super::{PostgresStore, hex};

/// Takes (creating it on first use) and locks the signer's row; its next nonce.
const LEASE: &str = "
    INSERT INTO signer_nonces (chain_id, signer) VALUES ($1, $2)
    ON CONFLICT (chain_id, signer) DO UPDATE SET leased_at = now()
    RETURNING next_nonce";

/// Moves the signer's row past a nonce used.
const CONSUME: &str = "
    UPDATE signer_nonces SET next_nonce = GREATEST(next_nonce, $3), leased_at = now()
    WHERE chain_id = $1 AND signer = $2";

/// A signer's nonce held locked in the shared log.
#[derive(Debug)]
struct PostgresLease {
    /// The connection whose open transaction holds the row; `None` once committed.
    client: Option<Object>,
    chain_id: i64,
    signer: String,
    next: u64,
}

impl Drop for PostgresLease {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Not consumed (or dropped half-way through taking it): the connection leaves the
            // pool and closes, and the server rolls its transaction back, unlocking the row.
            drop(Object::take(client));
        }
    }
}

impl NonceLease for PostgresLease {
    fn recorded_next(&self) -> u64 {
        self.next
    }

    fn consume(mut self: Box<Self>, nonce: u64) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async move {
            let next = i64::try_from(nonce.saturating_add(1)).unwrap_or(i64::MAX);
            let client = self.client.as_ref().ok_or("lease already let go of")?;
            client
                .execute(CONSUME, &[&self.chain_id, &self.signer, &next])
                .await
                .map_err(|e| e.to_string())?;
            client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| e.to_string())?;
            // Committed: the connection goes back to the pool clean.
            drop(self.client.take());
            Ok(())
        })
    }
}

impl NonceLeases for PostgresStore {
    fn lease(
        &self,
        chain_id: u64,
        signer: Address,
    ) -> BoxFuture<'_, Result<Box<dyn NonceLease>, String>> {
        Box::pin(async move {
            let client = self.client().await.map_err(|e| e.0)?;
            // Held from here: whatever stops the taking half-way closes the connection.
            let mut lease = PostgresLease {
                client: Some(client),
                chain_id: i64::try_from(chain_id).map_err(|e| e.to_string())?,
                signer: hex(signer),
                next: 0,
            };
            let client = lease.client.as_ref().ok_or("no connection")?;
            let error = |e: tokio_postgres::Error| self.error(e).0;
            client.batch_execute("BEGIN").await.map_err(error)?;
            let statement = client.prepare_cached(LEASE).await.map_err(error)?;
            let row = client
                .query_one(&statement, &[&lease.chain_id, &lease.signer])
                .await
                .map_err(error)?;
            let next: i64 = row.try_get(0).map_err(error)?;
            lease.next = u64::try_from(next).unwrap_or_default();
            Ok(Box::new(lease) as Box<dyn NonceLease>)
        })
    }
}
