//! What a server keeps of each payment channel paid to it ([`ChannelRecord`]), and the seam it
//! is kept through ([`ChannelStore`]): one atomic read-modify-write per channel, so that two
//! requests on one channel (in one process or in several sharing a database) never both
//! charge against the same voucher ceiling. [`MemoryChannelStore`] keeps them in this process;
//! a server that must survive restarts uses a durable store (the gateway's SQLite one).

use std::collections::HashMap;
use std::sync::Mutex;

use alloy::primitives::{Bytes, U256};
use x402_proto::{BoxFuture, Network};

use super::encoding::ChannelId;
use super::wire::{ChannelConfig, ChannelStateExtra};

/// The server's record of one channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelRecord {
    /// The channel's id (the EIP-712 hash of `config` on `network`).
    pub id: ChannelId,
    /// The chain it lives on (as offered, `eip155:<id>`).
    pub network: Network,
    /// Its terms: who pays whom, in which token, with which keys.
    pub config: ChannelConfig,
    /// What this server has charged on it in all, in atomic units (`chargedCumulativeAmount`).
    pub charged: u128,
    /// The highest voucher the payer signed that the server holds: what it can claim up to.
    /// `None` until a voucher has been charged against.
    pub voucher: Option<HeldVoucher>,
    /// The channel as last read on chain (through a facilitator's verify or settle answer).
    pub onchain: OnchainMirror,
    /// A request in flight on the channel, holding a voucher until it is charged or released.
    pub pending: Option<Reservation>,
    /// When a request last charged against it (Unix seconds): idle channels are refunded.
    pub last_charged_at: u64,
}

/// A voucher the server holds, to claim with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldVoucher {
    /// Its cumulative ceiling (`maxClaimableAmount`).
    pub max_claimable: u128,
    /// The payer authorizer's signature over it.
    pub signature: Bytes,
}

/// The channel's on-chain state as the server last saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OnchainMirror {
    /// Escrowed atomic units.
    pub balance: u128,
    /// Claimed by this receiver so far.
    pub total_claimed: u128,
    /// When the payer asked to withdraw (Unix seconds); 0 when they have not. A server claims
    /// promptly once this is set.
    pub withdraw_requested_at: u64,
    /// The channel's refund nonce.
    pub refund_nonce: U256,
    /// When it was read (Unix seconds): a voucher is verified locally against a mirror no
    /// older than a third of the withdraw delay, otherwise by the facilitator.
    pub read_at: u64,
}

/// A request in flight on a channel (`pendingRequest`): while it lives, another request on
/// the channel is refused as busy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// Identifies the request that holds it; only that request may charge or release it.
    pub id: u64,
    /// The ceiling of the voucher it was admitted with.
    pub max_claimable: u128,
    /// When it lapses (Unix seconds) if the request never finishes.
    pub expires_at: u64,
}

impl OnchainMirror {
    /// The mirror of a facilitator's `channelState`, read at `now`.
    pub fn from_state(state: &ChannelStateExtra, now: u64) -> Self {
        Self {
            balance: state.balance,
            total_claimed: state.total_claimed,
            withdraw_requested_at: state.withdraw_requested_at,
            refund_nonce: state.refund_nonce,
            read_at: now,
        }
    }
}

impl ChannelRecord {
    /// A new record of a channel nothing has been charged on.
    pub fn new(id: ChannelId, network: Network, config: ChannelConfig) -> Self {
        Self {
            id,
            network,
            config,
            charged: 0,
            voucher: None,
            onchain: OnchainMirror::default(),
            pending: None,
            last_charged_at: 0,
        }
    }

    /// Charged but not yet claimed on chain: what the server loses if the payer withdraws
    /// before it claims.
    pub fn unclaimed(&self) -> u128 {
        self.charged.saturating_sub(self.onchain.total_claimed)
    }

    /// The reservation in flight at `now`, if one is live (a lapsed one counts as none).
    pub fn live_reservation(&self, now: u64) -> Option<&Reservation> {
        self.pending.as_ref().filter(|r| r.expires_at > now)
    }

    /// The channel's state as a corrective 402 or a payment response reports it.
    pub fn state(&self) -> ChannelStateExtra {
        ChannelStateExtra {
            channel_id: self.id,
            balance: self.onchain.balance,
            total_claimed: self.onchain.total_claimed,
            withdraw_requested_at: self.onchain.withdraw_requested_at,
            refund_nonce: self.onchain.refund_nonce,
            charged_cumulative_amount: Some(self.charged),
        }
    }
}

/// What an update does with the record it was shown.
// Answered once per update and consumed at once: boxing the record would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelWrite {
    /// Leaves it as it was (the update refused, or had nothing to change).
    Keep,
    /// Stores this record.
    Put(ChannelRecord),
    /// Forgets the channel (fully refunded).
    Delete,
}

/// A store that failed (a database error): the request is answered as unavailable, never as
/// paid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the channel store failed: {0}")]
pub struct ChannelStoreError(pub String);

/// The closure of [`ChannelStore::update_noted`]: shown the current record, it answers the
/// write and the note to commit with it.
pub type NotedUpdate<'a> =
    dyn FnMut(Option<&ChannelRecord>) -> (ChannelWrite, Option<Vec<u8>>) + Send + 'a;

/// Where a server keeps its channels.
///
/// `update` is the only way to change a record: it shows the closure the current record
/// (`None` when there is none) and writes what the closure answers, atomically with respect
/// to every other update of the same channel, in this process and in any other sharing the
/// store. A store may call the closure more than once (retrying a conflict); the closure
/// keeps its verdict in what it captures, and the last call's stands.
pub trait ChannelStore: Send + Sync + std::fmt::Debug {
    /// The record of `id`, if any.
    fn get<'a>(
        &'a self,
        id: &'a ChannelId,
    ) -> BoxFuture<'a, Result<Option<ChannelRecord>, ChannelStoreError>>;

    /// Reads, changes and writes the record of `id` as one atomic step.
    fn update<'a>(
        &'a self,
        id: &'a ChannelId,
        update: &'a mut (dyn FnMut(Option<&ChannelRecord>) -> ChannelWrite + Send),
    ) -> BoxFuture<'a, Result<(), ChannelStoreError>>;

    /// Every record (for the claiming task, metrics and operators).
    fn all(&self) -> BoxFuture<'_, Result<Vec<ChannelRecord>, ChannelStoreError>>;

    /// [`Self::update`], with a note: the closure answers its write and, with a
    /// [`ChannelWrite::Put`], an opaque record of the change (the server's journal entry of a
    /// charge) that the store commits in the same transaction as the write, then hands to
    /// whoever it keeps notes for. Answers whether the note was kept. A store with no place
    /// for notes keeps none (this default): the caller records the change its own way.
    fn update_noted<'a>(
        &'a self,
        id: &'a ChannelId,
        update: &'a mut NotedUpdate<'a>,
    ) -> BoxFuture<'a, Result<bool, ChannelStoreError>> {
        Box::pin(async move {
            let mut without_note = |current: Option<&ChannelRecord>| update(current).0;
            self.update(id, &mut without_note).await.map(|()| false)
        })
    }
}

/// Channels kept in this process's memory (lost at restart: with them, the vouchers not yet
/// claimed).
#[derive(Debug, Default)]
pub struct MemoryChannelStore {
    records: Mutex<HashMap<ChannelId, ChannelRecord>>,
}

impl MemoryChannelStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<ChannelId, ChannelRecord>> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ChannelStore for MemoryChannelStore {
    fn get<'a>(
        &'a self,
        id: &'a ChannelId,
    ) -> BoxFuture<'a, Result<Option<ChannelRecord>, ChannelStoreError>> {
        let record = self.records().get(id).cloned();
        Box::pin(async move { Ok(record) })
    }

    fn update<'a>(
        &'a self,
        id: &'a ChannelId,
        update: &'a mut (dyn FnMut(Option<&ChannelRecord>) -> ChannelWrite + Send),
    ) -> BoxFuture<'a, Result<(), ChannelStoreError>> {
        let mut records = self.records();
        match update(records.get(id)) {
            ChannelWrite::Keep => {}
            ChannelWrite::Put(record) => {
                records.insert(*id, record);
            }
            ChannelWrite::Delete => {
                records.remove(id);
            }
        }
        drop(records);
        Box::pin(async { Ok(()) })
    }

    fn all(&self) -> BoxFuture<'_, Result<Vec<ChannelRecord>, ChannelStoreError>> {
        let all = self.records().values().cloned().collect();
        Box::pin(async move { Ok(all) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{Address, B256};

    fn record(charged: u128) -> ChannelRecord {
        let config = ChannelConfig {
            payer: Address::repeat_byte(1),
            payer_authorizer: Address::repeat_byte(1),
            receiver: Address::repeat_byte(2),
            receiver_authorizer: Address::repeat_byte(3),
            token: Address::repeat_byte(4),
            withdraw_delay: 900,
            salt: B256::ZERO,
        };
        let id = ChannelId::new(B256::repeat_byte(9));
        ChannelRecord {
            charged,
            ..ChannelRecord::new(id, Network::new("eip155:31337"), config)
        }
    }

    #[tokio::test]
    async fn an_update_sees_the_last_write_and_can_refuse_or_delete() {
        let store = MemoryChannelStore::new();
        let id = record(0).id;
        let mut seen = Vec::new();
        for charged in [5, 9] {
            store
                .update(&id, &mut |current| {
                    seen.push(current.map(|r| r.charged));
                    ChannelWrite::Put(record(charged))
                })
                .await
                .unwrap();
        }
        assert_eq!(seen, [None, Some(5)]);
        store
            .update(&id, &mut |_| ChannelWrite::Keep)
            .await
            .unwrap();
        assert_eq!(store.get(&id).await.unwrap().unwrap().charged, 9);
        assert_eq!(store.all().await.unwrap().len(), 1);
        store
            .update(&id, &mut |_| ChannelWrite::Delete)
            .await
            .unwrap();
        assert_eq!(store.get(&id).await.unwrap(), None);
    }

    #[test]
    fn unclaimed_is_what_was_charged_beyond_the_claims_and_lapsed_reservations_do_not_count() {
        let mut channel = record(70);
        channel.onchain.total_claimed = 50;
        assert_eq!(channel.unclaimed(), 20);
        channel.pending = Some(Reservation {
            id: 1,
            max_claimable: 80,
            expires_at: 100,
        });
        assert!(channel.live_reservation(99).is_some());
        assert!(channel.live_reservation(100).is_none());
        assert_eq!(channel.state().charged_cumulative_amount, Some(70));
    }
}
