//! The seam through which several facilitator instances sharing one signer key take its
//! nonces in turn.
//!
//! In one process the send queue's lock hands out nonces one at a time. Instances sharing a
//! key cannot see each other's lock, so with [`NonceLeases`] set
//! ([`ExactEvmScheme::with_nonce_leases`](crate::ExactEvmScheme::with_nonce_leases)) every
//! send slot also holds a lease on the signer's nonce in a shared record (a database row, held
//! locked from before signing to after the broadcast):
//!
//! - the nonce signed with is the larger of the record's next nonce and the node's pending
//!   transaction count, read while the lease is held, so a transaction another instance just
//!   sent is never signed over;
//! - the record moves past the nonce ([`NonceLease::consume`]) only once the node accepted
//!   the transaction (or may have: the transaction is recorded and tracking rebroadcasts it);
//! - a lease let go of any other way (a refused broadcast, a failed record, a dropped or
//!   crashed holder) leaves the record where it was, so the next holder signs the same nonce
//!   again instead of leaving a gap that would stall every later transaction of the signer.

use alloy::primitives::Address;
use x402_proto::BoxFuture;

/// Where the nonces of signers shared by several instances are leased.
pub trait NonceLeases: Send + Sync + std::fmt::Debug {
    /// Waits until no one else holds `signer`'s nonce on chain `chain_id`, then holds it.
    /// `Err` says why the record could not be reached.
    fn lease(
        &self,
        chain_id: u64,
        signer: Address,
    ) -> BoxFuture<'_, Result<Box<dyn NonceLease>, String>>;
}

/// The exclusive right to send a signer's next transaction, across instances. Dropping it
/// without [`consume`](Self::consume) lets it go and leaves the next nonce as it was.
pub trait NonceLease: Send + Sync + std::fmt::Debug {
    /// The next nonce as the shared record has it (0 when it has none yet).
    fn recorded_next(&self) -> u64;

    /// Records that `nonce` was used (the next holder starts after it) and lets go.
    fn consume(self: Box<Self>, nonce: u64) -> BoxFuture<'static, Result<(), String>>;
}
