//! Two `lmts serve` processes on one PostgreSQL database, sharing a master key file, as the
//! README's deployment section describes; `lmts partners` administers them both.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

#[tokio::test]
async fn two_processes_share_tokens_settings_and_revocations() {
    let url = lmts_testkit::PgServer::shared().database().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let key = write_master_key(dir.path());
    let args = [
        "--database-url",
        url.as_str(),
        "--master-key-file",
        key.as_str(),
    ];
    let a = Service::start(&data, &dir.path().join("a.log"), &args).await;
    let b = Service::start(&data, &dir.path().join("b.log"), &args).await;

    let set = lmts(&[
        "partners",
        "set",
        "--account",
        ALICE,
        "--allowed-scopes",
        "trading,withdrawal",
        "--database-url",
        &url,
        "--output",
        "json",
    ]);
    assert!(set.status.success(), "{}", stderr(&set));

    let (token_id, secret, derived) =
        derive_token(&a.base, &data, r#"{"scopes":["trading","withdrawal"]}"#).await;
    assert_eq!(
        derived["scopes"],
        serde_json::json!(["trading", "withdrawal"]),
        "{derived}"
    );
    let token_id = token_id.as_str();

    assert_eq!(
        signed_status(&b.base, "GET", "/auth/api-tokens", token_id, &secret)
            .await
            .unwrap(),
        200
    );
    let target = format!("/auth/api-tokens/{token_id}");
    assert_eq!(
        signed_status(&a.base, "DELETE", &target, token_id, &secret)
            .await
            .unwrap(),
        200
    );
    let revoked = Instant::now();
    while signed_status(&b.base, "GET", "/auth/api-tokens", token_id, &secret)
        .await
        .unwrap()
        != 401
    {
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "B still accepts the revoked token"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let shown = lmts(&[
        "partners",
        "show",
        "--account",
        ALICE,
        "--database-url",
        &url,
        "--output",
        "json",
    ]);
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["profileId"], derived["profile"]["id"]);
}
