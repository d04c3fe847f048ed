//! The GPU-Bridge tools, paid from a wallet (stdio) or through the x402 MCP transport
//! (the gateway's `/mcp`).

use std::sync::Arc;
use std::time::{Duration, Instant};

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
use serde_json::{Value, json};
use tower::ServiceExt;
use x402_client::{PayError, PayingClient};
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
        client: PayingClient,
        gateway: String,
        chain: Option<(String, String)>,
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

/// A gateway answer.
struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Value,
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
    /// Tools that pay `gateway` from the agent's wallet. `chain` (RPC URL, token address)
    /// lets `gpu_balance` read the wallet's on-chain balance.
    pub fn wallet(client: PayingClient, gateway: &str, chain: Option<(String, String)>) -> Self {
        Self {
            mode: Arc::new(Mode::Wallet {
                client,
                gateway: gateway.trim_end_matches('/').to_owned(),
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
            Mode::Wallet {
                client, gateway, ..
            } => {
                let response = client
                    .http()
                    .get(format!("{gateway}{path}"))
                    .send()
                    .await
                    .map_err(|e| format!("cannot reach the gateway {gateway}: {e}"))?;
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
        let started = Instant::now();
        let token = meta.get_progress_token();
        loop {
            let view = self.get(&format!("/status/{job}")).await?.body;
            match view["status"].as_str() {
                Some("completed") => return Ok(view["output"].clone()),
                Some("failed") => return Err(format!("job {job} failed: {}", view["error"])),
                _ => {}
            }
            if let Some(token) = &token {
                let percent = view["progress"]["percent_estimate"].as_f64().unwrap_or(0.0);
                let _ = peer
                    .notify_progress(
                        ProgressNotificationParam::new(token.clone(), percent)
                            .with_total(100.0)
                            .with_message(format!(
                                "{job}: running for {:.0} s",
                                started.elapsed().as_secs_f64()
                            )),
                    )
                    .await;
            }
            if started.elapsed() > Duration::from_secs(600) {
                return Err(format!(
                    "job {job} still running after 10 minutes; check gpu_status"
                ));
            }
            let wait = if started.elapsed() < Duration::from_secs(10) {
                1000
            } else {
                3000
            };
            tokio::time::sleep(Duration::from_millis(
                wait.min(250 + started.elapsed().as_millis() as u64),
            ))
            .await;
        }
    }

    async fn run_with_wallet(
        &self,
        client: &PayingClient,
        gateway: &str,
        args: &RunArgs,
        meta: &RequestMetaObject,
        peer: &Peer<RoleServer>,
    ) -> CallToolResult {
        let mut request = client
            .http()
            .post(format!("{gateway}/run"))
            .json(&json!({"service": args.service, "input": args.input}));
        if let Some(priority) = &args.priority {
            request = request.header("x-priority", priority);
        }
        if args.runs_as_job() {
            request = request.header("prefer", "respond-async");
        }
        let request = match request.build() {
            Ok(request) => request,
            Err(e) => return tool_error(e.to_string()),
        };
        let paid = match client.send(request, Some(&args.service)).await {
            Ok(paid) => paid,
            Err(error) => return tool_error(describe_pay_error(&error, &client.address())),
        };
        let receipt = paid.receipt.clone();
        let cost = paid.paid.map(|(amount, _)| amount.to_human(6));
        let status = paid.response.status().as_u16();
        let body: Value = paid.response.json().await.unwrap_or(Value::Null);
        self.finish_run(args, status, body, receipt, cost, meta, peer)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish_run(
        &self,
        args: &RunArgs,
        status: u16,
        body: Value,
        receipt: Option<SettleResponse>,
        cost: Option<String>,
        meta: &RequestMetaObject,
        peer: &Peer<RoleServer>,
    ) -> CallToolResult {
        if !(200..300).contains(&status) {
            return tool_error(format!(
                "{} failed ({status}, not charged): {}",
                args.service,
                body["error"]
                    .as_str()
                    .map_or_else(|| body.to_string(), str::to_owned)
            ));
        }
        let output = if status == 202 {
            let job = body["job_id"].as_str().unwrap_or_default().to_owned();
            match self.wait_for_job(&job, meta, peer).await {
                Ok(output) => output,
                Err(error) => return tool_error(format!("{error} (paid before it started)")),
            }
        } else {
            body["output"].clone()
        };
        let transaction = receipt
            .as_ref()
            .map(|r| r.transaction.clone())
            .unwrap_or_default();
        let cost = cost
            .or_else(|| body["cost_usd"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let value = json!({
            "service": args.service,
            "output": output,
            "cost_usd": cost,
            "transaction": transaction,
        });
        let mut result = ok_json(
            format!(
                "{} done: cost ${cost}, transaction {transaction}",
                args.service
            ),
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
        self.finish_run(args, answer.status, answer.body, receipt, None, meta, peer)
            .await
    }
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
            Mode::Wallet {
                client, gateway, ..
            } => {
                self.run_with_wallet(client, gateway, &args, &meta, &peer)
                    .await
            }
            Mode::Transport { app } => self.run_with_transport(app, &args, &meta, &peer).await,
        })
    }

    #[tool(
        description = "List every service of the gateway with its price, unit, model and whether it is available (and why not)."
    )]
    async fn gpu_catalog(&self) -> Result<CallToolResult, ErrorData> {
        Ok(match self.get("/catalog").await {
            Ok(answer) => {
                let lines: Vec<String> = answer.body["services"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| {
                        let state = if s["available"] == true {
                            "available".to_owned()
                        } else {
                            format!(
                                "unavailable: {}",
                                s["unavailable_reason"].as_str().unwrap_or("")
                            )
                        };
                        format!(
                            "{} — ${} {} — {state}",
                            s["key"].as_str().unwrap_or(""),
                            s["pricing"]["price_usd"].as_str().unwrap_or(""),
                            s["pricing"]["per"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                ok_json(lines.join("\n"), answer.body)
            }
            Err(error) => tool_error(error),
        })
    }

    #[tool(description = "The status of a long job started by gpu_run: progress, then its output.")]
    async fn gpu_status(
        &self,
        Parameters(args): Parameters<StatusArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        Ok(
            match self
                .get(&gateway_path(&["status", &args.job_id], &[]))
                .await
            {
                Ok(answer) if answer.status == 200 => ok_json(
                    format!("job {} is {}", args.job_id, answer.body["status"]),
                    answer.body,
                ),
                Ok(answer) => tool_error(
                    answer.body["error"]
                        .as_str()
                        .unwrap_or("no such job")
                        .to_owned(),
                ),
                Err(error) => tool_error(error),
            },
        )
    }

    #[tool(description = "The agent wallet's USDC balance and what is left of its budget.")]
    async fn gpu_balance(&self) -> Result<CallToolResult, ErrorData> {
        let Mode::Wallet { client, chain, .. } = &*self.mode else {
            return Ok(tool_error(
                "this server has no wallet: each call is paid by the caller with the x402 MCP transport",
            ));
        };
        let ledger = client.ledger();
        let budget = ledger.budget().unwrap_or_default();
        let spent = ledger.spent(0).unwrap_or_default();
        let usd = |micro: u64| x402_proto::TokenAmount::from_atomic(u128::from(micro)).to_human(6);
        let balance = match chain {
            Some((rpc, asset)) => {
                x402_client::token_balance(client.http(), rpc, asset, &client.address())
                    .await
                    .map(|b| b.to_human(6))
                    .ok()
            }
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
        Ok(match self.get(&path).await {
            Ok(answer) if answer.status == 200 => ok_json(
                format!(
                    "{}: about ${}",
                    args.service,
                    answer.body["estimated_cost_usd"].as_str().unwrap_or("?")
                ),
                answer.body,
            ),
            Ok(answer) => tool_error(
                answer.body["error"]
                    .as_str()
                    .unwrap_or("cannot estimate")
                    .to_owned(),
            ),
            Err(error) => tool_error(error),
        })
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
