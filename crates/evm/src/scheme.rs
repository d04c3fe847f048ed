//! Verification and settlement of `exact` EVM payments on one chain.

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
use crate::sender::SenderState;
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
    sender: Arc<tokio::sync::Mutex<SenderState>>,
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
        })
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

    pub(crate) fn sender_state(&self) -> &tokio::sync::Mutex<SenderState> {
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

    /// Verifies a payment as of `now` (Unix seconds), with the checks of the reference
    /// facilitator in its order: scheme, EIP-712 domain, network, signature, recipient,
    /// `validBefore` (with a 6 s buffer), `validAfter`, amount, asset is a contract, then a
    /// simulated transfer whose failure is diagnosed. The chain is asked once, in one batch.
    ///
    /// The signature is judged by the payer's code: without code, by ECDSA recovery; with
    /// code, by the wallet's ERC-1271 `isValidSignature`. An ERC-6492 signature of a wallet
    /// not deployed yet is accepted only from an allowed factory, and judged by simulating
    /// the deployment followed by `isValidSignature` and the transfer.
    pub async fn verify_at(
        &self,
        request: &PaymentRequest,
        now: u64,
    ) -> Result<VerifiedPayment, VerifyError> {
        let offline = self.check_offline(request, now)?;
        if offline.ecdsa_ok
            && let Some(failure) = offline.later_failure
        {
            return Err(failure);
        }
        let reads = self.read_chain(&offline).await?;
        let payer = offline.payload.authorization.from;
        let deployed = !reads.payer_code.is_empty();
        let mut deployment = None;
        let simulation = if deployed {
            if !reads.erc1271_ok {
                return Err(VerifyError::WalletRefusedSignature { payer });
            }
            reads.simulation
        } else if let Some(wanted) = &offline.signature.deployment {
            if !offline.factory_allowed {
                return Err(VerifyError::Eip6492FactoryNotAllowed {
                    factory: wanted.factory,
                });
            }
            let counterfactual = match reads.counterfactual {
                Some(Ok(counterfactual)) => counterfactual,
                Some(Err(reason)) => return Err(VerifyError::SimulationFailed { reason }),
                None => {
                    return Err(VerifyError::SimulationFailed {
                        reason: "counterfactual wallet was not simulated".into(),
                    });
                }
            };
            deployment = Some(wanted.clone());
            match counterfactual.deploy_failure {
                Some(reason) => Err(format!("the ERC-6492 factory call reverted: {reason}")),
                None if !counterfactual.erc1271_ok => {
                    return Err(VerifyError::WalletRefusedSignature { payer });
                }
                None => counterfactual.simulation,
            }
        } else if offline.ecdsa_ok {
            reads.simulation
        } else if offline.signature.inner.len() > 65 {
            // Longer than ECDSA: a smart-wallet signature for an address without a wallet.
            return Err(VerifyError::UndeployedSmartWallet { payer });
        } else {
            return Err(VerifyError::InvalidSignature { payer });
        };
        if let Some(failure) = offline.later_failure {
            return Err(failure);
        }
        if reads.asset_code.is_empty() {
            return Err(VerifyError::AssetNotContract {
                asset: offline.asset,
            });
        }
        if let Err(revert) = simulation {
            return Err(diagnose(
                &offline,
                reads.authorization_used,
                reads.balance,
                reads.name,
                reads.version,
                revert,
            ));
        }
        Ok(VerifiedPayment {
            network: request.wire_network().clone(),
            asset: offline.asset,
            settle_signature: offline.signature.inner,
            payload: offline.payload,
            contract_payer: deployed || deployment.is_some(),
            deployment,
        })
    }

    fn check_offline(
        &self,
        request: &PaymentRequest,
        now: u64,
    ) -> Result<OfflineChecks, VerifyError> {
        let requirements = request.requirements();
        let (paid_scheme, paid_network) = request.accepted();
        if *paid_scheme != Scheme::EXACT {
            return Err(VerifyError::UnsupportedScheme {
                scheme: paid_scheme.clone(),
            });
        }
        if requirements.scheme != Scheme::EXACT {
            return Err(VerifyError::UnsupportedScheme {
                scheme: requirements.scheme.clone(),
            });
        }
        let domain = DomainExtra::from_extra(requirements.extra.as_ref())
            .ok_or(VerifyError::MissingEip712Domain)?;
        if !paid_network.same_as(&requirements.network) || paid_network.to_caip2().is_none() {
            return Err(VerifyError::NetworkMismatch {
                paid: paid_network.clone(),
                required: request.wire_network().clone(),
            });
        }
        if requirements.network.evm_chain_id() != Some(self.chain_id) {
            return Err(VerifyError::UnsupportedNetwork {
                network: request.wire_network().clone(),
            });
        }
        let asset = parse_address("asset", &requirements.asset)?;
        let pay_to = parse_address("payTo", &requirements.pay_to)?;
        let payload: ExactEvmPayload =
            serde_json::from_value(request.payload().clone()).map_err(|e| {
                VerifyError::InvalidPayload {
                    detail: e.to_string(),
                }
            })?;
        let authorization = &payload.authorization;

        let digest = authorization_digest(
            authorization,
            &eip712_domain(&domain.name, &domain.version, self.chain_id, asset),
        );
        let signature =
            PayerSignature::parse(&payload.signature).map_err(|e| VerifyError::InvalidPayload {
                detail: e.to_string(),
            })?;
        let ecdsa_ok = recover_low_s(&signature.inner, &digest) == Some(authorization.from);
        let factory_allowed = signature
            .deployment
            .as_ref()
            .is_some_and(|d| self.eip6492_allowed_factories.contains(&d.factory));

        let later_failure = if authorization.to != pay_to {
            Some(VerifyError::RecipientMismatch {
                to: authorization.to,
                pay_to,
            })
        } else if authorization.valid_before
            < U256::from(now.saturating_add(VALID_BEFORE_BUFFER_SECS))
        {
            Some(VerifyError::Expired {
                valid_before: authorization.valid_before,
                now,
            })
        } else if authorization.valid_after > U256::from(now) {
            Some(VerifyError::NotYetValid {
                valid_after: authorization.valid_after,
                now,
            })
        } else if authorization.value != requirements.amount.0 {
            Some(VerifyError::AmountMismatch {
                value: authorization.value,
                required: requirements.amount.0,
                x402_version: request.version(),
            })
        } else {
            None
        };
        Ok(OfflineChecks {
            asset,
            payload,
            domain,
            digest,
            signature,
            factory_allowed,
            ecdsa_ok,
            later_failure,
        })
    }

    /// Asks the chain everything verify may need in one JSON-RPC batch: both accounts' code,
    /// the simulated transfer, the diagnosis reads, the payer's ERC-1271 verdict and, for an
    /// allowed ERC-6492 wallet, a simulated deployment followed by that verdict and the
    /// transfer. Which of these decide depends on the payer's code, known only afterwards.
    async fn read_chain(&self, offline: &OfflineChecks) -> Result<ChainReads, VerifyError> {
        let auth = &offline.payload.authorization;
        let asset = offline.asset;
        let latest = BlockNumberOrTag::Latest;
        let call_to = |to: Address, data: Vec<u8>| {
            let tx = TransactionRequest::default()
                .with_from(self.signer_address)
                .with_to(to)
                .with_input(data);
            (tx, latest)
        };
        let call = |data: Vec<u8>| call_to(asset, data);
        let mut batch = alloy::rpc::client::BatchRequest::new(self.provider.client());
        let unavailable = |e: TransportError| VerifyError::ChainUnavailable {
            detail: e.to_string(),
        };
        let payer_code = batch
            .add_call::<_, Bytes>("eth_getCode", &(auth.from, latest))
            .map_err(unavailable)?;
        let asset_code = batch
            .add_call::<_, Bytes>("eth_getCode", &(asset, latest))
            .map_err(unavailable)?;
        let transfer = transfer_calldata(auth, &offline.signature.inner);
        let simulation = batch
            .add_call::<_, Bytes>("eth_call", &call(transfer.clone()))
            .map_err(unavailable)?;
        let state_call = IEip3009::authorizationStateCall {
            authorizer: auth.from,
            nonce: auth.nonce,
        };
        let used = batch
            .add_call::<_, Bytes>("eth_call", &call(state_call.abi_encode()))
            .map_err(unavailable)?;
        let balance_call = IEip3009::balanceOfCall { account: auth.from };
        let balance = batch
            .add_call::<_, Bytes>("eth_call", &call(balance_call.abi_encode()))
            .map_err(unavailable)?;
        let name = batch
            .add_call::<_, Bytes>("eth_call", &call(IEip3009::nameCall {}.abi_encode()))
            .map_err(unavailable)?;
        let version = batch
            .add_call::<_, Bytes>("eth_call", &call(IEip3009::versionCall {}.abi_encode()))
            .map_err(unavailable)?;
        let check = IErc1271::isValidSignatureCall {
            hash: offline.digest,
            signature: offline.signature.inner.clone(),
        }
        .abi_encode();
        let erc1271 = batch
            .add_call::<_, Bytes>("eth_call", &call_to(auth.from, check.clone()))
            .map_err(unavailable)?;
        let counterfactual = match &offline.signature.deployment {
            Some(deployment) if offline.factory_allowed => {
                let step = |target: Address, data: Vec<u8>| IMulticall3::Call3 {
                    target,
                    allowFailure: true,
                    callData: data.into(),
                };
                let steps = IMulticall3::aggregate3Call {
                    calls: vec![
                        step(deployment.factory, deployment.factory_calldata.to_vec()),
                        step(auth.from, check),
                        step(asset, transfer),
                    ],
                };
                Some(
                    batch
                        .add_call::<_, Bytes>(
                            "eth_call",
                            &call_to(MULTICALL3_ADDRESS, steps.abi_encode()),
                        )
                        .map_err(unavailable)?,
                )
            }
            _ => None,
        };
        batch.send().await.map_err(unavailable)?;

        let payer_code = payer_code.await.map_err(unavailable)?;
        let asset_code = asset_code.await.map_err(unavailable)?;
        let simulation = match simulation.await {
            Ok(_) => Ok(()),
            Err(error) => Err(revert_reason(error).map_err(unavailable)?),
        };
        let used = match used.await {
            Ok(out) => IEip3009::authorizationStateCall::abi_decode_returns(&out).map_err(|_| ()),
            // A revert means the token has no EIP-3009; anything else says nothing about it.
            Err(error) => {
                revert_reason(error).map_err(unavailable)?;
                Err(())
            }
        };
        let balance = balance
            .await
            .ok()
            .and_then(|out: Bytes| IEip3009::balanceOfCall::abi_decode_returns(&out).ok());
        let name = name
            .await
            .ok()
            .and_then(|out: Bytes| IEip3009::nameCall::abi_decode_returns(&out).ok());
        let version = version
            .await
            .ok()
            .and_then(|out: Bytes| IEip3009::versionCall::abi_decode_returns(&out).ok());
        // A wallet that reverts, answers garbage or has no code refuses.
        let erc1271_ok = erc1271.await.is_ok_and(|out| is_erc1271_magic(&out));
        let counterfactual = match counterfactual {
            Some(waiter) => Some(match waiter.await {
                Ok(out) => counterfactual_reads(&out),
                Err(error) => Err(revert_reason(error).map_err(unavailable)?),
            }),
            None => None,
        };
        Ok(ChainReads {
            payer_code,
            asset_code,
            simulation,
            authorization_used: used,
            balance,
            name,
            version,
            erc1271_ok,
            counterfactual,
        })
    }
}

/// Reads the three results of the simulated deploy, `isValidSignature` and transfer.
fn counterfactual_reads(out: &[u8]) -> Result<CounterfactualReads, String> {
    let results = IMulticall3::aggregate3Call::abi_decode_returns(out)
        .map_err(|e| format!("Multicall3 at {MULTICALL3_ADDRESS} answered badly: {e}"))?;
    let [deploy, check, transfer] = results.as_slice() else {
        return Err(format!(
            "Multicall3 returned {} results for 3 calls",
            results.len()
        ));
    };
    let failure = |result: &IMulticall3::Result| {
        alloy::sol_types::decode_revert_reason(&result.returnData)
            .unwrap_or_else(|| format!("reverted with {}", result.returnData))
    };
    Ok(CounterfactualReads {
        deploy_failure: (!deploy.success).then(|| failure(deploy)),
        erc1271_ok: check.success && is_erc1271_magic(&check.returnData),
        simulation: if transfer.success {
            Ok(())
        } else {
            Err(failure(transfer))
        },
    })
}

fn parse_address(field: &'static str, value: &str) -> Result<Address, VerifyError> {
    value.parse().map_err(|_| VerifyError::InvalidRequirements {
        field,
        detail: format!("{value:?} is not an EVM address"),
    })
}

/// Recovers the signer of a 65-byte signature, refusing malleable (high-s) ones as tokens do.
fn recover_low_s(signature: &[u8], digest: &B256) -> Option<Address> {
    let signature = Signature::from_raw(signature).ok()?;
    if signature.normalize_s().is_some() {
        return None;
    }
    signature.recover_address_from_prehash(digest).ok()
}

/// Calldata for `transferWithAuthorization`: the (v, r, s) overload for a 65-byte signature
/// (which tokens such as USDC v2.2 still route to ERC-1271 when `from` is a contract), the
/// `bytes` overload otherwise.
pub(crate) fn transfer_calldata(auth: &Authorization, signature: &Bytes) -> Vec<u8> {
    match Signature::from_raw(signature) {
        Ok(parsed) if signature.len() == 65 => IEip3009::transferWithAuthorization_0Call {
            from: auth.from,
            to: auth.to,
            value: auth.value,
            validAfter: auth.valid_after,
            validBefore: auth.valid_before,
            nonce: auth.nonce,
            v: 27 + u8::from(parsed.v()),
            r: parsed.r().into(),
            s: parsed.s().into(),
        }
        .abi_encode(),
        _ => IEip3009::transferWithAuthorization_1Call {
            from: auth.from,
            to: auth.to,
            value: auth.value,
            validAfter: auth.valid_after,
            validBefore: auth.valid_before,
            nonce: auth.nonce,
            signature: signature.clone(),
        }
        .abi_encode(),
    }
}

/// The transaction that settles `payment`: the token's `transferWithAuthorization`, or, for a
/// wallet still to be deployed, Multicall3's `aggregate3` running the factory call (allowed to
/// fail, as when someone deployed the wallet meanwhile) and then the transfer (not allowed
/// to), so the deployment and the payment land together or not at all.
pub(crate) fn settlement_call(payment: &VerifiedPayment) -> (Address, Vec<u8>) {
    let transfer = transfer_calldata(&payment.payload.authorization, &payment.settle_signature);
    match &payment.deployment {
        None => (payment.asset, transfer),
        Some(deployment) => {
            let calls = vec![
                IMulticall3::Call3 {
                    target: deployment.factory,
                    allowFailure: true,
                    callData: deployment.factory_calldata.clone(),
                },
                IMulticall3::Call3 {
                    target: payment.asset,
                    allowFailure: false,
                    callData: transfer.into(),
                },
            ];
            (
                MULTICALL3_ADDRESS,
                IMulticall3::aggregate3Call { calls }.abi_encode(),
            )
        }
    }
}

/// The revert reason of a failed `eth_call`, or the transport error if it did not revert.
///
/// Only an error that says the EVM reverted counts: rate limits, unknown blocks, "nonce too
/// low" or a facilitator out of gas money are faults of the chain or of us, not of the payment.
fn revert_reason(error: TransportError) -> Result<String, TransportError> {
    match &error {
        RpcError::ErrorResp(payload)
            if NodeRefusal::classify(
                payload.code,
                &payload.message,
                payload.as_revert_data().is_some(),
            ) == NodeRefusal::Reverted =>
        {
            Ok(payload
                .as_revert_data()
                .and_then(|data: Bytes| alloy::sol_types::decode_revert_reason(&data))
                .unwrap_or_else(|| payload.message.to_string()))
        }
        _ => Err(error),
    }
}

/// Chooses the most specific reason for a failed simulation, in the reference order.
fn diagnose(
    offline: &OfflineChecks,
    used: Result<bool, ()>,
    balance: Option<U256>,
    name: Option<String>,
    version: Option<String>,
    revert: String,
) -> VerifyError {
    let auth = &offline.payload.authorization;
    match used {
        Err(()) => {
            return VerifyError::Eip3009NotSupported {
                asset: offline.asset,
            };
        }
        Ok(true) => {
            return VerifyError::NonceAlreadyUsed {
                payer: auth.from,
                nonce: auth.nonce,
            };
        }
        Ok(false) => {}
    }
    if let Some(actual) = name.filter(|n| *n != offline.domain.name) {
        return VerifyError::TokenNameMismatch {
            actual,
            expected: offline.domain.name.clone(),
        };
    }
    if let Some(actual) = version.filter(|v| *v != offline.domain.version) {
        return VerifyError::TokenVersionMismatch {
            actual,
            expected: offline.domain.version.clone(),
        };
    }
    if let Some(balance) = balance.filter(|b| *b < auth.value) {
        return VerifyError::InsufficientBalance {
            payer: auth.from,
            balance,
            required: auth.value,
        };
    }
    VerifyError::SimulationFailed { reason: revert }
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
