//! What the operators' dashboard reads from the shared log: totals, series, top lists, pages of
//! settlements, and what is pending or failed, across every instance. Amounts are summed by
//! the database as `NUMERIC`, exactly.

use alloy::primitives::{Address, B256, U256};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use x402_proto::Network;

use super::{PostgresStore, column, hex, key_params, parse};
use crate::store::{
    Backlog, FailureTally, LogHealth, Party, PartyTally, Search, SeriesPoint, SettlementFilter,
    SettlementKey, SettlementPage, SettlementState, SettlementSummary, StoreError, Tally,
};

const DAYS: &str = "
    SELECT day, chain_id, token, settlements, amount::text FROM settled_days
    WHERE day >= $1::bigint AND settlements > 0 ORDER BY 1, 2, 3";

const SERIES: &str = "
    SELECT (floor(extract(epoch FROM created_at))::bigint / $2::bigint) * $2::bigint,
           chain_id, token, count(*), sum(amount)::text
    FROM settlements WHERE state = 'confirmed' AND created_at >= to_timestamp($1::bigint)
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3";

const TOP: &str = "
    SELECT p.address, p.chain_id, p.token, p.settlements, p.amount::text
    FROM settled_parties p
    WHERE p.side = $1 AND p.settlements > 0
    -- The number, not its text (the output column of the same name).
    ORDER BY p.amount DESC, p.settlements DESC, p.address LIMIT $2::bigint";

/// The columns of a [`SettlementSummary`]: the transaction is the one the answer names, else
/// the last one sent.
const SUMMARY: &str = "
    SELECT s.chain_id, s.asset, s.payer, s.auth_nonce, s.state, s.token, s.pay_to,
           s.amount::text, s.wire_network,
           floor(extract(epoch FROM s.created_at))::bigint,
           floor(extract(epoch FROM s.updated_at))::bigint,
           COALESCE(NULLIF(s.response::jsonb ->> 'transaction', ''),
                    (SELECT t.tx_hash FROM settlement_txs t
                     WHERE t.chain_id = s.chain_id AND t.asset = s.asset AND t.payer = s.payer
                       AND t.auth_nonce = s.auth_nonce
                     ORDER BY t.signer_nonce DESC, t.seq DESC LIMIT 1)),
           s.response::jsonb ->> 'errorReason'
    FROM settlements s";

const PENDING: &str = "
    SELECT count(*), floor(extract(epoch FROM min(created_at)))::bigint
    FROM settlements WHERE state = $1";

const FAILURES: &str = "
    SELECT state, COALESCE(response::jsonb ->> 'errorReason', ''), count(*),
           floor(extract(epoch FROM max(updated_at)))::bigint
    FROM settlements WHERE state IN ('failed', 'abandoned')
    GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2";

const BATCH_SENDS: &str = "
    SELECT count(*), floor(extract(epoch FROM min(created_at)))::bigint
    FROM batch_sends WHERE response IS NULL";

const SIGNERS: &str = "SELECT DISTINCT chain_id, signer FROM settlement_txs ORDER BY 1, 2";

fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

/// Unix seconds as a query parameter.
fn seconds(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The (count, sum) columns at `at` and `at + 1`.
fn tally(row: &Row, at: usize) -> Result<Tally, StoreError> {
    Ok(Tally {
        settlements: unsigned(column(row, at)?),
        amount: parse::<U256>("sum", column(row, at + 1)?)?,
    })
}

fn summary_of(row: &Row) -> Result<SettlementSummary, StoreError> {
    let state: &str = column(row, 4)?;
    Ok(SettlementSummary {
        key: SettlementKey {
            chain_id: unsigned(column(row, 0)?),
            asset: parse("asset", column(row, 1)?)?,
            payer: parse("payer", column(row, 2)?)?,
            nonce: parse("auth_nonce", column(row, 3)?)?,
        },
        state: SettlementState::parse(state)
            .ok_or_else(|| StoreError(format!("corrupt state {state:?} in settlement log")))?,
        token: parse("token", column(row, 5)?)?,
        pay_to: parse("pay_to", column(row, 6)?)?,
        amount: parse("amount", column(row, 7)?)?,
        wire_network: Network::new(column::<String>(row, 8)?),
        created_at: unsigned(column(row, 9)?),
        updated_at: unsigned(column(row, 10)?),
        tx_hash: column::<Option<&str>>(row, 11)?.and_then(|hash| hash.parse::<B256>().ok()),
        error_reason: column(row, 12)?,
    })
}

fn backlog(row: &Row) -> Result<Backlog, StoreError> {
    Ok(Backlog {
        count: unsigned(column(row, 0)?),
        oldest_at: column::<Option<i64>>(row, 1)?.map(unsigned),
    })
}

/// The `WHERE` clause of `filter` (after `WHERE true`) and its parameters.
fn conditions(filter: &SettlementFilter) -> (String, Vec<String>) {
    const BY_TX: &str = "(s.chain_id, s.asset, s.payer, s.auth_nonce) IN
        (SELECT chain_id, asset, payer, auth_nonce FROM settlement_txs WHERE tx_hash";
    let (mut sql, values) = match &filter.search {
        None => (String::new(), Vec::new()),
        Some(Search::Address(address)) => (
            " AND (s.payer = $1 OR s.pay_to = $1)".to_owned(),
            vec![hex(*address)],
        ),
        Some(Search::Transaction(hash)) => (format!(" AND {BY_TX} = $1)"), vec![hex(*hash)]),
        Some(Search::Prefix(prefix)) => {
            // Byte-wise ranges (`~>=~`, `~<~`: the indexes' `text_pattern_ops`), one index
            // range each, their keys together.
            let (lower, upper) = Search::prefix_bounds(prefix);
            (
                " AND (s.chain_id, s.asset, s.payer, s.auth_nonce) IN (
                    SELECT chain_id, asset, payer, auth_nonce FROM settlements
                    WHERE payer ~>=~ $1 AND payer ~<~ $2
                    UNION ALL
                    SELECT chain_id, asset, payer, auth_nonce FROM settlements
                    WHERE pay_to ~>=~ $1 AND pay_to ~<~ $2
                    UNION ALL
                    SELECT chain_id, asset, payer, auth_nonce FROM settlement_txs
                    WHERE tx_hash ~>=~ $1 AND tx_hash ~<~ $2)"
                    .to_owned(),
                vec![lower, upper],
            )
        }
    };
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

impl PostgresStore {
    pub(super) async fn read_days(&self, since: u64) -> Result<Vec<SeriesPoint>, StoreError> {
        let day = seconds(since - since % 86_400);
        let rows = self.query(DAYS, &[&day]).await?;
        rows.iter()
            .map(|row| {
                Ok(SeriesPoint {
                    start: unsigned(column(row, 0)?),
                    chain_id: unsigned(column(row, 1)?),
                    token: parse("token", column(row, 2)?)?,
                    tally: tally(row, 3)?,
                })
            })
            .collect()
    }

    pub(super) async fn read_series(
        &self,
        since: u64,
        bucket_seconds: u64,
    ) -> Result<Vec<SeriesPoint>, StoreError> {
        let params: [&(dyn ToSql + Sync); 2] = [&seconds(since), &seconds(bucket_seconds.max(1))];
        let rows = self.query(SERIES, &params).await?;
        rows.iter()
            .map(|row| {
                Ok(SeriesPoint {
                    start: unsigned(column(row, 0)?),
                    chain_id: unsigned(column(row, 1)?),
                    token: parse("token", column(row, 2)?)?,
                    tally: tally(row, 3)?,
                })
            })
            .collect()
    }

    pub(super) async fn read_top(
        &self,
        party: Party,
        limit: u32,
    ) -> Result<Vec<PartyTally>, StoreError> {
        let side = match party {
            Party::Payer => "payer",
            Party::Payee => "payee",
        };
        let rows = self.query(TOP, &[&side, &i64::from(limit)]).await?;
        rows.iter()
            .map(|row| {
                Ok(PartyTally {
                    address: parse("address", column(row, 0)?)?,
                    chain_id: unsigned(column(row, 1)?),
                    token: parse("token", column(row, 2)?)?,
                    tally: tally(row, 3)?,
                })
            })
            .collect()
    }

    pub(super) async fn read_page(
        &self,
        filter: &SettlementFilter,
    ) -> Result<SettlementPage, StoreError> {
        let (conditions, values) = conditions(filter);
        let mut params: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        let count = format!("SELECT count(*) FROM settlements s WHERE true{conditions}");
        let total: i64 = match self.query(&count, &params).await?.first() {
            Some(row) => column(row, 0)?,
            None => 0,
        };
        let order = if filter.oldest_first { "ASC" } else { "DESC" };
        let n = params.len();
        let page = format!(
            "{SUMMARY} WHERE true{conditions}
             ORDER BY s.created_at {order}, s.seq {order} LIMIT ${}::bigint OFFSET ${}::bigint",
            n + 1,
            n + 2
        );
        let limit = i64::from(filter.limit);
        let offset = seconds(filter.offset);
        params.push(&limit);
        params.push(&offset);
        let rows = self.query(&page, &params).await?;
        Ok(SettlementPage {
            total: unsigned(total),
            rows: rows.iter().map(summary_of).collect::<Result<_, _>>()?,
        })
    }

    pub(super) async fn read_summary(
        &self,
        key: &SettlementKey,
    ) -> Result<Option<SettlementSummary>, StoreError> {
        let (chain_id, asset, payer, nonce) = key_params(key);
        let sql = format!(
            "{SUMMARY} WHERE s.chain_id = $1 AND s.asset = $2 AND s.payer = $3 AND s.auth_nonce = $4"
        );
        let params: [&(dyn ToSql + Sync); 4] = [&chain_id, &asset, &payer, &nonce];
        let rows = self.query(&sql, &params).await?;
        rows.first().map(summary_of).transpose()
    }

    pub(super) async fn read_health(&self) -> Result<LogHealth, StoreError> {
        let pending = |state: &'static str| async move {
            let rows = self.query(PENDING, &[&state]).await?;
            rows.first()
                .map(backlog)
                .transpose()
                .map(Option::unwrap_or_default)
        };
        let claimed = pending("claimed").await?;
        let submitted = pending("submitted").await?;
        let failures = self
            .query(FAILURES, &[])
            .await?
            .iter()
            .map(|row| {
                let state: &str = column(row, 0)?;
                Ok(FailureTally {
                    state: SettlementState::parse(state)
                        .ok_or_else(|| StoreError(format!("corrupt state {state:?}")))?,
                    reason: column(row, 1)?,
                    count: unsigned(column(row, 2)?),
                    last_at: unsigned(column::<Option<i64>>(row, 3)?.unwrap_or_default()),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let batch_sends = match self.query(BATCH_SENDS, &[]).await?.first() {
            Some(row) => backlog(row)?,
            None => Backlog::default(),
        };
        let signers = self
            .query(SIGNERS, &[])
            .await?
            .iter()
            .map(|row| {
                Ok((
                    unsigned(column(row, 0)?),
                    parse::<Address>("signer", column(row, 1)?)?,
                ))
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
}
