//! The ledger's side of payment channels (`batch-settlement`): each channel's record, kept
//! for the client plug-in through [`ClientChannelStore`] so channels survive a restart, and
//! the funds that moved through it: deposits (locked in escrow, not spent), claims the server
//! made (seen in its answers) and refunds. Charges paid on a channel are ordinary payment rows
//! marked with the channel's id.
//!
//! What is locked is what was deposited, less what was charged and what came back; it counts
//! against the budget's `deposit_cap`, never against the spending limits.

use std::sync::Arc;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use x402_evm::batch::{ChannelId, ClientChannel, ClientChannelStore, ClientStoreError};

use crate::ledger::{Ledger, LedgerError, MicroUsd, now};

/// A deposit about to be sent, as the ledger reserves it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DepositIntent {
    /// The channel (`0x` + 64 hex, lower case).
    pub channel_id: String,
    /// The resource whose payment opened or topped up the channel (its server refunds it).
    pub url: String,
    /// Atomic units of the asset.
    pub amount: String,
    /// The same in micro-USD, rounded up.
    pub micro_usd: MicroUsd,
}

/// One movement of a channel's funds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FundsRecord {
    /// Row id.
    pub id: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// The channel.
    pub channel_id: String,
    /// `deposit`, `claim` (seen in a server's answer) or `refund`.
    pub kind: String,
    /// Atomic units.
    pub amount: String,
    /// The same in micro-USD (0 for claims, which the charges already count).
    pub micro_usd: MicroUsd,
    /// `pending` (sent, no answer yet), `done` or `failed`.
    pub status: String,
    /// The transaction, when known.
    pub transaction: Option<String>,
    /// The resource URL a deposit was paid for.
    pub url: Option<String>,
}

/// A channel as the ledger lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChannelRow {
    /// The channel id.
    pub id: String,
    /// Its network.
    pub network: String,
    /// Its token.
    pub asset: String,
    /// Who it pays.
    pub receiver: String,
    /// The resource URL it was opened through (where a cooperative refund is asked).
    pub url: Option<String>,
    /// Whether it was fully refunded (kept for the record).
    pub closed: bool,
    /// Its state as the client plug-in keeps it (balance, charged, claimed, latest voucher).
    pub record: ClientChannel,
}

fn record_error(error: impl std::fmt::Display) -> LedgerError {
    LedgerError::Record(error.to_string())
}

impl Ledger {
    /// Micro-USD locked in channels' escrow: deposited (pending or landed), less what was
    /// charged on the channels and what was refunded.
    pub fn locked(&self) -> Result<MicroUsd, LedgerError> {
        let db = self.lock();
        let sum = |sql: &str| -> Result<i64, LedgerError> {
            Ok(db.query_row(sql, [], |r| r.get::<_, i64>(0))?)
        };
        let deposited = sum("SELECT COALESCE(SUM(micro_usd), 0) FROM channel_funds
             WHERE kind = 'deposit' AND status IN ('pending', 'done')")?;
        let refunded = sum("SELECT COALESCE(SUM(micro_usd), 0) FROM channel_funds
             WHERE kind = 'refund' AND status = 'done'")?;
        let charged = sum("SELECT COALESCE(SUM(micro_usd), 0) FROM payments
             WHERE channel_id IS NOT NULL AND status IN ('reserved', 'unknown', 'paid')")?;
        Ok((deposited - refunded - charged).max(0) as MicroUsd)
    }

    /// Micro-USD a new deposit may still lock under the deposit cap (`None`: no cap).
    pub fn deposit_room(&self) -> Result<Option<MicroUsd>, LedgerError> {
        let Some(cap) = self.budget()?.deposit_cap else {
            return Ok(None);
        };
        Ok(Some(cap.saturating_sub(self.locked()?)))
    }

    /// Records a deposit about to be sent (`pending`), or refuses it when it would lock more
    /// than the deposit cap allows. The row id, to finish it with [`Ledger::finish_funds`].
    pub fn reserve_deposit(&self, deposit: &DepositIntent) -> Result<i64, LedgerError> {
        let cap = self.budget()?.deposit_cap;
        let locked = self.locked()?;
        if let Some(limit) = cap
            && locked + deposit.micro_usd > limit
        {
            return Err(LedgerError::BudgetExceeded {
                limit_name: "deposit_cap",
                limit,
                spent: locked,
                asked: deposit.micro_usd,
            });
        }
        let db = self.lock();
        db.execute(
            "INSERT INTO channel_funds (created_at, channel_id, kind, amount, micro_usd, status, url)
             VALUES (?1, ?2, 'deposit', ?3, ?4, 'pending', ?5)",
            params![
                now(),
                deposit.channel_id,
                deposit.amount,
                deposit.micro_usd as i64,
                deposit.url
            ],
        )?;
        Ok(db.last_insert_rowid())
    }

    /// Finishes funds row `id`: `done` in `transaction`, or `failed` (no longer locked).
    pub fn finish_funds(
        &self,
        id: i64,
        done: bool,
        transaction: Option<&str>,
    ) -> Result<(), LedgerError> {
        self.lock().execute(
            "UPDATE channel_funds SET status = ?2, tx = COALESCE(?3, tx) WHERE id = ?1",
            params![id, if done { "done" } else { "failed" }, transaction],
        )?;
        Ok(())
    }

    /// Records a refund of `amount` atomic units (`micro_usd`) from `channel_id`, returned in
    /// `transaction`.
    pub fn record_refund(
        &self,
        channel_id: &str,
        amount: &str,
        micro_usd: MicroUsd,
        transaction: &str,
    ) -> Result<(), LedgerError> {
        self.lock().execute(
            "INSERT INTO channel_funds (created_at, channel_id, kind, amount, micro_usd, status, tx)
             VALUES (?1, ?2, 'refund', ?3, ?4, 'done', ?5)",
            params![now(), channel_id, amount, micro_usd as i64, transaction],
        )?;
        Ok(())
    }

    /// The funds that moved through `channel_id` (every channel when `None`), oldest first.
    pub fn channel_funds(&self, channel_id: Option<&str>) -> Result<Vec<FundsRecord>, LedgerError> {
        let db = self.lock();
        let mut statement = db.prepare(
            "SELECT id, created_at, channel_id, kind, amount, micro_usd, status, tx, url
             FROM channel_funds WHERE ?1 IS NULL OR channel_id = ?1 ORDER BY id",
        )?;
        let rows = statement.query_map(params![channel_id], |r| {
            Ok(FundsRecord {
                id: r.get(0)?,
                created_at: r.get(1)?,
                channel_id: r.get(2)?,
                kind: r.get(3)?,
                amount: r.get(4)?,
                micro_usd: r.get::<_, i64>(5)? as MicroUsd,
                status: r.get(6)?,
                transaction: r.get(7)?,
                url: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The channels this ledger keeps, open ones first.
    pub fn channels(&self) -> Result<Vec<ChannelRow>, LedgerError> {
        let db = self.lock();
        let mut statement = db.prepare(
            "SELECT id, network, asset, receiver,
                    (SELECT url FROM channel_funds f WHERE f.channel_id = c.id AND f.url IS NOT NULL
                     ORDER BY f.id DESC LIMIT 1),
                    closed, record
             FROM channels c ORDER BY closed, updated_at DESC",
        )?;
        let rows = statement.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, String>(6)?,
            ))
        })?;
        let mut channels = Vec::new();
        for row in rows {
            let (id, network, asset, receiver, url, closed, record) = row?;
            channels.push(ChannelRow {
                id,
                network,
                asset,
                receiver,
                url,
                closed: closed != 0,
                record: serde_json::from_str(&record).map_err(record_error)?,
            });
        }
        Ok(channels)
    }

    /// This ledger as the store of a `batch-settlement` client plug-in's channels.
    pub fn channel_store(&self) -> Arc<dyn ClientChannelStore> {
        Arc::new(LedgerChannels(self.clone()))
    }

    fn channel_record(&self, id: &str) -> Result<Option<(ClientChannel, bool)>, LedgerError> {
        let row: Option<(String, i64)> = self
            .lock()
            .query_row(
                "SELECT record, closed FROM channels WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        row.map(|(record, closed)| {
            serde_json::from_str(&record)
                .map(|r| (r, closed != 0))
                .map_err(record_error)
        })
        .transpose()
    }

    fn put_channel(&self, id: &str, channel: &ClientChannel) -> Result<(), LedgerError> {
        let previous = self.channel_record(id)?;
        let record = serde_json::to_string(channel).map_err(record_error)?;
        let db = self.lock();
        db.execute(
            "INSERT INTO channels (id, network, asset, receiver, record, closed, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)
             ON CONFLICT (id) DO UPDATE SET record = ?5, closed = 0, updated_at = ?6",
            params![
                id,
                channel.network.to_string(),
                channel.config.token.to_checksum(None),
                channel.config.receiver.to_checksum(None),
                record,
                now()
            ],
        )?;
        // A claim the server made since the last answer: seen, recorded.
        let claimed_before = previous.map_or(0, |(p, _)| p.total_claimed);
        if channel.total_claimed > claimed_before {
            db.execute(
                "INSERT INTO channel_funds (created_at, channel_id, kind, amount, micro_usd, status)
                 VALUES (?1, ?2, 'claim', ?3, 0, 'done')",
                params![
                    now(),
                    id,
                    (channel.total_claimed - claimed_before).to_string()
                ],
            )?;
        }
        Ok(())
    }
}

/// A ledger as a `batch-settlement` client channel store: a fully refunded channel is kept,
/// closed, for the record.
#[derive(Debug)]
struct LedgerChannels(Ledger);

fn store_error(error: LedgerError) -> ClientStoreError {
    ClientStoreError(error.to_string())
}

fn key(id: &ChannelId) -> String {
    id.to_string().to_lowercase()
}

impl ClientChannelStore for LedgerChannels {
    fn get(&self, id: &ChannelId) -> Result<Option<ClientChannel>, ClientStoreError> {
        Ok(self
            .0
            .channel_record(&key(id))
            .map_err(store_error)?
            .filter(|(_, closed)| !closed)
            .map(|(record, _)| record))
    }

    fn put(&self, id: &ChannelId, channel: &ClientChannel) -> Result<(), ClientStoreError> {
        self.0.put_channel(&key(id), channel).map_err(store_error)
    }

    fn remove(&self, id: &ChannelId) -> Result<(), ClientStoreError> {
        self.0
            .lock()
            .execute(
                "UPDATE channels SET closed = 1, updated_at = ?2 WHERE id = ?1",
                params![key(id), now()],
            )
            .map_err(|e| store_error(e.into()))?;
        Ok(())
    }

    fn list(&self) -> Result<Vec<(ChannelId, ClientChannel)>, ClientStoreError> {
        let rows = self.0.channels().map_err(store_error)?;
        Ok(rows
            .into_iter()
            .filter(|row| !row.closed)
            .filter_map(|row| Some((row.id.parse().ok()?, row.record)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Budget, PaymentIntent};
    use alloy::primitives::{Address, B256};
    use x402_evm::batch::ChannelConfig;
    use x402_proto::Network;

    fn channel() -> (ChannelId, ClientChannel) {
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
        (
            id,
            ClientChannel::empty(config, Network::new("eip155:8453")),
        )
    }

    fn deposit(id: &ChannelId, micro_usd: MicroUsd) -> DepositIntent {
        DepositIntent {
            channel_id: key(id),
            url: "http://shop/x".into(),
            amount: micro_usd.to_string(),
            micro_usd,
        }
    }

    #[test]
    fn deposits_count_against_the_cap_until_charged_or_refunded() {
        let ledger = Ledger::in_memory().unwrap();
        ledger
            .set_budget(&Budget {
                deposit_cap: Some(1_000),
                ..Budget::default()
            })
            .unwrap();
        let (id, mut record) = channel();
        let store = ledger.channel_store();
        store.put(&id, &record).unwrap();
        let row = ledger.reserve_deposit(&deposit(&id, 800)).unwrap();
        assert_eq!(ledger.deposit_room().unwrap(), Some(200));
        match ledger.reserve_deposit(&deposit(&id, 300)) {
            Err(LedgerError::BudgetExceeded {
                limit_name: "deposit_cap",
                limit: 1_000,
                spent: 800,
                asked: 300,
            }) => {}
            other => panic!("{other:?}"),
        }
        ledger.finish_funds(row, true, Some("0xdep")).unwrap();
        // A charge of 300 on the channel is spent out of the escrow: room again.
        let charge = ledger
            .reserve(&PaymentIntent {
                micro_usd: 300,
                ..PaymentIntent::default()
            })
            .unwrap();
        charge.in_channel(&key(&id)).unwrap();
        charge.commit("").unwrap();
        assert_eq!(ledger.locked().unwrap(), 500);
        // The spend budget sees the charge, not the deposit.
        assert_eq!(ledger.spent(0).unwrap(), 300);
        ledger
            .record_refund(&key(&id), "500", 500, "0xref")
            .unwrap();
        assert_eq!(ledger.locked().unwrap(), 0);
        // A failed deposit locks nothing.
        let failed = ledger.reserve_deposit(&deposit(&id, 900)).unwrap();
        ledger.finish_funds(failed, false, None).unwrap();
        assert_eq!(ledger.locked().unwrap(), 0);
        // Claims seen are recorded once each.
        record.total_claimed = 300;
        store.put(&id, &record).unwrap();
        store.put(&id, &record).unwrap();
        let kinds: Vec<String> = ledger
            .channel_funds(Some(&key(&id)))
            .unwrap()
            .into_iter()
            .map(|f| format!("{}:{}:{}", f.kind, f.amount, f.status))
            .collect();
        assert_eq!(
            kinds,
            [
                "deposit:800:done",
                "refund:500:done",
                "deposit:900:failed",
                "claim:300:done"
            ]
        );
        let listed = ledger.channels().unwrap();
        assert_eq!(listed[0].url.as_deref(), Some("http://shop/x"));
    }

    #[test]
    fn channels_survive_reopening_and_a_refunded_one_stays_listed_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let (id, mut record) = channel();
        record.balance = 500;
        record.charged = 120;
        Ledger::open(&path)
            .unwrap()
            .channel_store()
            .put(&id, &record)
            .unwrap();
        let ledger = Ledger::open(&path).unwrap();
        let store = ledger.channel_store();
        assert_eq!(store.get(&id).unwrap(), Some(record.clone()));
        assert_eq!(store.list().unwrap().len(), 1);
        store.remove(&id).unwrap();
        assert_eq!(store.get(&id).unwrap(), None);
        assert!(store.list().unwrap().is_empty());
        assert!(ledger.channels().unwrap()[0].closed);
        let version: i64 = ledger
            .lock()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 1);
    }
}
