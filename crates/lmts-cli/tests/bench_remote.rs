//! `lmts bench --base-url` against a deployment it did not start: with an identity token, and
//! with saved credentials alone (which it never revokes); progress each second.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::{engine::general_purpose::STANDARD, Engine as _};
use common::*;

#[tokio::test]
async fn bench_drives_an_existing_deployment_with_an_identity_or_saved_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = Service::start(
        &data,
        &dir.path().join("log"),
        &["--rate-limit-per-minute", "0"],
    )
    .await;
    let bench = |env: &[(&str, &str)]| bench_remote(&service.base, &["--duration-secs", "2"], env);
    let identity = identity_token(&data);
    let with_identity = bench(&[("LIMITLESS_IDENTITY_TOKEN", identity.as_str())]);
    assert_benched(&with_identity);
    assert!(
        stderr(&with_identity).contains("s of 2"),
        "progress: {}",
        stderr(&with_identity)
    );
    assert!(stderr(&with_identity).contains(&format!("the deployment at {}", service.base)));

    let (token_id, secret, _) = derive_token(&service.base, &data, "{}").await;
    let encoded = STANDARD.encode(secret.expose_secret());
    let saved = bench(&[
        ("LIMITLESS_API_TOKEN_ID", token_id.as_str()),
        ("LIMITLESS_API_TOKEN_SECRET", encoded.as_str()),
    ]);
    assert_benched(&saved);
    let results: serde_json::Value = serde_json::from_str(&stdout(&saved)).unwrap();
    assert_eq!(results[1]["scenario"], "list");
    let status = signed_status(&service.base, "GET", "/auth/api-tokens", &token_id, &secret).await;
    assert_eq!(
        status,
        Some(200),
        "saved credentials are never revoked by the bench"
    );
}
