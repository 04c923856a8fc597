//! Several service instances on one PostgreSQL: tokens derived on one authenticate on the
//! other, revocation reaches every instance, the token limit and the replay record hold across
//! instances, and a database outage answers 503 promptly and heals by itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use lmts_testkit::PgServer;
use reqwest::{Method, StatusCode};

const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Two instances on one database, sharing the master key and the dev issuer's key.
async fn two_instances(
    url: &str,
    configure: impl Fn(&mut lmts_server::server::ServerConfig) + Copy,
) -> (TestServer, TestServer) {
    let first = TestServer::start_with(|config| {
        config.database_url = Some(url.to_owned());
        config.master_key = Some(MASTER_KEY.to_owned().into());
        configure(config);
    })
    .await;
    let data_dir = first.dir.path().to_owned();
    let second = TestServer::start_with(|config| {
        config.database_url = Some(url.to_owned());
        config.master_key = Some(MASTER_KEY.to_owned().into());
        config.data_dir = data_dir;
        configure(config);
    })
    .await;
    (first, second)
}

#[tokio::test]
async fn a_token_derived_on_one_instance_works_on_the_other_until_revoked_there() {
    let url = PgServer::shared().database().await;
    let (a, b) = two_instances(&url, |_| {}).await;
    let (creds, _) = a.derive(ALICE, r#"{"label":"shared"}"#).await;
    let (admin, _) = a.derive(ALICE, "{}").await;
    assert_eq!(
        listed_ids(b.list(&creds).await).await.len(),
        2,
        "authenticated by B, now cached there"
    );

    assert_eq!(
        a.revoke(&admin, &creds.token_id).await.status(),
        StatusCode::OK
    );
    let revoked_at = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let status = b.list(&creds).await.status();
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "revocation did not reach B within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    eprintln!(
        "revocation reached instance B after {:?} ({attempts} request(s) to B)",
        revoked_at.elapsed()
    );
    assert_eq!(
        listed_ids(b.list(&admin).await).await,
        std::slice::from_ref(&admin.token_id)
    );
}

#[tokio::test]
async fn concurrent_derives_on_both_instances_respect_the_limit() {
    let url = PgServer::shared().database().await;
    let (a, b) = two_instances(&url, |config| {
        config.service.max_active_tokens = Some(5);
        config.service.rate_limit = None;
    })
    .await;
    let identity = format!("Bearer {}", a.identity_token(ALICE));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..24 {
        let server = if i % 2 == 0 { &a } else { &b };
        let request = server
            .client
            .post(server.url("/auth/api-tokens/derive"))
            .header("identity", identity.clone())
            .body("{}");
        tasks.spawn(async move { request.send().await.unwrap().status() });
    }
    let statuses = tasks.join_all().await;
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 5, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::CREATED || *s == StatusCode::CONFLICT),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_delete_replayed_to_the_other_instance_is_refused() {
    let url = PgServer::shared().database().await;
    let (a, b) = two_instances(&url, |_| {}).await;
    let (creds, _) = a.derive(ALICE, "{}").await;
    let (victim, _) = a.derive(ALICE, "{}").await;
    let target = format!("/auth/api-tokens/{}", victim.token_id);
    let headers = sign(&creds, now(), "DELETE", &target, "");
    assert_eq!(
        a.send_with(Method::DELETE, &target, "", &headers)
            .await
            .status(),
        StatusCode::OK
    );
    let replayed = b.send_with(Method::DELETE, &target, "", &headers).await;
    let message = assert_error(replayed, StatusCode::UNAUTHORIZED).await;
    assert!(message.contains("replayed"), "{message}");
}

#[tokio::test]
async fn a_database_outage_answers_503_promptly_and_heals() {
    let pg = PgServer::start_private();
    let url = pg.database().await;
    let server = TestServer::start_with(|config| {
        config.database_url = Some(url.clone());
        config.postgres.acquire_timeout = Duration::from_millis(500);
    })
    .await;
    let (creds, _) = server.derive(ALICE, "{}").await;
    let identity = server.identity_token(ALICE);

    pg.stop();
    // Every kind of request answers, in the contract's shape, without hanging.
    for _ in 0..3 {
        let list = tokio::time::timeout(Duration::from_secs(10), server.list(&creds))
            .await
            .expect("no hang");
        assert_error(list, StatusCode::SERVICE_UNAVAILABLE).await;
        let derive =
            tokio::time::timeout(Duration::from_secs(10), server.derive_raw(&identity, "{}"))
                .await
                .expect("no hang");
        let response = derive;
        assert!(response.headers().contains_key("retry-after"));
        assert_error(response, StatusCode::SERVICE_UNAVAILABLE).await;
        let ready = server.get("/ready").await;
        assert_error(ready, StatusCode::SERVICE_UNAVAILABLE).await;
        let health = server.get("/health").await;
        assert_eq!(
            health.status(),
            StatusCode::OK,
            "the process itself is alive"
        );
    }

    pg.restart();
    let healed = Instant::now();
    loop {
        let status = server.list(&creds).await.status();
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            healed.elapsed() < Duration::from_secs(30),
            "the service did not recover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "served again {:?} after the database came back",
        healed.elapsed()
    );
    let (after, _) = server.derive(ALICE, "{}").await;
    let ids = listed_ids(server.list(&after).await).await;
    assert!(
        ids.contains(&creds.token_id) && ids.contains(&after.token_id),
        "no acknowledged token lost"
    );
}
