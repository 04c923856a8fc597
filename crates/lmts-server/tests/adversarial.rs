//! Adversarial input over real HTTP: each case gets the contract's answer in its shape, changes
//! nothing it should not, and leaves no secret in the service's debug log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
};

use chrono::TimeDelta;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// The debug log of every server in this test binary.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .init();
        buffer
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A server, Alice's token and a victim token, and a check that nothing changed.
struct Scene {
    server: TestServer,
    alice: Creds,
    victim: Creds,
}

impl Scene {
    async fn new() -> Self {
        logs();
        let server = TestServer::start().await;
        let (alice, _) = server.derive(ALICE, r#"{"label":"alice"}"#).await;
        let (victim, _) = server.derive(ALICE, r#"{"label":"victim"}"#).await;
        Self {
            server,
            alice,
            victim,
        }
    }

    /// Both tokens still authenticate, Alice still has exactly `tokens` live ones, and no
    /// secret reached the log.
    async fn unchanged(&self, tokens: usize) {
        let listed = listed_ids(self.server.list(&self.alice).await).await;
        assert_eq!(listed.len(), tokens, "{listed:?}");
        assert_eq!(
            self.server.list(&self.victim).await.status(),
            StatusCode::OK
        );
        let log = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
        for secret in [&self.alice.secret, &self.victim.secret] {
            assert!(
                !log.contains(secret.to_base64().as_str()),
                "a secret reached the log"
            );
        }
    }

    fn signed(&self, method: &str, target: &str, body: &str) -> Vec<(&'static str, String)> {
        sign(&self.alice, now(), method, target, body)
    }
}

fn replace(
    headers: &[(&'static str, String)],
    name: &str,
    value: &str,
) -> Vec<(&'static str, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            (
                *n,
                if *n == name {
                    value.to_owned()
                } else {
                    v.clone()
                },
            )
        })
        .collect()
}

#[tokio::test]
async fn header_abuse_is_refused() {
    let scene = Scene::new().await;
    let target = "/auth/api-tokens";
    let good = scene.signed("GET", target, "");
    let mut duplicated = good.clone();
    duplicated.push(("lmts-signature", good[2].1.clone()));
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (duplicated, "must appear once"),
        (
            replace(&good, "lmts-api-key", &"k".repeat(8 * 1024)),
            "unknown or revoked",
        ),
        (
            replace(
                &good,
                "lmts-api-key",
                &format!("{}' OR '1'='1", scene.alice.token_id),
            ),
            "unknown or revoked",
        ),
        (
            replace(
                &good,
                "lmts-signature",
                // URL-safe alphabet: '-' is never standard base64 (a plain
                // .replace('+', "-") would leave a signature without '+' valid).
                &format!("-{}", &good[2].1[1..])
                    .replace('+', "-")
                    .replace('/', "_"),
            ),
            "not standard base64",
        ),
        (
            replace(&good, "lmts-signature", good[2].1.trim_end_matches('=')),
            "not standard base64",
        ),
        (
            replace(
                &good,
                "lmts-signature",
                &format!("{} {}", &good[2].1[..20], &good[2].1[20..]),
            ),
            "not standard base64",
        ),
        (
            replace(&good, "lmts-timestamp", "9999-12-31T23:59:59.999Z"),
            "ahead of server time",
        ),
        (
            replace(&good, "lmts-timestamp", "1970-01-01T00:00:00.000Z"),
            "behind server time",
        ),
        (
            replace(&good, "lmts-timestamp", "2026-13-45T99:99:99.999Z"),
            "not an RFC 3339",
        ),
        (
            replace(&good, "lmts-api-key", &scene.victim.token_id),
            "does not match",
        ),
    ];
    for (headers, expected) in cases {
        let response = scene
            .server
            .send_with(Method::GET, target, "", &headers)
            .await;
        let message = assert_error(response, StatusCode::UNAUTHORIZED).await;
        assert!(message.contains(expected), "{expected}: {message}");
    }
    scene.unchanged(2).await;
}

#[tokio::test]
async fn header_names_are_case_insensitive_as_http_says() {
    let scene = Scene::new().await;
    let headers: Vec<(&str, String)> = scene
        .signed("GET", "/auth/api-tokens", "")
        .into_iter()
        .map(|(name, value)| {
            (
                if name == "lmts-api-key" {
                    "LMTS-Api-Key"
                } else {
                    name
                },
                value,
            )
        })
        .collect();
    let response = scene
        .server
        .send_with(Method::GET, "/auth/api-tokens", "", &headers)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_non_utf8_header_value_is_refused_not_crashed_on() {
    let scene = Scene::new().await;
    let signed = scene.signed("GET", "/auth/api-tokens", "");
    let mut request = b"GET /auth/api-tokens HTTP/1.1\r\nhost: x\r\nconnection: close\r\nlmts-api-key: tok\xff\xfe\r\n".to_vec();
    for (name, value) in &signed[1..] {
        request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let (status, body) = raw_http(&scene.server, &request).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("visible ASCII"), "{body}");
    scene.unchanged(2).await;
}

#[tokio::test]
async fn path_confusion_and_tampering_after_signing_are_refused() {
    let scene = Scene::new().await;
    let server = &scene.server;
    // Paths that are not the endpoint, even when signed as sent.
    for target in [
        "//auth/api-tokens",
        "/auth/./api-tokens",
        "/auth%2Fapi-tokens",
        "/AUTH/api-tokens",
    ] {
        let headers = scene.signed("GET", target, "");
        let (status, body) = {
            let request = format!(
                "GET {target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{}\r\n",
                headers
                    .iter()
                    .map(|(n, v)| format!("{n}: {v}\r\n"))
                    .collect::<String>()
            );
            raw_http(server, request.as_bytes()).await
        };
        assert_eq!(status, 404, "{target}: {body}");
        assert!(body.contains("\"statusCode\":404"), "{body}");
    }
    // Query reordered after signing.
    let headers = scene.signed("GET", "/auth/api-tokens?a=1&b=2", "");
    let response = server
        .send_with(Method::GET, "/auth/api-tokens?b=2&a=1", "", &headers)
        .await;
    assert_error(response, StatusCode::UNAUTHORIZED).await;
    // The revoke target swapped after signing: the victim is not revoked.
    let headers = scene.signed("DELETE", "/auth/api-tokens/lmts_other", "");
    let target = format!("/auth/api-tokens/{}", scene.victim.token_id);
    assert_error(
        server
            .send_with(Method::DELETE, &target, "", &headers)
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // A body added after signing.
    let headers = scene.signed("DELETE", &target, "");
    assert_error(
        server
            .send_with(Method::DELETE, &target, "{}", &headers)
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // A method override header changes nothing: still a GET, still a list.
    let mut headers = scene.signed("GET", "/auth/api-tokens", "");
    headers.push(("x-http-method-override", "DELETE".into()));
    assert_eq!(
        server
            .send_with(Method::GET, "/auth/api-tokens", "", &headers)
            .await
            .status(),
        StatusCode::OK
    );
    scene.unchanged(2).await;
}

#[tokio::test]
async fn content_length_lies_and_chunked_bodies() {
    let scene = Scene::new().await;
    let server = &scene.server;
    let identity = server.identity_token(ALICE);
    // Declares more than it sends, then closes: refused, nothing derived.
    let request = format!(
        "POST /auth/api-tokens/derive HTTP/1.1\r\nhost: x\r\nidentity: Bearer {identity}\r\ncontent-length: 100\r\nconnection: close\r\n\r\n{{}}"
    );
    let (status, _) = raw_http_half_closed(server, request.as_bytes()).await;
    assert!(
        status == 400 || status == 0,
        "an unfinished body is never accepted: {status}"
    );
    // A chunked signed body verifies over the reassembled bytes; a tampered one does not.
    let body = r#"{"x":1}"#;
    let headers = scene.signed("GET", "/auth/api-tokens", body);
    for (sent, expected) in [(body, 200), (r#"{"x":2}"#, 401)] {
        let request = format!(
            "GET /auth/api-tokens HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked\r\n{}\r\n3\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
            headers.iter().map(|(n, v)| format!("{n}: {v}\r\n")).collect::<String>(),
            &sent[..3],
            sent.len() - 3,
            &sent[3..]
        );
        let (status, body) = raw_http(server, request.as_bytes()).await;
        assert_eq!(status, expected, "{body}");
    }
    scene.unchanged(2).await;
}

/// Like `raw_http`, but half-closes the connection after writing.
async fn raw_http_half_closed(server: &TestServer, request: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(request).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    (
        text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0),
        text,
    )
}

#[tokio::test]
async fn json_edge_cases_in_a_derive_body() {
    let scene = Scene::new().await;
    let server = &scene.server;
    let identity = server.identity_token(ALICE);
    let deep = format!("{{\"label\":{}1{}}}", "[".repeat(5000), "]".repeat(5000));
    let refused: Vec<(String, &str)> = vec![
        (deep, "JSON object"),
        (r#"{"label":1e999}"#.into(), "JSON object"),
        (
            r#"{"label":99999999999999999999999999999}"#.into(),
            "label must be a string",
        ),
        (r#"{"scopes":{"trading":true}}"#.into(), "array of strings"),
        (r#"{"scopes":[null]}"#.into(), "array of strings"),
        (r#"{"label":"x""#.into(), "JSON object"),
        ("\u{feff}{}".into(), "JSON object"),
        (
            r#"{"label":"a","label":"b"}"#.into(),
            "duplicate key \"label\"",
        ),
        (
            format!(r#"{{"label":"{}"}}"#, "ü".repeat(129)),
            "at most 128 characters",
        ),
    ];
    for (body, expected) in refused {
        let message = assert_error(
            server.derive_raw(&identity, &body).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(
            message.contains(expected),
            "{}: {message}",
            &body[..body.len().min(40)]
        );
    }
    // Stray fields grant nothing: not scopes, not another profile.
    let response = server
        .derive_raw(&identity, r#"{"allowedScopes":["withdrawal"],"profile":{"id":999,"account":"0x0"},"tokenId":"mine"}"#)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["scopes"], serde_json::json!(["trading"]));
    assert_eq!(json["profile"]["account"], ALICE);
    assert_ne!(json["tokenId"], "mine");
    // 128 multibyte characters are exactly at the limit; SQL metacharacters are just text.
    let label = format!("{}'); DROP TABLE api_tokens;--", "ü".repeat(100));
    let body = serde_json::json!({ "label": label }).to_string();
    let created: Value = server
        .derive_raw(&identity, &body)
        .await
        .json()
        .await
        .unwrap();
    let creds = Creds {
        token_id: created["tokenId"].as_str().unwrap().to_owned(),
        secret: lmts_core::TokenSecret::from_base64(created["secret"].as_str().unwrap()).unwrap(),
    };
    let listed: Value = server.list(&creds).await.json().await.unwrap();
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["label"] == label.as_str()));
    scene.unchanged(4).await;
}

#[tokio::test]
async fn one_partner_probing_another_gets_nothing() {
    let scene = Scene::new().await;
    let server = &scene.server;
    let (bob, _) = server.derive(BOB, "{}").await;
    let bob_list = listed_ids(server.list(&bob).await).await;
    assert_eq!(
        bob_list,
        std::slice::from_ref(&bob.token_id),
        "Bob sees only his own"
    );
    for target in [
        format!("/auth/api-tokens/{}", scene.alice.token_id),
        format!("/auth/api-tokens/{}", scene.victim.token_id),
        "/auth/api-tokens/' OR 1=1 --".replace(' ', "%20"),
    ] {
        let response = server.signed(&bob, Method::DELETE, &target, "").await;
        assert_error(response, StatusCode::NOT_FOUND).await;
    }
    // Alice's token id with Bob's secret.
    let forged = Creds {
        token_id: scene.alice.token_id.clone(),
        secret: bob.secret.clone(),
    };
    assert_error(server.list(&forged).await, StatusCode::UNAUTHORIZED).await;
    scene.unchanged(2).await;
}

#[tokio::test]
async fn timestamps_with_offsets_inside_the_window_are_fine_and_outside_are_not() {
    let scene = Scene::new().await;
    let at = now().with_timezone(&chrono::FixedOffset::east_opt(14 * 3600).unwrap());
    for (timestamp, expected) in [
        (at.to_rfc3339(), StatusCode::OK),
        (
            (at + TimeDelta::seconds(45)).to_rfc3339(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            (at - TimeDelta::days(365)).to_rfc3339(),
            StatusCode::UNAUTHORIZED,
        ),
    ] {
        let message = lmts_core::CanonicalMessage::new(&timestamp, "GET", "/auth/api-tokens", b"");
        let signature = lmts_core::Signer::new(&scene.alice.secret)
            .sign(&message)
            .to_base64();
        let headers = vec![
            ("lmts-api-key", scene.alice.token_id.clone()),
            ("lmts-timestamp", timestamp.clone()),
            ("lmts-signature", signature),
        ];
        let response = scene
            .server
            .send_with(Method::GET, "/auth/api-tokens", "", &headers)
            .await;
        assert_eq!(response.status(), expected, "{timestamp}");
    }
    scene.unchanged(2).await;
}
