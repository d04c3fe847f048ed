//! An x402 facilitator: `POST /verify`, `POST /settle`, `GET /supported`, `GET /health`,
//! `GET /metrics`, settling `exact` payments on EVM chains.
//!
//! Every settlement goes through a durable log ([`SettlementStore`]: [`SqliteStore`] by
//! default, for one process; [`PostgresStore`] when `database` is a `postgres://` URL, shared
//! by several instances): it is recorded before its transaction is broadcast, settles at most once per (asset, payer,
//! nonce) — per (owner, Permit2 nonce) for Permit2 payments, `upto` and `exact` with
//! Permit2 — and is reconciled against the chain at start.

mod batch;
mod config;
mod dashboard;
mod events;
mod http;
mod metrics;
mod permit2;
mod postgres;
mod service;
mod sqlite;
mod store;
mod svm;

use std::net::SocketAddr;
use std::sync::Arc;

use alloy::signers::local::PrivateKeySigner;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use x402_evm::{ChainConfig, ExactEvmScheme};
use x402_proto::{Facilitator, FacilitatorError};

pub use config::{
    AssetConfig, AuthConfig, ConfigError, DEFAULT_KEY_ENV, Database, ENV_PREFIX, FacilitatorConfig,
    FeeBumpConfig, Limits, NetworkConfig, PostgresConfig, PostgresUrl, SignerConfig,
    SolanaNetworkConfig,
};
pub use events::LogEvent;
pub use http::{HttpOptions, router};
pub use metrics::Metrics;
pub use postgres::{PostgresOptions, PostgresStore};
pub use service::{
    ChainHealthReport, ChainService, DatabaseHealthReport, FacilitatorService, ReconcileReport,
    SolanaHealth,
};
pub use sqlite::{Durability, SqliteStore};
pub use store::{
    Backlog, BadSettlementKey, Claim, FailureTally, LogHealth, NewSettlement, Party, PartyTally,
    Search, SeriesPoint, SettlementFilter, SettlementKey, SettlementPage, SettlementRecord,
    SettlementState, SettlementStore, SettlementSummary, StoreError, Tally, TxRecord,
};

/// Why the facilitator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The settlement log could not be opened or reconciled.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A chain could not be reached.
    #[error("cannot reach chain {chain_id} at {rpc_url}: {detail}")]
    Chain {
        /// The chain.
        chain_id: u64,
        /// Its RPC endpoint.
        rpc_url: String,
        /// What failed.
        detail: String,
    },
    /// A Solana network's node could not be reached.
    #[error("cannot reach Solana network {network} at {rpc_url}: {detail}")]
    Solana {
        /// The network (CAIP-2).
        network: String,
        /// Its RPC endpoint.
        rpc_url: String,
        /// What failed.
        detail: String,
    },
    /// A setting could not be used (a key it names is missing or malformed).
    #[error("{0}")]
    Config(String),
    /// A scheme plug-in could not say what it serves.
    #[error("a scheme plug-in could not list what it serves: {0}")]
    Scheme(FacilitatorError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A facilitator serving HTTP in the background.
#[derive(Debug)]
pub struct RunningFacilitator {
    addr: SocketAddr,
    /// Where the operators' dashboard is served, when it is.
    dashboard: Option<SocketAddr>,
    /// Turns `true` at shutdown: the dashboard's event streams end and its listener stops.
    closing: tokio::sync::watch::Sender<bool>,
    /// The dashboard's own listener (`dashboard_listen`).
    dashboard_server: Option<JoinHandle<std::io::Result<()>>>,
    service: FacilitatorService,
    reconciled: ReconcileReport,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
    /// Writes the heartbeat and takes over dead instances' settlements (Postgres).
    heartbeat: Option<JoinHandle<()>>,
    grace: std::time::Duration,
}

impl RunningFacilitator {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://<addr>/dashboard`, where the operators' dashboard is served (on `listen`, or
    /// on `dashboard_listen`), when an operator token is configured.
    pub fn dashboard_url(&self) -> Option<String> {
        self.dashboard
            .map(|addr| format!("http://{addr}/dashboard"))
    }

    /// The service behind the HTTP layer.
    pub fn service(&self) -> &FacilitatorService {
        &self.service
    }

    /// What reconciliation did at start.
    pub fn reconciled(&self) -> ReconcileReport {
        self.reconciled
    }

    /// Stops taking requests, lets requests in progress finish, and waits (up to the
    /// configured grace) for settlements in flight. Returns how many were still in flight;
    /// they stay recorded as submitted and are reconciled at the next start.
    pub async fn shutdown(mut self) -> usize {
        // Open dashboards' event streams end first: they would keep the server waiting.
        let _ = self.closing.send(true);
        if let Some(signal) = self.shutdown.take() {
            let _ = signal.send(());
        }
        if let Err(error) = (&mut self.server).await {
            tracing::warn!(%error, "HTTP server task failed");
        }
        if let Some(server) = self.dashboard_server.take()
            && let Err(error) = server.await
        {
            tracing::warn!(%error, "dashboard server task failed");
        }
        let left = self.service.drain(self.grace).await;
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.abort();
            // What is left in flight goes to the next instance that starts or beats.
            if let Err(error) = self.service.retire().await {
                tracing::warn!(%error, "could not mark this instance stopped in the log");
            }
        }
        if left > 0 {
            tracing::warn!(
                left,
                "settlements still in flight at shutdown; they are recorded and resume at the next start"
            );
        }
        left
    }
}

/// The settlement log `config.database` names, seen through each seam it serves.
struct Log {
    /// The settlement log.
    store: Arc<dyn SettlementStore>,
    /// The same log, as the `batch-settlement` sends' seam.
    sends: Arc<dyn x402_evm::batch::BatchSendLog>,
    /// Where signer nonces are leased, when instances may share the log (and a signer).
    nonce_leases: Option<Arc<dyn x402_evm::NonceLeases>>,
}

/// Opens the settlement log `config.database` names.
async fn open_log(config: &FacilitatorConfig) -> Result<Log, StoreError> {
    Ok(match &config.database {
        Database::Sqlite(path) => {
            // One process owns the file: the send queue's lock is enough.
            let log = Arc::new(SqliteStore::open_with(path, config.database_sync)?);
            Log {
                store: log.clone(),
                sends: log,
                nonce_leases: None,
            }
        }
        Database::Postgres(url) => {
            let options = config.postgres.options();
            let instance = config.postgres.instance_id();
            let log = Arc::new(PostgresStore::connect_as(url.expose(), &options, &instance).await?);
            tracing::info!(database = %url, pool_size = options.pool_size, %instance, "settlement log in Postgres");
            Log {
                store: log.clone(),
                sends: log.clone(),
                nonce_leases: Some(log),
            }
        }
    })
}

/// Opens the log, connects to every chain, reconciles what a previous run left in flight,
/// then serves `exact` on every configured chain.
pub async fn start(
    config: &FacilitatorConfig,
    signer: PrivateKeySigner,
) -> Result<RunningFacilitator, StartError> {
    start_with_schemes(config, signer, Vec::new()).await
}

/// [`start`], also serving the scheme plug-ins `schemes` (see
/// [`FacilitatorService::with_schemes`]).
pub async fn start_with_schemes(
    config: &FacilitatorConfig,
    signer: PrivateKeySigner,
    mut schemes: Vec<Arc<dyn Facilitator>>,
) -> Result<RunningFacilitator, StartError> {
    let authorizer = config
        .receiver_authorizer()
        .map_err(|e| StartError::Config(e.to_string()))?;
    let operator_token = config
        .operator_token()
        .map_err(|e| StartError::Config(e.to_string()))?;
    let Log {
        store,
        sends,
        nonce_leases,
    } = open_log(config).await?;
    let mut chains = Vec::new();
    // Each chain's scheme, for the plug-ins made once the service (and its watched log) is.
    let mut served = Vec::new();
    for network in &config.networks {
        let mut chain = ChainConfig::new(network.chain_id, network.rpc_url.clone());
        chain.block_time = network.block_time_ms.map(std::time::Duration::from_millis);
        chain.receipt_timeout = config.limits.settle_wait();
        chain.eip6492_allowed_factories = network.eip6492_allowed_factories.clone();
        chain.fee_bump = network.fee_bump.policy();
        let mut scheme = ExactEvmScheme::connect(chain, signer.clone())
            .await
            .map_err(|e| StartError::Chain {
                chain_id: network.chain_id,
                rpc_url: network.rpc_url.to_string(),
                detail: e.to_string(),
            })?;
        if let Some(leases) = &nonce_leases {
            // Before the scheme is cloned into plug-ins: every send of the signer leases.
            scheme = scheme.with_nonce_leases(leases.clone());
        }
        served.push((network, scheme.clone()));
        let mut service = ChainService::new(scheme, network.accepted_assets());
        if let Some(floor) = network.min_signer_balance_wei {
            service = service.with_min_signer_balance(floor);
        }
        chains.push(service);
    }
    let service =
        FacilitatorService::new(chains, store, config.limits.settle_wait(), Metrics::new());
    // The plug-ins record through the service's log, so that its listeners hear of them.
    let sends = service.watch_sends(sends);
    let mut batches = Vec::new();
    for (network, scheme) in served {
        if network.upto {
            // Its settlements go through the log too.
            let log = Arc::new(permit2::LoggedSends::new(service.log()));
            schemes.push(Arc::new(x402_evm::upto::UptoEvmFacilitator::with_log(
                scheme.clone(),
                log,
            )));
        }
        if network.batch_settlement {
            // Its deposits, claims, settles and refunds are recorded in the log too.
            let batch = x402_evm::batch::BatchEvmFacilitator::with_log(
                scheme,
                authorizer.clone(),
                sends.clone(),
            );
            batches.push(batch.clone());
            schemes.push(Arc::new(batch));
        }
    }
    let mut solana_health = Vec::new();
    for solana in &config.solana_networks {
        let (plugin, health) = solana_plugin(solana, config, sends.clone()).await?;
        schemes.push(plugin);
        solana_health.push(health);
    }
    let service = service
        .with_schemes(schemes)
        .await
        .map_err(StartError::Scheme)?
        .with_solana_health(solana_health);
    let takeover_after = config.postgres.takeover_after();
    let mut reconciled = service.reconcile(takeover_after).await?;
    for batch in &batches {
        let sends = batch
            .reconcile()
            .await
            .map_err(|e| StoreError(format!("reconciling batch-settlement sends: {e}")))?;
        reconciled.confirmed += sends.confirmed;
        reconciled.failed += sends.failed;
        reconciled.abandoned += sends.abandoned;
        reconciled.tracking += sends.tracking;
    }
    if reconciled != ReconcileReport::default() {
        tracing::info!(
            ?reconciled,
            "reconciled settlements left in flight by the previous run"
        );
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let app = router(
        service.clone(),
        HttpOptions {
            bearer_token: config.auth.bearer_token.clone(),
            max_body_bytes: config.limits.max_body_bytes,
            request_timeout: config.limits.request_timeout(),
        },
    );
    let (closing, closed) = tokio::sync::watch::channel(false);
    let mut dashboard = None;
    let mut dashboard_server = None;
    let app = match (operator_token, config.dashboard_listen) {
        (None, _) => app,
        (Some(token), None) => {
            dashboard = Some(addr);
            app.merge(dashboard::routes(token, service.clone(), closed.clone()))
        }
        (Some(token), Some(listen)) => {
            let routes = dashboard::routes(token, service.clone(), closed.clone());
            let (bound, server) = serve_dashboard(listen, routes, closed.clone()).await?;
            dashboard = Some(bound);
            dashboard_server = Some(server);
            app
        }
    };
    if let Some(dashboard) = dashboard {
        tracing::info!(url = %format!("http://{dashboard}/dashboard"), "operators' dashboard");
    }
    // Instances sharing the log tell each other they are alive, and finish what dead ones left.
    let heartbeat = config
        .database
        .is_postgres()
        .then(|| service.spawn_heartbeat(config.postgres.heartbeat(), takeover_after));
    let (shutdown, stop) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.await;
            })
            .await
    });
    tracing::info!(%addr, networks = config.networks.len(), "facilitator listening");
    Ok(RunningFacilitator {
        addr,
        dashboard,
        closing,
        dashboard_server,
        service,
        reconciled,
        shutdown: Some(shutdown),
        server,
        heartbeat,
        grace: config.limits.shutdown_grace(),
    })
}

/// `exact` on the Solana network `solana`, its settlements recorded in `sends` (the log),
/// and what `/health` checks of it. Fails when its key cannot be read or its node does not
/// answer.
async fn solana_plugin(
    solana: &SolanaNetworkConfig,
    config: &FacilitatorConfig,
    sends: Arc<dyn x402_evm::batch::BatchSendLog>,
) -> Result<(Arc<dyn Facilitator>, SolanaHealth), StartError> {
    use x402_svm::Signer as _;
    let fee_payer = solana
        .fee_payer()
        .map_err(|e| StartError::Config(e.to_string()))?;
    let mints = solana.accepted_mints().map_err(StartError::Config)?;
    let rpc_timeout = std::time::Duration::from_secs(10);
    let rpc = || x402_svm::SolanaRpc::new(solana.rpc_url.as_str(), rpc_timeout);
    if let Err(error) = rpc().latest_blockhash().await {
        return Err(StartError::Solana {
            network: solana.network.to_string(),
            rpc_url: solana.rpc_url.to_string(),
            detail: error.to_string(),
        });
    }
    let health = SolanaHealth::new(
        solana.network.clone(),
        rpc(),
        fee_payer.pubkey(),
        solana.min_fee_payer_lamports,
    );
    let scheme = x402_svm::ExactSvmScheme::new(
        rpc(),
        x402_svm::FeePayers::new(vec![fee_payer]),
        x402_svm::VerifyLimits::default(),
    );
    let plugin = x402_svm::ExactSvmFacilitator::with_log(
        solana.network.clone(),
        scheme,
        x402_svm::SettlePolicy {
            confirm_within: config.limits.settle_wait(),
        },
        Arc::new(svm::LoggedSvmSends::new(sends)),
    )
    .with_mints(mints);
    tracing::info!(network = %solana.network, rpc_url = %solana.rpc_url, "serving exact on Solana");
    Ok((Arc::new(plugin), health))
}

/// Serves the dashboard's `routes` on their own listener at `listen` until `closing` turns
/// `true`; the bound address and the server's task.
async fn serve_dashboard(
    listen: SocketAddr,
    routes: axum::Router,
    mut closing: tokio::sync::watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<std::io::Result<()>>), StartError> {
    let bind = |source| StartError::Bind {
        addr: listen,
        source,
    };
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(bind)?;
    let bound = listener.local_addr().map_err(bind)?;
    let server = tokio::spawn(async move {
        axum::serve(listener, routes)
            .with_graceful_shutdown(async move {
                let _ = closing.wait_for(|closing| *closing).await;
            })
            .await
    });
    Ok((bound, server))
}
