//! Helpers for tests that drive the `x402` binary against `x402 dev`.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// Waits for `x402 dev` to write dev.json.
pub fn wait_for_state(path: &Path, child: &mut Child) -> Value {
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

/// `x402 dev --state-dir <state_dir>` on free ports, with the installed models, quiet.
pub fn dev_command(state_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_x402"));
    command
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
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// The dev token balance of `owner`, in atomic units, on the stack `state` (dev.json)
/// describes.
pub fn usdc_balance(state: &Value, owner: &str) -> u128 {
    let data = format!(
        "0x70a08231{:0>64}",
        owner.trim_start_matches("0x").to_lowercase()
    );
    let answer = rpc(
        state["rpc_url"].as_str().unwrap(),
        "eth_call",
        serde_json::json!([{"to": state["asset"], "data": data}, "latest"]),
    );
    u128::from_str_radix(answer.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// Sends `signal` (as `kill` spells it: `-TERM`, `-INT`) to `child`; whether it was sent.
pub fn signal(child: &Child, signal: &str) -> bool {
    Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .is_ok_and(|status| status.success())
}

/// Stops `child` with SIGTERM and asserts that it exits cleanly.
pub fn stop_cleanly(child: &mut Child) {
    assert!(signal(child, "-TERM"), "SIGTERM sent");
    let status = child.wait().unwrap();
    assert!(status.success(), "exited with {status}");
}

/// `x402 dev` running in the background (ports chosen freely) with its state in a temporary
/// directory, stopped with SIGTERM on drop.
pub struct DevStack {
    child: Child,
    /// Its dev.json.
    pub state: Value,
    dir: TempDir,
}

impl DevStack {
    /// Starts `x402 dev` with its state in a fresh temporary directory and waits for dev.json.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("dev");
        let mut child = dev_command(&state_dir).spawn().unwrap();
        let state = wait_for_state(&state_dir.join("dev.json"), &mut child);
        Self { child, state, dir }
    }

    /// Its state directory (`--state-dir`).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("dev")
    }

    /// An `X402_HOME` for an agent using the stack, beside its state (created by its first
    /// use).
    pub fn agent_home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// The string `key` of dev.json.
    pub fn text(&self, key: &str) -> String {
        self.state[key]
            .as_str()
            .unwrap_or_else(|| panic!("dev.json has no string {key}"))
            .to_owned()
    }

    /// The dev token balance of `owner`, in atomic units.
    pub fn usdc_balance(&self, owner: &str) -> u128 {
        usdc_balance(&self.state, owner)
    }
}

impl Drop for DevStack {
    fn drop(&mut self) {
        signal(&self.child, "-TERM");
        let _ = self.child.wait();
    }
}

/// Starts `x402 <command> --config <config>` with `envs`, and waits for its first stdout
/// line, `<command> listening on <url>`: the running child and its URL.
pub fn spawn_listening(command: &str, config: &Path, envs: &[(&str, &str)]) -> (Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_x402"))
        .args([command, "--config"])
        .arg(config)
        .envs(envs.iter().copied())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
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
