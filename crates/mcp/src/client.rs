//! The client side of the x402 MCP transport: call a tool, and when it answers with a
//! `PaymentRequired`, pay it from the wallet (within policy and budget) and call again.

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::ServiceError;
use rmcp::{Peer, RoleClient};
use x402_client::{PayError, PayingClient};
use x402_proto::{SettleResponse, TokenAmount, v2};

use crate::server::{PAYMENT_META, PAYMENT_RESPONSE_META};

/// A tool result, and what was paid for it.
#[derive(Debug)]
pub struct PaidToolResult {
    /// The final result.
    pub result: CallToolResult,
    /// The receipt from `_meta["x402/payment-response"]`, when a payment was made.
    pub receipt: Option<SettleResponse>,
    /// The amount paid, in atomic units.
    pub amount: Option<TokenAmount>,
}

/// Why a paid tool call failed.
#[derive(Debug, thiserror::Error)]
pub enum McpPayError {
    /// The MCP call itself failed.
    #[error("MCP call failed: {0}")]
    Service(#[from] ServiceError),
    /// The payment could not be made (policy, budget, signing).
    #[error(transparent)]
    Pay(#[from] PayError),
}

/// Calls `params` on `peer`; pays a `PaymentRequired` answer once with `payer` and retries
/// with `_meta["x402/payment"]`. The payment is committed in the ledger when the receipt says
/// it settled, and marked failed otherwise.
pub async fn call_paid_tool(
    peer: &Peer<RoleClient>,
    params: CallToolRequestParams,
    payer: &PayingClient,
) -> Result<PaidToolResult, McpPayError> {
    let first = peer.call_tool(params.clone()).await?;
    let challenge = (first.is_error == Some(true))
        .then_some(first.structured_content.as_ref())
        .flatten()
        .and_then(|value| serde_json::from_value::<v2::PaymentRequired>(value.clone()).ok());
    let Some(challenge) = challenge else {
        return Ok(PaidToolResult {
            result: first,
            receipt: None,
            amount: None,
        });
    };
    let (payment, amount, mut reservation) =
        payer.pay_challenge(&challenge, Some(&params.name)).await?;
    let mut meta = params.meta.clone().unwrap_or_default();
    meta.0.0.insert(
        PAYMENT_META.to_owned(),
        serde_json::to_value(&payment).unwrap_or_default(),
    );
    let mut retry = params;
    retry.meta = Some(meta);
    let result = match peer.call_tool(retry).await {
        Ok(result) => result,
        Err(error) => {
            // Sent, answer lost: it may have settled, so it stays counted until reconciled.
            let _ = reservation.mark_unknown(&format!("sent, no answer: {error}"));
            return Err(error.into());
        }
    };
    let receipt = result
        .meta
        .as_ref()
        .and_then(|m| m.0.get(PAYMENT_RESPONSE_META))
        .and_then(|v| serde_json::from_value::<SettleResponse>(v.clone()).ok());
    match &receipt {
        Some(r) if r.success => reservation.commit(&r.transaction).map_err(PayError::from)?,
        Some(r) => {
            let reason = r
                .error_reason
                .as_ref()
                .map_or_else(|| "settlement failed".to_owned(), ToString::to_string);
            let _ = reservation.fail(&reason, Some(&r.transaction));
        }
        None => {
            let _ = reservation.fail("the tool answered without a receipt", None);
        }
    }
    Ok(PaidToolResult {
        result,
        receipt,
        amount: Some(amount),
    })
}
