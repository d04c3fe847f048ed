//! What a handler behind the paywall learns about the payment for its request.

use tokio::sync::watch;
use x402_proto::{Network, PaymentRequest, Scheme, SettleResponse, TokenAmount};

use crate::price::PaymentOption;

/// The payment for this request, as a request extension (`Extension<Paid>` in axum).
///
/// On routes that settle before the handler, [`Paid::transaction`] is already known. On routes
/// that settle after it, the handler runs before the money moves; [`Paid::settled`] resolves
/// once settlement is over (for jobs that keep running after the response).
#[derive(Clone, Debug)]
pub struct Paid {
    pub(crate) payer: String,
    pub(crate) scheme: Scheme,
    pub(crate) metered: bool,
    pub(crate) amount: TokenAmount,
    pub(crate) asset: String,
    pub(crate) network: Network,
    pub(crate) decimals: u8,
    pub(crate) version: u8,
    pub(crate) transaction: Option<String>,
    pub(crate) settlement: watch::Receiver<Option<SettleResponse>>,
}

impl Paid {
    /// A payment already settled by `receipt` (a paid request served again).
    pub(crate) fn already_settled(
        request: &PaymentRequest,
        option: &PaymentOption,
        receipt: &SettleResponse,
        metered: bool,
    ) -> Self {
        let (_, settlement) = watch::channel(Some(receipt.clone()));
        Self {
            payer: receipt.payer.clone().unwrap_or_default(),
            scheme: option.scheme.clone(),
            metered,
            amount: request.requirements().amount,
            asset: option.asset.clone(),
            network: option.network.clone(),
            decimals: option.decimals,
            version: request.version(),
            transaction: Some(receipt.transaction.clone()).filter(|tx| !tx.is_empty()),
            settlement,
        }
    }

    /// Whether the payment is charged what the handler reports it used (`upto`,
    /// `batch-settlement`): [`Self::amount`] is then the most it may be charged.
    pub fn metered(&self) -> bool {
        self.metered
    }

    /// The paying address.
    pub fn payer(&self) -> &str {
        &self.payer
    }

    /// The amount charged, in the asset's atomic units.
    pub fn amount(&self) -> TokenAmount {
        self.amount
    }

    /// The amount charged in whole units of the asset (USD for USDC), e.g. `"0.0045"`.
    pub fn amount_human(&self) -> String {
        self.amount.to_human(self.decimals)
    }

    /// The scheme paid with: under `upto` the amount is the maximum, and what is settled is
    /// what the handler reports it used.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// `atomic` units of the asset paid with, in whole units.
    pub fn human(&self, atomic: TokenAmount) -> String {
        atomic.to_human(self.decimals)
    }

    /// The token paid with.
    pub fn asset(&self) -> &str {
        &self.asset
    }

    /// The network paid on (CAIP-2).
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The x402 version the client paid with.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The settlement transaction, when the route settles before the handler and the payment
    /// settled in one (a `batch-settlement` voucher is charged without a transaction).
    pub fn transaction(&self) -> Option<&str> {
        self.transaction.as_deref()
    }

    /// Waits for the settlement of this request and returns its receipt; `None` when the
    /// request was not settled (the handler failed, or the paywall went away).
    pub async fn settled(&self) -> Option<SettleResponse> {
        let mut receiver = self.settlement.clone();
        match receiver.wait_for(Option::is_some).await {
            Ok(receipt) => receipt.clone(),
            Err(_) => None,
        }
    }
}
