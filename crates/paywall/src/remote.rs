//! A facilitator reached over HTTP, behind the same [`Facilitator`] trait as one in process.

use std::time::Duration;

use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use x402_proto::{
    BoxFuture, Facilitator, FacilitatorError, IdempotencyKey, PaymentRequest, Secret,
    SettleResponse, SupportedResponse, VerifyResponse, headers,
};

/// A remote facilitator: `POST {base}/verify`, `POST {base}/settle`, `GET {base}/supported`.
///
/// Connection failures, timeouts and 5xx answers are [`FacilitatorError::Unavailable`], so a
/// paywall answers 503 and serves nothing; 4xx answers are [`FacilitatorError::BadRequest`];
/// redirects are never followed (a redirect must not turn into a free pass).
#[derive(Clone, Debug)]
pub struct HttpFacilitator {
    base: String,
    bearer_token: Option<Secret>,
    http: reqwest::Client,
}

impl HttpFacilitator {
    /// A facilitator at `base` (`http://127.0.0.1:8402`), each call bounded by `timeout`
    /// (settling waits for a block, so give it more than a block time).
    pub fn new(base: &str, timeout: Duration) -> Result<Self, FacilitatorError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| FacilitatorError::Internal(format!("HTTP client: {e}")))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            bearer_token: None,
            http,
        })
    }

    /// Sends `Authorization: Bearer <token>` with every call.
    pub fn with_bearer_token(mut self, token: impl Into<Secret>) -> Self {
        self.bearer_token = Some(token.into());
        self
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.base));
        match &self.bearer_token {
            Some(token) => builder.bearer_auth(token.expose()),
            None => builder,
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        builder: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<T, FacilitatorError> {
        let response = builder.send().await.map_err(|e| {
            FacilitatorError::Unavailable(format!("{}{path}: {}", self.base, error_chain(&e)))
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            FacilitatorError::Unavailable(format!("{}{path}: reading the answer: {e}", self.base))
        })?;
        let excerpt = || String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        match status {
            s if s.is_success() => serde_json::from_slice(&body).map_err(|e| {
                FacilitatorError::BadResponse(format!(
                    "{path} answered {s} with {e}: {}",
                    excerpt()
                ))
            }),
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => Err(
                FacilitatorError::Unavailable(format!("{path} answered {s}: {}", excerpt())),
            ),
            s if s.is_redirection() => Err(FacilitatorError::BadResponse(format!(
                "{path} answered a redirect ({s}); redirects are not followed"
            ))),
            s => Err(FacilitatorError::BadRequest(format!(
                "{path} answered {s}: {}",
                excerpt()
            ))),
        }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl Facilitator for HttpFacilitator {
    fn verify<'a>(
        &'a self,
        request: &'a PaymentRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        Box::pin(async move {
            let builder = self.request(reqwest::Method::POST, "/verify").json(request);
            self.call(builder, "/verify").await
        })
    }

    fn settle<'a>(
        &'a self,
        request: &'a PaymentRequest,
        idempotency_key: Option<&'a IdempotencyKey>,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        Box::pin(async move {
            let mut builder = self.request(reqwest::Method::POST, "/settle").json(request);
            if let Some(key) = idempotency_key {
                builder = builder.header(headers::IDEMPOTENCY_KEY, key.as_str());
            }
            self.call(builder, "/settle").await
        })
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        Box::pin(async move {
            let builder = self.request(reqwest::Method::GET, "/supported");
            self.call(builder, "/supported").await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_facilitator_is_unavailable_not_a_refusal() {
        // Port 9 on loopback: nothing listens, the connection is refused at once.
        let facilitator = HttpFacilitator::new("http://127.0.0.1:9/", Duration::from_secs(2))
            .unwrap()
            .with_bearer_token("secret");
        assert_eq!(facilitator.base(), "http://127.0.0.1:9");
        assert!(!format!("{facilitator:?}").contains("secret"));
        let error = facilitator.supported().await.unwrap_err();
        assert!(error.is_retryable(), "{error}");
    }
}
