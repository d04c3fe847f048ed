//! The seam through which a server keeps a durable record of every payment outcome
//! ([`PaymentJournal`], set with [`Paywall::with_journal`](crate::Paywall::with_journal)): one
//! [`PaymentEntry`] per payment, written once its outcome is known and before the paid response
//! goes out (a metered stream, sent before it settles, is written when it settles). A charge a
//! scheme's hooks make themselves may instead carry its entry into the scheme's own commit
//! ([`ChargeNote`](x402_proto::ChargeNote), [`PaymentEntry::to_note`]): the scheme's state then
//! hands it to the journal.
//!
//! The outcomes: settled on chain (with its transaction), charged to a scheme's own state
//! without a transaction (a `batch-settlement` voucher: the money is held in the payer's
//! channel until the server claims it), settlement still pending (the facilitator sent the
//! transaction and no receipt came within the paywall's patience), and failed (with the reason
//! code). A payment sent again after a pending or failed outcome and then settled is recorded
//! again with the new outcome; journals keep one entry per payment and let a later success
//! replace an earlier pending or failed one, never the other way round.
//!
//! A journal that fails to record is logged loudly and does not refuse a settled payment: the
//! money has moved, and the response it bought goes out.

use std::sync::Mutex;

use x402_proto::{BoxFuture, Network, Scheme, SettleResponse, TokenAmount};

/// Why a journal could not record an entry.
#[derive(Debug, Clone, thiserror::Error)]
#[error("payment journal: {0}")]
pub struct JournalError(pub String);

/// Where a payment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentState {
    /// Settled on chain: the money reached the payee in [`PaymentEntry::transaction`].
    Settled,
    /// Charged to the scheme's own state (a `batch-settlement` channel): earned, held in the
    /// payer's escrow until the server claims it. A deposit that opened the channel is named
    /// in [`PaymentEntry::transaction`].
    Charged,
    /// Sent, with no receipt within the paywall's patience: the transaction may still land.
    Pending,
    /// Not settled, for [`PaymentEntry::reason`]; nothing was served.
    Failed,
}

impl PaymentState {
    /// The state's name: `settled`, `charged`, `pending`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Settled => "settled",
            Self::Charged => "charged",
            Self::Pending => "pending",
            Self::Failed => "failed",
        }
    }

    /// The state named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "settled" => Self::Settled,
            "charged" => Self::Charged,
            "pending" => Self::Pending,
            "failed" => Self::Failed,
            _ => return None,
        })
    }

    /// Whether the payee earned the amount (settled or charged).
    pub fn earned(self) -> bool {
        matches!(self, Self::Settled | Self::Charged)
    }
}

impl std::fmt::Display for PaymentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One payment's outcome, as the paywall saw it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PaymentEntry {
    /// When the outcome was known (Unix milliseconds).
    pub at_ms: i64,
    /// The payment's identity (the facilitator's
    /// [`payment_id`](x402_proto::Facilitator::payment_id)): one entry per payment.
    pub payment: String,
    /// What was sold: the label the route's quote set ([`Quote::service`](crate::Quote::service)),
    /// else the request's method and path.
    pub service: String,
    /// The request's method and path (`POST /run`).
    pub resource: String,
    /// The paying address.
    pub payer: String,
    /// What the payee earned (or would have), in the asset's atomic units: the amount settled
    /// or charged, which for a metered payment is what the handler used.
    pub amount: TokenAmount,
    /// The token's address.
    pub asset: String,
    /// The network (CAIP-2).
    pub network: Network,
    /// The token's decimals.
    pub decimals: u8,
    /// The scheme paid with.
    pub scheme: Scheme,
    /// The outcome.
    pub state: PaymentState,
    /// The transaction: the settlement, a pending one, or a channel's deposit.
    pub transaction: Option<String>,
    /// The reason code of a pending or failed outcome.
    pub reason: Option<String>,
    /// The request paid for, as the one-payment-one-response guard fingerprints it (hex).
    pub fingerprint: String,
    /// The receipt (or failed receipt) as sent to the client.
    pub receipt: SettleResponse,
    /// The job the payment started, when the quote named one ([`Quote::job`](crate::Quote::job)).
    pub job: Option<String>,
}

impl PaymentEntry {
    /// The entry as the note a scheme's state commits with the charge it records
    /// ([`ChargeNote`](x402_proto::ChargeNote)): read back with [`Self::from_note`]. `None`
    /// if it cannot be encoded (the paywall then journals the charge itself). A field added to
    /// the entry later must read as absent from notes written before it (`Option`, or
    /// `#[serde(default)]`): notes outlive a process that stops before moving them.
    pub fn to_note(&self) -> Option<Vec<u8>> {
        serde_json::to_vec(self).ok()
    }

    /// The entry a note written by [`Self::to_note`] holds.
    pub fn from_note(note: &[u8]) -> Result<Self, JournalError> {
        serde_json::from_slice(note).map_err(|error| {
            JournalError(format!("a charge's note is not a payment entry: {error}"))
        })
    }
}

/// A durable record of payment outcomes, written by the paywall. Implementations should commit
/// before they return, batching concurrent writes (group commit) to keep the paid path fast.
pub trait PaymentJournal: Send + Sync + std::fmt::Debug {
    /// Records `entry`, replacing an entry of the same payment unless that one was earned.
    fn record<'a>(&'a self, entry: &'a PaymentEntry) -> BoxFuture<'a, Result<(), JournalError>>;
}

/// A journal in this process's memory, for tests and examples: every entry in the order it
/// was recorded.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    entries: Mutex<Vec<PaymentEntry>>,
}

impl MemoryJournal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    /// The entries, one per payment, in the order they were first recorded.
    pub fn entries(&self) -> Vec<PaymentEntry> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl PaymentJournal for MemoryJournal {
    fn record<'a>(&'a self, entry: &'a PaymentEntry) -> BoxFuture<'a, Result<(), JournalError>> {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match entries.iter_mut().find(|e| e.payment == entry.payment) {
            Some(kept) if !kept.state.earned() => *kept = entry.clone(),
            Some(_) => {}
            None => entries.push(entry.clone()),
        }
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_back_by_name() {
        for state in [
            PaymentState::Settled,
            PaymentState::Charged,
            PaymentState::Pending,
            PaymentState::Failed,
        ] {
            assert_eq!(PaymentState::parse(state.as_str()), Some(state));
        }
        assert_eq!(PaymentState::parse("refunded"), None);
    }

    #[test]
    fn an_entry_reads_back_from_its_note_and_a_foreign_note_is_refused() {
        let entry = PaymentEntry {
            at_ms: 1_764_000_000_000,
            payment: "0xabc".into(),
            service: "embeddings".into(),
            resource: "POST /run".into(),
            payer: "0x1111111111111111111111111111111111111111".into(),
            amount: TokenAmount(
                x402_proto::U256::from(340_282_366_920_938_463_463_374_607_431_768_211_455_u128)
                    * x402_proto::U256::from(7u8),
            ),
            asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".into(),
            network: Network::new("eip155:8453"),
            decimals: 6,
            scheme: Scheme::new("batch-settlement"),
            state: PaymentState::Charged,
            transaction: None,
            reason: None,
            fingerprint: "00ff".into(),
            receipt: SettleResponse::success(Network::new("eip155:8453"), Some("0x11".into()), ""),
            job: Some("job-1".into()),
        };
        assert_eq!(
            PaymentEntry::from_note(&entry.to_note().unwrap()).unwrap(),
            entry
        );
        let error = PaymentEntry::from_note(b"{\"payment\": 1}").unwrap_err();
        assert!(error.0.contains("not a payment entry"), "{error}");
    }
}
