//! The command line, declared with clap. The client commands (`tokens`, `sign`, `request`,
//! `completions`) are always there; the server commands come with the `server` feature, their
//! options in `cli/server.rs`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod request;
#[cfg(feature = "server")]
mod server;
mod values;

pub use request::RequestArgs;
#[cfg(feature = "server")]
pub use server::*;

/// lmts: scoped API tokens for Limitless Exchange partners: the service, its administration,
/// and a client to derive, list, revoke and sign.
#[derive(Debug, Parser)]
#[command(name = "lmts", version, long_about = None, after_help = AFTER_HELP)]
#[cfg_attr(feature = "server", command(about))]
#[cfg_attr(not(feature = "server"), command(about = CLIENT_ABOUT))]
pub struct Cli {
    /// Output format.
    #[arg(long, global = true, env = "LMTS_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Print only what was asked for: no progress, no warnings.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// What the client-only build says it is (the full build says the crate's description).
#[cfg(not(feature = "server"))]
const CLIENT_ABOUT: &str =
    "The lmts client: derive, list and revoke scoped API tokens, and sign and send requests with them.";

/// The examples of the client commands, then what every build says about exit codes and colour
/// (a macro, so that `concat!` can take it).
macro_rules! client_help {
    () => {
        "  lmts tokens derive --label bot --save       derive a token and keep its credentials
  lmts sign --method GET --path /auth/api-tokens --explain
  lmts request POST /orders --body @order.json  send a signed request, print the answer

Exit codes: 0 success, 1 failure, 2 bad command line, 3 bad configuration,
4 the service refused the request (4xx), 5 the service could not be reached or failed.
Colour only on a terminal, never with NO_COLOR set."
    };
}

#[cfg(feature = "server")]
const AFTER_HELP: &str = concat!(
    "Examples:
  lmts demo                                   the whole token lifecycle, in one go
  lmts serve --dev                            run the service locally
",
    client_help!()
);

#[cfg(not(feature = "server"))]
const AFTER_HELP: &str = concat!("Examples:\n", client_help!());

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A readable table.
    Table,
    /// Stable JSON for scripts.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API-token service.
    #[cfg(feature = "server")]
    #[command(
        after_help = "Examples:\n  lmts serve --dev\n  LMTS_PRIVY_APP_ID=app LMTS_JWKS_URL=https://auth.privy.io/api/v1/apps/app/jwks.json lmts serve"
    )]
    Serve(ServeArgs),
    /// Run a verifying reverse proxy in front of an API: signed requests pass the route policy, then go upstream.
    #[cfg(feature = "server")]
    #[command(
        after_help = "Example:\n  lmts gateway --upstream http://127.0.0.1:9000 --policy policy.toml --listen 0.0.0.0:8443 --tls-cert cert.pem --tls-key key.pem"
    )]
    Gateway(GatewayArgs),
    /// Capabilities, derive, list and revoke against a service.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Print the lmts-* headers that sign a request.
    #[command(
        after_help = "Examples:\n  lmts sign --method GET --path /auth/api-tokens\n  lmts sign --method DELETE --path /auth/api-tokens/lmts_x --curl http://127.0.0.1:8080\n  lmts sign --method POST --path /orders --body @order.json --explain"
    )]
    Sign(SignArgs),
    /// Send a signed request to any path and print the answer; exit 4 or 5 unless it is 2xx.
    #[command(
        after_help = "Examples:\n  lmts request GET /auth/api-tokens\n  lmts request POST /orders --body @order.json -H 'Idempotency-Key: k1'\n  echo '{\"size\":1}' | lmts request PATCH '/orders/7?market=btc' --body @- --output json\n\nPrints the status line, the headers, a blank line and the body; with --quiet the body alone."
    )]
    Request(RequestArgs),
    /// Start a throw-away service and walk the whole token lifecycle against it.
    #[cfg(feature = "server")]
    Demo,
    /// Measure a fresh `lmts serve` under load: /health, list, derive and a revoke-heavy mix.
    #[cfg(feature = "server")]
    #[command(
        after_help = "Examples:\n  lmts bench --duration-secs 10\n  lmts bench --database-url postgres://postgres@127.0.0.1/lmts --scenario list --scenario derive"
    )]
    Bench(BenchArgs),
    /// Administer partners: token management and allowed scopes.
    #[cfg(feature = "server")]
    #[command(subcommand)]
    Partners(PartnersCommand),
    /// A partner's tokens, and the emergency stop: revoke one token or all of a partner's,
    /// straight in the database, effective on every instance.
    #[cfg(feature = "server")]
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Master keys: which seals how many secrets; re-seal every secret under a new key.
    #[cfg(feature = "server")]
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Copy the database to a file (SQLite: a consistent copy while the service runs, 0600;
    /// PostgreSQL: the pg_dump command to run). The master key is never in it: keep it apart.
    #[cfg(feature = "server")]
    #[command(
        after_help = "Examples:\n  lmts backup --to /backups/lmts-$(date +%F).db --data-dir /var/lib/lmts\n  lmts backup --to lmts.dump --database-url postgres://lmts@db/lmts"
    )]
    Backup(BackupArgs),
    /// Restore a backup into a fresh data directory (SQLite), or print the pg_restore command.
    #[cfg(feature = "server")]
    #[command(
        after_help = "Example:\n  lmts restore --from /backups/lmts-2026-11-25.db --data-dir /var/lib/lmts-restored"
    )]
    Restore(RestoreArgs),
    /// Check a gateway route policy, or explain what it requires of a request.
    #[cfg(feature = "server")]
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Development helpers for `lmts serve --dev`.
    #[cfg(feature = "server")]
    #[command(subcommand)]
    Dev(DevCommand),
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  lmts completions bash > ~/.local/share/bash-completion/completions/lmts"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Where the service is.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// The service's base URL (default: a saved profile's, else https://api.limitless.exchange).
    #[arg(long, env = "LIMITLESS_API_URL")]
    pub base_url: Option<String>,
    /// Also trust the certificate authorities in this PEM file (a deployment with a private CA).
    #[arg(long, env = "LMTS_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<std::path::PathBuf>,
}

/// Where the Privy identity token comes from.
#[derive(Debug, Args)]
pub struct IdentityArgs {
    /// The Privy identity token (prefer the environment variable or a file: flags land in shell history).
    #[arg(
        long,
        env = "LIMITLESS_IDENTITY_TOKEN",
        hide_env_values = true,
        conflicts_with = "identity_token_file"
    )]
    pub identity_token: Option<String>,
    /// A file holding the identity token; `-` reads standard input.
    #[arg(long)]
    pub identity_token_file: Option<PathBuf>,
}

impl IdentityArgs {
    /// Whether an identity token was given, by flag, variable or file (`lmts bench` asks).
    #[cfg(feature = "server")]
    pub fn given(&self) -> bool {
        self.identity_token.is_some() || self.identity_token_file.is_some()
    }
}

/// Which HMAC credentials sign.
#[derive(Debug, Args)]
pub struct CredentialArgs {
    /// A profile of the credentials file (default: the environment's token, else profile "default").
    #[arg(long, env = "LMTS_PROFILE")]
    pub profile: Option<String>,
    /// The credentials file.
    #[arg(long, env = "LMTS_CREDENTIALS_FILE", default_value_os_t = crate::credentials_file::default_path())]
    pub credentials_file: PathBuf,
}

/// `lmts tokens ...`.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Whether token management is enabled, and which scopes may be requested.
    #[command(
        after_help = "Example:\n  lmts tokens capabilities --identity-token-file - < token.jwt"
    )]
    Capabilities {
        #[command(flatten)]
        service: ServiceArgs,
        #[command(flatten)]
        identity: IdentityArgs,
    },
    /// Derive a new token; its secret is shown this once.
    #[command(
        after_help = "Examples:\n  lmts tokens derive --label bot --scope trading --save\n  lmts tokens derive --scope trading --scope account_creation --output json"
    )]
    Derive(DeriveArgs),
    /// List the partner's live tokens (with --quiet: their ids only, one per line).
    #[command(after_help = "Example:\n  lmts tokens list --profile default")]
    List {
        #[command(flatten)]
        service: ServiceArgs,
        #[command(flatten)]
        credentials: CredentialArgs,
    },
    /// Revoke a token, effective at once.
    #[command(after_help = "Example:\n  lmts tokens revoke lmts_Rcj8KB41f2UG21D_2B_Nirej")]
    Revoke {
        /// The id of the token to revoke.
        token_id: String,
        #[command(flatten)]
        service: ServiceArgs,
        #[command(flatten)]
        credentials: CredentialArgs,
    },
    /// Rotate a token: a successor with its label, scopes, addresses and expiry (its secret
    /// shown this once), while the rotated token keeps working for the overlap.
    #[command(
        after_help = "Examples:\n  lmts tokens rotate lmts_Rcj8KB41f2UG21D_2B_Nirej --overlap 1h --save\n  lmts tokens rotate lmts_Rcj8KB41f2UG21D_2B_Nirej --overlap 0s --profile bot --save bot"
    )]
    Rotate(RotateArgs),
    /// The partner's audit events, oldest first: derives, rotations, revokes, expiries, failed
    /// requests, new addresses.
    #[command(
        after_help = "Examples:\n  lmts tokens events --limit 20\n  lmts tokens events --follow --output json"
    )]
    Events(EventsArgs),
    /// Show the token these credentials sign with: scopes, expiry, addresses, last use.
    #[command(after_help = "Example:\n  lmts tokens whoami --profile bot")]
    Whoami {
        #[command(flatten)]
        service: ServiceArgs,
        #[command(flatten)]
        credentials: CredentialArgs,
    },
}

/// Options of `lmts tokens events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Start after this cursor (a `next` printed before; default: from the first event).
    #[arg(long)]
    pub after: Option<String>,
    /// At most this many events a page.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub limit: u32,
    /// Keep polling for new events, every two seconds, until interrupted (JSON: one event a
    /// line).
    #[arg(long)]
    pub follow: bool,
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub credentials: CredentialArgs,
}

/// Options of `lmts tokens rotate`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The id of the token to rotate.
    pub token_id: String,
    /// How long the rotated token keeps working: 0s to 1w (default: the service's, 1h).
    #[arg(long, value_name = "SPAN", value_parser = values::parse_duration)]
    pub overlap: Option<std::time::Duration>,
    /// Save the successor's credentials under this profile name (without a name: the profile
    /// the request is signed with, else "default").
    #[arg(long, value_name = "NAME", num_args = 0..=1)]
    pub save: Option<Option<String>>,
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub credentials: CredentialArgs,
}

/// Options of `lmts tokens derive`.
#[derive(Debug, Args)]
pub struct DeriveArgs {
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// A name for the token (at most 128 characters).
    #[arg(long)]
    pub label: Option<String>,
    /// A scope to request; repeat for several (default: trading).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// The token stops working after this span: 3600s, 90m, 12h, 30d, 2w (at most a year).
    #[arg(long, value_name = "SPAN", value_parser = values::parse_lifetime, conflicts_with = "expires_at")]
    pub expires_in: Option<chrono::TimeDelta>,
    /// The token stops working at this RFC 3339 time (at most a year ahead).
    #[arg(long, value_name = "TIME", value_parser = values::parse_time)]
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Accept the token's requests only from this address or CIDR block; repeat, or separate
    /// with commas (at most 32; default: any address).
    #[arg(long = "allow-ip", value_name = "CIDR", value_delimiter = ',', value_parser = values::parse_block)]
    pub allowed_ips: Vec<lmts_sdk::IpNet>,
    /// Save the credentials under this profile name (default name: "default").
    #[arg(long, num_args = 0..=1, default_missing_value = "default")]
    pub save: Option<String>,
    /// The credentials file --save writes.
    #[arg(long, env = "LMTS_CREDENTIALS_FILE", default_value_os_t = crate::credentials_file::default_path())]
    pub credentials_file: PathBuf,
}

/// Options of `lmts sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The HTTP method.
    #[arg(long)]
    pub method: String,
    /// The request target: path and query exactly as sent, e.g. /orders?market=btc.
    #[arg(long)]
    pub path: String,
    /// The body: text, or @FILE to read a file's exact bytes.
    #[arg(long)]
    pub body: Option<String>,
    /// Sign at this RFC 3339 time instead of now (to reproduce a signature).
    #[arg(long)]
    pub timestamp: Option<String>,
    /// Print a ready curl command for the service at this base URL.
    #[arg(long, value_name = "BASE_URL")]
    pub curl: Option<String>,
    /// Print the canonical message with its separators made visible.
    #[arg(long)]
    pub explain: bool,
    #[command(flatten)]
    pub credentials: CredentialArgs,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("lmts").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    fn assert_accepted_or_refused(cases: &[(&[&str], bool)]) {
        for (args, ok) in cases {
            assert_eq!(parse(args).is_ok(), *ok, "{args:?}");
        }
    }

    #[test]
    fn table_of_accepted_and_refused_command_lines() {
        assert_accepted_or_refused(&[
            (
                &[
                    "tokens",
                    "derive",
                    "--scope",
                    "trading",
                    "--scope",
                    "withdrawal",
                    "--save",
                ],
                true,
            ),
            (
                &[
                    "tokens",
                    "derive",
                    "--identity-token",
                    "t",
                    "--identity-token-file",
                    "-",
                ],
                false,
            ),
            (&["tokens", "revoke"], false),
            (
                &[
                    "tokens",
                    "revoke",
                    "lmts_x",
                    "--profile",
                    "bot",
                    "--output",
                    "json",
                ],
                true,
            ),
            (&["--output", "yaml", "tokens", "list"], false),
            (&["sign", "--method", "GET"], false),
            (
                &["sign", "--method", "GET", "--path", "/x", "--explain", "-q"],
                true,
            ),
            (&["request", "GET"], false),
            (
                &[
                    "request", "post", "/o?a=1", "--body", "@-", "-H", "A: b", "-H", "C: d",
                ],
                true,
            ),
            (&["completions", "fish"], true),
            (&["completions", "cmd"], false),
        ]);
    }

    #[cfg(feature = "server")]
    #[test]
    fn table_of_accepted_and_refused_server_command_lines() {
        assert_accepted_or_refused(&[
            (
                &[
                    "partners",
                    "set",
                    "--account",
                    "0x1",
                    "--token-management",
                    "off",
                ],
                true,
            ),
            (
                &[
                    "partners",
                    "set",
                    "--default",
                    "--allowed-scopes",
                    "trading,withdrawal",
                ],
                true,
            ),
            (&["partners", "set", "--token-management", "off"], false),
            (&["partners", "set", "--default", "--account", "0x1"], false),
            (
                &[
                    "partners",
                    "set",
                    "--default",
                    "--token-management",
                    "maybe",
                ],
                false,
            ),
            (&["demo", "--quiet"], true),
        ]);
    }

    #[cfg(not(feature = "server"))]
    #[test]
    fn the_client_only_build_knows_no_server_command() {
        let names: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|command| command.get_name().to_owned())
            .collect();
        assert_eq!(names, ["tokens", "sign", "request", "completions"]);
        for server_command in ["serve", "partners", "dev", "demo", "bench"] {
            let refused = parse(&[server_command]).unwrap_err();
            assert_eq!(
                refused.kind(),
                clap::error::ErrorKind::InvalidSubcommand,
                "{server_command}"
            );
        }
    }

    #[test]
    fn save_takes_an_optional_name() {
        let name = |args: &[&str]| match parse(args).unwrap().command {
            Command::Tokens(TokensCommand::Derive(derive)) => derive.save,
            other => panic!("{other:?}"),
        };
        assert_eq!(name(&["tokens", "derive"]), None);
        assert_eq!(
            name(&["tokens", "derive", "--save"]).as_deref(),
            Some("default")
        );
        assert_eq!(
            name(&["tokens", "derive", "--save", "bot"]).as_deref(),
            Some("bot")
        );
    }
}
