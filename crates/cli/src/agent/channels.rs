//! `x402 channels`: the wallet's `batch-settlement` payment channels (deposits held in escrow
//! by the x402 batch-settlement contract), their cooperative refund through the server they
//! were opened with, and the payer's own timed withdrawal when a server does not refund.

use super::*;
use alloy::network::EthereumWallet;
use alloy::providers::{Provider, ProviderBuilder};
use alloy::sol_types::SolCall;
use x402_evm::batch::{BATCH_SETTLEMENT_ADDRESS, ChannelConfig, ChannelId};

alloy::sol! {
    /// The payer's withdrawal calls of the batch-settlement escrow.
    interface IBatchWithdraw {
        function initiateWithdraw((address,address,address,address,address,uint40,bytes32) config, uint128 amount) external;
        function finalizeWithdraw((address,address,address,address,address,uint40,bytes32) config) external;
    }
}

/// `x402 channels`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct ChannelsArgs {
    #[command(subcommand)]
    command: Option<ChannelsCommand>,
    /// Also list channels already refunded.
    #[arg(long)]
    all: bool,
}

/// What to do with channels.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ChannelsCommand {
    /// Ask the server a channel was opened with to return its unspent deposit (a cooperative
    /// refund: a zero-charge voucher; the server claims what was charged and refunds the rest
    /// in one transaction).
    Refund {
        /// The channel id (0x + 64 hex), as `x402 channels` lists it.
        #[arg(required_unless_present = "all")]
        id: Option<String>,
        /// Refund every open channel.
        #[arg(long)]
        all: bool,
        /// The chain, to check the server's corrections against (default: the `x402 dev` one).
        #[arg(long, value_name = "URL")]
        rpc: Option<String>,
    },
    /// Take a channel's unspent deposit back without the server: starts the escrow's timed
    /// withdrawal (the server may still claim what was charged during the channel's withdraw
    /// delay, 15 minutes or more); after the delay, run again with --finalize. Costs gas.
    Withdraw {
        /// The channel id (0x + 64 hex).
        id: String,
        /// Complete a withdrawal started at least the withdraw delay ago.
        #[arg(long)]
        finalize: bool,
        /// The chain (default: the `x402 dev` one).
        #[arg(long, value_name = "URL")]
        rpc: Option<String>,
    },
}

pub(crate) async fn channels(home: &Home, args: ChannelsArgs) -> anyhow::Result<()> {
    match args.command {
        None => list(home, args.all),
        Some(ChannelsCommand::Refund { id, all, rpc }) => refund(home, id, all, rpc).await,
        Some(ChannelsCommand::Withdraw { id, finalize, rpc }) => {
            withdraw(home, &id, finalize, rpc).await
        }
    }
}

fn list(home: &Home, all: bool) -> anyhow::Result<()> {
    let ledger = home.ledger()?;
    let channels = ledger.channels()?;
    let shown: Vec<_> = channels.iter().filter(|c| all || !c.closed).collect();
    if shown.is_empty() {
        println!("no open channels");
        return Ok(());
    }
    println!(
        "{:14} {:66} {:42} {:>12} {:>12} {:>12}  url",
        "network", "channel", "receiver", "balance", "charged", "claimed"
    );
    for channel in shown {
        let record = &channel.record;
        println!(
            "{:14} {:66} {:42} {:>12} {:>12} {:>12}  {}{}",
            channel.network,
            channel.id,
            channel.receiver,
            record.balance,
            record.charged,
            record.total_claimed,
            channel.url.as_deref().unwrap_or("-"),
            if channel.closed { "  (refunded)" } else { "" },
        );
    }
    println!(
        "locked in escrow: ${} (amounts above in the token's atomic units)",
        usd(ledger.locked()?)
    );
    Ok(())
}

async fn refund(
    home: &Home,
    id: Option<String>,
    all: bool,
    rpc: Option<String>,
) -> anyhow::Result<()> {
    let rpc = chain_rpc(rpc, dev_state(home).as_ref())?;
    let (client, _) = client(home, "1000".parse()?, Some(&rpc))?;
    let channels = client.ledger().channels()?;
    let targets: Vec<_> = channels
        .iter()
        .filter(|c| !c.closed)
        .filter(|c| {
            all || id
                .as_deref()
                .is_some_and(|id| id.eq_ignore_ascii_case(&c.id))
        })
        .collect();
    if targets.is_empty() {
        bail!("no such open channel; `x402 channels` lists them");
    }
    for channel in targets {
        let url = channel.url.as_deref().with_context(|| {
            format!(
                "channel {} has no server URL recorded; use `x402 channels withdraw`",
                channel.id
            )
        })?;
        match client.refund_channel(url, None).await {
            Ok(refunded) => println!(
                "refunded {} atomic units of {} in {}",
                refunded.amount.as_deref().unwrap_or("?"),
                channel.id,
                refunded.transaction
            ),
            Err(error) => eprintln!("{}: {}", channel.id, explain(&error, &client.address())),
        }
    }
    Ok(())
}

async fn withdraw(
    home: &Home,
    id: &str,
    finalize: bool,
    rpc: Option<String>,
) -> anyhow::Result<()> {
    let signer = home.signer()?;
    let rpc = chain_rpc(rpc, dev_state(home).as_ref())?;
    let channel_id: ChannelId = id.parse().map_err(|e| anyhow!("{id}: {e}"))?;
    let ledger = home.ledger()?;
    let row = ledger
        .channels()?
        .into_iter()
        .find(|c| c.id.eq_ignore_ascii_case(&channel_id.to_string()))
        .context("no such channel in the ledger; `x402 channels --all` lists them")?;
    let config: ChannelConfig = row.record.config;
    let call_config = config.to_sol().into();
    let input = if finalize {
        IBatchWithdraw::finalizeWithdrawCall {
            config: call_config,
        }
        .abi_encode()
    } else {
        let amount = row.record.balance.saturating_sub(row.record.total_claimed);
        IBatchWithdraw::initiateWithdrawCall {
            config: call_config,
            amount,
        }
        .abi_encode()
    };
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(rpc.parse().context("--rpc is not a URL")?);
    let request = alloy::rpc::types::TransactionRequest::default()
        .to(BATCH_SETTLEMENT_ADDRESS)
        .input(input.into());
    let receipt = provider
        .send_transaction(request)
        .await
        .context("the escrow refused the withdrawal")?
        .get_receipt()
        .await?;
    if !receipt.status() {
        bail!("the withdrawal reverted in {}", receipt.transaction_hash);
    }
    if finalize {
        println!(
            "withdrawal of {channel_id} finalized in {}",
            receipt.transaction_hash
        );
    } else {
        println!(
            "withdrawal of {channel_id} started in {}; after {} s run `x402 channels withdraw {channel_id} --finalize`",
            receipt.transaction_hash, config.withdraw_delay
        );
    }
    Ok(())
}
