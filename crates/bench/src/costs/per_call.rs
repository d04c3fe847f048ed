//! The schemes that settle every call on its own: `exact` (EIP-3009, the quote) and `upto`
//! (Permit2 through our proxy, the tokens used), each paid once through our facilitators.

use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, ensure};
use serde_json::json;
use x402_devnet::Devnet;
use x402_evm::upto::{UptoEvmClient, UptoEvmFacilitator};
use x402_evm::{ExactEvmFacilitator, ExactEvmScheme, sign_payment, unix_now};
use x402_proto::{Facilitator, PaymentRequest, Scheme, SettleResponse, TokenAmount, V2, v2};

use super::CallPrice;
use super::chain::{gas_of, latest_gas_of};
use super::tally::{Every, Paid, Transaction};

/// Pays the payee one atomic unit with `exact`, so that its balance is no longer zero.
pub(super) async fn warm_up(devnet: &Devnet, scheme: &ExactEvmScheme) -> anyhow::Result<()> {
    let warm_up = offer(
        devnet,
        Scheme::EXACT,
        TokenAmount::from_atomic(1),
        json!({}),
    );
    let receipt = pay_exact(scheme, &devnet.payers()[2].signer, warm_up).await?;
    ensure!(receipt.success, "warm-up payment failed: {receipt:?}");
    Ok(())
}

/// One call paid with `exact`: the quote, settled by our facilitator.
pub(super) async fn exact(
    devnet: &Devnet,
    scheme: &ExactEvmScheme,
    price: &CallPrice,
) -> anyhow::Result<Paid> {
    let exact_offer = offer(devnet, Scheme::EXACT, price.quoted, json!({}));
    let receipt = pay_exact(scheme, &devnet.payers()[0].signer, exact_offer).await?;
    Ok(Paid {
        scheme: "exact (EIP-3009)",
        charged_per_call: price.quoted.0,
        transactions: vec![Transaction {
            what: "settle (transferWithAuthorization)",
            gas: settlement_gas(devnet, &receipt).await?,
            every: Every::Call,
        }],
    })
}

/// One call paid with `upto`: the payer approves Permit2 once, signs for the quote, and our
/// facilitator settles the tokens used.
pub(super) async fn upto(
    devnet: &Devnet,
    scheme: ExactEvmScheme,
    price: &CallPrice,
) -> anyhow::Result<Paid> {
    let payer = &devnet.payers()[1].signer;
    let approval_gas = {
        let sent = devnet.transaction_count(payer.address()).await?;
        devnet.approve_permit2(payer).await?;
        ensure!(devnet.transaction_count(payer.address()).await? == sent + 1);
        latest_gas_of(devnet, payer.address()).await?
    };
    let facilitator_address = scheme.signer_address().to_checksum(None);
    let upto_offer = offer(
        devnet,
        Scheme::UPTO,
        price.quoted,
        json!({"facilitatorAddress": facilitator_address, "assetTransferMethod": "permit2"}),
    );
    let signed = UptoEvmClient::new(payer.clone())
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
            amount: price.used,
            ..upto_offer
        },
    };
    let receipt = UptoEvmFacilitator::new(scheme)
        .settle(&request, None)
        .await?;
    ensure!(
        receipt.amount == Some(price.used),
        "upto settled {:?}",
        receipt.amount
    );
    Ok(Paid {
        scheme: "upto (Permit2)",
        charged_per_call: price.used.0,
        transactions: vec![
            Transaction {
                what: "settle (our Permit2 proxy)",
                gas: settlement_gas(devnet, &receipt).await?,
                every: Every::Call,
            },
            Transaction {
                what: "Permit2 approval, once per payer and token",
                gas: approval_gas,
                every: Every::Run,
            },
        ],
    })
}

/// `payer`'s `exact` (EIP-3009) payment of `offer`, settled by our facilitator.
async fn pay_exact(
    scheme: &ExactEvmScheme,
    payer: &PrivateKeySigner,
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

/// The gas of the successful settlement in `receipt`.
async fn settlement_gas(devnet: &Devnet, receipt: &SettleResponse) -> anyhow::Result<u64> {
    ensure!(receipt.success, "settlement failed: {receipt:?}");
    gas_of(
        devnet,
        receipt.transaction.parse().context("transaction hash")?,
    )
    .await
}

/// An offer of `amount` in the devnet token, paid to its payee, with `extra` beside the
/// token's EIP-712 domain.
pub(super) fn offer(
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
