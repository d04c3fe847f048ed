//! The official x402 SDKs as test peers: where they are installed, and the interop scripts that
//! run their fetch client, express server and facilitator library.

use std::path::PathBuf;

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

/// The official SDKs' interop scripts (`tools/interop`), checked to be installed.
pub fn interop_dir() -> PathBuf {
    official_sdks("@x402/express").join("interop")
}

/// The official facilitator library's verdicts (`@x402/evm` 2.27 `verify`, through
/// `official-verify.mjs`) on `requests`, against `devnet` with its facilitator key and `env`
/// added: one JSON answer per request, in order.
pub async fn official_verify(
    devnet: &x402_devnet::Devnet,
    requests: &[&PaymentRequest],
    env: &[(&str, String)],
) -> Vec<Value> {
    use std::io::Write;
    let input = serde_json::to_vec(requests).unwrap();
    let mut command = std::process::Command::new("node");
    command
        .arg(interop_dir().join("official-verify.mjs"))
        .env("RPC_URL", devnet.rpc_url().to_string())
        .env(
            "FACILITATOR_PRIVATE_KEY",
            devnet.facilitator().signer.to_bytes().to_string(),
        )
        .envs(env.iter().map(|(k, v)| (*k, v.clone())))
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
    assert_eq!(official.len(), requests.len());
    official
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
    let mut command = std::process::Command::new("node");
    command
        .arg(interop_dir().join("express-server.mjs"))
        .env("FACILITATOR_URL", stack.url())
        .env(
            "PAY_TO",
            stack.chain.devnet.pay_to().address.to_checksum(None),
        )
        .env("PRICE", "$0.01")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    if let Some(token) = token {
        command.env("FACILITATOR_TOKEN", token);
    }
    let (server, port) = crate::spawn_announcing(command, "LISTENING ").await;
    (server, port.parse().expect("a port"))
}
