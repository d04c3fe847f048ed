//! The GPU-Bridge tools, paid from a wallet (stdio) or through the x402 MCP transport
//! (the gateway's `/mcp`). The tools are here; [`reach`] holds how they call the gateway.

mod reach;

use reach::*;

use std::sync::Arc;

use axum::body::Body;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock as Content, MetaObject, ProgressNotificationParam,
    RequestMetaObject, ServerCapabilities, ServerConfig,
};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tower::ServiceExt;
use x402_client::{GatewayClient, GatewayError, PayError, PayingClient, RunAnswer, poll_job};
use x402_gateway_api::{
    ApiError, Catalog, Estimate, JobAccepted, JobPolling, JobView, RunCompleted, RunRequest,
};
use x402_proto::{SettleResponse, decode_header, encode_header, headers, v2};

/// `_meta` key of a payment sent with a tool call (x402 MCP transport).
pub const PAYMENT_META: &str = "x402/payment";
/// `_meta` key of the settlement receipt in a tool result.
pub const PAYMENT_RESPONSE_META: &str = "x402/payment-response";

/// Where the tools send their calls and how they pay. One per server, behind an `Arc`.
#[allow(clippy::large_enum_variant)]
enum Mode {
    /// The agent's wallet pays a remote gateway.
    Wallet {
        gateway: GatewayClient,
        chain: Option<WalletChain>,
    },
    /// Mounted on the gateway: calls go to its router in process; callers pay per call with
    /// the x402 MCP transport.
    Transport { app: axum::Router },
}

/// The five GPU-Bridge tools.
#[derive(Clone)]
pub struct GpuTools {
    mode: Arc<Mode>,
    #[allow(dead_code)] // read by the code `#[tool_handler]` generates
    tool_router: ToolRouter<Self>,
}

impl std::fmt::Debug for GpuTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match &*self.mode {
            Mode::Wallet { .. } => "GpuTools(wallet)",
            Mode::Transport { .. } => "GpuTools(x402 transport)",
        })
    }
}

/// `gpu_run` arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct RunArgs {
    /// The service key, e.g. `embed-l4`, `rerank`, `pdf-parse`, `tts-fast`, `llm-4090`
    /// (see `gpu_catalog`).
    pub service: String,
    /// The service's input, e.g. `{"text": "hello"}` for embeddings.
    pub input: Value,
    /// `fast` (default: run now) or `cheap` (run as a queued job; the tool waits for it).
    #[serde(default)]
    pub priority: Option<String>,
}

impl RunArgs {
    /// `cheap` asks for a queued job (answered at once, polled), as GPU-Bridge's cheap tier.
    fn runs_as_job(&self) -> bool {
        self.priority.as_deref() == Some("cheap")
    }
}

/// `gpu_status` arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct StatusArgs {
    /// The job id `gpu_run` returned for a long job.
    pub job_id: String,
}

/// `gpu_estimate` arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct EstimateArgs {
    /// The service key.
    pub service: String,
    /// Seconds of audio or video, for services priced per time.
    #[serde(default)]
    pub seconds: Option<f64>,
}

/// Where the wallet's balance is read: the chain's RPC and the token.
#[derive(Clone, Debug)]
pub struct WalletChain {
    /// The chain's JSON-RPC URL.
    pub rpc_url: String,
    /// The token's address.
    pub asset: String,
    /// The token's decimals.
    pub decimals: u8,
}

fn tool_error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![Content::text(message.into())])
}

fn ok_json(summary: String, value: Value) -> CallToolResult {
    let mut result = CallToolResult::success(vec![Content::text(format!("{summary}\n{value}"))]);
    result.structured_content = Some(value);
    result
}

impl GpuTools {
    /// Tools that pay `gateway` from the agent's wallet. `chain` lets `gpu_balance` read the
    /// wallet's on-chain balance.
    pub fn wallet(client: PayingClient, gateway: &str, chain: Option<WalletChain>) -> Self {
        Self {
            mode: Arc::new(Mode::Wallet {
                gateway: GatewayClient::new(client, gateway),
                chain,
            }),
            tool_router: Self::tool_router(),
        }
    }

    /// Tools served by the gateway whose routes are `app`, paid per call by the caller with
    /// the x402 MCP transport.
    pub fn transport(app: axum::Router) -> Self {
        Self {
            mode: Arc::new(Mode::Transport { app }),
            tool_router: Self::tool_router(),
        }
    }
}

#[tool_router]
impl GpuTools {
    #[tool(
        description = "Run an AI service of the gateway (embeddings, rerank, document parsing, speech, LLMs, …) and return its output. Paid per call in USDC with x402; the result states the cost and the settlement transaction. Long jobs are waited for with progress notifications."
    )]
    async fn gpu_run(
        &self,
        Parameters(args): Parameters<RunArgs>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        Ok(match &*self.mode {
            Mode::Wallet { gateway, .. } => {
                self.run_with_wallet(gateway, &args, &meta, &peer).await
            }
            Mode::Transport { app } => self.run_with_transport(app, &args, &meta, &peer).await,
        })
    }

    #[tool(
        description = "List every service of the gateway with its price, unit, model and whether it is available (and why not)."
    )]
    async fn gpu_catalog(&self) -> Result<CallToolResult, ErrorData> {
        Ok(self
            .show("/catalog", |catalog: &Catalog| {
                let lines: Vec<String> = catalog
                    .services
                    .iter()
                    .map(|s| {
                        let state = match (&s.available, &s.unavailable_reason) {
                            (true, _) => "available".to_owned(),
                            (false, reason) => {
                                format!("unavailable: {}", reason.as_deref().unwrap_or(""))
                            }
                        };
                        format!(
                            "{} — ${} {} — {state}",
                            s.key, s.pricing.price_usd, s.pricing.per
                        )
                    })
                    .collect();
                lines.join("\n")
            })
            .await)
    }

    #[tool(description = "The status of a long job started by gpu_run: progress, then its output.")]
    async fn gpu_status(
        &self,
        Parameters(args): Parameters<StatusArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let path = gateway_path(&["status", &args.job_id], &[]);
        Ok(self
            .show(&path, |view: &JobView| {
                format!("job {} is {:?}", view.id, view.status).to_lowercase()
            })
            .await)
    }

    #[tool(description = "The agent wallet's USDC balance and what is left of its budget.")]
    async fn gpu_balance(&self) -> Result<CallToolResult, ErrorData> {
        let Mode::Wallet { gateway, chain } = &*self.mode else {
            return Ok(tool_error(
                "this server has no wallet: each call is paid by the caller with the x402 MCP transport",
            ));
        };
        let client = gateway.paying_client();
        let ledger = client.ledger();
        let budget = ledger.budget().unwrap_or_default();
        let spent = ledger.spent(0).unwrap_or_default();
        let usd = x402_client::format_micro_usd;
        let balance = match chain {
            Some(chain) => x402_client::token_balance(
                client.http(),
                &chain.rpc_url,
                &chain.asset,
                &client.address(),
            )
            .await
            .map(|b| b.to_human(chain.decimals))
            .ok(),
            None => None,
        };
        let value = json!({
            "address": client.address(),
            "balance_usdc": balance,
            "spent_usd": usd(spent),
            "budget_total_usd": budget.total.map(usd),
            // Payments in flight or whose answer was lost count against the budget too.
            "budget_left_usd": budget.total.map(|t| {
                usd(t.saturating_sub(spent + ledger.outstanding(0).unwrap_or_default()))
            }),
            "budget_per_day_usd": budget.per_day.map(usd),
        });
        let summary = format!(
            "wallet {}: {} USDC; spent ${}; budget left {}",
            client.address(),
            balance
                .as_deref()
                .unwrap_or("(balance unknown: no chain configured)"),
            usd(spent),
            budget.total.map_or("unlimited".to_owned(), |t| format!(
                "${}",
                usd(t.saturating_sub(spent))
            )),
        );
        Ok(ok_json(summary, value))
    }

    #[tool(description = "Estimate the price of a service call before running it.")]
    async fn gpu_estimate(
        &self,
        Parameters(args): Parameters<EstimateArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let mut query = vec![("service", args.service.clone())];
        if let Some(seconds) = args.seconds {
            query.push(("seconds", seconds.to_string()));
        }
        let path = gateway_path(&["catalog", "estimate"], &query);
        Ok(self
            .show(&path, |estimate: &Estimate| {
                format!(
                    "{}: about ${} ({} {})",
                    estimate.service, estimate.estimated_cost_usd, estimate.units, estimate.per
                )
            })
            .await)
    }
}

#[tool_handler]
impl ServerHandler for GpuTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_instructions(
            "AI services paid per call with x402 (USDC): gpu_catalog lists them with prices, gpu_estimate quotes one, gpu_run runs one and reports its cost and transaction, gpu_status follows a long job, gpu_balance shows the wallet and budget.",
        )
    }
}
