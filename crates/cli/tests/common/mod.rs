//! Helpers for tests that drive the `x402` binary against `x402 dev`.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Waits for `x402 dev` to write dev.json.
pub fn wait_for_state(path: &Path, child: &mut std::process::Child) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return serde_json::from_str(&text).expect("dev.json is JSON");
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("x402 dev exited early with {status}");
        }
        assert!(Instant::now() < deadline, "dev.json did not appear");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A JSON-RPC call over a plain HTTP/1.1 request (no client library needed).
pub fn rpc(url: &str, method: &str, params: Value) -> Value {
    use std::io::{Read, Write};
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        .to_string();
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host).expect("anvil reachable");
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (_, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    let reply: Value = serde_json::from_str(body).expect("JSON-RPC reply");
    reply["result"].clone()
}

/// GET over plain HTTP/1.1; asserts a 200 and returns the body.
pub fn http_get(base: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host).expect("facilitator reachable");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response.split_once("\r\n\r\n").unwrap().1.to_owned()
}

/// `x402 dev` running in the background (ports chosen freely), stopped with SIGTERM on drop.
pub struct DevStack {
    child: std::process::Child,
    /// Its dev.json.
    pub state: Value,
}

impl DevStack {
    /// Starts `x402 dev` with its state in `state_dir` and waits for dev.json.
    pub fn start(state_dir: &Path) -> Self {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_x402"))
            .args([
                "dev",
                "--facilitator-port",
                "0",
                "--gateway-port",
                "0",
                "--state-dir",
            ])
            .arg(state_dir)
            .arg("--models-dir")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let state = wait_for_state(&state_dir.join("dev.json"), &mut child);
        Self { child, state }
    }

    /// The dev token balance of `owner`, in atomic units.
    pub fn usdc_balance(&self, owner: &str) -> u128 {
        let data = format!(
            "0x70a08231{:0>64}",
            owner.trim_start_matches("0x").to_lowercase()
        );
        let answer = rpc(
            self.state["rpc_url"].as_str().unwrap(),
            "eth_call",
            serde_json::json!([{"to": self.state["asset"], "data": data}, "latest"]),
        );
        u128::from_str_radix(answer.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    }
}

impl Drop for DevStack {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Starts `x402 <command> --config <config>` with `envs`, and waits for its first stdout
/// line, `<command> listening on <url>`: the running child and its URL.
pub fn spawn_listening(
    command: &str,
    config: &Path,
    envs: &[(&str, &str)],
) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_x402"))
        .args([command, "--config"])
        .arg(config)
        .envs(envs.iter().copied())
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix(&format!("{command} listening on "))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, url)
}
