//! `lmts demo`: a throw-away service on a temporary data directory, and the whole lifecycle
//! against it through the SDK, each step printed and checked.

use chrono::TimeDelta;
use lmts_sdk::{Client, DeriveApiTokenInput, DeriveApiTokenResponse, Scope};
use lmts_server::{
    clock::Clock,
    identity::dev::{DevIssuer, DEV_APP_ID},
    server::{Server, ServerConfig},
};

use crate::{
    exit::{CommandError, StepFailed},
    output::Output,
};

const DEMO_ACCOUNT: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";

fn check(output: &Output, held: bool, what: String) -> Result<(), CommandError> {
    if held {
        output.step_ok(&what);
        Ok(())
    } else {
        output.step_failed(&what);
        Err(StepFailed(what).into())
    }
}

/// Runs the demo; fails on the first step that does not hold.
pub async fn run(output: &Output) -> Result<(), CommandError> {
    let data = tempfile::tempdir()?;
    let mut config = ServerConfig::new(data.path());
    config.listen = "127.0.0.1:0".parse()?;
    config.dev = true;
    let server = Server::bind(config).await?;
    let base = format!("http://{}", server.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    output.note(&format!(
        "lmts demo: a throw-away service at {base} on {}",
        data.path().display()
    ));

    let result = lifecycle(&base, data.path(), output).await;
    let _ = stop.send(());
    let _ = serving.await;
    result?;
    output.step_ok("every step held");
    Ok(())
}

/// The lifecycle, step by step; stops at the first step that does not hold.
async fn lifecycle(
    base: &str,
    data: &std::path::Path,
    output: &Output,
) -> Result<(), CommandError> {
    let identity = mint_identity(data, output)?;
    let client = Client::new(base)?;
    show_capabilities(&client, &identity, output).await?;
    let derived = derive_token(&client, &identity, output).await?;
    let scoped = client.with_credentials(derived.credentials());
    list_tokens(&scoped, &derived, output).await?;
    sign_by_hand(base, &derived, output).await?;
    revoke_token(&scoped, &derived, output).await?;
    see_revoked_credentials_refused(&scoped, output).await
}

/// Step 1: an identity token from the throw-away service's dev issuer.
fn mint_identity(data: &std::path::Path, output: &Output) -> Result<String, CommandError> {
    let identity = DevIssuer::load_or_create(data)?.issue(
        DEMO_ACCOUNT,
        "privy.io",
        DEV_APP_ID,
        Clock::system().now(),
        TimeDelta::minutes(10),
    )?;
    check(
        output,
        true,
        format!("1. minted a dev identity token for {DEMO_ACCOUNT}"),
    )?;
    Ok(identity)
}

/// Step 2: token management is on for the new partner, with the default scopes.
async fn show_capabilities(
    client: &Client,
    identity: &str,
    output: &Output,
) -> Result<(), CommandError> {
    let caps = client.api_tokens().get_capabilities(identity).await?;
    check(
        output,
        caps.token_management_enabled && caps.allowed_scopes == [Scope::Trading],
        format!(
            "2. capabilities: profile {}, token management on, allowed scopes {}",
            caps.partner_profile_id,
            lmts_core::scope::join_scopes(&caps.allowed_scopes)
        ),
    )
}

/// Step 3: a trading token, its secret kept in memory only.
async fn derive_token(
    client: &Client,
    identity: &str,
    output: &Output,
) -> Result<DeriveApiTokenResponse, CommandError> {
    let derived = client
        .api_tokens()
        .derive_token(
            identity,
            DeriveApiTokenInput {
                label: Some("demo".into()),
                scopes: vec![Scope::Trading],
                ..Default::default()
            },
        )
        .await?;
    check(
        output,
        derived.secret.expose_secret().len() == 32 && derived.api_key == derived.token_id,
        format!(
            "3. derived token {} (a 32-byte secret, shown once and kept in memory only)",
            derived.token_id
        ),
    )?;
    Ok(derived)
}

/// Step 4: the new token lists itself, signed with its own credentials.
async fn list_tokens(
    scoped: &Client,
    derived: &DeriveApiTokenResponse,
    output: &Output,
) -> Result<(), CommandError> {
    let tokens = scoped.api_tokens().list_tokens().await?;
    check(
        output,
        tokens.iter().any(|t| t.token_id == derived.token_id),
        format!(
            "4. listed {} live token(s), the new one among them",
            tokens.len()
        ),
    )
}

/// Step 5: the three `lmts-*` headers computed here and sent with a plain HTTP client.
async fn sign_by_hand(
    base: &str,
    derived: &DeriveApiTokenResponse,
    output: &Output,
) -> Result<(), CommandError> {
    let target = "/auth/api-tokens";
    let headers = derived.credentials().signer().sign_request(
        derived.token_id.as_str(),
        Clock::system().now(),
        "GET",
        target,
        b"",
    );
    let mut request = reqwest::Client::new().get(format!("{base}{target}"));
    for (name, value) in headers.pairs() {
        request = request.header(name, value);
    }
    let status = request.send().await?.status();
    check(
        output,
        status == reqwest::StatusCode::OK,
        format!("5. a request signed by hand (lmts-api-key, lmts-timestamp, lmts-signature) answered {status}"),
    )
}

/// Step 6: the token revokes itself.
async fn revoke_token(
    scoped: &Client,
    derived: &DeriveApiTokenResponse,
    output: &Output,
) -> Result<(), CommandError> {
    let message = scoped.api_tokens().revoke_token(&derived.token_id).await?;
    check(
        output,
        true,
        format!("6. revoked {}: {message}", derived.token_id),
    )
}

/// Step 7: the very next request with the revoked credentials gets a 401.
async fn see_revoked_credentials_refused(
    scoped: &Client,
    output: &Output,
) -> Result<(), CommandError> {
    let refused = scoped.api_tokens().list_tokens().await;
    let refusal = refused
        .as_ref()
        .err()
        .and_then(|error| error.api())
        .map(|api| (api.status, api.message()));
    check(
        output,
        matches!(refusal, Some((401, _))),
        match refusal {
            Some((status, message)) => {
                format!("7. the revoked credentials are refused: {status} {message}")
            }
            None => "7. the revoked credentials were NOT refused".into(),
        },
    )
}
