//! How the tools reach the gateway: over HTTP from the wallet (paid through
//! `GatewayClient`) or in process on the gateway's router (paid by the caller), and the
//! answers both give.

use super::*;

/// A gateway answer.
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) headers: http::HeaderMap,
    pub(super) body: Value,
}

impl Answer {
    /// The body as the API type `T`, or the gateway's refusal.
    pub(super) fn parse<T: DeserializeOwned>(&self) -> Result<T, String> {
        if !(200..300).contains(&self.status) {
            let error: ApiError = serde_json::from_value(self.body.clone())
                .unwrap_or_else(|_| ApiError::new(self.body.to_string()));
            return Err(error.error);
        }
        serde_json::from_value(self.body.clone())
            .map_err(|e| format!("the gateway answered something unexpected: {e}"))
    }
}

impl GpuTools {
    /// A free call to `path`, its answer read as the API type `T` and said for people by
    /// `summary` (with the answer's JSON as structured content); a failure is a tool error.
    pub(super) async fn show<T: DeserializeOwned>(
        &self,
        path: &str,
        summary: impl FnOnce(&T) -> String,
    ) -> CallToolResult {
        match self
            .get(path)
            .await
            .and_then(|answer| Ok((answer.parse::<T>()?, answer.body)))
        {
            Ok((value, body)) => ok_json(summary(&value), body),
            Err(error) => tool_error(error),
        }
    }

    /// A free call to the gateway.
    pub(super) async fn get(&self, path: &str) -> Result<Answer, String> {
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
    pub(super) async fn wait_for_job(
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

    pub(super) async fn run_with_wallet(
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

    pub(super) async fn run_with_transport(
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
pub(super) fn finish_run(
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

pub(super) fn answer(
    status: u16,
    headers: http::HeaderMap,
    body: Vec<u8>,
) -> Result<Answer, String> {
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

pub(super) async fn in_process(
    app: &axum::Router,
    request: http::Request<Body>,
) -> Result<Answer, String> {
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
pub(super) fn describe_pay_error(error: &PayError, address: &str) -> String {
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

/// A gateway path with its query, every segment and value percent-encoded: tool arguments
/// come from a model and may hold `&`, `?`, `/` or spaces.
pub(super) fn gateway_path(segments: &[&str], query: &[(&str, String)]) -> String {
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
    pub(super) fn gateway_paths_encode_what_a_model_sends() {
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
