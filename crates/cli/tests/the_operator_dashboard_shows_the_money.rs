//! The gateway's operator dashboard on `x402 dev`, in headless Chromium: after a scripted run
//! of paid calls (`exact` through the `x402 pay` binary, one of them a job; `batch-settlement`
//! vouchers through the official client), the revenue it shows as settled equals the payee's
//! on-chain balance change and what it shows as charged to channels equals what the vouchers
//! were charged; its payments table lists every payment with its transaction; a payment made
//! while the page is open appears without a reload; its "claim and settle now" action (after a
//! confirmation) claims, and the payee's balance then rises by exactly the unclaimed amount it
//! showed. Without the token the page is a sign-in form and the API answers 401; the session
//! cookie is HttpOnly and holds no token; bad query parameters are answered 400.
//!
//! Real chain (anvil), our facilitator and gateway (the `x402` binary), the official
//! `batch-settlement` client, Debian's Chromium through playwright-core
//! (`tools/browser/gateway-dashboard.mjs`). Screenshots of the overview and payments pages go to
//! `$CARGO_TARGET_TMPDIR/screenshots/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::DevStack;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const DOCUMENT: &str =
    r#"{"service":"pdf-parse","input":{"html":"<html><body><h1>Paid</h1></body></html>"}}"#;

/// `x402 <args>` as the agent of `home`, paying with `key`; asserts it succeeded.
async fn x402(args: &[&str], home: &Path, key: &str) -> std::process::Output {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_x402"))
        .args(args)
        .env("X402_HOME", home)
        .env("X402_PRIVATE_KEY", key)
        .env_remove("RUST_BACKTRACE")
        .output()
        .await
        .expect("x402 runs");
    assert!(
        out.status.success(),
        "x402 {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Pays one `pdf-parse` call with `exact` (as a job with `async`); the agent's receipt of it.
async fn pay_exact(gateway: &str, home: &Path, key: &str, async_job: bool) -> Value {
    let run = format!("{gateway}/run");
    let mut args = vec!["pay", &run, "-X", "POST", "-d", DOCUMENT];
    if async_job {
        args.extend(["-H", "Prefer: respond-async"]);
    }
    x402(&args, home, key).await;
    let out = x402(&["receipts", "--json"], home, key).await;
    let receipts: Value = serde_json::from_slice(&out.stdout).unwrap();
    let newest = receipts
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|r| r["id"].as_i64())
        .unwrap()
        .clone();
    assert_eq!(newest["status"], "paid", "{newest}");
    newest
}

/// `"0.006 USDC"` (as the page shows an amount of a 6-decimal asset) in atomic units.
fn atomic(shown: &str) -> u128 {
    let number = shown.split_whitespace().next().unwrap_or_default();
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    assert!(fraction.len() <= 6, "{shown}");
    let whole: u128 = whole.parse().unwrap_or_else(|_| panic!("{shown:?}"));
    let fraction: u128 = format!("{fraction:0<6}").parse().unwrap();
    whole * 1_000_000 + fraction
}

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_dashboard_shows_the_money_in_a_browser() {
    let dev = DevStack::start();
    let gateway = dev.text("gateway_url");
    let token = dev.text("operator_token");
    let pay_to = dev.text("pay_to");
    let keys: Vec<String> = dev.state["payer_private_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    let home = dev.agent_home();
    let http = reqwest::Client::new();
    let dashboard = format!("{gateway}/dashboard");
    let api = |path: &str| format!("{dashboard}/api/{path}");
    let start_balance = dev.usdc_balance(&pay_to);

    // Without the token: the sign-in form and no data.
    let page = http.get(&dashboard).send().await.unwrap();
    assert_eq!(page.status(), 401);
    let form = page.text().await.unwrap();
    assert!(
        form.contains("name=\"token\"") && !form.contains("view.js"),
        "{form}"
    );
    for path in [
        "overview",
        "payments",
        "payments/1",
        "settlement",
        "jobs",
        "events",
    ] {
        for request in [
            http.get(api(path)),
            http.get(api(path)).bearer_auth("guess"),
        ] {
            let answer = request.send().await.unwrap();
            assert_eq!(answer.status(), 401, "{path}");
        }
    }
    let refused = http
        .post(api("claim"))
        .json(&json!({"confirm": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    // Bad input: 400, saying what to fix; a claim unconfirmed sends nothing.
    for (path, says) in [
        ("payments?page=0", "page"),
        ("payments?per_page=5000", "per_page"),
        ("payments?state=paid", "state must be one of"),
        ("payments?pgae=2", "unknown query parameter"),
        ("payments/abc", "not a payment id"),
        ("overview?tz_offset=9999", "tz_offset"),
        ("overview?tz_offset=7", "multiple of 15"),
    ] {
        let answer = http
            .get(api(path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 400, "{path}");
        let body = answer.text().await.unwrap();
        assert!(body.contains(says), "{path}: {body}");
    }
    let unconfirmed = http
        .post(api("claim"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(unconfirmed.status(), 400);
    assert!(unconfirmed.text().await.unwrap().contains("confirm"));

    // The scripted run: three `exact` calls (one a job), then three voucher-paid calls.
    let mut exact = Vec::new();
    for i in 0..3 {
        exact.push(pay_exact(&gateway, &home, &keys[0], i == 1).await);
    }
    let exact_paid: u128 = exact
        .iter()
        .map(|r| r["amount"].as_str().unwrap().parse::<u128>().unwrap())
        .sum();
    let vouchers = x402_testkit::official_batch_fetch(vec![
        ("URL", format!("{gateway}/run")),
        ("METHOD", "POST".into()),
        ("BODY", DOCUMENT.into()),
        ("PRIVATE_KEY", keys[1].clone()),
        ("COUNT", "3".into()),
    ])
    .await;
    let mut charged = 0u128;
    for request in vouchers["requests"].as_array().unwrap() {
        assert_eq!(request["status"], 200, "{request}");
        charged += request["paymentResponse"]["extra"]["chargedAmount"]
            .as_str()
            .unwrap()
            .parse::<u128>()
            .unwrap();
    }
    assert!(charged > 0);
    let after_calls = dev.usdc_balance(&pay_to);
    assert_eq!(
        after_calls - start_balance,
        exact_paid,
        "exact settles to the payee at once"
    );

    // The job's payment, for its details page.
    let job_tx = exact[1]["transaction"].as_str().unwrap();
    let found: Value = http
        .get(api(&format!("payments?q={job_tx}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["total"], 1, "{found}");
    let job_payment = found["payments"][0].clone();
    assert!(
        job_payment["job"].as_str().unwrap().starts_with("job_"),
        "{job_payment}"
    );

    // The browser, driven step by step.
    let mut browser = tokio::process::Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tools/browser/gateway-dashboard.mjs"
        ))
        .env("DASHBOARD_URL", &dashboard)
        .env("TOKEN", &token)
        .env("SCREENSHOTS", screenshots())
        .env("JOB_PAYMENT", job_payment["id"].to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut to_browser = browser.stdin.take().unwrap();
    let mut from_browser = BufReader::new(browser.stdout.take().unwrap()).lines();
    let mut live = Vec::new();
    let seen: Value = loop {
        let line = tokio::time::timeout(
            std::time::Duration::from_secs(180),
            from_browser.next_line(),
        )
        .await
        .expect("the browser script answers within 3 minutes")
        .unwrap()
        .expect("the browser script reports what it saw");
        let message: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("{line}"));
        if message["waiting"] == "payment" {
            let receipt = pay_exact(&gateway, &home, &keys[0], false).await;
            let tx = receipt["transaction"].as_str().unwrap().to_owned();
            live.push(receipt);
            to_browser
                .write_all(format!("{}\n", json!({"tx": tx})).as_bytes())
                .await
                .unwrap();
            to_browser.flush().await.unwrap();
        } else {
            break message;
        }
    };
    assert!(browser.wait().await.unwrap().success());
    for path in seen["screenshots"].as_array().unwrap() {
        println!("screenshot: {}", path.as_str().unwrap());
    }

    // Signed out: the form, no data; the API refused the page's own request.
    assert_eq!(seen["signedOut"]["status"], 401, "{seen}");
    assert_eq!(seen["signedOut"]["form"], 1);
    assert_eq!(seen["signedOut"]["app"], 0);
    assert_eq!(seen["signedOutApi"]["status"], 401);
    assert!(
        !seen["signedOutApi"]["body"]
            .as_str()
            .unwrap()
            .contains("revenue")
    );
    assert_eq!(seen["wrongToken"]["form"], 1);
    assert_eq!(seen["wrongToken"]["cookies"], 0);
    assert!(
        seen["wrongToken"]["alert"]
            .as_str()
            .unwrap()
            .contains("operator token")
    );

    // The session cookie: HttpOnly, SameSite=Strict, no token in it, invisible to scripts.
    let cookies = seen["cookies"].as_array().unwrap();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    assert_eq!(cookies[0]["httpOnly"], true);
    assert_eq!(cookies[0]["sameSite"], "Strict");
    assert_eq!(cookies[0]["holdsToken"], false);
    assert_eq!(seen["scriptCookies"], "");

    // Revenue: what the page shows settled is what reached the payee on chain; what it shows
    // charged to channels is what the vouchers were charged.
    let overview = &seen["overview"];
    assert_eq!(
        atomic(overview["allSettled"].as_str().unwrap()),
        after_calls - start_balance,
        "{overview}"
    );
    assert_eq!(
        atomic(overview["allCharged"].as_str().unwrap()),
        charged,
        "{overview}"
    );
    assert_eq!(
        atomic(overview["allTotal"].as_str().unwrap()),
        exact_paid + charged
    );
    assert!(atomic(overview["todaySettled"].as_str().unwrap()) <= exact_paid);
    assert_eq!(overview["callsLastHour"], "6 paid calls in the last hour");
    assert!(overview["charts"].as_u64().unwrap() >= 2);
    assert!(
        overview["services"][0]
            .as_str()
            .unwrap()
            .contains("pdf-parse"),
        "{overview}"
    );

    // The table: every payment, each `exact` one with its transaction, vouchers charged.
    let rows = seen["payments"].as_array().unwrap();
    assert_eq!(rows.len(), 6, "{rows:?}");
    assert_eq!(seen["paymentsSummary"], "6 payments");
    for receipt in &exact {
        let tx = receipt["transaction"].as_str().unwrap().to_lowercase();
        let row = rows
            .iter()
            .find(|r| r["tx"] == tx.as_str())
            .unwrap_or_else(|| panic!("no row with {tx}: {rows:?}"));
        assert_eq!(row["state"], "settled");
        assert_eq!(row["amount"], receipt["amount"]);
        assert!(row["cells"].to_string().contains("pdf-parse"));
    }
    let voucher_rows: Vec<&Value> = rows.iter().filter(|r| r["state"] == "charged").collect();
    assert_eq!(voucher_rows.len(), 3);
    let voucher_sum: u128 = voucher_rows
        .iter()
        .map(|r| r["amount"].as_str().unwrap().parse::<u128>().unwrap())
        .sum();
    assert_eq!(voucher_sum, charged);

    // Live: the payment made with the page open appeared without a reload.
    assert_eq!(live.len(), 2);
    let live_tx = live[0]["transaction"].as_str().unwrap().to_lowercase();
    assert_eq!(seen["live"]["tx"], live[0]["transaction"]);
    assert_eq!(seen["live"]["reloads"], 0, "{seen}");
    assert_eq!(seen["live"]["rows"], 7);
    assert_eq!(seen["live"]["summary"], "7 payments");
    // Search found it alone; a later live update kept the search box's text and focus.
    assert_eq!(seen["search"]["rows"].as_array().unwrap().len(), 1);
    assert_eq!(seen["search"]["rows"][0]["tx"], live_tx.as_str());
    assert_eq!(seen["searchAfterLive"]["value"], live[0]["transaction"]);
    assert_eq!(seen["searchAfterLive"]["focused"], "payment-search");
    assert_eq!(seen["searchAfterLive"]["rows"], 1);
    // Its details: the request's fingerprint and the receipt naming the transaction.
    assert_eq!(seen["details"]["fingerprint"].as_str().unwrap().len(), 64);
    assert!(
        seen["details"]["receipt"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains(&live_tx)
    );
    let job_details = seen["jobDetails"].as_str().unwrap();
    assert!(
        job_details.contains(job_payment["job"].as_str().unwrap()),
        "{job_details}"
    );

    // Settlement: the unclaimed money is what the vouchers charged, all of one payer's; the
    // claim (confirmed) pays exactly that to the payee.
    let before = &seen["settlementBefore"];
    assert_eq!(
        atomic(before["unclaimed"].as_str().unwrap()),
        charged,
        "{before}"
    );
    let payers = before["payers"].as_array().unwrap();
    assert_eq!(payers.len(), 1);
    assert_eq!(payers[0]["unclaimed"], charged.to_string());
    assert!(before["lastClaim"].as_str().unwrap().starts_with("never"));
    assert!(before["signer"].as_str().unwrap().contains("facilitator"));
    assert!(seen["asked"].as_str().unwrap().contains("Confirm"));
    let claim = &seen["claim"];
    let result = claim["result"].as_str().unwrap();
    assert!(result.starts_with("Claimed "), "{claim}");
    assert_eq!(atomic(&result["Claimed ".len()..]), charged, "{claim}");
    assert!(
        result.contains("in 2 transactions"),
        "a claim and a settle: {claim}"
    );
    assert_eq!(atomic(claim["unclaimedAfter"].as_str().unwrap()), 0);
    assert!(!claim["lastClaim"].as_str().unwrap().starts_with("never"));
    let live_paid: u128 = live
        .iter()
        .map(|r| r["amount"].as_str().unwrap().parse::<u128>().unwrap())
        .sum();
    assert_eq!(
        dev.usdc_balance(&pay_to) - after_calls,
        live_paid + charged,
        "the claim paid the payee exactly the unclaimed amount shown"
    );

    // Jobs, a phone's width, signing out.
    assert!(
        seen["jobs"]
            .as_str()
            .unwrap()
            .contains("Running and queued")
    );
    for (section, width) in seen["narrow"].as_object().unwrap() {
        assert!(
            width.as_u64().unwrap() <= 390,
            "{section} is {width} px wide at 390"
        );
    }
    assert_eq!(seen["signedOutAgain"]["form"], 1);
    assert_eq!(seen["signedOutAgain"]["cookies"], 0);

    // The API agrees with the page after the claim: 8 paid calls, the same totals.
    let overview: Value = http
        .get(api("overview"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let all = &overview["revenue"]["all_time"][0];
    assert_eq!(all["settled"], (exact_paid + live_paid).to_string());
    assert_eq!(all["charged"], charged.to_string());
    assert_eq!(all["calls"], 8);
    assert_eq!(all["symbol"], "USDC");
}
