//! Ten thousand generated payment headers and bodies, driven into the paywall as a tower
//! service (`oneshot`, no socket), with our facilitator in process on a real chain: garbage
//! bytes, base64 of garbage, and real signed payments with one signed field changed. None
//! panics, none gets a 5xx, none is served, and nothing is settled: the payee's balance and
//! the facilitator's nonce do not move.

mod common;

use std::sync::Arc;

use axum::body::Body;
use base64::Engine as _;
use common::Shop;
use http::Request;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};
use tower::ServiceExt;
use x402_paywall::{Paywall, PaywallConfig};
use x402_testkit::{Wire, payment_for};

const CASES: u32 = 10_000;

/// One generated request: which route, which header, the header's value, the body.
#[derive(Debug, Clone)]
struct Case {
    route: &'static str,
    header: &'static str,
    value: Vec<u8>,
    body: Vec<u8>,
}

/// Changes that always break a signed payment: a signed field, the signature, or the
/// requirements the client claims to have accepted.
fn break_payment(valid: &Value, which: usize, noise: u64, text: &str) -> Value {
    let mut payment = valid.clone();
    let auth = "/payload/authorization";
    let set = |payment: &mut Value, pointer: &str, value: Value| {
        if let Some(slot) = payment.pointer_mut(pointer) {
            *slot = value;
        }
    };
    match which % 14 {
        // Never the price itself (10000): that would be the honest payment.
        0 => set(
            &mut payment,
            &format!("{auth}/value"),
            json!((10_001 + noise % 1_000_000).to_string()),
        ),
        1 => set(
            &mut payment,
            &format!("{auth}/to"),
            json!(format!("0x{:040x}", noise)),
        ),
        2 => set(
            &mut payment,
            &format!("{auth}/nonce"),
            json!(format!("0x{:064x}", noise)),
        ),
        3 => set(
            &mut payment,
            &format!("{auth}/validBefore"),
            json!(noise.to_string()),
        ),
        4 => set(
            &mut payment,
            &format!("{auth}/validAfter"),
            json!((noise % 10_000_000_000).to_string()),
        ),
        5 => set(
            &mut payment,
            &format!("{auth}/from"),
            json!(format!("0x{:040x}", noise | 1)),
        ),
        6 => {
            // One byte of the signature changed.
            let signature = payment["payload"]["signature"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let mut bytes = signature.into_bytes();
            let at = 2 + (noise as usize % (bytes.len().saturating_sub(2)).max(1));
            if let Some(byte) = bytes.get_mut(at) {
                *byte = if *byte == b'0' { b'1' } else { b'0' };
            }
            set(
                &mut payment,
                "/payload/signature",
                json!(String::from_utf8_lossy(&bytes)),
            );
        }
        7 => set(&mut payment, "/payload/signature", json!(text)),
        8 => set(&mut payment, &format!("{auth}/value"), json!(text)),
        9 => set(
            &mut payment,
            "/accepted/amount",
            json!((noise % 100).to_string()),
        ),
        10 => set(&mut payment, "/accepted/payTo", json!(text)),
        11 => set(
            &mut payment,
            "/x402Version",
            json!([0, 1, 3, 99][(noise % 4) as usize]),
        ),
        12 => set(&mut payment, "/payload", json!(text)),
        _ => set(&mut payment, &format!("{auth}/nonce"), Value::Null),
    }
    payment
}

fn case_strategy(valid: Value) -> impl Strategy<Value = Case> {
    let route = prop_oneof![Just("/weather"), Just("/priced"), Just("/think")];
    let header = prop_oneof![Just("PAYMENT-SIGNATURE"), Just("X-PAYMENT")];
    let body = prop_oneof![
        Just(br#"{"units": 3}"#.to_vec()),
        proptest::collection::vec(any::<u8>(), 0..64),
        "[ -~]{0,40}".prop_map(String::into_bytes),
    ];
    let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let value = prop_oneof![
        // Printable garbage, as the header value.
        3 => "[!-~]{0,120}".prop_map(String::into_bytes),
        // Base64 of garbage bytes.
        2 => proptest::collection::vec(any::<u8>(), 0..200).prop_map(move |b| encode(&b).into_bytes()),
        // Base64 of JSON that is almost a payment.
        2 => ("[ -~]{0,20}", any::<u64>()).prop_map(move |(s, n)| {
            encode(json!({"x402Version": n % 4, "payload": s, "accepted": {}}).to_string().as_bytes()).into_bytes()
        }),
        // A real signed payment with one field broken.
        8 => (any::<usize>(), any::<u64>(), "[ -~]{0,70}").prop_map(move |(which, noise, text)| {
            encode(break_payment(&valid, which, noise, &text).to_string().as_bytes()).into_bytes()
        }),
    ];
    (route, header, value, body).prop_map(|(route, header, value, body)| Case {
        route,
        header,
        value,
        body,
    })
}

#[test]
fn ten_thousand_generated_payments_break_nothing_and_settle_nothing() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (shop, app, valid) = runtime.block_on(async {
        let shop = Shop::start().await;
        let paywall = Paywall::new(
            shop.paying.clone(),
            vec![common::option(&shop.base.chain)],
            PaywallConfig::default(),
        )
        .unwrap();
        let app = common::app(&paywall);
        // One honest payment to break in many ways.
        let challenge = shop
            .http
            .get(format!("{}/weather", shop.url))
            .send()
            .await
            .unwrap();
        let (_, header) = payment_for(challenge, shop.payer(), Wire::V2).await;
        let engine = base64::engine::general_purpose::STANDARD;
        let valid: Value = serde_json::from_slice(&engine.decode(header).unwrap()).unwrap();
        (shop, app, valid)
    });
    let before = runtime.block_on(shop.pay_to_balance());
    let txs_before = runtime.block_on(shop.base.chain.facilitator_tx_count());
    let app = Arc::new(app);
    let statuses = std::cell::RefCell::new(std::collections::BTreeMap::<u16, u32>::new());

    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&case_strategy(valid), |case| {
        let method = if case.route == "/weather" {
            "GET"
        } else {
            "POST"
        };
        let Ok(request) = Request::builder()
            .method(method)
            .uri(case.route)
            .header("host", "shop.test")
            .header(case.header, case.value.as_slice())
            .body(Body::from(case.body.clone()))
        else {
            // Not a valid HTTP header value: no server would receive it.
            return Ok(());
        };
        let response = runtime
            .block_on(app.as_ref().clone().oneshot(request))
            .expect("infallible");
        let status = response.status().as_u16();
        *statuses.borrow_mut().entry(status).or_default() += 1;
        if status >= 500 || status == 200 {
            return Err(TestCaseError::fail(format!("{status} for {case:?}")));
        }
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    let statuses = statuses.into_inner();
    eprintln!("statuses over {CASES} generated requests: {statuses:?}");
    assert!(
        statuses.get(&402).copied().unwrap_or_default() > CASES / 2,
        "{statuses:?}"
    );
    assert_eq!(
        runtime.block_on(shop.pay_to_balance()),
        before,
        "nothing was settled"
    );
    assert_eq!(
        runtime.block_on(shop.base.chain.facilitator_tx_count()),
        txs_before,
        "no transaction"
    );
}
