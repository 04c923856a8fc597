//! SPEC C2's rotation and introspection: a successor with the rotated token's label, scopes,
//! addresses and expiry; both work during the overlap and only the successor after it, on one
//! SQLite service and on two PostgreSQL instances (the end of the overlap honoured by both); a
//! revoke cuts the overlap short. Time is the services' clock, set by the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use lmts_core::{signing::format_timestamp, TokenSecret};
use lmts_testkit::PgServer;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

/// A request by `creds` signed at the clock's time.
async fn signed(
    server: &TestServer,
    clock: &TestClock,
    creds: &Creds,
    (method, target): (Method, &str),
    body: &str,
) -> Response {
    let headers = sign(creds, clock.now(), method.as_str(), target, body);
    server.send_with(method, target, body, &headers).await
}

/// `POST /auth/api-tokens/{rotated}/rotate` by `creds` with `body`.
async fn rotate(
    server: &TestServer,
    clock: &TestClock,
    creds: &Creds,
    rotated: &str,
    body: &str,
) -> Response {
    let target = format!("/auth/api-tokens/{rotated}/rotate");
    signed(server, clock, creds, (Method::POST, &target), body).await
}

/// The answer of `GET /auth/api-tokens/self` by `creds`.
async fn introspect(server: &TestServer, clock: &TestClock, creds: &Creds) -> Value {
    let target = (Method::GET, "/auth/api-tokens/self");
    let response = signed(server, clock, creds, target, "").await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// The status of `GET /auth/api-tokens/self` by `creds`.
async fn whoami(server: &TestServer, clock: &TestClock, creds: &Creds) -> StatusCode {
    let target = (Method::GET, "/auth/api-tokens/self");
    signed(server, clock, creds, target, "").await.status()
}

/// The credentials in a derive or rotate answer.
fn creds_of(answer: &Value) -> Creds {
    Creds {
        token_id: answer["tokenId"].as_str().unwrap().to_owned(),
        secret: TokenSecret::from_base64(answer["secret"].as_str().unwrap()).unwrap(),
    }
}

/// The 201 answer of a rotation.
async fn rotated(response: Response) -> Value {
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

#[tokio::test]
async fn both_tokens_work_during_the_overlap_and_only_the_successor_after_it() {
    let clock = TestClock::default();
    let server = TestServer::start_with(|config| config.clock = clock.clock()).await;
    let expires_at = clock.now() + TimeDelta::days(30);
    let body = json!({
        "label": "bot", "allowedIps": ["127.0.0.0/8"], "expiresAt": format_timestamp(expires_at)
    });
    let (old, _) = server.derive(ALICE, &body.to_string()).await;

    let me = introspect(&server, &clock, &old).await;
    assert_eq!(me["tokenId"], old.token_id.as_str());
    assert_eq!(me["label"], "bot");
    assert_eq!(me["allowedIps"], json!(["127.0.0.0/8"]));

    let started = clock.now();
    let answer = rotated(
        rotate(
            &server,
            &clock,
            &old,
            &old.token_id,
            r#"{"overlapSeconds":600}"#,
        )
        .await,
    )
    .await;
    assert_ne!(answer["tokenId"], old.token_id.as_str());
    assert_eq!(answer["scopes"], json!(["trading"]));
    assert_eq!(answer["allowedIps"], json!(["127.0.0.0/8"]));
    assert_eq!(answer["expiresAt"], format_timestamp(expires_at));
    let new = creds_of(&answer);
    let successor = introspect(&server, &clock, &new).await;
    assert_eq!(
        successor["label"], "bot",
        "the label is the rotated token's"
    );
    let overlap_end = started + TimeDelta::seconds(600);
    let list: Vec<Value> = signed(&server, &clock, &new, (Method::GET, "/auth/api-tokens"), "")
        .await
        .json()
        .await
        .unwrap();
    let old_listed = list
        .iter()
        .find(|t| t["tokenId"] == old.token_id.as_str())
        .unwrap();
    assert_eq!(old_listed["expiresAt"], format_timestamp(overlap_end));

    clock.set(overlap_end - TimeDelta::milliseconds(1));
    assert_eq!(whoami(&server, &clock, &old).await, StatusCode::OK);
    assert_eq!(whoami(&server, &clock, &new).await, StatusCode::OK);
    clock.set(overlap_end);
    assert_eq!(
        whoami(&server, &clock, &old).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(whoami(&server, &clock, &new).await, StatusCode::OK);
    // The rotated token is gone: rotating it again finds no live token.
    let again = rotate(&server, &clock, &new, &old.token_id, "").await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_revoke_cuts_the_overlap_short_and_strangers_get_404() {
    let clock = TestClock::default();
    let server = TestServer::start_with(|config| config.clock = clock.clock()).await;
    let (old, _) = server.derive(ALICE, "{}").await;
    let new = creds_of(&rotated(rotate(&server, &clock, &old, &old.token_id, "").await).await);
    assert_eq!(
        whoami(&server, &clock, &old).await,
        StatusCode::OK,
        "an hour by default"
    );
    let revoke_target = format!("/auth/api-tokens/{}", old.token_id);
    let revoked = signed(&server, &clock, &new, (Method::DELETE, &revoke_target), "").await;
    assert_eq!(revoked.status(), StatusCode::OK);
    assert_eq!(
        whoami(&server, &clock, &old).await,
        StatusCode::UNAUTHORIZED
    );

    let (bobs, _) = server.derive(BOB, "{}").await;
    let refusals = [
        (
            rotate(&server, &clock, &bobs, &new.token_id, "").await,
            StatusCode::NOT_FOUND,
        ),
        (
            rotate(&server, &clock, &new, "lmts_nosuchtoken", "").await,
            StatusCode::NOT_FOUND,
        ),
        (
            rotate(&server, &clock, &new, &old.token_id, "").await,
            StatusCode::NOT_FOUND,
        ),
        (
            rotate(
                &server,
                &clock,
                &new,
                &new.token_id,
                r#"{"overlapSeconds":604801}"#,
            )
            .await,
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (response, status) in refusals {
        assert_error(response, status).await;
    }
    // Overlap 0: the rotated token ends at once.
    let newest = creds_of(
        &rotated(
            rotate(
                &server,
                &clock,
                &new,
                &new.token_id,
                r#"{"overlapSeconds":0}"#,
            )
            .await,
        )
        .await,
    );
    assert_eq!(
        whoami(&server, &clock, &new).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(whoami(&server, &clock, &newest).await, StatusCode::OK);
}

/// An instance on `url` sharing `clock`; with `sibling`, its data directory (dev issuer) too.
async fn instance(url: &str, clock: &TestClock, sibling: Option<&TestServer>) -> TestServer {
    TestServer::start_with(|config| {
        config.database_url = Some(url.to_owned());
        config.master_key = Some(MASTER_KEY.to_owned().into());
        config.clock = clock.clock();
        if let Some(sibling) = sibling {
            config.data_dir = sibling.dir.path().to_owned();
        }
    })
    .await
}

#[tokio::test]
async fn every_postgres_instance_honours_the_end_of_the_overlap() {
    let url = PgServer::shared().database().await;
    let clock = TestClock::default();
    let first = instance(&url, &clock, None).await;
    let second = instance(&url, &clock, Some(&first)).await;
    let (old, _) = first.derive(ALICE, "{}").await;
    // The second instance caches the token as it is before the rotation.
    assert_eq!(whoami(&second, &clock, &old).await, StatusCode::OK);
    let started: DateTime<Utc> = clock.now();
    let answer = rotated(
        rotate(
            &first,
            &clock,
            &old,
            &old.token_id,
            r#"{"overlapSeconds":30}"#,
        )
        .await,
    )
    .await;
    let new = creds_of(&answer);
    let overlap_end = started + TimeDelta::seconds(30);
    clock.set(overlap_end - TimeDelta::milliseconds(1));
    for server in [&first, &second] {
        assert_eq!(whoami(server, &clock, &old).await, StatusCode::OK);
        assert_eq!(whoami(server, &clock, &new).await, StatusCode::OK);
    }
    clock.set(overlap_end);
    for server in [&first, &second] {
        assert_eq!(whoami(server, &clock, &old).await, StatusCode::UNAUTHORIZED);
        assert_eq!(whoami(server, &clock, &new).await, StatusCode::OK);
    }
}

#[tokio::test]
async fn a_token_rotates_only_what_it_reaches_once_and_within_the_limit() {
    let clock = TestClock::default();
    let server = TestServer::start_with(|config| {
        config.clock = clock.clock();
        config.service.max_active_tokens = Some(3);
    })
    .await;
    server
        .service
        .set_partner_settings(
            &lmts_server::store::SettingsKey::Account(ALICE.into()),
            &lmts_server::store::PartnerSettings {
                token_management_enabled: true,
                allowed_scopes: vec![lmts_core::Scope::Trading, lmts_core::Scope::Withdrawal],
            },
        )
        .await
        .unwrap();
    let (weak, _) = server.derive(ALICE, r#"{"scopes":["trading"]}"#).await;
    let (strong, _) = server
        .derive(ALICE, r#"{"scopes":["trading","withdrawal"]}"#)
        .await;
    // A trading token may not take over a withdrawal token's successor; the other way is fine.
    let escalation = rotate(&server, &clock, &weak, &strong.token_id, "").await;
    let message = assert_error(escalation, StatusCode::FORBIDDEN).await;
    assert!(message.contains("may rotate itself"), "{message}");
    let successor =
        creds_of(&rotated(rotate(&server, &clock, &strong, &weak.token_id, "").await).await);
    // Rotated once: a second rotation of it would give a successor that dies with the overlap.
    // (Another body than the first rotation's: the same request again would be a replay.)
    let again = rotate(&server, &clock, &strong, &weak.token_id, "{}").await;
    assert!(assert_error(again, StatusCode::CONFLICT)
        .await
        .contains("rotate its successor"));
    // The limit (3) counts the live tokens besides the rotated one: rotating the successor
    // leaves weak, strong and it (in their overlaps) beside the newest, and then rotating strong
    // would make a fifth.
    let newest = rotate(&server, &clock, &successor, &successor.token_id, "").await;
    assert_eq!(newest.status(), StatusCode::CREATED);
    let over = rotate(
        &server,
        &clock,
        &strong,
        &strong.token_id,
        r#"{"overlapSeconds":1}"#,
    )
    .await;
    assert!(assert_error(over, StatusCode::CONFLICT)
        .await
        .contains("maximum of 3"));
}
