//! The agent side on the `x402 dev` stack, through the binary: `x402 demo` finishes within its
//! budget and the payee receives exactly what it reports; `x402 pay` pays the gateway and the
//! ledger (`x402 receipts`) records it; a price above `--max` is refused without paying.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::DevStack;
use serde_json::Value;

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
    command.output().expect("x402 runs")
}

/// `x402 pay <url> -X POST [extra…] -d <body>` paying with `key`.
fn pay_post(url: &str, extra: &[&str], body: &str, home: &Path, key: &str) -> Output {
    let mut args = vec!["pay", url, "-X", "POST"];
    args.extend_from_slice(extra);
    args.extend(["-d", body]);
    x402(&args, home, Some(key))
}

/// Asserts that `out` succeeded, showing its stderr when it did not.
fn assert_succeeded(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts that `out` failed: its stderr.
fn refusal(out: &Output) -> String {
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_demo_agent_and_the_cli_pay_within_their_limits() {
    let dev = DevStack::start();
    let (state_dir, home) = (dev.state_dir(), dev.agent_home());
    let pay_to = dev.text("pay_to");
    let gateway = dev.text("gateway_url");

    // The demo, with a budget too small for all of its calls.
    let before = dev.usdc_balance(&pay_to);
    let out = x402(
        &[
            "demo",
            "--state-dir",
            state_dir.to_str().unwrap(),
            "--budget",
            "0.002",
        ],
        &home,
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap();
    // "N paid calls, total $X of a $0.002 budget"
    let total: f64 = last
        .split("total $")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(total > 0.0 && total <= 0.002, "{last}");
    assert!(
        stdout.contains("skipped: the next call would exceed the budget"),
        "{stdout}"
    );
    assert!(stdout.contains("tx 0x"), "{stdout}");
    let moved = dev.usdc_balance(&pay_to) - before;
    assert_eq!(moved, (total * 1e6).round() as u128, "{stdout}");

    // x402 pay: body on stdout, payment on stderr, recorded in the ledger.
    let key = dev.state["payer_private_keys"][4].as_str().unwrap();
    let run = format!("{gateway}/run");
    let body = r#"{"service":"embed-l4","input":{"text":"hello agents"}}"#;
    let out = pay_post(&run, &[], body, &home, key);
    assert_succeeded(&out);
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["output"]["dimensions"], 384);
    assert!(String::from_utf8_lossy(&out.stderr).contains("paid 0.000001 to settle"));

    // x402 run waits for a job and prints its output.
    let out = x402(
        &[
            "run",
            "pdf-parse",
            r#"{"html": "<html><body><h1>Quarterly</h1></body></html>"}"#,
            "--gateway",
            &gateway,
            "--async",
        ],
        &home,
        Some(key),
    );
    assert_succeeded(&out);
    let output: Value = serde_json::from_slice(&out.stdout).unwrap();
    x402_testkit::assert_text_at(&output, "/text", "Quarterly");
    assert!(String::from_utf8_lossy(&out.stderr).contains("paid 0.002 to settle"));
    let out = x402(&["catalog", "--gateway", &gateway], &home, None);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("pdf-parse") && listing.contains("unavailable: no backend"),
        "{listing}"
    );

    // Above --max: refused before signing, nothing recorded.
    let body = r#"{"service":"pdf-parse","input":{"html":"<html><body>hi</body></html>"}}"#;
    let stderr = refusal(&pay_post(&run, &["--max", "0.001"], body, &home, key));
    assert!(
        stderr.contains("above the maximum per payment 0.001"),
        "{stderr}"
    );

    let out = x402(&["receipts", "--json"], &home, None);
    let receipts: Value = serde_json::from_slice(&out.stdout).unwrap();
    let receipts = receipts.as_array().unwrap();
    assert_eq!(receipts.len(), 2, "{receipts:?}");
    assert!(
        receipts
            .iter()
            .all(|r| r["status"] == "paid" && r["transaction"].as_str().unwrap().starts_with("0x"))
    );
    assert_eq!(receipts[0]["service"], "pdf-parse");
    assert_eq!(receipts[1]["service"], "embed-l4");

    // A budget refuses before paying and says which limit.
    let out = x402(&["budget", "set", "--total", "0.002001"], &home, None);
    assert!(out.status.success());
    let body = r#"{"service":"embed-l4","input":{"text":"again"}}"#;
    let stderr = refusal(&pay_post(&run, &[], body, &home, key));
    assert!(
        stderr.contains("budget exceeded: the total limit is 2001 micro-USD, 2001 already spent or reserved, 1 asked"),
        "{stderr}"
    );
    assert!(stderr.contains("x402 budget set"), "{stderr}");
}

#[test]
fn a_new_wallet_is_owner_only_and_its_key_is_never_printed() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let out = x402(&["wallet", "address"], home.path(), None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("x402 wallet new"));

    let out = x402(&["wallet", "new"], home.path(), None);
    assert!(out.status.success());
    let address = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        address.starts_with("0x") && address.len() == 42,
        "{address}"
    );
    let file = home.path().join("wallet.key");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key = std::fs::read_to_string(&file).unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !printed.contains(key.trim().trim_start_matches("0x")),
        "the key was printed"
    );

    let out = x402(&["wallet", "address"], home.path(), None);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), address);
    let again = x402(&["wallet", "new"], home.path(), None);
    assert!(
        !again.status.success(),
        "an existing wallet is never replaced"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), key);
}

#[test]
fn a_wallet_approves_permit2_once_for_upto() {
    let dev = DevStack::start();
    let home = dev.agent_home();
    let key = dev.state["payer_private_keys"][5].as_str().unwrap();
    let owner = dev.state["payer_addresses"][5].as_str().unwrap();
    let state_dir = dev.state_dir();
    let out = x402(
        &[
            "wallet",
            "approve-permit2",
            "--dev-state",
            state_dir.to_str().unwrap(),
        ],
        &home,
        Some(key),
    );
    assert_succeeded(&out);
    let tx = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(tx.len(), 66, "{tx}");
    // allowance(owner, Permit2) on the dev token is now unlimited.
    let permit2 = "000000000022d473030f116ddee9f6b43ac78ba3";
    let data = format!(
        "0xdd62ed3e{:0>64}{:0>64}",
        owner.trim_start_matches("0x").to_lowercase(),
        permit2
    );
    let rpc = dev.text("rpc_url");
    let allowance = common::rpc(
        &rpc,
        "eth_call",
        serde_json::json!([{"to": dev.text("asset"), "data": data}, "latest"]),
    );
    assert_eq!(allowance, Value::String(format!("0x{}", "f".repeat(64))));
    // Without a wallet there is nothing to approve with: it says how to make one.
    let args = [
        "wallet",
        "approve-permit2",
        "--dev-state",
        state_dir.to_str().unwrap(),
    ];
    let empty = tempfile::tempdir().unwrap();
    let said = refusal(&x402(&args, empty.path(), None));
    assert!(said.contains("x402 wallet new"), "{said}");
}
