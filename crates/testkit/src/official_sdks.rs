//! The official x402 SDKs as test peers: where they are installed, and the interop scripts that
//! run their fetch client, express server and facilitator library (verifying in process, or
//! serving HTTP and settling).

use std::path::PathBuf;

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use serde_json::Value;
use x402_proto::PaymentRequest;

use crate::{KillOnDrop, Stack};

/// This workspace's `tools/` folder, where `scripts/install-tools.sh` installs the official
/// SDKs and the interop scripts live; panics saying how to install them when `package`
/// (`@x402/express`) is not installed there.
pub fn official_sdks(package: &str) -> PathBuf {
    let tools = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools");
    assert!(
        tools.join("node_modules").join(package).exists(),
        "the official SDK {package} is not installed: run scripts/install-tools.sh"
    );
    tools
}

/// Asserts that our verdict on the case `name` has the official one's `isValid` and reason.
#[track_caller]
pub fn assert_same_verdict(name: &str, ours: &Value, theirs: &Value) {
    for field in ["isValid", "invalidReason"] {
        assert_eq!(
            ours[field], theirs[field],
            "{name}: ours {ours}, theirs {theirs}"
        );
    }
}

/// The official `@x402/fetch` client (`fetch-client.mjs`) run with `env` (`URL`,
/// `PRIVATE_KEY`, …): the JSON it prints.
pub async fn official_fetch(env: Vec<(&'static str, String)>) -> Value {
    let output = tokio::process::Command::new("node")
        .arg(interop_dir().join("fetch-client.mjs"))
        .envs(env)
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .expect("node runs");
    assert!(output.status.success(), "fetch client failed");
    serde_json::from_slice(&output.stdout).expect("fetch client prints JSON")
}

/// The official `batch-settlement` client (`batch-fetch-client.mjs`: several paid requests on
/// one channel, then a refund when asked) run with `env` (`URL`, `PRIVATE_KEY`, `COUNT`,
/// `REFUND`): the JSON it prints.
pub async fn official_batch_fetch(env: Vec<(&'static str, String)>) -> Value {
    let output = tokio::process::Command::new("node")
        .arg(interop_dir().join("batch-fetch-client.mjs"))
        .envs(env)
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .expect("node runs");
    assert!(output.status.success(), "batch fetch client failed");
    serde_json::from_slice(&output.stdout).expect("batch fetch client prints JSON")
}

/// The official SDKs' interop scripts (`tools/interop`), checked to be installed.
pub fn interop_dir() -> PathBuf {
    official_sdks("@x402/express").join("interop")
}

/// The official facilitator library's verdicts (`@x402/evm` 2.27 `verify` with the `exact`,
/// `upto` and `batch-settlement` schemes, through `official-verify.mjs`) on `requests`, against `devnet` with its facilitator key and `env`
/// added: one JSON answer per request, in order.
pub async fn official_verify(
    devnet: &x402_devnet::Devnet,
    requests: &[&PaymentRequest],
    env: &[(&str, String)],
) -> Vec<Value> {
    let mut command =
        facilitator_library("official-verify.mjs", devnet, &devnet.facilitator().signer);
    command.envs(env.iter().map(|(k, v)| (*k, v.clone())));
    run_official_verify(command, serde_json::to_vec(requests).unwrap()).await
}

/// Runs `command` (`official-verify.mjs` with its environment) on `input`, a JSON array of
/// verify requests: the library's answers, one per request, in order.
pub async fn run_official_verify(mut command: std::process::Command, input: Vec<u8>) -> Vec<Value> {
    use std::io::Write;
    let expected = serde_json::from_slice::<Vec<Value>>(&input).unwrap().len();
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit());
    let output = tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("node runs");
        child.stdin.take().unwrap().write_all(&input).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "official verify failed");
    let official: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(official.len(), expected);
    official
}

/// The official facilitator library serving `devnet` over HTTP (`official-facilitator.mjs`:
/// `@x402/core` `x402Facilitator` with the `@x402/evm` 2.27 `exact`, `upto` and `batch-settlement`
/// schemes, the last signing as the receiver authorizer `RECEIVER_AUTHORIZER_PRIVATE_KEY` names, or
/// as `key`), settling
/// as `key`'s account, which `upto` payments must therefore witness: the process and its base URL.
pub async fn official_facilitator(
    devnet: &x402_devnet::Devnet,
    key: &PrivateKeySigner,
) -> (KillOnDrop, String) {
    let command = facilitator_library("official-facilitator.mjs", devnet, key);
    let (facilitator, port) = crate::spawn_announcing(command, "LISTENING ").await;
    (facilitator, format!("http://127.0.0.1:{port}"))
}

/// `node <script>` of the official facilitator library on `devnet` with `key` as its signer.
fn facilitator_library(
    script: &str,
    devnet: &x402_devnet::Devnet,
    key: &PrivateKeySigner,
) -> std::process::Command {
    let mut command = std::process::Command::new("node");
    command
        .arg(interop_dir().join(script))
        .env("RPC_URL", devnet.rpc_url().to_string())
        .env("FACILITATOR_PRIVATE_KEY", key.to_bytes().to_string())
        .env("NETWORK", devnet.network().to_string());
    command
}

/// Asserts that the official server's `upto` route at `url` answers 402 with an `upto` offer for
/// `maximum` atomic units that names `facilitator` as the address payers must witness.
pub async fn assert_official_upto_offer(url: &str, maximum: u128, facilitator: Address) {
    let offer = reqwest::get(url).await.expect("the server answers");
    assert_eq!(offer.status(), 402);
    let required: Value =
        x402_proto::decode_header(offer.headers()["payment-required"].as_bytes()).unwrap();
    let accepted = &required["accepts"][0];
    assert_eq!(accepted["scheme"], "upto", "{required}");
    assert_eq!(accepted["amount"], maximum.to_string(), "{required}");
    assert_eq!(
        accepted["extra"]["facilitatorAddress"],
        facilitator.to_checksum(None),
        "{required}"
    );
}

/// Asserts that the settlement `transaction` a receipt names (0x hash) was mined on `devnet`
/// and succeeded, sent by `from` to `to`.
pub async fn assert_settlement_mined(
    devnet: &x402_devnet::Devnet,
    transaction: &str,
    from: Address,
    to: Address,
) {
    use alloy::providers::Provider;
    let hash: alloy::primitives::B256 = transaction.parse().expect("a transaction hash");
    let mined = devnet
        .provider()
        .get_transaction_receipt(hash)
        .await
        .unwrap()
        .expect("the settlement is mined");
    assert!(mined.status(), "{mined:?}");
    assert_eq!((mined.from, mined.to), (from, Some(to)), "{mined:?}");
}

/// The official `@x402/express` server (`GET /paid` at $0.01, paid to the devnet's payee)
/// in front of this stack's facilitator; the server and its port.
pub async fn official_express_server(stack: &Stack, token: Option<&str>) -> (KillOnDrop, u16) {
    official_express_server_with(stack, token, &[]).await
}

/// [`official_express_server`] with `env` added to the script's environment: `UPTO_PRICE` and
/// `UPTO_USAGE` also serve `GET /metered` with the `upto` scheme, settled for that usage through
/// the official `setSettlementOverrides` (see `tools/interop/express-server.mjs`).
pub async fn official_express_server_with(
    stack: &Stack,
    token: Option<&str>,
    env: &[(&str, String)],
) -> (KillOnDrop, u16) {
    official_express_server_at(&stack.chain.devnet, &stack.url(), token, env).await
}

/// [`official_express_server_with`] in front of the facilitator at `facilitator` (a base URL)
/// instead of the stack's: any facilitator serving `devnet`, such as [`official_facilitator`].
pub async fn official_express_server_at(
    devnet: &x402_devnet::Devnet,
    facilitator: &str,
    token: Option<&str>,
    env: &[(&str, String)],
) -> (KillOnDrop, u16) {
    let mut command = std::process::Command::new("node");
    command
        .arg(interop_dir().join("express-server.mjs"))
        .env("FACILITATOR_URL", facilitator)
        .env("PAY_TO", devnet.pay_to().address.to_checksum(None))
        .env("NETWORK", devnet.network().to_string())
        .env("PRICE", "$0.01")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    if let Some(token) = token {
        command.env("FACILITATOR_TOKEN", token);
    }
    let (server, port) = crate::spawn_announcing(command, "LISTENING ").await;
    (server, port.parse().expect("a port"))
}
