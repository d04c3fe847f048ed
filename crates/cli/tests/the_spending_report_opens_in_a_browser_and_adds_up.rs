//! `x402 receipts --html` on the `x402 dev` stack: after paid calls of three services (and a
//! budget), the page opened in headless Chromium shows the totals `x402 receipts --json` and
//! `--by day|service|payee --json` print, every payment with its transaction, the budget and
//! how much of it is used, and the payee's on-chain receipts; a hostile service, payee and URL
//! in the ledger stay text; nothing is fetched; at 390 px the page is no wider than the screen.
//! Screenshots go to `$CARGO_TARGET_TMPDIR/screenshots/`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::DevStack;
use serde_json::Value;
use x402_client::{Ledger, PaymentIntent};

fn x402(args: &[&str], home: &Path, key: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_x402"));
    command
        .args(args)
        .env("X402_HOME", home)
        .env_remove("X402_PRIVATE_KEY")
        .env_remove("RUST_BACKTRACE");
    if let Some(key) = key {
        command.env("X402_PRIVATE_KEY", key);
    }
    let out = command.output().expect("x402 runs");
    assert!(
        out.status.success(),
        "x402 {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// `"0.002001"` in micro-USD.
fn micro(usd: &str) -> u64 {
    let (whole, fraction) = usd.split_once('.').unwrap_or((usd, ""));
    assert!(fraction.len() <= 6, "{usd}");
    whole.parse::<u64>().unwrap() * 1_000_000 + format!("{fraction:0<6}").parse::<u64>().unwrap()
}

/// `(key, usd, payments)` of `x402 receipts --by … --json` rows, or of the page's rows.
fn totals(rows: &Value, key: &str, usd: &str, payments: &str) -> BTreeSet<(String, String, u64)> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[key].as_str().unwrap().to_owned(),
                r[usd].as_str().unwrap().to_owned(),
                r[payments].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A service, payee and URL that would be markup if the page did not escape them.
const HOSTILE: &str =
    r#"<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>"'&amp;"#;

/// Records, straight into the agent's ledger, a paid row whose every string is hostile and an
/// unknown one (sent, answer lost) of $0.01.
fn record_hostile_rows(ledger_path: &Path) {
    let ledger = Ledger::open(ledger_path).unwrap();
    let intent = |service: &str, url: &str, pay_to: &str, micro_usd: u64| PaymentIntent {
        url: url.into(),
        service: Some(service.into()),
        amount: micro_usd.to_string(),
        micro_usd,
        asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".into(),
        network: "eip155:31337".into(),
        payer: "0x0000000000000000000000000000000000000001".into(),
        pay_to: pay_to.into(),
    };
    ledger
        .reserve(&intent(
            HOSTILE,
            &format!("javascript:{HOSTILE}"),
            HOSTILE,
            300,
        ))
        .unwrap()
        .commit(&format!("0x{}{HOSTILE}", "ab".repeat(8)))
        .unwrap();
    let mut lost = ledger
        .reserve(&intent(
            "lost-call",
            "http://127.0.0.1:9/run",
            "0x0000000000000000000000000000000000000002",
            10_000,
        ))
        .unwrap();
    lost.mark_unknown("sent, no answer").unwrap();
}

#[test]
fn the_spending_report_opens_in_a_browser_and_adds_up() {
    let dev = DevStack::start();
    let home = dev.agent_home();
    let key = dev.state["payer_private_keys"][3].as_str().unwrap();
    let gateway = dev.text("gateway_url");
    let pay_to = dev.text("pay_to");
    let before = dev.usdc_balance(&pay_to);

    // Paid calls of three services: embed-l4 twice, pdf-parse, rerank.
    let run = format!("{gateway}/run");
    for text in ["the report", "adds up"] {
        let body = serde_json::json!({"service": "embed-l4", "input": {"text": text}});
        x402(
            &["pay", &run, "-X", "POST", "-d", &body.to_string()],
            &home,
            Some(key),
        );
    }
    let document = r#"{"html": "<html><body><h1>Invoice</h1></body></html>"}"#;
    let rerank =
        r#"{"query": "payments", "documents": ["x402 pays per call", "a cat"], "top_n": 1}"#;
    for (service, input) in [("pdf-parse", document), ("rerank", rerank)] {
        x402(
            &["run", service, input, "--gateway", &gateway],
            &home,
            Some(key),
        );
    }
    let received = u64::try_from(dev.usdc_balance(&pay_to) - before).unwrap();
    record_hostile_rows(&home.join("ledger.db"));
    x402(
        &["budget", "set", "--total", "0.05", "--per-day", "0.04"],
        &home,
        None,
    );

    // What the other outputs say.
    let list = json(&x402(&["receipts", "--json"], &home, None));
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 6, "{list:?}");
    let by = |key: &str| json(&x402(&["receipts", "--by", key, "--json"], &home, None));
    let (by_service, by_payee, by_day) = (by("service"), by("payee"), by("day"));
    let sum = |status: &str| -> u64 {
        list.iter()
            .filter(|p| p["status"] == status)
            .map(|p| p["micro_usd"].as_u64().unwrap())
            .sum()
    };
    let (paid, unknown) = (sum("paid"), sum("unknown"));
    assert_eq!(unknown, 10_000);

    // The page, in a browser.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.html");
    let wrote = x402(&["receipts", "--html", file.to_str().unwrap()], &home, None);
    let said = String::from_utf8_lossy(&wrote.stderr);
    assert!(
        said.contains("6 payments") && said.contains("$0.01 unknown"),
        "{said}"
    );
    // Set by cargo for integration tests, at compile time.
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    std::fs::copy(&file, shots.join("spending-report.html")).unwrap();
    let out = Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tools/browser/spending-report.mjs"
        ))
        .arg(&file)
        .arg(&shots)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let page = &seen["desktop"];

    // Totals: the ledger's, to the micro-dollar.
    assert_eq!(page["paid"]["microUsd"], paid);
    assert_eq!(micro(page["paid"]["usd"].as_str().unwrap()), paid);
    assert_eq!(page["paid"]["payments"], 5);
    assert_eq!(page["unknown"]["microUsd"], unknown);
    assert_eq!(page["unknown"]["payments"], 1);
    assert_eq!(page["listed"], 6);
    assert_eq!(
        totals(&page["byService"], "key", "usd", "payments"),
        totals(&by_service, "key", "usd", "payments")
    );
    assert_eq!(
        totals(&page["byPayee"], "key", "usd", "payments"),
        totals(&by_payee, "key", "usd", "payments")
    );
    assert_eq!(
        totals(&page["byDay"], "key", "usd", "payments"),
        totals(&by_day, "key", "usd", "payments")
    );
    let services: BTreeSet<&str> = page["byService"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        services,
        BTreeSet::from(["embed-l4", "pdf-parse", "rerank", HOSTILE])
    );
    let by_service_sum: u64 = page["byService"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["microUsd"].as_u64().unwrap())
        .sum();
    assert_eq!(by_service_sum, paid);
    // The chart's figures add up to the day's.
    let chart_sum: u64 = page["dailyByService"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["microUsd"].as_u64().unwrap())
        .sum();
    assert_eq!(chart_sum, paid);
    // The dev payee's row is what it received on chain.
    let payee_row = page["byPayee"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == pay_to.as_str())
        .unwrap_or_else(|| panic!("no row for {pay_to}: {}", page["byPayee"]));
    assert_eq!(payee_row["microUsd"], received);
    assert_eq!(payee_row["payments"], 4);

    // Every payment, in the ledger's order, with its transaction.
    let rows = page["payments"].as_array().unwrap();
    assert_eq!(rows.len(), list.len());
    for (row, payment) in rows.iter().zip(list) {
        assert_eq!(row["id"], payment["id"]);
        assert_eq!(row["status"], payment["status"]);
        assert_eq!(row["microUsd"], payment["micro_usd"]);
        let transaction = payment["transaction"].as_str().unwrap_or("");
        assert_eq!(row["transaction"], transaction);
        if !transaction.is_empty() {
            assert_eq!(row["shown"]["transaction"], transaction);
        }
        assert_eq!(row["shown"]["url"], payment["url"]);
        assert_eq!(row["shown"]["payee"], payment["pay_to"]);
        assert_eq!(row["shown"]["network"], payment["network"]);
        assert_eq!(
            row["shown"]["amount"].as_str().unwrap(),
            format!("${}", row["usd"].as_str().unwrap())
        );
    }
    let real: Vec<&Value> = rows
        .iter()
        .filter(|r| r["shown"]["payee"] == pay_to.as_str())
        .collect();
    assert_eq!(real.len(), 4);
    for row in real {
        let tx = row["transaction"].as_str().unwrap();
        assert!(tx.starts_with("0x") && tx.len() == 66, "{row}");
        assert_eq!(row["status"], "paid");
    }

    // Hostile strings are shown as they are, and add nothing to the page.
    let hostile = rows.iter().find(|r| r["microUsd"] == 300).unwrap();
    assert_eq!(hostile["shown"]["service"], HOSTILE);
    assert_eq!(hostile["shown"]["payee"], HOSTILE);
    assert_eq!(page["scripts"], 0);
    assert_eq!(page["images"], 0);
    assert_eq!(page["injected"], false);

    // The budget: its limits, and what counts against them (paid and unknown alike).
    let limit = |name: &str| {
        page["budget"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == name)
            .unwrap_or_else(|| panic!("no budget line {name}: {}", page["budget"]))
            .clone()
    };
    let total = limit("total");
    assert_eq!(total["limitMicroUsd"], 50_000);
    assert_eq!(total["usedMicroUsd"], paid + unknown);
    assert_eq!(total["meter"].as_f64().unwrap(), (paid + unknown) as f64);
    let expected = format!("{}%", (paid + unknown) * 100 / 50_000);
    assert!(
        total["text"].as_str().unwrap().contains(&expected),
        "{total}"
    );
    assert_eq!(limit("per day")["limitMicroUsd"], 40_000);
    assert_eq!(limit("per hour")["limitMicroUsd"], Value::Null);
    assert_eq!(limit("deposit cap")["limitMicroUsd"], 5_000_000);

    // Accessible: headings, captioned tables with scoped headers, charts with names.
    assert_eq!(page["h1"], "Spending report");
    for heading in ["Totals", "Budget", "Spend over time", "Payments"] {
        assert!(
            page["h2"].as_array().unwrap().iter().any(|h| h == heading),
            "{}",
            page["h2"]
        );
    }
    for table in page["tables"].as_array().unwrap() {
        assert!(!table["caption"].as_str().unwrap().is_empty(), "{table}");
        assert_eq!(table["headers"], table["scoped"], "{table}");
    }
    let charts = page["charts"].as_array().unwrap();
    assert_eq!(charts.len(), 2);
    for chart in charts {
        assert_eq!(chart["role"], "img");
        let name = chart["name"].as_str().unwrap();
        assert!(
            name.starts_with("Paid per day, by ") && name.contains("largest day"),
            "{name}"
        );
        assert!(chart["bars"].as_u64().unwrap() >= 2, "{chart}");
    }

    // Self-contained, and right on a phone.
    let narrow = &seen["narrow"];
    for view in [page, narrow] {
        assert_eq!(view["requests"], serde_json::json!([]), "{view}");
        assert_eq!(view["errors"], serde_json::json!([]), "{view}");
    }
    let width = narrow["viewport"]["width"].as_u64().unwrap();
    assert_eq!(width, 390);
    assert!(
        narrow["viewport"]["scrollWidth"].as_u64().unwrap() <= width,
        "{narrow}"
    );
    assert!(
        narrow["widestPayment"].as_f64().unwrap() <= width as f64,
        "{narrow}"
    );
    assert_eq!(narrow["scrollers"], serde_json::json!([]), "{narrow}");
    for view in [page, narrow] {
        let shot = PathBuf::from(view["screenshot"].as_str().unwrap());
        assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
        println!("screenshot: {}", shot.display());
    }

    // The terminal: bars scaled to the largest total, a trend line for days.
    let out = x402(&["receipts", "--by", "service"], &home, None);
    let table = String::from_utf8(out.stdout).unwrap();
    let largest = table.lines().find(|l| l.starts_with("pdf-parse")).unwrap();
    assert!(largest.contains(&"█".repeat(24)), "{table}");
    let smallest = table.lines().find(|l| l.starts_with("embed-l4")).unwrap();
    assert!(smallest.contains('▏') && !smallest.contains('█'), "{table}");
    let out = x402(&["receipts", "--by", "day"], &home, None);
    let days = String::from_utf8(out.stdout).unwrap();
    assert!(
        days.lines().last().unwrap().starts_with("per day"),
        "{days}"
    );

    // --since: a bound after every payment leaves a page that says so (the budget stays).
    let later = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600)
        .to_string();
    let empty = dir.path().join("empty.html");
    x402(
        &[
            "receipts",
            "--since",
            &later,
            "--html",
            empty.to_str().unwrap(),
        ],
        &home,
        None,
    );
    let empty = std::fs::read_to_string(empty).unwrap();
    assert!(empty.contains(r#"data-testid="no-payments""#));
    assert!(empty.contains(r#"data-testid="total-paid" data-micro-usd="0""#));
    assert!(empty.contains(r#"data-name="total" data-limit-micro-usd="50000""#));
}
