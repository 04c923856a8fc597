//! SPEC C2's audit events: each lifecycle change and each class of failure appears once, in
//! order, paged by cursor, and another partner's never; on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use chrono::TimeDelta;
use common::*;
use lmts_core::signing::format_timestamp;
use lmts_server::server::ServerConfig;
use lmts_testkit::PgServer;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

/// A request by `creds` signed at `at` (the services' clock, or off it for a stale one).
async fn signed_at(
    server: &TestServer,
    creds: &Creds,
    at: chrono::DateTime<chrono::Utc>,
    (method, target): (Method, &str),
    body: &str,
) -> Response {
    let headers = sign(creds, at, method.as_str(), target, body);
    server.send_with(method, target, body, &headers).await
}

/// Every event `creds` may read, walked two at a time with the cursor.
async fn all_events(server: &TestServer, clock: &TestClock, creds: &Creds) -> Vec<Value> {
    let mut events = Vec::new();
    let mut after = "0".to_owned();
    loop {
        let target = format!("/auth/api-tokens/events?after={after}&limit=2");
        let response = signed_at(server, creds, clock.now(), (Method::GET, &target), "").await;
        assert_eq!(response.status(), StatusCode::OK);
        let page: Value = response.json().await.unwrap();
        let got = page["events"].as_array().unwrap().clone();
        if got.is_empty() {
            assert_eq!(
                page["next"],
                after.as_str(),
                "an empty page keeps the cursor"
            );
            return events;
        }
        assert_eq!(page["next"], got.last().unwrap()["id"]);
        after = page["next"].as_str().unwrap().to_owned();
        events.extend(got);
    }
}

/// `(type, tokenId)` of each event.
fn kinds(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|event| {
            let field = |name: &str| event[name].as_str().unwrap().to_owned();
            (field("type"), field("tokenId"))
        })
        .collect()
}

/// Waits until the partner has `count` events (failures and addresses are written off the
/// request's path), and answers them.
async fn settled(
    server: &TestServer,
    clock: &TestClock,
    creds: &Creds,
    count: usize,
) -> Vec<Value> {
    for _ in 0..100 {
        let events = all_events(server, clock, creds).await;
        if events.len() >= count {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "fewer than {count} events: {:?}",
        kinds(&all_events(server, clock, creds).await)
    );
}

async fn every_change_and_failure_once_in_order(configure: impl Fn(&mut ServerConfig) + Copy) {
    let clock = TestClock::default();
    let server = TestServer::start_with(|config| {
        configure(config);
        config.clock = clock.clock();
    })
    .await;
    let (main, _) = server.derive(ALICE, "{}").await;
    let elsewhere = json!({ "allowedIps": ["203.0.113.0/24"] }).to_string();
    let (fenced, _) = server.derive(ALICE, &elsewhere).await;
    let expires_at = clock.now() + TimeDelta::minutes(1);
    let short = json!({ "expiresAt": format_timestamp(expires_at) }).to_string();
    let (brief, _) = server.derive(ALICE, &short).await;
    let (bobs, _) = server.derive(BOB, "{}").await;
    let list = || (Method::GET, "/auth/api-tokens");

    // A first use from loopback; then each class of failure, twice: written once.
    assert_eq!(
        signed_at(&server, &main, clock.now(), list(), "")
            .await
            .status(),
        StatusCode::OK
    );
    let forged = Creds {
        token_id: main.token_id.clone(),
        secret: bobs.secret.clone(),
    };
    let stale = clock.now() - TimeDelta::minutes(5);
    for _ in 0..2 {
        let bad = signed_at(&server, &forged, clock.now(), list(), "").await;
        assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
        let old = signed_at(&server, &main, stale, list(), "").await;
        assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
        let fenced_out = signed_at(&server, &fenced, clock.now(), list(), "").await;
        assert_eq!(fenced_out.status(), StatusCode::FORBIDDEN);
    }
    let seen = settled(&server, &clock, &main, 7).await;
    assert_eq!(seen.len(), 7, "{:?}", kinds(&seen));

    let rotate = format!("/auth/api-tokens/{}/rotate", main.token_id);
    let rotated = signed_at(&server, &main, clock.now(), (Method::POST, &rotate), "").await;
    assert_eq!(rotated.status(), StatusCode::CREATED);
    let revoke = format!("/auth/api-tokens/{}", fenced.token_id);
    let revoked = signed_at(&server, &main, clock.now(), (Method::DELETE, &revoke), "").await;
    assert_eq!(revoked.status(), StatusCode::OK);
    clock.set(expires_at);
    server.service.run_maintenance().await;
    server.service.run_maintenance().await;

    let events = all_events(&server, &clock, &main).await;
    let (main_id, fenced_id, brief_id) = (&main.token_id, &fenced.token_id, &brief.token_id);
    let expected: Vec<(&str, &str)> = vec![
        ("token.derived", main_id),
        ("token.derived", fenced_id),
        ("token.derived", brief_id),
        ("token.new_address", main_id),
        ("token.rotated", main_id),
        ("token.revoked", fenced_id),
        ("token.expired", brief_id),
    ];
    let failures = [
        "signature check failed",
        "timestamp outside the window",
        "client outside allowedIps",
    ];
    let lifecycle: Vec<(String, String)> = kinds(&events)
        .into_iter()
        .filter(|(kind, _)| kind != "auth.failed")
        .collect();
    let expected: Vec<(String, String)> = expected
        .into_iter()
        .map(|(k, t)| (k.to_owned(), t.to_owned()))
        .collect();
    assert_eq!(lifecycle, expected);
    for detail in failures {
        let matching: Vec<&Value> = events
            .iter()
            .filter(|event| event["detail"] == detail)
            .collect();
        assert_eq!(matching.len(), 1, "{detail}: {:?}", kinds(&events));
        assert_eq!(matching[0]["type"], "auth.failed");
        assert_eq!(matching[0]["ip"], "127.0.0.1");
    }
    let ids: Vec<i64> = events
        .iter()
        .map(|e| e["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    assert!(
        events
            .iter()
            .all(|event| event["tokenId"] != bobs.token_id.as_str()),
        "another partner's events never show"
    );
    let text = serde_json::to_string(&events).unwrap();
    assert!(
        !text.contains(&b64(main.secret.expose_secret())),
        "never a secret"
    );

    let bad_cursor = signed_at(
        &server,
        &bobs,
        clock.now(),
        (Method::GET, "/auth/api-tokens/events?after=x"),
        "",
    )
    .await;
    assert!(assert_error(bad_cursor, StatusCode::BAD_REQUEST)
        .await
        .starts_with("after"));
    let bad_limit = signed_at(
        &server,
        &bobs,
        clock.now(),
        (Method::GET, "/auth/api-tokens/events?limit=501"),
        "",
    )
    .await;
    assert!(assert_error(bad_limit, StatusCode::BAD_REQUEST)
        .await
        .starts_with("limit"));
    let bobs_events = settled(&server, &clock, &bobs, 1).await;
    assert_eq!(
        kinds(&bobs_events)[0],
        ("token.derived".to_owned(), bobs.token_id.clone())
    );
}

#[tokio::test]
async fn every_change_and_failure_appears_once_in_order_on_sqlite() {
    every_change_and_failure_once_in_order(|_| {}).await;
}

#[tokio::test]
async fn every_change_and_failure_appears_once_in_order_on_postgres() {
    let url = PgServer::shared().database().await;
    every_change_and_failure_once_in_order(|config| {
        config.database_url = Some(url.clone());
        config.master_key = Some(MASTER_KEY.to_owned().into());
    })
    .await;
}
