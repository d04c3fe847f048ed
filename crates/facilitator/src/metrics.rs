//! Prometheus metrics: verify and settle counts by outcome and reason, latency histograms,
//! settlements in flight.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use x402_proto::{FacilitatorError, ReasonCode, SettleResponse, VerifyResponse};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
    reason: String,
}

impl OutcomeLabels {
    fn new(outcome: &'static str, reason: Option<&ReasonCode>) -> Self {
        Self {
            outcome,
            reason: reason.map(ToString::to_string).unwrap_or_default(),
        }
    }
}

/// An answer counted by its outcome and reason code.
trait Outcome {
    fn labels(&self) -> OutcomeLabels;
}

impl Outcome for VerifyResponse {
    fn labels(&self) -> OutcomeLabels {
        if self.is_valid {
            OutcomeLabels::new("valid", None)
        } else {
            OutcomeLabels::new("invalid", self.invalid_reason.as_ref())
        }
    }
}

impl Outcome for SettleResponse {
    fn labels(&self) -> OutcomeLabels {
        let reason = self.error_reason.as_ref();
        if self.success {
            OutcomeLabels::new("success", None)
        } else if reason == Some(&ReasonCode::SETTLEMENT_PENDING) {
            OutcomeLabels::new("pending", reason)
        } else {
            OutcomeLabels::new("failure", reason)
        }
    }
}

/// One endpoint's requests: counted by outcome and reason, and timed.
#[derive(Clone, Debug)]
struct Endpoint {
    total: Family<OutcomeLabels, Counter>,
    seconds: Histogram,
}

impl Endpoint {
    /// Registers `<name>` (counts, described by `help`) and `<name>_duration_seconds`.
    fn register(registry: &mut Registry, name: &str, help: &str) -> Self {
        let total = Family::<OutcomeLabels, Counter>::default();
        // 1 ms to ~33 s.
        let seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(name, help, total.clone());
        registry.register(
            format!("{name}_duration_seconds"),
            format!("Time to answer a {name} request"),
            seconds.clone(),
        );
        Self { total, seconds }
    }

    fn record<T: Outcome>(&self, result: &Result<T, FacilitatorError>, took: Duration) {
        let labels = match result {
            Ok(answer) => answer.labels(),
            Err(e) => OutcomeLabels {
                outcome: "error",
                reason: error_kind(e).into(),
            },
        };
        self.total.get_or_create(&labels).inc();
        self.seconds.observe(took.as_secs_f64());
    }
}

/// The facilitator's metrics, cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    verify: Endpoint,
    settle: Endpoint,
    in_flight: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics in their own registry.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("x402_facilitator");
        let verify = Endpoint::register(
            &mut registry,
            "verify",
            "Verify requests by outcome (valid, invalid, error) and reason code",
        );
        let settle = Endpoint::register(
            &mut registry,
            "settle",
            "Settle requests by outcome (success, failure, pending, error) and reason code",
        );
        let in_flight = Gauge::default();
        registry.register(
            "pending_settlements",
            "Settlements being sent or awaiting their receipt",
            in_flight.clone(),
        );
        Self {
            registry: Arc::new(registry),
            verify,
            settle,
            in_flight,
        }
    }

    pub(crate) fn record_verify(
        &self,
        result: &Result<VerifyResponse, FacilitatorError>,
        took: Duration,
    ) {
        self.verify.record(result, took);
    }

    pub(crate) fn record_settle(
        &self,
        result: &Result<SettleResponse, FacilitatorError>,
        took: Duration,
    ) {
        self.settle.record(result, took);
    }

    /// The text exposition, with the in-flight gauge set to `in_flight`.
    pub fn render(&self, in_flight: usize) -> String {
        self.in_flight
            .set(i64::try_from(in_flight).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn error_kind(error: &FacilitatorError) -> &'static str {
    match error {
        FacilitatorError::BadRequest(_) => "bad_request",
        FacilitatorError::Unavailable(_) => "unavailable",
        FacilitatorError::BadResponse(_) => "bad_response",
        FacilitatorError::Internal(_) => "internal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_outcome_and_reason() {
        let metrics = Metrics::new();
        metrics.record_verify(&Ok(VerifyResponse::valid("0x1")), Duration::from_millis(3));
        metrics.record_verify(
            &Ok(VerifyResponse::invalid(
                ReasonCode::EXACT_EVM_NONCE_ALREADY_USED,
                "x",
                None,
            )),
            Duration::from_millis(3),
        );
        metrics.record_settle(
            &Err(FacilitatorError::Unavailable("down".into())),
            Duration::from_millis(3),
        );
        let text = metrics.render(2);
        assert!(
            text.contains(r#"x402_facilitator_verify_total{outcome="valid",reason=""} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"reason="invalid_exact_evm_nonce_already_used"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"x402_facilitator_settle_total{outcome="error",reason="unavailable"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("x402_facilitator_pending_settlements 2"),
            "{text}"
        );
        assert!(
            text.contains("x402_facilitator_verify_duration_seconds_count 2"),
            "{text}"
        );
    }
}
