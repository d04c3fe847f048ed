//! A pay-per-call AI inference gateway: GPU-Bridge's API (`POST /run {service, input}`,
//! `/status/{job_id}`, `/catalog`, `/catalog/estimate`) and OpenAI's (`/v1/embeddings`,
//! `/v1/chat/completions`), paid per request with x402 through [`x402_paywall`].
//!
//! Local backends run real models (all-MiniLM-L6-v2 embeddings and rerank in candle,
//! document parsing, espeak-ng speech, a local chat LLM, tesseract OCR, open_nsfw image safety
//! and Piper speech on ONNX Runtime); LLM services go to an OpenAI-compatible upstream when one
//! is configured.
//! A service with no backend is listed as unavailable, never faked. Every request is checked
//! and priced before payment; the price quoted is the price charged.

pub mod backend;
pub mod catalog;
pub mod channels;
pub mod config;
mod group_commit;
mod http;
pub mod jobs;
pub mod payments;
pub mod postgres;
pub mod pricing;
pub mod services;
pub mod task;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use x402_evm::batch::BatchServer;
use x402_evm::upto::UptoEvmServer;
use x402_paywall::{HttpFacilitator, PaymentOption, Paywall, PaywallConfig, ResponseCacheConfig};
use x402_proto::{Facilitator, Scheme, SchemeServer};

use channels::BatchClaiming;
pub use config::{
    AcceptConfig, BatchSettlementConfig, ConfigError, FacilitatorRef, GatewayConfig, GatewayLimits,
    PaymentConfig, ServiceConfig, SolanaAcceptConfig, UpstreamConfig,
};
pub use http::AppState;
use jobs::{JobStore, Jobs, SqliteJobStore};
use payments::{Journal, PaymentStore, SqlitePaymentStore};
use postgres::{
    Database, Leases, PostgresChannelStore, PostgresClaimLock, PostgresGuard, PostgresJobStore,
    PostgresPaymentStore,
};
use services::{Backends, Registry};
use x402_evm::batch::{ChannelStore, ClaimLock, ClaimerTask};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No facilitator was given or configured.
    #[error("no facilitator: set [facilitator] url in the gateway config")]
    NoFacilitator,
    /// The job store could not be opened or read.
    #[error("jobs_db: {0}")]
    Jobs(#[from] jobs::JobStoreError),
    /// The batch-settlement channel store could not be opened.
    #[error("batch_settlement.channels_db: {0}")]
    Channels(#[from] x402_evm::batch::ChannelStoreError),
    /// The payment journal could not be opened.
    #[error("payments_db: {0}")]
    Payments(#[from] payments::PaymentStoreError),
    /// The Postgres database (`database`) could not be connected to or migrated.
    #[error("database: {0}")]
    Database(#[from] postgres::DatabaseError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The accepted ways to pay, from the config.
pub fn payment_options(config: &GatewayConfig) -> Vec<PaymentOption> {
    config
        .payment
        .accepts
        .iter()
        .flat_map(|accept| {
            let exact = PaymentOption::exact_evm(
                accept.network.clone(),
                accept.asset.clone(),
                accept.decimals,
                config.payment.pay_to.clone(),
                &accept.name,
                &accept.version,
            )
            .with_max_timeout(config.payment.max_timeout_seconds);
            let upto = accept.upto.then(|| PaymentOption {
                scheme: Scheme::UPTO,
                extra: Some(serde_json::json!({
                    "name": accept.name,
                    "version": accept.version,
                    "assetTransferMethod": "permit2",
                })),
                ..exact.clone()
            });
            // `batch-settlement` (payment channels): offered whenever the gateway keeps
            // channels; vouchers are charged what a call used.
            let batch = config.batch_settlement.is_some().then(|| PaymentOption {
                scheme: Scheme::BATCH_SETTLEMENT,
                extra: Some(serde_json::json!({
                    "name": accept.name,
                    "version": accept.version,
                })),
                ..exact.clone()
            });
            std::iter::once(exact).chain(upto).chain(batch)
        })
        .chain(config.payment.solana.as_ref().map(|solana| {
            PaymentOption::exact_svm(
                solana.network.clone(),
                solana.mint(),
                solana.decimals,
                solana.pay_to.clone(),
            )
            .with_max_timeout(config.payment.max_timeout_seconds)
        }))
        .collect()
}

/// The ways to pay `options`, as the catalog lists them.
fn payment_methods(options: &[PaymentOption]) -> Vec<x402_gateway_api::PaymentMethod> {
    options
        .iter()
        .map(|option| {
            let channel = option.scheme == Scheme::BATCH_SETTLEMENT;
            let metered = channel || option.scheme == Scheme::UPTO;
            x402_gateway_api::PaymentMethod {
                scheme: option.scheme.to_string(),
                network: option.network.to_string(),
                asset: option.asset.clone(),
                charges: if metered { "usage" } else { "price" }.into(),
                settles: if channel { "channel" } else { "per call" }.into(),
            }
        })
        .collect()
}

/// The facilitator the config names (remote, over HTTP).
pub fn configured_facilitator(config: &GatewayConfig) -> Result<Arc<dyn Facilitator>, StartError> {
    let remote = config
        .facilitator
        .as_ref()
        .ok_or(StartError::NoFacilitator)?;
    let mut facilitator =
        HttpFacilitator::new(&remote.url, Duration::from_millis(remote.timeout_ms)).map_err(
            |e| ConfigError::Invalid {
                key: "facilitator.url".into(),
                message: e.to_string(),
            },
        )?;
    if let Some(token) = &remote.bearer_token {
        facilitator = facilitator.with_bearer_token(token.clone());
    }
    Ok(Arc::new(facilitator))
}

/// The gateway's routes and the paywall in front of them, which a server shutting down asks
/// to settle the streams still running ([`Paywall::settle_pending`]), its `batch-settlement`
/// channels with their claimers, started with the server and flushed when it stops, and its
/// payment journal.
#[derive(Clone, Debug)]
pub struct App {
    /// The routes (more may be mounted before serving).
    pub router: axum::Router,
    /// The operator dashboard and `/operator/*` when `dashboard_listen` serves them apart
    /// (otherwise they are in `router`, when an operator token is configured).
    pub dashboard: Option<axum::Router>,
    /// The paywall the routes are paid through.
    pub paywall: Paywall,
    /// The channel store and its claimers, when `[batch_settlement]` is configured.
    pub batch: Option<BatchClaiming>,
    /// Every payment's outcome, as the paywall records it (the dashboard reads it).
    pub journal: Journal,
}

/// How often a replica on a shared database looks for jobs a stopped replica left (they are
/// free once its lease lapses, [`Leases::ttl`]).
pub const JOB_SWEEP: Duration = Duration::from_secs(5);

/// How long a gateway shutting down waits for the claims of what `batch-settlement`
/// channels have unclaimed.
pub const CLAIM_AT_SHUTDOWN: Duration = Duration::from_secs(120);

/// How long a gateway shutting down waits for the settlements of streams still running
/// (a settlement may wait this long for a facilitator that answers `settlement_pending`).
pub const SETTLE_AT_SHUTDOWN: Duration = Duration::from_secs(60);

/// Loads the backends and builds the app, paid through `facilitator`.
pub async fn app(
    config: &GatewayConfig,
    facilitator: Arc<dyn Facilitator>,
) -> Result<App, StartError> {
    config.check()?;
    let backends = Backends::load(config).await;
    let registry = Registry::new(config, &backends)?;
    let options = payment_options(config);
    let decimals = options.first().map_or(6, |o| o.decimals);
    // One database for every replica, when configured: channels, jobs and the payment
    // guard are kept there instead of this process's files and memory.
    let database = match &config.database {
        Some(url) => Some(Database::connect(url.expose(), Leases::default()).await?),
        None => None,
    };
    // A channel file of this process's commits each charge's journal entry with the charge.
    let mut charge_journal = None;
    let batch = match &config.batch_settlement {
        Some(batch) => {
            // The config check made every asset an address.
            let accepted = config.payment.accepts.iter().filter_map(|a| {
                let asset = a.asset.parse().ok()?;
                Some((a.network.clone(), asset))
            });
            // Every replica claims the shared channels, one run at a time among them.
            let (store, lock): (Arc<dyn ChannelStore>, Option<Arc<dyn ClaimLock>>) = match &database
            {
                Some(database) => (
                    Arc::new(PostgresChannelStore::new(database.clone())),
                    Some(Arc::new(PostgresClaimLock::new(database.clone()))),
                ),
                None => {
                    let store = channels::SqliteChannelStore::open(&batch.channels_db)?;
                    charge_journal = Some(store.clone());
                    (Arc::new(store), None)
                }
            };
            Some(BatchClaiming::new(
                store,
                batch,
                accepted,
                Arc::clone(&facilitator),
                lock,
            ))
        }
        None => None,
    };
    // `upto` settles what a metered service reports it used; `batch-settlement` charges it
    // to the payer's channel.
    let mut metered: Vec<Arc<dyn SchemeServer>> = vec![Arc::new(UptoEvmServer)];
    if let (Some(batch), Some(settings)) = (&batch, &config.batch_settlement) {
        // Claimed at the per-channel bound; never charged past twice it.
        let server = BatchServer::new(Arc::clone(&batch.store))
            .with_min_deposit(u128::from(settings.min_deposit), false)
            .with_max_unclaimed(u128::from(settings.max_unclaimed_per_channel).saturating_mul(2));
        metered.push(Arc::new(server));
    }
    // Every payment's outcome, before its response goes out.
    let payment_store: Arc<dyn PaymentStore> = match &database {
        Some(database) => Arc::new(PostgresPaymentStore::new(database.clone())),
        None => Arc::new(SqlitePaymentStore::open(&config.payments_db())?),
    };
    let journal = Journal::new(payment_store);
    if let Some(channels) = &charge_journal {
        channels.journal_charges(&journal);
    }
    let response_cache = ResponseCacheConfig {
        ttl: std::time::Duration::from_secs(config.payment.paid_response_ttl_seconds),
        max_bytes: config.payment.paid_response_cache_bytes,
        ..ResponseCacheConfig::default()
    };
    let facilitator_for_dashboard = Arc::clone(&facilitator);
    let paywall = Paywall::new(
        facilitator,
        options,
        PaywallConfig {
            max_body_bytes: config.limits.max_body_bytes,
            public_url: config.public_url.clone(),
            response_cache,
            require_payment_identifier: config.payment.require_payment_identifier,
            streams_per_payer: config.payment.streams_per_payer,
            ..PaywallConfig::default()
        },
    )
    .map_err(|e| ConfigError::Invalid {
        key: "payment.accepts".into(),
        message: e.to_string(),
    })?
    .with_schemes(metered)
    .with_journal(Arc::new(journal.clone()));
    let paywall = match &database {
        Some(database) => paywall.with_guard(Arc::new(PostgresGuard::new(
            database.clone(),
            response_cache,
        ))),
        None => paywall,
    };
    // Offers carry what the facilitator advertises for their kind; a facilitator that cannot
    // be asked now still gets the configured offers.
    match tokio::time::timeout(Duration::from_secs(5), paywall.initialize()).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "the facilitator's /supported could not be read; offers go out as configured");
        }
        Err(_) => tracing::warn!(
            "the facilitator's /supported did not answer within 5 s; offers go out as configured"
        ),
    }
    let store: Arc<dyn JobStore> = match &database {
        Some(database) => Arc::new(PostgresJobStore::new(database.clone())),
        None => Arc::new(SqliteJobStore::open(&config.jobs_db)?),
    };
    let state = Arc::new(AppState {
        registry,
        backends,
        limits: config.limits.clone(),
        jobs: Jobs::new(
            Arc::clone(&store),
            Duration::from_secs(config.limits.job_ttl_seconds),
            config.limits.job_attempts,
        ),
        decimals,
        payment_methods: payment_methods(paywall.options()),
        database: database.clone(),
    });
    let resumed = http::resume_jobs(&state).await?;
    if resumed > 0 {
        tracing::info!(resumed, "jobs left unfinished are running again");
    }
    // Replicas share the jobs: one that dies mid-job leaves it to a live one.
    if database.is_some() {
        http::sweep_every(&state, JOB_SWEEP);
    }
    let mut router = http::router(state, &paywall).merge(http::metrics_routes(batch.clone()));
    // With an operator token: `/operator/claim` and the dashboard, on `listen` or apart.
    let mut dashboard = None;
    if let Some(token) = config.operator_token()? {
        let api = http::dashboard_api(http::Dashboard {
            journal: journal.clone(),
            jobs: store,
            batch: batch.clone(),
            facilitator: facilitator_for_dashboard,
            facilitator_url: config.facilitator.as_ref().map(|f| f.url.clone()),
            assets: asset_names(config),
        });
        let operator = http::operator_routes(batch.clone(), token.clone())
            .merge(x402_dashboard::routes(token, http::DASHBOARD_VIEW, api));
        match config.dashboard_listen {
            Some(_) => dashboard = Some(operator),
            None => router = router.merge(operator),
        }
    }
    Ok(App {
        router,
        dashboard,
        paywall,
        batch,
        journal,
    })
}

/// The accepted assets as the dashboard names them: USDC where the asset is a network's
/// USDC, else its EIP-712 name.
fn asset_names(config: &GatewayConfig) -> Vec<http::AssetName> {
    config
        .payment
        .accepts
        .iter()
        .map(|accept| {
            let usdc = x402_evm::default_asset(&accept.network).is_some_and(|usdc| {
                format!("{:#x}", usdc.address).eq_ignore_ascii_case(&accept.asset)
            });
            http::AssetName {
                asset: accept.asset.clone(),
                network: accept.network.to_string(),
                decimals: accept.decimals,
                symbol: if usdc || accept.name == "USD Coin" || accept.name == "USDC" {
                    "USDC".to_owned()
                } else {
                    accept.name.clone()
                },
            }
        })
        .chain(config.payment.solana.iter().map(|solana| {
            let mint = solana.mint();
            let usdc = x402_svm::usdc_mint(solana.network.as_str())
                .is_some_and(|usdc| usdc.to_string() == mint);
            http::AssetName {
                asset: mint,
                network: solana.network.to_string(),
                decimals: solana.decimals,
                symbol: if usdc { "USDC" } else { "SPL token" }.to_owned(),
            }
        }))
        .collect()
}

/// A gateway serving in the background.
#[derive(Debug)]
pub struct RunningGateway {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
    /// The dashboard's own listener, when `dashboard_listen` is set: its address, its stop
    /// signal and its server.
    dashboard: Option<(
        SocketAddr,
        oneshot::Sender<()>,
        JoinHandle<std::io::Result<()>>,
    )>,
    journal: Journal,
    paywall: Paywall,
    claimers: Vec<ClaimerTask>,
    channels: Option<Arc<dyn x402_evm::batch::ChannelStore>>,
}

impl RunningGateway {
    /// Its `batch-settlement` channels, when it keeps any (the store its paywall charges
    /// into: the channel file is this process's, so this is how to read it while it runs).
    pub fn channels(&self) -> Option<&Arc<dyn x402_evm::batch::ChannelStore>> {
        self.channels.as_ref()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where the operator dashboard is served: `http://<dashboard_listen>/dashboard` when it
    /// has its own address, else on [`Self::url`] (only with an operator token).
    pub fn dashboard_url(&self) -> String {
        match &self.dashboard {
            Some((addr, _, _)) => format!("http://{addr}/dashboard"),
            None => format!("{}/dashboard", self.url()),
        }
    }

    /// The payment journal the paywall records into.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Stops taking requests and lets those in progress finish; metered streams still
    /// running are cut off (settled for what they delivered, so that their connections end),
    /// and their settlements are waited for, at most [`SETTLE_AT_SHUTDOWN`], before this
    /// returns.
    pub async fn shutdown(mut self) {
        if let Some(signal) = self.shutdown.take() {
            let _ = signal.send(());
        }
        // The dashboard's live streams end, so that their connections close.
        self.journal.close();
        self.paywall.cut_off_streams();
        if let Some((_, signal, server)) = self.dashboard.take() {
            let _ = signal.send(());
            if let Err(error) = server.await {
                tracing::warn!(%error, "dashboard server task failed");
            }
        }
        if let Err(error) = (&mut self.server).await {
            tracing::warn!(%error, "gateway server task failed");
        }
        // After the connections: a stream admitted meanwhile is settled too.
        let unfinished = self.paywall.settle_pending(SETTLE_AT_SHUTDOWN).await;
        if unfinished > 0 {
            tracing::error!(
                unfinished,
                "streamed answers' settlements left unfinished at shutdown"
            );
        }
        // After the settlements: what the last requests charged is claimed too.
        for task in std::mem::take(&mut self.claimers) {
            let network = task.claimer().network().clone();
            match tokio::time::timeout(CLAIM_AT_SHUTDOWN, task.stop(true)).await {
                Ok(Some(Ok(run))) => {
                    for failure in &run.failures {
                        tracing::error!(%network, ?failure, "a claim at shutdown failed; the vouchers stay in the channel store for the next start");
                    }
                    tracing::info!(%network, transactions = run.transactions().len(), "batch-settlement vouchers claimed at shutdown");
                }
                Ok(Some(Err(error))) => {
                    tracing::error!(%network, %error, "the channel store could not be read at shutdown");
                }
                Ok(None) => {}
                Err(_) => {
                    tracing::error!(%network, "claims at shutdown did not finish in time; the vouchers stay in the channel store")
                }
            }
        }
    }
}

/// Builds the app and serves it on `config.listen`. `facilitator` overrides the configured
/// one (the dev stack passes its facilitator in process).
pub async fn start(
    config: &GatewayConfig,
    facilitator: Option<Arc<dyn Facilitator>>,
) -> Result<RunningGateway, StartError> {
    let facilitator = match facilitator {
        Some(f) => f,
        None => configured_facilitator(config)?,
    };
    let app = app(config, facilitator).await?;
    serve(config, app).await
}

/// Serves `app` (the gateway's routes, perhaps with more mounted) on `config.listen`.
pub async fn serve(config: &GatewayConfig, app: App) -> Result<RunningGateway, StartError> {
    let cannot_bind = |source| StartError::Bind {
        addr: config.listen,
        source,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(cannot_bind)?;
    let addr = listener.local_addr().map_err(cannot_bind)?;
    let (shutdown, stop) = oneshot::channel::<()>();
    // The server stops when `shutdown` is sent or dropped.
    let server = tokio::spawn(
        axum::serve(listener, app.router)
            .with_graceful_shutdown(stop.map(drop))
            .into_future(),
    );
    tracing::info!(%addr, "gateway listening");
    let dashboard = match (config.dashboard_listen, app.dashboard) {
        (Some(dashboard_addr), Some(router)) => {
            let cannot_bind = |source| StartError::Bind {
                addr: dashboard_addr,
                source,
            };
            let listener = tokio::net::TcpListener::bind(dashboard_addr)
                .await
                .map_err(cannot_bind)?;
            let bound = listener.local_addr().map_err(cannot_bind)?;
            let (signal, stop) = oneshot::channel::<()>();
            let server = tokio::spawn(
                axum::serve(listener, router)
                    .with_graceful_shutdown(stop.map(drop))
                    .into_future(),
            );
            tracing::info!(addr = %bound, "operator dashboard listening");
            Some((bound, signal, server))
        }
        _ => None,
    };
    let claimers = app
        .batch
        .iter()
        .flat_map(|batch| batch.claimers.iter().map(|claimer| claimer.start()))
        .collect();
    Ok(RunningGateway {
        addr,
        shutdown: Some(shutdown),
        server,
        dashboard,
        journal: app.journal,
        paywall: app.paywall,
        claimers,
        channels: app.batch.map(|batch| batch.store),
    })
}
