//! The settlements a paywall defers until a streamed response is over, kept track of so that a
//! server shutting down can settle them before it exits: [`Deferred::close`] cuts off the
//! streams still running (each is settled for what it delivered, as at its own cut-off), and
//! [`Deferred::settled`] waits until every deferred settlement has finished.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use x402_proto::PaymentId;

/// The deferred settlements not finished yet, and whether streams are being cut off.
#[derive(Debug)]
pub(super) struct Deferred {
    pending: Mutex<Pending>,
    /// Woken each time a deferred settlement is over.
    over: Notify,
    /// `true` once the paywall shuts down: streams still running are cut off.
    closing: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct Pending {
    next: u64,
    /// Payer and payment of each deferred settlement not finished yet, by registration.
    payments: HashMap<u64, (String, PaymentId)>,
}

impl Default for Deferred {
    fn default() -> Self {
        Self {
            pending: Mutex::default(),
            over: Notify::new(),
            closing: watch::Sender::new(false),
        }
    }
}

/// A deferred settlement not finished yet; dropped when it is (or when it never can be).
#[derive(Debug)]
pub(super) struct Registration {
    deferred: Arc<Deferred>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.deferred.pending().payments.remove(&self.id);
        self.deferred.over.notify_waiters();
    }
}

impl Deferred {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a settlement of `payer`'s `payment` deferred until its stream is over.
    pub(super) fn register(self: &Arc<Self>, payer: &str, payment: &PaymentId) -> Registration {
        let mut pending = self.pending();
        pending.next += 1;
        let id = pending.next;
        pending
            .payments
            .insert(id, (payer.to_owned(), payment.clone()));
        Registration {
            deferred: self.clone(),
            id,
        }
    }

    /// Resolves once the paywall starts shutting down (never before).
    pub(super) fn closing(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        let mut closing = self.closing.subscribe();
        async move {
            // The sender lives as long as the paywall that made this future's stream.
            if closing.wait_for(|closing| *closing).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Cuts off the streams still running: each is settled for what it delivered so far.
    pub(super) fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Waits until no deferred settlement is left, at most `timeout`: the payer and payment
    /// of each one still unfinished then.
    pub(super) async fn settled(&self, timeout: Duration) -> Vec<(String, PaymentId)> {
        let waiting = async {
            loop {
                let over = self.over.notified();
                tokio::pin!(over);
                over.as_mut().enable();
                if self.pending().payments.is_empty() {
                    return;
                }
                over.await;
            }
        };
        let _ = tokio::time::timeout(timeout, waiting).await;
        let mut left: Vec<_> = self.pending().payments.values().cloned().collect();
        left.sort();
        left
    }
}
