//! Fault injection against a scripted server: retries, Retry-After, bodies that are not JSON,
//! dropped connections, timeouts, clock skew, and requests that must never be repeated.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use chrono::TimeDelta;
use common::*;
use lmts_sdk::{Client, DeriveApiTokenInput, Error, RetryPolicy};

#[tokio::test]
async fn a_503_then_success_is_retried_and_re_signed() {
    let server = Scripted::start(vec![
        Step::json(503, r#"{"message":"busy"}"#),
        Step::json(200, "[]"),
    ])
    .await;
    let tokens = client(&server.base, fast_retries())
        .api_tokens()
        .list_tokens()
        .await
        .unwrap();
    assert!(tokens.is_empty());
    let recorded = server.recorded();
    assert_eq!(recorded.len(), 2);
    assert!(recorded
        .iter()
        .all(|r| r.header("lmts-signature").is_some()));
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let server = Scripted::start(vec![
        Step::json(
            429,
            r#"{"statusCode":429,"message":"slow down","error":"Too Many Requests"}"#,
        )
        .header("retry-after", "1"),
        Step::json(200, "[]"),
    ])
    .await;
    client(&server.base, fast_retries())
        .api_tokens()
        .list_tokens()
        .await
        .unwrap();
    let recorded = server.recorded();
    assert_eq!(recorded.len(), 2);
    let gap = recorded[1].at - recorded[0].at;
    assert!(gap >= Duration::from_millis(950), "waited only {gap:?}");
}

#[tokio::test]
async fn rate_limit_errors_keep_retry_after_when_retries_run_out() {
    let limited = Step::json(
        429,
        r#"{"statusCode":429,"message":"slow down","error":"Too Many Requests"}"#,
    )
    .header("retry-after", "120")
    .header("x-ratelimit-remaining", "0");
    let server = Scripted::start(vec![limited]).await;
    let error = client(&server.base, fast_retries())
        .api_tokens()
        .list_tokens()
        .await
        .unwrap_err();
    let api = error.api().unwrap();
    assert!(api.is_rate_limited());
    assert_eq!(api.retry_after, Some(Duration::from_secs(120)));
    assert_eq!(api.headers["x-ratelimit-remaining"], "0");
    assert_eq!(
        server.recorded().len(),
        1,
        "a Retry-After beyond the policy is not waited for"
    );
}

#[tokio::test]
async fn a_non_json_error_body_keeps_its_status() {
    let server = Scripted::start(vec![Step {
        status: 502,
        headers: vec![("content-type".into(), "text/html".into())],
        body: "<html>Bad Gateway</html>".into(),
        delay: Duration::ZERO,
    }])
    .await;
    let error = client(&server.base, RetryPolicy::none())
        .api_tokens()
        .list_tokens()
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(502));
    let api = error.api().unwrap();
    assert!(api.is_server_error());
    assert_eq!(api.messages, ["<html>Bad Gateway</html>"]);
    assert!(error.to_string().contains("502"));
}

#[tokio::test]
async fn a_success_body_that_does_not_parse_is_a_decode_error() {
    let server = Scripted::start(vec![Step::json(200, r#"{"not":"a list"}"#)]).await;
    let error = client(&server.base, RetryPolicy::none())
        .api_tokens()
        .list_tokens()
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Decode { status: 200, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_connection_dropped_mid_response_is_retried_for_reads_only() {
    let truncated =
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n[{\"tok";
    let (base, connections) = dropping_server(truncated).await;
    let error = client(&base, fast_retries())
        .api_tokens()
        .list_tokens()
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Transport(_)), "{error:?}");
    assert_eq!(*connections.lock().unwrap(), 3, "a read is retried");

    let (base, connections) = dropping_server(truncated).await;
    let derive = client(&base, fast_retries())
        .api_tokens()
        .derive_token("identity", DeriveApiTokenInput::default())
        .await
        .unwrap_err();
    assert!(matches!(derive, Error::Transport(_)), "{derive:?}");
    assert_eq!(
        *connections.lock().unwrap(),
        1,
        "a derive to a service that never said it makes a keyed derive once is not re-sent"
    );
    // A client that learnt lmts makes a keyed derive once still never repeats another
    // service's POST, whatever its headers promise.
    let server = Scripted::start(vec![
        capabilities_saying_idempotent_derive(),
        Step::json(502, "{}"),
        Step::json(201, "{}"),
    ])
    .await;
    let api = client(&server.base, fast_retries());
    api.api_tokens().get_capabilities("identity").await.unwrap();
    let post = api
        .post("/orders")
        .header("idempotency-key", "k1")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 502);
    assert_eq!(
        server.recorded().len(),
        2,
        "capabilities, and the POST once"
    );
}

#[tokio::test]
async fn a_derive_is_retried_under_one_idempotency_key_once_the_service_says_it_may_be() {
    for status in [502, 503, 504] {
        let server = Scripted::start(vec![
            capabilities_saying_idempotent_derive(),
            Step::json(status, "{}"),
            Step::json(201, DERIVED),
        ])
        .await;
        let api = client(&server.base, fast_retries());
        api.api_tokens().get_capabilities("identity").await.unwrap();
        let derived = api
            .api_tokens()
            .derive_token("identity", DeriveApiTokenInput::default())
            .await
            .unwrap();
        assert_eq!(derived.token_id.as_str(), "lmts_x");
        let keys: Vec<String> = server.recorded()[1..]
            .iter()
            .map(|r| r.header("idempotency-key").unwrap().to_owned())
            .collect();
        assert_eq!(keys.len(), 2, "after {status}");
        assert_eq!(keys[0], keys[1], "one key for both attempts");
        assert!(
            keys[0].starts_with("lmts-sdk-") && keys[0].len() == 41,
            "{}",
            keys[0]
        );
    }
    // A service that never said so (the published API, an instance before SPEC C2) may create
    // a token per attempt: a derive that may have reached it is not repeated.
    let silent = Scripted::start(vec![Step::json(502, "{}"), Step::json(201, DERIVED)]).await;
    let refused = client(&silent.base, fast_retries())
        .api_tokens()
        .derive_token("identity", DeriveApiTokenInput::default())
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(502));
    assert_eq!(silent.recorded().len(), 1);
    // Nor does an API behind a gateway saying it: only the token service speaks for derive.
    let other = Scripted::start(vec![
        Step::json(200, "{}").header("lmts-features", "idempotent-derive"),
        Step::json(502, "{}"),
        Step::json(201, DERIVED),
    ])
    .await;
    let api = client(&other.base, fast_retries());
    api.request(reqwest::Method::GET, "/orders")
        .send()
        .await
        .unwrap();
    let refused = api
        .api_tokens()
        .derive_token("identity", DeriveApiTokenInput::default())
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(502));
    assert_eq!(other.recorded().len(), 2, "the derive was repeated");
    let twice = Scripted::start(vec![Step::json(201, DERIVED), Step::json(201, DERIVED)]).await;
    let api = client(&twice.base, fast_retries());
    for _ in 0..2 {
        api.api_tokens()
            .derive_token("identity", DeriveApiTokenInput::default())
            .await
            .unwrap();
    }
    let recorded = twice.recorded();
    assert_ne!(
        recorded[0].header("idempotency-key"),
        recorded[1].header("idempotency-key"),
        "each derive has a key of its own"
    );
}

#[tokio::test]
async fn a_service_that_ignores_the_restrictions_asked_for_gets_its_token_revoked() {
    let restricted = DeriveApiTokenInput {
        allowed_ips: vec!["203.0.113.0/24".parse().unwrap()],
        ..DeriveApiTokenInput::default()
    };
    let expiring = DeriveApiTokenInput {
        expires_at: Some(lmts_sdk::clock::Clock::system().now() + TimeDelta::days(1)),
        ..DeriveApiTokenInput::default()
    };
    for (input, field) in [(restricted, "allowedIps"), (expiring, "expiresAt")] {
        let server = Scripted::start(vec![
            Step::json(201, DERIVED),
            Step::json(200, r#"{"message":"API token revoked"}"#),
        ])
        .await;
        let error = client(&server.base, fast_retries())
            .api_tokens()
            .derive_token("identity", input)
            .await
            .unwrap_err();
        let Error::Unsupported(message) = &error else {
            panic!("{error:?}");
        };
        assert!(
            message.contains(&format!("ignored {field}")) && message.contains("it was revoked"),
            "{message}"
        );
        let recorded = server.recorded();
        assert_eq!(recorded.len(), 2);
        assert_eq!(
            (recorded[1].method.as_str(), recorded[1].target.as_str()),
            ("DELETE", "/auth/api-tokens/lmts_x")
        );
        assert!(
            recorded[1].header("lmts-signature").is_some(),
            "signed by the new token"
        );
    }
}

#[tokio::test]
async fn a_derive_or_revoke_failing_after_sending_is_not_retried_by_default() {
    for status in [500, 502, 504] {
        let server =
            Scripted::start(vec![Step::json(status, "{}"), Step::json(201, DERIVED)]).await;
        let error = client(&server.base, fast_retries())
            .api_tokens()
            .derive_token("identity", DeriveApiTokenInput::default())
            .await
            .unwrap_err();
        assert_eq!(error.status(), Some(status));
        assert_eq!(server.recorded().len(), 1, "derive after {status}");

        let server = Scripted::start(vec![
            Step::json(status, "{}"),
            Step::json(200, r#"{"message":"ok"}"#),
        ])
        .await;
        client(&server.base, fast_retries())
            .api_tokens()
            .revoke_token("lmts_x")
            .await
            .unwrap_err();
        assert_eq!(server.recorded().len(), 1, "revoke after {status}");
    }
    let (base, connections) = dropping_server("").await;
    client(&base, fast_retries())
        .api_tokens()
        .revoke_token("lmts_x")
        .await
        .unwrap_err();
    assert_eq!(*connections.lock().unwrap(), 1);
}

#[tokio::test]
async fn a_derive_refused_with_503_or_429_is_retried() {
    let server = Scripted::start(vec![Step::json(503, "{}"), Step::json(201, DERIVED)]).await;
    let derived = client(&server.base, fast_retries())
        .api_tokens()
        .derive_token("identity", DeriveApiTokenInput::default())
        .await
        .unwrap();
    assert_eq!(derived.token_id.as_str(), "lmts_x");
    assert_eq!(server.recorded().len(), 2);
}

#[tokio::test]
async fn a_refused_connection_is_a_transport_error_even_for_derive() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let error = client(&base, fast_retries())
        .api_tokens()
        .derive_token("identity", DeriveApiTokenInput::default())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Transport(_)), "{error:?}");
}

#[tokio::test]
async fn a_slow_server_hits_the_timeout() {
    let server = Scripted::start(vec![Step::json(200, "[]").delayed(Duration::from_secs(5))]).await;
    let client = Client::builder()
        .base_url(&server.base)
        .credentials(credentials())
        .retry_policy(RetryPolicy::none())
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let error = client.api_tokens().list_tokens().await.unwrap_err();
    assert!(matches!(error, Error::Timeout(_)), "{error:?}");
}

#[tokio::test]
async fn a_skewed_server_date_teaches_the_offset_and_the_request_is_retried_once() {
    let server_time = now() + TimeDelta::seconds(120);
    let server = Scripted::start(vec![window_refusal(server_time), Step::json(200, "[]")]).await;
    let client = client(&server.base, RetryPolicy::none());
    client.api_tokens().list_tokens().await.unwrap();
    let recorded = server.recorded();
    assert_eq!(recorded.len(), 2);
    let second =
        lmts_sdk::signing::parse_timestamp(recorded[1].header("lmts-timestamp").unwrap()).unwrap();
    assert!(
        (second - server_time).abs() < TimeDelta::seconds(3),
        "{second} vs {server_time}"
    );
    assert!((client.clock_offset() - TimeDelta::seconds(120)).abs() < TimeDelta::seconds(3));

    // A 401 whose Date agrees with the (corrected) clock is not a skew: no second retry.
    let server2 = Scripted::start(vec![window_refusal(server_time)]).await;
    let fresh = Client::builder()
        .base_url(&server2.base)
        .credentials(credentials())
        .clock_offset(TimeDelta::seconds(120))
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    assert!(fresh
        .api_tokens()
        .list_tokens()
        .await
        .unwrap_err()
        .api()
        .unwrap()
        .is_authentication());
    assert_eq!(server2.recorded().len(), 1);
}

#[tokio::test]
async fn one_scheme_per_request_and_extra_headers() {
    let server = Scripted::start(vec![
        Step::json(
            200,
            r#"{"partnerProfileId":1,"tokenManagementEnabled":true,"allowedScopes":["trading"]}"#,
        ),
        Step::json(200, "[]"),
    ])
    .await;
    let client = Client::builder()
        .base_url(&server.base)
        .credentials(credentials())
        .header("x-partner", "acme")
        .user_agent("acme-bot/1.0")
        .build()
        .unwrap();
    client
        .api_tokens()
        .get_capabilities("id-token")
        .await
        .unwrap();
    client.api_tokens().list_tokens().await.unwrap();
    let recorded = server.recorded();
    let (caps, list) = (&recorded[0], &recorded[1]);
    assert_eq!(caps.header("identity"), Some("Bearer id-token"));
    assert!(caps.header("lmts-api-key").is_none() && caps.header("lmts-signature").is_none());
    assert!(list.header("identity").is_none());
    assert_eq!(list.header("lmts-api-key"), Some("lmts_t"));
    for request in &recorded {
        assert_eq!(request.header("x-partner"), Some("acme"));
        assert_eq!(request.header("user-agent"), Some("acme-bot/1.0"));
    }
}

/// A capabilities answer that says lmts makes a derive under one Idempotency-Key once.
fn capabilities_saying_idempotent_derive() -> Step {
    Step::json(
        200,
        r#"{"partnerProfileId":3,"tokenManagementEnabled":true,"allowedScopes":["trading"]}"#,
    )
    .header("lmts-features", "idempotent-derive")
}
