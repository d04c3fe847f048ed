//! The whole stack for gateway tests: a dev chain, our facilitator (in process), and the
//! gateway with the real local models from `models/`.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::Arc;

use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use serde_json::Value;
use tempfile::TempDir;
use x402_facilitator::{FacilitatorConfig, RunningFacilitator};
use x402_gateway::{GatewayConfig, RunningGateway};
use x402_proto::Facilitator;
use x402_testkit::{Chain, Wire, payment_for};

pub struct Stack {
    pub chain: Chain,
    pub facilitator: RunningFacilitator,
    pub gateway: RunningGateway,
    pub url: String,
    pub http: reqwest::Client,
    pub dir: TempDir,
}

/// The models installed by scripts/install-models.sh.
pub fn models_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models");
    assert!(
        dir.join("all-minilm-l6-v2/model.safetensors").is_file(),
        "the models are not installed: run scripts/install-models.sh"
    );
    dir
}

pub fn testdata(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name),
    )
    .unwrap()
}

impl Stack {
    /// The stack; `extra` is appended to the gateway's TOML (say, `[services.…]` tables).
    pub async fn start(extra: &str) -> Self {
        let chain = Chain::start().await;
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "listen = \"127.0.0.1:0\"\ndatabase = \"{}\"\n[[networks]]\nchain_id = {}\nrpc_url = \"{}\"\n",
            dir.path().join("facilitator.db").display(),
            chain.devnet.chain_id(),
            chain.devnet.rpc_url(),
        );
        let config = FacilitatorConfig::parse(&text, std::iter::empty()).unwrap();
        let facilitator =
            x402_facilitator::start(&config, chain.devnet.facilitator().signer.clone())
                .await
                .expect("facilitator starts");
        let requirements = chain.requirements(1);
        let extra_json = requirements.extra.clone().unwrap();
        let gateway_toml = format!(
            "listen = \"127.0.0.1:0\"\nmodels_dir = {models:?}\njobs_db = {jobs_db:?}\n\n[payment]\npay_to = \"{pay_to}\"\n\n\
             [[payment.accepts]]\nnetwork = \"{network}\"\nasset = \"{asset}\"\ndecimals = 6\nname = {name}\nversion = {version}\n{extra}\n",
            models = models_dir().display().to_string(),
            jobs_db = dir.path().join("gateway-jobs.db").display().to_string(),
            pay_to = requirements.pay_to,
            network = requirements.network,
            asset = requirements.asset,
            name = extra_json["name"],
            version = extra_json["version"],
        );
        let gateway_config = GatewayConfig::parse(&gateway_toml).expect("gateway config parses");
        let in_process: Arc<dyn Facilitator> = Arc::new(facilitator.service().clone());
        let gateway = x402_gateway::start(&gateway_config, Some(in_process))
            .await
            .expect("gateway starts");
        Self {
            url: gateway.url(),
            chain,
            facilitator,
            gateway,
            http: reqwest::Client::new(),
            dir,
        }
    }

    pub fn payer(&self, i: usize) -> &PrivateKeySigner {
        &self.chain.devnet.payers()[i].signer
    }

    pub fn pay_to(&self) -> Address {
        self.chain.devnet.pay_to().address
    }

    pub async fn pay_to_balance(&self) -> U256 {
        self.chain.balance(self.pay_to()).await
    }

    /// POSTs `body` to `path`, pays the 402 with payer `i` over `wire`, and returns the paid
    /// response and the amount the challenge asked for.
    pub async fn pay_post(
        &self,
        path: &str,
        body: &Value,
        i: usize,
        wire: Wire,
    ) -> (reqwest::Response, U256) {
        let url = format!("{}{path}", self.url);
        let first = self.http.post(&url).json(body).send().await.unwrap();
        assert_eq!(first.status(), 402, "{path} should ask for payment first");
        let amount = x402_testkit::challenge_of(first.headers()).accepts[0]
            .amount
            .0;
        let (name, value) = payment_for(first, self.payer(i), wire).await;
        let paid = self
            .http
            .post(&url)
            .json(body)
            .header(name, value)
            .send()
            .await
            .unwrap();
        (paid, amount)
    }
}
