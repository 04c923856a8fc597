//! The service refuses to start, naming the problem, rather than serve with keys anyone on
//! the host could have replaced or with a master key that cannot open the tokens it holds
//! (issue #12, findings 3 and 4).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{fs, os::unix::fs::PermissionsExt};

use common::*;
use lmts_server::server::{Server, ServerConfig};
use reqwest::StatusCode;

const OTHER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// The error `Server::bind` answers for `dir` configured by `configure`.
async fn refusal(dir: &std::path::Path, configure: impl FnOnce(&mut ServerConfig)) -> String {
    let mut config = ServerConfig::new(dir);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.dev = true;
    configure(&mut config);
    let error = Server::bind(config)
        .await
        .expect_err("the service refuses to start");
    lmts_core::error_chain::error_chain(&error).to_string()
}

/// A data directory holding one live token, the server stopped.
async fn directory_with_a_token() -> tempfile::TempDir {
    let server = TestServer::start().await;
    let (creds, _) = server.derive(ALICE, "{}").await;
    assert_eq!(server.list(&creds).await.status(), StatusCode::OK);
    server.stop().await
}

#[tokio::test]
async fn a_lost_master_key_is_not_replaced_while_tokens_need_it() {
    let dir = directory_with_a_token().await;
    fs::remove_file(dir.path().join("master.key")).unwrap();
    let message = refusal(dir.path(), |_| {}).await;
    assert!(message.contains("master key"), "{message}");
    assert!(message.contains("master.key is missing"), "{message}");
    assert!(
        !dir.path().join("master.key").exists(),
        "no new key was generated"
    );
}

#[tokio::test]
async fn secrets_under_a_key_the_service_lacks_stop_the_start() {
    let dir = directory_with_a_token().await;
    let message = refusal(dir.path(), |config| {
        config.master_key = Some(OTHER_KEY.to_owned().into());
    })
    .await;
    assert!(message.contains("1 live token secret(s)"), "{message}");
    assert!(message.contains("--retired-master-key-file"), "{message}");
}

#[tokio::test]
async fn an_open_data_directory_or_key_file_stops_the_start() {
    let dir = directory_with_a_token().await;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let message = refusal(dir.path(), |_| {}).await;
    assert!(message.contains("lets others write into it"), "{message}");

    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let key = dir.path().join("master.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o620)).unwrap();
    let message = refusal(dir.path(), |_| {}).await;
    assert!(message.contains("lets others read it"), "{message}");

    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let dev_key = dir.path().join("dev-identity.key");
    fs::set_permissions(&dev_key, fs::Permissions::from_mode(0o666)).unwrap();
    let message = refusal(dir.path(), |_| {}).await;
    assert!(message.contains("dev issuer"), "{message}");

    fs::set_permissions(&dev_key, fs::Permissions::from_mode(0o600)).unwrap();
    let server = TestServer::start_in(dir, |_| {}).await;
    assert_eq!(
        server.get("/ready").await.status(),
        StatusCode::OK,
        "starts once mended"
    );
}

#[tokio::test]
async fn a_new_master_key_is_generated_only_for_an_empty_database() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir, |_| {}).await;
    assert!(server.dir.path().join("master.key").exists());
    let dir = server.stop().await;
    fs::remove_file(dir.path().join("master.key")).unwrap();
    let server = TestServer::start_in(dir, |_| {}).await;
    assert!(
        server.dir.path().join("master.key").exists(),
        "no token needed the old key, so a new one is made"
    );
}

#[tokio::test]
async fn a_body_limit_over_the_body_budget_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let message = refusal(dir.path(), |config| {
        config.service.max_body_bytes = 2 * 1024 * 1024;
        config.service.body_budget_bytes = 1024 * 1024;
    })
    .await;
    assert!(message.contains("over the budget"), "{message}");
}
