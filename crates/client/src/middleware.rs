//! The paying client as a [`reqwest_middleware::Middleware`], so it slots into an existing
//! `reqwest-middleware` client stack (retries, tracing, auth headers, …).

use x402_proto::{AssetAmount, SettleResponse};

use crate::client::{PaidResponse, PayError, PayingClient, Transport};

/// Pays x402 challenges inside a [`reqwest_middleware::ClientWithMiddleware`]: on a 402 it
/// chooses an offer by the [`crate::Policy`], reserves it in the [`crate::Ledger`]'s budget,
/// signs, and sends the request once more through the rest of the stack with the payment
/// header, exactly as [`PayingClient::send`] does (the same code runs both).
///
/// The response keeps the server's `PAYMENT-RESPONSE` (or v1 `X-PAYMENT-RESPONSE`) header,
/// and when a payment was made its decoded receipt and ledger row are in the response's
/// extensions as a [`Payment`]. A refusal (policy, budget, the server's) is a
/// [`reqwest_middleware::Error::Middleware`] holding the [`PayError`]; errors of the
/// underlying `reqwest` client stay [`reqwest_middleware::Error::Reqwest`]. A request whose
/// body is a stream is refused before anything is sent, since it could not be retried.
///
/// Middlewares placed after this one run again for the paid retry; those placed before it
/// see one request and the final response. A ledger label comes from a [`ServiceLabel`] in
/// the request's extensions.
///
/// ```no_run
/// # async fn example(
/// #     signer: alloy::signers::local::PrivateKeySigner,
/// # ) -> Result<(), Box<dyn std::error::Error>> {
/// use x402_client::{Ledger, PayingClient, Payment, PaymentMiddleware, Policy, ServiceLabel};
///
/// let payer = PayingClient::new(
///     reqwest::Client::new(),
///     signer,
///     Policy::default(),
///     Ledger::in_memory()?,
/// );
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(PaymentMiddleware::new(payer))
///     .build();
/// let response = client
///     .get("http://127.0.0.1:8080/data")
///     .with_extension(ServiceLabel("data".into()))
///     .send()
///     .await?;
/// if let Some(payment) = response.extensions().get::<Payment>() {
///     println!("paid: {:?}", payment.receipt);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PaymentMiddleware {
    client: PayingClient,
}

/// The ledger label (`service`) of a request sent through a [`PaymentMiddleware`]; add it
/// with `reqwest_middleware::RequestBuilder::with_extension`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceLabel(pub String);

/// What a [`PaymentMiddleware`] paid for a response, in the response's extensions
/// (`response.extensions().get::<Payment>()`); absent when nothing was paid.
#[derive(Clone, Debug)]
pub struct Payment {
    /// The settlement receipt, when the server sent one.
    pub receipt: Option<SettleResponse>,
    /// The amount paid (with its asset's decimals) and the ledger row, when the payment is
    /// recorded paid.
    pub paid: Option<(AssetAmount, i64)>,
    /// The ledger row of a payment whose outcome is unknown (the server failed without a
    /// receipt): counted against the budget until reconciled.
    pub unknown: Option<i64>,
}

impl PaymentMiddleware {
    /// A middleware paying with `client`'s signer, policy and ledger. The client's own
    /// `reqwest::Client` is not used for requests: they go down the middleware stack.
    pub fn new(client: PayingClient) -> Self {
        Self { client }
    }

    /// The paying client (its ledger, address, and `reconcile`).
    pub fn client(&self) -> &PayingClient {
        &self.client
    }
}

impl From<PayingClient> for PaymentMiddleware {
    fn from(client: PayingClient) -> Self {
        Self::new(client)
    }
}

impl PayingClient {
    /// This client's signer, policy and ledger as a `reqwest-middleware` middleware.
    pub fn middleware(&self) -> PaymentMiddleware {
        PaymentMiddleware::new(self.clone())
    }
}

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for PaymentMiddleware {
    async fn handle(
        &self,
        request: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let service = extensions
            .get::<ServiceLabel>()
            .map(|label| label.0.clone());
        let transport = Transport::Stack { next, extensions };
        let PaidResponse {
            mut response,
            receipt,
            paid,
            unknown,
        } = self
            .client
            .send_through(transport, request, service.as_deref())
            .await
            .map_err(|error| match error {
                PayError::Http(error) => reqwest_middleware::Error::Reqwest(error),
                PayError::Stack(error) => error,
                other => reqwest_middleware::Error::middleware(other),
            })?;
        if paid.is_some() || unknown.is_some() {
            response.extensions_mut().insert(Payment {
                receipt,
                paid,
                unknown,
            });
        }
        Ok(response)
    }
}
