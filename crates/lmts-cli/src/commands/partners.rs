//! `lmts partners set | show | list`: operator settings, written straight to the data directory's
//! database. A running server reads them on every request, so a change applies at once.

use lmts_core::Scope;
use lmts_server::store::{PartnerSettings, SettingsKey, Store};

use crate::{
    cli::{PartnerSelector, PartnersCommand, PartnersSetArgs, StoreArgs, Switch},
    exit::{CommandError, ConfigError},
    output::Output,
};
use lmts_server::clock::Clock;

fn settings_key(selector: &PartnerSelector) -> Result<SettingsKey, CommandError> {
    match &selector.target.account {
        None => Ok(SettingsKey::Default),
        Some(account) => super::admin::account_of(account).map(SettingsKey::Account),
    }
}

fn parse_scopes(names: &[String]) -> Result<Vec<Scope>, CommandError> {
    let mut scopes = Vec::new();
    for name in names
        .iter()
        .map(|name| name.trim())
        .filter(|name| !name.is_empty())
    {
        let scope = Scope::from(name);
        if !scope.is_known() {
            let known: Vec<String> = Scope::KNOWN.iter().map(Scope::to_string).collect();
            return Err(ConfigError(format!(
                "unknown scope {name:?}; known scopes: {}",
                known.join(", ")
            ))
            .into());
        }
        scopes.push(scope);
    }
    scopes.sort();
    scopes.dedup();
    Ok(scopes)
}

async fn current(
    store: &dyn Store,
    key: &SettingsKey,
) -> Result<(PartnerSettings, &'static str), CommandError> {
    Ok(match key {
        SettingsKey::Account(account) => match store.stored_settings(key).await? {
            Some(settings) => (settings, "own"),
            None => (store.partner_settings(account).await?, "default"),
        },
        SettingsKey::Default => match store.stored_settings(key).await? {
            Some(settings) => (settings, "configured"),
            None => (PartnerSettings::builtin_default(), "built-in"),
        },
    })
}

async fn print(store: &dyn Store, key: &SettingsKey, output: &Output) -> Result<(), CommandError> {
    let (settings, source) = current(store, key).await?;
    let (account, profile_id) = match key {
        SettingsKey::Account(account) => (
            Some(account.clone()),
            store
                .profile_by_account(account)
                .await?
                .map(|profile| profile.id),
        ),
        SettingsKey::Default => (None, None),
    };
    let scopes: Vec<&str> = settings.allowed_scopes.iter().map(Scope::as_str).collect();
    if output.is_json() {
        output.json(&serde_json::json!({
            "account": account,
            "profileId": profile_id,
            "tokenManagementEnabled": settings.token_management_enabled,
            "allowedScopes": scopes,
            "settings": source,
        }));
        return Ok(());
    }
    output.fields(&[
        (
            "account",
            account.unwrap_or_else(|| "(default for partners without settings)".into()),
        ),
        (
            "profile id",
            profile_id.map_or_else(|| "(not seen yet)".into(), |id| id.to_string()),
        ),
        (
            "token management",
            if settings.token_management_enabled {
                "on"
            } else {
                "off"
            }
            .into(),
        ),
        ("allowed scopes", scopes.join(",")),
        ("settings", source.into()),
    ]);
    Ok(())
}

async fn set(args: PartnersSetArgs, output: &Output) -> Result<(), CommandError> {
    let key = settings_key(&args.selector)?;
    if args.token_management.is_none() && args.allowed_scopes.is_none() {
        return Err(ConfigError(
            "nothing to change: give --token-management and/or --allowed-scopes".into(),
        )
        .into());
    }
    let store = super::admin::store_of(&args.selector.store).await?;
    let (mut settings, _) = current(&*store, &key).await?;
    if let Some(switch) = args.token_management {
        settings.token_management_enabled = switch == Switch::On;
    }
    if let Some(names) = &args.allowed_scopes {
        settings.allowed_scopes = parse_scopes(names)?;
    }
    store
        .set_settings(&key, &settings, Clock::system().now())
        .await?;
    print(&*store, &key, output).await
}

/// `lmts partners list`: every partner, its settings and live tokens.
async fn list(store: StoreArgs, output: &Output) -> Result<(), CommandError> {
    let store = super::admin::store_of(&store).await?;
    let partners = lmts_server::service::admin::partners(&*store, Clock::system().now()).await?;
    if output.is_json() {
        let partners: Vec<_> = partners
            .iter()
            .map(|partner| {
                serde_json::json!({
                    "account": partner.profile.account,
                    "profileId": partner.profile.id,
                    "tokenManagementEnabled": partner.settings.token_management_enabled,
                    "allowedScopes": partner.settings.allowed_scopes,
                    "liveTokens": partner.live_tokens,
                })
            })
            .collect();
        output.json(&partners);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = partners
        .iter()
        .map(|partner| {
            let scopes: Vec<&str> = partner
                .settings
                .allowed_scopes
                .iter()
                .map(Scope::as_str)
                .collect();
            vec![
                partner.profile.account.clone(),
                partner.profile.id.to_string(),
                if partner.settings.token_management_enabled {
                    "on"
                } else {
                    "off"
                }
                .into(),
                scopes.join(","),
                partner.live_tokens.to_string(),
            ]
        })
        .collect();
    output.table(
        &[
            "ACCOUNT",
            "PROFILE",
            "TOKEN MANAGEMENT",
            "ALLOWED SCOPES",
            "LIVE TOKENS",
        ],
        &rows,
    );
    Ok(())
}

/// Runs a `partners` subcommand.
pub async fn run(command: PartnersCommand, output: &Output) -> Result<(), CommandError> {
    match command {
        PartnersCommand::Set(args) => set(args, output).await,
        PartnersCommand::List(store) => list(store, output).await,
        PartnersCommand::Show(selector) => {
            let key = settings_key(&selector)?;
            let store = super::admin::store_of(&selector.store).await?;
            print(&*store, &key, output).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_merge_and_refuse_unknown() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_scopes(&names(&["withdrawal", " trading", "trading"])).unwrap(),
            vec![Scope::Trading, Scope::Withdrawal]
        );
        assert!(parse_scopes(&names(&["admin"])).is_err());
        assert!(parse_scopes(&names(&[])).unwrap().is_empty());
    }
}
