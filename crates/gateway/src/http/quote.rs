//! Quotes: parse and check the input, measure it, price it. Runs before payment.

use super::*;
use crate::services::Offered;

pub(super) fn parse_json(body: &[u8]) -> Result<Value, Rejection> {
    if body.is_empty() {
        return Err(Rejection::bad_request(
            "the request body is empty; send JSON",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| Rejection::bad_request(format!("the request body is not valid JSON: {e}")))
}

pub(super) fn quote_run(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<x402_paywall::Quote, Rejection> {
    let request = parse_json(body)?;
    let Some(key) = request.get("service").and_then(Value::as_str) else {
        return Err(Rejection::bad_request("\"service\" (a string) is required, e.g. {\"service\": \"embed-l4\", \"input\": {\"text\": \"…\"}}")
            .with("available_services", state.registry.available_keys()));
    };
    let Some(offered) = state.registry.get(key) else {
        return Err(Rejection::bad_request(format!("unknown service {key:?}"))
            .with("hint", "GET /catalog lists every service")
            .with("available_services", state.registry.available_keys()));
    };
    if let Err(why) = &offered.available {
        return Err(Rejection::bad_request(format!(
            "service {} is not available here: {why}",
            offered.def.key
        ))
        .with_status(StatusCode::SERVICE_UNAVAILABLE)
        .with("available_services", state.registry.available_keys()));
    }
    let input = request.get("input").cloned().unwrap_or(Value::Null);
    if input.is_null() {
        return Err(Rejection::bad_request("\"input\" (an object) is required"));
    }
    let wants_job = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("respond-async"));
    quote(state, offered, &input, wants_job)
}

/// The model a request names, if any.
fn model_of(request: &Value) -> Option<&str> {
    request.get("model").and_then(Value::as_str)
}

/// Checks and measures `input` for `offered` (as a job when `as_job`), and prices it.
fn quote(
    state: &AppState,
    offered: &Offered,
    input: &Value,
    as_job: bool,
) -> Result<x402_paywall::Quote, Rejection> {
    let prepared = task::prepare(offered, input, &state.backends, &state.limits, as_job)?;
    Ok(pricing::quote(&prepared, offered))
}

pub(super) fn quote_openai_embeddings(
    state: &AppState,
    body: &[u8],
) -> Result<x402_paywall::Quote, Rejection> {
    let request = parse_json(body)?;
    let model = model_of(&request).unwrap_or(MODEL_NAME);
    let known = [
        MODEL_NAME,
        "embed-l4",
        "embedding-l4",
        "embed-code",
        "text-embedding-minilm",
    ];
    if !known
        .iter()
        .any(|k| k.eq_ignore_ascii_case(model) || model.ends_with(MODEL_NAME))
    {
        return Err(
            Rejection::bad_request(format!("unknown embedding model {model:?}"))
                .with("models", known.to_vec()),
        );
    }
    if request
        .get("encoding_format")
        .and_then(Value::as_str)
        .is_some_and(|f| f != "float")
    {
        return Err(Rejection::bad_request(
            "only encoding_format \"float\" is supported",
        ));
    }
    let input = request.get("input").ok_or_else(|| {
        Rejection::bad_request("input (a string or an array of strings) is required")
    })?;
    let offered = state
        .registry
        .get("embed-l4")
        .expect("embed-l4 is in the catalog");
    if let Err(why) = &offered.available {
        return Err(
            Rejection::bad_request(format!("embeddings are not available here: {why}"))
                .with_status(StatusCode::SERVICE_UNAVAILABLE),
        );
    }
    quote(state, offered, &json!({"texts": input}), false)
}

pub(super) fn quote_openai_chat(
    state: &AppState,
    body: &[u8],
) -> Result<x402_paywall::Quote, Rejection> {
    let request = parse_json(body)?;
    let model = model_of(&request).unwrap_or_default();
    let chat = || {
        state
            .registry
            .all()
            .filter(|o| o.def.backend == BackendKind::Chat && o.available.is_ok())
    };
    let chat_services = || {
        chat()
            .flat_map(|o| {
                [
                    Some(o.def.key.to_owned()),
                    o.chat.as_ref().map(|c| c.model().to_owned()),
                ]
            })
            .flatten()
            .collect::<Vec<_>>()
    };
    let offered = chat()
        .find(|o| o.def.key == model || o.chat.as_ref().is_some_and(|c| c.model() == model))
        .ok_or_else(|| {
            Rejection::bad_request(format!("model {model:?} is not served here"))
                .with("models", chat_services())
        })?;
    quote(state, offered, &request, false)
}
