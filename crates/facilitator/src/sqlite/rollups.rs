//! What confirmed settlements moved, kept summed as they are confirmed: per chain, token and
//! UTC day (`settled_days`), and per payer and per payee (`settled_parties`). A settlement is
//! counted in the same transaction that confirms it, and taken back out if it ever leaves
//! `confirmed`, so the sums are always exactly those of the log's confirmed rows; the
//! dashboard reads them instead of every row. Amounts are decimal text padded to 78 digits
//! (`u256_sum`'s form), so their text orders as the numbers do.

use alloy::primitives::U256;
use rusqlite::{OptionalExtension, Transaction, params};

use super::db_error;
use super::reads::{padded, sum_of};
use crate::store::StoreError;

/// Creates the sums' tables (run with the schema, on every open).
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS settled_days (
    chain_id    INTEGER NOT NULL,
    token       TEXT    NOT NULL,
    day         INTEGER NOT NULL,
    settlements INTEGER NOT NULL,
    amount      TEXT    NOT NULL,
    PRIMARY KEY (chain_id, token, day)
);
CREATE TABLE IF NOT EXISTS settled_parties (
    side        TEXT    NOT NULL,
    address     TEXT    NOT NULL,
    chain_id    INTEGER NOT NULL,
    token       TEXT    NOT NULL,
    settlements INTEGER NOT NULL,
    amount      TEXT    NOT NULL,
    PRIMARY KEY (side, address, chain_id, token)
);
CREATE INDEX IF NOT EXISTS settled_parties_top ON settled_parties (side, amount, settlements);
";

/// Sums every confirmed settlement of the log again (the migration to schema version 4, for
/// logs written before the sums were kept).
pub(super) const REBUILD: &str = "
DELETE FROM settled_days;
DELETE FROM settled_parties;
INSERT INTO settled_days (chain_id, token, day, settlements, amount)
    SELECT chain_id, COALESCE(token, asset), (created_at / 86400) * 86400, count(*),
           u256_sum(amount)
    FROM settlements WHERE state = 'confirmed' GROUP BY 1, 2, 3;
INSERT INTO settled_parties (side, address, chain_id, token, settlements, amount)
    SELECT 'payer', payer, chain_id, COALESCE(token, asset), count(*), u256_sum(amount)
    FROM settlements WHERE state = 'confirmed' GROUP BY 2, 3, 4;
INSERT INTO settled_parties (side, address, chain_id, token, settlements, amount)
    SELECT 'payee', pay_to, chain_id, COALESCE(token, asset), count(*), u256_sum(amount)
    FROM settlements WHERE state = 'confirmed' GROUP BY 2, 3, 4;
";

/// A settlement as the sums count it.
pub(super) struct Counted {
    pub(super) chain_id: i64,
    pub(super) token: String,
    pub(super) created_at: i64,
    pub(super) payer: String,
    pub(super) pay_to: String,
    pub(super) amount: String,
}

/// Whether a settlement enters the sums or leaves them.
#[derive(Clone, Copy)]
pub(super) enum Change {
    /// Confirmed now.
    Add,
    /// No longer confirmed.
    Remove,
}

/// `sum` changed by one settlement of `amount`.
fn changed(
    (count, sum): (i64, U256),
    amount: U256,
    change: Change,
) -> Result<(i64, U256), StoreError> {
    let corrupt = || StoreError("the settled sums of the log are short of a settlement".into());
    Ok(match change {
        Change::Add => (
            count + 1,
            sum.checked_add(amount)
                .ok_or_else(|| StoreError("a settled sum exceeds uint256".into()))?,
        ),
        Change::Remove => (
            count
                .checked_sub(1)
                .filter(|c| *c >= 0)
                .ok_or_else(corrupt)?,
            sum.checked_sub(amount).ok_or_else(corrupt)?,
        ),
    })
}

/// Counts `settlement` into the sums, or out of them, within `tx`.
pub(super) fn count(
    tx: &Transaction<'_>,
    settlement: &Counted,
    change: Change,
) -> Result<(), StoreError> {
    let amount: U256 = super::parse("amount", &settlement.amount)?;
    let day = settlement.created_at - settlement.created_at.rem_euclid(86_400);
    let current = tx
        .query_row(
            "SELECT settlements, amount FROM settled_days
             WHERE chain_id = ?1 AND token = ?2 AND day = ?3",
            params![settlement.chain_id, settlement.token, day],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
        )
        .optional()
        .map_err(db_error)?;
    let before = match current {
        Some((count, sum)) => (count, sum_of(&sum)?),
        None => (0, U256::ZERO),
    };
    let (count, sum) = changed(before, amount, change)?;
    tx.execute(
        "INSERT INTO settled_days (chain_id, token, day, settlements, amount)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (chain_id, token, day) DO UPDATE
             SET settlements = excluded.settlements, amount = excluded.amount",
        params![
            settlement.chain_id,
            settlement.token,
            day,
            count,
            padded(sum)
        ],
    )
    .map_err(db_error)?;
    for (side, address) in [("payer", &settlement.payer), ("payee", &settlement.pay_to)] {
        let current = tx
            .query_row(
                "SELECT settlements, amount FROM settled_parties
                 WHERE side = ?1 AND address = ?2 AND chain_id = ?3 AND token = ?4",
                params![side, address, settlement.chain_id, settlement.token],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
            )
            .optional()
            .map_err(db_error)?;
        let before = match current {
            Some((count, sum)) => (count, sum_of(&sum)?),
            None => (0, U256::ZERO),
        };
        let (count, sum) = changed(before, amount, change)?;
        tx.execute(
            "INSERT INTO settled_parties (side, address, chain_id, token, settlements, amount)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (side, address, chain_id, token) DO UPDATE
                 SET settlements = excluded.settlements, amount = excluded.amount",
            params![
                side,
                address,
                settlement.chain_id,
                settlement.token,
                count,
                padded(sum)
            ],
        )
        .map_err(db_error)?;
    }
    Ok(())
}
