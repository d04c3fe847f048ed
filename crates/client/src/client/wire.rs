//! Reading a server's answers (challenges, receipts, refusals) and sending a request again
//! after its answer was lost.

use super::*;

/// After a lost answer, sends `again` (the same request with the same payment) once: the
/// authorization can settle only once, so a server that settled it answers with the same
/// receipt, and one that did not can still settle it. Only a receipt (or a success)
/// finishes the `unknown` row; any other answer leaves it for [`PayingClient::reconcile`].
pub(super) async fn send_again(
    transport: &mut Transport<'_>,
    again: Option<reqwest::Request>,
    reservation: Reservation,
    detail: String,
    amount: AssetAmount,
) -> Result<PaidResponse, PayError> {
    let id = reservation.id();
    let Some(mut again) = again else {
        return Err(PayError::AnswerLost { id, detail });
    };
    // A server still working on the first request answers `payment_in_use`: wait for it
    // (bounded), then it answers with the kept response and its receipt.
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(250);
    let response = loop {
        let attempt = again.try_clone();
        let response = match transport.execute(again).await {
            Ok(response) => response,
            Err(error) => {
                return Err(PayError::AnswerLost {
                    id,
                    detail: format!("{detail}; the retry with the same payment: {error}"),
                });
            }
        };
        let in_use = response.status() == reqwest::StatusCode::PAYMENT_REQUIRED
            && refusal_reason(&response, None)
                .contains(x402_proto::ReasonCode::PAYMENT_IN_USE.as_str());
        match attempt {
            Some(next) if in_use && started.elapsed() < IN_USE_PATIENCE => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(2));
                again = next;
            }
            _ => break response,
        }
    };
    let receipt = receipt_of(response.headers());
    match &receipt {
        Some(r) if r.success => reservation.commit(&r.transaction)?,
        None if response.status().is_success() => reservation.commit("")?,
        _ => {
            let reason = refusal_reason(&response, receipt.as_ref());
            return Err(PayError::AnswerLost {
                id,
                detail: format!("{detail}; the retry with the same payment: {reason}"),
            });
        }
    }
    Ok(PaidResponse::paid(response, receipt, amount, id))
}

/// How long a retry after a lost answer waits while the server is still serving the first
/// request (it answers 402 `payment_in_use` meanwhile).
pub(super) const IN_USE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// Records what a signed payment spends once, and until when, in the reservation's row.
pub(super) fn record_authorization(
    reservation: &Reservation,
    signed: &SignedPayload,
) -> Result<(), LedgerError> {
    match &signed.nonce {
        Some(nonce) => reservation.signed(nonce, signed.valid_before.unwrap_or(u64::MAX)),
        None => Ok(()),
    }
}

pub(super) async fn read_challenge(response: reqwest::Response) -> Result<Challenge, PayError> {
    if let Some(header) = response.headers().get(headers::PAYMENT_REQUIRED) {
        let challenge: v2::PaymentRequired =
            decode_header(header.as_bytes()).map_err(|e| PayError::BadChallenge(e.to_string()))?;
        return Ok(Challenge::V2(challenge));
    }
    let body = response.bytes().await?;
    let challenge: v1::PaymentRequired = serde_json::from_slice(&body).map_err(|e| {
        PayError::BadChallenge(format!(
            "no PAYMENT-REQUIRED header and the body is not a v1 challenge: {e}"
        ))
    })?;
    Ok(Challenge::V1(challenge))
}

pub(crate) fn receipt_of(headers: &reqwest::header::HeaderMap) -> Option<SettleResponse> {
    let header = headers
        .get(headers::PAYMENT_RESPONSE)
        .or_else(|| headers.get(headers::X_PAYMENT_RESPONSE))?;
    decode_header(header.as_bytes()).ok()
}

pub(crate) fn refusal_reason(
    response: &reqwest::Response,
    receipt: Option<&SettleResponse>,
) -> String {
    if let Some(r) = receipt
        && let Some(reason) = &r.error_reason
    {
        return format!(
            "{reason}{}",
            r.error_message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
    }
    if let Some(header) = response.headers().get(headers::PAYMENT_REQUIRED)
        && let Ok(challenge) = decode_header::<v2::PaymentRequired>(header.as_bytes())
        && let Some(error) = challenge.error
    {
        return error;
    }
    format!("the server answered {}", response.status())
}

/// The new challenge a refusing 402 carries in `PAYMENT-REQUIRED` (a corrective one names
/// why in `error`), when it carries one.
pub(crate) fn corrective_of(response: &reqwest::Response) -> Option<v2::PaymentRequired> {
    let header = response.headers().get(headers::PAYMENT_REQUIRED)?;
    decode_header(header.as_bytes()).ok()
}
