//! Solana beside the devnet: the local Solana chain ([`SolanaChain`]), our facilitator serving
//! both chains (the `exact` Solana plug-in registered at start), and payers that sign Solana
//! payments with our client plug-in ([`x402_svm::ExactSvmClient`]).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use x402_devnet::{SolanaChain, SolanaChainConfig, SolanaChainState};
use x402_proto::{Facilitator, Network, SchemeClient, v1, v2};
use x402_svm::{
    ExactSvmClient, ExactSvmFacilitator, ExactSvmScheme, FeePayers, Keypair, Pubkey, SettlePolicy,
    SolanaRpc, VerifyLimits,
};

use x402_evm::unix_now;

use crate::{Chain, Stack, Wire};

/// The local Solana chain and an RPC client for it.
#[derive(Debug)]
pub struct Solana {
    /// The chain (stopped when dropped).
    pub chain: SolanaChain,
    /// A client for its JSON-RPC.
    pub rpc: SolanaRpc,
}

impl Solana {
    /// Starts the local chain with four payers holding 1000 USDC each.
    pub async fn start() -> Self {
        let chain = SolanaChain::start(&SolanaChainConfig::default())
            .await
            .expect("the local Solana chain starts (npm install in tools/)");
        let rpc = SolanaRpc::new(chain.rpc_url(), Duration::from_secs(10));
        Self { chain, rpc }
    }

    /// What it holds.
    pub fn state(&self) -> &SolanaChainState {
        self.chain.state()
    }

    /// Its network (devnet, CAIP-2).
    pub fn network(&self) -> Network {
        Network::new(self.state().network.clone())
    }

    /// Our facilitator's `exact` plug-in for this chain, paying fees with its fee payer.
    pub fn facilitator(&self) -> Arc<ExactSvmFacilitator> {
        let fee_payer = Keypair::try_from_base58_string(&self.state().fee_payer_key)
            .expect("the chain's fee payer key");
        Arc::new(ExactSvmFacilitator::new(
            self.network(),
            ExactSvmScheme::new(
                SolanaRpc::new(self.chain.rpc_url(), Duration::from_secs(10)),
                FeePayers::new(vec![fee_payer]),
                VerifyLimits::default(),
            ),
            SettlePolicy::default(),
        ))
    }

    /// Payer `index`'s key pair.
    pub fn payer_key(&self, index: usize) -> Keypair {
        Keypair::try_from_base58_string(&self.state().payer_keys[index]).expect("a payer key")
    }

    /// Our client plug-in paying as payer `index` on this chain.
    pub fn client(&self, index: usize) -> ExactSvmClient {
        ExactSvmClient::new(
            self.payer_key(index),
            SolanaRpc::new(self.chain.rpc_url(), Duration::from_secs(10)),
        )
        .on_networks(vec![self.network()])
    }

    /// The payee's USDC balance, in atomic units.
    pub async fn pay_to_balance(&self) -> u64 {
        let account: Pubkey = self.state().pay_to_token_account.parse().unwrap();
        self.rpc.token_balance(&account).await.expect("a balance")
    }

    /// Payer `index`'s USDC balance, in atomic units.
    pub async fn payer_balance(&self, index: usize) -> u64 {
        let account: Pubkey = self.state().payer_token_accounts[index].parse().unwrap();
        self.rpc.token_balance(&account).await.expect("a balance")
    }

    /// Asserts that the transaction with `signature` landed and succeeded.
    pub async fn assert_landed(&self, signature: &str) {
        let status = self
            .rpc
            .signature_status(signature)
            .await
            .expect("the chain answers")
            .unwrap_or_else(|| panic!("transaction {signature} is not on chain"));
        assert!(status.is_confirmed(), "{signature}: {status:?}");
        assert!(status.err.is_none(), "{signature} failed: {status:?}");
    }

    /// Reads a 402 and signs, as payer `index`, a payment for its Solana offer, as a client of
    /// `wire` would: the header name and value to retry with.
    pub async fn payment_for(
        &self,
        response: reqwest::Response,
        index: usize,
        wire: Wire,
    ) -> (&'static str, String) {
        assert_eq!(response.status(), 402, "expected a 402 challenge");
        let challenge = crate::challenge_of(response.headers());
        let offer = solana_offer(&challenge);
        let client = self.client(index);
        let signed = client
            .sign(&offer, unix_now())
            .await
            .expect("our client signs the Solana offer");
        match wire {
            Wire::V2 => {
                let payment = v2::PaymentPayload {
                    x402_version: Default::default(),
                    resource: Some(challenge.resource.clone()),
                    accepted: offer,
                    payload: signed.payload,
                    extensions: None,
                };
                ("PAYMENT-SIGNATURE", x402_proto::encode_header(&payment))
            }
            Wire::V1 => {
                let body: v1::PaymentRequired = response_v1(&challenge);
                let offer = body
                    .accepts
                    .iter()
                    .find(|o| o.network.as_str() == self.state().v1_network)
                    .expect("a v1 Solana offer");
                let payment = v1::PaymentPayload {
                    x402_version: Default::default(),
                    scheme: offer.scheme.clone(),
                    network: offer.network.clone(),
                    payload: signed.payload,
                };
                ("X-PAYMENT", x402_proto::encode_header(&payment))
            }
        }
    }
}

/// The v1 challenge matching a v2 one (what the paywall puts in a 402's body).
fn response_v1(challenge: &v2::PaymentRequired) -> v1::PaymentRequired {
    v1::PaymentRequired {
        x402_version: Default::default(),
        error: challenge.error.clone(),
        accepts: challenge
            .accepts
            .iter()
            .filter_map(|offer| v1::PaymentRequirements::from_v2(offer, &challenge.resource))
            .collect(),
        payer: None,
    }
}

/// The challenge's `exact` offer on a Solana network.
pub fn solana_offer(challenge: &v2::PaymentRequired) -> v2::PaymentRequirements {
    challenge
        .accepts
        .iter()
        .find(|offer| offer.network.namespace() == Some("solana"))
        .cloned()
        .unwrap_or_else(|| panic!("no Solana offer in {challenge:?}"))
}

/// Our facilitator serving `chain` (EVM) and `solana` over HTTP, with its settlement log in a
/// new folder. [`Stack::restart`] would start it without the Solana plug-in: restart with
/// [`restart_with_solana`].
pub async fn serve_with_solana(chain: Chain, solana: &Solana) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let rpc_url = chain.devnet.rpc_url().to_string();
    let config = crate::stack::config_on(chain.devnet.chain_id(), &rpc_url, dir.path(), "", "");
    let mut stack = Stack {
        chain,
        facilitator: None,
        http: reqwest::Client::new(),
        dir,
        config,
    };
    restart_with_solana(&mut stack, solana).await;
    stack
}

/// (Re)starts `stack`'s facilitator on the same log, serving `solana` too.
pub async fn restart_with_solana(stack: &mut Stack, solana: &Solana) {
    if let Some(running) = stack.facilitator.take() {
        running.shutdown().await;
    }
    let signer = stack.chain.devnet.facilitator().signer.clone();
    let plugin: Arc<dyn Facilitator> = solana.facilitator();
    stack.facilitator = Some(
        x402_facilitator::start_with_schemes(&stack.config, signer, vec![plugin])
            .await
            .expect("the facilitator starts with the Solana plug-in"),
    );
}

/// A JSON value's string at `pointer`, for assertions.
pub fn text_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value}"))
}
