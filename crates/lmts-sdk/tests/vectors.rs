//! SPEC A4's vectors through the SDK's own request path: the headers it actually sends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use lmts_sdk::{clock::Clock, signing::parse_timestamp, Client, HmacCredentials, RetryPolicy};

#[tokio::test]
async fn list_and_revoke_send_the_vector_signatures() {
    let server = Scripted::start(vec![
        Step::json(200, "[]"),
        Step::json(200, r#"{"message":"revoked"}"#),
    ])
    .await;
    let at = parse_timestamp("2026-03-23T12:34:56.789Z").unwrap();
    let client = Client::builder()
        .base_url(&server.base)
        .clock(Clock::from_fn(move || at))
        .retry_policy(RetryPolicy::none())
        .credentials(HmacCredentials::new("tok", "c3VwZXItc2VjcmV0LWtleQ==").unwrap())
        .build()
        .unwrap();
    client.api_tokens().list_tokens().await.unwrap();
    assert_eq!(
        client
            .api_tokens()
            .revoke_token("tok/with spaces")
            .await
            .unwrap(),
        "revoked"
    );

    let recorded = server.recorded();
    let list = &recorded[0];
    assert_eq!(
        (list.method.as_str(), list.target.as_str()),
        ("GET", "/auth/api-tokens")
    );
    assert_eq!(list.header("lmts-api-key"), Some("tok"));
    assert_eq!(
        list.header("lmts-timestamp"),
        Some("2026-03-23T12:34:56.789Z")
    );
    assert_eq!(
        list.header("lmts-signature"),
        Some("+hEey+b2RTdi7km3zB9tt+xQ2XYz/XI0DT2XxgGStJs=")
    );
    assert!(list.body.is_empty());

    let revoke = &recorded[1];
    assert_eq!(revoke.method, "DELETE");
    assert_eq!(revoke.target, "/auth/api-tokens/tok%2Fwith%20spaces");
    assert_eq!(
        revoke.header("lmts-signature"),
        Some("Q1YXA9r+rZBy6+svRcnEFd17G3a0bpf0YN5YPrL/VTk=")
    );
}
