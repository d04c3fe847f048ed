//! `exact` on one Solana network behind the [`Facilitator`] trait.
//!
//! A payment is identified by its transaction message ([`DecodedPayment::message_key`]): its
//! settlement is recorded under its payment id in an [`SvmSendLog`] before it is broadcast,
//! so it settles once however often, however concurrently and across however many restarts
//! it is presented. Within this process, presentations of one message take turns.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use x402_proto::{
    BoxFuture, Facilitator, FacilitatorError, IdempotencyKey, Network, PaymentId, PaymentIdError,
    PaymentRequest, ReasonCode, Scheme, SettleResponse, SupportedKind, SupportedResponse,
    VerifyResponse,
};

use crate::sends::{MemorySvmLog, SvmSend, SvmSendLog};
use crate::{DecodedPayment, ExactSvmScheme, Landing, Pubkey, RpcError};

/// How a facilitator settles on a Solana network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SettlePolicy {
    /// How long to wait for a sent settlement to be confirmed before answering
    /// `settlement_pending` with its signature.
    pub confirm_within: Duration,
}

impl Default for SettlePolicy {
    fn default() -> Self {
        Self {
            confirm_within: Duration::from_secs(30),
        }
    }
}

/// One turn per payment in this process: presentations of one message take turns.
type Turn = Arc<tokio::sync::Mutex<()>>;

/// The `exact` scheme on one Solana network as a facilitator plug-in.
#[derive(Debug)]
pub struct ExactSvmFacilitator {
    network: Network,
    scheme: ExactSvmScheme,
    policy: SettlePolicy,
    log: Arc<dyn SvmSendLog>,
    /// The mints accepted; any when `None`.
    mints: Option<Vec<Pubkey>>,
    in_flight: Mutex<HashMap<String, Turn>>,
}

impl ExactSvmFacilitator {
    /// Serves `scheme` on `network` (CAIP-2), remembering its settlements in this process
    /// only ([`MemorySvmLog`]).
    pub fn new(network: Network, scheme: ExactSvmScheme, policy: SettlePolicy) -> Self {
        Self::with_log(network, scheme, policy, Arc::new(MemorySvmLog::default()))
    }

    /// Serves `scheme` on `network`, recording its settlements in `log` before they are
    /// broadcast: a durable log settles a payment once across restarts and instances.
    pub fn with_log(
        network: Network,
        scheme: ExactSvmScheme,
        policy: SettlePolicy,
        log: Arc<dyn SvmSendLog>,
    ) -> Self {
        Self {
            network,
            scheme,
            policy,
            log,
            mints: None,
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// Accepts payments in `mints` only; others are refused as
    /// `invalid_payment_requirements` before anything else is checked.
    pub fn with_mints(mut self, mints: Vec<Pubkey>) -> Self {
        self.mints = Some(mints);
        self
    }

    /// The refusal of a payment in a mint this facilitator does not accept.
    fn unaccepted_mint(&self, request: &PaymentRequest) -> Option<(ReasonCode, String)> {
        let mints = self.mints.as_ref()?;
        let asset = &request.requirements().asset;
        if mints.iter().any(|mint| mint.to_string() == *asset) {
            return None;
        }
        let accepted: Vec<String> = mints.iter().map(ToString::to_string).collect();
        Some((
            ReasonCode::INVALID_PAYMENT_REQUIREMENTS,
            format!(
                "mint {asset} is not accepted on {}; accepted: {}",
                self.network,
                accepted.join(", ")
            ),
        ))
    }

    /// The network served (CAIP-2).
    pub fn network(&self) -> &Network {
        &self.network
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<String, Turn>> {
        // Single inserts and removes: a poisoned map is still whole.
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The scheme.
    pub fn scheme(&self) -> &ExactSvmScheme {
        &self.scheme
    }

    /// The kinds served: v2 on the network, v1 on its v1 name, each with `extra.feePayer`.
    pub fn kinds(&self) -> Vec<SupportedKind> {
        let fee_payer = self
            .scheme
            .fee_payers()
            .addresses()
            .first()
            .map(ToString::to_string)
            .unwrap_or_default();
        let v2 = SupportedKind {
            x402_version: 2,
            scheme: Scheme::EXACT,
            network: self.network.clone(),
            extra: Some(json!({"feePayer": fee_payer})),
        };
        let v1 = self.network.to_v1_name().map(|name| SupportedKind {
            x402_version: 1,
            network: name,
            ..v2.clone()
        });
        std::iter::once(v2).chain(v1).collect()
    }
}

impl ExactSvmFacilitator {
    /// The log's key for `decoded` presented in `request`: its payment id.
    fn log_key(request: &PaymentRequest, decoded: &DecodedPayment) -> String {
        let network = request.wire_network();
        let network = network.to_caip2().unwrap_or_else(|| network.clone());
        PaymentId::from_parts(["exact", network.as_str(), "svm", &decoded.message_key()])
            .as_str()
            .to_owned()
    }

    /// Settles `request` once, recorded in the log under `key` before it is broadcast.
    async fn settle_once(
        &self,
        request: &PaymentRequest,
        key: &str,
        asker: &str,
    ) -> Result<SettleResponse, FacilitatorError> {
        if let Some(send) = self.log.find(key).await? {
            return self.answer_recorded(request, key, send, asker).await;
        }
        let network = request.wire_network().clone();
        let verified = match self.scheme.verify(request).await {
            Ok(verified) => verified,
            Err((error, _)) if error.is_internal() => {
                return Err(FacilitatorError::Unavailable(error.to_string()));
            }
            Err((error, payer)) => {
                return Ok(SettleResponse::failure(
                    network,
                    error.reason(request.version()),
                    error.to_string(),
                    payer.map(|p| p.to_string()),
                    None,
                ));
            }
        };
        let transaction = self
            .scheme
            .cosign(&verified)
            .map_err(FacilitatorError::Internal)?;
        let signature = DecodedPayment::from_base64(&transaction)
            .ok()
            .and_then(|signed| {
                signed
                    .transaction
                    .signatures
                    .first()
                    .map(ToString::to_string)
            })
            .ok_or_else(|| FacilitatorError::Internal("the co-signed transaction".into()))?;
        let send = SvmSend {
            transaction,
            signature,
            holder: asker.to_owned(),
            payer: Some(verified.checked.payer.to_string()),
            request: serde_json::to_string(request)
                .map_err(|error| FacilitatorError::Internal(error.to_string()))?,
            answer: None,
        };
        if !self.log.record(key, &send).await? {
            // Another instance recorded it first: its transaction is the one.
            let send = self.log.find(key).await?.ok_or_else(|| {
                FacilitatorError::Unavailable("the settlement log lost a record".into())
            })?;
            return self.answer_recorded(request, key, send, asker).await;
        }
        if let Err(error) = self.scheme.rpc().send(&send.transaction).await
            && matches!(error, RpcError::Refused { .. })
        {
            // The node refused it: nothing is in the chain's hands.
            self.log.forget(key).await?;
            return Ok(SettleResponse::failure(
                network,
                transaction_failed(),
                error.to_string(),
                send.payer,
                None,
            ));
        }
        self.follow(request, key, &send, asker).await
    }

    /// The answer for a recorded settlement: its answer when it has one, else its
    /// transaction sent once more (harmless: it lands at most once) and followed.
    async fn answer_recorded(
        &self,
        request: &PaymentRequest,
        key: &str,
        send: SvmSend,
        asker: &str,
    ) -> Result<SettleResponse, FacilitatorError> {
        if let Some(answer) = &send.answer {
            return Ok(handed(request, answer.clone(), &send, asker));
        }
        if let Err(error) = self.scheme.rpc().send(&send.transaction).await
            && matches!(error, RpcError::Refused { .. })
        {
            let landed = self.scheme.rpc().signature_status(&send.signature).await;
            if matches!(landed, Ok(None)) {
                // Refused and never seen: it can no longer land.
                self.log.forget(key).await?;
                return Ok(SettleResponse::failure(
                    request.wire_network().clone(),
                    transaction_failed(),
                    format!("the recorded transaction can no longer land: {error}"),
                    send.payer,
                    None,
                ));
            }
        }
        self.follow(request, key, &send, asker).await
    }

    /// Waits (bounded) for the recorded transaction; ends its record once the chain decides.
    async fn follow(
        &self,
        request: &PaymentRequest,
        key: &str,
        send: &SvmSend,
        asker: &str,
    ) -> Result<SettleResponse, FacilitatorError> {
        let landing = self
            .scheme
            .confirm(send.signature.clone(), self.policy.confirm_within)
            .await;
        let network = request.wire_network().clone();
        let payer = send.payer.clone();
        let answer = match landing {
            Landing::Confirmed { signature } => SettleResponse::success(network, payer, signature),
            Landing::Failed { signature, err } => SettleResponse::failure(
                network,
                transaction_failed(),
                format!("the transaction failed on chain: {err}"),
                payer,
                Some(signature),
            ),
            Landing::Pending { signature } => {
                return Ok(SettleResponse::failure(
                    network,
                    ReasonCode::SETTLEMENT_PENDING,
                    "sent, not yet confirmed; ask again with the same payment",
                    payer,
                    Some(signature),
                ));
            }
        };
        self.log.finish(key, &answer).await?;
        Ok(handed(request, answer, send, asker))
    }
}

/// The official facilitator's reason for a settlement that did not land.
fn transaction_failed() -> ReasonCode {
    ReasonCode::from_static("invalid_exact_svm_transaction_failed")
}

/// `answer` as `asker` is given it: a success only to its holder (everyone presenting the
/// payment otherwise is refused as a duplicate); a failure to everyone.
fn handed(
    request: &PaymentRequest,
    mut answer: SettleResponse,
    send: &SvmSend,
    asker: &str,
) -> SettleResponse {
    if answer.success && send.holder != asker {
        return SettleResponse::failure(
            request.wire_network().clone(),
            ReasonCode::DUPLICATE_SETTLEMENT,
            "this payment was settled by another presentation; sign a new payment",
            send.payer.clone(),
            None,
        );
    }
    // Answered in the network the asker named (v1 name or CAIP-2).
    answer.network = request.wire_network().clone();
    answer
}

/// A name for one `/settle` call without an idempotency key, unique across restarts.
fn anonymous_caller() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("call:{started:x}-{}-{n}", std::process::id())
}

impl Facilitator for ExactSvmFacilitator {
    fn verify<'a>(
        &'a self,
        request: &'a PaymentRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        Box::pin(async move {
            if let Some((reason, message)) = self.unaccepted_mint(request) {
                return Ok(VerifyResponse::invalid(reason, message, None));
            }
            self.scheme
                .verify_response(request)
                .await
                .map_err(|error| FacilitatorError::Unavailable(error.to_string()))
        })
    }

    /// Sends once per message, ever: the settlement is recorded in the log (keyed by
    /// [`Self::payment_id`]) before its transaction is broadcast, and every later or
    /// concurrent presentation, in this process or another sharing the log, is answered from
    /// that record. Its success goes to the call that settled it, or to every call with its
    /// idempotency key; everyone else is refused as `duplicate_settlement`. A failure is
    /// everyone's answer.
    fn settle<'a>(
        &'a self,
        request: &'a PaymentRequest,
        idempotency_key: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        Box::pin(async move {
            if let Some((reason, message)) = self.unaccepted_mint(request) {
                let network = request.wire_network().clone();
                return Ok(SettleResponse::failure(
                    network, reason, message, None, None,
                ));
            }
            let asker = match idempotency_key {
                Some(key) => format!("key:{key}"),
                None => anonymous_caller(),
            };
            let key = match DecodedPayment::decode(request.payload()) {
                Ok(decoded) => Self::log_key(request, &decoded),
                // Undecodable: verify refuses it, nothing is sent.
                Err(_) => return self.settle_once(request, "", &asker).await,
            };
            // Presentations in this process take turns: the first records and sends, the
            // others find its record.
            let slot = {
                let mut in_flight = self.lock_in_flight();
                in_flight.entry(key.clone()).or_default().clone()
            };
            let settled = {
                let _turn = slot.lock().await;
                self.settle_once(request, &key, &asker).await
            };
            let mut in_flight = self.lock_in_flight();
            drop(slot);
            if in_flight
                .get(&key)
                .is_some_and(|slot| Arc::strong_count(slot) == 1)
            {
                in_flight.remove(&key);
            }
            settled
        })
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        Box::pin(async move {
            let mut signers = std::collections::BTreeMap::new();
            signers.insert(
                "solana:*".to_owned(),
                self.scheme
                    .fee_payers()
                    .addresses()
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            );
            Ok(SupportedResponse {
                kinds: self.kinds(),
                extensions: Vec::new(),
                signers,
            })
        })
    }

    /// `exact`, the network (CAIP-2, so v1 and v2 presentations agree) and the message key.
    fn payment_id(&self, request: &PaymentRequest) -> Result<PaymentId, PaymentIdError> {
        let decoded = DecodedPayment::decode(request.payload())
            .map_err(|error| PaymentIdError(error.to_string()))?;
        let network = request.wire_network();
        let network = network.to_caip2().unwrap_or_else(|| network.clone());
        Ok(PaymentId::from_parts([
            "exact",
            network.as_str(),
            "svm",
            &decoded.message_key(),
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FeePayers, SolanaRpc, VerifyLimits};

    #[test]
    fn the_payment_id_is_the_one_any_paywall_derives() {
        let golden: serde_json::Value =
            serde_json::from_str(include_str!("../../../testdata/svm/official-exact.json"))
                .unwrap();
        let facilitator = ExactSvmFacilitator::new(
            Network::new(golden["chain"]["network"].as_str().unwrap()),
            ExactSvmScheme::new(
                SolanaRpc::new("http://127.0.0.1:9", Duration::from_secs(1)),
                FeePayers::new(Vec::new()),
                VerifyLimits::default(),
            ),
            SettlePolicy::default(),
        );
        let v2: PaymentRequest = serde_json::from_value(json!({
            "paymentPayload": {"x402Version": 2, "accepted": golden["v2Memo"]["requirements"],
                               "payload": golden["v2Memo"]["payload"]},
            "paymentRequirements": golden["v2Memo"]["requirements"],
        }))
        .unwrap();
        let ours = facilitator.payment_id(&v2).unwrap();
        assert_eq!(ours, PaymentId::derive(&v2).unwrap());
        let key = DecodedPayment::decode(&golden["v2Memo"]["payload"])
            .unwrap()
            .message_key();
        assert!(ours.as_str().ends_with(&key), "{ours}");
        let v1: PaymentRequest = serde_json::from_value(json!({
            "paymentPayload": golden["v1"]["payload"],
            "paymentRequirements": golden["v1"]["requirements"],
        }))
        .unwrap();
        assert_eq!(
            facilitator.payment_id(&v1).unwrap(),
            PaymentId::derive(&v1).unwrap()
        );
    }
}
