//! The command line of the server commands (`serve`, `partners`, `dev`, `demo`, `bench`): the
//! `server` feature's half of [`super::Command`].

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use lmts_server::service::TrustedProxies;

/// The data directory option shared by every command that opens it.
#[derive(Debug, Args)]
pub struct DataDirArg {
    /// Directory holding the database, the master key and the dev key.
    #[arg(long, env = "LMTS_DATA_DIR", default_value = "./lmts-data")]
    pub data_dir: PathBuf,
}

/// Where the service's state lives.
#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// PostgreSQL URL (postgres://user@host/db); without it, SQLite in the data directory.
    #[arg(long, env = "LMTS_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Timeouts and limits of client connections.
#[derive(Debug, Args)]
pub struct ConnectionArgs {
    /// Seconds a client may take to send a request head; also how long a connection may stay open without a request in flight.
    #[arg(long, env = "LMTS_HEADER_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout_secs: u64,
    /// Seconds a client may take to send a request body.
    #[arg(long, env = "LMTS_BODY_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_timeout_secs: u64,
    /// Seconds between HTTP/2 keep-alive pings; a ping unanswered for as long closes the connection.
    #[arg(long, env = "LMTS_HTTP2_KEEPALIVE_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub http2_keepalive_secs: u64,
    /// Most concurrent HTTP/2 streams per connection.
    #[arg(long, env = "LMTS_HTTP2_MAX_STREAMS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub http2_max_streams: u32,
    /// Largest request head in bytes (HTTP/1.1 buffer, HTTP/2 header list); larger gets 431.
    #[arg(long, env = "LMTS_MAX_HEADER_BYTES", default_value_t = 32 * 1024, value_parser = clap::value_parser!(u64).range(8192..=1_048_576))]
    pub max_header_bytes: u64,
    /// Most client connections open at once (lowered to what `ulimit -n` allows).
    #[arg(long, env = "LMTS_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Seconds in-flight requests may run after SIGTERM before their connections are dropped.
    #[arg(long, env = "LMTS_SHUTDOWN_GRACE_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_grace_secs: u64,
}

/// Options `lmts serve` and `lmts gateway` share: where to listen, the store, the keys, and
/// the limits of signed requests.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Address to listen on.
    #[arg(long, env = "LMTS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Serve `GET /metrics` (Prometheus text) on this address alone, instead of on --listen:
    /// keep it on a private interface.
    #[arg(long, env = "LMTS_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Serve HTTPS on --listen with this PEM certificate chain (the server's certificate first); read again when it changes or on SIGHUP.
    #[arg(long, env = "LMTS_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "LMTS_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Seconds between checks of --tls-cert and --tls-key for a new version (0: only on SIGHUP).
    #[arg(long, env = "LMTS_TLS_RELOAD_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub tls_reload_secs: u64,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub connections: ConnectionArgs,
    /// Most PostgreSQL connections this instance holds.
    #[arg(long, env = "LMTS_DATABASE_MAX_CONNECTIONS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(2..))]
    pub database_max_connections: u32,
    /// Longest a PostgreSQL statement may run, in milliseconds.
    #[arg(long, env = "LMTS_DATABASE_STATEMENT_TIMEOUT_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(100..))]
    pub database_statement_timeout_ms: u64,
    /// PostgreSQL: milliseconds an instance may answer from its caches after it last proved it hears revocations; a revoke waits at most this long for an instance that does not acknowledge it (0: revokes do not wait).
    #[arg(long, env = "LMTS_REVOCATION_LEASE_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub revocation_lease_ms: u64,
    /// Seconds a token's verification state stays cached (the backstop for missed revocation notices).
    #[arg(long, env = "LMTS_TOKEN_CACHE_TTL_SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub token_cache_ttl_secs: u64,
    /// Days audit events are kept (SPEC C2), then pruned in the background.
    #[arg(long, env = "LMTS_EVENT_RETENTION_DAYS", default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub event_retention_days: u32,
    /// Seconds a signed request's timestamp may differ from server time, either way.
    #[arg(long, env = "LMTS_TIME_WINDOW_SECS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub time_window_secs: u32,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "LMTS_MAX_BODY_BYTES", default_value_t = 65536)]
    pub max_body_bytes: usize,
    /// Most active tokens one partner may hold (0: no limit).
    #[arg(long, env = "LMTS_MAX_ACTIVE_TOKENS", default_value_t = 100)]
    pub max_active_tokens: u32,
    /// Requests per minute allowed per identity and per token (0: no limit).
    #[arg(long, env = "LMTS_RATE_LIMIT_PER_MINUTE", default_value_t = 600)]
    pub rate_limit_per_minute: u32,
    /// Requests a caller may send at once before the per-minute rate applies.
    #[arg(long, env = "LMTS_RATE_LIMIT_BURST", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_burst: u32,
    /// Authentication failures (401s) per minute allowed per client address before it gets 429 (0: no limit). Behind a load balancer, name it in --trusted-proxies so that the client is charged, not the balancer.
    #[arg(long, env = "LMTS_AUTH_FAILURES_PER_MINUTE", default_value_t = 60)]
    pub auth_failures_per_minute: u32,
    /// Authentication failures a client address may make at once before the per-minute rate applies.
    #[arg(long, env = "LMTS_AUTH_FAILURE_BURST", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_failure_burst: u32,
    /// Most request-body bytes held in memory at once by all requests together; past it, 503.
    #[arg(long, env = "LMTS_BODY_BUDGET_BYTES", default_value_t = 64 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(65_536..=4_294_967_295))]
    pub body_budget_bytes: u64,
    /// Milliseconds between writes of lastUsedAt (the most it may trail the truth).
    #[arg(long, env = "LMTS_USAGE_FLUSH_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    pub usage_flush_ms: u64,
    /// File with the master key (base64 of 32 bytes, mode 0600); default: master.key in the data directory, created on first start.
    #[arg(long, env = "LMTS_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// Files with earlier master keys, still needed to open secrets sealed under them.
    #[arg(
        long = "retired-master-key-file",
        env = "LMTS_RETIRED_MASTER_KEY_FILES",
        value_delimiter = ','
    )]
    pub retired_master_key_files: Vec<PathBuf>,
    /// Log format.
    #[arg(long, env = "LMTS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Load balancers (addresses or CIDR blocks, comma separated) whose X-Forwarded-For names the client; no one's by default.
    #[arg(long, env = "LMTS_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: TrustedProxies,
}

/// How identity tokens are checked (`lmts serve` only).
#[derive(Debug, Args)]
pub struct IdentityCheckArgs {
    /// Accept identity tokens minted by `lmts dev identity-token` (never in production).
    #[arg(long, env = "LMTS_DEV")]
    pub dev: bool,
    /// The Privy app id: the audience identity tokens must carry (default with --dev: lmts-dev).
    #[arg(long, env = "LMTS_PRIVY_APP_ID")]
    pub privy_app_id: Option<String>,
    /// The issuer identity tokens must carry.
    #[arg(long, env = "LMTS_IDENTITY_ISSUER", default_value = "privy.io")]
    pub identity_issuer: String,
    /// URL of the Privy app's JWKS document.
    #[arg(long, env = "LMTS_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// PEM file of the Privy app's ES256 verification key.
    #[arg(long, env = "LMTS_VERIFICATION_KEY_FILE")]
    pub verification_key_file: Option<PathBuf>,
    /// Least seconds between two JWKS fetches (an unknown key id triggers one).
    #[arg(long, env = "LMTS_JWKS_MIN_REFETCH_SECS", default_value_t = 30)]
    pub jwks_min_refetch_secs: u64,
    /// Leeway in seconds on identity token expiry (at most 60).
    #[arg(long, env = "LMTS_IDENTITY_LEEWAY_SECS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(0..=60))]
    pub identity_leeway_secs: u32,
}

/// How the gateway reaches its upstream.
#[derive(Debug, Args)]
pub struct UpstreamArgs {
    /// Seconds to wait for the upstream's response head before answering 504.
    #[arg(long, env = "LMTS_UPSTREAM_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub upstream_timeout_secs: u64,
    /// Seconds to wait for a connection to the upstream before answering 502.
    #[arg(long, env = "LMTS_UPSTREAM_CONNECT_TIMEOUT_SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub upstream_connect_timeout_secs: u64,
    /// Most requests at the upstream at once, each holding a connection until its answer's last byte; past it, 503.
    #[arg(long, env = "LMTS_UPSTREAM_MAX_IN_FLIGHT", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub upstream_max_in_flight: u64,
    /// Most WebSocket tunnels open at once; past it, 503.
    #[arg(long, env = "LMTS_UPSTREAM_MAX_TUNNELS", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub upstream_max_tunnels: u64,
    /// Seconds a WebSocket tunnel may stay open (one opened before a revoke lives until then).
    #[arg(long, env = "LMTS_TUNNEL_LIFETIME_SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub tunnel_lifetime_secs: u64,
    /// PEM roots to check an https:// upstream's certificate against, instead of the system's.
    #[arg(long, env = "LMTS_UPSTREAM_CA", value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,
}

/// Options of `lmts serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to listen, the store, keys and limits (shared with `gateway`).
    #[command(flatten)]
    pub node: NodeArgs,
    /// How identity tokens are checked.
    #[command(flatten)]
    pub identity: IdentityCheckArgs,
    /// Route policy (TOML, SPEC C1): opens /ext-authz and /forward-auth, and governs --upstream.
    #[arg(long, env = "LMTS_POLICY")]
    pub policy: Option<PathBuf>,
    /// Proxy every route that is not lmts's own to this http:// or https:// origin, after the policy.
    #[arg(long, env = "LMTS_UPSTREAM", requires = "policy")]
    pub upstream: Option<String>,
    /// How the upstream is reached.
    #[command(flatten)]
    pub upstream_args: UpstreamArgs,
}

/// Options of `lmts gateway`.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Where to listen, the store, keys and limits (shared with `serve`).
    #[command(flatten)]
    pub node: NodeArgs,
    /// The http:// or https:// origin requests are forwarded to once they pass.
    #[arg(long, env = "LMTS_UPSTREAM")]
    pub upstream: String,
    /// Route policy (TOML, SPEC C1).
    #[arg(long, env = "LMTS_POLICY")]
    pub policy: PathBuf,
    /// How the upstream is reached.
    #[command(flatten)]
    pub upstream_args: UpstreamArgs,
}

/// A load scenario of `lmts bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// `GET /health`: the baseline of the HTTP stack.
    Health,
    /// `GET /auth/api-tokens`, every request HMAC-signed afresh.
    List,
    /// `POST /auth/api-tokens/derive` with an identity token: a durable write each.
    Derive,
    /// Derive, list, revoke, repeated: the revoke-heavy mix.
    Mix,
}

/// Options of `lmts bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Concurrent connections.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub connections: u32,
    /// Seconds each scenario runs.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub duration_secs: u64,
    /// Scenarios to run, in order (default: all).
    #[arg(long = "scenario", value_enum)]
    pub scenarios: Vec<Scenario>,
    /// Run the measured service on this PostgreSQL database instead of a temporary SQLite one.
    #[arg(long, env = "LMTS_BENCH_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Drive the deployment at this base URL instead of a fresh child service. Scenarios
    /// default to health, list and mix there (derive leaves its tokens behind); list and mix
    /// need an identity token, else list signs with the saved credentials (never revoked).
    #[arg(long, value_name = "URL", conflicts_with = "database_url")]
    pub base_url: Option<String>,
    /// Also trust the certificate authorities in this PEM file (an HTTPS deployment with a
    /// private CA, with --base-url; a fresh child service speaks plain HTTP and needs none).
    #[arg(long, env = "LMTS_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// The identity token of the partner the bench acts for (with --base-url).
    #[command(flatten)]
    pub identity: crate::cli::IdentityArgs,
    /// Saved credentials for the list scenario (with --base-url, without an identity token).
    #[command(flatten)]
    pub credentials: crate::cli::CredentialArgs,
}

/// `lmts partners ...`.
#[derive(Debug, Subcommand)]
pub enum PartnersCommand {
    /// Change a partner's settings (or the default); takes effect on a running server at once.
    #[command(
        after_help = "Example:\n  lmts partners set --account 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed --token-management on --allowed-scopes trading,account_creation"
    )]
    Set(PartnersSetArgs),
    /// Show the settings in force for a partner (or the default).
    #[command(
        after_help = "Example:\n  lmts partners show --account 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    )]
    Show(PartnerSelector),
    /// Every partner seen, with its settings and its live tokens.
    #[command(after_help = "Example:\n  lmts partners list --output json")]
    List(StoreArgs),
}

/// `lmts admin ...`: a partner's tokens and the emergency stop, against the database.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// A partner's live tokens, with their expiry, addresses and last use.
    #[command(
        after_help = "Example:\n  lmts admin tokens --account 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    )]
    Tokens {
        /// The partner's wallet address.
        #[arg(long)]
        account: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke one token, whoever holds it; an audit event names the operator and the reason.
    #[command(
        after_help = "Example:\n  lmts admin revoke lmts_Rcj8KB41f2UG21D_2B_Nirej --reason 'key posted in a public repository'"
    )]
    Revoke {
        /// The token to revoke.
        token_id: String,
        #[command(flatten)]
        operator: OperatorArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke every live token of a partner: the emergency stop.
    #[command(
        after_help = "Example:\n  lmts admin revoke-all --account 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed --reason 'account compromised'"
    )]
    RevokeAll {
        /// The partner's wallet address.
        #[arg(long)]
        account: String,
        #[command(flatten)]
        operator: OperatorArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Who revokes, and why (both written in the partner's audit events).
#[derive(Debug, Args)]
pub struct OperatorArgs {
    /// Why: required, at most 500 characters.
    #[arg(long)]
    pub reason: String,
    /// The operator's name (default: the login name).
    #[arg(long, env = "LMTS_OPERATOR")]
    pub operator: Option<String>,
}

/// Which partner.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct PartnerTarget {
    /// The partner's wallet address.
    #[arg(long)]
    pub account: Option<String>,
    /// The default for partners with no settings of their own.
    #[arg(long)]
    pub default: bool,
}

/// A partner and the data directory.
#[derive(Debug, Args)]
pub struct PartnerSelector {
    #[command(flatten)]
    pub target: PartnerTarget,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// On or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// Options of `lmts partners set`.
#[derive(Debug, Args)]
pub struct PartnersSetArgs {
    #[command(flatten)]
    pub selector: PartnerSelector,
    /// Whether the partner may derive, list and revoke tokens (unchanged when omitted).
    #[arg(long, value_enum)]
    pub token_management: Option<Switch>,
    /// Comma-separated scopes the partner may request (unchanged when omitted).
    #[arg(long, value_delimiter = ',')]
    pub allowed_scopes: Option<Vec<String>>,
}

/// `lmts policy ...`: the route policy of the gateway (SPEC C1).
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check a policy file: exit 0 when it parses and names only known scopes, else 3 with the line and the reason.
    #[command(after_help = "Example:\n  lmts policy check policy.toml")]
    Check {
        /// The policy file (TOML).
        file: PathBuf,
    },
    /// Say which rule decides a request and what it requires.
    #[command(
        after_help = "Examples:\n  lmts policy explain policy.toml POST /orders\n  lmts policy explain policy.toml GET '/markets/btc?depth=5' --scopes trading"
    )]
    Explain {
        /// The policy file (TOML).
        file: PathBuf,
        /// The request's method.
        method: String,
        /// The request target: path and query, as sent.
        target: String,
        /// The scopes of the token that would sign it (comma-separated): say whether they suffice.
        #[arg(long, value_delimiter = ',')]
        scopes: Option<Vec<String>>,
    },
}

/// `lmts dev ...`.
#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Print an identity token that `lmts serve --dev` on the same data directory accepts.
    #[command(
        after_help = "Example:\n  lmts dev identity-token --account 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed --ttl 1h"
    )]
    IdentityToken(IdentityTokenArgs),
}

/// Options of `lmts dev identity-token`.
#[derive(Debug, Args)]
pub struct IdentityTokenArgs {
    /// The wallet address the token speaks for.
    #[arg(long)]
    pub account: String,
    /// Lifetime: 90s, 30m, 1h, 2d or 1w.
    #[arg(long, default_value = "1h", value_parser = super::values::parse_lifetime)]
    pub ttl: chrono::TimeDelta,
    /// The audience (Privy app id) to write.
    #[arg(long, env = "LMTS_PRIVY_APP_ID", default_value = "lmts-dev")]
    pub app_id: String,
    /// The issuer to write.
    #[arg(long, env = "LMTS_IDENTITY_ISSUER", default_value = "privy.io")]
    pub issuer: String,
    #[command(flatten)]
    pub data_dir: DataDirArg,
}

/// Options of `lmts backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The file to write (never overwritten).
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Options of `lmts restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup to restore.
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `lmts keys ...`: master-key rotation (README, "Rotating the master key").
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Which master key id seals how many secrets (all rows, and the live tokens among them).
    #[command(after_help = "Example:\n  lmts keys status --data-dir /var/lib/lmts")]
    Status(StoreArgs),
    /// Re-seal every secret under the new key, online, in batches; run again after a crash.
    #[command(
        after_help = "Example:\n  lmts keys rotate --new-master-key-file new.key --master-key-file old.key --data-dir /var/lib/lmts"
    )]
    Rotate(KeysRotateArgs),
}

/// Options of `lmts keys rotate`.
#[derive(Debug, Args)]
pub struct KeysRotateArgs {
    /// The new master key (0600): every secret ends up sealed under it.
    #[arg(long, value_name = "FILE")]
    pub new_master_key_file: PathBuf,
    /// The key the secrets are sealed under now (default: the data directory's master.key).
    #[arg(long, value_name = "FILE")]
    pub master_key_file: Option<PathBuf>,
    /// Older keys some secrets may still be sealed under; repeat for several.
    #[arg(long = "retired-master-key-file", value_name = "FILE")]
    pub retired_master_key_files: Vec<PathBuf>,
    /// Rows re-sealed per transaction.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch: u32,
    #[command(flatten)]
    pub store: StoreArgs,
}
