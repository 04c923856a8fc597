//! Two `lmts serve` processes on one PostgreSQL database, sharing a master key file, as the
//! README's deployment section describes; `lmts partners` administers them both.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use lmts_core::TokenSecret;
use serde_json::Value;

#[tokio::test]
async fn two_processes_share_tokens_settings_and_revocations() {
    let url = lmts_testkit::PgServer::shared().database().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let key = dir.path().join("master.key");
    std::fs::write(&key, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let args = [
        "--database-url",
        url.as_str(),
        "--master-key-file",
        key.to_str().unwrap(),
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

    let identity = identity_token(&data);
    let derived: Value = reqwest::Client::new()
        .post(format!("{}/auth/api-tokens/derive", a.base))
        .header("identity", format!("Bearer {identity}"))
        .body(r#"{"scopes":["trading","withdrawal"]}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        derived["scopes"],
        serde_json::json!(["trading", "withdrawal"]),
        "{derived}"
    );
    let token_id = derived["tokenId"].as_str().unwrap();
    let secret = TokenSecret::from_base64(derived["secret"].as_str().unwrap()).unwrap();

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
