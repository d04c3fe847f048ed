//! The one-payment-one-response guard in Postgres ([`PostgresGuard`]), shared by every gateway
//! replica: a payment in use on one replica is in use on all of them, and a response paid on
//! one is answered again, or refused, by all of them.
//!
//! It keeps what [`MemoryGuard`](x402_paywall::MemoryGuard) keeps in memory, in four tables:
//! payments in use (`gateway_guard_in_use`, one row per key, with the lease of the request
//! holding it), paid responses (`gateway_guard_served`, for the cache's TTL, the oldest
//! dropped past its size), metered streams unsettled (`gateway_guard_streams`, one row per
//! stream) and payers who left one unpaid (`gateway_guard_unpaid`, kept until an operator
//! deletes the row). An admission is one transaction under the advisory locks of its keys
//! (taken in order), so of concurrent admissions of one payment on any replicas, one is
//! granted. Rows a request holds carry an expiry its replica renews (see
//! [`Leases`](super::Leases)): a replica that dies frees its payments and streams within the
//! lease TTL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use x402_paywall::{
    Admission, GuardError, PaymentGuard, RequestFingerprint, ResponseCacheConfig, Served,
    StoredResponse, StreamAdmission, UnpaidStream,
};
use x402_proto::{BoxFuture, Network, PaymentId, ReasonCode, SettleResponse, U256};

use super::{Database, DatabaseError, db_error, lock};

fn guard_error(error: impl std::fmt::Display) -> GuardError {
    GuardError(format!("database: {error}"))
}

/// How often, at most, one replica drops expired paid responses and those past the cache's
/// size.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// The guard's keys for a payment and its purchase id (as the memory guard's).
fn keys_for(payment: &PaymentId, purchase: Option<&str>) -> Vec<String> {
    let mut keys = vec![format!("payment:{payment}")];
    if let Some(id) = purchase {
        keys.push(format!("purchase:{id}"));
    }
    keys
}

/// One payer's key: an EVM address in lower case, another as it is written.
fn payer_key(payer: &str) -> String {
    if payer.starts_with("0x") || payer.starts_with("0X") {
        payer.to_ascii_lowercase()
    } else {
        payer.to_owned()
    }
}

fn response_size(response: &StoredResponse) -> usize {
    response.body.len()
        + response
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum::<usize>()
}

/// Deletes the rows of `leases` (payments in use and streams).
pub(super) async fn delete_leases(
    client: &deadpool_postgres::Object,
    leases: &[String],
) -> Result<(), DatabaseError> {
    client
        .execute(
            "DELETE FROM gateway_guard_in_use WHERE lease = ANY($1)",
            &[&leases],
        )
        .await
        .map_err(db_error)?;
    client
        .execute(
            "DELETE FROM gateway_guard_streams WHERE lease = ANY($1)",
            &[&leases],
        )
        .await
        .map_err(db_error)?;
    Ok(())
}

/// The payment guard in the gateway's Postgres database.
#[derive(Debug)]
pub struct PostgresGuard {
    database: Database,
    config: ResponseCacheConfig,
    /// This process's leases: of each key it holds, and of each payer's streams.
    local: Mutex<Local>,
    last_prune: Mutex<Option<Instant>>,
}

#[derive(Debug, Default)]
struct Local {
    keys: HashMap<String, String>,
    streams: HashMap<String, Vec<String>>,
}

impl PostgresGuard {
    /// The guard of `database`, keeping paid responses as `config` says.
    pub fn new(database: Database, config: ResponseCacheConfig) -> Self {
        Self {
            database,
            config,
            local: Mutex::new(Local::default()),
            last_prune: Mutex::new(None),
        }
    }

    fn local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new lease, renewed from now on.
    fn new_lease(&self) -> String {
        let lease = uuid::Uuid::new_v4().simple().to_string();
        self.database.held().guard.insert(lease.clone());
        lease
    }

    /// Stops renewing `leases` and deletes their rows: now, in the background, and at each
    /// renewal until it succeeds (and before this process's next admission).
    fn let_go(&self, leases: Vec<String>) {
        if leases.is_empty() {
            return;
        }
        {
            let mut held = self.database.held();
            for lease in &leases {
                held.guard.remove(lease);
            }
            held.guard_orphans.extend(leases);
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let database = self.database.clone();
            runtime.spawn(async move {
                if let Err(error) = flush_orphans(&database).await {
                    tracing::warn!(%error, "freeing payments in the database failed; retrying");
                }
            });
        }
    }

    /// Drops expired paid responses and the oldest past the cache's size, at most every
    /// [`PRUNE_EVERY`] unless `now`.
    async fn prune(&self, now: bool) -> Result<(), DatabaseError> {
        {
            let mut last = self
                .last_prune
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !now && last.is_some_and(|at| at.elapsed() < PRUNE_EVERY) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        let client = self.database.client().await?;
        let max_bytes = i64::try_from(self.config.max_bytes).unwrap_or(i64::MAX);
        client
            .execute(
                "DELETE FROM gateway_guard_served WHERE expires_at <= now() OR key IN (
                    SELECT key FROM (
                        SELECT key, (SUM(size) OVER (ORDER BY stored_at DESC, key))::BIGINT AS running
                        FROM gateway_guard_served
                    ) newest_first WHERE running > $1)",
                &[&max_bytes],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }
}

/// Deletes the rows of the leases this process let go of.
async fn flush_orphans(database: &Database) -> Result<(), DatabaseError> {
    let orphans = database.held().guard_orphans.clone();
    if orphans.is_empty() {
        return Ok(());
    }
    let client = database.client().await?;
    delete_leases(&client, &orphans).await?;
    database
        .held()
        .guard_orphans
        .retain(|lease| !orphans.contains(lease));
    Ok(())
}

/// A paid response's row, read back.
fn served_of(row: &tokio_postgres::Row) -> Result<Served, GuardError> {
    let request: Vec<u8> = row.try_get("request").map_err(guard_error)?;
    let authorization: Vec<u8> = row.try_get("authorization_digest").map_err(guard_error)?;
    let receipt: String = row.try_get("receipt").map_err(guard_error)?;
    let status: Option<i32> = row.try_get("status").map_err(guard_error)?;
    let names: Option<Vec<String>> = row.try_get("header_names").map_err(guard_error)?;
    let values: Option<Vec<Vec<u8>>> = row.try_get("header_values").map_err(guard_error)?;
    let body: Option<Vec<u8>> = row.try_get("body").map_err(guard_error)?;
    let corrupt = |column: &str| GuardError(format!("corrupt {column} of a paid response"));
    let response = match status {
        Some(status) => Some(StoredResponse {
            status: u16::try_from(status).map_err(|_| corrupt("status"))?,
            headers: names
                .unwrap_or_default()
                .into_iter()
                .zip(values.unwrap_or_default().into_iter().map(Bytes::from))
                .collect(),
            body: Bytes::from(body.unwrap_or_default()),
        }),
        None => None,
    };
    Ok(Served {
        request: request.try_into().map_err(|_| corrupt("request"))?,
        authorization: authorization
            .try_into()
            .map_err(|_| corrupt("authorization_digest"))?,
        receipt: serde_json::from_str::<SettleResponse>(&receipt)
            .map_err(|_| corrupt("receipt"))?,
        response,
    })
}

impl PaymentGuard for PostgresGuard {
    fn admit<'a>(
        &'a self,
        payment: &'a PaymentId,
        authorization: &'a [u8; 32],
        purchase: Option<&'a str>,
        request: &'a RequestFingerprint,
    ) -> BoxFuture<'a, Result<Admission, GuardError>> {
        Box::pin(async move {
            // What this process let go of is free before it decides anything.
            flush_orphans(&self.database).await.map_err(guard_error)?;
            let keys = keys_for(payment, purchase);
            let mut client = self.database.client().await.map_err(guard_error)?;
            let transaction = client.transaction().await.map_err(guard_error)?;
            let mut sorted = keys.clone();
            sorted.sort();
            for key in &sorted {
                lock(&transaction, key).await.map_err(guard_error)?;
            }
            let rows = transaction
                .query(
                    "SELECT key, request, authorization_digest, receipt, status, header_names,
                        header_values, body
                     FROM gateway_guard_served WHERE key = ANY($1) AND expires_at > now()",
                    &[&keys],
                )
                .await
                .map_err(guard_error)?;
            // The purchase id first: a retry with a newly signed payment is still the same
            // purchase.
            for key in keys.iter().rev() {
                let by_identifier = key.starts_with("purchase:");
                let found = rows.iter().find(|row| row.get::<_, &str>("key") == key);
                if let Some(row) = found {
                    let served = served_of(row)?;
                    let same = served.request == *request
                        && (by_identifier || served.authorization == *authorization);
                    return Ok(if same {
                        Admission::Served {
                            served: Box::new(served),
                            by_identifier,
                        }
                    } else {
                        Admission::Conflict { by_identifier }
                    });
                }
            }
            let in_use = transaction
                .query(
                    "SELECT key FROM gateway_guard_in_use WHERE key = ANY($1) AND expires_at > now()",
                    &[&keys],
                )
                .await
                .map_err(guard_error)?;
            for key in keys.iter().rev() {
                if in_use.iter().any(|row| row.get::<_, &str>(0) == key) {
                    return Ok(Admission::InUse {
                        by_identifier: key.starts_with("purchase:"),
                    });
                }
            }
            let lease = self.new_lease();
            let granted = async {
                for key in &keys {
                    transaction
                        .execute(
                            "INSERT INTO gateway_guard_in_use (key, lease, expires_at)
                             VALUES ($1, $2, now() + make_interval(secs => $3))
                             ON CONFLICT (key) DO UPDATE
                                SET lease = EXCLUDED.lease, expires_at = EXCLUDED.expires_at",
                            &[key, &lease, &self.database.ttl_seconds()],
                        )
                        .await?;
                }
                transaction.commit().await
            }
            .await;
            if let Err(error) = granted {
                self.database.held().guard.remove(&lease);
                return Err(guard_error(error));
            }
            let mut local = self.local();
            for key in keys {
                local.keys.insert(key, lease.clone());
            }
            Ok(Admission::Granted)
        })
    }

    fn record<'a>(
        &'a self,
        payment: &'a PaymentId,
        purchase: Option<&'a str>,
        mut served: Served,
    ) -> BoxFuture<'a, Result<(), GuardError>> {
        Box::pin(async move {
            let keys = keys_for(payment, purchase);
            let leases: Vec<String> = {
                let mut local = self.local();
                let mut leases: Vec<String> =
                    keys.iter().filter_map(|k| local.keys.remove(k)).collect();
                leases.dedup();
                leases
            };
            if served
                .response
                .as_ref()
                .is_some_and(|r| response_size(r) > self.config.max_entry_bytes)
            {
                served.response = None;
            }
            let size = served.response.as_ref().map_or(0, response_size) + 256;
            let size = i64::try_from(size).unwrap_or(i64::MAX);
            let receipt = serde_json::to_string(&served.receipt).map_err(guard_error)?;
            let (status, names, values, body) = match &served.response {
                Some(response) => (
                    Some(i32::from(response.status)),
                    Some(
                        response
                            .headers
                            .iter()
                            .map(|(name, _)| name.clone())
                            .collect::<Vec<_>>(),
                    ),
                    Some(
                        response
                            .headers
                            .iter()
                            .map(|(_, value)| value.to_vec())
                            .collect::<Vec<_>>(),
                    ),
                    Some(response.body.to_vec()),
                ),
                None => (None, None, None, None),
            };
            let ttl = self.config.ttl.as_secs_f64();
            let recorded = async {
                let mut client = self.database.client().await.map_err(guard_error)?;
                let transaction = client.transaction().await.map_err(guard_error)?;
                let mut sorted = keys.clone();
                sorted.sort();
                for key in &sorted {
                    lock(&transaction, key).await.map_err(guard_error)?;
                }
                for key in &keys {
                    transaction
                        .execute(
                            "INSERT INTO gateway_guard_served (key, request, authorization_digest,
                                receipt, status, header_names, header_values, body, size,
                                stored_at, expires_at)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, clock_timestamp(),
                                now() + make_interval(secs => $10))
                             ON CONFLICT (key) DO UPDATE SET request = EXCLUDED.request,
                                authorization_digest = EXCLUDED.authorization_digest,
                                receipt = EXCLUDED.receipt, status = EXCLUDED.status,
                                header_names = EXCLUDED.header_names,
                                header_values = EXCLUDED.header_values, body = EXCLUDED.body,
                                size = EXCLUDED.size, stored_at = EXCLUDED.stored_at,
                                expires_at = EXCLUDED.expires_at",
                            &[
                                key,
                                &&served.request[..],
                                &&served.authorization[..],
                                &receipt,
                                &status,
                                &names,
                                &values,
                                &body,
                                &size,
                                &ttl,
                            ],
                        )
                        .await
                        .map_err(guard_error)?;
                }
                transaction
                    .execute(
                        "DELETE FROM gateway_guard_in_use WHERE key = ANY($1) AND lease = ANY($2)",
                        &[&keys, &leases],
                    )
                    .await
                    .map_err(guard_error)?;
                transaction.commit().await.map_err(guard_error)
            }
            .await;
            match recorded {
                Ok(()) => {
                    let mut held = self.database.held();
                    for lease in &leases {
                        held.guard.remove(lease);
                    }
                }
                // Not recorded: the payment is freed (a copy is then refused by the
                // facilitator as spent, or answered again for this same request).
                Err(_) => self.let_go(leases),
            }
            recorded?;
            if let Err(error) = self.prune(false).await {
                tracing::warn!(%error, "pruning paid responses failed");
            }
            Ok(())
        })
    }

    fn release(&self, payment: &PaymentId, purchase: Option<&str>) {
        let leases: Vec<String> = {
            let mut local = self.local();
            let mut leases: Vec<String> = keys_for(payment, purchase)
                .iter()
                .filter_map(|k| local.keys.remove(k))
                .collect();
            leases.dedup();
            leases
        };
        self.let_go(leases);
    }

    fn admit_stream<'a>(
        &'a self,
        payer: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<StreamAdmission, GuardError>> {
        Box::pin(async move {
            flush_orphans(&self.database).await.map_err(guard_error)?;
            let key = payer_key(payer);
            let mut client = self.database.client().await.map_err(guard_error)?;
            let transaction = client.transaction().await.map_err(guard_error)?;
            lock(&transaction, &format!("payer:{key}"))
                .await
                .map_err(guard_error)?;
            let unpaid = transaction
                .query_opt(
                    "SELECT payer, payment, network, asset, amount, reason, message, at
                     FROM gateway_guard_unpaid WHERE payer_key = $1",
                    &[&key],
                )
                .await
                .map_err(guard_error)?;
            if let Some(row) = unpaid {
                return Ok(StreamAdmission::Unpaid(Box::new(unpaid_of(&row)?)));
            }
            let streams: i64 = transaction
                .query_one(
                    "SELECT count(*) FROM gateway_guard_streams
                     WHERE payer = $1 AND expires_at > now()",
                    &[&key],
                )
                .await
                .map_err(guard_error)?
                .get(0);
            let streams = usize::try_from(streams).unwrap_or(usize::MAX);
            if streams >= limit {
                return Ok(StreamAdmission::Busy { streams });
            }
            let lease = self.new_lease();
            let granted = async {
                transaction
                    .execute(
                        "INSERT INTO gateway_guard_streams (lease, payer, expires_at)
                         VALUES ($1, $2, now() + make_interval(secs => $3))",
                        &[&lease, &key, &self.database.ttl_seconds()],
                    )
                    .await?;
                transaction.commit().await
            }
            .await;
            if let Err(error) = granted {
                self.database.held().guard.remove(&lease);
                return Err(guard_error(error));
            }
            self.local().streams.entry(key).or_default().push(lease);
            Ok(StreamAdmission::Granted)
        })
    }

    fn record_unpaid_stream(&self, unpaid: UnpaidStream) -> BoxFuture<'_, Result<(), GuardError>> {
        Box::pin(async move {
            let client = self.database.client().await.map_err(guard_error)?;
            let at = i64::try_from(unpaid.at).unwrap_or(i64::MAX);
            client
                .execute(
                    "INSERT INTO gateway_guard_unpaid
                        (payer_key, payer, payment, network, asset, amount, reason, message, at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (payer_key) DO NOTHING",
                    &[
                        &payer_key(&unpaid.payer),
                        &unpaid.payer,
                        &unpaid.payment.to_string(),
                        &unpaid.network.to_string(),
                        &unpaid.asset,
                        &unpaid.amount.to_string(),
                        &unpaid.reason.as_ref().map(ToString::to_string),
                        &unpaid.message,
                        &at,
                    ],
                )
                .await
                .map_err(guard_error)?;
            Ok(())
        })
    }

    fn stream_over(&self, payer: &str) {
        let key = payer_key(payer);
        let lease = {
            let mut local = self.local();
            let lease = local.streams.get_mut(&key).and_then(Vec::pop);
            if local.streams.get(&key).is_some_and(Vec::is_empty) {
                local.streams.remove(&key);
            }
            lease
        };
        self.let_go(lease.into_iter().collect());
    }
}

fn unpaid_of(row: &tokio_postgres::Row) -> Result<UnpaidStream, GuardError> {
    let read = || -> Result<_, tokio_postgres::Error> {
        Ok((
            row.try_get::<_, String>("payer")?,
            row.try_get::<_, String>("payment")?,
            row.try_get::<_, String>("network")?,
            row.try_get::<_, String>("asset")?,
            row.try_get::<_, String>("amount")?,
            row.try_get::<_, Option<String>>("reason")?,
            row.try_get::<_, Option<String>>("message")?,
            row.try_get::<_, i64>("at")?,
        ))
    };
    let (payer, payment, network, asset, amount, reason, message, at) =
        read().map_err(guard_error)?;
    Ok(UnpaidStream {
        payment: PaymentId::from_parts([payment]),
        network: Network::new(network),
        amount: amount
            .parse::<U256>()
            .map_err(|_| GuardError(format!("corrupt amount of payer {payer}'s unpaid stream")))?,
        reason: reason.map(ReasonCode::new),
        at: u64::try_from(at).unwrap_or_default(),
        payer,
        asset,
        message,
    })
}

#[cfg(test)]
pub(super) mod tests;
