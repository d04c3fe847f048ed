//! The GPU-Bridge tools, paid from a wallet (stdio) or through the x402 MCP transport
//! (the gateway's `/mcp`).

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

/// A gateway answer.
struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Value,
}

impl Answer {
    /// The body as the API type `T`, or the gateway's refusal.
    fn parse<T: DeserializeOwned>(&self) -> Result<T, String> {
        if !(200..300).contains(&self.status) {
            let error: ApiError = serde_json::from_value(self.body.clone())
                .unwrap_or_else(|_| ApiError::new(self.body.to_string()));
            return Err(error.error);
        }
        serde_json::from_value(self.body.clone())
            .map_err(|e| format!("the gateway answered something unexpected: {e}"))
    }
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

    /// A free call to the gateway.
    async fn get(&self, path: &str) -> Result<Answer, String> {
        match &*self.mode {
            Mode::Wallet { gateway, .. } => {
                let base = gateway.base();
                let response = gateway
                    .paying_client()
                    .http()
                    .get(format!("{base}{path}"))
                    .send()
                    .await
                    .map_err(|e| format!("cannot reach the gateway {base}: {e}"))?;
                answer(
                    response.status().as_u16(),
                    response.headers().clone(),
                    response.bytes().await.unwrap_or_default().to_vec(),
                )
            }
            Mode::Transport { app } => {
                let request = http::Request::get(path)
                    .header("host", "localhost")
                    .body(Body::empty())
                    .map_err(|e| e.to_string())?;
                in_process(app, request).await
            }
        }
    }

    /// Polls a job until it finishes, reporting progress when the caller asked for it.
    async fn wait_for_job(
        &self,
        job: &str,
        meta: &RequestMetaObject,
        peer: &Peer<RoleServer>,
    ) -> Result<Value, String> {
        let token = meta.get_progress_token();
        let status_path = gateway_path(&["status", job], &[]);
        let fetch = || async {
            self.get(&status_path)
                .await
                .and_then(|answer| answer.parse::<JobView>())
                .map_err(GatewayError::BadAnswer)
        };
        let report = |view: &JobView, waited: std::time::Duration| {
            let notice = token.clone().map(|token| {
                ProgressNotificationParam::new(token, f64::from(view.progress.percent_estimate))
                    .with_total(100.0)
                    .with_message(format!(
                        "{job}: {} for {:.0} s",
                        view.progress.phase,
                        waited.as_secs_f64()
                    ))
            });
            let peer = peer.clone();
            async move {
                if let Some(notice) = notice {
                    let _ = peer.notify_progress(notice).await;
                }
            }
        };
        poll_job(&JobPolling::default(), job, fetch, report)
            .await
            .map_err(|error| match error {
                GatewayError::StillRunning { waited, .. } => format!(
                    "job {job} still running after {} s; check gpu_status",
                    waited.as_secs()
                ),
                other => other.to_string(),
            })
    }

    async fn run_with_wallet(
        &self,
        gateway: &GatewayClient,
        args: &RunArgs,
        meta: &RequestMetaObject,
        peer: &Peer<RoleServer>,
    ) -> CallToolResult {
        let request = RunRequest {
            service: args.service.clone(),
            input: args.input.clone(),
        };
        let address = gateway.paying_client().address();
        let run = match gateway
            .run(&request, args.runs_as_job(), args.priority.as_deref())
            .await
        {
            Ok(run) => run,
            Err(GatewayError::Pay(error)) => {
                return tool_error(describe_pay_error(&error, &address));
            }
            Err(error) => return tool_error(format!("{}: {error}", args.service)),
        };
        let cost = run.paid.map(|(amount, _)| amount.to_string());
        let (output, charged_usd) = match run.answer {
            RunAnswer::Completed(done) => (done.output, done.cost_usd),
            RunAnswer::Accepted(job) => match self.wait_for_job(&job.job_id, meta, peer).await {
                Ok(output) => (output, job.estimated_cost_usd),
                Err(error) => return tool_error(format!("{error} (paid before it started)")),
            },
        };
        finish_run(
            &args.service,
            output,
            cost.unwrap_or(charged_usd),
            run.receipt,
        )
    }

    async fn run_with_transport(
        &self,
        app: &axum::Router,
        args: &RunArgs,
        meta: &RequestMetaObject,
        peer: &Peer<RoleServer>,
    ) -> CallToolResult {
        let body = json!({"service": args.service, "input": args.input}).to_string();
        let mut request = http::Request::post("/run")
            .header("host", "localhost")
            .header("content-type", "application/json");
        if let Some(payment) = meta.get(PAYMENT_META) {
            let header = if payment["x402Version"] == 1 {
                headers::X_PAYMENT
            } else {
                headers::PAYMENT_SIGNATURE
            };
            request = request.header(header, encode_header(payment));
        }
        let request = match request.body(Body::from(body)) {
            Ok(request) => request,
            Err(e) => return tool_error(e.to_string()),
        };
        let answer = match in_process(app, request).await {
            Ok(answer) => answer,
            Err(error) => return tool_error(error),
        };
        if answer.status == 402 {
            let Some(challenge) = answer
                .headers
                .get(headers::PAYMENT_REQUIRED)
                .and_then(|h| decode_header::<v2::PaymentRequired>(h.as_bytes()).ok())
            else {
                return tool_error(format!(
                    "payment required but no challenge: {}",
                    answer.body
                ));
            };
            let value = serde_json::to_value(&challenge).unwrap_or_default();
            let mut result = CallToolResult::error(vec![Content::text(value.to_string())]);
            result.structured_content = Some(value);
            return result;
        }
        let receipt = answer
            .headers
            .get(headers::PAYMENT_RESPONSE)
            .or_else(|| answer.headers.get(headers::X_PAYMENT_RESPONSE))
            .and_then(|h| decode_header::<SettleResponse>(h.as_bytes()).ok());
        let (output, cost) = match answer.status {
            202 => {
                let job: JobAccepted = match answer.parse() {
                    Ok(job) => job,
                    Err(error) => return tool_error(error),
                };
                match self.wait_for_job(&job.job_id, meta, peer).await {
                    Ok(output) => (output, job.estimated_cost_usd),
                    Err(error) => return tool_error(format!("{error} (paid before it started)")),
                }
            }
            _ => match answer.parse::<RunCompleted>() {
                Ok(done) => (done.output, done.cost_usd),
                Err(error) => {
                    return tool_error(format!(
                        "{} failed ({}, not charged): {error}",
                        args.service, answer.status
                    ));
                }
            },
        };
        finish_run(&args.service, output, cost, receipt)
    }
}

/// A paid run's tool result: the output, its cost and transaction, and the receipt in
/// `_meta`.
fn finish_run(
    service: &str,
    output: Value,
    cost: String,
    receipt: Option<SettleResponse>,
) -> CallToolResult {
    let transaction = receipt
        .as_ref()
        .map(|r| r.transaction.clone())
        .unwrap_or_default();
    let value = json!({
        "service": service,
        "output": output,
        "cost_usd": cost,
        "transaction": transaction,
    });
    let mut result = ok_json(
        format!("{service} done: cost ${cost}, transaction {transaction}"),
        value,
    );
    if let Some(receipt) = receipt {
        let mut meta = MetaObject::default();
        meta.0.insert(
            PAYMENT_RESPONSE_META.to_owned(),
            serde_json::to_value(receipt).unwrap_or_default(),
        );
        result.meta = Some(meta);
    }
    result
}

fn answer(status: u16, headers: http::HeaderMap, body: Vec<u8>) -> Result<Answer, String> {
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

async fn in_process(app: &axum::Router, request: http::Request<Body>) -> Result<Answer, String> {
    let response = app
        .clone()
        .oneshot(request)
        .await
        .map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .map_err(|e| e.to_string())?;
    answer(parts.status.as_u16(), parts.headers, bytes.to_vec())
}

/// A payment failure as the model should read it: what happened and what to do.
fn describe_pay_error(error: &PayError, address: &str) -> String {
    let hint = match error {
        PayError::Budget(_) => {
            " — the agent's budget does not allow this call; ask the user to raise it (`x402 budget set`) or do without it"
        }
        PayError::Policy(_) => " — the price or asset is outside the agent's payment policy",
        PayError::Refused { reason, .. } if reason.contains("insufficient") => {
            " — the wallet lacks the USDC; it must be funded"
        }
        _ => "",
    };
    format!("{error}{hint} (wallet {address})")
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
        let answer = match self.get("/catalog").await {
            Ok(answer) => answer,
            Err(error) => return Ok(tool_error(error)),
        };
        let catalog: Catalog = match answer.parse() {
            Ok(catalog) => catalog,
            Err(error) => return Ok(tool_error(error)),
        };
        let lines: Vec<String> = catalog
            .services
            .iter()
            .map(|s| {
                let state = match (&s.available, &s.unavailable_reason) {
                    (true, _) => "available".to_owned(),
                    (false, reason) => format!("unavailable: {}", reason.as_deref().unwrap_or("")),
                };
                format!(
                    "{} — ${} {} — {state}",
                    s.key, s.pricing.price_usd, s.pricing.per
                )
            })
            .collect();
        Ok(ok_json(lines.join("\n"), answer.body))
    }

    #[tool(description = "The status of a long job started by gpu_run: progress, then its output.")]
    async fn gpu_status(
        &self,
        Parameters(args): Parameters<StatusArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let path = gateway_path(&["status", &args.job_id], &[]);
        Ok(
            match self
                .get(&path)
                .await
                .and_then(|answer| Ok((answer.parse::<JobView>()?, answer.body)))
            {
                Ok((view, body)) => ok_json(
                    format!("job {} is {:?}", view.id, view.status).to_lowercase(),
                    body,
                ),
                Err(error) => tool_error(error),
            },
        )
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
        Ok(
            match self
                .get(&path)
                .await
                .and_then(|answer| Ok((answer.parse::<Estimate>()?, answer.body)))
            {
                Ok((estimate, body)) => ok_json(
                    format!(
                        "{}: about ${} ({} {})",
                        estimate.service, estimate.estimated_cost_usd, estimate.units, estimate.per
                    ),
                    body,
                ),
                Err(error) => tool_error(error),
            },
        )
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

/// A gateway path with its query, every segment and value percent-encoded: tool arguments
/// come from a model and may hold `&`, `?`, `/` or spaces.
fn gateway_path(segments: &[&str], query: &[(&str, String)]) -> String {
    let mut url = reqwest::Url::parse("http://gateway.invalid/").expect("a valid base URL");
    if let Ok(mut path) = url.path_segments_mut() {
        path.clear().extend(segments);
    }
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    }
}

#[cfg(test)]
mod path_tests {
    #[test]
    fn gateway_paths_encode_what_a_model_sends() {
        assert_eq!(
            super::gateway_path(
                &["catalog", "estimate"],
                &[("service", "llm & co?x=1".into())]
            ),
            "/catalog/estimate?service=llm+%26+co%3Fx%3D1"
        );
        assert_eq!(
            super::gateway_path(&["status", "a/b c"], &[]),
            "/status/a%2Fb%20c"
        );
    }
}
