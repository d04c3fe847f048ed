//! `x402 facilitator --config facilitator.toml`: serve `/verify`, `/settle`, `/supported`,
//! `/health` and `/metrics` (and the operators' `/dashboard` when an operator token is set)
//! until SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use x402_facilitator::FacilitatorConfig;

use crate::signals::wait_for_shutdown;

/// Options of `x402 facilitator`.
#[derive(Debug, clap::Args)]
pub(crate) struct FacilitatorArgs {
    /// The config file (TOML). Any key can be overridden from the environment as
    /// X402_FACILITATOR__<KEY>[__<SUBKEY>…], e.g. X402_FACILITATOR__NETWORKS__0__RPC_URL.
    /// The signer key comes from X402_FACILITATOR_PRIVATE_KEY (or signer.key_file).
    #[arg(long, short, value_name = "FILE", default_value = "facilitator.toml")]
    config: PathBuf,
    /// Check the config and the signer key, print the effective settings, and exit.
    #[arg(long)]
    check: bool,
}

pub(crate) async fn run(args: FacilitatorArgs) -> anyhow::Result<()> {
    let config = FacilitatorConfig::load(&args.config)?;
    let signer = config.signer()?;
    let operator_token = config.operator_token()?;
    if args.check {
        println!("config ok: {}", args.config.display());
        println!("  listen:   {}", config.listen);
        match (&operator_token, config.dashboard_listen) {
            (None, _) => println!("  dashboard: off (no operator_token)"),
            (Some(_), Some(apart)) => println!("  dashboard: http://{apart}/dashboard"),
            (Some(_), None) => println!("  dashboard: http://{}/dashboard", config.listen),
        }
        println!("  database: {}", config.database);
        println!("  signer:   {}", signer.address());
        for network in &config.networks {
            let assets: Vec<String> = network
                .accepted_assets()
                .iter()
                .map(|a| format!("{} {}", a.name, a.address))
                .collect();
            println!(
                "  network:  {} via {} ({})",
                network.network(),
                network.rpc_url,
                assets.join(", ")
            );
        }
        return Ok(());
    }
    let running = x402_facilitator::start(&config, signer)
        .await
        .context("starting the facilitator")?;
    // One line on stdout for scripts; logs go to stderr.
    println!("facilitator listening on {}", running.url());
    if let Some(dashboard) = running.dashboard_url() {
        eprintln!("operators' dashboard at {dashboard}");
    }
    wait_for_shutdown().await?;
    tracing::info!("shutting down: finishing settlements in flight");
    let left = running.shutdown().await;
    if left > 0 {
        eprintln!(
            "{left} settlement(s) still awaiting receipts; recorded, they resume at the next start"
        );
    }
    Ok(())
}
