//! `lmts serve`.

use std::{io::IsTerminal, path::Path, time::Duration};

use chrono::TimeDelta;
use lmts_core::{error_chain::error_chain, files};
use lmts_server::{
    connections::ConnectionLimits,
    http::proxy::UpstreamSettings,
    server::{shutdown_signal, GatewayConfig, IdentityConfig, Server, ServerConfig},
    service::RateLimit,
    store::PostgresOptions,
    tls::TlsFiles,
    ServiceSettings,
};
use tracing_subscriber::EnvFilter;
use zeroize::Zeroizing;

use crate::{
    cli::{ConnectionArgs, IdentityCheckArgs, LogFormat, NodeArgs, ServeArgs, UpstreamArgs},
    exit::{CommandError, ConfigError},
};

pub(super) fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("LMTS_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub(super) fn read_key_file(path: &Path) -> Result<Zeroizing<String>, CommandError> {
    match files::read_private(path) {
        Ok(Some(text)) => Ok(Zeroizing::new(text.trim().to_owned())),
        Ok(None) => {
            Err(ConfigError(format!("master key file {} does not exist", path.display())).into())
        }
        Err(error) => Err(ConfigError(format!(
            "master key file {}: {}",
            path.display(),
            error_chain(&error)
        ))
        .into()),
    }
}

/// The configuration both `serve` and `gateway` take from their shared options.
pub(super) fn node_config(args: NodeArgs) -> Result<ServerConfig, CommandError> {
    let master_key = args
        .master_key_file
        .as_deref()
        .map(read_key_file)
        .transpose()?;
    let retired_master_keys = args
        .retired_master_key_files
        .iter()
        .map(|path| read_key_file(path).map(|key| key.to_string()))
        .collect::<Result<_, _>>()?;
    Ok(ServerConfig {
        listen: args.listen,
        metrics_listen: args.metrics_listen,
        tls: tls_files(&args),
        postgres: PostgresOptions {
            max_connections: args.database_max_connections,
            statement_timeout: Duration::from_millis(args.database_statement_timeout_ms),
            revocation_lease: Duration::from_millis(args.revocation_lease_ms),
            ..PostgresOptions::default()
        },
        service: service_settings(&args),
        connections: connection_limits(&args.connections),
        master_key,
        retired_master_keys,
        database_url: args.store.database_url,
        ..ServerConfig::new(args.store.data_dir.data_dir)
    })
}

/// The listener's certificate and key, when given.
fn tls_files(args: &NodeArgs) -> Option<TlsFiles> {
    let (cert, key) = (args.tls_cert.clone()?, args.tls_key.clone()?);
    Some(TlsFiles {
        cert,
        key,
        check_every: (args.tls_reload_secs > 0).then(|| Duration::from_secs(args.tls_reload_secs)),
    })
}

fn service_settings(args: &NodeArgs) -> ServiceSettings {
    ServiceSettings {
        window: TimeDelta::seconds(i64::from(args.time_window_secs)),
        max_body_bytes: args.max_body_bytes,
        max_active_tokens: (args.max_active_tokens > 0).then_some(args.max_active_tokens),
        body_timeout: Duration::from_secs(args.connections.body_timeout_secs),
        usage_flush_interval: Duration::from_millis(args.usage_flush_ms),
        token_cache_ttl: Duration::from_secs(args.token_cache_ttl_secs),
        rate_limit: (args.rate_limit_per_minute > 0).then_some(RateLimit {
            per_minute: args.rate_limit_per_minute,
            burst: args.rate_limit_burst,
        }),
        auth_failure_limit: (args.auth_failures_per_minute > 0).then_some(RateLimit {
            per_minute: args.auth_failures_per_minute,
            burst: args.auth_failure_burst,
        }),
        body_budget_bytes: usize::try_from(args.body_budget_bytes).unwrap_or(usize::MAX),
        trusted_proxies: args.trusted_proxies.clone(),
        event_retention: Duration::from_secs(u64::from(args.event_retention_days) * 86_400),
        ..ServiceSettings::default()
    }
}

fn identity_config(args: IdentityCheckArgs) -> IdentityConfig {
    IdentityConfig {
        issuer: args.identity_issuer,
        app_id: args.privy_app_id,
        jwks_url: args.jwks_url,
        verification_key_file: args.verification_key_file,
        jwks_min_refetch: Duration::from_secs(args.jwks_min_refetch_secs),
        leeway: TimeDelta::seconds(i64::from(args.identity_leeway_secs)),
    }
}

/// How the gateway reaches its upstream.
pub(super) fn upstream_settings(args: &UpstreamArgs) -> UpstreamSettings {
    UpstreamSettings {
        timeout: Duration::from_secs(args.upstream_timeout_secs),
        connect_timeout: Duration::from_secs(args.upstream_connect_timeout_secs),
        max_in_flight: usize::try_from(args.upstream_max_in_flight).unwrap_or(usize::MAX),
        max_tunnels: usize::try_from(args.upstream_max_tunnels).unwrap_or(usize::MAX),
        tunnel_lifetime: Duration::from_secs(args.tunnel_lifetime_secs),
        ca_file: args.upstream_ca.clone(),
        ..UpstreamSettings::default()
    }
}

fn config(args: ServeArgs) -> Result<ServerConfig, CommandError> {
    let policy = args
        .policy
        .as_deref()
        .map(super::policy::load)
        .transpose()?;
    Ok(ServerConfig {
        dev: args.identity.dev,
        identity: identity_config(args.identity),
        gateway: GatewayConfig {
            policy,
            upstream: args.upstream,
            upstream_settings: upstream_settings(&args.upstream_args),
        },
        ..node_config(args.node)?
    })
}

fn connection_limits(args: &ConnectionArgs) -> ConnectionLimits {
    let size = |value: u64| usize::try_from(value).unwrap_or(usize::MAX);
    ConnectionLimits {
        header_timeout: Duration::from_secs(args.header_timeout_secs),
        http2_keepalive: Duration::from_secs(args.http2_keepalive_secs),
        http2_max_streams: args.http2_max_streams,
        max_header_bytes: size(args.max_header_bytes),
        max_connections: size(args.max_connections),
        shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
    }
}

/// Runs the service until SIGTERM or Ctrl-C.
pub async fn run(args: ServeArgs) -> Result<(), CommandError> {
    init_logging(args.node.log_format);
    let config = config(args)?;
    let server = Server::bind(config).await?;
    server.run(shutdown_signal()).await?;
    Ok(())
}
