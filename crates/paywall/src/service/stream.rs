//! A metered response whose body streams (an LLM answer under `upto`): its usage is not known
//! when the handler returns, so the response goes out at once, and the payment is settled for
//! what the handler's [`UsageMeter`] read when the body ended, or when it was dropped because
//! the client went away. An event stream that ended gets one last event carrying the receipt
//! ([`RECEIPT_EVENT`]); no `PAYMENT-RESPONSE` header can carry it, as the headers left first.
//!
//! Settling happens exactly once per response: the settlement is taken out of a slot the body
//! shares with a watchdog task the first time the body ends, fails or is dropped, or the
//! watchdog's time comes, and runs in its own task (a drop cannot wait). A payment cannot
//! settle once it has expired, so a stream is not allowed to outlive it: one still going
//! [`SETTLE_MARGIN`] before the offer's `maxTimeoutSeconds` have passed since its payment was
//! verified, or [`DEADLINE_MARGIN`] before the last second its payment can settle
//! ([`SchemeServer::settle_by`](x402_proto::SchemeServer::settle_by), the payer's signed
//! deadline), is cut off there and settled (a client reading slowly, or a payer signing a
//! short deadline, cannot run the payment out). The watchdog settles at the cut-off whether or
//! not the body is polled: a client that stops reading but keeps its connection open leaves
//! the server unable to write, and the server then stops polling the body; the body, polled
//! again after the cut-off, sends nothing more.
//!
//! A paywall shutting down ([`Paywall::settle_pending`](super::Paywall::settle_pending)) cuts
//! off the streams still running the same way, and waits for their settlements: each stream's
//! settlement is registered with the paywall's [`Deferred`] until it has finished.
//!
//! Content that goes out before its payment settles can be left unpaid: the payer may move its
//! funds away meanwhile. So a stream is admitted ([`admit`]) only when its payment leaves at
//! least [`least_window`] to stream, its payer has fewer than
//! [`PaywallConfig::streams_per_payer`](super::PaywallConfig::streams_per_payer) streams
//! unsettled, and its payer never left one unpaid; a settlement that fails for a reason of the
//! payer's is recorded in the guard, and that payer is served no more streams.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode, header};
use http_body::{Frame, SizeHint};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use x402_proto::{
    FacilitatorError, IdempotencyKey, PaymentId, ReasonCode, SettleResponse, UsageMeter,
    encode_header,
};

use crate::guard::{Lease, StreamAdmission, StreamTicket, UnpaidStream};
use crate::price::Rejection;
use crate::response::{self, Challenge};

use super::Inner;
use super::charge::Verified;
use super::deferred::Registration;
use super::steps::{SettleFailure, not_replayed, settle};
use super::usage::{self, Report};

/// The name of the server-sent event that ends a metered event stream: its `data` is the
/// receipt, base64 JSON as the `PAYMENT-RESPONSE` header carries it (`success: false` with the
/// reason when the settlement failed). It follows the upstream's `data: [DONE]`, so clients that
/// stop reading there are not confused by it.
pub const RECEIPT_EVENT: &str = "x402-payment-response";

/// How long before the offer's timeout runs out a stream still going is cut off and settled:
/// facilitators refuse payments within seconds of their deadline, and settling takes time.
pub(super) const SETTLE_MARGIN: Duration = Duration::from_secs(15);

/// How long before the last second its payment can settle a stream still going is cut off:
/// the settlement must reach the facilitator by then.
pub(super) const DEADLINE_MARGIN: Duration = Duration::from_secs(10);

/// The least time to stream that a payment must leave (see [`least_window`]).
pub(super) const MIN_STREAM_WINDOW: Duration = Duration::from_secs(20);

/// How long a stream paid against an offer of `max_timeout` seconds may run from its start by
/// the offer alone: the timeout less [`SETTLE_MARGIN`], or half the timeout when that is
/// shorter.
fn offer_window(max_timeout: u64) -> Duration {
    let timeout = Duration::from_secs(max_timeout);
    timeout
        .checked_sub(SETTLE_MARGIN)
        .filter(|left| *left >= timeout / 2)
        .unwrap_or(timeout / 2)
}

/// How long a stream paid against an offer of `max_timeout` seconds, by a payment that can
/// settle until Unix second `settle_by` (if it says), may run from Unix second `now`: the
/// offer's window, or less, so as to settle by `settle_by` with [`DEADLINE_MARGIN`] to spare.
pub(super) fn stream_window(max_timeout: u64, settle_by: Option<u64>, now: u64) -> Duration {
    let offer = offer_window(max_timeout);
    match settle_by {
        Some(last) => {
            let left = Duration::from_secs(last.saturating_sub(now));
            offer.min(left.saturating_sub(DEADLINE_MARGIN))
        }
        None => offer,
    }
}

/// The least window ([`stream_window`]) a stream paid against an offer of `max_timeout`
/// seconds must have to be admitted: [`MIN_STREAM_WINDOW`], or half the offer's own window
/// when that is shorter. An honest payer signs its deadline at the offer's timeout from when it
/// signs (as the official `upto` client does), so it leaves about the offer's window: this
/// asks for less, keeping room for the time between signing and arriving.
pub(super) fn least_window(max_timeout: u64) -> Duration {
    MIN_STREAM_WINDOW.min(offer_window(max_timeout) / 2)
}

/// The current Unix second.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// A metered stream admitted to go out: its payer's hold on a stream, and when it is cut off.
pub(super) struct Admitted {
    /// Held until the stream is over (settled or recorded unpaid); dropped, it lets go.
    _ticket: StreamTicket,
    cut_off: Instant,
}

/// Admits the metered stream `verified` pays for, before it goes out (before the handler runs
/// when the quote says it streams): its payment must leave [`least_window`] to stream, and its
/// payer must have fewer than `streams_per_payer` unsettled streams and no unpaid one. The
/// answer that refuses it otherwise: 402 saying what to sign or why this payer is not served
/// streams, 429 while its other streams run, 503 when the guard cannot answer.
pub(super) async fn admit(
    inner: &Inner,
    verified: &Verified,
    challenge: &Challenge,
    headers: &HeaderMap,
) -> Result<Admitted, Response<Body>> {
    let paid = verified.request.requirements();
    let settle_by = inner
        .scheme(&paid.scheme)
        .and_then(|scheme| scheme.settle_by(verified.request.payload()));
    let now = unix_now();
    // The offer's window counts from when the payment was verified (the handler may have
    // taken a while to start its stream); the payment's deadline is a point in time.
    let since_verified = verified.at.elapsed();
    let window = stream_window(paid.max_timeout_seconds, settle_by, now)
        .min(offer_window(paid.max_timeout_seconds).saturating_sub(since_verified));
    let least = least_window(paid.max_timeout_seconds);
    if window < least {
        let message = format!(
            "this payment can be settled only until Unix second {} (its deadline less the \
             facilitator's buffer), which leaves {} s to stream this answer and settle it; a \
             metered stream needs at least {} s: sign a new payment whose deadline is \
             maxTimeoutSeconds ({}) after you sign it",
            settle_by.unwrap_or_default(),
            window.as_secs(),
            least.as_secs(),
            paid.max_timeout_seconds,
        );
        return Err(challenge.respond(&message, headers, None));
    }
    let guard = &inner.guard;
    match guard
        .admit_stream(&verified.payer, inner.config.streams_per_payer)
        .await
    {
        Ok(StreamAdmission::Granted) => Ok(Admitted {
            _ticket: StreamTicket::new(guard.clone(), verified.payer.clone()),
            cut_off: Instant::now() + window,
        }),
        Ok(StreamAdmission::Unpaid(unpaid)) => {
            tracing::warn!(payer = %verified.payer, %unpaid, "a payer who left a stream unpaid asked for another; refused");
            let message = format!(
                "payer {} left a streamed answer unpaid: {unpaid}. Metered streams are not \
                 served to this payer; ask for an answer that is not streamed, or pay with \
                 `exact`",
                verified.payer
            );
            Err(challenge.respond(&message, headers, None))
        }
        Ok(StreamAdmission::Busy { streams }) => Err(response::rejection(
            Rejection::bad_request(format!(
                "payer {} has {streams} metered stream(s) not yet settled, the most this server \
                 serves at once; wait until one is over, then send this request again (the \
                 payment is not used)",
                verified.payer
            ))
            .with_status(StatusCode::TOO_MANY_REQUESTS),
        )),
        Err(error) => {
            tracing::error!(%error, "payment guard failed; refusing to stream");
            Err(response::unavailable(&FacilitatorError::Unavailable(
                error.to_string(),
            )))
        }
    }
}

/// What a payment still needs once its streamed response is over: settling for the usage read
/// then, recording in the guard that the payment was spent (or that its payer left it unpaid),
/// and letting the payer's hold on a stream go.
pub(super) struct Unsettled {
    pub(super) inner: Arc<Inner>,
    pub(super) note: super::record::Note,
    pub(super) verified: Verified,
    pub(super) payment: PaymentId,
    pub(super) key: IdempotencyKey,
    pub(super) lease: Lease,
    pub(super) settled: watch::Sender<Option<SettleResponse>>,
    pub(super) meter: UsageMeter,
    pub(super) admitted: Admitted,
}

/// Whether a settlement refused with `reason` failed for a reason of the payer's (funds or
/// allowance gone, nonce spent, deadline passed, signature, …): every refusal but those that
/// say the facilitator, the chain or this server failed.
fn payers_fault(reason: Option<&ReasonCode>) -> bool {
    const NOT_THE_PAYERS: [ReasonCode; 11] = [
        ReasonCode::UNEXPECTED_SETTLE_ERROR,
        ReasonCode::SETTLEMENT_PENDING,
        ReasonCode::CHAIN_UNAVAILABLE,
        ReasonCode::INVALID_NETWORK,
        ReasonCode::UNSUPPORTED_SCHEME,
        ReasonCode::INVALID_X402_VERSION,
        ReasonCode::INVALID_PAYMENT_REQUIREMENTS,
        ReasonCode::UPTO_EVM_SETTLEMENT_EXCEEDS_AMOUNT,
        ReasonCode::UPTO_AMOUNT_EXCEEDS_PERMITTED,
        ReasonCode::UPTO_FACILITATOR_MISMATCH,
        ReasonCode::PERMIT2_PROXY_NOT_DEPLOYED,
    ];
    reason.is_none_or(|reason| !NOT_THE_PAYERS.contains(reason))
}

impl Unsettled {
    /// Settles for the usage read now (capped at the signed maximum): the receipt, or a failed
    /// receipt saying why.
    async fn settle(self) -> SettleResponse {
        let Self {
            inner,
            note,
            verified,
            payment,
            key,
            lease,
            settled,
            meter,
            admitted,
        } = self;
        let usage = meter.reading();
        let mut verified = verified;
        verified.request = usage::metered(
            &inner,
            verified.request,
            &verified.option,
            Report::Used(usage.clone()),
        );
        match settle(&inner, &mut verified, &key, Some(&note)).await {
            Ok(receipt) => {
                note.settled(&inner, &verified, &verified.request, &receipt)
                    .await;
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
                note.failed(&inner, &verified, &verified.request, &failure)
                    .await;
                let (receipt, refused) = match failure {
                    SettleFailure::Refused(receipt) => (receipt, true),
                    SettleFailure::Unavailable(error) => (unavailable(&verified, &error), false),
                };
                // The body went out before the money moved: this answer was served unpaid
                // (the payment was verified, then the payer's funds or allowance went away,
                // or the facilitator did). The payment is released; its authorization is
                // spent by nothing.
                let payers = refused && payers_fault(receipt.error_reason.as_ref());
                tracing::error!(
                    payer = %verified.payer,
                    payment = %payment,
                    ?usage,
                    amount = %verified.request.requirements().amount.0,
                    reason = ?receipt.error_reason,
                    message = ?receipt.error_message,
                    payers_fault = payers,
                    "a streamed response was served but its settlement failed"
                );
                if payers {
                    // The payer is served no more streams (recorded before its hold on this
                    // one goes, so that no other stream slips in between).
                    let unpaid = UnpaidStream {
                        payer: verified.payer.clone(),
                        payment,
                        network: verified.option.network.clone(),
                        asset: verified.option.asset.clone(),
                        amount: verified.request.requirements().amount.0,
                        reason: receipt.error_reason.clone(),
                        message: receipt.error_message.clone(),
                        at: unix_now(),
                    };
                    if let Err(error) = inner.guard.record_unpaid_stream(unpaid).await {
                        tracing::error!(%error, payer = %verified.payer, "could not record an unpaid stream");
                    }
                }
                drop(admitted);
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

/// `response` with its body wrapped so that the payment is settled when the body is over, or
/// at the cut-off by a watchdog task if the body is not over by then (polled or not).
pub(super) fn settle_when_over(unsettled: Unsettled, response: Response<Body>) -> Response<Body> {
    let (parts, body) = response.into_parts();
    let event_stream = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim_start().starts_with("text/event-stream"));
    let cut_off = unsettled.admitted.cut_off;
    let deferred = unsettled.inner.deferred.clone();
    let registration = deferred.register(&unsettled.verified.payer, &unsettled.payment);
    let closing = deferred.closing();
    let shutdown = deferred.closing();
    let (receipt_tx, receipt_rx) = oneshot::channel();
    let slot: Slot = Arc::new(Mutex::new(Some((unsettled, receipt_tx, registration))));
    let watched = slot.clone();
    let watchdog = tokio::spawn(async move {
        tokio::select! {
            () = tokio::time::sleep_until(cut_off) => {
                if start_settling(&watched) {
                    tracing::warn!("{CUT_OFF}");
                }
            }
            () = shutdown => {
                if start_settling(&watched) {
                    tracing::warn!("{SHUT_DOWN}");
                }
            }
        }
    });
    let body = MeteredBody {
        body,
        cut_off: Box::pin(tokio::time::sleep_until(cut_off)),
        closing: Box::pin(closing),
        slot,
        watchdog,
        settled: Some(receipt_rx),
        receipt: None,
        event_stream,
        tail: [b'\n'; 2],
        over: false,
    };
    Response::from_parts(parts, Body::new(body))
}

/// Logged when a stream is cut off.
const CUT_OFF: &str = "a metered stream outlived the time its payment leaves to settle it; it is \
    cut off and settled";

/// Logged when a stream is cut off because the server shuts down.
const SHUT_DOWN: &str = "a metered stream was still running when the server shut down; it is \
    cut off and settled";

/// What a stream still has to settle, where its receipt goes, and its registration with the
/// paywall's deferred settlements, shared by its body and its watchdog: whichever takes it
/// first settles (once).
type Slot = Arc<Mutex<Option<(Unsettled, oneshot::Sender<SettleResponse>, Registration)>>>;

/// Starts settling what `slot` holds, in its own task, unless it has started already: whether
/// this call started it.
fn start_settling(slot: &Slot) -> bool {
    let taken = slot
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let Some((unsettled, receipt, registration)) = taken else {
        return false;
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                let _ = receipt.send(unsettled.settle().await);
                // The settlement has finished: a shutdown waiting for it may go on.
                drop(registration);
            });
        }
        Err(_) => {
            tracing::error!(
                payer = %unsettled.verified.payer,
                "a streamed response ended outside a runtime; it cannot be settled"
            );
        }
    }
    true
}

/// The handler's body, passed through; when it is over, the settlement starts.
struct MeteredBody {
    body: Body,
    /// When the stream is cut off, to be settled while its payment is still good.
    cut_off: Pin<Box<tokio::time::Sleep>>,
    /// Ready once the server shuts down: the stream is cut off then.
    closing: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// The settlement, until the body or the watchdog starts it.
    slot: Slot,
    /// Settles at the cut-off if the body has not ended by then; stopped once it has.
    watchdog: JoinHandle<()>,
    /// The settlement's receipt, whoever started it.
    settled: Option<oneshot::Receiver<SettleResponse>>,
    /// For an event stream that ended: the receipt to send as the last event.
    receipt: Option<oneshot::Receiver<SettleResponse>>,
    event_stream: bool,
    /// The last two bytes sent, to end the last event before the receipt's.
    tail: [u8; 2],
    over: bool,
}

impl MeteredBody {
    /// Ends the stream: settles, and for an event stream waits to send the receipt. Whether
    /// this started the settlement.
    fn end(&mut self) -> bool {
        self.over = true;
        let started = self.settle();
        if self.event_stream {
            self.receipt = self.settled.take();
        }
        started
    }

    /// Starts the settlement unless it has started already (the watchdog is not needed
    /// then): whether this started it.
    fn settle(&mut self) -> bool {
        self.watchdog.abort();
        start_settling(&self.slot)
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
                    Err(_) => {
                        tracing::error!("the settlement of a streamed response gave no receipt");
                        None
                    }
                });
            }
            if this.over {
                return Poll::Ready(None);
            }
            if this.cut_off.as_mut().poll(cx).is_ready() {
                if this.end() {
                    tracing::warn!("{CUT_OFF}");
                }
                continue;
            }
            if this.closing.as_mut().poll(cx).is_ready() {
                if this.end() {
                    tracing::warn!("{SHUT_DOWN}");
                }
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
                    this.settle();
                    return Poll::Ready(Some(Err(error)));
                }
                None => {
                    this.end();
                }
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
        self.settle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seconds facilitators refuse a Permit2 deadline within (`@x402/evm` 2.27's buffer,
    /// ours too): what `upto`'s `settle_by` takes off the deadline.
    const FACILITATOR_BUFFER: u64 = 6;

    #[test]
    fn a_stream_runs_until_the_offer_or_the_payment_runs_out() {
        let now = 1_760_000_000;
        // No deadline: the offer's timeout less the margin, or half a short one.
        assert_eq!(stream_window(300, None, now), Duration::from_secs(285));
        assert_eq!(stream_window(20, None, now), Duration::from_secs(10));
        // A deadline sooner than the offer's: settled with the margin to spare.
        assert_eq!(
            stream_window(300, Some(now + 40), now),
            Duration::from_secs(30)
        );
        // A later one changes nothing.
        assert_eq!(
            stream_window(300, Some(now + 4_000), now),
            Duration::from_secs(285)
        );
        // Too close, or past: nothing.
        assert_eq!(stream_window(300, Some(now + 5), now), Duration::ZERO);
        assert_eq!(stream_window(300, Some(now - 5), now), Duration::ZERO);
    }

    #[test]
    fn the_official_clients_deadlines_leave_enough_time_to_stream() {
        // `@x402/evm` 2.27's upto client signs `deadline = now + maxTimeoutSeconds`; the
        // payment arrives some seconds later. Our client signs the same.
        for max_timeout in [30u64, 60, 120, 300, 3_600] {
            let least = least_window(max_timeout);
            let arrives = offer_window(max_timeout) / 2 - Duration::from_secs(1);
            for delay in 0..=arrives.as_secs() {
                let signed_at = 1_760_000_000;
                let settle_by = signed_at + max_timeout - FACILITATOR_BUFFER;
                let window = stream_window(max_timeout, Some(settle_by), signed_at + delay);
                assert!(
                    window >= least,
                    "maxTimeoutSeconds {max_timeout}, arriving after {delay} s: {window:?} < {least:?}"
                );
            }
        }
        // The server's default offer (300 s) gives a payment arriving within 4 minutes of
        // being signed the full minimum.
        assert_eq!(least_window(300), MIN_STREAM_WINDOW);
        assert!(
            stream_window(300, Some(1_000 + 300 - FACILITATOR_BUFFER), 1_000 + 240)
                >= MIN_STREAM_WINDOW
        );
        // A deadline signed to leave less is refused.
        assert!(
            stream_window(300, Some(1_000 + 35 - FACILITATOR_BUFFER), 1_000) < MIN_STREAM_WINDOW
        );
    }

    #[test]
    fn only_refusals_that_name_the_facilitator_or_the_chain_are_not_the_payers() {
        for reason in [
            ReasonCode::PERMIT2_INSUFFICIENT_BALANCE,
            ReasonCode::PERMIT2_ALLOWANCE_REQUIRED,
            ReasonCode::PERMIT2_INVALID_NONCE,
            ReasonCode::PERMIT2_DEADLINE_EXPIRED,
            ReasonCode::PERMIT2_INVALID_SIGNATURE,
            ReasonCode::INSUFFICIENT_FUNDS,
            ReasonCode::UPTO_EVM_TRANSACTION_FAILED,
            ReasonCode::new("some_new_reason"),
        ] {
            assert!(payers_fault(Some(&reason)), "{reason}");
        }
        assert!(payers_fault(None));
        assert!(!payers_fault(Some(&ReasonCode::UNEXPECTED_SETTLE_ERROR)));
        assert!(!payers_fault(Some(&ReasonCode::CHAIN_UNAVAILABLE)));
    }

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
