//! Single flight: concurrent calls for one payment share one settlement task, and its
//! success goes to exactly one of them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::B256;
use tokio::sync::watch;
use x402_evm::claimed_payer;
use x402_proto::{FacilitatorError, PaymentRequest, SettleResponse};

use super::{FacilitatorService, answers, identify};
use crate::store::SettlementKey;

/// Where a settlement in flight stands, as its waiters see it.
#[derive(Debug, Clone)]
pub(super) enum Progress {
    /// No transaction yet.
    Working,
    /// This transaction is the newest sent.
    Submitted(B256),
    /// The settlement's answer.
    Done(Result<SettleResponse, FacilitatorError>),
}

/// One settlement in flight, in the service's map.
#[derive(Debug)]
pub(super) struct InFlight {
    /// The payment it settles: a different payment on the same key is a nonce conflict.
    pub(super) fingerprint: B256,
    /// Where it stands.
    pub(super) progress: watch::Receiver<Progress>,
    /// Who gets its success.
    pub(super) answer: Arc<Mutex<AnswerSlot>>,
}

/// Who may take a settlement's success while it is in flight.
#[derive(Debug, Default)]
pub(super) struct AnswerSlot {
    /// The caller waiting for the answer (`key:<idempotency key>` or `call:<id>`); others
    /// asking meanwhile are refused.
    holder: Option<String>,
    /// The settlement is being written as confirmed, handed to `holder`: nobody may take or
    /// leave the slot any more.
    sealed: bool,
}

/// Whom a successful answer goes to, as far as the slot knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HandOut {
    /// To the caller asking.
    Asker,
    /// To another caller: the asker is refused.
    Another,
    /// The slot cannot tell (not sealed, or sealed with nobody waiting): the log decides.
    AskTheLog,
}

impl AnswerSlot {
    /// Takes the right to the answer for `asker`, unless another caller holds it (`false`).
    /// The holder asking again keeps it; nobody new takes a sealed slot.
    fn take(&mut self, asker: &str) -> bool {
        match self.holder.as_deref() {
            Some(holder) if holder != asker => false,
            Some(_) => true,
            None if !self.sealed => {
                self.holder = Some(asker.to_owned());
                true
            }
            None => true,
        }
    }

    /// `asker` is being answered before the settlement ended. An anonymous caller cannot come
    /// back as itself, so it lets go and the next call may take the answer; a keyed caller
    /// keeps its claim. Returns whether the slot is sealed (the outcome is being written).
    fn leave_pending(&mut self, asker: &str) -> bool {
        if !self.sealed && is_anonymous(asker) && self.holder.as_deref() == Some(asker) {
            self.holder = None;
        }
        self.sealed
    }

    /// Whom a success goes to.
    fn hand_out_to(&self, asker: &str) -> HandOut {
        match self.holder.as_deref() {
            _ if !self.sealed => HandOut::AskTheLog,
            Some(holder) if holder == asker => HandOut::Asker,
            Some(_) => HandOut::Another,
            None => HandOut::AskTheLog,
        }
    }

    /// Seals the slot as the settlement is written confirmed, and names who it goes to.
    pub(super) fn seal(&mut self) -> Option<String> {
        self.sealed = true;
        self.holder.clone()
    }
}

/// Locks an answer slot.
pub(super) fn lock_slot(slot: &Mutex<AnswerSlot>) -> std::sync::MutexGuard<'_, AnswerSlot> {
    // Single-field updates only: a poisoned lock holds a consistent slot.
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Ends an in-flight entry however its settlement task ends. A task that panics (or is
/// cancelled) leaves no entry for later callers to wait on forever: they are told it stopped,
/// and the log record is reconciled at the next start or by the next settle.
pub(super) struct InFlightEntry {
    /// The service whose map holds the entry.
    pub(super) service: FacilitatorService,
    /// The entry's key.
    pub(super) key: SettlementKey,
    /// Where the settlement's waiters are told its progress.
    pub(super) sender: watch::Sender<Progress>,
}

impl Drop for InFlightEntry {
    fn drop(&mut self) {
        if !matches!(*self.sender.borrow(), Progress::Done(_)) {
            self.sender
                .send_replace(Progress::Done(Err(FacilitatorError::Unavailable(
                    "the settlement stopped unexpectedly; settle again for its outcome".into(),
                ))));
        }
        self.service.lock_in_flight().remove(&self.key);
    }
}

/// Whether `asker` names an anonymous call (see [`anonymous_caller`]).
fn is_anonymous(asker: &str) -> bool {
    asker.starts_with("call:")
}

/// A name for one anonymous `/settle` call, unique across restarts (the Permit2 settle path
/// names its callers the same way: one log, one spelling of holders).
pub(super) fn anonymous_caller() -> String {
    x402_evm::permit2::Holder::anonymous().into()
}

impl FacilitatorService {
    /// Joins the settlement of `request` in flight, or starts it, and answers `asker` within
    /// the settle wait.
    pub(super) async fn settle_inner(
        &self,
        request: &PaymentRequest,
        asker: &str,
    ) -> Result<SettleResponse, FacilitatorError> {
        let network = request.wire_network().clone();
        let chain = match self.chain_for(request) {
            Ok(chain) => chain,
            Err(error) => return answers::settle_refusal(&error, request),
        };
        if let Some(refused) = Self::check_asset(chain, request) {
            return Ok(answers::refused_settlement(network, refused));
        }
        let Some(identity) = identify(chain.scheme.chain_id(), request) else {
            // Unreadable payload or requirements: verify says precisely what is wrong.
            return match chain.scheme.verify(request).await {
                Err(error) => answers::settle_refusal(&error, request),
                Ok(_) => Err(FacilitatorError::Internal(
                    "a payment verified that could not be identified".into(),
                )),
            };
        };
        let key = identity.key;
        let payer = Some(key.payer.to_checksum(None));
        let (mut progress, slot) = {
            let mut in_flight = self.lock_in_flight();
            match in_flight.get(&identity.key) {
                Some(existing) if existing.fingerprint != identity.fingerprint => {
                    return Ok(answers::nonce_conflict(network, &identity.key));
                }
                Some(existing) => (existing.progress.clone(), existing.answer.clone()),
                None => {
                    let (sender, receiver) = watch::channel(Progress::Working);
                    let slot = Arc::new(Mutex::new(AnswerSlot::default()));
                    in_flight.insert(
                        identity.key,
                        InFlight {
                            fingerprint: identity.fingerprint,
                            progress: receiver.clone(),
                            answer: slot.clone(),
                        },
                    );
                    // The settlement runs in its own task: a caller that goes away (timeout,
                    // dropped connection) does not stop money that is moving.
                    let service = self.clone();
                    let request = request.clone();
                    tokio::spawn(async move {
                        let entry = InFlightEntry {
                            service: service.clone(),
                            key: identity.key,
                            sender,
                        };
                        let outcome = service
                            .run_settlement(identity, request, &entry.sender)
                            .await;
                        entry.sender.send_replace(Progress::Done(outcome));
                    });
                    (receiver, slot)
                }
            }
        };
        // Take the right to the answer, unless another caller holds it.
        if !lock_slot(&slot).take(asker) {
            return Ok(answers::duplicate(network, payer));
        }
        let finished = match tokio::time::timeout(
            self.inner.settle_wait,
            progress.wait_for(|p| matches!(p, Progress::Done(_))),
        )
        .await
        {
            Ok(Ok(done)) => Some(done.clone()),
            // Timed out, or the task is gone: report where it stands.
            _ => None,
        };
        let mut current = finished.unwrap_or_else(|| progress.borrow().clone());
        if !matches!(current, Progress::Done(_)) {
            let sealed = lock_slot(&slot).leave_pending(asker);
            if sealed {
                // The outcome is being written for us right now: wait for the write.
                if let Ok(Ok(done)) = tokio::time::timeout(
                    Duration::from_secs(10),
                    progress.wait_for(|p| matches!(p, Progress::Done(_))),
                )
                .await
                {
                    current = done.clone();
                }
            }
        }
        match current {
            Progress::Done(Ok(answer)) if answer.success => {
                self.hand_out(&key, &slot, asker, answer).await
            }
            Progress::Done(outcome) => outcome,
            Progress::Submitted(tx_hash) => {
                Ok(answers::pending(network, claimed_payer(request), tx_hash))
            }
            Progress::Working => Ok(answers::preparing(network, claimed_payer(request))),
        }
    }

    /// Gives a successful answer to `asker` if it is theirs to take, else the refusal.
    async fn hand_out(
        &self,
        key: &SettlementKey,
        slot: &Mutex<AnswerSlot>,
        asker: &str,
        answer: SettleResponse,
    ) -> Result<SettleResponse, FacilitatorError> {
        let to = lock_slot(slot).hand_out_to(asker);
        match to {
            HandOut::Asker => return Ok(answer),
            HandOut::Another => return Ok(answers::duplicate(answer.network, answer.payer)),
            HandOut::AskTheLog => {}
        }
        // Settled earlier, or nobody was waiting when it ended: the log decides.
        if self.inner.store.hand_out(key, asker).await? {
            Ok(answer)
        } else {
            Ok(answers::duplicate(answer.network, answer.payer))
        }
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::Address;

    use super::*;
    use crate::metrics::Metrics;

    const KEYED: &str = "key:order-7";

    #[test]
    fn the_first_asker_holds_the_answer_and_a_second_is_refused() {
        let mut slot = AnswerSlot::default();
        let first = anonymous_caller();
        let second = anonymous_caller();
        assert_ne!(first, second, "every anonymous call has its own name");
        assert!(slot.take(&first));
        assert_eq!(slot.holder.as_deref(), Some(first.as_str()));
        assert!(!slot.take(&second), "another caller is refused");
        assert!(!slot.take(KEYED), "a keyed caller is refused too");
        assert_eq!(slot.holder.as_deref(), Some(first.as_str()), "unchanged");
    }

    #[test]
    fn the_same_idempotency_key_joins_and_keeps_its_claim_on_pending() {
        let mut slot = AnswerSlot::default();
        assert!(slot.take(KEYED));
        assert!(slot.take(KEYED), "the same key asking again joins");
        assert!(!slot.leave_pending(KEYED), "not sealed");
        assert_eq!(
            slot.holder.as_deref(),
            Some(KEYED),
            "a keyed caller answered pending keeps its claim"
        );
        assert!(!slot.take(&anonymous_caller()));
    }

    #[test]
    fn an_anonymous_asker_answered_pending_lets_the_next_call_take_the_answer() {
        let mut slot = AnswerSlot::default();
        let first = anonymous_caller();
        assert!(slot.take(&first));
        // Another anonymous caller leaving does not release someone else's claim.
        assert!(!slot.leave_pending(&anonymous_caller()));
        assert_eq!(slot.holder.as_deref(), Some(first.as_str()));
        assert!(!slot.leave_pending(&first));
        assert_eq!(slot.holder, None, "released");
        let next = anonymous_caller();
        assert!(slot.take(&next), "the next call takes it");
        assert_eq!(slot.holder.as_deref(), Some(next.as_str()));
    }

    #[test]
    fn a_sealed_slot_hands_the_success_to_its_holder_only() {
        let mut slot = AnswerSlot::default();
        let holder = anonymous_caller();
        assert_eq!(slot.hand_out_to(&holder), HandOut::AskTheLog, "not sealed");
        assert!(slot.take(&holder));
        assert_eq!(
            slot.hand_out_to(&holder),
            HandOut::AskTheLog,
            "before the seal the log decides"
        );
        assert_eq!(slot.seal().as_deref(), Some(holder.as_str()));
        assert_eq!(slot.hand_out_to(&holder), HandOut::Asker);
        assert_eq!(slot.hand_out_to(KEYED), HandOut::Another);
        // Sealed: the holder cannot let go, and nobody new takes it.
        assert!(slot.leave_pending(&holder), "reports sealed");
        assert_eq!(slot.holder.as_deref(), Some(holder.as_str()));
        assert!(!slot.take(KEYED));
    }

    #[test]
    fn a_slot_sealed_with_nobody_waiting_leaves_the_answer_to_the_log() {
        let mut slot = AnswerSlot::default();
        assert_eq!(slot.seal(), None);
        assert!(slot.take(KEYED), "a sealed empty slot refuses nobody");
        assert_eq!(slot.holder, None, "but nobody takes it");
        assert_eq!(slot.hand_out_to(KEYED), HandOut::AskTheLog);
    }

    #[tokio::test]
    async fn a_settlement_task_that_panics_leaves_no_entry_and_tells_its_waiters() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::sqlite::SqliteStore::open(&dir.path().join("log.db")).unwrap());
        let service =
            FacilitatorService::new(Vec::new(), store, Duration::from_secs(1), Metrics::new());
        let key = SettlementKey {
            chain_id: 1,
            asset: Address::ZERO,
            payer: Address::ZERO,
            nonce: B256::ZERO,
        };
        let (sender, mut receiver) = watch::channel(Progress::Working);
        service.lock_in_flight().insert(
            key,
            InFlight {
                fingerprint: B256::ZERO,
                progress: receiver.clone(),
                answer: Arc::default(),
            },
        );
        let task = tokio::spawn({
            let service = service.clone();
            async move {
                let _entry = InFlightEntry {
                    service,
                    key,
                    sender,
                };
                panic!("a bug in a settlement task");
            }
        });
        assert!(task.await.unwrap_err().is_panic());
        assert_eq!(service.in_flight(), 0, "the entry is gone");
        let done = receiver
            .wait_for(|p| matches!(p, Progress::Done(_)))
            .await
            .unwrap()
            .clone();
        assert!(
            matches!(done, Progress::Done(Err(FacilitatorError::Unavailable(_)))),
            "{done:?}"
        );
    }
}
