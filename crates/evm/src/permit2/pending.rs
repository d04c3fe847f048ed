//! The memory of sent Permit2 settlements and the turns that keep one settlement of a payment
//! at a time.

use super::*;

/// How long a sent settlement is remembered.
const PENDING_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// A sent settlement: its transaction, the transfer it must make, since when, and the
/// idempotency key of the request it was settled for.
type PendingSend = (
    B256,
    TransferExpectation,
    std::time::Instant,
    Option<IdempotencyKey>,
);

/// Sent settlements by the owner and Permit2 nonce they spend.
type PendingByPermit = std::collections::HashMap<(Address, U256), PendingSend>;

/// One settlement of a Permit2 payment at a time: a turn per owner and nonce.
type Turns = std::collections::HashMap<(Address, U256), Arc<tokio::sync::Mutex<()>>>;

/// Settlements sent for Permit2 payments, by the owner's Permit2 nonce, for five minutes (in
/// memory). A retry of the same payment (the official server retries once after
/// `settlement_pending`; our paywall until its patience runs out, or after a lost answer)
/// waits for that transaction and answers for it instead of verifying again and sending a
/// second one. One settled for a request with an idempotency key answers that key as often as
/// it asks (another key gets `duplicate_settlement`); one with no key hands its success out
/// once. Settlements of one payment take turns, so concurrent calls send one transaction.
#[derive(Debug, Default)]
pub(crate) struct PendingSends {
    entries: std::sync::Mutex<PendingByPermit>,
    turns: std::sync::Mutex<Turns>,
}

/// The owner and Permit2 nonce a request's payment spends.
fn permit_key(request: &PaymentRequest) -> Option<(Address, U256)> {
    let permit = request.payload().get("permit2Authorization")?;
    let owner: Address = permit.get("from")?.as_str()?.parse().ok()?;
    let nonce: U256 = permit.get("nonce")?.as_str()?.parse().ok()?;
    Some((owner, nonce))
}

impl PendingSends {
    fn entries(&self) -> std::sync::MutexGuard<'_, PendingByPermit> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn remember(
        &self,
        settle: &ProxySettle,
        tx_hash: B256,
        key: Option<&IdempotencyKey>,
    ) {
        let mut entries = self.entries();
        entries.retain(|_, entry| entry.2.elapsed() < PENDING_TTL);
        entries.insert(
            (settle.transfer.from, settle.nonce),
            (
                tx_hash,
                settle.transfer,
                std::time::Instant::now(),
                key.cloned(),
            ),
        );
    }

    /// Waits for the turn to settle `request`'s payment (`None` when it names none).
    pub(crate) async fn turn(
        &self,
        request: &PaymentRequest,
    ) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let key = permit_key(request)?;
        let turn = {
            let mut turns = self
                .turns
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            turns.retain(|_, turn| Arc::strong_count(turn) > 1);
            turns.entry(key).or_default().clone()
        };
        Some(turn.lock_owned().await)
    }

    /// When a settlement of `request`'s payment was sent: waits for its transaction and
    /// answers for it, with the amount it moves (or `duplicate_settlement` for a request with
    /// another idempotency key than the one it was settled for).
    pub(crate) async fn resume(
        &self,
        chain: &ExactEvmScheme,
        request: &PaymentRequest,
        key: Option<&IdempotencyKey>,
        failed: ReasonCode,
    ) -> Option<SettleResponse> {
        let permit = permit_key(request)?;
        let (tx_hash, transfer, _, settled_for) = self.entries().get(&permit).cloned()?;
        let network = request.wire_network().clone();
        if settled_for.is_some() && settled_for.as_ref() != key {
            return Some(SettleResponse::failure(
                network,
                ReasonCode::DUPLICATE_SETTLEMENT,
                "this payment was settled for another request",
                permit_payer(request),
                Some(tx_hash.to_string()),
            ));
        }
        let outcome = chain
            .wait_for_outcome(tx_hash, &transfer, chain.receipt_timeout())
            .await;
        let settle = ProxySettle {
            proxy: Address::ZERO,
            input: Vec::new(),
            transfer,
            nonce: permit.1,
        };
        let mut answer = settle.answer(outcome, self, key, network, permit_payer(request), failed);
        if answer.success {
            answer.amount = Some(TokenAmount(transfer.value));
            if settled_for.is_none() {
                // A settlement with no key hands its success out once.
                self.entries().remove(&permit);
            }
        }
        Some(answer)
    }
}
