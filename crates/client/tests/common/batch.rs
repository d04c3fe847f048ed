//! The official `batch-settlement` server (`@x402/express` with the `@x402/evm` 2.27
//! batch-settlement server scheme and its channel manager) in front of the official
//! facilitator library, on a fresh devnet, and our clients paying it.

use alloy::primitives::U256;
use alloy::signers::local::PrivateKeySigner;
use serde_json::Value;
use x402_client::{Ledger, PaidResponse, PayError, PayingClient, Policy};
use x402_testkit::{Chain, KillOnDrop, official_express_server_at, official_facilitator};

/// `GET /batched`'s price: $0.001 of the devnet's USDC, in atomic units.
pub const PRICE: u128 = 1_000;
/// What `GET /batched` reports it used, so what each request is charged.
pub const USAGE: u128 = 600;
/// The deposit the server asks for (`extra.minDeposit`): enough for 200 requests.
pub const MIN_DEPOSIT: u128 = 200_000;

/// The official batch stack.
pub struct OfficialBatch {
    /// The devnet.
    pub chain: Chain,
    /// The server's base URL.
    pub url: String,
    _facilitator: KillOnDrop,
    _server: KillOnDrop,
}

impl OfficialBatch {
    /// A chain, the official facilitator (the devnet's facilitator key also the receiver
    /// authorizer it advertises) and the official server with `GET /batched`.
    pub async fn start() -> Self {
        let chain = Chain::start().await;
        let (facilitator, facilitator_url) =
            official_facilitator(&chain.devnet, &chain.devnet.facilitator().signer).await;
        let env = [
            ("BATCH_PRICE", "$0.001".to_owned()),
            ("BATCH_USAGE", USAGE.to_string()),
            ("BATCH_MIN_DEPOSIT", MIN_DEPOSIT.to_string()),
        ];
        let (server, port) =
            official_express_server_at(&chain.devnet, &facilitator_url, None, &env).await;
        Self {
            chain,
            url: format!("http://127.0.0.1:{port}"),
            _facilitator: facilitator,
            _server: server,
        }
    }

    /// The paid resource's URL.
    pub fn resource(&self) -> String {
        format!("{}/batched", self.url)
    }

    /// The `index`th payer's signer.
    pub fn payer(&self, index: usize) -> &PrivateKeySigner {
        &self.chain.devnet.payers()[index].signer
    }

    /// A client paying as `signer`, recording in `ledger`, reading the devnet.
    pub fn client_with(&self, signer: &PrivateKeySigner, ledger: Ledger) -> PayingClient {
        PayingClient::new(
            reqwest::Client::new(),
            signer.clone(),
            Policy::default(),
            ledger,
        )
        .with_chain(self.chain.devnet.rpc_url().clone())
    }

    /// The `index`th payer's client, its ledger in memory.
    pub fn client(&self, index: usize) -> PayingClient {
        self.client_with(self.payer(index), Ledger::in_memory().unwrap())
    }

    /// `client` GETs the paid resource.
    pub async fn pay(&self, client: &PayingClient) -> Result<PaidResponse, PayError> {
        let request = client.http().get(self.resource()).build().unwrap();
        client.send(request, None).await
    }

    /// The token balance of `owner`.
    pub async fn balance(&self, owner: alloy::primitives::Address) -> U256 {
        self.chain.balance(owner).await
    }

    /// Asks the official channel manager to claim every charged voucher and settle.
    pub async fn claim_and_settle(&self) -> Value {
        let answer = reqwest::Client::new()
            .post(format!("{}/batch/claim-and-settle", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        answer.json().await.unwrap()
    }
}
