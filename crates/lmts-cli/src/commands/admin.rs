//! `lmts admin tokens | revoke | revoke-all`, straight in the database (both backends): the
//! rules are `lmts_server::service::admin`'s; this prints.

use lmts_core::wire::ApiToken;
use lmts_server::{
    account::checksum_address,
    clock::Clock,
    server::open_store,
    service::admin::{self, Operator},
    store::{PostgresOptions, Store},
};
use std::sync::Arc;

use crate::{
    cli::{AdminCommand, OperatorArgs, StoreArgs},
    exit::{CommandError, ConfigError},
    output::Output,
};

/// The store the options name.
pub(super) async fn store_of(args: &StoreArgs) -> Result<Arc<dyn Store>, CommandError> {
    Ok(open_store(
        &args.data_dir.data_dir,
        args.database_url.as_deref(),
        &PostgresOptions::default(),
    )
    .await?)
}

/// A wallet address in its EIP-55 form, or why it is not one.
pub(super) fn account_of(account: &str) -> Result<String, CommandError> {
    checksum_address(account).ok_or_else(|| {
        ConfigError(format!(
            "--account {account:?} is not a 0x-prefixed 20-byte hex address"
        ))
        .into()
    })
}

/// The operator the options name: `--operator`, else the login name.
fn operator_of(args: &OperatorArgs) -> Result<Operator, CommandError> {
    let name = args
        .operator
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|name| !name.trim().is_empty())
        .ok_or_else(|| {
            ConfigError(
                "name the operator with --operator (or LMTS_OPERATOR): USER and LOGNAME are unset"
                    .into(),
            )
        })?;
    Operator::new(&name, &args.reason).map_err(|error| ConfigError(error.to_string()).into())
}

/// `lmts admin tokens --account`.
async fn tokens(account: &str, store: &StoreArgs, output: &Output) -> Result<(), CommandError> {
    let account = account_of(account)?;
    let store = store_of(store).await?;
    let (profile, tokens) = admin::tokens(&*store, &account, Clock::system().now()).await?;
    let tokens: Vec<ApiToken> = tokens.into_iter().map(ApiToken::from).collect();
    if output.is_json() {
        output.json(&serde_json::json!({ "account": profile.account, "profileId": profile.id, "tokens": tokens }));
    } else {
        super::tokens::token_table(&tokens, output);
    }
    Ok(())
}

/// `lmts admin revoke` and `revoke-all`: what was revoked, and for whom.
fn show_revoked(account: &str, revoked: &[String], output: &Output) {
    if output.is_json() {
        output.json(&serde_json::json!({ "account": account, "revoked": revoked }));
    } else if revoked.is_empty() {
        println!("{account} held no live token");
    } else {
        for token_id in revoked {
            println!("revoked {token_id} of {account}");
        }
    }
}

/// Runs an `admin` subcommand.
pub async fn run(command: AdminCommand, output: &Output) -> Result<(), CommandError> {
    match command {
        AdminCommand::Tokens { account, store } => tokens(&account, &store, output).await,
        AdminCommand::Revoke {
            token_id,
            operator,
            store,
        } => {
            let operator = operator_of(&operator)?;
            let store = store_of(&store).await?;
            // Read once the store is open: what is live is judged by it.
            let now = Clock::system().now();
            let profile = admin::revoke(&*store, &token_id, &operator, now).await?;
            show_revoked(&profile.account, &[token_id], output);
            Ok(())
        }
        AdminCommand::RevokeAll {
            account,
            operator,
            store,
        } => {
            let operator = operator_of(&operator)?;
            let account = account_of(&account)?;
            let store = store_of(&store).await?;
            let now = Clock::system().now();
            let revoked = admin::revoke_all(&*store, &account, &operator, now).await?;
            let revoked: Vec<String> = revoked.iter().map(ToString::to_string).collect();
            show_revoked(&account, &revoked, output);
            Ok(())
        }
    }
}
