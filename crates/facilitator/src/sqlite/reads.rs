//! What the operators' dashboard reads from the SQLite log: totals, series, top lists, pages of
//! settlements, and what is pending or failed. Every read runs on a connection of its own, so
//! a long read never holds up a settlement's write (WAL lets readers and the writer work at
//! once).
//!
//! Amounts are decimal text in the log; they are summed exactly, as `uint256`, by
//! [`U256Sum`] (`u256_sum(amount)`), which answers zero-padded to 78 digits so that its text
//! also orders as the number does.

use alloy::primitives::{Address, B256, U256};
use rusqlite::functions::{Aggregate, Context, FunctionFlags};
use rusqlite::types::{ToSql, ValueRef};
use rusqlite::{Connection, params};
use x402_proto::Network;

use super::{db_error, hex, parse};
use crate::store::{
    Backlog, FailureTally, LogHealth, Party, PartyTally, Search, SeriesPoint, SettlementFilter,
    SettlementKey, SettlementPage, SettlementState, SettlementSummary, StoreError, Tally,
};

/// Digits of the largest `uint256`: every sum is padded to this width.
const SUM_DIGITS: usize = 78;

/// `u256_sum(amount)`: the exact sum of decimal amounts, as 78 zero-padded digits.
pub(super) struct U256Sum;

impl Aggregate<U256, String> for U256Sum {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<U256> {
        Ok(U256::ZERO)
    }

    fn step(&self, context: &mut Context<'_>, sum: &mut U256) -> rusqlite::Result<()> {
        let value = match context.get_raw(0) {
            ValueRef::Text(digits) => decimal(digits),
            ValueRef::Integer(n) => u64::try_from(n).ok().map(U256::from),
            _ => None,
        };
        let value = value.ok_or_else(|| {
            rusqlite::Error::UserFunctionError("an amount in the log is not a whole number".into())
        })?;
        *sum = sum.checked_add(value).ok_or_else(|| {
            rusqlite::Error::UserFunctionError("a sum of amounts exceeds uint256".into())
        })?;
        Ok(())
    }

    fn finalize(&self, _: &mut Context<'_>, sum: Option<U256>) -> rusqlite::Result<String> {
        Ok(padded(sum.unwrap_or(U256::ZERO)))
    }
}

/// A decimal amount; the common short ones without a big-number parse.
fn decimal(digits: &[u8]) -> Option<U256> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits.len() <= 19 {
        let value = digits.iter().try_fold(0u64, |n, d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })?;
        return Some(U256::from(value));
    }
    U256::from_str_radix(std::str::from_utf8(digits).ok()?, 10).ok()
}

/// Makes `u256_sum` available on `connection`.
pub(super) fn register(connection: &Connection) -> Result<(), StoreError> {
    connection
        .create_aggregate_function(
            "u256_sum",
            1,
            FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
            U256Sum,
        )
        .map_err(db_error)
}

/// An amount as `u256_sum` writes it: 78 digits, zero-padded.
pub(super) fn padded(amount: U256) -> String {
    format!("{:0>SUM_DIGITS$}", amount.to_string())
}

/// A sum as `u256_sum` writes it.
pub(super) fn sum_of(text: &str) -> Result<U256, StoreError> {
    let digits = text.trim_start_matches('0');
    parse::<U256>("sum", if digits.is_empty() { "0" } else { digits })
}

fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

fn tally(count: i64, sum: &str) -> Result<Tally, StoreError> {
    Ok(Tally {
        settlements: unsigned(count),
        amount: sum_of(sum)?,
    })
}

pub(super) fn settled_days(
    connection: &Connection,
    since: u64,
) -> Result<Vec<SeriesPoint>, StoreError> {
    let mut statement = connection
        .prepare_cached(
            "SELECT day, chain_id, token, settlements, amount FROM settled_days
             WHERE day >= ?1 AND settlements > 0 ORDER BY 1, 2, 3",
        )
        .map_err(db_error)?;
    let day = since - since % 86_400;
    let rows = statement
        .query_map([seconds(day)], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, String>(4)?,
            ))
        })
        .map_err(db_error)?;
    rows.map(|row| {
        let (start, chain_id, token, count, sum) = row.map_err(db_error)?;
        Ok(SeriesPoint {
            start: unsigned(start),
            chain_id: unsigned(chain_id),
            token: parse("token", &token)?,
            tally: tally(count, &sum)?,
        })
    })
    .collect()
}

pub(super) fn settled_series(
    connection: &Connection,
    since: u64,
    bucket_seconds: u64,
) -> Result<Vec<SeriesPoint>, StoreError> {
    let mut statement = connection
        .prepare_cached(
            "SELECT (created_at / ?2) * ?2, chain_id, COALESCE(token, asset), count(*),
                    u256_sum(amount)
             FROM settlements WHERE state = 'confirmed' AND created_at >= ?1
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        )
        .map_err(db_error)?;
    let rows = statement
        .query_map(
            params![seconds(since), seconds(bucket_seconds.max(1))],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, String>(4)?,
                ))
            },
        )
        .map_err(db_error)?;
    rows.map(|row| {
        let (start, chain_id, token, count, sum) = row.map_err(db_error)?;
        Ok(SeriesPoint {
            start: unsigned(start),
            chain_id: unsigned(chain_id),
            token: parse("token", &token)?,
            tally: tally(count, &sum)?,
        })
    })
    .collect()
}

pub(super) fn top_parties(
    connection: &Connection,
    party: Party,
    limit: u32,
) -> Result<Vec<PartyTally>, StoreError> {
    let side = match party {
        Party::Payer => "payer",
        Party::Payee => "payee",
    };
    let mut statement = connection
        .prepare_cached(
            "SELECT address, chain_id, token, settlements, amount FROM settled_parties
             WHERE side = ?1 AND settlements > 0
             ORDER BY amount DESC, settlements DESC, address LIMIT ?2",
        )
        .map_err(db_error)?;
    let rows = statement
        .query_map(params![side, i64::from(limit)], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, String>(4)?,
            ))
        })
        .map_err(db_error)?;
    rows.map(|row| {
        let (address, chain_id, token, count, sum) = row.map_err(db_error)?;
        Ok(PartyTally {
            address: parse("address", &address)?,
            chain_id: unsigned(chain_id),
            token: parse("token", &token)?,
            tally: tally(count, &sum)?,
        })
    })
    .collect()
}

/// The columns of a [`SettlementSummary`]: the transaction is the one the answer names, else
/// the last one sent.
const SUMMARY: &str = "
    SELECT s.chain_id, s.asset, s.payer, s.auth_nonce, s.state, COALESCE(s.token, s.asset),
           s.pay_to, s.amount, s.wire_network, s.created_at, s.updated_at,
           COALESCE(NULLIF(json_extract(s.response, '$.transaction'), ''),
                    (SELECT t.tx_hash FROM settlement_txs t
                     WHERE t.chain_id = s.chain_id AND t.asset = s.asset AND t.payer = s.payer
                       AND t.auth_nonce = s.auth_nonce
                     ORDER BY t.signer_nonce DESC, t.created_at DESC, t.rowid DESC LIMIT 1)),
           json_extract(s.response, '$.errorReason')
    FROM settlements s";

fn summary_of(row: &rusqlite::Row<'_>) -> Result<SettlementSummary, StoreError> {
    let text = |i: usize| row.get::<_, String>(i).map_err(db_error);
    let number = |i: usize| row.get::<_, i64>(i).map_err(db_error);
    let state = text(4)?;
    Ok(SettlementSummary {
        key: SettlementKey {
            chain_id: unsigned(number(0)?),
            asset: parse("asset", &text(1)?)?,
            payer: parse("payer", &text(2)?)?,
            nonce: parse("auth_nonce", &text(3)?)?,
        },
        state: SettlementState::parse(&state)
            .ok_or_else(|| StoreError(format!("corrupt state {state:?} in settlement log")))?,
        token: parse("token", &text(5)?)?,
        pay_to: parse("pay_to", &text(6)?)?,
        amount: parse("amount", &text(7)?)?,
        wire_network: Network::new(text(8)?),
        created_at: unsigned(number(9)?),
        updated_at: unsigned(number(10)?),
        tx_hash: row
            .get::<_, Option<String>>(11)
            .map_err(db_error)?
            .and_then(|hash| hash.parse::<B256>().ok()),
        error_reason: row.get::<_, Option<String>>(12).map_err(db_error)?,
    })
}

/// The `WHERE` clause of `filter` (after `WHERE 1`) and its parameters.
fn conditions(filter: &SettlementFilter) -> (String, Vec<Box<dyn ToSql>>) {
    let mut sql = String::new();
    let mut values: Vec<Box<dyn ToSql>> = Vec::new();
    const BY_TX: &str = "(s.chain_id, s.asset, s.payer, s.auth_nonce) IN
        (SELECT chain_id, asset, payer, auth_nonce FROM settlement_txs WHERE tx_hash";
    match &filter.search {
        None => {}
        Some(Search::Address(address)) => {
            sql.push_str(" AND (s.payer = ?1 OR s.pay_to = ?1)");
            values.push(Box::new(hex(*address)));
        }
        Some(Search::Transaction(hash)) => {
            sql.push_str(&format!(" AND {BY_TX} = ?1)"));
            values.push(Box::new(hex(*hash)));
        }
        Some(Search::Prefix(prefix)) => {
            // One index range each, their rows together (an `OR` of them scans the table).
            sql.push_str(
                " AND s.rowid IN (
                    SELECT rowid FROM settlements WHERE payer >= ?1 AND payer < ?2
                    UNION ALL
                    SELECT rowid FROM settlements WHERE pay_to >= ?1 AND pay_to < ?2
                    UNION ALL
                    SELECT x.rowid FROM settlement_txs t JOIN settlements x
                        ON x.chain_id = t.chain_id AND x.asset = t.asset
                       AND x.payer = t.payer AND x.auth_nonce = t.auth_nonce
                    WHERE t.tx_hash >= ?1 AND t.tx_hash < ?2)",
            );
            let (lower, upper) = Search::prefix_bounds(prefix);
            values.push(Box::new(lower));
            values.push(Box::new(upper));
        }
    }
    if !filter.states.is_empty() {
        let states: Vec<String> = filter
            .states
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        sql.push_str(&format!(" AND s.state IN ({})", states.join(", ")));
    }
    (sql, values)
}

pub(super) fn settlements(
    connection: &Connection,
    filter: &SettlementFilter,
) -> Result<SettlementPage, StoreError> {
    let (conditions, values) = conditions(filter);
    let total: i64 = connection
        .prepare_cached(&format!(
            "SELECT count(*) FROM settlements s WHERE 1{conditions}"
        ))
        .and_then(|mut statement| {
            statement.query_row(rusqlite::params_from_iter(values.iter()), |row| row.get(0))
        })
        .map_err(db_error)?;
    let order = if filter.oldest_first { "ASC" } else { "DESC" };
    let n = values.len();
    let mut statement = connection
        .prepare_cached(&format!(
            "{SUMMARY} WHERE 1{conditions}
             ORDER BY s.created_at {order}, s.rowid {order} LIMIT ?{} OFFSET ?{}",
            n + 1,
            n + 2
        ))
        .map_err(db_error)?;
    let limit = i64::from(filter.limit);
    let offset = seconds(filter.offset);
    let all: Vec<&dyn ToSql> = values
        .iter()
        .map(|v| v.as_ref())
        .chain([&limit as &dyn ToSql, &offset as &dyn ToSql])
        .collect();
    let mut rows = statement
        .query(rusqlite::params_from_iter(all))
        .map_err(db_error)?;
    let mut page = Vec::new();
    while let Some(row) = rows.next().map_err(db_error)? {
        page.push(summary_of(row)?);
    }
    Ok(SettlementPage {
        total: unsigned(total),
        rows: page,
    })
}

pub(super) fn summary(
    connection: &Connection,
    key: &SettlementKey,
) -> Result<Option<SettlementSummary>, StoreError> {
    let (chain_id, asset, payer, nonce) = super::key_params(key);
    let mut statement = connection
        .prepare_cached(&format!(
            "{SUMMARY} WHERE s.chain_id = ?1 AND s.asset = ?2 AND s.payer = ?3 AND s.auth_nonce = ?4"
        ))
        .map_err(db_error)?;
    let mut rows = statement
        .query(params![chain_id, asset, payer, nonce])
        .map_err(db_error)?;
    match rows.next().map_err(db_error)? {
        Some(row) => summary_of(row).map(Some),
        None => Ok(None),
    }
}

fn backlog(count: i64, oldest: Option<i64>) -> Backlog {
    Backlog {
        count: unsigned(count),
        oldest_at: oldest.map(unsigned),
    }
}

pub(super) fn log_health(connection: &Connection) -> Result<LogHealth, StoreError> {
    let pending = |state: &str| -> Result<Backlog, StoreError> {
        connection
            .query_row(
                "SELECT count(*), min(created_at) FROM settlements WHERE state = ?1",
                [state],
                |row| Ok(backlog(row.get(0)?, row.get(1)?)),
            )
            .map_err(db_error)
    };
    let claimed = pending("claimed")?;
    let submitted = pending("submitted")?;
    let mut statement = connection
        .prepare_cached(
            "SELECT state, COALESCE(json_extract(response, '$.errorReason'), ''), count(*),
                    max(updated_at)
             FROM settlements WHERE state IN ('failed', 'abandoned')
             GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2",
        )
        .map_err(db_error)?;
    let failures = statement
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, i64>(3)?,
            ))
        })
        .map_err(db_error)?
        .map(|row| {
            let (state, reason, count, last_at) = row.map_err(db_error)?;
            Ok(FailureTally {
                state: SettlementState::parse(&state)
                    .ok_or_else(|| StoreError(format!("corrupt state {state:?}")))?,
                reason,
                count: unsigned(count),
                last_at: unsigned(last_at),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let batch_sends = connection
        .query_row(
            "SELECT count(*), min(created_at) FROM batch_sends WHERE response IS NULL",
            [],
            |row| Ok(backlog(row.get(0)?, row.get(1)?)),
        )
        .map_err(db_error)?;
    let mut statement = connection
        .prepare_cached("SELECT DISTINCT chain_id, signer FROM settlement_txs ORDER BY 1, 2")
        .map_err(db_error)?;
    let signers = statement
        .query_map([], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(db_error)?
        .map(|row| {
            let (chain_id, signer) = row.map_err(db_error)?;
            Ok((unsigned(chain_id), parse::<Address>("signer", &signer)?))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(LogHealth {
        claimed,
        submitted,
        failures,
        batch_sends,
        signers,
    })
}

/// Unix seconds as SQLite stores them.
fn seconds(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_are_exact_and_padded_so_their_text_orders_as_the_number() {
        let connection = Connection::open_in_memory().unwrap();
        register(&connection).unwrap();
        connection
            .execute_batch("CREATE TABLE t (g INTEGER, amount TEXT)")
            .unwrap();
        let big = (U256::MAX / U256::from(2)).to_string();
        for (g, amount) in [(1, "5"), (1, "7"), (2, &*big), (2, "1"), (3, "0")] {
            connection
                .execute("INSERT INTO t VALUES (?1, ?2)", params![g, amount])
                .unwrap();
        }
        let mut statement = connection
            .prepare("SELECT g, u256_sum(amount) AS s FROM t GROUP BY g ORDER BY s DESC")
            .unwrap();
        let sums: Vec<(i64, String)> = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(sums.iter().map(|s| s.0).collect::<Vec<_>>(), [2, 1, 3]);
        assert!(sums.iter().all(|(_, s)| s.len() == SUM_DIGITS));
        assert_eq!(
            sum_of(&sums[0].1).unwrap(),
            U256::MAX / U256::from(2) + U256::from(1)
        );
        assert_eq!(sum_of(&sums[1].1).unwrap(), U256::from(12));
        assert_eq!(sum_of(&sums[2].1).unwrap(), U256::ZERO);

        connection
            .execute("INSERT INTO t VALUES (2, ?1)", [big.as_str()])
            .unwrap();
        connection
            .execute("INSERT INTO t VALUES (2, ?1)", [big.as_str()])
            .unwrap();
        let overflow = connection
            .query_row("SELECT u256_sum(amount) FROM t WHERE g = 2", [], |row| {
                row.get::<_, String>(0)
            })
            .unwrap_err();
        assert!(
            overflow.to_string().contains("exceeds uint256"),
            "{overflow}"
        );
    }
}
