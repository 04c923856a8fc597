//! Running the service: configuration, start-up and graceful shutdown.

use std::{future::Future, io, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use chrono::TimeDelta;
use jsonwebtoken::DecodingKey;
use lmts_core::files::{self, FileError};
use tokio::net::TcpListener;
use zeroize::Zeroizing;

use crate::{
    clock::Clock,
    connections::{self, ConnectionLimits},
    crypto::{CryptoError, Keyring, MASTER_KEY_FILE},
    http::{
        app_with, metrics_app,
        proxy::{Upstream, UpstreamSettings},
        Doors,
    },
    identity::{
        dev::{DevIssuer, DevIssuerError, DEV_APP_ID, DEV_KEY_ID},
        IdentityKeys, IdentityVerifier, JwksSource, PRIVY_ISSUER,
    },
    service::{policy::RoutePolicy, Gateway, ServiceSettings, TokenService},
    store::{PostgresOptions, PostgresStore, SqliteStore, Store, StoreError},
    tls::{ServerTls, TlsError, TlsFiles},
};

/// Where identity tokens come from and how they are checked.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`: the Privy app id. Required unless in dev mode.
    pub app_id: Option<String>,
    /// URL of the app's JWKS document.
    pub jwks_url: Option<String>,
    /// A PEM (SPKI) ES256 public key file.
    pub verification_key_file: Option<PathBuf>,
    /// The least time between two JWKS fetches.
    pub jwks_min_refetch: Duration,
    /// Leeway on `exp` and `nbf` (at most 60 s).
    pub leeway: TimeDelta,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            issuer: PRIVY_ISSUER.to_owned(),
            app_id: None,
            jwks_url: None,
            verification_key_file: None,
            jwks_min_refetch: Duration::from_secs(30),
            leeway: TimeDelta::seconds(30),
        }
    }
}

/// Everything `lmts serve` needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory holding the database, the master key and the dev key.
    pub data_dir: PathBuf,
    /// Accept identity tokens of the dev issuer.
    pub dev: bool,
    /// Identity token verification.
    pub identity: IdentityConfig,
    /// Limits of the service.
    pub service: ServiceSettings,
    /// Timeouts and limits of the connections.
    pub connections: ConnectionLimits,
    /// The master key (base64 of 32 bytes); by default read from, or created in, the data directory.
    pub master_key: Option<Zeroizing<String>>,
    /// Earlier master keys, still used to open secrets sealed under them.
    pub retired_master_keys: Vec<String>,
    /// A PostgreSQL URL; without it the embedded SQLite database of the data directory is used.
    pub database_url: Option<String>,
    /// Pool and timeouts of the PostgreSQL backend.
    pub postgres: PostgresOptions,
    /// Serve the token endpoints (off for `lmts gateway`, which needs no identity keys).
    pub token_endpoints: bool,
    /// The gateway of SPEC C1 in this process, if any.
    pub gateway: GatewayConfig,
    /// The service's time (the system clock; tests move it).
    pub clock: Clock,
    /// Where `GET /metrics` is served alone (`--metrics-listen`); `None`: on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// TLS on `listen` (`--tls-cert`, `--tls-key`); `None`: plain HTTP.
    pub tls: Option<TlsFiles>,
}

/// The gateway of SPEC C1: a route policy, and an upstream to proxy to.
#[derive(Debug, Clone, Default)]
pub struct GatewayConfig {
    /// The route policy (`--policy`): opens `/ext-authz` and `/forward-auth`.
    pub policy: Option<RoutePolicy>,
    /// The upstream URL (`--upstream`): every route that is not lmts's own is proxied there.
    pub upstream: Option<String>,
    /// Timeouts and pool of the upstream.
    pub upstream_settings: UpstreamSettings,
}

impl ServerConfig {
    /// Defaults: `127.0.0.1:8080`, `./lmts-data`, not dev.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: data_dir.into(),
            dev: false,
            identity: IdentityConfig::default(),
            service: ServiceSettings::default(),
            connections: ConnectionLimits::default(),
            master_key: None,
            retired_master_keys: Vec::new(),
            database_url: None,
            postgres: PostgresOptions::default(),
            token_endpoints: true,
            gateway: GatewayConfig::default(),
            clock: Clock::system(),
            metrics_listen: None,
            tls: None,
        }
    }
}

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The data directory could not be created.
    #[error("data directory {path}")]
    DataDir {
        /// The directory.
        path: String,
        /// What went wrong.
        #[source]
        source: FileError,
    },
    /// The master key could not be loaded.
    #[error("master key")]
    MasterKey(#[from] CryptoError),
    /// The database holds live secrets sealed under a master key this service was not given.
    #[error("the database holds {sealed} live token secret(s) sealed under master key {key_id}, which this service does not have: {hint}")]
    MissingMasterKey {
        /// The key id the secrets name.
        key_id: String,
        /// How many live secrets it seals.
        sealed: u64,
        /// What to do about it.
        hint: String,
    },
    /// The database could not be opened.
    #[error("database")]
    Store(#[from] StoreError),
    /// The dev issuer could not be loaded.
    #[error("dev issuer")]
    DevIssuer(#[from] DevIssuerError),
    /// The identity configuration is incomplete or wrong.
    #[error("identity configuration: {0}")]
    Identity(String),
    /// Two limits contradict each other.
    #[error("configuration: {0}")]
    Config(String),
    /// The TLS certificate or key could not be used.
    #[error("TLS")]
    Tls(#[from] TlsError),
    /// The listen address could not be bound.
    #[error("cannot listen on {address}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// The server stopped with an error.
    #[error("server error")]
    Serve(#[source] io::Error),
}

/// Opens the store: PostgreSQL at `database_url` when given, else the embedded SQLite
/// database of `data_dir` (creating both if needed).
pub async fn open_store(
    data_dir: &std::path::Path,
    database_url: Option<&str>,
    postgres: &PostgresOptions,
) -> Result<Arc<dyn Store>, ServeError> {
    if let Some(url) = database_url {
        return Ok(Arc::new(PostgresStore::connect(url, postgres).await?));
    }
    files::ensure_private_dir(data_dir).map_err(|source| ServeError::DataDir {
        path: data_dir.display().to_string(),
        source,
    })?;
    Ok(Arc::new(SqliteStore::open_in(data_dir).await?))
}

fn identity_verifier(config: &ServerConfig) -> Result<IdentityVerifier, ServeError> {
    let identity = &config.identity;
    let mut keys = IdentityKeys::default();
    if !config.token_endpoints {
        // No endpoint takes an identity token: a verifier without keys, which refuses all.
        return Ok(IdentityVerifier::new(
            keys,
            &identity.issuer,
            "-",
            identity.leeway,
        ));
    }
    if let Some(path) = &identity.verification_key_file {
        let pem = std::fs::read(path).map_err(|error| {
            ServeError::Identity(format!("cannot read {}: {error}", path.display()))
        })?;
        keys.pem = Some(DecodingKey::from_ec_pem(&pem).map_err(|_| {
            ServeError::Identity(format!("{} is not a PEM EC public key", path.display()))
        })?);
    }
    if let Some(url) = &identity.jwks_url {
        keys.jwks = Some(
            JwksSource::new(url.clone(), identity.jwks_min_refetch)
                .map_err(|error| ServeError::Identity(format!("JWKS client: {error}")))?,
        );
    }
    if config.dev {
        let issuer = DevIssuer::load_or_create(&config.data_dir)?;
        keys.by_kid
            .insert(DEV_KEY_ID.to_owned(), issuer.decoding_key());
    }
    if keys.is_empty() {
        return Err(ServeError::Identity(
            "no identity key source: give a JWKS URL, a verification key file, or run with --dev"
                .into(),
        ));
    }
    let app_id = match (&identity.app_id, config.dev) {
        (Some(app_id), _) => app_id.clone(),
        (None, true) => DEV_APP_ID.to_owned(),
        (None, false) => {
            return Err(ServeError::Identity(
                "the Privy app id is required (it is the identity token's audience)".into(),
            ))
        }
    };
    Ok(IdentityVerifier::new(
        keys,
        &identity.issuer,
        &app_id,
        identity.leeway,
    ))
}

/// The master keys of `config`, checked against the secrets `store` holds: every key id that
/// seals a live token must be there, and a new master key is generated only while no live
/// token is sealed at all (a lost key file is never silently replaced).
async fn keyring_for(config: &ServerConfig, store: &dyn Store) -> Result<Keyring, ServeError> {
    let retired = &config.retired_master_keys;
    // Only keys that seal a live token matter: the others seal nothing anyone can use.
    let sealed: Vec<(String, u64)> = store
        .key_usage(config.clock.now())
        .await?
        .into_iter()
        .filter(|key| key.live > 0)
        .map(|key| (key.key_id, key.live))
        .collect();
    let keyring = match &config.master_key {
        Some(key) => Keyring::from_base64(key, retired)?,
        None => match Keyring::load(&config.data_dir, retired)? {
            Some(keyring) => keyring,
            None if sealed.is_empty() => {
                if config.database_url.is_some() {
                    tracing::warn!(
                        "generated a master key for a shared database: every instance must use this same key (--master-key-file), or tokens derived on one will not open on another"
                    );
                }
                Keyring::create(&config.data_dir, retired)?
            }
            None => {
                return Err(ServeError::MissingMasterKey {
                    key_id: sealed[0].0.clone(),
                    sealed: sealed[0].1,
                    hint: format!(
                        "{} is missing; restore it, or give --master-key-file",
                        config.data_dir.join(MASTER_KEY_FILE).display()
                    ),
                })
            }
        },
    };
    match sealed.iter().find(|(key_id, _)| !keyring.has_key(key_id)) {
        Some((key_id, count)) => Err(ServeError::MissingMasterKey {
            key_id: key_id.clone(),
            sealed: *count,
            hint: "give that key as --master-key-file or --retired-master-key-file".into(),
        }),
        None => Ok(keyring),
    }
}

/// The doors `config` opens: the token endpoints, and the gateway's with its upstream.
fn doors_of(config: &ServerConfig) -> Result<Doors, ServeError> {
    let gateway = &config.gateway;
    let upstream =
        match (&gateway.upstream, &gateway.policy) {
            (None, _) => None,
            (Some(_), None) => return Err(ServeError::Config(
                "an upstream needs a route policy (--policy FILE): nothing is forwarded unchecked"
                    .into(),
            )),
            (Some(url), Some(_)) => Some(
                Upstream::new(url, gateway.upstream_settings.clone())
                    .map_err(|error| ServeError::Config(format!("--upstream: {error}")))?,
            ),
        };
    Ok(Doors {
        token_endpoints: config.token_endpoints,
        gateway: gateway.policy.clone().map(Gateway::new),
        upstream,
        metrics: config.metrics_listen.is_none(),
        tls: config.tls.is_some(),
    })
}

/// A bound, ready service.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    /// The listener of `GET /metrics` alone, when it has its own address.
    metrics_listener: Option<TcpListener>,
    service: TokenService,
    connections: ConnectionLimits,
    doors: Doors,
    tls: Option<ServerTls>,
}

impl Server {
    /// Prepares the data directory, keys and database, and binds the listen address.
    pub async fn bind(config: ServerConfig) -> Result<Self, ServeError> {
        let service = &config.service;
        if service.max_body_bytes > service.body_budget_bytes {
            return Err(ServeError::Config(format!(
                "the largest body ({} bytes) is over the budget for all bodies at once ({} bytes): every such request would get 503",
                service.max_body_bytes, service.body_budget_bytes
            )));
        }
        let doors = doors_of(&config)?;
        let tls = config.tls.clone().map(ServerTls::load).transpose()?;
        files::ensure_private_dir(&config.data_dir).map_err(|source| ServeError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
        let store = open_store(
            &config.data_dir,
            config.database_url.as_deref(),
            &config.postgres,
        )
        .await?;
        let keyring = keyring_for(&config, store.as_ref()).await?;
        let identity = identity_verifier(&config)?;
        if config.dev {
            tracing::warn!(
                "DEV MODE: identity tokens minted by `lmts dev identity-token` are accepted; never run --dev in production"
            );
        }
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServeError::Bind {
                    address: config.listen,
                    source,
                })?;
        tracing::info!(
            data_dir = %config.data_dir.display(),
            database = if config.database_url.is_some() { "postgres" } else { "sqlite" },
            master_key_id = keyring.current_key_id(),
            identity = ?identity,
            token_endpoints = doors.token_endpoints,
            policy = doors.gateway.is_some(),
            upstream = doors.upstream.as_ref().map(Upstream::origin),
            tls = tls.is_some(),
            "lmts service ready"
        );
        let metrics_listener = match config.metrics_listen {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .map_err(|source| ServeError::Bind { address, source })?,
            ),
            None => None,
        };
        crate::telemetry::recorder();
        let service = TokenService::new(config.service, store, keyring, identity, config.clock);
        Ok(Self {
            listener,
            metrics_listener,
            service,
            connections: config.connections,
            doors,
            tls,
        })
    }

    /// The bound address (the port chosen when binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address `GET /metrics` is served on alone, if it has one.
    pub fn metrics_addr(&self) -> Option<io::Result<SocketAddr>> {
        self.metrics_listener.as_ref().map(TcpListener::local_addr)
    }

    /// The token service it serves.
    pub fn service(&self) -> &TokenService {
        &self.service
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests and writes pending state.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let address = self.local_addr().map_err(ServeError::Serve)?;
        tracing::info!(%address, "listening");
        let background = self.service.start_background();
        let (stopping, stop) = tokio::sync::watch::channel(false);
        let metrics = self.metrics_listener.map(|listener| {
            let limits = self.connections.clone();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                let stopped = async move {
                    let _ = stop.wait_for(|stopping| *stopping).await;
                };
                connections::serve(listener, metrics_app(), &limits, None, stopped).await;
            })
        });
        let router = app_with(self.service.clone(), self.doors);
        let shutdown = async move {
            shutdown.await;
            let _ = stopping.send(true);
        };
        let watcher = self.tls.as_ref().map(ServerTls::watch);
        let acceptor = self.tls.as_ref().map(ServerTls::acceptor);
        connections::serve(self.listener, router, &self.connections, acceptor, shutdown).await;
        drop(watcher);
        if let Some(metrics) = metrics {
            let _ = metrics.await;
        }
        background.stop();
        self.service.run_maintenance().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
