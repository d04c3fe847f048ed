//! Re-encodings of one payment header: what a hostile client sends to be charged once and served twice.

use serde_json::json;

/// Differently encoded copies of one payment header (base64 JSON of a `PaymentPayload`), all
/// carrying the same authorization and signature, as an attacker would send them: signature
/// and nonce hex in upper case, the payer in lower case, an extra field in `payload` and at
/// the top level, keys reordered, whitespace, and a space-padded base64. `count` copies,
/// the original first.
pub fn reencodings(header: &str, count: usize) -> Vec<String> {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let json: serde_json::Value =
        serde_json::from_slice(&engine.decode(header).expect("base64 header")).expect("JSON");
    let upper_hex = |value: &serde_json::Value| {
        let text = value.as_str().expect("hex string");
        serde_json::Value::String(format!("0x{}", text[2..].to_uppercase()))
    };
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let variants: Vec<Edit> = vec![
        Box::new(|_| {}),
        Box::new(move |p| p["payload"]["signature"] = upper_hex(&p["payload"]["signature"])),
        Box::new(move |p| {
            p["payload"]["authorization"]["nonce"] =
                upper_hex(&p["payload"]["authorization"]["nonce"]);
        }),
        Box::new(|p| p["payload"]["note"] = json!("a field the signature does not cover")),
        Box::new(|p| {
            let from = p["payload"]["authorization"]["from"]
                .as_str()
                .unwrap()
                .to_lowercase();
            p["payload"]["authorization"]["from"] = json!(from);
        }),
        Box::new(|p| p["unrelated"] = json!({"x": 1})),
        Box::new(move |p| {
            p["payload"]["signature"] = upper_hex(&p["payload"]["signature"]);
            p["payload"]["authorization"]["nonce"] =
                upper_hex(&p["payload"]["authorization"]["nonce"]);
            p["payload"]["extra"] = json!([1, 2, 3]);
        }),
    ];
    let mut copies = Vec::with_capacity(count);
    for i in 0..count {
        let mut copy = json.clone();
        variants[i % variants.len()](&mut copy);
        let text = if i >= variants.len() {
            // Past the variants: the same JSON pretty-printed, keys in another layout.
            serde_json::to_string_pretty(&copy).unwrap()
        } else {
            serde_json::to_string(&copy).unwrap()
        };
        copies.push(engine.encode(text));
    }
    copies
}
