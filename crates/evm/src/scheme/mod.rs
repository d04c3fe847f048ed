//! Verification and settlement of `exact` EVM payments on one chain: the scheme, its
//! accessors and health here; [`verify`] holds the checks, [`calls`] the settlement calldata.

mod calls;
mod verify;

pub(crate) use calls::{settlement_call, transfer_calldata};

use std::sync::Arc;
use std::time::Duration;

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes, Signature, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::json_rpc::RpcError;
use alloy::rpc::types::{BlockNumberOrTag, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use alloy::transports::{TransportError, TransportResult};
use serde_json::Value;
use x402_proto::{Network, PaymentRequest, Scheme};

use crate::abi::IEip3009;
use crate::chain::{ChainConfig, FeeBumpPolicy, poll_interval_for};
use crate::error::VerifyError;
use crate::node_error::NodeRefusal;
use crate::payload::{Authorization, ExactEvmPayload, authorization_digest, eip712_domain};
use crate::sender::{NonceLeases, SendQueue};
use crate::smart_wallet::{
    Erc6492Deployment, IErc1271, IMulticall3, MULTICALL3_ADDRESS, PayerSignature, is_erc1271_magic,
};
use crate::{VALID_BEFORE_BUFFER_SECS, unix_now};

/// The EIP-712 domain values carried in `extra`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DomainExtra {
    pub(crate) name: String,
    pub(crate) version: String,
}

impl DomainExtra {
    /// Reads non-empty `name` and `version` strings from `extra`.
    pub(crate) fn from_extra(extra: Option<&Value>) -> Option<Self> {
        let field = |key: &str| {
            extra?
                .get(key)?
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        Some(Self {
            name: field("name")?,
            version: field("version")?,
        })
    }
}

/// A payment that passed every check. Only [`ExactEvmScheme::verify`] makes one, and
/// [`ExactEvmScheme::settle`] consumes it.
#[derive(Debug, PartialEq, Eq)]
pub struct VerifiedPayment {
    network: Network,
    asset: Address,
    payload: ExactEvmPayload,
    /// The signature the token is given: the payload's, without any ERC-6492 wrapper.
    settle_signature: Bytes,
    /// Set when the payer was an undeployed wallet: settlement deploys it first.
    deployment: Option<Erc6492Deployment>,
    /// Whether the payer is a contract (or will be, once deployed): ERC-1271 costs gas.
    contract_payer: bool,
}

impl VerifiedPayment {
    /// Who pays.
    pub fn payer(&self) -> Address {
        self.payload.authorization.from
    }

    /// Who is paid.
    pub fn pay_to(&self) -> Address {
        self.payload.authorization.to
    }

    /// The amount, in atomic units.
    pub fn amount(&self) -> U256 {
        self.payload.authorization.value
    }

    /// The token.
    pub fn asset(&self) -> Address {
        self.asset
    }

    /// The authorization nonce; (asset, payer, nonce) identifies the payment on chain.
    pub fn nonce(&self) -> B256 {
        self.payload.authorization.nonce
    }

    /// The network as the request named it.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The signed authorization.
    pub fn payload(&self) -> &ExactEvmPayload {
        &self.payload
    }

    /// The signature settlement hands the token: the payload's, unwrapped from ERC-6492.
    pub fn settle_signature(&self) -> &Bytes {
        &self.settle_signature
    }

    /// How to deploy the payer's wallet, when it was a counterfactual (ERC-6492) wallet not
    /// deployed at verification: settlement deploys it and pays in one transaction.
    pub fn wallet_deployment(&self) -> Option<&Erc6492Deployment> {
        self.deployment.as_ref()
    }

    /// Whether the payer is a smart-contract wallet (deployed, or deployed by settlement).
    pub fn is_contract_payer(&self) -> bool {
        self.contract_payer
    }
}

/// A payment that moved on chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// The transaction.
    pub tx_hash: B256,
    /// The block it was mined in.
    pub block_number: Option<u64>,
    /// Who paid.
    pub payer: Address,
}

/// What [`ExactEvmScheme::health`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHealth {
    /// The latest block.
    pub block_number: u64,
    /// The signer's native balance (what pays for settlement gas), in wei.
    pub signer_balance: U256,
}

/// Everything decided from the request alone, before asking the chain.
struct OfflineChecks {
    asset: Address,
    payload: ExactEvmPayload,
    domain: DomainExtra,
    /// The EIP-712 digest the payer signed.
    digest: B256,
    /// The signature, unwrapped from ERC-6492.
    signature: PayerSignature,
    /// Whether the ERC-6492 factory (if any) is in the allow-list.
    factory_allowed: bool,
    /// Whether the inner signature is a 65-byte ECDSA signature by the payer's key. Only
    /// decides for a payer without code; a contract payer is asked through ERC-1271.
    ecdsa_ok: bool,
    /// The first failure among the checks that follow the signature in the reference order.
    later_failure: Option<VerifyError>,
}

/// What one batched round trip to the chain told us.
struct ChainReads {
    payer_code: Bytes,
    asset_code: Bytes,
    /// The transfer simulated against the payer as it is now.
    simulation: Result<(), String>,
    authorization_used: Result<bool, ()>,
    balance: Option<U256>,
    name: Option<String>,
    version: Option<String>,
    /// The payer's ERC-1271 verdict on the inner signature, as it is now.
    erc1271_ok: bool,
    /// For an ERC-6492 signature with an allowed factory: deploy, then ask and pay, in one
    /// simulated Multicall3 call. `Err` when that call itself could not run.
    counterfactual: Option<Result<CounterfactualReads, String>>,
}

/// What simulating a counterfactual wallet's deployment and payment told us.
struct CounterfactualReads {
    /// The factory call's revert reason, when it failed.
    deploy_failure: Option<String>,
    /// The deployed wallet's ERC-1271 verdict on the inner signature.
    erc1271_ok: bool,
    /// The transfer after deployment.
    simulation: Result<(), String>,
}

/// The `exact` scheme on one EVM chain: verifies with one batched RPC round trip, settles
/// through `transferWithAuthorization` from the facilitator's key.
#[derive(Debug, Clone)]
pub struct ExactEvmScheme {
    network: Network,
    chain_id: u64,
    provider: DynProvider,
    signer_address: Address,
    wallet: EthereumWallet,
    poll_interval: Duration,
    receipt_timeout: Duration,
    eip6492_allowed_factories: Vec<Address>,
    fee_bump: FeeBumpPolicy,
    stuck_after: Duration,
    sender: Arc<SendQueue>,
    /// Where the signer's nonces are leased when other instances share it.
    nonce_leases: Option<Arc<dyn NonceLeases>>,
}

/// The longest any single RPC call may take.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);

impl ExactEvmScheme {
    /// Connects to a chain. When the config gives no block time, it is measured from recent
    /// blocks (one RPC round trip), which sets the receipt poll interval.
    pub async fn connect(
        config: ChainConfig,
        signer: PrivateKeySigner,
    ) -> Result<Self, VerifyError> {
        let signer_address = signer.address();
        // Every RPC call is bounded: a hung node must not hang a paid request.
        let http = alloy::transports::http::reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(RPC_TIMEOUT)
            .build()
            .map_err(|e| VerifyError::ChainUnavailable {
                detail: format!("building the HTTP client: {e}"),
            })?;
        // Transactions are signed here (see `sender`), so the provider only carries JSON-RPC.
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .connect_reqwest(http, config.rpc_url.clone())
            .erased();
        let block_time = match config.block_time {
            Some(block_time) => block_time,
            None => measure_block_time(&provider).await?,
        };
        tracing::debug!(network = %config.network, ?block_time, "connected to chain");
        Ok(Self {
            network: config.network,
            chain_id: config.chain_id,
            provider,
            signer_address,
            wallet: EthereumWallet::from(signer),
            poll_interval: poll_interval_for(block_time),
            receipt_timeout: config.receipt_timeout,
            eip6492_allowed_factories: config.eip6492_allowed_factories,
            fee_bump: config.fee_bump,
            stuck_after: config.fee_bump.stuck_after_for(block_time),
            sender: Arc::default(),
            nonce_leases: None,
        })
    }

    /// The scheme with its signer shared by other instances: every send also holds a lease
    /// on the signer's next nonce in `leases` (see [`NonceLeases`]), so no two instances sign
    /// two transactions with one nonce. Set it before cloning the scheme into plug-ins.
    pub fn with_nonce_leases(mut self, leases: Arc<dyn NonceLeases>) -> Self {
        self.nonce_leases = Some(leases);
        self
    }

    pub(crate) fn nonce_leases(&self) -> Option<&dyn NonceLeases> {
        self.nonce_leases.as_deref()
    }

    /// The CAIP-2 network served.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The address that sends settlement transactions (and pays their gas).
    pub fn signer_address(&self) -> Address {
        self.signer_address
    }

    /// How often settle polls for a receipt.
    pub fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    /// The chain connection.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// The chain id served.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// How long [`Self::settle`] waits for a receipt.
    pub fn receipt_timeout(&self) -> Duration {
        self.receipt_timeout
    }

    /// The factories undeployed (ERC-6492) payers' wallets may come from.
    pub fn eip6492_allowed_factories(&self) -> &[Address] {
        &self.eip6492_allowed_factories
    }

    /// How settlement transactions left unmined are re-priced.
    pub fn fee_bump(&self) -> &FeeBumpPolicy {
        &self.fee_bump
    }

    /// How long a settlement transaction may sit unmined before it is replaced with higher
    /// fees (the policy's `stuck_after`, or three block times).
    pub fn stuck_after(&self) -> Duration {
        self.stuck_after
    }

    pub(crate) fn wallet(&self) -> &EthereumWallet {
        &self.wallet
    }

    pub(crate) fn send_queue(&self) -> &SendQueue {
        &self.sender
    }

    /// The latest block number and the signer's gas balance, in one round trip.
    pub async fn health(&self) -> Result<ChainHealth, VerifyError> {
        let unavailable = |e: TransportError| VerifyError::ChainUnavailable {
            detail: e.to_string(),
        };
        let mut batch = alloy::rpc::client::BatchRequest::new(self.provider.client());
        let block = batch
            .add_call::<_, U256>("eth_blockNumber", &())
            .map_err(unavailable)?;
        let balance = batch
            .add_call::<_, U256>(
                "eth_getBalance",
                &(self.signer_address, BlockNumberOrTag::Latest),
            )
            .map_err(unavailable)?;
        batch.send().await.map_err(unavailable)?;
        Ok(ChainHealth {
            block_number: block.await.map_err(unavailable)?.saturating_to(),
            signer_balance: balance.await.map_err(unavailable)?,
        })
    }

    /// Verifies a payment now. See [`Self::verify_at`].
    pub async fn verify(&self, request: &PaymentRequest) -> Result<VerifiedPayment, VerifyError> {
        self.verify_at(request, unix_now()).await
    }
}

/// The average block interval over the last ten blocks; one second on a chain too young to say.
async fn measure_block_time(provider: &DynProvider) -> Result<Duration, VerifyError> {
    let unavailable = |e: TransportError| VerifyError::ChainUnavailable {
        detail: e.to_string(),
    };
    let latest = provider.get_block_number().await.map_err(unavailable)?;
    let span = latest.min(10);
    if span < 2 {
        return Ok(Duration::from_secs(1));
    }
    let timestamp = |n: u64| async move {
        let block: TransportResult<_> = provider
            .get_block_by_number(BlockNumberOrTag::Number(n))
            .await;
        block.map(|b| b.map(|b| b.header.timestamp))
    };
    let (newest, oldest) =
        tokio::try_join!(timestamp(latest), timestamp(latest - span)).map_err(unavailable)?;
    Ok(match (newest, oldest) {
        (Some(newest), Some(oldest)) => {
            Duration::from_millis(newest.saturating_sub(oldest) * 1000 / span)
        }
        _ => Duration::from_secs(1),
    })
}
