//! Writing each payment's outcome to the paywall's [`PaymentJournal`], when it has one: a
//! [`Note`] is taken when the payment is admitted (what it pays for) and written with the
//! outcome once it is known, before the paid response goes out.

use x402_proto::{ChargeNote, PaymentRequest, ReasonCode, SettleResponse, TokenAmount};

use crate::guard::RequestFingerprint;
use crate::journal::{PaymentEntry, PaymentState};

use super::Inner;
use super::charge::Verified;
use super::steps::{SettleFailure, spent};

/// What a payment pays for, to be journaled with its outcome.
#[derive(Clone, Debug)]
pub(super) struct Note {
    pub(super) payment: String,
    pub(super) service: Option<String>,
    pub(super) resource: String,
    pub(super) fingerprint: String,
    pub(super) job: Option<String>,
}

impl Note {
    pub(super) fn new(
        payment: String,
        parts: &http::request::Parts,
        fingerprint: &RequestFingerprint,
        service: Option<String>,
        job: Option<String>,
    ) -> Self {
        Self {
            payment,
            service,
            resource: format!("{} {}", parts.method, parts.uri.path()),
            fingerprint: fingerprint.iter().map(|b| format!("{b:02x}")).collect(),
            job,
        }
    }

    /// Records that `request` (the request as settled: its amount what was charged) settled,
    /// or was charged, with `receipt`; unless its scheme's state recorded the charge already
    /// (`verified.journaled`).
    pub(super) async fn settled(
        &self,
        inner: &Inner,
        verified: &Verified,
        request: &PaymentRequest,
        receipt: &SettleResponse,
    ) {
        if verified.journaled {
            return;
        }
        let hooked = inner.hooked(&request.requirements().scheme).is_some();
        // A scheme that keeps its own state charges there: the amount is what it charged,
        // and any transaction is the deposit that opened its channel.
        let (state, amount) = if hooked {
            (PaymentState::Charged, request.requirements().amount)
        } else {
            (
                PaymentState::Settled,
                receipt.amount.unwrap_or(request.requirements().amount),
            )
        };
        self.write(inner, verified, state, amount, receipt).await;
    }

    /// Records that settling `request` failed (or is still pending) with `failure`.
    pub(super) async fn failed(
        &self,
        inner: &Inner,
        verified: &Verified,
        request: &PaymentRequest,
        failure: &SettleFailure,
    ) {
        let receipt = match failure {
            SettleFailure::Refused(receipt) => receipt.clone(),
            SettleFailure::Unavailable(error) => SettleResponse::failure(
                request.wire_network().clone(),
                ReasonCode::UNEXPECTED_SETTLE_ERROR,
                error.to_string(),
                Some(verified.payer.clone()),
                None,
            ),
        };
        let state = if receipt.error_reason.as_ref() == Some(&ReasonCode::SETTLEMENT_PENDING) {
            PaymentState::Pending
        } else {
            PaymentState::Failed
        };
        let amount = request.requirements().amount;
        self.write(inner, verified, state, amount, &receipt).await;
    }

    /// The record of the charge the hooks of `verified`'s scheme make, for them to commit
    /// with it: made only when the paywall keeps a journal.
    pub(super) fn charging<'a>(&'a self, inner: &'a Inner, verified: &'a Verified) -> Charging<'a> {
        Charging {
            inner,
            note: self,
            verified,
        }
    }

    async fn write(
        &self,
        inner: &Inner,
        verified: &Verified,
        state: PaymentState,
        amount: TokenAmount,
        receipt: &SettleResponse,
    ) {
        let Some(journal) = &inner.journal else {
            return;
        };
        let entry = self.entry(verified, state, amount, receipt);
        if let Err(error) = journal.record(&entry).await {
            // The money moved (or did not) whatever the journal says: the answer goes out, and
            // the operator is told loudly that the record is missing.
            tracing::error!(
                %error,
                payment = %entry.payment,
                payer = %entry.payer,
                amount = %entry.amount.0,
                state = %entry.state,
                transaction = ?entry.transaction,
                "PAYMENT NOT JOURNALED: the payment journal failed; the operator's records miss this payment"
            );
        }
    }

    fn entry(
        &self,
        verified: &Verified,
        state: PaymentState,
        amount: TokenAmount,
        receipt: &SettleResponse,
    ) -> PaymentEntry {
        PaymentEntry {
            at_ms: now_ms(),
            payment: self.payment.clone(),
            service: self
                .service
                .clone()
                .unwrap_or_else(|| self.resource.clone()),
            resource: self.resource.clone(),
            payer: receipt
                .payer
                .clone()
                .filter(|payer| !payer.is_empty())
                .unwrap_or_else(|| verified.payer.clone()),
            amount,
            asset: verified.option.asset.clone(),
            network: verified.option.network.clone(),
            decimals: verified.option.decimals,
            scheme: verified.option.scheme.clone(),
            state,
            transaction: Some(receipt.transaction.clone()).filter(|tx| !tx.is_empty()),
            reason: receipt.error_reason.as_ref().map(ToString::to_string),
            fingerprint: self.fingerprint.clone(),
            receipt: receipt.clone(),
            job: self.job.clone(),
        }
    }
}

/// The journal entry of a charge a scheme's hooks make themselves ([`ChargeNote`]), for its
/// state to commit with the charge: what [`Note::settled`] would write for it.
pub(super) struct Charging<'a> {
    inner: &'a Inner,
    note: &'a Note,
    verified: &'a Verified,
}

impl ChargeNote for Charging<'_> {
    fn note(&self, receipt: &SettleResponse) -> Option<Vec<u8>> {
        let request = &self.verified.request;
        // No journal, nothing to record; a payment not used up is not journaled.
        if self.inner.journal.is_none() || !spent(self.inner, request, receipt) {
            return None;
        }
        let amount = request.requirements().amount;
        let entry = self
            .note
            .entry(self.verified, PaymentState::Charged, amount, receipt);
        entry.to_note()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
