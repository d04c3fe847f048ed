//! The local Solana chain with our facilitator serving `exact` on it over HTTP, and payments
//! made on it with our builder (byte-identical to the official client's).

use serde_json::{Value, json};
use tempfile::TempDir;
use x402_devnet::{SolanaChain, SolanaChainConfig, SolanaChainState};
use x402_facilitator::{FacilitatorConfig, RunningFacilitator};
use x402_proto::PaymentRequest;
use x402_svm::{
    DEFAULT_COMPUTE_UNIT_LIMIT, DEFAULT_COMPUTE_UNIT_PRICE_MICROLAMPORTS, ExactSvmPayload, Keypair,
    PaymentTransaction, Pubkey, SolanaRpc, build_payment, random_memo,
};

use crate::stack::json_answer;

/// A base58 address of the chain's ready line.
pub fn solana_address(text: &str) -> Pubkey {
    text.parse().expect("the front prints base58 addresses")
}

/// The inputs of a transfer of `amount` of `state`'s USDC to its `payTo`, on the latest
/// blockhash, with a random memo, at `compute_unit_price` µlamports per compute unit.
pub async fn solana_transfer(
    state: &SolanaChainState,
    rpc: &SolanaRpc,
    amount: u64,
    compute_unit_price: u64,
) -> PaymentTransaction {
    PaymentTransaction {
        fee_payer: solana_address(&state.fee_payer),
        mint: solana_address(&state.mint),
        token_program: solana_address(&state.token_program),
        decimals: state.decimals,
        pay_to: solana_address(&state.pay_to),
        amount,
        recent_blockhash: rpc
            .latest_blockhash()
            .await
            .expect("the chain answers")
            .blockhash,
        memo: random_memo(),
        compute_unit_limit: DEFAULT_COMPUTE_UNIT_LIMIT,
        compute_unit_price,
    }
}

/// The v2 requirements of a payment of `amount` on `state`'s chain.
pub fn solana_requirements(state: &SolanaChainState, amount: u64) -> Value {
    json!({
        "scheme": "exact", "network": state.network, "amount": amount.to_string(),
        "asset": state.mint, "payTo": state.pay_to, "maxTimeoutSeconds": 60,
        "extra": {"feePayer": state.fee_payer},
    })
}

/// A v2 `/verify` or `/settle` request carrying `payload` for `requirements`.
pub fn solana_request(requirements: &Value, payload: &ExactSvmPayload) -> PaymentRequest {
    serde_json::from_value(json!({
        "x402Version": 2,
        "paymentPayload": {"x402Version": 2, "accepted": requirements, "payload": payload},
        "paymentRequirements": requirements,
    }))
    .expect("a v2 request")
}

/// The local Solana chain and our facilitator serving it over HTTP, its settlement log in a
/// temporary folder.
#[derive(Debug)]
pub struct SolanaStack {
    /// The chain.
    pub chain: SolanaChain,
    /// A client of the chain.
    pub rpc: SolanaRpc,
    /// The facilitator; `None` only while [`SolanaStack::restart`] replaces it.
    pub facilitator: Option<RunningFacilitator>,
    /// Its settings.
    pub config: FacilitatorConfig,
    /// A client for calling it.
    pub http: reqwest::Client,
    /// Its log's and key's folder.
    pub dir: TempDir,
}

impl SolanaStack {
    /// The chain with `payers` funded payers, and the facilitator serving it with `extra`
    /// TOML inside its `[[solana_networks]]` entry.
    pub async fn start(payers: u32, extra: &str) -> Self {
        let chain = SolanaChain::start(&SolanaChainConfig {
            payers,
            payer_funds: 1_000_000_000,
            seed: None,
        })
        .await
        .expect("the local Solana chain starts (npm install in tools/)");
        let dir = tempfile::tempdir().unwrap();
        let state = chain.state();
        let key_file = dir.path().join("fee-payer.json");
        let key = Keypair::try_from_base58_string(&state.fee_payer_key).unwrap();
        std::fs::write(
            &key_file,
            serde_json::to_string(&key.to_bytes().to_vec()).unwrap(),
        )
        .unwrap();
        let text = format!(
            "listen = \"127.0.0.1:0\"\ndatabase = {:?}\n[[solana_networks]]\nnetwork = {:?}\nrpc_url = {:?}\nfee_payer_key_file = {:?}\n{extra}\n",
            dir.path().join("log.db").display().to_string(),
            state.network,
            state.rpc_url,
            key_file.display().to_string(),
        );
        let config = FacilitatorConfig::parse(&text, std::iter::empty()).expect("a valid config");
        let rpc = SolanaRpc::new(&state.rpc_url, std::time::Duration::from_secs(10));
        let mut stack = Self {
            chain,
            rpc,
            facilitator: None,
            config,
            http: reqwest::Client::new(),
            dir,
        };
        stack.restart().await;
        stack
    }

    /// Stops the facilitator (when running) and starts a new one on the same log.
    pub async fn restart(&mut self) {
        if let Some(running) = self.facilitator.take() {
            running.shutdown().await;
        }
        // An EVM signer nobody uses: no EVM chain is served.
        let unused = alloy::signers::local::PrivateKeySigner::random();
        self.facilitator = Some(
            x402_facilitator::start(&self.config, unused)
                .await
                .expect("the facilitator starts"),
        );
    }

    /// The chain's ready line.
    pub fn state(&self) -> &SolanaChainState {
        self.chain.state()
    }

    /// The facilitator's URL.
    pub fn url(&self) -> String {
        self.facilitator.as_ref().expect("running").url()
    }

    /// POSTs `body` to `path`; the status and the JSON answer.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        json_answer(self.http.post(format!("{}{path}", self.url())).json(body)).await
    }

    /// POSTs `request` to `path` with an `Idempotency-Key`; the status and the JSON answer.
    pub async fn post_with_key(
        &self,
        path: &str,
        request: &PaymentRequest,
        key: &str,
    ) -> (u16, Value) {
        let call = self.http.post(format!("{}{path}", self.url()));
        json_answer(call.header("Idempotency-Key", key).json(request)).await
    }

    /// GETs `path`; the status and the JSON answer.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        json_answer(self.http.get(format!("{}{path}", self.url()))).await
    }

    /// A v2 payment of `amount` signed by payer `index` with our builder.
    pub async fn payment(&self, index: usize, amount: u64) -> PaymentRequest {
        let state = self.state();
        let payer = Keypair::try_from_base58_string(&state.payer_keys[index]).unwrap();
        let parts = solana_transfer(
            state,
            &self.rpc,
            amount,
            DEFAULT_COMPUTE_UNIT_PRICE_MICROLAMPORTS,
        )
        .await;
        let payload = ExactSvmPayload::of(&build_payment(&payer, &parts).expect("it signs"));
        solana_request(&solana_requirements(state, amount), &payload)
    }

    /// The payee's USDC balance, atomic units.
    pub async fn pay_to_balance(&self) -> u64 {
        let account = solana_address(&self.state().pay_to_token_account);
        self.rpc.token_balance(&account).await.unwrap()
    }

    /// `calls` concurrent `/settle` calls of `request`, each with `key` when given.
    pub async fn settle_concurrently(
        &self,
        request: &PaymentRequest,
        calls: usize,
        key: Option<&str>,
    ) -> Vec<(u16, Value)> {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..calls {
            let mut builder = self
                .http
                .post(format!("{}/settle", self.url()))
                .json(request);
            if let Some(key) = key {
                builder = builder.header("Idempotency-Key", key);
            }
            tasks.spawn(json_answer(builder));
        }
        tasks.join_all().await
    }
}

impl SolanaStack {
    /// The official `@x402/express` server with its Solana route (`GET /solana`, `exact` at
    /// `$0.001` in the network's USDC, paid to the chain's payee) in front of this stack's
    /// facilitator; the server and its port.
    pub async fn official_express_server(&self) -> (crate::KillOnDrop, u16) {
        let state = self.state();
        let mut command = std::process::Command::new("node");
        command
            .arg(crate::interop_dir().join("express-server.mjs"))
            .env("FACILITATOR_URL", self.url())
            .env("SVM_PAY_TO", &state.pay_to)
            .env("SVM_NETWORK", &state.network)
            .env("SVM_PRICE", "$0.001")
            .env("SVM_RPC_URL", &state.rpc_url)
            .env_remove("PAY_TO");
        let (server, port) = crate::spawn_announcing(command, "LISTENING ").await;
        (server, port.parse().expect("a port"))
    }

    /// The official `@x402/fetch` client with `@x402/svm`'s `exact` client scheme, paying
    /// `url` as payer `index`: the JSON it prints.
    pub async fn official_fetch(&self, url: &str, index: usize) -> Value {
        let state = self.state();
        crate::official_fetch(vec![
            ("URL", url.to_owned()),
            ("SVM_PRIVATE_KEY", state.payer_keys[index].clone()),
            ("SVM_RPC_URL", state.rpc_url.clone()),
        ])
        .await
    }
}

/// What the official facilitator library (`@x402/svm` 2.27 through `official-verify.mjs`, its
/// fee payer the chain's) answers each `/verify` body on `state`'s chain, in order.
pub async fn official_svm_verify(state: &SolanaChainState, bodies: &[Value]) -> Vec<Value> {
    let mut command = std::process::Command::new("node");
    command
        .arg(crate::interop_dir().join("official-verify.mjs"))
        .env("RPC_URL", &state.rpc_url)
        .env("NETWORK", &state.network)
        .env("FACILITATOR_PRIVATE_KEY", &state.fee_payer_key);
    crate::run_official_verify(command, serde_json::to_vec(bodies).unwrap()).await
}

/// A verify answer as (validity, reason code), the part both facilitators must agree on.
pub fn svm_verdict(answer: &Value) -> (bool, Option<String>) {
    assert!(answer.get("error").is_none(), "the library threw: {answer}");
    (
        answer["isValid"].as_bool().expect("isValid"),
        answer["invalidReason"].as_str().map(str::to_owned),
    )
}

/// A payment of `amount` to `state`'s payee signed by `payer` (a base58 secret key) with our
/// builder at `price` µlamports per compute unit, with `before` and `after` added around the
/// transfer and memo (see [`x402_svm::build_payment_with`]): its payload as JSON.
pub async fn solana_payload_with(
    state: &SolanaChainState,
    rpc: &SolanaRpc,
    payer: &str,
    amount: u64,
    price: u64,
    before: &[x402_svm::Instruction],
    after: &[x402_svm::Instruction],
) -> Value {
    let payer = Keypair::try_from_base58_string(payer).expect("a base58 secret key");
    let parts = solana_transfer(state, rpc, amount, price).await;
    let transaction =
        x402_svm::build_payment_with(&payer, &parts, before, after).expect("it signs");
    serde_json::to_value(ExactSvmPayload::of(&transaction)).unwrap()
}
