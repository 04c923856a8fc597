//! Every refusal of SPEC B2, provoked over real HTTP: its status, the NestJS body shape, and
//! the state unchanged afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::TimeDelta;
use common::*;
use lmts_core::Scope;
use lmts_server::store::{PartnerSettings, SettingsKey};
use reqwest::{Method, StatusCode};

async fn token_count(server: &TestServer, account: &str) -> usize {
    let Some(profile) = server
        .service
        .store()
        .profile_by_account(account)
        .await
        .unwrap()
    else {
        return 0;
    };
    server
        .service
        .store()
        .active_tokens(profile.id, lmts_server::clock::Clock::system().now())
        .await
        .unwrap()
        .len()
}

async fn configure(server: &TestServer, account: &str, enabled: bool, scopes: &[Scope]) {
    server
        .service
        .set_partner_settings(
            &SettingsKey::Account(account.into()),
            &PartnerSettings {
                token_management_enabled: enabled,
                allowed_scopes: scopes.to_vec(),
            },
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_derive_bodies_are_400_and_create_nothing() {
    let server = TestServer::start().await;
    let identity = server.identity_token(ALICE);
    let long_label = format!(r#"{{"label":"{}"}}"#, "x".repeat(129));
    let cases: [(&str, &str); 9] = [
        ("not json", "must be a JSON object"),
        ("[1,2]", "must be a JSON object"),
        ("\"text\"", "must be a JSON object"),
        (r#"{"label":42}"#, "label must be a string"),
        (&long_label, "at most 128 characters"),
        (r#"{"scopes":["root"]}"#, "unknown scope \"root\""),
        (r#"{"scopes":"trading"}"#, "array of strings"),
        (r#"{"scopes":[1]}"#, "array of strings"),
        (
            r#"{"scopes":["delegated_signing"]}"#,
            "requires scope trading",
        ),
    ];
    for (body, expected) in cases {
        let message = assert_error(
            server.derive_raw(&identity, body).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(message.contains(expected), "{body}: {message}");
    }
    assert_eq!(token_count(&server, ALICE).await, 0);
}

#[tokio::test]
async fn several_validation_failures_are_listed_together() {
    let server = TestServer::start().await;
    let response = server
        .derive_raw(
            &server.identity_token(ALICE),
            r#"{"label":1,"scopes":["nope"]}"#,
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(json["message"].as_array().unwrap().len(), 2, "{json}");
}

#[tokio::test]
async fn scopes_outside_the_allowed_ones_are_403_and_name_what_is_allowed() {
    let server = TestServer::start().await;
    let identity = server.identity_token(ALICE);
    let response = server
        .derive_raw(&identity, r#"{"scopes":["trading","withdrawal"]}"#)
        .await;
    let message = assert_error(response, StatusCode::FORBIDDEN).await;
    assert!(
        message.contains("withdrawal") && message.contains("allowed scopes: trading"),
        "{message}"
    );
    assert_eq!(token_count(&server, ALICE).await, 0);

    configure(&server, ALICE, true, &[Scope::Trading, Scope::Withdrawal]).await;
    let response = server
        .derive_raw(&identity, r#"{"scopes":["trading","withdrawal"]}"#)
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "settings apply at once"
    );
}

#[tokio::test]
async fn token_management_disabled_is_403_on_derive_list_revoke_and_introspection() {
    let (server, creds) = TestServer::with_token(|_| {}).await;
    configure(&server, ALICE, false, &[Scope::Trading]).await;

    let identity = server.identity_token(ALICE);
    let caps: serde_json::Value = server.capabilities(&identity).await.json().await.unwrap();
    assert_eq!(caps["tokenManagementEnabled"], false);
    for response in [
        server.derive_raw(&identity, "{}").await,
        server.list(&creds).await,
        server
            .signed(&creds, Method::GET, "/auth/api-tokens/self", "")
            .await,
        server.revoke(&creds, &creds.token_id).await,
    ] {
        let message = assert_error(response, StatusCode::FORBIDDEN).await;
        assert!(
            message.contains("token management is disabled"),
            "{message}"
        );
    }
    assert_eq!(
        token_count(&server, ALICE).await,
        1,
        "nothing created, nothing revoked"
    );
}

#[tokio::test]
async fn the_operator_default_applies_to_unconfigured_partners() {
    let server = TestServer::start().await;
    server
        .service
        .set_partner_settings(
            &SettingsKey::Default,
            &PartnerSettings {
                token_management_enabled: true,
                allowed_scopes: vec![Scope::Trading, Scope::AccountCreation],
            },
        )
        .await
        .unwrap();
    configure(&server, BOB, true, &[Scope::Trading]).await;
    let alice: serde_json::Value = server
        .capabilities(&server.identity_token(ALICE))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        alice["allowedScopes"],
        serde_json::json!(["trading", "account_creation"])
    );
    let bob: serde_json::Value = server
        .capabilities(&server.identity_token(BOB))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(bob["allowedScopes"], serde_json::json!(["trading"]));
}

#[tokio::test]
async fn the_active_token_limit_is_409_and_frees_up_on_revoke() {
    let server = TestServer::start_with(|config| config.service.max_active_tokens = Some(2)).await;
    let (first, _) = server.derive(ALICE, "{}").await;
    server.derive(ALICE, "{}").await;
    let identity = server.identity_token(ALICE);
    let message = assert_error(
        server.derive_raw(&identity, "{}").await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(message.contains("maximum of 2"), "{message}");
    assert_eq!(token_count(&server, ALICE).await, 2);
    // Another partner is not affected.
    server.derive(BOB, "{}").await;
    assert_eq!(
        server.revoke(&first, &first.token_id).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        server.derive_raw(&identity, "{}").await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn concurrent_derives_never_exceed_the_limit() {
    let server = TestServer::start_with(|config| config.service.max_active_tokens = Some(5)).await;
    let statuses = derive_at_once(&[&server], ALICE, 20).await;
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        5,
        "{statuses:?}"
    );
    assert!(statuses
        .iter()
        .all(|s| *s == StatusCode::CREATED || *s == StatusCode::CONFLICT));
    assert_eq!(token_count(&server, ALICE).await, 5);
}

#[tokio::test]
async fn oversized_bodies_are_413_on_both_schemes() {
    let (server, creds) =
        TestServer::with_token(|config| config.service.max_body_bytes = 1024).await;
    let big = format!(r#"{{"label":"{}"}}"#, "x".repeat(2000));
    let identity = server.identity_token(ALICE);
    assert_error(
        server.derive_raw(&identity, &big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    let response = server
        .signed(&creds, Method::GET, "/auth/api-tokens", &big)
        .await;
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    // A chunked body with no Content-Length is limited while it is read.
    let chunk = "y".repeat(2000);
    let request = format!(
        "POST /auth/api-tokens/derive HTTP/1.1\r\nhost: x\r\nidentity: Bearer {identity}\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let (status, body) = raw_http(&server, request.as_bytes()).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("\"statusCode\":413"), "{body}");
    assert_eq!(token_count(&server, ALICE).await, 1);
}

#[tokio::test]
async fn hmac_refusals_are_401_with_a_cause() {
    let (server, creds) = TestServer::with_token(|_| {}).await;
    let target = "/auth/api-tokens";
    let good = sign(&creds, now(), "GET", target, "");
    let without = |name: &str| {
        good.iter()
            .filter(|(n, _)| *n != name)
            .cloned()
            .collect::<Vec<_>>()
    };
    let replace = |name: &str, value: &str| {
        good.iter()
            .map(|(n, v)| {
                (
                    *n,
                    if *n == name {
                        value.to_owned()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect::<Vec<_>>()
    };
    let identity = format!("Bearer {}", server.identity_token(ALICE));
    let mut with_identity = good.clone();
    with_identity.push(("identity", identity.clone()));
    let late = now() - TimeDelta::seconds(45);
    let early = now() + TimeDelta::seconds(45);
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (vec![], "missing authentication"),
        (
            vec![("identity", identity.clone())],
            "takes HMAC authentication",
        ),
        (vec![("x-api-key", "legacy".into())], "not X-API-Key"),
        (with_identity, "not an identity token"),
        (without("lmts-signature"), "missing header lmts-signature"),
        (without("lmts-timestamp"), "missing header lmts-timestamp"),
        (
            replace("lmts-api-key", "lmts_unknown"),
            "unknown or revoked",
        ),
        (
            replace(
                "lmts-signature",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            ),
            "does not match",
        ),
        (
            replace("lmts-signature", "not base64!"),
            "not standard base64",
        ),
        (replace("lmts-timestamp", "yesterday"), "not an RFC 3339"),
        (sign(&creds, late, "GET", target, ""), "behind server time"),
        (
            sign(&creds, early, "GET", target, ""),
            "ahead of server time",
        ),
        (
            sign(&creds, now(), "GET", "/auth/api-tokens?x=1", ""),
            "does not match",
        ),
        (sign(&creds, now(), "GET", target, "{}"), "does not match"),
        (sign(&creds, now(), "DELETE", target, ""), "does not match"),
    ];
    for (headers, expected) in cases {
        let response = server.send_with(Method::GET, target, "", &headers).await;
        let message = assert_error(response, StatusCode::UNAUTHORIZED).await;
        assert!(message.contains(expected), "{expected}: {message}");
    }
    assert_eq!(
        server.list(&creds).await.status(),
        StatusCode::OK,
        "the token still works"
    );
}

#[tokio::test]
async fn a_repeated_header_is_refused() {
    let (server, creds) = TestServer::with_token(|_| {}).await;
    let mut headers = sign(&creds, now(), "GET", "/auth/api-tokens", "");
    headers.push(("lmts-api-key", creds.token_id.clone()));
    let response = server
        .send_with(Method::GET, "/auth/api-tokens", "", &headers)
        .await;
    let message = assert_error(response, StatusCode::UNAUTHORIZED).await;
    assert!(message.contains("must appear once"), "{message}");
}

#[tokio::test]
async fn any_rfc3339_timestamp_inside_the_window_is_accepted() {
    let (server, creds) = TestServer::with_token(|_| {}).await;
    let at = now();
    for timestamp in [
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        at.with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
            .to_rfc3339(),
    ] {
        let message = lmts_core::CanonicalMessage::new(&timestamp, "GET", "/auth/api-tokens", b"");
        let signature = lmts_core::Signer::new(&creds.secret)
            .sign(&message)
            .to_base64();
        let headers = vec![
            ("lmts-api-key", creds.token_id.clone()),
            ("lmts-timestamp", timestamp.clone()),
            ("lmts-signature", signature),
        ];
        let response = server
            .send_with(Method::GET, "/auth/api-tokens", "", &headers)
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{timestamp}");
    }
}

#[tokio::test]
async fn identity_endpoints_refuse_the_other_schemes() {
    let (server, creds) = TestServer::with_token(|_| {}).await;
    let hmac = sign(&creds, now(), "GET", "/auth/api-tokens/capabilities", "");
    let response = server
        .send_with(Method::GET, "/auth/api-tokens/capabilities", "", &hmac)
        .await;
    let message = assert_error(response, StatusCode::UNAUTHORIZED).await;
    assert!(
        message.contains("takes a Privy identity token"),
        "{message}"
    );
    let response = server
        .send_with(
            Method::POST,
            "/auth/api-tokens/derive",
            "{}",
            &[("x-api-key", "legacy".into())],
        )
        .await;
    assert_error(response, StatusCode::UNAUTHORIZED).await;
    let response = server
        .send_with(
            Method::POST,
            "/auth/api-tokens/derive",
            "{}",
            &[("identity", "Basic abc".into())],
        )
        .await;
    let message = assert_error(response, StatusCode::UNAUTHORIZED).await;
    assert!(message.contains("Bearer"), "{message}");
    assert_eq!(token_count(&server, ALICE).await, 1);
}

#[tokio::test]
async fn replayed_deletes_are_refused_and_repeated_gets_are_not() {
    let (server, creds) = TestServer::with_token(|_| {}).await;
    let (other, _) = server.derive(ALICE, "{}").await;

    let list = sign(&creds, now(), "GET", "/auth/api-tokens", "");
    for _ in 0..3 {
        let response = server
            .send_with(Method::GET, "/auth/api-tokens", "", &list)
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    let target = "/auth/api-tokens/lmts_missing";
    let delete = sign(&creds, now(), "DELETE", target, "");
    let first = server.send_with(Method::DELETE, target, "", &delete).await;
    assert_error(first, StatusCode::NOT_FOUND).await;
    let replay = server.send_with(Method::DELETE, target, "", &delete).await;
    let message = assert_error(replay, StatusCode::UNAUTHORIZED).await;
    assert!(message.contains("replayed"), "{message}");

    let target = format!("/auth/api-tokens/{}", other.token_id);
    let delete = sign(&creds, now(), "DELETE", &target, "");
    assert_eq!(
        server
            .send_with(Method::DELETE, &target, "", &delete)
            .await
            .status(),
        StatusCode::OK
    );
    assert_error(
        server.send_with(Method::DELETE, &target, "", &delete).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_in_the_error_shape() {
    let server = TestServer::start().await;
    let response = server.get("/auth/nothing").await;
    assert_error(response, StatusCode::NOT_FOUND).await;
    let response = server
        .client
        .put(server.url("/auth/api-tokens/derive"))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::METHOD_NOT_ALLOWED).await;
}

#[tokio::test]
async fn callers_over_their_budget_get_429_with_retry_after() {
    let (server, creds) = TestServer::with_token(|config| {
        config.service.rate_limit = Some(lmts_server::service::RateLimit {
            per_minute: 6,
            burst: 3,
        });
    })
    .await;
    let identity = server.identity_token(ALICE);
    for _ in 0..2 {
        assert_eq!(
            server.capabilities(&identity).await.status(),
            StatusCode::OK
        );
    }
    let response = server.capabilities(&identity).await;
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    let message = assert_error(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(message.contains("rate limit"), "{message}");
    assert_eq!(token_count(&server, ALICE).await, 1);

    // Each token has its own budget, and other partners are not affected.
    for _ in 0..3 {
        assert_eq!(server.list(&creds).await.status(), StatusCode::OK);
    }
    assert_error(server.list(&creds).await, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(
        server
            .capabilities(&server.identity_token(BOB))
            .await
            .status(),
        StatusCode::OK
    );
}
