//! Reading JSON answers in tests: a request's JSON body, and a string inside a document.

use serde_json::Value;

/// Sends `request` and reads its answer's body as JSON, whatever the status.
pub async fn fetch_json(request: reqwest::RequestBuilder) -> Value {
    request
        .send()
        .await
        .expect("the request is answered")
        .json()
        .await
        .expect("the answer is JSON")
}

/// Asserts that the string at `pointer` (a JSON pointer, `/output/text`) in `document`
/// contains `needle`; the whole document is shown when it does not.
#[track_caller]
pub fn assert_text_at(document: &Value, pointer: &str, needle: &str) {
    let text = document
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {document}"));
    assert!(
        text.contains(needle),
        "{pointer} should contain {needle:?}: {document}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_at_finds_nested_strings_and_names_what_is_missing() {
        let document = serde_json::json!({"output": {"text": "Invoice 4021"}, "n": 1});
        assert_text_at(&document, "/output/text", "4021");
        for (pointer, needle) in [("/output/text", "4022"), ("/n", "1"), ("/nope", "")] {
            let missed = std::panic::catch_unwind(|| assert_text_at(&document, pointer, needle));
            assert!(missed.is_err(), "{pointer} {needle}");
        }
    }
}
