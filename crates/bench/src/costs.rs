//! What one typical LLM chat call costs the payer, paid with `exact` (the quote: prompt
//! estimate plus `max_tokens`) and with `upto` (the tokens used), in USD and in settlement gas,
//! settled on anvil through our facilitators; the chain must have moved exactly what was
//! charged.

use alloy::primitives::{B256, U256};
use alloy::providers::Provider;
use anyhow::{Context, ensure};
use clap::Args;
use serde_json::json;
use x402_devnet::{Devnet, DevnetConfig};
use x402_evm::upto::{UptoEvmClient, UptoEvmFacilitator};
use x402_evm::{ChainConfig, ExactEvmFacilitator, ExactEvmScheme, sign_payment, unix_now};
use x402_proto::{Facilitator, PaymentRequest, Price, Scheme, SettleResponse, TokenAmount, V2, v2};

/// The call: its prompt, its token budget and its answer, at a per-1K-token rate.
#[derive(Debug, Args)]
pub(crate) struct CostsBench {
    /// Prompt tokens (as the gateway estimates them).
    #[arg(long, default_value_t = 20)]
    prompt_tokens: u64,
    /// The request's `max_tokens`.
    #[arg(long, default_value_t = 1000)]
    max_tokens: u64,
    /// Tokens the answer used.
    #[arg(long, default_value_t = 60)]
    answer_tokens: u64,
    /// USD per 1,000 tokens (the catalog's `llm-4090`).
    #[arg(long, default_value = "0.0008")]
    rate: Price,
}

/// One way of paying: what was charged and the gas its settlement took.
struct Paid {
    scheme: &'static str,
    charged: U256,
    settle_gas: u64,
}

pub(crate) async fn run(args: CostsBench) -> anyhow::Result<()> {
    eprintln!("starting anvil with Permit2 and the x402 proxies…");
    let devnet = Devnet::start(DevnetConfig::default())
        .await
        .context("starting anvil")?;
    let chain = ChainConfig::new(devnet.chain_id(), devnet.rpc_url().clone());
    let scheme = ExactEvmScheme::connect(chain, devnet.facilitator().signer.clone()).await?;
    let quoted = args
        .rate
        .scaled_to_atomic(6, args.prompt_tokens + args.max_tokens, 1000)?;
    let used = args
        .rate
        .scaled_to_atomic(6, args.prompt_tokens + args.answer_tokens, 1000)?;
    let payee = devnet.pay_to().address;
    let token = devnet.token().address;
    let before = devnet.balance_of(token, payee).await?;

    // A first payment to the payee turns its balance from zero (a costlier write): every
    // figure below is a payee's steady state.
    let warm_up = offer(
        &devnet,
        Scheme::EXACT,
        TokenAmount::from_atomic(1),
        json!({}),
    );
    let receipt = pay_exact(&scheme, &devnet.payers()[2].signer, warm_up).await?;
    ensure!(receipt.success, "warm-up payment failed: {receipt:?}");
    let before = before + U256::from(1);

    let exact_offer = offer(&devnet, Scheme::EXACT, quoted, json!({}));
    let receipt = pay_exact(&scheme, &devnet.payers()[0].signer, exact_offer).await?;
    let exact = Paid {
        scheme: "exact (EIP-3009)",
        charged: quoted.0,
        settle_gas: gas_of(&devnet, &receipt).await?,
    };

    let upto_payer = &devnet.payers()[1].signer;
    let approval_gas = {
        let sent = devnet.transaction_count(upto_payer.address()).await?;
        devnet.approve_permit2(upto_payer).await?;
        ensure!(devnet.transaction_count(upto_payer.address()).await? == sent + 1);
        approval_gas(&devnet, upto_payer.address()).await?
    };
    let facilitator_address = scheme.signer_address().to_checksum(None);
    let upto_offer = offer(
        &devnet,
        Scheme::UPTO,
        quoted,
        json!({"facilitatorAddress": facilitator_address, "assetTransferMethod": "permit2"}),
    );
    let signed = UptoEvmClient::new(upto_payer.clone())
        .sign_upto(&upto_offer, unix_now())
        .await?;
    let request = PaymentRequest::V2 {
        payload: v2::PaymentPayload {
            x402_version: V2::default(),
            resource: None,
            accepted: upto_offer.clone(),
            payload: serde_json::to_value(&signed)?,
            extensions: None,
        },
        requirements: v2::PaymentRequirements {
            amount: used,
            ..upto_offer
        },
    };
    let receipt = UptoEvmFacilitator::new(scheme)
        .settle(&request, None)
        .await?;
    ensure!(
        receipt.amount == Some(used),
        "upto settled {:?}",
        receipt.amount
    );
    let upto = Paid {
        scheme: "upto (Permit2)",
        charged: used.0,
        settle_gas: gas_of(&devnet, &receipt).await?,
    };

    let moved = devnet.balance_of(token, payee).await? - before;
    ensure!(
        moved == exact.charged + upto.charged,
        "the chain moved {moved}"
    );
    println!(
        "call: {} prompt tokens, max_tokens {}, {} tokens answered, ${} per 1K tokens",
        args.prompt_tokens,
        args.max_tokens,
        args.answer_tokens,
        args.rate.as_str()
    );
    for paid in [&exact, &upto] {
        println!(
            "{:<18} charged ${:<10} settle gas {:>7}",
            paid.scheme,
            TokenAmount(paid.charged).to_human(6),
            paid.settle_gas
        );
    }
    println!("upto once per payer: Permit2 approval gas {approval_gas}");
    println!("batch-settlement: not built yet");
    println!("chain  moved {moved} atomic units (exact + upto): consistent");
    Ok(())
}

/// `payer`'s `exact` (EIP-3009) payment of `offer`, settled by our facilitator.
async fn pay_exact(
    scheme: &ExactEvmScheme,
    payer: &alloy::signers::local::PrivateKeySigner,
    offer: v2::PaymentRequirements,
) -> anyhow::Result<SettleResponse> {
    let payload = sign_payment(payer, &offer, None, unix_now()).await?;
    let request = PaymentRequest::V2 {
        payload,
        requirements: offer,
    };
    Ok(ExactEvmFacilitator::new(scheme.clone())
        .settle(&request, None)
        .await?)
}

/// An offer of `amount` in the devnet token, paid to its payee, with `extra` beside the
/// token's EIP-712 domain.
fn offer(
    devnet: &Devnet,
    scheme: Scheme,
    amount: TokenAmount,
    mut extra: serde_json::Value,
) -> v2::PaymentRequirements {
    let token = devnet.token();
    extra["name"] = json!(token.name);
    extra["version"] = json!(token.version);
    v2::PaymentRequirements {
        scheme,
        network: devnet.network(),
        amount,
        asset: token.address.to_checksum(None),
        pay_to: devnet.pay_to().address.to_checksum(None),
        max_timeout_seconds: 300,
        extra: Some(extra),
    }
}

/// The gas the settlement in `receipt` used.
async fn gas_of(devnet: &Devnet, receipt: &SettleResponse) -> anyhow::Result<u64> {
    ensure!(receipt.success, "settlement failed: {receipt:?}");
    let hash: B256 = receipt.transaction.parse()?;
    let mined = devnet
        .provider()
        .get_transaction_receipt(hash)
        .await?
        .context("no receipt")?;
    Ok(mined.gas_used)
}

/// The gas of `owner`'s latest transaction (its Permit2 approval).
async fn approval_gas(devnet: &Devnet, owner: alloy::primitives::Address) -> anyhow::Result<u64> {
    let block = devnet
        .provider()
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .full()
        .await?
        .context("no latest block")?;
    let tx = block
        .transactions
        .txns()
        .find(|tx| tx.inner.signer() == owner)
        .context("the approval is not in the latest block")?;
    let mined = devnet
        .provider()
        .get_transaction_receipt(*tx.inner.tx_hash())
        .await?
        .context("no receipt")?;
    Ok(mined.gas_used)
}
