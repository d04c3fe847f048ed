//! Golden tests over traffic captured from the official SDKs (`testdata/x402-wire-samples`):
//! every header and body decodes into our types, re-encodes to an equal value, and every
//! EIP-3009 signature recovers to `authorization.from`.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use alloy::primitives::{Address, Signature};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use x402_evm::{ExactEvmPayload, authorization_digest, eip712_domain};
use x402_proto::{
    Network, PaymentPayload, PaymentRequest, PaymentRequired, SettleResponse, SupportedResponse,
    VerifyResponse, decode_header, encode_header, v1, v2,
};

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/x402-wire-samples")
}

#[derive(Default, Debug)]
struct Tally {
    headers: usize,
    bodies: usize,
    facilitator_messages: usize,
    signatures: usize,
}

/// Parses `json` as `T`, re-encodes it and requires the same JSON back.
fn round_trip<T: DeserializeOwned + Serialize + PartialEq + Debug>(json: &Value, what: &str) -> T {
    let typed: T = serde_json::from_value(json.clone())
        .unwrap_or_else(|e| panic!("{what}: does not decode: {e}\n{json:#}"));
    let again = serde_json::to_value(&typed).unwrap();
    assert_eq!(&again, json, "{what}: re-encoding changed the value");
    typed
}

/// Decodes a base64 header value as `T`, requiring an equal value after re-encoding.
fn header_round_trip<T: DeserializeOwned + Serialize + PartialEq + Debug>(
    value: &str,
    what: &str,
) -> T {
    let json: Value = decode_header(value.as_bytes()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let typed: T = round_trip(&json, what);
    let reencoded = encode_header(&typed);
    let again: T = decode_header(reencoded.as_bytes()).unwrap();
    assert_eq!(again, typed, "{what}: header re-encoding changed the value");
    typed
}

/// Recovers the signer of an `exact` EVM payload under `requirements`' domain.
fn recover(
    payload: &Value,
    requirements: &v2::PaymentRequirements,
    what: &str,
) -> (Address, Address) {
    let exact: ExactEvmPayload =
        serde_json::from_value(payload.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let extra = requirements.extra.as_ref().expect("extra");
    let chain_id = requirements.network.evm_chain_id().expect("EVM network");
    let domain = eip712_domain(
        extra["name"].as_str().unwrap(),
        extra["version"].as_str().unwrap(),
        chain_id,
        requirements.asset.parse().unwrap(),
    );
    let digest = authorization_digest(&exact.authorization, &domain);
    let signer = Signature::from_raw(&exact.signature)
        .unwrap()
        .recover_address_from_prehash(&digest)
        .unwrap();
    (signer, exact.authorization.from)
}

fn check_signature(
    tally: &mut Tally,
    payment: &PaymentPayload,
    requirements: Option<&v2::PaymentRequirements>,
    what: &str,
) {
    let requirements = match (payment, requirements) {
        (_, Some(requirements)) => requirements.clone(),
        (PaymentPayload::V2(p), None) => p.accepted.clone(),
        (PaymentPayload::V1(_), None) => panic!("{what}: v1 payment without requirements"),
    };
    let (signer, from) = recover(payment.payload(), &requirements, what);
    assert_eq!(
        signer, from,
        "{what}: signature does not recover to authorization.from"
    );
    tally.signatures += 1;
}

/// Handles one header by name; returns the payment if it was a payment header.
fn check_header(tally: &mut Tally, name: &str, value: &str, what: &str) -> Option<PaymentPayload> {
    let what = format!("{what} header {name}");
    tally.headers += 1;
    match name.to_ascii_lowercase().as_str() {
        "payment-required" => {
            let required: PaymentRequired = header_round_trip(value, &what);
            assert!(matches!(required, PaymentRequired::V2(_)), "{what}");
            None
        }
        "payment-signature" | "x-payment" => Some(header_round_trip(value, &what)),
        "payment-response" | "x-payment-response" => {
            let _: SettleResponse = header_round_trip(value, &what);
            None
        }
        _ => {
            tally.headers -= 1;
            None
        }
    }
}

fn check_body(tally: &mut Tally, body: &str, what: &str) -> Option<PaymentRequired> {
    let json: Value = serde_json::from_str(body).ok()?;
    json.get("x402Version")?;
    tally.bodies += 1;
    Some(round_trip(&json, &format!("{what} body")))
}

fn first_v1_requirements(required: Option<&PaymentRequired>) -> Option<v2::PaymentRequirements> {
    match required? {
        PaymentRequired::V1(v1::PaymentRequired { accepts, .. }) => {
            accepts.first().map(|r| r.to_v2())
        }
        PaymentRequired::V2(_) => None,
    }
}

fn check_exchange(tally: &mut Tally, json: &Value, what: &str) {
    let mut challenge = None;
    for (i, round) in json
        .as_array()
        .expect("exchange is an array")
        .iter()
        .enumerate()
    {
        let what = format!("{what}[{i}]");
        for side in ["request", "response"] {
            let headers = round[side]["headers"].as_object().unwrap();
            for (name, value) in headers {
                if let Some(payment) = check_header(tally, name, value.as_str().unwrap(), &what) {
                    let v1_requirements = first_v1_requirements(challenge.as_ref());
                    check_signature(tally, &payment, v1_requirements.as_ref(), &what);
                }
            }
        }
        if let Some(body) = round["response"]["body"].as_str()
            && let Some(required) = check_body(tally, body, &what)
        {
            challenge = Some(required);
        }
    }
}

fn check_facilitator_message(
    tally: &mut Tally,
    path: &str,
    request: Option<&Value>,
    response: &Value,
    what: &str,
) {
    tally.facilitator_messages += 1;
    match path {
        "/verify" | "/settle" => {
            let request: PaymentRequest =
                round_trip(request.expect("request body"), &format!("{what} request"));
            let payment = match &request {
                PaymentRequest::V1 { payload, .. } => PaymentPayload::V1(payload.clone()),
                PaymentRequest::V2 { payload, .. } => PaymentPayload::V2(payload.clone()),
            };
            check_signature(tally, &payment, Some(&request.requirements()), what);
            if path == "/verify" {
                let _: VerifyResponse = round_trip(response, &format!("{what} response"));
            } else {
                let _: SettleResponse = round_trip(response, &format!("{what} response"));
            }
        }
        "/supported" => {
            let supported: SupportedResponse = round_trip(response, &format!("{what} response"));
            for kind in &supported.kinds {
                let expected = if kind.x402_version == 1 {
                    kind.network.to_v1_name()
                } else {
                    kind.network.to_caip2()
                };
                assert_eq!(
                    expected.as_ref(),
                    Some(&kind.network),
                    "{what}: network form"
                );
            }
        }
        other => panic!("{what}: unexpected facilitator path {other}"),
    }
}

/// Checks a recorded facilitator call: its `path`, and the request and response under `keys`.
fn check_facilitator_entry(tally: &mut Tally, entry: &Value, keys: [&str; 2], what: &str) {
    let [request, response] = keys;
    check_facilitator_message(
        tally,
        entry["path"].as_str().unwrap(),
        entry.get(request),
        &entry[response],
        what,
    );
}

fn check_http_capture(tally: &mut Tally, text: &str, what: &str) {
    let (head, body) = text
        .split_once("\r\n\r\n")
        .or_else(|| text.split_once("\n\n"))
        .expect("headers and body");
    for line in head.lines().skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            check_header(tally, name.trim(), value.trim(), what);
        }
    }
    check_body(tally, body.trim(), what);
}

fn check_decoded(tally: &mut Tally, file_name: &str, json: &Value, what: &str) {
    tally.headers += 1;
    if file_name.contains(".PAYMENT-REQUIRED.") {
        let _: PaymentRequired = round_trip(json, what);
    } else if file_name.contains(".PAYMENT-SIGNATURE.") || file_name.contains(".X-PAYMENT.") {
        let payment: PaymentPayload = round_trip(json, what);
        if let PaymentPayload::V2(_) = payment {
            check_signature(tally, &payment, None, what);
        }
    } else if file_name.contains("PAYMENT-RESPONSE.") {
        let _: SettleResponse = round_trip(json, what);
    } else {
        panic!("{what}: unknown decoded header file");
    }
}

#[test]
fn every_captured_message_decodes_round_trips_and_verifies() {
    let mut tally = Tally::default();
    let mut files = 0;
    for dir in ["v1", "v2", "facilitator"] {
        let mut entries: Vec<_> = std::fs::read_dir(samples_dir().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            files += 1;
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let what = format!("{dir}/{name}");
            let text = std::fs::read_to_string(&path).unwrap();
            if name.ends_with(".jsonl") {
                // A log of proxied calls: one object a line.
                for (i, line) in text.lines().enumerate() {
                    let entry: Value = serde_json::from_str(line).unwrap();
                    let what = format!("{what}:{}", i + 1);
                    check_facilitator_entry(&mut tally, &entry, ["request", "response"], &what);
                }
            } else if name.ends_with(".http") {
                check_http_capture(&mut tally, &text, &what);
            } else if dir == "facilitator" {
                let entry: Value = serde_json::from_str(&text).unwrap();
                check_facilitator_entry(&mut tally, &entry, ["requestBody", "responseBody"], &what);
            } else if name.ends_with(".exchange.json") {
                check_exchange(&mut tally, &serde_json::from_str(&text).unwrap(), &what);
            } else if name.ends_with(".decoded.json") {
                check_decoded(
                    &mut tally,
                    &name,
                    &serde_json::from_str(&text).unwrap(),
                    &what,
                );
            } else if name.ends_with(".body.json") {
                let body = check_body(&mut tally, &text, &what);
                assert!(
                    body.is_some() || text.trim() == "{}",
                    "{what}: unexpected body"
                );
            } else {
                panic!("{what}: no check for this kind of file");
            }
        }
    }
    assert_eq!(files, 53, "every sample file is checked");
    // Counts from the captures as committed: a branch above that silently stopped checking
    // would change them.
    assert_eq!(tally.headers, 50, "{tally:?}");
    assert_eq!(tally.bodies, 9, "{tally:?}");
    assert_eq!(tally.facilitator_messages, 46, "{tally:?}");
    assert_eq!(tally.signatures, 57, "{tally:?}");
    println!("{tally:?}");
}

#[test]
fn v1_names_in_the_captures_map_to_the_v2_networks() {
    assert_eq!(
        Network::new("base-sepolia").to_caip2(),
        Some(Network::BASE_SEPOLIA)
    );
}
