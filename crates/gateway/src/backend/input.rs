//! Reading a service's JSON input: the checks every backend shares, each refusal saying what
//! to send instead.

use serde_json::Value;
use x402_paywall::Rejection;

use crate::config::GatewayLimits;

/// A 400 before payment saying what to fix.
pub fn bad(message: impl Into<String>) -> Rejection {
    Rejection::bad_request(message)
}

/// `input.field` as a string, when present.
pub fn string_field<'a>(input: &'a Value, field: &str) -> Result<Option<&'a str>, Rejection> {
    match input.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("input.{field} must be a string"))),
    }
}

/// `input.field` as a required non-blank string.
pub fn required_text(input: &Value, field: &str) -> Result<String, Rejection> {
    string_field(input, field)?
        .filter(|t| !t.trim().is_empty())
        .map(str::to_owned)
        .ok_or_else(|| bad(format!("input.{field} (a non-empty string) is required")))
}

/// `input.text` to be spoken: required, non-blank, at most `limits.max_text_chars`
/// characters.
pub fn text_to_speak(input: &Value, limits: &GatewayLimits) -> Result<String, Rejection> {
    let text = required_text(input, "text")?;
    let chars = text.chars().count();
    if chars > limits.max_text_chars {
        return Err(bad(format!(
            "input.text has {chars} characters; at most {}",
            limits.max_text_chars
        )));
    }
    Ok(text)
}

/// One text or a list of texts (strings or `{"text": …}`), within the batch and size limits.
pub fn text_list(
    value: &Value,
    field: &str,
    limits: &GatewayLimits,
) -> Result<Vec<String>, Rejection> {
    let items = match value {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(text) => Ok(text.clone()),
                Value::Object(map) => map
                    .get("text")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        bad(format!(
                            "{field}[{i}] must be a string or {{\"text\": string}}"
                        ))
                    }),
                _ => Err(bad(format!("{field}[{i}] must be a string"))),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(bad(format!(
                "{field} must be a string or an array of strings"
            )));
        }
    };
    if items.is_empty() {
        return Err(bad(format!("{field} is empty: give at least one text")));
    }
    if items.len() > limits.max_batch {
        return Err(bad(format!(
            "{field} has {} items; at most {} per request",
            items.len(),
            limits.max_batch
        )));
    }
    let chars: usize = items.iter().map(|t| t.chars().count()).sum();
    if chars > limits.max_text_chars {
        return Err(bad(format!(
            "{field} has {chars} characters; at most {} per request",
            limits.max_text_chars
        )));
    }
    if let Some(i) = items.iter().position(|t| t.trim().is_empty()) {
        return Err(bad(format!("{field}[{i}] is empty")));
    }
    Ok(items)
}

/// Runs CPU-heavy work (tokenizing, parsing a PDF) while pricing a request: on a
/// multi-threaded runtime the worker hands its other tasks to another thread first, so the
/// work does not stall them; elsewhere it runs in place.
pub fn off_the_async_workers<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits() -> GatewayLimits {
        GatewayLimits {
            max_batch: 2,
            max_text_chars: 10,
            ..GatewayLimits::default()
        }
    }

    #[test]
    fn text_lists_take_strings_and_text_objects_within_the_limits() {
        let texts = text_list(&json!(["a", {"text": "b"}]), "input.texts", &limits()).unwrap();
        assert_eq!(texts, ["a", "b"]);
        assert_eq!(
            text_list(&json!("one"), "input.text", &limits()).unwrap(),
            ["one"]
        );
        for (value, says) in [
            (json!([]), "is empty"),
            (json!(["a", "b", "c"]), "at most 2"),
            (json!(["0123456789x"]), "11 characters"),
            (json!(["a", " "]), "input.texts[1] is empty"),
            (json!([1]), "input.texts[0] must be a string"),
            (json!(7), "must be a string or an array"),
        ] {
            let refused = text_list(&value, "input.texts", &limits()).unwrap_err();
            assert!(
                format!("{refused:?}").contains(says),
                "{value}: {refused:?}"
            );
        }
    }

    #[test]
    fn heavy_work_runs_in_place_outside_a_multi_threaded_runtime() {
        assert_eq!(off_the_async_workers(|| 2 + 2), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn heavy_work_hands_over_the_worker_on_a_multi_threaded_runtime() {
        assert_eq!(off_the_async_workers(|| 2 + 2), 4);
    }
}
