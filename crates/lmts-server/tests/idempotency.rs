//! SPEC C2's idempotent derive: a derive repeated with the same `Idempotency-Key` by the same
//! partner within 24 hours answers the first answer again, secret included, and creates
//! nothing; another body gets 409; concurrent duplicates create one token, on SQLite and on
//! two PostgreSQL instances.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::TimeDelta;
use common::*;
use lmts_testkit::PgServer;
use reqwest::StatusCode;
use serde_json::Value;

const BODY: &str = r#"{"label":"bot","scopes":["trading"]}"#;

/// A derive by `ALICE` with `keys` (each sent as a header) and `body`, with an identity token
/// issued now.
async fn derive_with_keys(server: &TestServer, keys: &[&str], body: &str) -> reqwest::Response {
    let identity = server.identity_token(ALICE);
    derive_request(server, &identity, keys, body)
        .send()
        .await
        .unwrap()
}

/// A derive request with `identity`, `keys` and `body`.
fn derive_request(
    server: &TestServer,
    identity: &str,
    keys: &[&str],
    body: &str,
) -> reqwest::RequestBuilder {
    let mut request = server
        .client
        .post(server.url("/auth/api-tokens/derive"))
        .header("identity", format!("Bearer {identity}"))
        .body(body.to_owned());
    for key in keys {
        request = request.header("idempotency-key", *key);
    }
    request
}

/// The 201 answer of a derive with `key` and `body`.
async fn derived(server: &TestServer, key: &str, body: &str) -> Value {
    let response = derive_with_keys(server, &[key], body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.headers()["lmts-features"],
        "idempotent-derive",
        "SDKs retry a keyed derive only on a service that says so"
    );
    response.json().await.unwrap()
}

/// `ALICE`'s live tokens, listed with the token of `answer`.
async fn live_tokens(server: &TestServer, answer: &Value) -> Vec<String> {
    let creds = Creds {
        token_id: answer["tokenId"].as_str().unwrap().to_owned(),
        secret: lmts_core::TokenSecret::from_base64(answer["secret"].as_str().unwrap()).unwrap(),
    };
    listed_ids(server.list(&creds).await).await
}

#[tokio::test]
async fn a_repeated_key_answers_the_first_derive_again_for_24_hours() {
    let clock = TestClock::default();
    let server = TestServer::start_with(|config| config.clock = clock.clock()).await;
    let first = derived(&server, "order-bot-1", BODY).await;
    let again = derived(&server, "order-bot-1", BODY).await;
    assert_eq!(again, first, "the same answer, secret included");
    assert_eq!(live_tokens(&server, &first).await.len(), 1);

    let other_body = derive_with_keys(&server, &["order-bot-1"], "{}").await;
    let message = assert_error(other_body, StatusCode::CONFLICT).await;
    assert!(message.contains("another body"), "{message}");
    let other_key = derived(&server, "order-bot-2", BODY).await;
    assert_ne!(other_key["tokenId"], first["tokenId"]);
    let plain = server.derive(ALICE, BODY).await.1;
    assert_ne!(
        plain["tokenId"], first["tokenId"],
        "no key: a new token each time"
    );

    // The first answer holds while the token is revoked too: the key names that derive.
    let first_creds = Creds {
        token_id: first["tokenId"].as_str().unwrap().to_owned(),
        secret: lmts_core::TokenSecret::from_base64(first["secret"].as_str().unwrap()).unwrap(),
    };
    assert_eq!(
        server
            .revoke(&first_creds, &first_creds.token_id)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(derived(&server, "order-bot-1", BODY).await, first);

    // 24 hours on, the key is new again. The identity token is issued at the clock's time.
    clock.set(clock.now() + TimeDelta::hours(24) + TimeDelta::milliseconds(1));
    server.service.run_maintenance().await;
    let identity = server.identity_token_at(ALICE, clock.now());
    let request = derive_request(&server, &identity, &["order-bot-1"], BODY);
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let later: Value = response.json().await.unwrap();
    assert_ne!(later["tokenId"], first["tokenId"]);
}

#[tokio::test]
async fn malformed_keys_are_400_and_create_nothing() {
    let server = TestServer::start().await;
    let long = "k".repeat(256);
    for keys in [
        &[""][..],
        &["two words"],
        &["tab\tkey"],
        &[long.as_str()],
        &["once", "twice"],
    ] {
        let response = derive_with_keys(&server, keys, BODY).await;
        let message = assert_error(response, StatusCode::BAD_REQUEST).await;
        assert!(
            message.contains("idempotency-key must be sent once"),
            "{keys:?}: {message}"
        );
    }
    let at_limit = "k".repeat(255);
    let answer = derived(&server, &at_limit, BODY).await;
    assert_eq!(live_tokens(&server, &answer).await.len(), 1);
}

/// `count` derives with one key at once, spread over `servers`: every answer is the same
/// token, and only it is live.
async fn concurrent_duplicates_create_one_token(servers: &[&TestServer], count: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    // One identity token for all: the instances share the data directory's dev issuer.
    let identity = servers[0].identity_token(ALICE);
    for i in 0..count {
        let request = derive_request(servers[i % servers.len()], &identity, &["same-key"], BODY);
        tasks.spawn(async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::CREATED);
            response.json::<Value>().await.unwrap()
        });
    }
    let answers = tasks.join_all().await;
    assert!(
        answers.windows(2).all(|pair| pair[0] == pair[1]),
        "{answers:?}"
    );
    assert_eq!(live_tokens(servers[0], &answers[0]).await.len(), 1);
}

#[tokio::test]
async fn concurrent_duplicates_create_one_token_on_sqlite() {
    let server = TestServer::start().await;
    concurrent_duplicates_create_one_token(&[&server], 24).await;
}

#[tokio::test]
async fn concurrent_duplicates_create_one_token_across_postgres_instances() {
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
    concurrent_duplicates_create_one_token(&[&first, &second], 24).await;
}
