//! The seed documents' flow against the real lmts-server, in-process on 127.0.0.1:0.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::TimeDelta;
use common::*;
use lmts_sdk::{clock::Clock, Client, DeriveApiTokenInput, Error, Scope};
use lmts_server::store::{PartnerSettings, SettingsKey};

#[tokio::test]
async fn the_whole_seed_flow_and_the_refusal_of_revoked_credentials() {
    let server = RealServer::start().await;
    server
        .service
        .set_partner_settings(
            &SettingsKey::Account(ALICE.into()),
            &PartnerSettings {
                token_management_enabled: true,
                allowed_scopes: vec![
                    Scope::Trading,
                    Scope::AccountCreation,
                    Scope::DelegatedSigning,
                ],
            },
        )
        .await
        .unwrap();
    let identity_token = server.identity_token(ALICE);

    let client = Client::new(&server.base).unwrap();
    let caps = client
        .api_tokens()
        .get_capabilities(&identity_token)
        .await
        .unwrap();
    assert!(caps.token_management_enabled);
    assert_eq!(
        caps.allowed_scopes,
        [
            Scope::Trading,
            Scope::AccountCreation,
            Scope::DelegatedSigning
        ]
    );

    let derived = client
        .api_tokens()
        .derive_token(
            &identity_token,
            DeriveApiTokenInput {
                label: Some("production-bot".into()),
                scopes: vec![
                    Scope::Trading,
                    Scope::AccountCreation,
                    Scope::DelegatedSigning,
                ],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(derived.api_key, derived.token_id);
    assert_eq!(
        derived.scopes,
        [
            Scope::Trading,
            Scope::AccountCreation,
            Scope::DelegatedSigning
        ]
    );
    assert_eq!(derived.profile.account, ALICE);
    assert_eq!(derived.profile.id, caps.partner_profile_id);
    assert_eq!(derived.secret.expose_secret().len(), 32);

    let scoped = client.with_credentials(derived.credentials());
    let tokens = scoped.api_tokens().list_tokens().await.unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].token_id, derived.token_id);
    assert_eq!(tokens[0].label.as_deref(), Some("production-bot"));
    assert!(tokens[0].last_used_at.is_some());

    let secret_text = derived.secret.to_base64();
    for printed in [
        format!("{derived:?}"),
        format!("{:?}", derived.credentials()),
        format!("{scoped:?}"),
        format!("{:?}", scoped.credentials()),
    ] {
        assert!(!printed.contains(secret_text.as_str()), "{printed}");
    }

    let message = scoped
        .api_tokens()
        .revoke_token(&derived.token_id)
        .await
        .unwrap();
    assert!(!message.is_empty());
    let refused = scoped.api_tokens().list_tokens().await.unwrap_err();
    let api = refused.api().expect("an API answer");
    assert!(api.is_authentication(), "{refused}");
    assert!(api.message().contains("revoked"), "{}", api.message());
}

#[tokio::test]
async fn api_errors_keep_status_messages_and_body() {
    let server = RealServer::start().await;
    let client = Client::new(&server.base).unwrap();
    let identity_token = server.identity_token(ALICE);
    let error = client
        .api_tokens()
        .derive_token(
            &identity_token,
            DeriveApiTokenInput {
                label: None,
                scopes: vec![Scope::Withdrawal],
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    let api = error.api().unwrap();
    assert!(api.is_permission());
    assert_eq!(error.status(), Some(403));
    assert!(
        api.message().contains("allowed scopes: trading"),
        "{}",
        api.message()
    );
    assert!(api.body.contains("\"statusCode\":403"));
    assert_eq!(api.error.as_deref(), Some("Forbidden"));

    let response = client
        .api_tokens()
        .get_capabilities_with_response(&identity_token)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn input_errors_are_caught_before_the_network() {
    // Nothing listens here: any request would be a transport error.
    let client = Client::new("http://127.0.0.1:9").unwrap();
    let tokens = client.api_tokens();
    assert!(matches!(
        tokens.get_capabilities("").await,
        Err(Error::InvalidInput(_))
    ));
    let long = DeriveApiTokenInput {
        label: Some("x".repeat(129)),
        scopes: vec![],
        ..Default::default()
    };
    assert!(matches!(
        tokens.derive_token("t", long).await,
        Err(Error::InvalidInput(_))
    ));
    let orphan = DeriveApiTokenInput {
        label: None,
        scopes: vec![Scope::DelegatedSigning],
        ..Default::default()
    };
    assert!(matches!(
        tokens.derive_token("t", orphan).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        tokens.list_tokens().await,
        Err(Error::MissingCredentials)
    ));
    assert!(matches!(
        tokens.revoke_token("lmts_x").await,
        Err(Error::MissingCredentials)
    ));
}

#[tokio::test]
async fn a_skewed_local_clock_is_corrected_from_the_servers_date() {
    let server = RealServer::start().await;
    let identity_token = server.identity_token(ALICE);
    let skewed = Clock::from_fn(|| lmts_sdk::clock::Clock::system().now() - TimeDelta::minutes(5));
    let client = Client::builder()
        .base_url(&server.base)
        .clock(skewed)
        .build()
        .unwrap();
    let derived = client
        .api_tokens()
        .derive_token(&identity_token, DeriveApiTokenInput::default())
        .await
        .unwrap();
    let scoped = client.with_credentials(derived.credentials());
    assert_eq!(scoped.api_tokens().list_tokens().await.unwrap().len(), 1);
    let offset = client.clock_offset();
    assert!(
        (offset - TimeDelta::minutes(5)).abs() < TimeDelta::seconds(3),
        "{offset}"
    );
    // Learnt once, shared by clients of the same pool.
    assert_eq!(scoped.api_tokens().list_tokens().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_keyed_derive_answers_the_same_token_and_restrictions_round_trip() {
    let server = RealServer::start().await;
    let identity_token = server.identity_token(ALICE);
    let client = Client::new(&server.base).unwrap();
    let expires_at = now() + TimeDelta::days(30);
    let input = DeriveApiTokenInput {
        label: Some("restarted-bot".into()),
        expires_at: Some(expires_at),
        allowed_ips: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        ..Default::default()
    };
    let first = client
        .api_tokens()
        .derive_token_with_key(&identity_token, input.clone(), "restarted-bot-1")
        .await
        .unwrap()
        .into_body();
    let again = client
        .api_tokens()
        .derive_token_with_key(&identity_token, input.clone(), "restarted-bot-1")
        .await
        .unwrap()
        .into_body();
    assert_eq!(again.token_id, first.token_id);
    assert_eq!(again.secret.expose_secret(), first.secret.expose_secret());
    assert_eq!(first.allowed_ips, input.allowed_ips);
    assert_eq!(
        first.expires_at.unwrap().timestamp_millis(),
        expires_at.timestamp_millis()
    );
    let other = client
        .api_tokens()
        .derive_token_with_key(
            &identity_token,
            DeriveApiTokenInput::default(),
            "restarted-bot-1",
        )
        .await
        .unwrap_err();
    assert_eq!(other.status(), Some(409));

    let scoped = client.with_credentials(first.credentials());
    let listed = scoped.api_tokens().list_tokens().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].allowed_ips, input.allowed_ips);
    assert_eq!(listed[0].expires_at, first.expires_at);
}

#[tokio::test]
async fn rotation_hands_over_to_a_successor_that_knows_itself() {
    let server = RealServer::start().await;
    let identity_token = server.identity_token(ALICE);
    let client = Client::new(&server.base).unwrap();
    let input = DeriveApiTokenInput {
        label: Some("rotating-bot".into()),
        ..Default::default()
    };
    let old = client
        .api_tokens()
        .derive_token(&identity_token, input)
        .await
        .unwrap();
    let as_old = client.with_credentials(old.credentials());
    let new = as_old
        .api_tokens()
        .rotate_token(&old.token_id, Some(std::time::Duration::ZERO))
        .await
        .unwrap();
    assert_ne!(new.token_id, old.token_id);
    let as_new = client.with_credentials(new.credentials());
    let me = as_new.api_tokens().current_token().await.unwrap();
    assert_eq!(me.token_id, new.token_id);
    assert_eq!(me.label.as_deref(), Some("rotating-bot"));
    let refused = as_old.api_tokens().current_token().await.unwrap_err();
    assert_eq!(
        refused.status(),
        Some(401),
        "no overlap: the old token ended"
    );
    let two_weeks = Some(std::time::Duration::from_secs(14 * 86_400));
    let refused = as_new
        .api_tokens()
        .rotate_token(&new.token_id, two_weeks)
        .await;
    assert!(
        matches!(refused, Err(Error::InvalidInput(_))),
        "refused before sending"
    );
    let too_long = as_new
        .api_tokens()
        .rotate_token(
            &new.token_id,
            Some(std::time::Duration::from_secs(u64::from(u32::MAX) + 1)),
        )
        .await
        .unwrap_err();
    assert!(matches!(too_long, Error::InvalidInput(_)), "{too_long:?}");
}

#[tokio::test]
async fn events_page_with_a_cursor_and_name_what_happened() {
    let server = RealServer::start().await;
    let identity_token = server.identity_token(ALICE);
    let client = Client::new(&server.base).unwrap();
    let derived = client
        .api_tokens()
        .derive_token(&identity_token, DeriveApiTokenInput::default())
        .await
        .unwrap();
    let scoped = client.with_credentials(derived.credentials());
    let first = scoped.api_tokens().events(None, Some(1)).await.unwrap();
    assert_eq!(first.events.len(), 1);
    assert_eq!(first.events[0].kind, lmts_sdk::TokenEventType::Derived);
    assert_eq!(first.events[0].token_id, derived.token_id);
    assert_eq!(first.next, first.events[0].id);
    // The first signed request was this token's first from loopback: written off the
    // request's path, so looked for until it lands.
    let mut rest = Vec::new();
    for _ in 0..100 {
        rest = scoped
            .api_tokens()
            .events(Some(&first.next), None)
            .await
            .unwrap()
            .events;
        if !rest.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(rest[0].kind, lmts_sdk::TokenEventType::NewAddress);
    assert_eq!(rest[0].ip, Some("127.0.0.1".parse().unwrap()));
    let refused = scoped
        .api_tokens()
        .events(None, Some(501))
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(400));
}
