//! `x402 gateway --config gateway.toml`: serve the pay-per-call inference gateway until
//! SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use x402_gateway::GatewayConfig;

use crate::signals::wait_for_shutdown;

/// Options of `x402 gateway`.
#[derive(Debug, clap::Args)]
pub(crate) struct GatewayArgs {
    /// The config file (TOML); see examples/gateway.toml.
    #[arg(long, short, value_name = "FILE", default_value = "gateway.toml")]
    config: PathBuf,
    /// Check the config, print the effective settings, and exit.
    #[arg(long)]
    check: bool,
}

pub(crate) async fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let config = GatewayConfig::load(&args.config)?;
    if args.check {
        println!("config ok: {}", args.config.display());
        println!("  listen:      {}", config.listen);
        println!("  models:      {}", config.models_dir.display());
        match &config.facilitator {
            Some(f) => println!("  facilitator: {}", f.url),
            None => println!("  facilitator: none (set [facilitator] url)"),
        }
        match &config.database {
            Some(_) => println!("  payments:    in the database"),
            None => println!("  payments:    {}", config.payments_db().display()),
        }
        if let Some(address) = config.dashboard_listen {
            println!("  dashboard:   http://{address}/dashboard");
        }
        println!("  pay to:      {}", config.payment.pay_to);
        for accept in &config.payment.accepts {
            println!(
                "  accepts:     {} on {} ({} decimals)",
                accept.asset, accept.network, accept.decimals
            );
        }
        return Ok(());
    }
    let running = start_with_mcp(&config, None).await?;
    // One line on stdout for scripts; logs go to stderr.
    println!("gateway listening on {}", running.url());
    if config.operator_token.is_some() || config.operator_token_env.is_some() {
        eprintln!(
            "operator dashboard at {} (sign in with the operator token)",
            running.dashboard_url()
        );
    }
    wait_for_shutdown().await?;
    tracing::info!("shutting down the gateway");
    running.shutdown().await;
    Ok(())
}

/// The gateway with the MCP server (x402 MCP transport) mounted at `/mcp`. `facilitator`
/// overrides the configured one.
pub(crate) async fn start_with_mcp(
    config: &GatewayConfig,
    facilitator: Option<std::sync::Arc<dyn x402_proto::Facilitator>>,
) -> anyhow::Result<x402_gateway::RunningGateway> {
    let facilitator = match facilitator {
        Some(f) => f,
        None => x402_gateway::configured_facilitator(config)?,
    };
    let app = x402_gateway::app(config, facilitator)
        .await
        .context("starting the gateway")?;
    let x402_gateway::App {
        router,
        dashboard,
        paywall,
        batch,
        journal,
    } = app;
    let router = router
        .clone()
        .nest_service("/mcp", x402_mcp::http_service(router, &mcp_hosts(config)));
    Ok(x402_gateway::serve(
        config,
        x402_gateway::App {
            router,
            dashboard,
            paywall,
            batch,
            journal,
        },
    )
    .await?)
}

/// Host names `/mcp` accepts besides loopback: the public URL's host and the listen address.
fn mcp_hosts(config: &GatewayConfig) -> Vec<String> {
    let mut hosts = vec![config.listen.ip().to_string()];
    if let Some(public) = &config.public_url {
        let authority = public
            .split("://")
            .nth(1)
            .unwrap_or(public)
            .split('/')
            .next()
            .unwrap_or_default();
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host);
        if !host.is_empty() {
            hosts.push(host.to_owned());
        }
    }
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcp_accepts_the_public_host() {
        let mut config = GatewayConfig::parse(
            "listen = \"0.0.0.0:8080\"\npublic_url = \"https://api.example.com:8443/v1\"\n[payment]\npay_to = \"0x70997970C51812dc3A010C7d01b50e0d17dc79C8\"\n[[payment.accepts]]\nnetwork = \"eip155:8453\"\nasset = \"0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913\"\n",
        )
        .unwrap();
        assert_eq!(mcp_hosts(&config), ["0.0.0.0", "api.example.com"]);
        config.public_url = None;
        assert_eq!(mcp_hosts(&config), ["0.0.0.0"]);
    }
}
