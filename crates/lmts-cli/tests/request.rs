//! `lmts request` against a loopback server that verifies every signature and records what it
//! received (lmts-testkit's verifying `RecordingUpstream`), in every build: the client-only one
//! (`--no-default-features`) as much as the full one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use lmts_core::HmacCredentials;
use lmts_testkit::upstream::RecordingUpstream;
use serde_json::Value;

const SECRET: &str = "c3VwZXItc2VjcmV0LWtleQ==";

async fn recorder() -> RecordingUpstream {
    RecordingUpstream::verifying(&HmacCredentials::new("lmts_cli", SECRET).unwrap())
        .await
        .unwrap()
}

/// Runs `lmts` against the recorder with the environment's credentials, `secret` signing.
fn run(
    recorder: &RecordingUpstream,
    secret: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> std::process::Output {
    let url = recorder.url();
    let env = [
        ("LIMITLESS_API_URL", url.as_str()),
        ("LIMITLESS_API_TOKEN_ID", "lmts_cli"),
        ("LIMITLESS_API_TOKEN_SECRET", secret),
        ("NO_COLOR", "1"),
    ];
    lmts_with(args, &env, stdin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_from_a_file_is_sent_and_signed_byte_for_byte() {
    let recorder = recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("order.json");
    let order = "{\"market\":\"btc\",\n \"note\":\"ünïcode\"}\n";
    std::fs::write(&file, order).unwrap();
    let body_arg = format!("@{}", file.display());
    let output = run(
        &recorder,
        SECRET,
        &[
            "request",
            "POST",
            "/orders/café?market=btc%20usd",
            "--body",
            &body_arg,
            "-H",
            "x-trace: t1",
        ],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let (head, body) = text.split_once("\n\n").unwrap();
    assert!(head.starts_with("200 OK\n"), "{text}");
    assert!(
        head.lines().any(|line| line == "x-recorder: verified"),
        "{text}"
    );
    let echo: Value = serde_json::from_str(body).unwrap();
    assert_eq!(echo["target"], "/orders/caf%C3%A9?market=btc%20usd");

    let received = recorder.seen();
    assert_eq!(received.len(), 1);
    let post = &received[0];
    assert_eq!(post.verdict, Some(Ok(())));
    assert_eq!(post.method, "POST");
    assert_eq!(post.body, order.as_bytes());
    assert_eq!(post.header("content-type"), Some("application/json"));
    assert_eq!(post.header("x-trace"), Some("t1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_from_standard_input_and_the_answer_as_one_json_object() {
    let recorder = recorder().await;
    let output = run(
        &recorder,
        SECRET,
        &[
            "--output",
            "json",
            "request",
            "patch",
            "/orders/7",
            "--body",
            "@-",
            "-H",
            "Content-Type: text/plain",
        ],
        Some("size=2\n"),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let answer: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(answer["status"], 200);
    assert_eq!(answer["headers"]["x-recorder"], "verified");
    assert_eq!(answer["body"]["method"], "PATCH");
    assert_eq!(answer["body"]["body"], "size=2\n");
    let received = recorder.seen();
    assert_eq!(received[0].verdict, Some(Ok(())));
    assert_eq!(received[0].body, b"size=2\n");
    assert_eq!(received[0].header("content-type"), Some("text/plain"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_prints_the_answer_and_exits_4() {
    let recorder = recorder().await;
    let output = run(
        &recorder,
        "c2VjcmV0",
        &["request", "GET", "/portfolio"],
        None,
    );
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.starts_with("401 Unauthorized\n") && text.contains("signature does not match"),
        "{text}"
    );
    let message = stderr(&output);
    assert!(
        message.contains("401") && message.contains("hint:"),
        "{message}"
    );

    let quiet = run(
        &recorder,
        "c2VjcmV0",
        &["request", "GET", "/portfolio", "--quiet"],
        None,
    );
    assert_eq!(quiet.status.code(), Some(4));
    let body: Value = serde_json::from_slice(&quiet.stdout).unwrap();
    assert_eq!(body["statusCode"], 401, "--quiet prints the body alone");
    assert_eq!(recorder.seen().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_exit_3_and_nothing_is_sent() {
    let recorder = recorder().await;
    for args in [
        &["request", "GET", "orders"][..],
        &["request", "GET", "/x", "-H", "no colon"],
        &["request", "GET", "/x", "-H", "lmts-signature: forged"],
        &["request", "G T", "/x"],
        &["request", "POST", "/x", "--body", "@/no/such/file"],
    ] {
        let output = run(&recorder, SECRET, args, None);
        assert_eq!(
            output.status.code(),
            Some(3),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    assert!(recorder.seen().is_empty());
}
