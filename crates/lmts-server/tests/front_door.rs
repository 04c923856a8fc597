//! What an anonymous client can make the service do (issue #12): a request that cannot be
//! valid is refused before its body is read; bodies are read against a deadline and a
//! process-wide budget; guessing costs the guesser (a per-address failure budget); an unknown
//! id and a bad signature get one answer; far timestamps are judged without overflow.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use reqwest::{Method, StatusCode};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Longer than any answer these tests wait for, shorter than the body timeout they set.
const PATIENCE: Duration = Duration::from_secs(15);

/// A request head for `GET /auth/api-tokens` with `headers`, announcing a body of `length`
/// bytes that the test then holds back.
fn head_announcing(headers: &[(&str, String)], length: usize) -> String {
    let mut head =
        format!("GET /auth/api-tokens HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// Sends `head` and reads the answer's status line, without ever sending the body.
async fn status_without_body(server: &TestServer, head: &str) -> String {
    let mut stream = TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let read = tokio::time::timeout(PATIENCE, stream.read(&mut answer))
        .await
        .expect("answered while the body was still held back")
        .unwrap();
    String::from_utf8_lossy(&answer[..read])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_request_that_cannot_be_valid_is_refused_before_its_body() {
    let (server, creds) = TestServer::with_token(|config| {
        config.service.body_timeout = Duration::from_secs(120);
    })
    .await;
    let unknown = Creds {
        token_id: "lmts_made_up".into(),
        secret: creds.secret.clone(),
    };
    let made_up = sign(&unknown, now(), "GET", "/auth/api-tokens", "");
    let status = status_without_body(&server, &head_announcing(&made_up, 60_000)).await;
    assert!(status.contains(" 401 "), "{status}");

    let stale = sign(
        &creds,
        now() - chrono::TimeDelta::minutes(5),
        "GET",
        "/auth/api-tokens",
        "",
    );
    let status = status_without_body(&server, &head_announcing(&stale, 60_000)).await;
    assert!(status.contains(" 401 "), "outside the window: {status}");
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408() {
    let (server, creds) = TestServer::with_token(|config| {
        config.service.body_timeout = Duration::from_secs(1);
    })
    .await;
    let headers = sign(&creds, now(), "GET", "/auth/api-tokens", "{}");
    let status = status_without_body(&server, &head_announcing(&headers, 2)).await;
    assert!(status.contains(" 408 "), "{status}");
}

#[tokio::test]
async fn bodies_in_flight_are_bounded_for_the_whole_process() {
    let (server, creds) = TestServer::with_token(|config| {
        config.service.body_budget_bytes = 1000;
        config.service.max_body_bytes = 1000;
        config.service.body_timeout = Duration::from_secs(120);
    })
    .await;
    // One request holds 800 bytes of the budget with a body it never finishes. A probe sent
    // while the holder's head is still being admitted may take 300 bytes first, and then the
    // holder is the one refused: it is sent again, with a pause before each probe.
    let holder = sign(&creds, now(), "GET", "/auth/api-tokens", "");
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut held = TcpStream::connect(&address).await.unwrap();
    let mut refused = None;
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..50 {
        held.write_all(head_announcing(&holder, 800).as_bytes())
            .await
            .unwrap();
        held.write_all(b"{").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let response = server
            .signed(&creds, Method::GET, "/auth/api-tokens", &"x".repeat(300))
            .await;
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            refused = Some(response);
            break;
        }
        *seen.entry(response.status().as_u16()).or_insert(0) += 1;
        held = TcpStream::connect(&address).await.unwrap();
    }
    let refused = refused
        .unwrap_or_else(|| panic!("a body over the remaining budget is refused; saw {seen:?}"));
    assert!(refused.headers().contains_key("retry-after"));
    let message = assert_error(refused, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(message.contains("request bodies in flight"), "{message}");
    assert_eq!(
        server.list(&creds).await.status(),
        StatusCode::OK,
        "bodiless requests need no budget"
    );
    drop(held);
}

#[tokio::test]
async fn an_unknown_id_and_a_bad_signature_get_one_answer() {
    let (server, creds) = TestServer::with_token(|_| {}).await;
    let unknown = Creds {
        token_id: "lmts_AAAAAAAAAAAAAAAAAAAAAAAA".into(),
        secret: creds.secret.clone(),
    };
    let forged = Creds {
        token_id: creds.token_id.clone(),
        secret: lmts_core::TokenSecret::from_bytes(vec![7; 32]).unwrap(),
    };
    let for_unknown = assert_error(server.list(&unknown).await, StatusCode::UNAUTHORIZED).await;
    let for_forged = assert_error(server.list(&forged).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(for_unknown, for_forged, "no oracle for live ids");
}

#[tokio::test]
async fn guessing_costs_the_guesser() {
    let (server, creds) = TestServer::with_token(|config| {
        config.service.auth_failure_limit = Some(lmts_server::service::RateLimit {
            per_minute: 1,
            burst: 3,
        });
    })
    .await;
    let (uncached, _) = server.derive(ALICE, "{}").await;
    assert_eq!(
        server.list(&creds).await.status(),
        StatusCode::OK,
        "now cached"
    );
    let guess = Creds {
        token_id: "lmts_guess".into(),
        secret: creds.secret.clone(),
    };
    for _ in 0..3 {
        assert_error(server.list(&guess).await, StatusCode::UNAUTHORIZED).await;
    }
    let refused = server.list(&guess).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(
        server.list(&uncached).await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the address is refused before any lookup in the store, valid credentials or not"
    );
    assert_eq!(
        server.list(&creds).await.status(),
        StatusCode::OK,
        "a token already cached costs nothing to find: a partner's bots keep working"
    );
    let identity = server.identity_token(BOB);
    assert_eq!(
        server.capabilities(&identity).await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "identity requests from the address too"
    );
}

#[tokio::test]
async fn far_timestamps_are_judged_without_overflow() {
    let (server, creds) = TestServer::with_token(|_| {}).await;
    for (timestamp, direction) in [
        ("1000-01-01T00:00:00.000Z", "behind"),
        ("0000-01-01T00:00:00.000Z", "behind"),
        ("9999-12-31T23:59:59.999Z", "ahead of"),
    ] {
        let mut headers = sign(&creds, now(), "GET", "/auth/api-tokens", "");
        headers[1].1 = timestamp.to_owned();
        let response = server
            .send_with(Method::GET, "/auth/api-tokens", "", &headers)
            .await;
        let message = assert_error(response, StatusCode::UNAUTHORIZED).await;
        assert!(message.contains(direction), "{timestamp}: {message}");
    }
}
