//! The four endpoints' success paths over real HTTP, checked field by field against SPEC A2,
//! and revocation taking effect at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::Value;

#[tokio::test]
async fn capabilities_of_a_new_partner_are_the_self_service_default() {
    let server = TestServer::start().await;
    let response = server.capabilities(&server.identity_token(ALICE)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let json: Value = response.json().await.unwrap();
    let object = json.as_object().unwrap();
    assert_eq!(object.len(), 3, "{json}");
    let id = json["partnerProfileId"].as_i64().unwrap();
    assert!(id > 0 && id <= i64::from(i32::MAX));
    assert_eq!(json["tokenManagementEnabled"], true);
    assert_eq!(json["allowedScopes"], serde_json::json!(["trading"]));

    // The same identity maps to the same profile; another identity to another one.
    let again: Value = server
        .capabilities(&server.identity_token(ALICE))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["partnerProfileId"], id);
    let bob: Value = server
        .capabilities(&server.identity_token(BOB))
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(bob["partnerProfileId"], id);
}

#[tokio::test]
async fn derive_answers_201_with_every_field_of_the_contract() {
    let server = TestServer::start().await;
    let response = server
        .derive_raw(
            &server.identity_token(&ALICE.to_lowercase()),
            r#"{"label":"production-bot"}"#,
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let json: Value = response.json().await.unwrap();
    let object = json.as_object().unwrap();
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "allowedIps",
            "apiKey",
            "createdAt",
            "expiresAt",
            "profile",
            "scopes",
            "secret",
            "tokenId"
        ]
    );
    assert_eq!(
        json["expiresAt"],
        Value::Null,
        "SPEC C2: null without an expiry"
    );
    assert_eq!(
        json["allowedIps"],
        serde_json::json!([]),
        "SPEC C2: empty for any"
    );
    let token_id = json["tokenId"].as_str().unwrap();
    assert_eq!(json["apiKey"], json["tokenId"]);
    assert!(token_id.len() >= 22);
    assert!(token_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
    let secret = json["secret"].as_str().unwrap();
    assert_eq!(secret.len(), 44);
    assert_eq!(
        lmts_core::TokenSecret::from_base64(secret)
            .unwrap()
            .expose_secret()
            .len(),
        32
    );
    assert!(
        is_millis_rfc3339(&json["createdAt"]),
        "{}",
        json["createdAt"]
    );
    assert_eq!(json["scopes"], serde_json::json!(["trading"]));
    assert_eq!(json["profile"]["account"], ALICE, "EIP-55 checksummed");
    assert!(json["profile"]["id"].as_i64().unwrap() > 0);
    assert_eq!(json["profile"].as_object().unwrap().len(), 2);
}

#[tokio::test]
async fn the_official_rust_sdk_default_body_derives_a_trading_token() {
    let server = TestServer::start().await;
    let (_, json) = server.derive(ALICE, r#"{"label":null,"scopes":[]}"#).await;
    assert_eq!(json["scopes"], serde_json::json!(["trading"]));
    let (creds, _) = server.derive(ALICE, "").await;
    let listed: Value = server.list(&creds).await.json().await.unwrap();
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["label"].is_null()));
}

#[tokio::test]
async fn granted_scopes_are_merged_and_in_contract_order() {
    let server = TestServer::start().await;
    server
        .service
        .set_partner_settings(
            &lmts_server::store::SettingsKey::Account(ALICE.into()),
            &lmts_server::store::PartnerSettings {
                token_management_enabled: true,
                allowed_scopes: lmts_core::Scope::KNOWN.to_vec(),
            },
        )
        .await
        .unwrap();
    let (_, json) = server
        .derive(ALICE, r#"{"scopes":["withdrawal","delegated_signing","trading","trading","account_creation"]}"#)
        .await;
    assert_eq!(
        json["scopes"],
        serde_json::json!([
            "trading",
            "account_creation",
            "delegated_signing",
            "withdrawal"
        ])
    );
}

#[tokio::test]
async fn list_shows_only_the_callers_live_tokens_with_exact_fields() {
    let server = TestServer::start().await;
    let (first, _) = server.derive(ALICE, r#"{"label":"first"}"#).await;
    let (second, _) = server.derive(ALICE, r#"{}"#).await;
    let (bob, _) = server.derive(BOB, r#"{"label":"bob"}"#).await;
    let (doomed, _) = server.derive(ALICE, r#"{"label":"doomed"}"#).await;
    assert_eq!(
        server.revoke(&first, &doomed.token_id).await.status(),
        StatusCode::OK
    );

    let response = server.list(&first).await;
    assert_eq!(response.status(), StatusCode::OK);
    let json: Value = response.json().await.unwrap();
    let tokens = json.as_array().unwrap();
    let ids: Vec<&str> = tokens
        .iter()
        .map(|t| t["tokenId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [first.token_id.as_str(), second.token_id.as_str()]);
    for token in tokens {
        let object = token.as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "allowedIps",
                "createdAt",
                "expiresAt",
                "label",
                "lastUsedAt",
                "scopes",
                "tokenId"
            ],
            "no secret listed"
        );
        assert!(is_millis_rfc3339(&token["createdAt"]));
    }
    assert_eq!(tokens[0]["label"], "first");
    assert!(tokens[1]["label"].is_null());
    assert!(tokens[1]["lastUsedAt"].is_null(), "never used yet");
    assert!(
        is_millis_rfc3339(&tokens[0]["lastUsedAt"]),
        "used by this very request"
    );
    assert_eq!(tokens[0]["scopes"], serde_json::json!(["trading"]));

    assert_eq!(
        listed_ids(server.list(&bob).await).await,
        std::slice::from_ref(&bob.token_id)
    );
}

#[tokio::test]
async fn last_used_at_is_written_to_the_store_off_the_request_path() {
    let (server, creds) = TestServer::with_token(|_| {}).await;
    assert_eq!(server.list(&creds).await.status(), StatusCode::OK);
    server.flush().await;
    let profile = server
        .service
        .store()
        .token_credentials(&creds.token_id)
        .await
        .unwrap()
        .unwrap()
        .profile;
    let records = server
        .service
        .store()
        .active_tokens(profile.id, lmts_server::clock::Clock::system().now())
        .await
        .unwrap();
    assert!(records[0].last_used_at.is_some(), "flushed to the store");
}

#[tokio::test]
async fn revoked_credentials_fail_on_the_very_next_request() {
    let server = TestServer::start().await;
    let (admin, _) = server.derive(ALICE, "{}").await;
    let (victim, _) = server.derive(ALICE, "{}").await;
    assert_eq!(
        server.list(&victim).await.status(),
        StatusCode::OK,
        "cached now"
    );

    let response = server.revoke(&admin, &victim.token_id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let json: Value = response.json().await.unwrap();
    assert!(json["message"].is_string());
    assert_eq!(json.as_object().unwrap().len(), 1);

    let message = assert_error(server.list(&victim).await, StatusCode::UNAUTHORIZED).await;
    assert!(message.contains("revoked"), "{message}");
    assert_eq!(
        listed_ids(server.list(&admin).await).await,
        std::slice::from_ref(&admin.token_id)
    );
}

#[tokio::test]
async fn a_token_revokes_itself() {
    let (server, creds) = TestServer::with_token(|_| {}).await;
    assert_eq!(
        server.revoke(&creds, &creds.token_id).await.status(),
        StatusCode::OK
    );
    assert_error(server.list(&creds).await, StatusCode::UNAUTHORIZED).await;
    assert_error(
        server.revoke(&creds, &creds.token_id).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn unknown_foreign_and_revoked_ids_get_byte_identical_404s() {
    let server = TestServer::start().await;
    let (alice, _) = server.derive(ALICE, "{}").await;
    let (alice_old, _) = server.derive(ALICE, "{}").await;
    let (bob, _) = server.derive(BOB, "{}").await;
    assert_eq!(
        server.revoke(&alice, &alice_old.token_id).await.status(),
        StatusCode::OK
    );

    let mut answers = Vec::new();
    for target in [
        bob.token_id.as_str(),
        "lmts_doesnotexist",
        alice_old.token_id.as_str(),
        "tok%2Fwith%20spaces",
    ] {
        let response = server.revoke(&alice, target).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{target}");
        answers.push(response.bytes().await.unwrap());
    }
    assert!(
        answers.windows(2).all(|pair| pair[0] == pair[1]),
        "{answers:?}"
    );
    // Bob's token still works: nothing was revoked.
    assert_eq!(server.list(&bob).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_percent_encoded_token_id_is_verified_on_the_raw_target() {
    let (server, creds) = TestServer::with_token(|_| {}).await;
    // Signed over the raw, encoded target: authenticates, then 404 for the decoded id.
    let response = server
        .signed(
            &creds,
            Method::DELETE,
            "/auth/api-tokens/tok%2Fwith%20spaces",
            "",
        )
        .await;
    assert_error(response, StatusCode::NOT_FOUND).await;
    // Signed over a decoded form of what is sent: refused.
    let headers = sign(
        &creds,
        now(),
        "DELETE",
        "/auth/api-tokens/tok/with spaces",
        "",
    );
    let response = server
        .send_with(
            Method::DELETE,
            "/auth/api-tokens/tok%2Fwith%20spaces",
            "",
            &headers,
        )
        .await;
    assert_error(response, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn health_and_ready() {
    let server = TestServer::start().await;
    let health = server.get("/health").await;
    assert_eq!(health.status(), StatusCode::OK);
    assert!(health.headers().contains_key("x-request-id"));
    let ready: Value = server.get("/ready").await.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
}

#[tokio::test]
async fn tokens_survive_a_graceful_restart() {
    let (server, creds) = TestServer::with_token(|_| {}).await;
    assert_eq!(server.list(&creds).await.status(), StatusCode::OK);
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, |_| {}).await;
    let response = server.list(&creds).await;
    assert_eq!(response.status(), StatusCode::OK);
    let json: Value = response.json().await.unwrap();
    assert!(
        is_millis_rfc3339(&json[0]["lastUsedAt"]),
        "usage flushed at shutdown"
    );
}
