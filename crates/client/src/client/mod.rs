//! The paying client: send, and on a 402 choose an offer by policy, reserve it in the budget,
//! sign, retry once, and record the outcome. When the paid request's answer is lost, the
//! payment is recorded `unknown` and the same request is sent once more with the same payment
//! (an authorization settles at most once): a receipt then commits it. [`wire`] reads
//! challenges, receipts and refusals, and sends a lost request again.

mod wire;

pub(crate) use wire::{corrective_of, receipt_of, refusal_reason};

use wire::*;

use std::sync::Arc;

use alloy::signers::local::PrivateKeySigner;
use x402_proto::{
    AssetAmount, Network, SchemeClient, SettleResponse, SignLimits, SignedPayload, TokenAmount,
    decode_header, encode_header, headers, v1, v2,
};

use crate::channels::DepositIntent;
use x402_evm::batch::BatchEvmClient;

use crate::ledger::{Ledger, LedgerError, MicroUsd, PaymentIntent, Reservation};
use crate::policy::{Choice, Policy, PolicyError};
use crate::reconcile::{ReconcileError, Reconciled};

/// Why a paid request failed. Each says what happened and what to do.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    /// The request could not be sent or its answer read.
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// A middleware placed after the payment middleware in a `reqwest-middleware` stack failed.
    #[error("request failed in the middleware stack: {0}")]
    Stack(reqwest_middleware::Error),
    /// The request's body is a stream and cannot be sent twice.
    #[error(
        "the request body is a stream and cannot be replayed after a 402; send a buffered body"
    )]
    BodyNotReplayable,
    /// The 402 could not be understood.
    #[error("the server's 402 is not an x402 challenge: {0}")]
    BadChallenge(String),
    /// No offer is acceptable.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The budget refused the payment (nothing was signed).
    #[error(transparent)]
    Budget(#[from] LedgerError),
    /// The payment could not be signed.
    #[error("cannot sign the payment: {0}")]
    Sign(String),
    /// The server refused the signed payment or settlement failed.
    #[error("payment refused: {reason}")]
    Refused {
        /// The status of the answer.
        status: u16,
        /// The server's reason (`insufficient_funds`, …).
        reason: String,
        /// The failed receipt, when there was one.
        receipt: Option<SettleResponse>,
    },
    /// The payment was sent but no answer came back, nor to one retry with the same payment:
    /// it may have settled. Its ledger row is `unknown` and counts against the budget until
    /// [`PayingClient::reconcile`] asks the chain.
    #[error(
        "the payment was sent but its answer was lost ({detail}); ledger row {id} is recorded unknown and still counts against the budget until reconciled"
    )]
    AnswerLost {
        /// The ledger row.
        id: i64,
        /// What happened to the request and its retry.
        detail: String,
    },
}

/// A response, and what was paid for it.
#[derive(Debug)]
pub struct PaidResponse {
    /// The final response (its body unread).
    pub response: reqwest::Response,
    /// The settlement receipt, when a payment was made.
    pub receipt: Option<SettleResponse>,
    /// The amount paid (with its asset's decimals) and the ledger row.
    pub paid: Option<(AssetAmount, i64)>,
    /// The ledger row of a payment sent for this response whose outcome is unknown (the server
    /// failed without a receipt): counted against the budget until reconciled.
    pub unknown: Option<i64>,
}

impl PaidResponse {
    /// `response`, for which nothing was paid (or nothing was charged).
    pub(crate) fn unpaid(response: reqwest::Response, receipt: Option<SettleResponse>) -> Self {
        Self {
            response,
            receipt,
            paid: None,
            unknown: None,
        }
    }

    /// `response`, paid with `amount` in ledger row `id`.
    pub(crate) fn paid(
        response: reqwest::Response,
        receipt: Option<SettleResponse>,
        amount: AssetAmount,
        id: i64,
    ) -> Self {
        Self {
            paid: Some((amount, id)),
            ..Self::unpaid(response, receipt)
        }
    }

    /// A line for people: what was paid, in which transaction, on which network, by whom;
    /// `None` when nothing was paid.
    pub fn payment_line(&self) -> Option<String> {
        payment_line(self.receipt.as_ref(), self.paid)
    }
}

/// What a payment bought, for people.
pub(crate) fn payment_line(
    receipt: Option<&SettleResponse>,
    paid: Option<(AssetAmount, i64)>,
) -> Option<String> {
    let receipt = receipt?;
    let (amount, _) = paid?;
    Some(format!(
        "paid {amount} to settle in {} on {} (payer {})",
        if receipt.transaction.is_empty() {
            "(no transaction)"
        } else {
            &receipt.transaction
        },
        receipt.network,
        receipt.payer.as_deref().unwrap_or("?"),
    ))
}

/// An HTTP client that pays x402 challenges within a policy and a budget.
///
/// It pays with scheme plug-ins ([`SchemeClient`]): on EVM chains with its signer, `exact`
/// (EIP-3009, or Permit2 where the offer asks for it) and `upto` (Permit2: the payer must have
/// approved Permit2 once), and any added with [`PayingClient::with_scheme`]. An offer is payable when a plug-in can
/// pay it and the policy allows its asset and price.
#[derive(Clone, Debug)]
pub struct PayingClient {
    http: reqwest::Client,
    signer: PrivateKeySigner,
    schemes: Vec<Arc<dyn SchemeClient>>,
    batch: Arc<BatchEvmClient<PrivateKeySigner>>,
    policy: Policy,
    ledger: Ledger,
}

pub(crate) fn micro_usd(amount: TokenAmount, decimals: u8) -> MicroUsd {
    let value = amount.0;
    let scale = alloy::primitives::U256::from(10u8).pow(alloy::primitives::U256::from(decimals));
    let micro = (value * alloy::primitives::U256::from(1_000_000u64)).div_ceil(scale);
    u64::try_from(micro).unwrap_or(u64::MAX)
}

/// Where a request goes: straight to the HTTP client, or down the rest of a
/// `reqwest-middleware` stack (every retry runs the middlewares after ours again).
pub(crate) enum Transport<'a> {
    /// A plain `reqwest` client.
    Client(&'a reqwest::Client),
    /// The middlewares after ours, then the stack's client.
    Stack {
        /// The rest of the stack.
        next: reqwest_middleware::Next<'a>,
        /// The request's extensions, shared by the first request and its retries.
        extensions: &'a mut http::Extensions,
    },
}

impl Transport<'_> {
    async fn execute(&mut self, request: reqwest::Request) -> Result<reqwest::Response, PayError> {
        match self {
            Transport::Client(http) => Ok(http.execute(request).await?),
            Transport::Stack { next, extensions } => next
                .clone()
                .run(request, extensions)
                .await
                .map_err(|error| match error {
                    reqwest_middleware::Error::Reqwest(error) => PayError::Http(error),
                    other => PayError::Stack(other),
                }),
        }
    }
}

enum Challenge {
    V1(v1::PaymentRequired),
    V2(v2::PaymentRequired),
}

impl PayingClient {
    /// A client paying with `signer`, choosing by `policy`, recording in `ledger`.
    pub fn new(
        http: reqwest::Client,
        signer: PrivateKeySigner,
        policy: Policy,
        ledger: Ledger,
    ) -> Self {
        let batch =
            Arc::new(BatchEvmClient::new(signer.clone()).with_store(ledger.channel_store()));
        let schemes: Vec<Arc<dyn SchemeClient>> = vec![
            batch.clone(),
            Arc::new(x402_evm::ExactEvmClient::new(signer.clone())),
            Arc::new(x402_evm::exact_permit2::ExactPermit2Client::new(
                signer.clone(),
            )),
            Arc::new(x402_evm::upto::UptoEvmClient::new(signer.clone())),
        ];
        Self {
            http,
            signer,
            schemes,
            batch,
            policy,
            ledger,
        }
    }

    /// Lets `batch-settlement` read channels on the chain at `rpc_url`: a channel with no
    /// record in the ledger starts from what was claimed on chain, and a server's corrective
    /// 402 is adopted only when its voucher is this client's and the chain agrees (without a
    /// chain it never is).
    pub fn with_chain(mut self, rpc_url: alloy::transports::http::reqwest::Url) -> Self {
        let batch = Arc::new(
            BatchEvmClient::new(self.signer.clone())
                .with_store(self.ledger.channel_store())
                .with_chain(rpc_url),
        );
        let old = Arc::as_ptr(&self.batch);
        for scheme in &mut self.schemes {
            if std::ptr::addr_eq(Arc::as_ptr(scheme), old) {
                *scheme = batch.clone();
            }
        }
        self.batch = batch;
        self
    }

    /// The `batch-settlement` plug-in (its channels, refunds).
    pub fn batch(&self) -> &BatchEvmClient<PrivateKeySigner> {
        &self.batch
    }

    /// Also pays `exact` offers on Solana, as `payer`, reading mints and blockhashes from
    /// the Solana JSON-RPC at `rpc_url` (only on `networks`, CAIP-2: the ones that RPC
    /// serves). Budgets and the ledger count these payments as any other.
    pub fn with_solana(
        self,
        payer: x402_svm::Keypair,
        rpc_url: &str,
        networks: Vec<Network>,
    ) -> Self {
        let rpc = x402_svm::SolanaRpc::new(rpc_url, std::time::Duration::from_secs(30));
        let client = x402_svm::ExactSvmClient::new(payer, rpc).on_networks(networks);
        self.with_scheme(Arc::new(client))
    }

    /// Also pays with `scheme` (tried before the ones registered earlier).
    pub fn with_scheme(mut self, scheme: Arc<dyn SchemeClient>) -> Self {
        self.schemes.insert(0, scheme);
        self
    }

    /// The plug-in that pays `requirements`, if any.
    fn scheme_for(&self, requirements: &v2::PaymentRequirements) -> Option<&dyn SchemeClient> {
        self.schemes
            .iter()
            .find(|s| s.can_pay(requirements))
            .map(|s| s.as_ref())
    }

    /// The decimals the policy knows for `offer`'s asset (6, USDC's, when it knows none).
    pub(crate) fn decimals_of(&self, offer: &v2::PaymentRequirements) -> u8 {
        self.policy
            .assets
            .iter()
            .find(|a| {
                a.network.same_as(&offer.network) && a.address.eq_ignore_ascii_case(&offer.asset)
            })
            .map_or(6, |a| a.decimals)
    }

    /// Chooses among `offers` those a plug-in can pay, by policy.
    fn choose(&self, offers: &[v2::PaymentRequirements]) -> Result<Choice, PolicyError> {
        self.policy
            .choose_payable(offers, |offer| self.scheme_for(offer).is_some())
    }

    /// Signs `requirements` with its plug-in, at the current time.
    async fn sign(
        &self,
        requirements: &v2::PaymentRequirements,
    ) -> Result<SignedPayload, PayError> {
        let scheme = self.scheme_for(requirements).ok_or_else(|| {
            PayError::Sign(format!(
                "no scheme plug-in pays {} on {}",
                requirements.scheme, requirements.network
            ))
        })?;
        scheme
            .sign(requirements, x402_evm::unix_now())
            .await
            .map_err(|e| PayError::Sign(e.to_string()))
    }

    /// The underlying HTTP client, to build requests.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The ledger entry for paying `choice` for `url`.
    fn intent(&self, choice: &Choice, url: String, service: Option<&str>) -> PaymentIntent {
        PaymentIntent {
            url,
            service: service.map(str::to_owned),
            amount: choice.requirements.amount.to_string(),
            micro_usd: micro_usd(choice.requirements.amount, choice.decimals),
            asset: choice.requirements.asset.clone(),
            network: choice.requirements.network.to_string(),
            payer: self
                .scheme_for(&choice.requirements)
                .map(|s| s.payer(&choice.requirements.network))
                .unwrap_or_else(|| self.address()),
            pay_to: choice.requirements.pay_to.clone(),
        }
    }

    /// Pays a v2 challenge that arrived by another transport (an MCP tool result, say):
    /// chooses by policy, reserves the budget, signs (the row keeps the authorization's nonce).
    /// The caller sends the payment and then commits or fails the [`Reservation`], or marks it
    /// unknown when the answer is lost (dropping it unmarked releases the budget). Offers of a
    /// scheme whose state needs the server's answer back (`batch-settlement`) are passed over:
    /// this path never hands the answer to the plug-in.
    pub async fn pay_challenge(
        &self,
        challenge: &v2::PaymentRequired,
        service: Option<&str>,
    ) -> Result<(v2::PaymentPayload, TokenAmount, Reservation), PayError> {
        let choice = self.policy.choose_payable(&challenge.accepts, |offer| {
            self.scheme_for(offer)
                .is_some_and(|scheme| !scheme.needs_response())
        })?;
        let intent = self.intent(&choice, challenge.resource.url.clone(), service);
        let reservation = self.ledger.reserve(&intent)?;
        let signed = self.sign(&choice.requirements).await?;
        record_authorization(&reservation, &signed)?;
        let payment = v2::PaymentPayload {
            x402_version: x402_proto::V2::default(),
            resource: Some(challenge.resource.clone()),
            accepted: choice.requirements.clone(),
            payload: signed.payload,
            extensions: signed.extensions,
        };
        Ok((payment, choice.requirements.amount, reservation))
    }

    /// Asks the chain at `rpc_url` what became of payments recorded `unknown` (and of
    /// reservations left unfinished by a process that ended), and records it: see
    /// [`Ledger::reconcile`].
    pub async fn reconcile(&self, rpc_url: &str) -> Result<Vec<Reconciled>, ReconcileError> {
        self.ledger.reconcile(&self.http, rpc_url).await
    }

    /// The paying address.
    pub fn address(&self) -> String {
        self.signer.address().to_checksum(None)
    }

    /// Sends `request`; on a 402, pays once (if policy and budget allow) and retries.
    /// `service` labels the ledger row.
    pub async fn send(
        &self,
        request: reqwest::Request,
        service: Option<&str>,
    ) -> Result<PaidResponse, PayError> {
        self.send_through(Transport::Client(&self.http), request, service)
            .await
    }

    /// [`Self::send`] over `transport`: the one pay-and-retry path behind both the client and
    /// [`crate::PaymentMiddleware`].
    pub(crate) async fn send_through(
        &self,
        mut transport: Transport<'_>,
        request: reqwest::Request,
        service: Option<&str>,
    ) -> Result<PaidResponse, PayError> {
        let retry = request.try_clone().ok_or(PayError::BodyNotReplayable)?;
        let url = request.url().to_string();
        let first = transport.execute(request).await?;
        if first.status() != reqwest::StatusCode::PAYMENT_REQUIRED {
            return Ok(PaidResponse::unpaid(first, None));
        }
        let challenge = read_challenge(first).await?;
        let offers: Vec<v2::PaymentRequirements> = match &challenge {
            Challenge::V2(c) => c.accepts.clone(),
            Challenge::V1(c) => c
                .accepts
                .iter()
                .map(v1::PaymentRequirements::to_v2)
                .collect(),
        };
        let choice = self.choose(&offers)?;
        let scheme = self.scheme_for(&choice.requirements).ok_or_else(|| {
            PayError::Sign(format!(
                "no scheme plug-in pays {} on {}",
                choice.requirements.scheme, choice.requirements.network
            ))
        })?;
        let mut request = retry;
        // A stateful scheme may be told by the server that its state is off (a
        // `batch-settlement` charged count): it resyncs, and the request is paid once more.
        for attempt in 1..=2 {
            let next = request.try_clone();
            let paid = self
                .pay_once(
                    &mut transport,
                    request,
                    &challenge,
                    &choice,
                    scheme,
                    &url,
                    service,
                )
                .await?;
            match (paid, next) {
                (Attempt::Done(paid), _) => return Ok(paid),
                (Attempt::Refused(refused), Some(next)) if attempt == 1 => {
                    let recovered = match &refused.corrective {
                        Some(corrective) => scheme
                            .recover(corrective)
                            .await
                            .map_err(|e| PayError::Sign(e.to_string()))?,
                        None => false,
                    };
                    if !recovered {
                        return Err(refused.into_error());
                    }
                    tracing::info!(reason = %refused.reason, "the server corrected the payment's state; paying again");
                    request = next;
                }
                (Attempt::Refused(refused), _) => return Err(refused.into_error()),
            }
        }
        unreachable!("the second attempt always returns")
    }

    /// Micro-USD the budget's deposit cap still allows, in atomic units of an asset with
    /// `decimals` (`None`: no cap).
    fn deposit_room(&self, decimals: u8) -> Result<Option<TokenAmount>, LedgerError> {
        let Some(room) = self.ledger.deposit_room()? else {
            return Ok(None);
        };
        let scale =
            alloy::primitives::U256::from(10u8).pow(alloy::primitives::U256::from(decimals));
        Ok(Some(TokenAmount(
            alloy::primitives::U256::from(room) * scale
                / alloy::primitives::U256::from(1_000_000u64),
        )))
    }

    /// Reserves, signs and sends one payment of `choice` with `request`, and records what came
    /// of it.
    #[allow(clippy::too_many_arguments)]
    async fn pay_once(
        &self,
        transport: &mut Transport<'_>,
        mut request: reqwest::Request,
        challenge: &Challenge,
        choice: &Choice,
        scheme: &dyn SchemeClient,
        url: &str,
        service: Option<&str>,
    ) -> Result<Attempt, PayError> {
        let intent = self.intent(choice, url.to_owned(), service);
        let mut reservation = self.ledger.reserve(&intent)?;
        let limits = SignLimits {
            max_lock: self.deposit_room(choice.decimals)?,
        };
        let signed = scheme
            .sign_within(&choice.requirements, x402_evm::unix_now(), limits)
            .await
            .map_err(|e| PayError::Sign(e.to_string()))?;
        let report = Report::new(scheme, &choice.requirements, &signed);
        record_authorization(&reservation, &signed)?;
        if let Some(channel) = &signed.channel {
            reservation.in_channel(channel)?;
        }
        // A deposit locks funds beside the price: the deposit cap must hold it too.
        let deposit = match (signed.locks, &signed.channel) {
            (Some(locks), Some(channel)) => Some(self.ledger.reserve_deposit(&DepositIntent {
                channel_id: channel.clone(),
                url: url.to_owned(),
                amount: locks.to_string(),
                micro_usd: micro_usd(locks, choice.decimals),
            })?),
            _ => None,
        };
        let (name, value) = match challenge {
            Challenge::V2(c) => {
                let payment = v2::PaymentPayload {
                    x402_version: x402_proto::V2::default(),
                    resource: Some(c.resource.clone()),
                    accepted: c.accepts[choice.index].clone(),
                    payload: signed.payload.clone(),
                    extensions: signed.extensions.clone(),
                };
                (headers::PAYMENT_SIGNATURE, encode_header(&payment))
            }
            Challenge::V1(c) => {
                let offer = &c.accepts[choice.index];
                let payment = v1::PaymentPayload {
                    x402_version: x402_proto::V1::default(),
                    scheme: offer.scheme.clone(),
                    network: offer.network.clone(),
                    payload: signed.payload.clone(),
                };
                (headers::X_PAYMENT, encode_header(&payment))
            }
        };
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| PayError::Sign(e.to_string()))?;
        request.headers_mut().insert(
            name,
            reqwest::header::HeaderValue::from_str(&value)
                .map_err(|e| PayError::Sign(e.to_string()))?,
        );
        let amount = AssetAmount::new(choice.requirements.amount, choice.decimals);
        let again = request.try_clone();
        let response = match transport.execute(request).await {
            Ok(response) => response,
            Err(error) => {
                // Sent, answer lost: the payment may have settled. It stays counted, and so
                // does a deposit it carried.
                report.done(None);
                let detail = format!("sent, no answer: {error}");
                reservation.mark_unknown(&detail)?;
                return send_again(transport, again, reservation, detail, amount)
                    .await
                    .map(Attempt::Done);
            }
        };
        let receipt = receipt_of(response.headers());
        let status = response.status();
        let id = reservation.id();
        report.done(receipt.as_ref());
        match &receipt {
            Some(r) if r.success => {
                if let Some(deposit) = deposit {
                    self.ledger
                        .finish_funds(deposit, true, Some(&r.transaction))?;
                }
                // A scheme that charges less than the price (`upto`'s usage, a
                // `batch-settlement` voucher's chargedAmount) says what it took.
                let Some(charged) = scheme.charged(&choice.requirements, r) else {
                    reservation.commit(&r.transaction)?;
                    return Ok(Attempt::Done(PaidResponse::paid(
                        response, receipt, amount, id,
                    )));
                };
                let signed_max = choice.requirements.amount;
                if charged.0 > signed_max.0 {
                    tracing::warn!(%charged, %signed_max, payment = reservation.id(), "the receipt claims more than the payment allowed; counting the signed maximum");
                }
                let charged = TokenAmount(charged.0.min(signed_max.0));
                reservation.commit_amount(
                    &r.transaction,
                    &charged.to_string(),
                    micro_usd(charged, choice.decimals),
                )?;
                let charged = AssetAmount::new(charged, choice.decimals);
                Ok(Attempt::Done(PaidResponse::paid(
                    response, receipt, charged, id,
                )))
            }
            _ if status.is_success() => {
                // Served without a receipt: count it as paid (the server may settle later).
                reservation.commit("")?;
                Ok(Attempt::Done(PaidResponse::paid(
                    response, receipt, amount, id,
                )))
            }
            None if status.is_server_error() => {
                // The server failed and says nothing of the payment: it may have settled
                // before failing. Hand the answer back; the chain will tell.
                reservation
                    .mark_unknown(&format!("the server answered {status} without a receipt"))?;
                Ok(Attempt::Done(PaidResponse {
                    unknown: Some(id),
                    ..PaidResponse::unpaid(response, receipt)
                }))
            }
            _ => {
                let reason = refusal_reason(&response, receipt.as_ref());
                if let Some(deposit) = deposit {
                    self.ledger.finish_funds(deposit, false, None)?;
                }
                let _ = reservation.fail(
                    &reason,
                    receipt
                        .as_ref()
                        .map(|r| r.transaction.as_str())
                        .filter(|t| !t.is_empty()),
                );
                // 412: the offer needs something of the payer first (a Permit2 approval).
                if status == reqwest::StatusCode::PAYMENT_REQUIRED
                    || status == reqwest::StatusCode::PRECONDITION_FAILED
                {
                    Ok(Attempt::Refused(Refusal {
                        corrective: corrective_of(&response),
                        status: status.as_u16(),
                        reason,
                        receipt,
                    }))
                } else {
                    // Not charged (the handler failed): hand the answer back.
                    Ok(Attempt::Done(PaidResponse::unpaid(response, receipt)))
                }
            }
        }
    }
}

/// What one paid attempt came to.
enum Attempt {
    /// An answer to hand back.
    Done(PaidResponse),
    /// Refused with a 402 or 412.
    Refused(Refusal),
}

/// A refused payment, and the server's new challenge when it sent one.
struct Refusal {
    corrective: Option<v2::PaymentRequired>,
    status: u16,
    reason: String,
    receipt: Option<SettleResponse>,
}

impl Refusal {
    fn into_error(self) -> PayError {
        PayError::Refused {
            status: self.status,
            reason: self.reason,
            receipt: self.receipt,
        }
    }
}

/// Tells a scheme plug-in once what came of a payment it signed (its channel is freed even
/// when the answer never comes: dropped unreported, it reports no receipt).
struct Report<'a> {
    scheme: &'a dyn SchemeClient,
    requirements: &'a v2::PaymentRequirements,
    signed: &'a SignedPayload,
    reported: std::cell::Cell<bool>,
}

impl<'a> Report<'a> {
    fn new(
        scheme: &'a dyn SchemeClient,
        requirements: &'a v2::PaymentRequirements,
        signed: &'a SignedPayload,
    ) -> Self {
        Self {
            scheme,
            requirements,
            signed,
            reported: std::cell::Cell::new(false),
        }
    }

    fn done(&self, receipt: Option<&SettleResponse>) {
        if !self.reported.replace(true) {
            self.scheme
                .on_response(self.requirements, self.signed, receipt);
        }
    }
}

impl Drop for Report<'_> {
    fn drop(&mut self) {
        self.done(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x402_proto::{Network, Scheme};

    #[tokio::test]
    async fn a_streamed_body_is_refused_before_anything_is_sent() {
        let client = PayingClient::new(
            reqwest::Client::new(),
            PrivateKeySigner::random(),
            Policy::default(),
            Ledger::in_memory().unwrap(),
        );
        let stream = futures_util::stream::once(async {
            Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{}"))
        });
        // Port 9: nothing listens; the refusal must come before any connection attempt.
        let request = client
            .http()
            .post("http://127.0.0.1:9/run")
            .body(reqwest::Body::wrap_stream(stream))
            .build()
            .unwrap();
        assert!(matches!(
            client.send(request, None).await,
            Err(PayError::BodyNotReplayable)
        ));
    }

    /// A challenge that arrives by another transport is never paid by voucher: nothing would
    /// hand the answer back to the channel. It is paid by `exact` when offered, and refused
    /// with nothing reserved when not.
    #[tokio::test]
    async fn a_challenge_paid_by_another_transport_passes_over_batch_settlement() {
        let client = PayingClient::new(
            reqwest::Client::new(),
            PrivateKeySigner::random(),
            Policy::default(),
            Ledger::in_memory().unwrap(),
        );
        let offer = |scheme: Scheme| v2::PaymentRequirements {
            scheme,
            network: Network::new("eip155:8453"),
            amount: TokenAmount::from_atomic(1_000),
            asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".into(),
            pay_to: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
            max_timeout_seconds: 300,
            extra: Some(serde_json::json!({
                "name": "USD Coin", "version": "2",
                "receiverAuthorizer": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
            })),
        };
        let challenge = |accepts| v2::PaymentRequired {
            x402_version: x402_proto::V2::default(),
            error: None,
            resource: v2::ResourceInfo {
                url: "https://example.com/tool".into(),
                description: None,
                mime_type: None,
            },
            accepts,
            extensions: None,
        };
        let batch = offer(Scheme::BATCH_SETTLEMENT);
        assert!(
            client.scheme_for(&batch).is_some(),
            "the client pays vouchers"
        );
        let both = challenge(vec![batch.clone(), offer(Scheme::EXACT)]);
        let (payment, _, reservation) = client.pay_challenge(&both, None).await.unwrap();
        assert_eq!(payment.accepted.scheme, Scheme::EXACT);
        drop(reservation);
        let only_batch = challenge(vec![batch]);
        assert!(client.pay_challenge(&only_batch, None).await.is_err());
    }

    #[test]
    fn amounts_become_micro_usd_rounded_up() {
        assert_eq!(micro_usd(TokenAmount::from_atomic(10_000), 6), 10_000);
        assert_eq!(micro_usd(TokenAmount::from_atomic(1), 18), 1);
        assert_eq!(
            micro_usd(TokenAmount::from_atomic(2_000_000_000_000), 18),
            2
        );
    }
}
