//! `lmts gateway` as operators run it: behind a real nginx, two of them on one PostgreSQL
//! with the token service, and signed by the published Python SDK's own HMAC helper.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{collections::BTreeSet, path::Path};

use common::*;
use lmts_core::TokenSecret;
use lmts_testkit::{nginx::Nginx, policy::SPEC_EXAMPLE, upstream::RecordingUpstream};

const PYTHON_SDK: &str = "limitless-sdk==1.3.0";

/// SPEC C1's example, with the reads of orders a trading token may make.
const READ_ORDERS: &str =
    "\n[[route]]\nmethod = \"GET\"\npath = \"/orders/**\"\nscopes = [\"trading\"]\n";

fn write_policy(dir: &Path) -> String {
    let path = dir.join("policy.toml");
    std::fs::write(&path, format!("{SPEC_EXAMPLE}{READ_ORDERS}")).unwrap();
    path.to_str().unwrap().to_owned()
}

/// A signed `GET target` through `base`: its status and the backend nginx says served it.
async fn signed_get_via(
    base: &str,
    target: &str,
    token_id: &str,
    secret: &TokenSecret,
) -> (u16, String) {
    let now = lmts_sdk::clock::Clock::system().now();
    let headers = lmts_core::Signer::new(secret).sign_request(token_id, now, "GET", target, b"");
    let mut request = reqwest::Client::new().get(format!("{base}{target}"));
    for (name, value) in headers.pairs() {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    let backend = response
        .headers()
        .get("x-upstream-addr")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (response.status().as_u16(), backend)
}

#[tokio::test]
async fn behind_nginx_two_gateways_on_postgres_refuse_a_revoked_token_on_the_next_request() {
    let url = lmts_testkit::PgServer::shared().database().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let (key, policy) = (write_master_key(dir.path()), write_policy(dir.path()));
    let upstream = RecordingUpstream::start().await.unwrap();
    let store = ["--database-url", &url, "--master-key-file", &key];
    let tokens = Service::start(&data, &dir.path().join("serve.log"), &store).await;
    let mut gateway_args = store.to_vec();
    let upstream_url = upstream.url();
    gateway_args.extend(["--upstream", &upstream_url, "--policy", &policy]);
    let first = Service::gateway(&data, &dir.path().join("g1.log"), &gateway_args).await;
    let second = Service::gateway(&data, &dir.path().join("g2.log"), &gateway_args).await;
    let backends = [&first, &second].map(|g| g.base.trim_start_matches("http://").parse().unwrap());
    let nginx = Nginx::load_balancer(&backends);

    let (token_id, secret, _) = derive_token(&tokens.base, &data, "{}").await;
    // Both gateways serve the token (and so cache it) before the revoke.
    let mut served = BTreeSet::new();
    for i in 0..4 {
        let (status, backend) =
            signed_get_via(&nginx.url(), &format!("/orders/{i}"), &token_id, &secret).await;
        assert_eq!(status, 200);
        served.insert(backend);
    }
    assert_eq!(served.len(), 2, "nginx used both gateways: {served:?}");
    assert_eq!(upstream.count(), 4);
    let seen = upstream.seen();
    assert_eq!(seen[0].header("x-lmts-token-id"), Some(token_id.as_str()));

    let revoked = signed_status(
        &tokens.base,
        "DELETE",
        &format!("/auth/api-tokens/{token_id}"),
        &token_id,
        &secret,
    )
    .await;
    assert_eq!(revoked, Some(200));
    let mut refused_by = BTreeSet::new();
    for i in 0..4 {
        let (status, backend) = signed_get_via(
            &nginx.url(),
            &format!("/orders/after-{i}"),
            &token_id,
            &secret,
        )
        .await;
        assert_eq!(status, 401, "a revoked token passed {backend}");
        refused_by.insert(backend);
    }
    assert_eq!(refused_by, served, "each gateway refused the revoked token");
    assert_eq!(
        upstream.count(),
        4,
        "nothing reached the upstream after the revoke"
    );
}

#[tokio::test]
async fn the_published_python_sdk_signs_requests_that_pass_lmts_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let upstream = RecordingUpstream::start().await.unwrap();
    let tokens = Service::start(&data, &dir.path().join("serve.log"), &[]).await;
    let (token_id, secret, _) = derive_token(&tokens.base, &data, "{}").await;
    let policy = write_policy(dir.path());
    let gateway = Service::gateway(
        &data,
        &dir.path().join("gateway.log"),
        &["--upstream", &upstream.url(), "--policy", &policy],
    )
    .await;

    let python = python_venv("official-python-sdk", PYTHON_SDK).join("bin/python");
    // Asynchronously: the upstream serves on this test's runtime meanwhile.
    let output = tokio::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/official/python_gateway.py"
        ))
        .env("LMTS_GATEWAY_URL", &gateway.base)
        .env("LMTS_TOKEN_ID", &token_id)
        .env("LMTS_SECRET", secret.to_base64().as_str())
        .output()
        .await
        .unwrap();
    let (out, err) = (stdout(&output), stderr(&output));
    assert!(output.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("withdraw refused") && out.trim_end().ends_with("OK"),
        "{out}"
    );
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1, "only the order reached the upstream");
    assert_eq!(seen[0].target, "/orders");
    assert_eq!(seen[0].header("x-lmts-token-id"), Some(token_id.as_str()));
    assert_eq!(seen[0].header("x-lmts-scopes"), Some("trading"));
}

#[test]
fn a_policy_that_does_not_parse_stops_the_gateway_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "default = \"deny\"\n\n[[route]]\nmethod = \"POST\"\npath = \"/orders\"\nscopes = [\"tradng\"]\n",
    )
    .unwrap();
    let output = lmts(&[
        "gateway",
        "--upstream",
        "http://127.0.0.1:9",
        "--policy",
        policy.to_str().unwrap(),
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("line 3") && message.contains("tradng"),
        "{message}"
    );

    let good = write_policy(dir.path());
    let output = lmts(&[
        "gateway",
        "--upstream",
        "https://upstream.example/api",
        "--policy",
        &good,
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("must not have a path"),
        "{}",
        stderr(&output)
    );

    let output = lmts(&["serve", "--dev", "--upstream", "http://127.0.0.1:9"]);
    assert_eq!(output.status.code(), Some(2), "--upstream without --policy");
    assert!(stderr(&output).contains("--policy"), "{}", stderr(&output));
}
