//! The operator's emergency stop (issue #15): `revoke-all` run against PostgreSQL from a
//! process of its own (as `lmts admin` runs) is final on every serving instance at once, and
//! each revoke is an audit event naming the operator and the reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use lmts_server::{
    service::{
        admin::{self, Operator},
        ServiceError,
    },
    store::{PostgresOptions, PostgresStore},
};
use lmts_testkit::PgServer;
use reqwest::StatusCode;
use serde_json::Value;

const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

#[tokio::test]
async fn revoke_all_from_the_command_line_is_final_on_every_instance() {
    let url = PgServer::shared().database().await;
    let configure = |config: &mut lmts_server::server::ServerConfig| {
        config.database_url = Some(url.clone());
        config.master_key = Some(MASTER_KEY.to_owned().into());
    };
    let first = TestServer::start_with(configure).await;
    let dir = first.dir.path().to_owned();
    let second = TestServer::start_with(|config| {
        configure(config);
        config.data_dir = dir;
    })
    .await;
    let (one, _) = first.derive(ALICE, "{}").await;
    let (two, _) = first.derive(ALICE, "{}").await;
    let (bobs, _) = first.derive(BOB, "{}").await;
    // Both instances cache Alice's tokens before the stop.
    for server in [&first, &second] {
        for creds in [&one, &two, &bobs] {
            assert_eq!(server.list(creds).await.status(), StatusCode::OK);
        }
    }

    let operator_store = PostgresStore::connect(&url, &PostgresOptions::default())
        .await
        .unwrap();
    let operator = Operator::new("alice-oncall", "wallet compromised").unwrap();
    let now = lmts_server::clock::Clock::system().now();
    let summaries = admin::partners(&operator_store, now).await.unwrap();
    let alice = summaries
        .iter()
        .find(|p| p.profile.account == ALICE)
        .unwrap();
    assert_eq!(alice.live_tokens, 2);
    let revoked = admin::revoke_all(&operator_store, ALICE, &operator, now)
        .await
        .unwrap();
    assert_eq!(revoked.len(), 2);

    for server in [&first, &second] {
        for creds in [&one, &two] {
            assert_eq!(server.list(creds).await.status(), StatusCode::UNAUTHORIZED);
        }
        assert_eq!(
            server.list(&bobs).await.status(),
            StatusCode::OK,
            "only Alice's"
        );
    }
    let (_, tokens) = admin::tokens(&operator_store, ALICE, now).await.unwrap();
    assert!(tokens.is_empty());
    let again = admin::revoke(&operator_store, &one.token_id, &operator, now).await;
    assert!(
        matches!(again, Err(ServiceError::NotFound(_))),
        "a revoked token is no live token: {again:?}"
    );

    let (fresh, _) = first.derive(ALICE, "{}").await;
    let events: Value = first
        .signed(
            &fresh,
            reqwest::Method::GET,
            "/auth/api-tokens/events?limit=500",
            "",
        )
        .await
        .json()
        .await
        .unwrap();
    let stops: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["type"] == "token.revoked")
        .collect();
    assert_eq!(stops.len(), 2);
    for event in stops {
        assert_eq!(
            event["detail"],
            "revoked by operator alice-oncall: wallet compromised"
        );
        assert_eq!(event["ip"], Value::Null);
    }
}
