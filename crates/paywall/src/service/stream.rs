//! A metered response whose body streams (an LLM answer under `upto`): its usage is not known
//! when the handler returns, so the response goes out at once, and the payment is settled for
//! what the handler's [`UsageMeter`] read when the body ended, or when it was dropped because
//! the client went away. An event stream that ended gets one last event carrying the receipt
//! ([`RECEIPT_EVENT`]); no `PAYMENT-RESPONSE` header can carry it, as the headers left first.
//!
//! Settling happens exactly once per response: the settlement is taken out of the body the
//! first time the body ends, fails or is dropped, and runs in its own task (a drop cannot
//! wait). A payment cannot settle once it has expired, so a stream is not allowed to outlive
//! it: one still going [`SETTLE_MARGIN`] before the offer's `maxTimeoutSeconds` have passed
//! since it started is cut off there and settled (a client reading slowly cannot run the
//! payment out).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body::{Frame, SizeHint};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use x402_proto::{
    FacilitatorError, IdempotencyKey, ReasonCode, SettleResponse, UsageMeter, encode_header,
};

use crate::guard::{Lease, StoredResponse};
use crate::price::Rejection;

use super::Inner;
use super::charge::Verified;
use super::steps::{SettleFailure, settle};
use super::usage::{self, Report};

/// The name of the server-sent event that ends a metered event stream: its `data` is the
/// receipt, base64 JSON as the `PAYMENT-RESPONSE` header carries it (`success: false` with the
/// reason when the settlement failed). It follows the upstream's `data: [DONE]`, so clients that
/// stop reading there are not confused by it.
pub const RECEIPT_EVENT: &str = "x402-payment-response";

/// How long before the offer's timeout runs out a stream still going is cut off and settled:
/// facilitators refuse payments within seconds of their deadline, and settling takes time.
pub(super) const SETTLE_MARGIN: Duration = Duration::from_secs(15);

/// What a payment still needs once its streamed response is over: settling for the usage read
/// then, and recording in the guard that the payment was spent.
pub(super) struct Unsettled {
    pub(super) inner: Arc<Inner>,
    pub(super) verified: Verified,
    pub(super) key: IdempotencyKey,
    pub(super) lease: Lease,
    pub(super) settled: watch::Sender<Option<SettleResponse>>,
    pub(super) meter: UsageMeter,
}

impl Unsettled {
    /// Settles for the usage read now (capped at the signed maximum): the receipt, or a failed
    /// receipt saying why.
    async fn settle(self) -> SettleResponse {
        let Self {
            inner,
            verified,
            key,
            lease,
            settled,
            meter,
        } = self;
        let usage = meter.reading();
        let verified = Verified {
            request: usage::metered(
                &inner,
                &verified.request,
                &verified.option,
                Report::Used(usage.clone()),
            ),
            ..verified
        };
        match settle(&inner, &verified, &key).await {
            Ok(receipt) => {
                let _ = settled.send(Some(receipt.clone()));
                // The stream cannot be sent again: a retry of this request is told so, with
                // the receipt, rather than served a new answer it did not pay for.
                let stored = not_replayed(verified.receipt, &receipt);
                if let Err(error) = lease.served(receipt.clone(), Some(stored)).await {
                    tracing::warn!(%error, "could not record a settled streamed response");
                }
                receipt
            }
            Err(failure) => {
                let receipt = match failure {
                    SettleFailure::Refused(receipt) => receipt,
                    SettleFailure::Unavailable(error) => unavailable(&verified, &error),
                };
                // The body went out before the money moved: this answer was served unpaid
                // (the payment was verified, then the payer's funds or allowance went away,
                // or the facilitator did). The payment is released; its authorization is
                // spent by nothing.
                tracing::error!(
                    payer = %verified.payer,
                    ?usage,
                    reason = ?receipt.error_reason,
                    message = ?receipt.error_message,
                    "a streamed response was served but its settlement failed"
                );
                receipt
            }
        }
    }
}

/// The failed receipt of a settlement nobody answered.
fn unavailable(verified: &Verified, error: &FacilitatorError) -> SettleResponse {
    SettleResponse::failure(
        verified.request.wire_network().clone(),
        ReasonCode::UNEXPECTED_SETTLE_ERROR,
        error.to_string(),
        Some(verified.payer.clone()),
        None,
    )
}

/// What a retry of a settled streamed request gets: 409, the receipt, and why.
fn not_replayed(kind: crate::response::ReceiptHeader, receipt: &SettleResponse) -> StoredResponse {
    let rejection = Rejection::bad_request(format!(
        "{}: this payment bought a streamed answer, which was sent and charged for what was \
         sent; a stream is not sent again, sign a new payment for a new answer",
        ReasonCode::PAYMENT_ALREADY_USED
    ))
    .with_status(StatusCode::CONFLICT);
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    kind.attach(&mut headers, receipt);
    StoredResponse {
        status: rejection.status.as_u16(),
        headers: headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    Bytes::copy_from_slice(value.as_bytes()),
                )
            })
            .collect(),
        body: Bytes::from(rejection.body.to_string()),
    }
}

/// `response` with its body wrapped so that the payment is settled when the body is over.
pub(super) fn settle_when_over(unsettled: Unsettled, response: Response<Body>) -> Response<Body> {
    let (parts, body) = response.into_parts();
    let event_stream = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim_start().starts_with("text/event-stream"));
    let timeout = Duration::from_secs(
        unsettled
            .verified
            .request
            .requirements()
            .max_timeout_seconds,
    );
    // Half the timeout when it is too short for the margin.
    let cut_off = timeout
        .checked_sub(SETTLE_MARGIN)
        .filter(|left| *left >= timeout / 2)
        .unwrap_or(timeout / 2);
    let body = MeteredBody {
        body,
        cut_off: Box::pin(tokio::time::sleep(cut_off)),
        unsettled: Some(unsettled),
        receipt: None,
        event_stream,
        tail: [b'\n'; 2],
        over: false,
    };
    Response::from_parts(parts, Body::new(body))
}

/// The handler's body, passed through; when it is over, the settlement starts.
struct MeteredBody {
    body: Body,
    /// When the stream is cut off, to be settled while its payment is still good.
    cut_off: Pin<Box<tokio::time::Sleep>>,
    /// Taken when the settlement starts: it starts once.
    unsettled: Option<Unsettled>,
    /// For an event stream that ended: the settlement, whose receipt is the last event.
    receipt: Option<JoinHandle<SettleResponse>>,
    event_stream: bool,
    /// The last two bytes sent, to end the last event before the receipt's.
    tail: [u8; 2],
    over: bool,
}

impl MeteredBody {
    /// Ends the stream: settles, and for an event stream waits to send the receipt.
    fn end(&mut self) {
        self.over = true;
        let settling = self.start_settling();
        if self.event_stream {
            self.receipt = settling;
        }
    }

    /// Starts the settlement, unless it has started already.
    fn start_settling(&mut self) -> Option<JoinHandle<SettleResponse>> {
        let unsettled = self.unsettled.take()?;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => Some(runtime.spawn(unsettled.settle())),
            Err(_) => {
                tracing::error!(
                    payer = %unsettled.verified.payer,
                    "a streamed response ended outside a runtime; it cannot be settled"
                );
                None
            }
        }
    }
}

/// The last two bytes sent, `tail` before and `data` after.
fn next_tail(tail: [u8; 2], data: &[u8]) -> [u8; 2] {
    match data {
        [] => tail,
        [last] => [tail[1], *last],
        [.., before, last] => [*before, *last],
    }
}

/// The receipt as a server-sent event, after whatever ended the stream (`tail`).
fn receipt_event(tail: [u8; 2], receipt: &SettleResponse) -> Bytes {
    let separator = match tail {
        [b'\n', b'\n'] => "",
        [_, b'\n'] => "\n",
        _ => "\n\n",
    };
    Bytes::from(format!(
        "{separator}event: {RECEIPT_EVENT}\ndata: {}\n\n",
        encode_header(receipt)
    ))
}

impl http_body::Body for MeteredBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        loop {
            if let Some(settling) = &mut this.receipt {
                let settled = ready!(Pin::new(settling).poll(cx));
                this.receipt = None;
                return Poll::Ready(match settled {
                    Ok(receipt) => Some(Ok(Frame::data(receipt_event(this.tail, &receipt)))),
                    Err(error) => {
                        tracing::error!(%error, "the settlement of a streamed response failed");
                        None
                    }
                });
            }
            if this.over {
                return Poll::Ready(None);
            }
            if this.cut_off.as_mut().poll(cx).is_ready() {
                tracing::warn!(
                    "a metered stream outlived its payment's timeout less the settling margin; \
                     it is cut off and settled"
                );
                this.end();
                continue;
            }
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        this.tail = next_tail(this.tail, data);
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Some(Err(error)) => {
                    // The handler's stream broke off: settle what went out before it.
                    this.over = true;
                    this.start_settling();
                    return Poll::Ready(Some(Err(error)));
                }
                None => this.end(),
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        // The receipt event makes the length unknown.
        SizeHint::default()
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        // The client went away (the server drops the body), or the body was read to its end:
        // then the settlement has started already and this does nothing.
        self.start_settling();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_receipt_event_starts_after_the_last_event_ended() {
        let receipt = SettleResponse::success(x402_proto::Network::BASE, None, "0xabc");
        let data = encode_header(&receipt);
        let expected = format!("event: {RECEIPT_EVENT}\ndata: {data}\n\n");
        assert_eq!(receipt_event(*b"\n\n", &receipt), expected);
        assert_eq!(receipt_event(*b"]\n", &receipt), format!("\n{expected}"));
        assert_eq!(receipt_event(*b"E]", &receipt), format!("\n\n{expected}"));
    }

    #[test]
    fn the_tail_is_the_last_two_bytes_sent() {
        let mut tail = [b'\n'; 2];
        for (chunk, expected) in [
            (&b"data: x\n\n"[..], *b"\n\n"),
            (b"d", *b"\nd"),
            (b"", *b"\nd"),
            (b"\n", *b"d\n"),
        ] {
            tail = next_tail(tail, chunk);
            assert_eq!(tail, expected, "{}", String::from_utf8_lossy(chunk));
        }
    }
}
