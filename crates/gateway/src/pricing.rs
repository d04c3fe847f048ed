//! Prices: what a checked request is charged (its 402 quote) and what `/catalog/estimate`
//! says it would be, both as the service's rate times its units, rounded up to the asset's
//! smallest unit.

use std::collections::HashMap;

use x402_gateway_api::{Estimate, Unit};
use x402_paywall::Quote;

use crate::backend::chat::{DEFAULT_MAX_TOKENS, TokenEstimate, answer_texts, estimated_tokens};
use crate::catalog::BackendKind;
use crate::services::{Backends, Offered};
use crate::task::Prepared;

/// The price of a checked request: the service's rate times its units. A job settles before
/// it starts; the request rides along for the handler.
pub fn quote(prepared: &Prepared, offered: &Offered) -> Quote {
    let unit = offered.def.unit;
    let mut quote =
        Quote::per_unit(offered.price.clone(), prepared.units, unit.per()).describe(format!(
            "{} ({}: {} {})",
            offered.def.name,
            offered.def.key,
            prepared.units,
            unit.measure()
        ));
    // The journal names the service sold, and the job the payment starts.
    quote = quote.service(prepared.service);
    if prepared.as_job {
        quote = quote.settle_before_handler();
    }
    if let Some(job) = &prepared.job_id {
        quote = quote.job(job.clone());
    }
    if prepared.task.streams() {
        // Sent before it settles: the paywall checks the payment and payer before running it.
        quote = quote.streamed();
    }
    quote.with_extension(prepared.clone())
}

/// The tokens a chat completion used: what the upstream reports (`usage.total_tokens`, or
/// prompt plus completion tokens), else the billed prompt estimate plus the
/// [`estimated_tokens`] of every text the answer's messages carry (content, reasoning, tool
/// call arguments, refusal).
pub fn chat_tokens_used(completion: &serde_json::Value, prompt_estimate: u64) -> u64 {
    reported_tokens(&completion["usage"]).unwrap_or_else(|| {
        let mut answer = TokenEstimate::default();
        for choice in completion["choices"].as_array().into_iter().flatten() {
            answer_texts(&choice["message"]).for_each(|text| answer.add(text));
        }
        prompt_estimate + answer.tokens()
    })
}

/// The tokens an upstream's `usage` object counts: `total_tokens`, or prompt plus completion
/// tokens.
fn reported_tokens(usage: &serde_json::Value) -> Option<u64> {
    usage["total_tokens"].as_u64().or_else(|| {
        usage["prompt_tokens"]
            .as_u64()?
            .checked_add(usage["completion_tokens"].as_u64()?)
    })
}

/// What `units` of `offered` cost in atomic units of an asset with `decimals` (rounded up);
/// `None` when the price does not convert.
pub fn cost_atomic(offered: &Offered, units: u64, decimals: u8) -> Option<x402_proto::U256> {
    offered
        .price
        .scaled_to_atomic(decimals, units, offered.def.unit.per())
        .ok()
        .map(|a| a.0)
}

/// What `units` of `offered` cost in USD, for an asset with `decimals` (as charged: rounded up).
pub fn cost_usd(offered: &Offered, units: u64, decimals: u8) -> String {
    offered
        .price
        .scaled_to_atomic(decimals, units, offered.def.unit.per())
        .map(|a| a.to_human(decimals))
        .unwrap_or_default()
}

/// `GET /catalog/estimate`: the units given in `query` (`tokens`, `characters`, `seconds`, or
/// measured from `text`), or a typical amount, priced. A bad number is refused with what to
/// send.
pub fn estimate(
    offered: &Offered,
    query: &HashMap<String, String>,
    backends: &Backends,
    decimals: u8,
) -> Result<Estimate, String> {
    let unit = offered.def.unit;
    let number = |name: &str| -> Result<Option<u64>, String> {
        match query.get(name) {
            None => Ok(None),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .map(|n| Some(n.ceil() as u64))
                .ok_or_else(|| format!("{name} must be a non-negative number")),
        }
    };
    let text = query.get("text");
    let units = match unit {
        Unit::Tokens1k => match (number("tokens")?, text) {
            (Some(n), _) => n,
            (None, Some(t)) => match (offered.def.backend, &backends.embeddings) {
                (BackendKind::Embeddings, Ok(model)) => {
                    model.count_tokens(std::slice::from_ref(t)).unwrap_or(0) as u64
                }
                (backend, _) => {
                    estimated_tokens(t)
                        + DEFAULT_MAX_TOKENS * u64::from(backend == BackendKind::Chat)
                }
            },
            (None, None) => 1000,
        },
        Unit::Chars1k => number("characters")?
            .or(text.map(|t| t.chars().count() as u64))
            .unwrap_or(1000),
        Unit::Minute | Unit::Second => number("seconds")?.unwrap_or(60),
        Unit::Page => number("pages")?.unwrap_or(1),
        _ => 1,
    }
    .max(1);
    let price_per_second = matches!(unit, Unit::Minute | Unit::Second).then(|| {
        offered
            .price
            .scaled_to_atomic(decimals, 1, unit.per())
            .map(|a| a.to_human(decimals))
            .unwrap_or_default()
    });
    Ok(Estimate {
        service: offered.def.key.to_owned(),
        estimated_cost_usd: cost_usd(offered, units, decimals),
        unit,
        units,
        price_usd: offered.price.as_str().to_owned(),
        per: unit.label().to_owned(),
        available: offered.available.is_ok(),
        note: format!(
            "{units} {} at ${} {}; POST /run quotes the exact price of a request in its 402",
            unit.measure(),
            offered.price,
            unit.label()
        ),
        price_per_second,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_answer_without_usage_counts_every_text_it_carries() {
        let completion =
            json!({"choices": [{"message": {"content": "abcd", "reasoning_content": "日本"}}]});
        assert_eq!(chat_tokens_used(&completion, 10), 10 + 1 + 6);
        let counted = json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}});
        assert_eq!(chat_tokens_used(&counted, 10), 7);
    }
}
