//! An MCP server with GPU-Bridge's five tools (`gpu_run`, `gpu_catalog`, `gpu_status`,
//! `gpu_balance`, `gpu_estimate`), a drop-in for its MCP server, in two modes:
//!
//! - [`GpuTools::wallet`]: over stdio (`x402 mcp`), calls are paid from the agent's own wallet
//!   through [`x402_client::PayingClient`], within its budget and recorded in its ledger;
//! - [`GpuTools::transport`]: mounted at `/mcp` on the gateway, `gpu_run` is a paid tool of
//!   the x402 MCP transport: without payment it answers the `PaymentRequired` (in
//!   `structuredContent` and as JSON text, `isError: true`); with
//!   `_meta["x402/payment"]` the payment is verified and settled by the gateway's paywall and
//!   the receipt comes back in `_meta["x402/payment-response"]`.
//!
//! [`call_paid_tool`] is the client side of that transport: it pays such tools automatically.

mod client;
mod server;

pub use client::{McpPayError, PaidToolResult, call_paid_tool};
pub use server::{
    EstimateArgs, GpuTools, PAYMENT_META, PAYMENT_RESPONSE_META, RunArgs, StatusArgs, WalletChain,
};

use std::sync::Arc;

use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};

/// The x402-transport tools for the gateway whose routes are `app`, as a tower service to
/// mount at `/mcp` (streamable HTTP). Requests are accepted with loopback `Host` names and
/// with `extra_hosts` (the gateway's public host name; a guard against DNS rebinding).
pub fn http_service(
    app: axum::Router,
    extra_hosts: &[String],
) -> StreamableHttpService<GpuTools, LocalSessionManager> {
    let tools = GpuTools::transport(app);
    let mut config = StreamableHttpServerConfig::default();
    config.allowed_hosts.extend(extra_hosts.iter().cloned());
    StreamableHttpService::new(
        move || Ok(tools.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

/// Serves the wallet-paid tools over stdio until the client disconnects.
pub async fn serve_stdio(tools: GpuTools) -> Result<(), std::io::Error> {
    use rmcp::ServiceExt;
    let running = tools
        .serve(rmcp::transport::stdio())
        .await
        .map_err(std::io::Error::other)?;
    running.waiting().await.map_err(std::io::Error::other)?;
    Ok(())
}
