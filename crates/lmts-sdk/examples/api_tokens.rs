//! The seed flow against a running service: capabilities, derive, list, revoke, refusal.
//!
//! ```sh
//! lmts serve --dev &
//! export LIMITLESS_API_URL=http://127.0.0.1:8080
//! export LIMITLESS_IDENTITY_TOKEN=$(lmts dev identity-token --account 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed)
//! cargo run -p lmts-sdk --example api_tokens
//! ```

use lmts_sdk::{Client, DeriveApiTokenInput, Error, Scope};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let identity_token = std::env::var("LIMITLESS_IDENTITY_TOKEN")
        .map_err(|_| "set LIMITLESS_IDENTITY_TOKEN to a Privy identity token")?;
    let client = Client::from_env()?;

    let caps = client
        .api_tokens()
        .get_capabilities(&identity_token)
        .await?;
    println!(
        "capabilities: enabled={} scopes={:?}",
        caps.token_management_enabled, caps.allowed_scopes
    );

    let derived = client
        .api_tokens()
        .derive_token(
            &identity_token,
            DeriveApiTokenInput {
                label: Some("example".into()),
                scopes: vec![Scope::Trading],
                ..Default::default()
            },
        )
        .await?;
    println!(
        "derived {} with scopes {:?} (secret withheld)",
        derived.token_id, derived.scopes
    );

    let scoped = client.with_credentials(derived.credentials());
    for t in scoped.api_tokens().list_tokens().await? {
        println!(
            "live: {} {:?} {:?} {:?}",
            t.token_id, t.label, t.scopes, t.last_used_at
        );
    }
    let message = scoped.api_tokens().revoke_token(&derived.token_id).await?;
    println!("revoked: {message}");

    match scoped.api_tokens().list_tokens().await {
        Err(Error::Api(api)) if api.is_authentication() => {
            println!("revoked credentials refused: {}", api.message());
            Ok(())
        }
        other => Err(format!("revoked credentials were not refused: {other:?}").into()),
    }
}
