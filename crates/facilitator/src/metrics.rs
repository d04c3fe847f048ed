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
use x402_proto::{FacilitatorError, SettleResponse, VerifyResponse};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
    reason: String,
}

/// The facilitator's metrics, cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    verify_total: Family<OutcomeLabels, Counter>,
    settle_total: Family<OutcomeLabels, Counter>,
    verify_seconds: Histogram,
    settle_seconds: Histogram,
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
        let verify_total = Family::<OutcomeLabels, Counter>::default();
        let settle_total = Family::<OutcomeLabels, Counter>::default();
        // 1 ms to ~33 s.
        let verify_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let settle_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let in_flight = Gauge::default();
        registry.register(
            "verify",
            "Verify requests by outcome (valid, invalid, error) and reason code",
            verify_total.clone(),
        );
        registry.register(
            "settle",
            "Settle requests by outcome (success, failure, pending, error) and reason code",
            settle_total.clone(),
        );
        registry.register(
            "verify_duration_seconds",
            "Time to answer a verify request",
            verify_seconds.clone(),
        );
        registry.register(
            "settle_duration_seconds",
            "Time to answer a settle request",
            settle_seconds.clone(),
        );
        registry.register(
            "pending_settlements",
            "Settlements being sent or awaiting their receipt",
            in_flight.clone(),
        );
        Self {
            registry: Arc::new(registry),
            verify_total,
            settle_total,
            verify_seconds,
            settle_seconds,
            in_flight,
        }
    }

    pub(crate) fn record_verify(
        &self,
        result: &Result<VerifyResponse, FacilitatorError>,
        took: Duration,
    ) {
        let labels = match result {
            Ok(r) if r.is_valid => OutcomeLabels {
                outcome: "valid",
                reason: String::new(),
            },
            Ok(r) => OutcomeLabels {
                outcome: "invalid",
                reason: r
                    .invalid_reason
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            },
            Err(e) => OutcomeLabels {
                outcome: "error",
                reason: error_kind(e).into(),
            },
        };
        self.verify_total.get_or_create(&labels).inc();
        self.verify_seconds.observe(took.as_secs_f64());
    }

    pub(crate) fn record_settle(
        &self,
        result: &Result<SettleResponse, FacilitatorError>,
        took: Duration,
    ) {
        let labels = match result {
            Ok(r) if r.success => OutcomeLabels {
                outcome: "success",
                reason: String::new(),
            },
            Ok(r) => {
                let reason = r
                    .error_reason
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                OutcomeLabels {
                    outcome: if reason == "settlement_pending" {
                        "pending"
                    } else {
                        "failure"
                    },
                    reason,
                }
            }
            Err(e) => OutcomeLabels {
                outcome: "error",
                reason: error_kind(e).into(),
            },
        };
        self.settle_total.get_or_create(&labels).inc();
        self.settle_seconds.observe(took.as_secs_f64());
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
    use x402_proto::ReasonCode;

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
