//! The facilitator's dashboard in a real browser (Debian's headless Chromium through
//! playwright-core, `tools/browser/facilitator-dashboard.mjs`), after real settlements on
//! anvil: signed in through its form (an HttpOnly, SameSite=Strict cookie scripts cannot
//! read), its settled total is the payee's on-chain balance change, its table lists each
//! settlement with its transaction hash, and settlements made while it is open appear without a
//! reload. Without the token the page is the sign-in form and the API gives nothing. It fits a
//! 390 px screen. Screenshots go to `$CARGO_TARGET_TMPDIR/screenshots/`.

use std::path::PathBuf;

use alloy::primitives::U256;
use serde_json::Value;
use x402_testkit::{Chain, Stack};

const TOKEN: &str = "dashboard-operator-token";

/// Runs the browser script with `env`; what it reports.
async fn browse(env: Vec<(&str, String)>) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tools/browser/facilitator-dashboard.mjs");
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .envs(env)
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} failed: {stdout}\n{stderr}",
        script.display()
    );
    let last = stdout.lines().last().expect("the script reports");
    serde_json::from_str(last).expect("the script prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_facilitator_dashboard_shows_its_settlements() {
    let extra = format!("operator_token = \"{TOKEN}\"");
    let stack = Stack::on_chain(Chain::start().await, &extra, "").await;
    let payee = stack.chain.devnet.pay_to().address;
    let start = stack.chain.balance(payee).await;
    let mut settled = Vec::new();
    for (payer, amount) in [(0, 1_250u128), (1, 30_000), (2, 7)] {
        let (status, answer) = stack.settle(&stack.payment(payer, amount)).await;
        assert_eq!(answer["success"], true, "{status} {answer}");
        settled.push(answer["transaction"].as_str().unwrap().to_owned());
    }
    let paid = stack.chain.balance(payee).await - start;
    // Two more, signed now and settled by the script while the page is open.
    let later = [stack.payment(3, 500), stack.payment(4, 60_000)];
    let screenshots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    let dashboard = stack.facilitator.as_ref().unwrap().dashboard_url().unwrap();

    let seen = browse(vec![
        ("DASHBOARD", dashboard),
        ("TOKEN", TOKEN.to_owned()),
        ("FACILITATOR", stack.url()),
        ("PAYMENTS", serde_json::to_string(&later).unwrap()),
        ("SCREENSHOTS", screenshots.display().to_string()),
    ])
    .await;

    // Without the token: the form, and no data.
    let no_token = &seen["noToken"];
    assert_eq!(no_token["pageStatus"], 401, "{no_token}");
    assert_eq!(no_token["form"], 1);
    assert_eq!(no_token["api"]["status"], 401, "{no_token}");
    let refused = no_token["api"]["body"].as_str().unwrap();
    assert!(
        !refused.contains("assets") && !refused.contains(&paid.to_string()),
        "{refused}"
    );
    let wrong = no_token["wrongToken"].as_str().unwrap();
    assert!(wrong.contains("not the operator token"), "{wrong}");
    assert_eq!(no_token["appAfterWrongToken"], 0);

    // The session cookie: HttpOnly, SameSite=Strict, no token in it.
    let cookie = &seen["cookie"];
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    assert_eq!(cookie["sameSite"], "Strict");
    assert_eq!(cookie["visibleToScripts"], false);
    assert_eq!(cookie["holdsToken"], false);

    // The overview's settled total is what the chain moved to the payee.
    let asset = stack.chain.devnet.token().address.to_checksum(None);
    let all = format!("all-8453-{asset}");
    let today = format!("today-8453-{asset}");
    assert_eq!(
        seen["overview"][&all]["amount"],
        paid.to_string(),
        "{}",
        seen["overview"]
    );
    assert_eq!(seen["overview"][&all]["count"], "3");
    assert_eq!(seen["overview"][&today]["amount"], paid.to_string());
    assert_eq!(
        seen["overview"][&all]["text"], "0.031257 USD Coin",
        "exact, in whole units"
    );
    assert_eq!(
        seen["unnamedOnOverview"], 0,
        "every chart and control has a name"
    );

    // The table lists each settlement with its transaction hash, newest first.
    let hashes = |rows: &Value| -> Vec<String> {
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| r["tx"].as_str().unwrap().to_owned())
            .collect()
    };
    let first_settled = seen["liveOverview"]["settled"]["transaction"]
        .as_str()
        .unwrap();
    let mut expected: Vec<String> = settled.iter().rev().cloned().collect();
    expected.insert(0, first_settled.to_owned());
    assert_eq!(hashes(&seen["rows"]), expected, "{}", seen["rows"]);
    assert_eq!(seen["unnamedOnSettlements"], 0);

    // Settled while the page was open: the totals and the table followed, without a reload.
    let paid_now = stack.chain.balance(payee).await - start;
    assert_eq!(
        paid_now,
        paid + U256::from(60_500u64),
        "the chain moved both"
    );
    let live_tiles = &seen["liveOverview"]["tiles"];
    assert_eq!(
        live_tiles[&all]["amount"],
        (paid + U256::from(500u64)).to_string()
    );
    assert_eq!(live_tiles[&all]["count"], "4");
    let on_table = seen["liveTable"]["settled"]["transaction"]
        .as_str()
        .unwrap();
    let live_rows = hashes(&seen["liveTable"]["rows"]);
    assert_eq!(live_rows[0], on_table, "the new settlement on top");
    assert_eq!(live_rows.len(), 5);
    assert_eq!(seen["liveTable"]["rows"][0]["amount"], "60000");
    assert_eq!(seen["reloaded"], false, "no reload");

    // Its details name the transaction and the facilitator's signer.
    let details = seen["details"].as_array().unwrap();
    assert_eq!(details.len(), 1, "{details:?}");
    assert_eq!(details[0][0], on_table);
    let signer = stack.chain.devnet.facilitator().address.to_checksum(None);
    assert_eq!(details[0][1], signer);

    // A search by a transaction finds its settlement alone.
    let search = &seen["search"];
    assert_eq!(hashes(&search["rows"]), [settled[0].clone()], "{search}");

    // Health: nothing pending, the signer with its balance.
    let health = &seen["health"];
    assert_eq!(health["tiles"]["claimed"]["count"], "0", "{health}");
    assert_eq!(health["tiles"]["submitted"]["count"], "0");
    assert_eq!(health["signers"][0]["address"], signer);
    assert!(!health["signers"][0]["balance"].as_str().unwrap().is_empty());
    assert_eq!(health["unnamed"], 0);

    // A phone's width: nothing wider than the screen.
    for (section, overflow) in seen["narrow"].as_object().unwrap() {
        assert!(
            overflow.as_i64().unwrap() <= 0,
            "{section} overflows 390 px by {overflow}"
        );
    }
    for path in seen["screenshots"].as_array().unwrap() {
        let path = path.as_str().unwrap();
        assert!(std::fs::metadata(path).unwrap().len() > 1000, "{path}");
        println!("screenshot: {path}");
    }
}
