//! `lmts tokens capabilities | derive | list | revoke | rotate | events | whoami`, through the
//! SDK.

use std::{io::Read, path::Path};

use chrono::{DateTime, Utc};
use lmts_core::{
    error_chain::error_chain, scope::join_scopes as scopes_text, signing::format_timestamp,
};
use lmts_sdk::{
    clock::Clock, ApiToken, Client, DeriveApiTokenInput, DeriveApiTokenResponse, Error as SdkError,
    IpNet, Scope, TokenEventPage, DEFAULT_BASE_URL,
};
use zeroize::Zeroizing;

use crate::{
    cli::{
        CredentialArgs, DeriveArgs, EventsArgs, IdentityArgs, RotateArgs, ServiceArgs,
        TokensCommand,
    },
    credentials_file::{self, CredentialsFile, SavedProfile, DEFAULT_PROFILE},
    exit::{CommandError, ConfigError, Hinted},
    output::Output,
};

/// Reads the identity token from the flag or environment, a file, or standard input.
pub(super) fn identity_token(args: &IdentityArgs) -> Result<Zeroizing<String>, CommandError> {
    let text = if let Some(token) = &args.identity_token {
        Zeroizing::new(token.clone())
    } else {
        match &args.identity_token_file {
            Some(path) if path == Path::new("-") => {
                let mut text = Zeroizing::new(String::new());
                std::io::stdin().read_to_string(&mut text)?;
                text
            }
            Some(path) => Zeroizing::new(std::fs::read_to_string(path).map_err(|error| {
                ConfigError(format!("identity token file {}: {error}", path.display()))
            })?),
            None => {
                return Err(ConfigError(
                    "no identity token: set LIMITLESS_IDENTITY_TOKEN, or pass --identity-token-file FILE (- reads standard input)".into(),
                )
                .into())
            }
        }
    };
    Ok(Zeroizing::new(text.trim().to_owned()))
}

/// A client for the first base URL given: the flag or environment, then a saved one.
pub fn client(service: &ServiceArgs, saved: Option<&str>) -> Result<Client, CommandError> {
    let base_url = service
        .base_url
        .as_deref()
        .or(saved)
        .unwrap_or(DEFAULT_BASE_URL);
    let mut builder = Client::builder().base_url(base_url);
    if let Some(path) = &service.ca_file {
        builder = builder.root_certificates_pem(read_ca_file(path)?);
    }
    Ok(builder.build()?)
}

/// The PEM bundle of `--ca-file`.
pub(super) fn read_ca_file(path: &Path) -> Result<Vec<u8>, CommandError> {
    std::fs::read(path)
        .map_err(|error| ConfigError(format!("--ca-file {}: {error}", path.display())).into())
}

/// Advice for a refused server certificate (`reason`: rustls's words) at `base_url`.
fn certificate_hint(reason: &str, base_url: &str) -> String {
    if reason.contains("UnknownIssuer") || reason.contains("CaUsedAsEndEntity") {
        format!("no trusted authority issued the certificate of {base_url}: if a private one did, give its certificate with --ca-file (LMTS_CA_FILE)")
    } else {
        format!(
            "the certificate of {base_url} was refused (its names or dates?): see the reason above"
        )
    }
}

/// Adds advice to an SDK error where some helps.
pub(super) fn hinted(error: SdkError, client: &Client, signed: bool) -> CommandError {
    let chain = error_chain(&error).to_string();
    let hint = match &error {
        SdkError::Transport(_) if chain.contains("peer certificate") => {
            Some(certificate_hint(&chain, client.base_url()))
        }
        SdkError::Transport(_) | SdkError::Timeout(_) => Some(format!(
            "is the service running at {}? (set --base-url or LIMITLESS_API_URL)",
            client.base_url()
        )),
        SdkError::Api(api) if api.is_authentication() && api.message().contains("timestamp") => {
            clock_hint(api)
        }
        SdkError::Api(api) if api.is_authentication() && signed => Some(
            "the token may have been revoked; derive a new one with `lmts tokens derive --save`"
                .into(),
        ),
        SdkError::Api(api) if api.is_authentication() => {
            Some("the identity token may have expired; get a fresh one".into())
        }
        SdkError::Api(api) if api.is_rate_limited() => api
            .retry_after
            .map(|wait| format!("retry after {} s", wait.as_secs().max(1))),
        _ => None,
    };
    match hint {
        Some(hint) => Hinted {
            error: error.into(),
            hint,
        }
        .into(),
        None => error.into(),
    }
}

/// How far the local clock is from the service's, from the answer's `Date`.
fn clock_hint(api: &lmts_sdk::ApiError) -> Option<String> {
    let date = api.headers.get("date")?.to_str().ok()?;
    let server = chrono::DateTime::<chrono::Utc>::from(httpdate::parse_http_date(date).ok()?);
    let skew = (lmts_sdk::clock::Clock::system().now() - server).num_seconds();
    Some(format!(
        "the local clock is about {} s {} the service's; fix the clock (e.g. enable NTP)",
        skew.abs(),
        if skew >= 0 { "ahead of" } else { "behind" }
    ))
}

async fn capabilities(
    service: ServiceArgs,
    identity: IdentityArgs,
    output: &Output,
) -> Result<(), CommandError> {
    let token = identity_token(&identity)?;
    let client = client(&service, None)?;
    let caps = client
        .api_tokens()
        .get_capabilities(&token)
        .await
        .map_err(|error| hinted(error, &client, false))?;
    if output.is_json() {
        output.json(&caps);
    } else {
        output.fields(&[
            ("partner profile id", caps.partner_profile_id.to_string()),
            (
                "token management",
                if caps.token_management_enabled {
                    "on"
                } else {
                    "off"
                }
                .into(),
            ),
            ("allowed scopes", scopes_text(&caps.allowed_scopes)),
        ]);
    }
    Ok(())
}

async fn derive(args: DeriveArgs, output: &Output) -> Result<(), CommandError> {
    let token = identity_token(&args.identity)?;
    let client = client(&args.service, None)?;
    let expires_at = match args.expires_in {
        Some(span) => Some(
            Clock::system()
                .now()
                .checked_add_signed(span)
                .ok_or_else(|| ConfigError("--expires-in is too far ahead".into()))?,
        ),
        None => args.expires_at,
    };
    let input = DeriveApiTokenInput {
        label: args.label,
        scopes: args
            .scopes
            .iter()
            .map(|scope| Scope::from(scope.as_str()))
            .collect(),
        expires_at,
        allowed_ips: args.allowed_ips,
    };
    let derived = match client.api_tokens().derive_token(&token, input).await {
        Ok(derived) => derived,
        Err(SdkError::Api(api)) if api.is_permission() => {
            let allowed = client.api_tokens().get_capabilities(&token).await.ok();
            let error = SdkError::Api(api);
            return Err(match allowed {
                Some(caps) => Hinted {
                    error: error.into(),
                    hint: format!(
                        "this partner may request: {}",
                        scopes_text(&caps.allowed_scopes)
                    ),
                }
                .into(),
                None => error.into(),
            });
        }
        Err(error) => return Err(hinted(error, &client, false)),
    };
    if let Some(name) = &args.save {
        save(&derived, name, &client, &args.credentials_file, output)?;
    }
    show_derived(&derived, output);
    Ok(())
}

/// Saves `derived`'s credentials as profile `name` of the credentials file at `path`.
fn save(
    derived: &DeriveApiTokenResponse,
    name: &str,
    client: &Client,
    path: &Path,
    output: &Output,
) -> Result<(), CommandError> {
    let mut file = CredentialsFile::load(path)?;
    file.profiles.insert(
        name.to_owned(),
        SavedProfile {
            base_url: Some(client.base_url().trim_end_matches('/').to_owned()),
            token_id: derived.token_id.to_string(),
            secret: derived.secret.to_base64().to_string(),
            expires_at: derived.expires_at,
        },
    );
    file.save(path)?;
    output.note(&format!("saved as profile {name:?} in {}", path.display()));
    Ok(())
}

/// Shows a derived (or rotated) token with its secret, and warns that it is shown once.
fn show_derived(derived: &DeriveApiTokenResponse, output: &Output) {
    if output.is_json() {
        output.json(derived);
    } else {
        output.fields(&[
            ("token id", derived.token_id.to_string()),
            ("scopes", scopes_text(&derived.scopes)),
            ("created at", format_timestamp(derived.created_at)),
            ("expires at", expiry_text(derived.expires_at)),
            ("allowed ips", blocks_text(&derived.allowed_ips)),
            (
                "profile",
                format!("{} ({})", derived.profile.id, derived.profile.account),
            ),
            ("secret", derived.secret.to_base64().to_string()),
        ]);
    }
    output
        .warn("the secret is shown only this once: store it now; the service cannot show it again");
}

/// `lmts tokens rotate`: the successor shown (and saved), the overlap said.
async fn rotate(args: RotateArgs, output: &Output) -> Result<(), CommandError> {
    let client = signing_client(&args.service, &args.credentials, output)?;
    let successor = client
        .api_tokens()
        .rotate_token(&args.token_id, args.overlap)
        .await
        .map_err(|error| hinted(error, &client, true))?;
    if let Some(name) = &args.save {
        let signing_profile = args.credentials.profile.as_deref();
        let name = name
            .as_deref()
            .or(signing_profile)
            .unwrap_or(DEFAULT_PROFILE);
        save(
            &successor,
            name,
            &client,
            &args.credentials.credentials_file,
            output,
        )?;
    }
    show_derived(&successor, output);
    let overlap = args.overlap.map_or_else(
        || "the service's default overlap (1h)".to_owned(),
        |span| format!("{} s", span.as_secs()),
    );
    output.note(&format!(
        "{} keeps working for {overlap}, then expires; revoke it to end it sooner",
        args.token_id
    ));
    Ok(())
}

/// `lmts tokens events`: one page, or every page and then new events as they come.
async fn events(args: EventsArgs, output: &Output) -> Result<(), CommandError> {
    let client = signing_client(&args.service, &args.credentials, output)?;
    let mut after = args.after;
    loop {
        let page = client
            .api_tokens()
            .events(after.as_deref(), Some(args.limit))
            .await
            .map_err(|error| hinted(error, &client, true))?;
        let full = page.events.len() == args.limit as usize;
        show_events(&page, args.follow, output);
        after = Some(page.next);
        if full {
            continue;
        }
        if !args.follow {
            output.note(&format!("next: {}", after.as_deref().unwrap_or("")));
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// Prints a page of events: a table (without its header when following), or JSON (the page,
/// or one event a line when following).
fn show_events(page: &TokenEventPage, follow: bool, output: &Output) {
    if output.is_json() {
        if !follow {
            output.json(page);
            return;
        }
        for event in &page.events {
            if let Ok(line) = serde_json::to_string(event) {
                println!("{line}");
            }
        }
        return;
    }
    let rows: Vec<Vec<String>> = page
        .events
        .iter()
        .map(|event| {
            vec![
                event.id.clone(),
                format_timestamp(event.at),
                event.kind.as_str().to_owned(),
                event.token_id.to_string(),
                event.ip.map_or_else(|| "-".into(), |ip| ip.to_string()),
                event.detail.clone(),
            ]
        })
        .collect();
    if !rows.is_empty() || !follow {
        output.table(&["ID", "AT", "TYPE", "TOKEN", "IP", "DETAIL"], &rows);
    }
}

/// `lmts tokens whoami`: the token the credentials sign with.
async fn whoami(
    service: ServiceArgs,
    credentials: CredentialArgs,
    output: &Output,
) -> Result<(), CommandError> {
    let client = signing_client(&service, &credentials, output)?;
    let token = client
        .api_tokens()
        .current_token()
        .await
        .map_err(|error| hinted(error, &client, true))?;
    if output.is_json() {
        output.json(&token);
        return Ok(());
    }
    output.fields(&[
        ("token id", token.token_id.to_string()),
        ("label", token.label.clone().unwrap_or_else(|| "-".into())),
        ("scopes", scopes_text(&token.scopes)),
        ("created at", format_timestamp(token.created_at)),
        ("expires at", expiry_text(token.expires_at)),
        ("allowed ips", blocks_text(&token.allowed_ips)),
        (
            "last used",
            token
                .last_used_at
                .map_or_else(|| "never".into(), format_timestamp),
        ),
    ]);
    Ok(())
}

/// `expiresAt` as the tables show it.
fn expiry_text(expires_at: Option<DateTime<Utc>>) -> String {
    expires_at.map_or_else(|| "never".into(), format_timestamp)
}

/// `allowedIps` as the tables show it.
fn blocks_text(blocks: &[IpNet]) -> String {
    if blocks.is_empty() {
        return "any".into();
    }
    let blocks: Vec<String> = blocks.iter().map(IpNet::to_string).collect();
    blocks.join(",")
}

/// A client signing with the credentials `credentials` picks, for the first base URL given;
/// saved credentials close to their expiry warn.
pub(super) fn signing_client(
    service: &ServiceArgs,
    credentials: &CredentialArgs,
    output: &Output,
) -> Result<Client, CommandError> {
    let resolved = credentials_file::resolve(
        credentials.profile.as_deref(),
        &credentials.credentials_file,
    )?;
    if let Some(warning) = resolved.expiry_warning(Clock::system().now()) {
        output.warn(&warning);
    }
    Ok(client(service, resolved.base_url.as_deref())?.with_credentials(resolved.credentials))
}

async fn list(
    service: ServiceArgs,
    credentials: CredentialArgs,
    output: &Output,
) -> Result<(), CommandError> {
    let client = signing_client(&service, &credentials, output)?;
    let tokens = client
        .api_tokens()
        .list_tokens()
        .await
        .map_err(|error| hinted(error, &client, true))?;
    if output.is_json() {
        output.json(&tokens);
        return Ok(());
    }
    if output.quiet {
        for token in &tokens {
            println!("{}", token.token_id);
        }
        return Ok(());
    }
    token_table(&tokens, output);
    Ok(())
}

/// Tokens as a table: `tokens list`, and `admin tokens` of a partner.
pub(super) fn token_table(tokens: &[ApiToken], output: &Output) {
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|token| {
            vec![
                token.token_id.to_string(),
                token.label.clone().unwrap_or_else(|| "-".into()),
                scopes_text(&token.scopes),
                format_timestamp(token.created_at),
                expiry_text(token.expires_at),
                blocks_text(&token.allowed_ips),
                token
                    .last_used_at
                    .map_or_else(|| "never".into(), format_timestamp),
            ]
        })
        .collect();
    output.table(
        &[
            "TOKEN ID",
            "LABEL",
            "SCOPES",
            "CREATED",
            "EXPIRES",
            "ALLOWED IPS",
            "LAST USED",
        ],
        &rows,
    );
}

async fn revoke(
    token_id: String,
    service: ServiceArgs,
    credentials: CredentialArgs,
    output: &Output,
) -> Result<(), CommandError> {
    let client = signing_client(&service, &credentials, output)?;
    let message = client
        .api_tokens()
        .revoke_token(&token_id)
        .await
        .map_err(|error| hinted(error, &client, true))?;
    if output.is_json() {
        output.json(&serde_json::json!({ "tokenId": token_id, "message": message }));
    } else {
        println!("revoked {token_id}: {message}");
    }
    if client
        .credentials()
        .is_some_and(|c| c.token_id.as_str() == token_id)
    {
        output.warn("these were the credentials used to sign; they no longer work");
    }
    Ok(())
}

/// Runs a `tokens` subcommand.
pub async fn run(command: TokensCommand, output: &Output) -> Result<(), CommandError> {
    match command {
        TokensCommand::Capabilities { service, identity } => {
            capabilities(service, identity, output).await
        }
        TokensCommand::Derive(args) => derive(args, output).await,
        TokensCommand::List {
            service,
            credentials,
        } => list(service, credentials, output).await,
        TokensCommand::Revoke {
            token_id,
            service,
            credentials,
        } => revoke(token_id, service, credentials, output).await,
        TokensCommand::Rotate(args) => rotate(args, output).await,
        TokensCommand::Events(args) => events(args, output).await,
        TokensCommand::Whoami {
            service,
            credentials,
        } => whoami(service, credentials, output).await,
    }
}
