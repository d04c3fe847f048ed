//! Our small Solana JSON-RPC client: the few methods x402 needs, over `reqwest`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};
use solana_hash::Hash;
use solana_pubkey::Pubkey;

/// Why an RPC call gave no result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RpcError {
    /// The node could not be reached, or did not answer in time.
    #[error("the Solana RPC could not be reached: {0}")]
    Transport(String),
    /// The node answered with a JSON-RPC error.
    #[error("the Solana RPC refused {method}: {message} (code {code})")]
    Refused {
        /// The method called.
        method: &'static str,
        /// The JSON-RPC error code.
        code: i64,
        /// Its message.
        message: String,
        /// Its data, if any.
        data: Option<Value>,
    },
    /// The answer was not what the method returns.
    #[error("the Solana RPC's answer to {method} is malformed: {detail}")]
    Malformed {
        /// The method called.
        method: &'static str,
        /// What was wrong.
        detail: String,
    },
}

impl RpcError {
    /// Whether asking again may succeed (the node was not reached, or was busy).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Transport(_))
    }
}

/// A recent blockhash and the last block height it is valid for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatestBlockhash {
    /// The blockhash.
    pub blockhash: Hash,
    /// The last block height at which a transaction using it can land.
    pub last_valid_block_height: u64,
}

/// An account as the node holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountInfo {
    /// Its owner program.
    pub owner: Pubkey,
    /// Its balance in lamports.
    pub lamports: u64,
    /// Its data.
    pub data: Vec<u8>,
}

/// What a simulation found.
#[derive(Clone, Debug, PartialEq)]
pub struct SimulationOutcome {
    /// The error the transaction would fail with, as the node's JSON (`"BlockhashNotFound"`,
    /// `{"InstructionError":[2,{"Custom":1}]}`); `None` when it would succeed.
    pub err: Option<Value>,
    /// The programs' logs.
    pub logs: Vec<String>,
}

/// A landed (or failed) transaction's status.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignatureStatus {
    /// The slot it landed in.
    pub slot: u64,
    /// Its error, if it failed on chain.
    #[serde(default)]
    pub err: Option<Value>,
    /// `processed`, `confirmed` or `finalized`.
    #[serde(default)]
    pub confirmation_status: Option<String>,
}

impl SignatureStatus {
    /// Whether it is confirmed or finalized.
    pub fn is_confirmed(&self) -> bool {
        matches!(
            self.confirmation_status.as_deref(),
            Some("confirmed" | "finalized")
        )
    }
}

/// A JSON-RPC client of one Solana node.
#[derive(Debug)]
pub struct SolanaRpc {
    url: String,
    http: reqwest::Client,
    next_id: AtomicU64,
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<ReplyError>,
}

#[derive(Deserialize)]
struct ReplyError {
    code: i64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct WithContext<T> {
    value: T,
}

impl SolanaRpc {
    /// A client of the node at `url`, each call bounded by `timeout`.
    pub fn new(url: impl Into<String>, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .expect("a plain HTTP client builds");
        Self {
            url: url.into(),
            http,
            next_id: AtomicU64::new(1),
        }
    }

    /// The node's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls `method` with `params` and returns its `result`.
    pub async fn call(&self, method: &'static str, params: Value) -> Result<Value, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let response = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|error| RpcError::Transport(error.to_string()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| RpcError::Transport(error.to_string()))?;
        let reply: Reply = serde_json::from_slice(&bytes).map_err(|error| {
            if status.is_server_error() || status.as_u16() == 429 {
                RpcError::Transport(format!("HTTP {status}"))
            } else {
                RpcError::Malformed {
                    method,
                    detail: format!("HTTP {status}: {error}"),
                }
            }
        })?;
        if let Some(error) = reply.error {
            return Err(RpcError::Refused {
                method,
                code: error.code,
                message: error.message,
                data: error.data,
            });
        }
        Ok(reply.result.unwrap_or(Value::Null))
    }

    async fn call_as<T: for<'de> Deserialize<'de>>(
        &self,
        method: &'static str,
        params: Value,
    ) -> Result<T, RpcError> {
        let result = self.call(method, params).await?;
        serde_json::from_value(result).map_err(|error| RpcError::Malformed {
            method,
            detail: error.to_string(),
        })
    }

    /// `getLatestBlockhash` at `confirmed`.
    pub async fn latest_blockhash(&self) -> Result<LatestBlockhash, RpcError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Blockhash {
            blockhash: String,
            last_valid_block_height: u64,
        }
        let reply: WithContext<Blockhash> = self
            .call_as("getLatestBlockhash", json!([{"commitment": "confirmed"}]))
            .await?;
        let blockhash = reply
            .value
            .blockhash
            .parse()
            .map_err(|_| RpcError::Malformed {
                method: "getLatestBlockhash",
                detail: "the blockhash is not base58 of 32 bytes".into(),
            })?;
        Ok(LatestBlockhash {
            blockhash,
            last_valid_block_height: reply.value.last_valid_block_height,
        })
    }

    /// `getAccountInfo` in base64; `None` for an account that does not exist.
    pub async fn account(&self, address: &Pubkey) -> Result<Option<AccountInfo>, RpcError> {
        #[derive(Deserialize)]
        struct Account {
            owner: String,
            lamports: u64,
            data: (String, String),
        }
        let method = "getAccountInfo";
        let reply: WithContext<Option<Account>> = self
            .call_as(
                method,
                json!([address.to_string(), {"encoding": "base64", "commitment": "confirmed"}]),
            )
            .await?;
        let Some(account) = reply.value else {
            return Ok(None);
        };
        let malformed = |detail: &str| RpcError::Malformed {
            method,
            detail: detail.into(),
        };
        Ok(Some(AccountInfo {
            owner: account
                .owner
                .parse()
                .map_err(|_| malformed("the owner is not an address"))?,
            lamports: account.lamports,
            data: BASE64
                .decode(account.data.0)
                .map_err(|_| malformed("the data is not base64"))?,
        }))
    }

    /// `getBalance` in lamports.
    pub async fn balance(&self, address: &Pubkey) -> Result<u64, RpcError> {
        let reply: WithContext<u64> = self
            .call_as(
                "getBalance",
                json!([address.to_string(), {"commitment": "confirmed"}]),
            )
            .await?;
        Ok(reply.value)
    }

    /// `getTokenAccountBalance`, in atomic units.
    pub async fn token_balance(&self, account: &Pubkey) -> Result<u64, RpcError> {
        #[derive(Deserialize)]
        struct Amount {
            amount: String,
        }
        let method = "getTokenAccountBalance";
        let reply: WithContext<Amount> = self
            .call_as(
                method,
                json!([account.to_string(), {"commitment": "confirmed"}]),
            )
            .await?;
        reply.value.amount.parse().map_err(|_| RpcError::Malformed {
            method,
            detail: "the amount is not an integer".into(),
        })
    }

    /// `simulateTransaction` of a base64 transaction as the official facilitator asks it:
    /// signatures not verified, the blockhash kept, at `confirmed`.
    pub async fn simulate(&self, transaction: &str) -> Result<SimulationOutcome, RpcError> {
        #[derive(Deserialize)]
        struct Outcome {
            #[serde(default)]
            err: Option<Value>,
            #[serde(default)]
            logs: Option<Vec<String>>,
        }
        let reply: WithContext<Outcome> = self
            .call_as(
                "simulateTransaction",
                json!([transaction, {
                    "encoding": "base64",
                    "sigVerify": false,
                    "replaceRecentBlockhash": false,
                    "commitment": "confirmed",
                }]),
            )
            .await?;
        Ok(SimulationOutcome {
            err: reply.value.err,
            logs: reply.value.logs.unwrap_or_default(),
        })
    }

    /// `sendTransaction` of a base64 transaction without preflight (it was simulated at
    /// verify); returns its signature.
    pub async fn send(&self, transaction: &str) -> Result<String, RpcError> {
        self.call_as(
            "sendTransaction",
            json!([transaction, {
                "encoding": "base64",
                "skipPreflight": true,
                "preflightCommitment": "confirmed",
            }]),
        )
        .await
    }

    /// `getSignatureStatuses` of one signature; `None` while the node has not seen it land.
    pub async fn signature_status(
        &self,
        signature: &str,
    ) -> Result<Option<SignatureStatus>, RpcError> {
        let reply: WithContext<Vec<Option<SignatureStatus>>> = self
            .call_as(
                "getSignatureStatuses",
                json!([[signature], {"searchTransactionHistory": true}]),
            )
            .await?;
        Ok(reply.value.into_iter().next().flatten())
    }
}
