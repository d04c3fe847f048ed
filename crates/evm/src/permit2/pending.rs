//! The default [`SendLog`]: sent Permit2 settlements remembered in memory for five minutes;
//! and the turns that keep one settlement of a payment at a time in a process.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use x402_proto::{BoxFuture, FacilitatorError, SettleResponse};

use super::log::{
    Ending, Holder, Permit2Nonce, Permit2Send, Recorded, SendLog, SendState, SentSettlement,
};
use super::*;

/// How long a sent settlement is remembered.
const PENDING_TTL: Duration = Duration::from_secs(300);

/// Settlements sent for Permit2 payments, by the nonce they spend, for five minutes, in
/// memory: what a facilitator without a durable log knows of them. A restart forgets them.
#[derive(Debug, Default)]
pub(crate) struct PendingSends {
    entries: Mutex<HashMap<Permit2Nonce, (SentSettlement, Instant)>>,
}

impl PendingSends {
    fn entries(&self) -> MutexGuard<'_, HashMap<Permit2Nonce, (SentSettlement, Instant)>> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|_, (_, since)| since.elapsed() < PENDING_TTL);
        entries
    }

    /// Applies `change` to the record of `nonce`, when there is one.
    fn update<T>(
        &self,
        nonce: &Permit2Nonce,
        change: impl FnOnce(&mut SentSettlement) -> T,
    ) -> Option<T> {
        self.entries()
            .get_mut(nonce)
            .map(|(record, _)| change(record))
    }
}

impl SendLog for PendingSends {
    fn find<'a>(
        &'a self,
        nonce: &'a Permit2Nonce,
    ) -> BoxFuture<'a, Result<Option<SentSettlement>, FacilitatorError>> {
        let found = self.entries().get(nonce).map(|(record, _)| record.clone());
        Box::pin(std::future::ready(Ok(found)))
    }

    fn record<'a>(
        &'a self,
        send: &'a Permit2Send,
    ) -> BoxFuture<'a, Result<Recorded, FacilitatorError>> {
        let mut entries = self.entries();
        let recorded = match entries.get(&send.nonce) {
            Some((existing, _)) if existing.state != SendState::Abandoned => {
                Recorded::Existing(Box::new(existing.clone()))
            }
            _ => {
                let record = SentSettlement {
                    fingerprint: send.fingerprint,
                    transfer: send.transfer,
                    tx_hashes: vec![send.tx.tx_hash],
                    state: SendState::Sent,
                    holder: send.holder.clone(),
                };
                entries.insert(send.nonce, (record, Instant::now()));
                Recorded::Fresh
            }
        };
        Box::pin(std::future::ready(Ok(recorded)))
    }

    fn finish<'a>(
        &'a self,
        spent: &'a Permit2Nonce,
        end: Ending,
        response: &'a SettleResponse,
    ) -> BoxFuture<'a, Result<(), FacilitatorError>> {
        self.update(spent, |record| {
            record.state = match end {
                Ending::Confirmed | Ending::Failed => SendState::Ended(response.clone()),
                Ending::Abandoned => SendState::Abandoned,
            };
        });
        Box::pin(std::future::ready(Ok(())))
    }

    fn hand_out<'a>(
        &'a self,
        nonce: &'a Permit2Nonce,
        holder: &'a Holder,
    ) -> BoxFuture<'a, Result<bool, FacilitatorError>> {
        let handed = self.update(nonce, |record| match &record.holder {
            Some(current) => current == holder,
            None => {
                record.holder = Some(holder.clone());
                true
            }
        });
        Box::pin(std::future::ready(Ok(handed.unwrap_or(false))))
    }
}

/// One settlement at a time per key `K` in this process (a Permit2 nonce, a batch send's
/// key): a turn per key, dropped once nobody holds or waits for it.
#[derive(Debug)]
pub(crate) struct Turns<K = Permit2Nonce>(Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>);

impl<K> Default for Turns<K> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<K: std::hash::Hash + Eq> Turns<K> {
    /// Waits for the turn of `key`.
    pub(crate) async fn take(&self, key: K) -> tokio::sync::OwnedMutexGuard<()> {
        let turn = {
            let mut turns = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            turns.retain(|_, turn| Arc::strong_count(turn) > 1);
            turns.entry(key).or_default().clone()
        };
        turn.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sender::SignedSettlement;
    use x402_proto::IdempotencyKey;

    fn send(fingerprint: u8, holder: Option<Holder>) -> Permit2Send {
        let requirements = serde_json::json!({
            "scheme": "upto", "network": "eip155:8453", "amount": "1", "maxTimeoutSeconds": 60,
            "asset": Address::ZERO, "payTo": Address::ZERO,
        });
        let request = serde_json::from_value(serde_json::json!({
            "x402Version": 2,
            "paymentPayload": {"x402Version": 2, "accepted": requirements, "payload": {}},
            "paymentRequirements": requirements,
        }))
        .unwrap();
        Permit2Send {
            nonce: Permit2Nonce {
                chain_id: 8453,
                owner: Address::repeat_byte(1),
                nonce: U256::from(7),
            },
            fingerprint: B256::repeat_byte(fingerprint),
            transfer: TransferExpectation {
                asset: Address::repeat_byte(2),
                from: Address::repeat_byte(1),
                to: Address::repeat_byte(3),
                value: U256::from(10),
            },
            deadline: 0,
            request,
            holder,
            signer: Address::ZERO,
            tx: SignedSettlement {
                tx_hash: B256::repeat_byte(9),
                raw: Bytes::new(),
                signer_nonce: 0,
            },
        }
    }

    #[tokio::test]
    async fn one_record_per_nonce_until_abandoned_and_its_success_to_one_holder() {
        let log = PendingSends::default();
        let keyed = Holder::of(Some(&IdempotencyKey::new("k").unwrap()));
        let first = send(1, Some(keyed.clone()));
        assert_eq!(log.record(&first).await.unwrap(), Recorded::Fresh);
        let Recorded::Existing(existing) = log.record(&send(2, None)).await.unwrap() else {
            panic!("the nonce is taken");
        };
        assert_eq!(existing.fingerprint, B256::repeat_byte(1));
        assert!(log.hand_out(&first.nonce, &keyed).await.unwrap());
        assert!(
            !log.hand_out(&first.nonce, &Holder::anonymous())
                .await
                .unwrap()
        );

        let refused = SettleResponse::failure(
            first.request.wire_network().clone(),
            ReasonCode::UNEXPECTED_SETTLE_ERROR,
            "refused",
            None,
            None,
        );
        log.finish(&first.nonce, Ending::Abandoned, &refused)
            .await
            .unwrap();
        assert_eq!(log.record(&send(2, None)).await.unwrap(), Recorded::Fresh);
        let found = log.find(&first.nonce).await.unwrap().unwrap();
        assert_eq!(
            (found.fingerprint, found.state, found.holder),
            (B256::repeat_byte(2), SendState::Sent, None)
        );
    }
}
