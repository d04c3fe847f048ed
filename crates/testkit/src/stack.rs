//! A devnet with our facilitator serving it over HTTP: the stack that tests of facilitators,
//! paywalls and paying clients stand on.

use std::sync::Arc;

use alloy::primitives::U256;
use alloy::providers::Provider;
use serde_json::Value;
use tempfile::TempDir;
use x402_devnet::DevnetConfig;
use x402_facilitator::{FacilitatorConfig, RunningFacilitator};
use x402_paywall::{PaymentOption, Paywall, PaywallConfig};
use x402_proto::{Facilitator, PaymentRequest};

use crate::Chain;

/// A devnet, and our facilitator serving it over HTTP with its settlement log in a temporary
/// folder: what most tests of facilitators, servers and paying clients stand on.
#[derive(Debug)]
pub struct Stack {
    /// The chain.
    pub chain: Chain,
    /// The facilitator; `None` only while [`Stack::restart`] replaces it.
    pub facilitator: Option<RunningFacilitator>,
    /// A client for calling it.
    pub http: reqwest::Client,
    /// Its settlement log's folder.
    pub dir: TempDir,
    /// Its settings.
    pub config: FacilitatorConfig,
}

/// What a test compares with later: the payee's balance and the signer's transaction count.
#[derive(Clone, Copy, Debug)]
pub struct Before {
    /// The payee's balance.
    pub paid: U256,
    /// The signer's transaction count.
    pub sent: u64,
}

/// The facilitator config for a devnet (chain id 8453) at `rpc_url`, logging in `dir`, with
/// `extra` TOML (top-level keys and tables before `[[networks]]`).
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
    let chain_id = DevnetConfig::default().chain_id;
    config_on(chain_id, rpc_url, dir, extra, network)
}

/// The facilitator config for chain `chain_id` at `rpc_url`; see [`config_with_network`].
pub(crate) fn config_on(
    chain_id: u64,
    rpc_url: &str,
    dir: &std::path::Path,
    extra: &str,
    network: &str,
) -> FacilitatorConfig {
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndatabase = \"{}\"\n{extra}\n[[networks]]\nchain_id = {chain_id}\nrpc_url = \"{rpc_url}\"\n{network}\n",
        dir.join("facilitator.db").display()
    );
    FacilitatorConfig::parse(&text, std::iter::empty()).expect("test config parses")
}

/// Our facilitator serving `chain` over HTTP on a free loopback port, with its settlement log
/// in `dir` and default settings.
pub async fn start_facilitator(chain: &Chain, dir: &std::path::Path) -> RunningFacilitator {
    let rpc_url = chain.devnet.rpc_url().to_string();
    let config = config_on(chain.devnet.chain_id(), &rpc_url, dir, "", "");
    x402_facilitator::start(&config, chain.devnet.facilitator().signer.clone())
        .await
        .expect("the test facilitator starts")
}

impl Stack {
    /// A facilitator with `config` serving `chain`, which logs in `dir`.
    pub async fn serve(chain: Chain, dir: TempDir, config: FacilitatorConfig) -> Self {
        let mut stack = Self {
            chain,
            facilitator: None,
            http: reqwest::Client::new(),
            dir,
            config,
        };
        stack.restart().await;
        stack
    }

    /// Our facilitator on an automining devnet with its settlement log in `database`
    /// (Postgres), its config changed by `tune` first.
    pub async fn on_postgres(
        database: &crate::TempDatabase,
        tune: impl FnOnce(&mut FacilitatorConfig),
    ) -> Self {
        let chain = Chain::start().await;
        let dir = tempfile::tempdir().unwrap();
        let mut config = config_for(chain.devnet.rpc_url().as_ref(), dir.path(), "");
        config.database = x402_facilitator::Database::parse(&database.url).expect("a Postgres URL");
        tune(&mut config);
        Self::serve(chain, dir, config).await
    }

    /// `count` more instances of this facilitator, on its config (so sharing its settlement
    /// log) and its signer key.
    pub async fn more_instances(&self, count: usize) -> Vec<RunningFacilitator> {
        let signer = &self.chain.devnet.facilitator().signer;
        let mut instances = Vec::with_capacity(count);
        for _ in 0..count {
            let started = x402_facilitator::start(&self.config, signer.clone()).await;
            instances.push(started.expect("another instance starts on the same database"));
        }
        instances
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
        let config = config_on(
            chain.devnet.chain_id(),
            &rpc_url,
            dir.path(),
            extra,
            network,
        );
        Self::serve(chain, dir, config).await
    }

    /// The facilitator's base URL.
    pub fn url(&self) -> String {
        self.facilitator.as_ref().expect("running").url()
    }

    /// POSTs JSON; returns the status and the JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        json_answer(self.http.post(format!("{}{path}", self.url())).json(body)).await
    }

    /// GETs `path`; the status and the body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.url()))
            .send()
            .await
            .expect("facilitator answers");
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// `/settle`; the status and the JSON answer.
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

    /// `/verify`; the status and the JSON answer.
    pub async fn verify(&self, request: &PaymentRequest) -> (u16, Value) {
        self.post("/verify", &serde_json::to_value(request).unwrap())
            .await
    }

    /// A fresh honest v2 payment of `amount` by payer `index`.
    pub fn payment(&self, index: usize, amount: u128) -> PaymentRequest {
        let requirements = self.chain.requirements(amount);
        let payer = &self.chain.devnet.payers()[index].signer;
        crate::v2_request(&crate::honest_payment(payer, &requirements), &requirements)
    }

    /// The payee's token balance.
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

    /// The facilitator in process, behind the [`Facilitator`] trait.
    pub fn in_process(&self) -> Arc<dyn Facilitator> {
        Arc::new(
            self.facilitator
                .as_ref()
                .expect("running")
                .service()
                .clone(),
        )
    }

    /// A paywall charging in the devnet's token, to its payee, through the facilitator in
    /// process; signed payments stay valid for two minutes.
    pub fn paywall(&self) -> Paywall {
        let option =
            PaymentOption::from_requirements(&self.chain.requirements(1), 6).with_max_timeout(120);
        Paywall::new(self.in_process(), vec![option], PaywallConfig::default())
            .expect("a paywall with one option")
    }

    /// (Re)starts the facilitator on the same log (a clean stop first, when running).
    pub async fn restart(&mut self) {
        if let Some(running) = self.facilitator.take() {
            running.shutdown().await;
        }
        let signer = self.chain.devnet.facilitator().signer.clone();
        self.facilitator = Some(
            x402_facilitator::start(&self.config, signer)
                .await
                .expect("the facilitator starts"),
        );
    }
}

/// Sends `call`; the status and the JSON body.
pub(crate) async fn json_answer(call: reqwest::RequestBuilder) -> (u16, Value) {
    let response = call.send().await.expect("facilitator answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON answer"))
}
