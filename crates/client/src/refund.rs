//! Cooperative refunds of `batch-settlement` channels, as the official client asks for them:
//! the resource's 402 gives the offer, a zero-charge voucher (`type: "refund"`) asks the server
//! for the unspent escrow back, and a corrective 402 is resynced and retried once.

use serde::Serialize;
use x402_proto::{Scheme, SchemeClient, SettleResponse, encode_header, headers, v2};

use crate::client::{PayError, PayingClient, corrective_of, micro_usd, receipt_of, refusal_reason};

/// What a cooperative refund returned.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Refunded {
    /// The channel refunded.
    pub channel_id: String,
    /// Atomic units returned to the payer (as the server's receipt says).
    pub amount: Option<String>,
    /// The refund's transaction.
    pub transaction: String,
    /// The server's receipt.
    pub receipt: SettleResponse,
}

impl PayingClient {
    /// Asks the server at `url` (the resource a channel was opened through) to return
    /// `amount` atomic units of the channel's unspent escrow, everything when `None`, and
    /// records the refund in the ledger. Refused when the channel has nothing left, when the
    /// resource offers no `batch-settlement`, or when the server refuses.
    pub async fn refund_channel(
        &self,
        url: &str,
        amount: Option<u128>,
    ) -> Result<Refunded, PayError> {
        let probe = self.http().get(url).send().await?;
        if probe.status() != reqwest::StatusCode::PAYMENT_REQUIRED {
            return Err(PayError::BadChallenge(format!(
                "a refund starts from the resource's 402, {url} answered {}",
                probe.status()
            )));
        }
        let challenge = corrective_of(&probe).ok_or_else(|| {
            PayError::BadChallenge("the 402 has no PAYMENT-REQUIRED header".into())
        })?;
        let batch = self.batch();
        let offer = challenge
            .accepts
            .iter()
            .find(|offer| offer.scheme == Scheme::BATCH_SETTLEMENT && batch.can_pay(offer))
            .cloned()
            .ok_or_else(|| {
                PayError::BadChallenge(format!("{url} offers no batch-settlement to refund"))
            })?;
        for attempt in 1..=2 {
            let signed = batch
                .sign_refund(&offer, amount)
                .await
                .map_err(|e| PayError::Sign(e.to_string()));
            let signed = signed?;
            let payment = v2::PaymentPayload {
                x402_version: x402_proto::V2::default(),
                resource: Some(challenge.resource.clone()),
                accepted: offer.clone(),
                payload: signed.payload.clone(),
                extensions: None,
            };
            let sent = self
                .http()
                .get(url)
                .header(headers::PAYMENT_SIGNATURE, encode_header(&payment))
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(error) => {
                    batch.on_response(&offer, &signed, None);
                    return Err(error.into());
                }
            };
            let receipt = receipt_of(response.headers());
            batch.on_response(&offer, &signed, receipt.as_ref());
            let channel_id = signed.channel.clone().unwrap_or_default();
            match receipt {
                Some(receipt) if receipt.success => {
                    let returned = receipt.amount;
                    if let Some(returned) = returned {
                        let decimals = self.decimals_of(&offer);
                        self.ledger().record_refund(
                            &channel_id,
                            &returned.to_string(),
                            micro_usd(returned, decimals),
                            &receipt.transaction,
                        )?;
                    }
                    return Ok(Refunded {
                        channel_id,
                        amount: returned.map(|a| a.to_string()),
                        transaction: receipt.transaction.clone(),
                        receipt,
                    });
                }
                receipt => {
                    let reason = refusal_reason(&response, receipt.as_ref());
                    let corrective = corrective_of(&response);
                    if attempt == 1
                        && response.status() == reqwest::StatusCode::PAYMENT_REQUIRED
                        && let Some(corrective) = corrective
                        && batch
                            .recover(&corrective)
                            .await
                            .map_err(|e| PayError::Sign(e.to_string()))?
                    {
                        continue;
                    }
                    return Err(PayError::Refused {
                        status: response.status().as_u16(),
                        reason,
                        receipt,
                    });
                }
            }
        }
        unreachable!("the second attempt always returns")
    }
}
