//! Prices: what a checked request is charged (its 402 quote) and what `/catalog/estimate`
//! says it would be, both as the service's rate times its units, rounded up to the asset's
//! smallest unit.

use std::collections::HashMap;

use x402_gateway_api::{Estimate, Unit};
use x402_paywall::Quote;

use crate::backend::chat::{DEFAULT_MAX_TOKENS, estimated_tokens};
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
    if prepared.as_job {
        quote = quote.settle_before_handler();
    }
    if prepared.task.streams() {
        // Sent before it settles: the paywall checks the payment and payer before running it.
        quote = quote.streamed();
    }
    quote.with_extension(prepared.clone())
}

/// The tokens a chat completion used: what the upstream reports (`usage.total_tokens`, or
/// prompt plus completion tokens), else the billed prompt estimate plus the answer's
/// characters at 4 a token.
pub fn chat_tokens_used(completion: &serde_json::Value, prompt_estimate: u64) -> u64 {
    let usage = &completion["usage"];
    let reported = usage["total_tokens"]
        .as_u64()
        .or_else(|| Some(usage["prompt_tokens"].as_u64()? + usage["completion_tokens"].as_u64()?));
    reported.unwrap_or_else(|| {
        let answer: usize = completion["choices"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["message"]["content"].as_str())
            .map(|text| text.chars().count())
            .sum();
        prompt_estimate + estimated_tokens(answer as u64)
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
                    estimated_tokens(t.chars().count() as u64)
                        + DEFAULT_MAX_TOKENS * u64::from(backend == BackendKind::Chat)
                }
            },
            (None, None) => 1000,
        },
        Unit::Chars1k => number("characters")?
            .or(text.map(|t| t.chars().count() as u64))
            .unwrap_or(1000),
        Unit::Minute | Unit::Second => number("seconds")?.unwrap_or(60),
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
