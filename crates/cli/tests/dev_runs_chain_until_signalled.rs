//! `x402 dev` starts a chain that looks like Base, describes it in dev.json, and stops every
//! child process on SIGTERM and on SIGINT.

mod common;

use std::time::{Duration, Instant};

use common::{dev_command, http_get, rpc, usdc_balance, wait_for_state};

fn process_alive(pid: u64) -> bool {
    // A zombie has exited; count it as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

/// POSTs an empty body to `path`, with `token` as a bearer token when given: the whole HTTP
/// answer.
fn post(base: &str, path: &str, token: Option<&str>) -> String {
    use std::io::{Read, Write};
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host).expect("gateway reachable");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// GETs `path` with `token` as a bearer token when given: the whole HTTP answer.
fn get_with(base: &str, path: &str, token: Option<&str>) -> String {
    use std::io::{Read, Write};
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host).expect("reachable");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Calls the JSON-RPC `method` (no params) at `url`: the whole HTTP answer (the Solana
/// front answers chunked, which `common::rpc` does not read).
fn solana_rpc(url: &str, method: &str) -> String {
    use std::io::{Read, Write};
    let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":[]}}"#);
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host).expect("the Solana chain is reachable");
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn run_until(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = dev_command(dir.path()).spawn().unwrap();
    let state_file = dir.path().join("dev.json");
    let state = wait_for_state(&state_file, &mut child);

    for key in [
        "rpc_url",
        "chain_id",
        "network",
        "asset",
        "asset_name",
        "asset_version",
        "decimals",
        "pay_to",
        "payer_private_keys",
        "facilitator_url",
        "gateway_url",
        "operator_token",
        "solana_rpc_url",
        "solana_network",
        "solana_mint",
        "solana_pay_to",
        "solana_fee_payer",
        "solana_payer_keys",
    ] {
        assert!(state.get(key).is_some(), "dev.json lacks {key}: {state:#}");
    }
    assert_eq!(state["chain_id"], 8453);
    assert_eq!(state["network"], "eip155:8453");
    assert_eq!(state["asset"], "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913");
    assert_eq!(state["asset_name"], "USD Coin");
    assert_eq!(state["asset_version"], "2");
    assert_eq!(state["decimals"], 6);
    assert_eq!(state["payer_private_keys"].as_array().unwrap().len(), 8);

    let url = state["rpc_url"].as_str().unwrap();
    assert_eq!(rpc(url, "eth_chainId", serde_json::json!([])), "0x2105");
    // balanceOf(first payer) on the token at the USDC address: 1000 USDC.
    let payer = state["payer_addresses"][0].as_str().unwrap();
    assert_eq!(usdc_balance(&state, payer), 1_000_000_000);

    // The facilitator serves the dev chain, v2 and v1.
    let supported = http_get(state["facilitator_url"].as_str().unwrap(), "/supported");
    assert!(
        supported.contains(r#""network":"eip155:8453""#),
        "{supported}"
    );
    assert!(supported.contains(r#""network":"base""#), "{supported}");
    assert!(
        supported.contains(state["facilitator_address"].as_str().unwrap()),
        "{supported}"
    );

    // The local Solana chain runs beside anvil, posing as devnet with USDC at devnet's
    // address, and the facilitator serves it (v2, and v1 as solana-devnet) with its fee payer.
    let solana_network = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1";
    assert_eq!(state["solana_network"], solana_network);
    assert_eq!(
        state["solana_mint"],
        "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU"
    );
    let solana_keys = state["solana_payer_keys"].as_array().unwrap();
    assert!(!solana_keys.is_empty(), "{state:#}");
    for key in solana_keys {
        let key = key.as_str().unwrap();
        // base58 of a 64-byte secret key, as Solana tools write it.
        assert!(x402_svm::parse_keypair(key).is_ok(), "{key}");
    }
    let solana_url = state["solana_rpc_url"].as_str().unwrap();
    let health = solana_rpc(solana_url, "getHealth");
    assert!(health.contains(r#""result":"ok""#), "{health}");
    let fee_payer = state["solana_fee_payer"].as_str().unwrap();
    let supported_json: serde_json::Value = serde_json::from_str(&supported).unwrap();
    let solana_kinds: Vec<_> = supported_json["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["network"] == solana_network || k["network"] == "solana-devnet")
        .collect();
    assert_eq!(solana_kinds.len(), 2, "{supported}");
    for kind in solana_kinds {
        assert_eq!(kind["scheme"], "exact");
        assert_eq!(kind["extra"]["feePayer"], fee_payer, "{supported}");
    }
    let health = http_get(state["facilitator_url"].as_str().unwrap(), "/health");
    assert!(health.contains(solana_network), "{health}");
    assert!(health.contains("signer_balance_lamports"), "{health}");
    let solana_pid = state["solana_pid"].as_u64().unwrap();
    assert!(process_alive(solana_pid));

    // The gateway runs with its local models and prices them in the dev USDC.
    let catalog = http_get(state["gateway_url"].as_str().unwrap(), "/catalog");
    assert!(catalog.contains(r#""key":"embed-l4""#), "{catalog}");
    // Ten local services (embeddings ×2, rerank, documents, espeak-ng, Piper, Whisper ×2,
    // OCR, image safety), and the five LLM services answered by the local model.
    assert!(catalog.contains(r#""active_endpoints":15"#), "{catalog}");
    // Solana USDC is offered beside Base USDC.
    assert!(
        catalog.contains(r#""scheme":"exact","network":"solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1""#),
        "{catalog}"
    );
    assert!(
        catalog.contains(r#""models":["SmolLM2-135M-Instruct"]"#),
        "{catalog}"
    );

    // The gateway's operator routes take dev.json's operator token, and only it; /metrics
    // shows the batch-settlement exposure (none yet).
    let gateway = state["gateway_url"].as_str().unwrap();
    let token = state["operator_token"].as_str().unwrap();
    assert!(token.len() >= 32, "{token}");
    assert!(post(gateway, "/operator/claim", None).starts_with("HTTP/1.1 401"));
    let claimed = post(gateway, "/operator/claim", Some(token));
    assert!(claimed.starts_with("HTTP/1.1 200"), "{claimed}");
    assert!(claimed.contains(r#""transactions":[]"#), "{claimed}");
    // The facilitator's dashboard takes the same token, and only it.
    let facilitator = state["facilitator_url"].as_str().unwrap();
    let overview = "/dashboard/api/overview";
    assert!(get_with(facilitator, overview, None).starts_with("HTTP/1.1 401"));
    let settled = get_with(facilitator, overview, Some(token));
    assert!(settled.starts_with("HTTP/1.1 200"), "{settled}");
    assert!(settled.contains(r#""all_time""#), "{settled}");
    let metrics = http_get(gateway, "/metrics");
    assert!(
        metrics.contains("x402_batch_unclaimed_atomic{network=\"eip155:8453\""),
        "{metrics}"
    );

    let anvil_pid = state["anvil_pid"].as_u64().unwrap();
    assert!(process_alive(anvil_pid));
    assert!(common::signal(&child, signal));
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "x402 dev did not stop on {signal}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "x402 dev exited with {exit}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_alive(anvil_pid) {
        assert!(Instant::now() < deadline, "anvil outlived x402 dev");
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_alive(solana_pid) {
        assert!(
            Instant::now() < deadline,
            "the Solana chain outlived x402 dev"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !state_file.exists(),
        "dev.json left behind after a clean stop"
    );
}

#[test]
fn sigterm_stops_the_chain() {
    run_until("-TERM");
}

#[test]
fn sigint_stops_the_chain() {
    run_until("-INT");
}
