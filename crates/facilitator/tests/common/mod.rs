//! A dev chain with our facilitator serving it over HTTP, for the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use alloy::primitives::U256;
use alloy::providers::Provider;
use serde_json::Value;
use tempfile::TempDir;
use x402_devnet::DevnetConfig;
use x402_facilitator::{FacilitatorConfig, RunningFacilitator};
use x402_proto::PaymentRequest;
use x402_testkit::Chain;

/// A devnet, and our facilitator serving it.
pub struct Stack {
    pub chain: Chain,
    pub facilitator: Option<RunningFacilitator>,
    pub http: reqwest::Client,
    pub dir: TempDir,
    pub config: FacilitatorConfig,
}

/// What a test compares with later: the payee's balance and the signer's transaction count.
#[derive(Clone, Copy, Debug)]
pub struct Before {
    pub paid: U256,
    pub sent: u64,
}

/// The facilitator config for a chain at `rpc_url`, logging in `dir`.
pub fn config_for(rpc_url: &str, dir: &std::path::Path, extra: &str) -> FacilitatorConfig {
    config_with_network(rpc_url, dir, extra, "")
}

/// [`config_for`], with `network` TOML (keys and sub-tables) inside the `[[networks]]` entry.
pub fn config_with_network(
    rpc_url: &str,
    dir: &std::path::Path,
    extra: &str,
    network: &str,
) -> FacilitatorConfig {
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndatabase = \"{}\"\n{extra}\n[[networks]]\nchain_id = 8453\nrpc_url = \"{rpc_url}\"\n{network}\n",
        dir.join("facilitator.db").display()
    );
    FacilitatorConfig::parse(&text, std::iter::empty()).expect("test config parses")
}

impl Stack {
    /// A facilitator with `config` serving `chain`, which logs in `dir`.
    pub async fn serve(chain: Chain, dir: TempDir, config: FacilitatorConfig) -> Self {
        let facilitator =
            x402_facilitator::start(&config, chain.devnet.facilitator().signer.clone())
                .await
                .expect("facilitator starts");
        Self {
            chain,
            facilitator: Some(facilitator),
            http: reqwest::Client::new(),
            dir,
            config,
        }
    }

    /// Automining devnet, default facilitator.
    pub async fn start() -> Self {
        Self::start_with(DevnetConfig::default(), "").await
    }

    /// A devnet with `devnet`, a facilitator with `extra` TOML (top-level keys and tables
    /// before `[[networks]]`).
    pub async fn start_with(devnet: DevnetConfig, extra: &str) -> Self {
        Self::on_chain(Chain::start_with(devnet).await, extra, "").await
    }

    /// A facilitator serving `chain`, logging in a new folder, with `extra` and `network` TOML
    /// (see [`config_with_network`]).
    pub async fn on_chain(chain: Chain, extra: &str, network: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rpc_url = chain.devnet.rpc_url().to_string();
        let config = config_with_network(&rpc_url, dir.path(), extra, network);
        Self::serve(chain, dir, config).await
    }

    pub fn url(&self) -> String {
        self.facilitator.as_ref().expect("running").url()
    }

    /// POSTs JSON; returns the status and the JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        json_answer(self.http.post(format!("{}{path}", self.url())).json(body)).await
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.url()))
            .send()
            .await
            .expect("facilitator answers");
        (response.status().as_u16(), response.text().await.unwrap())
    }

    pub async fn settle(&self, request: &PaymentRequest) -> (u16, Value) {
        self.post("/settle", &serde_json::to_value(request).unwrap())
            .await
    }

    /// `/settle` with an `Idempotency-Key`.
    pub async fn settle_with_key(&self, request: &PaymentRequest, key: &str) -> (u16, Value) {
        let call = self.http.post(format!("{}/settle", self.url()));
        json_answer(call.header("Idempotency-Key", key).json(request)).await
    }

    /// `calls` concurrent `/settle` calls of one request, each with `key` when given; the
    /// answers as (status, JSON).
    pub async fn settle_concurrently(
        &self,
        request: &PaymentRequest,
        calls: usize,
        key: Option<&str>,
    ) -> Vec<(u16, Value)> {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..calls {
            let http = self.http.clone();
            let url = format!("{}/settle", self.url());
            let body = serde_json::to_value(request).unwrap();
            let key = key.map(str::to_owned);
            tasks.spawn(async move {
                let mut builder = http.post(url).json(&body);
                if let Some(key) = key {
                    builder = builder.header("Idempotency-Key", key);
                }
                json_answer(builder).await
            });
        }
        tasks.join_all().await
    }

    pub async fn verify(&self, request: &PaymentRequest) -> (u16, Value) {
        self.post("/verify", &serde_json::to_value(request).unwrap())
            .await
    }

    /// A fresh honest v2 payment of `amount` by payer `index`.
    pub fn payment(&self, index: usize, amount: u128) -> PaymentRequest {
        let requirements = self.chain.requirements(amount);
        let payer = &self.chain.devnet.payers()[index].signer;
        x402_testkit::v2_request(
            &x402_testkit::honest_payment(payer, &requirements),
            &requirements,
        )
    }

    pub async fn pay_to_balance(&self) -> U256 {
        self.chain.balance(self.chain.devnet.pay_to().address).await
    }

    /// The payee's balance and the signer's transaction count now.
    pub async fn before(&self) -> Before {
        Before {
            paid: self.pay_to_balance().await,
            sent: self.chain.facilitator_tx_count().await,
        }
    }

    /// Asserts that since `before` the signer sent `txs` transactions and the payee was paid
    /// `amount`.
    pub async fn assert_since(&self, before: Before, txs: u64, amount: u64) {
        assert_eq!(
            self.chain.facilitator_tx_count().await,
            before.sent + txs,
            "the signer's nonce advanced by {txs}"
        );
        assert_eq!(
            self.pay_to_balance().await,
            before.paid + U256::from(amount),
            "the payee was paid {amount}"
        );
    }

    /// Turns automining off: blocks come only when the test mines them.
    pub async fn stop_automine(&self) {
        self.chain
            .devnet
            .provider()
            .raw_request::<_, ()>("evm_setAutomine".into(), (false,))
            .await
            .expect("automine turned off");
    }

    /// Mines one block.
    pub async fn mine(&self) {
        self.chain.devnet.mine().await.expect("a block is mined");
    }

    /// Restarts the facilitator on the same log (a clean stop first, when running).
    pub async fn restart(&mut self) {
        if let Some(running) = self.facilitator.take() {
            running.shutdown().await;
        }
        self.facilitator = Some(
            x402_facilitator::start(&self.config, self.chain.devnet.facilitator().signer.clone())
                .await
                .expect("facilitator restarts"),
        );
    }
}

/// Sends `call`; the status and the JSON body.
async fn json_answer(call: reqwest::RequestBuilder) -> (u16, Value) {
    let response = call.send().await.expect("facilitator answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON answer"))
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
pub fn interop_dir() -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/interop");
    assert!(
        dir.join("../node_modules/@x402/express").exists(),
        "the official SDKs are not installed: run scripts/install-tools.sh"
    );
    dir
}

pub use x402_testkit::KillOnDrop;

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
    let mut command = std::process::Command::new("node");
    command
        .arg(interop_dir().join("express-server.mjs"))
        .env("FACILITATOR_URL", stack.url())
        .env(
            "PAY_TO",
            stack.chain.devnet.pay_to().address.to_checksum(None),
        )
        .env("PRICE", "$0.01");
    if let Some(token) = token {
        command.env("FACILITATOR_TOKEN", token);
    }
    let (server, port) = x402_testkit::spawn_announcing(command, "LISTENING ").await;
    (server, port.parse().expect("a port"))
}

/// A TCP proxy that can be cut (connections refused and dropped) and restored: a chain RPC
/// outage without losing the chain's state.
pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&up);
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !flag.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let flag = Arc::clone(&flag);
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut ri, mut wi) = inbound.split();
                    let (mut ro, mut wo) = outbound.split();
                    let watch = async {
                        while flag.load(Ordering::SeqCst) {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! {
                        _ = tokio::io::copy(&mut ri, &mut wo) => {}
                        _ = tokio::io::copy(&mut ro, &mut wi) => {}
                        _ = watch => {}
                    }
                });
            }
        });
        Self { addr, up }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cuts every connection (open ones within the watch interval) and refuses new ones.
    pub async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(80)).await;
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
