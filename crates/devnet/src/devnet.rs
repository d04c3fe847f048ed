//! The assembled devnet: chain, token, Multicall3, accounts.

use std::time::Duration;

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes, U256, address};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use alloy::transports::http::reqwest::Url;
use x402_proto::{Network, TokenAmount};

use crate::anvil::{AnvilProcess, find_anvil};
use crate::artifacts::{
    Artifact, MULTICALL3_ADDRESS, MULTICALL3_ARTIFACT, TOKEN_ARTIFACT, WALLET_FACTORY_ADDRESS,
    WALLET_FACTORY_ARTIFACT,
};

alloy::sol! {
    interface IDevToken {
        function initialize(string name_, string version_, address minter_) external;
        function mint(address to, uint256 amount) external;
        function balanceOf(address account) external view returns (uint256);
        function authorizationState(address authorizer, bytes32 nonce) external view returns (bool);
    }

    interface IDevWalletFactory {
        function createWallet(address owner, bytes32 salt) external returns (address wallet);
        function walletAddress(address owner, bytes32 salt) external view returns (address);
    }
}

/// Base mainnet USDC, where the devnet token sits by default.
pub const BASE_USDC: Address = address!("833589fCD6eDb6E08f4c7C32D4f71b54bdA02913");

/// Why the devnet could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// No anvil binary was found.
    #[error("anvil not found: {0}")]
    AnvilNotFound(String),
    /// anvil did not start.
    #[error("could not start anvil: {0}")]
    Spawn(String),
    /// A committed contract artifact is unreadable.
    #[error("contract artifact is unreadable: {0}")]
    Artifact(#[from] serde_json::Error),
    /// The chain refused or failed a call.
    #[error("devnet chain call failed: {0}")]
    Rpc(String),
    /// Permit2 could not be deployed.
    #[error("Permit2: {0}")]
    Permit2(String),
}

fn rpc_err(e: impl std::fmt::Display) -> DevnetError {
    DevnetError::Rpc(e.to_string())
}

/// How to start a devnet.
#[derive(Debug, Clone)]
pub struct DevnetConfig {
    /// The chain id (8453, Base, by default).
    pub chain_id: u64,
    /// Seconds between blocks; `None` mines a block per transaction.
    pub block_time: Option<u64>,
    /// How many dev accounts anvil creates (at least 3).
    pub accounts: u32,
    /// Where the token goes, and its EIP-712 name and version.
    pub token_address: Address,
    /// The token's EIP-712 name.
    pub token_name: String,
    /// The token's EIP-712 version.
    pub token_version: String,
    /// Token balance given to each payer account, in atomic units.
    pub payer_funds: TokenAmount,
    /// Whether to deploy Permit2 at its canonical address (needs the creation code that
    /// `scripts/install-tools.sh` installs). On by default.
    pub permit2: bool,
}

impl Default for DevnetConfig {
    fn default() -> Self {
        Self {
            chain_id: 8453,
            block_time: None,
            accounts: 10,
            token_address: BASE_USDC,
            token_name: "USD Coin".into(),
            token_version: "2".into(),
            payer_funds: TokenAmount::from_atomic(1_000 * 1_000_000),
            permit2: true,
        }
    }
}

/// A funded dev account.
#[derive(Clone, Debug)]
pub struct DevAccount {
    /// Its address.
    pub address: Address,
    /// Its key (anvil's well-known dev keys; never use them on a real chain).
    pub signer: PrivateKeySigner,
}

/// An EIP-3009 token on the devnet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevToken {
    /// Its address.
    pub address: Address,
    /// Its EIP-712 name.
    pub name: String,
    /// Its EIP-712 version.
    pub version: String,
    /// Its decimals (always 6).
    pub decimals: u8,
}

/// A running devnet. Dropping it stops anvil.
#[derive(Debug)]
pub struct Devnet {
    anvil: AnvilProcess,
    rpc_url: Url,
    chain_id: u64,
    token: DevToken,
    accounts: Vec<DevAccount>,
    provider: DynProvider,
}

impl Devnet {
    /// Starts anvil and sets the chain up: token, Multicall3, Permit2, the `batch-settlement`
    /// escrow and its deposit collectors, the smart-wallet factory (at
    /// [`WALLET_FACTORY_ADDRESS`]), payer balances.
    ///
    /// Account 0 is the facilitator (it pays gas and may mint), account 1 is the default
    /// `payTo`, the rest are funded payers.
    pub async fn start(config: DevnetConfig) -> Result<Self, DevnetError> {
        let binary = find_anvil()?;
        let accounts = config.accounts.max(3);
        let anvil = AnvilProcess::start(&binary, config.chain_id, accounts).await?;
        let rpc_url: Url = format!("http://127.0.0.1:{}", anvil.port())
            .parse()
            .map_err(rpc_err)?;
        let accounts = anvil
            .private_keys()
            .iter()
            .map(|key| {
                let signer: PrivateKeySigner = key.parse().map_err(rpc_err)?;
                Ok(DevAccount {
                    address: signer.address(),
                    signer,
                })
            })
            .collect::<Result<Vec<_>, DevnetError>>()?;
        // Nonces read from the node on each send: the facilitator under test sends from the
        // same account, and a cached nonce here would go stale.
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .with_gas_estimation()
            .with_simple_nonce_management()
            .fetch_chain_id()
            .wallet(EthereumWallet::from(accounts[0].signer.clone()))
            .connect_http(rpc_url.clone())
            .erased();
        let mut devnet = Self {
            anvil,
            rpc_url,
            chain_id: config.chain_id,
            token: DevToken {
                address: config.token_address,
                name: config.token_name.clone(),
                version: config.token_version.clone(),
                decimals: 6,
            },
            accounts,
            provider,
        };
        let multicall = Artifact::parse(MULTICALL3_ARTIFACT)?;
        devnet
            .set_code(MULTICALL3_ADDRESS, multicall.deployed_bytecode)
            .await?;
        if config.permit2 {
            devnet.deploy_permit2().await?;
        }
        devnet.place_batch_settlement().await?;
        let factory = Artifact::parse(WALLET_FACTORY_ARTIFACT)?;
        devnet
            .set_code(WALLET_FACTORY_ADDRESS, factory.deployed_bytecode)
            .await?;
        devnet.token = devnet
            .place_token(
                config.token_address,
                &config.token_name,
                &config.token_version,
            )
            .await?;
        let payers: Vec<Address> = devnet.payers().iter().map(|a| a.address).collect();
        for payer in payers {
            devnet
                .mint(devnet.token.address, payer, config.payer_funds)
                .await?;
        }
        if let Some(secs) = config.block_time {
            devnet
                .provider
                .raw_request::<_, ()>("evm_setIntervalMining".into(), (secs,))
                .await
                .map_err(rpc_err)?;
        }
        Ok(devnet)
    }

    /// The JSON-RPC URL.
    pub fn rpc_url(&self) -> &Url {
        &self.rpc_url
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The CAIP-2 network.
    pub fn network(&self) -> Network {
        Network::eip155(self.chain_id)
    }

    /// The main token (at the Base USDC address unless configured otherwise).
    pub fn token(&self) -> &DevToken {
        &self.token
    }

    /// Every dev account.
    pub fn accounts(&self) -> &[DevAccount] {
        &self.accounts
    }

    /// The facilitator's account (index 0): pays gas, may mint.
    pub fn facilitator(&self) -> &DevAccount {
        &self.accounts[0]
    }

    /// The default recipient of payments (index 1).
    pub fn pay_to(&self) -> &DevAccount {
        &self.accounts[1]
    }

    /// Funded payer accounts (index 2 on).
    pub fn payers(&self) -> &[DevAccount] {
        &self.accounts[2..]
    }

    /// The factory of our minimal ERC-1271 smart wallets (`X402WalletFactory`).
    pub fn wallet_factory(&self) -> Address {
        WALLET_FACTORY_ADDRESS
    }

    /// Where the factory deploys (or has deployed) the smart wallet of `owner` and `salt`.
    pub async fn wallet_address(&self, owner: Address, salt: B256) -> Result<Address, DevnetError> {
        self.wallet_address_from(WALLET_FACTORY_ADDRESS, owner, salt)
            .await
    }

    /// Like [`Self::wallet_address`], for a copy of the factory placed at `factory`.
    pub async fn wallet_address_from(
        &self,
        factory: Address,
        owner: Address,
        salt: B256,
    ) -> Result<Address, DevnetError> {
        self.read(
            factory,
            IDevWalletFactory::walletAddressCall { owner, salt },
        )
        .await
    }

    /// Calldata that makes the factory deploy the wallet of `owner` and `salt` (what an
    /// ERC-6492 signature carries).
    pub fn create_wallet_calldata(owner: Address, salt: B256) -> Bytes {
        IDevWalletFactory::createWalletCall { owner, salt }
            .abi_encode()
            .into()
    }

    /// Deploys the smart wallet of `owner` and `salt` (a no-op when it exists) and returns its
    /// address.
    pub async fn deploy_wallet(&self, owner: Address, salt: B256) -> Result<Address, DevnetError> {
        self.send(
            WALLET_FACTORY_ADDRESS,
            Self::create_wallet_calldata(owner, salt).to_vec(),
        )
        .await?;
        self.wallet_address(owner, salt).await
    }

    /// Whether `address` holds code.
    pub async fn has_code(&self, address: Address) -> Result<bool, DevnetError> {
        let code = self.provider.get_code_at(address).await.map_err(rpc_err)?;
        Ok(!code.is_empty())
    }

    /// anvil's process id.
    pub fn anvil_pid(&self) -> Option<u32> {
        self.anvil.pid()
    }

    /// A provider that sends from the facilitator account.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// Replaces the code at `address`.
    pub async fn set_code(&self, address: Address, code: Bytes) -> Result<(), DevnetError> {
        self.provider
            .raw_request::<_, ()>("anvil_setCode".into(), (address, code))
            .await
            .map_err(rpc_err)
    }

    /// Puts a fresh copy of our token at `address` with the given EIP-712 name and version,
    /// minted by the facilitator account.
    pub async fn place_token(
        &self,
        address: Address,
        name: &str,
        version: &str,
    ) -> Result<DevToken, DevnetError> {
        let token = Artifact::parse(TOKEN_ARTIFACT)?;
        self.set_code(address, token.deployed_bytecode).await?;
        let init = IDevToken::initializeCall {
            name_: name.to_owned(),
            version_: version.to_owned(),
            minter_: self.facilitator().address,
        };
        self.send(address, init.abi_encode()).await?;
        Ok(DevToken {
            address,
            name: name.to_owned(),
            version: version.to_owned(),
            decimals: 6,
        })
    }

    /// Mints `amount` of the token at `token` to `to`.
    pub async fn mint(
        &self,
        token: Address,
        to: Address,
        amount: TokenAmount,
    ) -> Result<(), DevnetError> {
        let call = IDevToken::mintCall {
            to,
            amount: amount.0,
        };
        self.send(token, call.abi_encode()).await
    }

    /// Mints `atomic` units of the dev token to `to`.
    pub async fn fund(&self, to: Address, atomic: u128) -> Result<(), DevnetError> {
        self.mint(self.token().address, to, TokenAmount::from_atomic(atomic))
            .await
    }

    /// Mines one block now (whatever the block time).
    pub async fn mine(&self) -> Result<(), DevnetError> {
        self.provider()
            .raw_request::<_, String>("evm_mine".into(), ())
            .await
            .map(|_| ())
            .map_err(|e| DevnetError::Rpc(e.to_string()))
    }

    /// The token balance of `owner`.
    pub async fn balance_of(&self, token: Address, owner: Address) -> Result<U256, DevnetError> {
        self.read(token, IDevToken::balanceOfCall { account: owner })
            .await
    }

    /// Whether `(authorizer, nonce)` was used on `token`.
    pub async fn authorization_used(
        &self,
        token: Address,
        authorizer: Address,
        nonce: B256,
    ) -> Result<bool, DevnetError> {
        self.read(
            token,
            IDevToken::authorizationStateCall { authorizer, nonce },
        )
        .await
    }

    /// What the view function `call` of the contract at `to` returns.
    async fn read<C: SolCall>(&self, to: Address, call: C) -> Result<C::Return, DevnetError> {
        let tx = TransactionRequest::default()
            .with_to(to)
            .with_input(call.abi_encode());
        let out = self.provider.call(tx).await.map_err(rpc_err)?;
        C::abi_decode_returns(&out).map_err(rpc_err)
    }

    /// How many transactions `address` has sent.
    pub async fn transaction_count(&self, address: Address) -> Result<u64, DevnetError> {
        self.provider
            .get_transaction_count(address)
            .await
            .map_err(rpc_err)
    }

    /// Deploys Permit2 at [`PERMIT2_ADDRESS`](crate::PERMIT2_ADDRESS) through the CREATE2
    /// deployer, and checks that its code is there; then places our x402 Permit2 proxies
    /// (`exact` and `upto`) at their canonical addresses.
    pub async fn deploy_permit2(&self) -> Result<(), DevnetError> {
        self.place_artifacts(&[
            (
                crate::EXACT_PERMIT2_PROXY_ADDRESS,
                crate::EXACT_PERMIT2_PROXY_ARTIFACT,
            ),
            (
                crate::UPTO_PERMIT2_PROXY_ADDRESS,
                crate::UPTO_PERMIT2_PROXY_ARTIFACT,
            ),
        ])
        .await?;
        let initcode = crate::permit2_initcode()?;
        let at = crate::create2_address(crate::PERMIT2_SALT, &initcode);
        if self.has_code(at).await? {
            return Ok(());
        }
        self.send(
            crate::CREATE2_DEPLOYER,
            crate::create2_calldata(crate::PERMIT2_SALT, &initcode),
        )
        .await?;
        if !self.has_code(at).await? {
            return Err(DevnetError::Permit2(format!(
                "the CREATE2 deployer left no code at {at}"
            )));
        }
        Ok(())
    }

    /// Places our `batch-settlement` escrow and its EIP-3009 and Permit2 deposit collectors at
    /// their canonical addresses. They need no set-up: the escrow builds its EIP-712 domain from
    /// its own address, and the collectors name the escrow and Permit2 at their canonical
    /// addresses (the Permit2 collector works once Permit2 is there).
    pub async fn place_batch_settlement(&self) -> Result<(), DevnetError> {
        self.place_artifacts(&[
            (
                crate::BATCH_SETTLEMENT_ADDRESS,
                crate::BATCH_SETTLEMENT_ARTIFACT,
            ),
            (
                crate::ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
                crate::ERC3009_DEPOSIT_COLLECTOR_ARTIFACT,
            ),
            (
                crate::PERMIT2_DEPOSIT_COLLECTOR_ADDRESS,
                crate::PERMIT2_DEPOSIT_COLLECTOR_ARTIFACT,
            ),
        ])
        .await
    }

    /// Puts the runtime code of each committed artifact (its JSON) at its address.
    async fn place_artifacts(&self, placements: &[(Address, &str)]) -> Result<(), DevnetError> {
        for (address, artifact) in placements {
            self.set_code(*address, Artifact::parse(artifact)?.deployed_bytecode)
                .await?;
        }
        Ok(())
    }

    /// Approves Permit2 to move any amount of the devnet token for `owner` (a transaction
    /// `owner` signs and pays gas for): what a payer does once before paying with Permit2.
    pub async fn approve_permit2(&self, owner: &PrivateKeySigner) -> Result<(), DevnetError> {
        self.approve_permit2_for(self.token.address, owner).await
    }

    /// [`Devnet::approve_permit2`] for another `token`.
    pub async fn approve_permit2_for(
        &self,
        token: Address,
        owner: &PrivateKeySigner,
    ) -> Result<(), DevnetError> {
        alloy::sol! {
            function approve(address spender, uint256 value) external returns (bool);
        }
        let input = approveCall {
            spender: crate::PERMIT2_ADDRESS,
            value: U256::MAX,
        }
        .abi_encode();
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(owner.clone()))
            .connect_http(self.rpc_url.clone())
            .erased();
        Self::send_with(&provider, token, input).await
    }

    /// Sends a transaction from the facilitator account and waits until it is mined.
    async fn send(&self, to: Address, input: Vec<u8>) -> Result<(), DevnetError> {
        Self::send_with(&self.provider, to, input).await
    }

    /// Sends a transaction through `provider` (whose wallet signs it) and waits until it is
    /// mined.
    async fn send_with(
        provider: &DynProvider,
        to: Address,
        input: Vec<u8>,
    ) -> Result<(), DevnetError> {
        let tx = TransactionRequest::default().with_to(to).with_input(input);
        let receipt = provider
            .send_transaction(tx)
            .await
            .map_err(rpc_err)?
            .with_timeout(Some(Duration::from_secs(30)))
            .get_receipt()
            .await
            .map_err(rpc_err)?;
        if receipt.status() {
            Ok(())
        } else {
            Err(DevnetError::Rpc(format!(
                "setup transaction {} to {to} reverted",
                receipt.transaction_hash
            )))
        }
    }

    /// Stops anvil.
    pub async fn stop(self) {
        self.anvil.stop().await;
    }
}
