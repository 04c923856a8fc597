//! The published SDKs, unmodified, against `lmts serve`: Python (`limitless-sdk` from PyPI)
//! and TypeScript (`@limitless-exchange/sdk` from npm). The seed document's flow must work as
//! it does against the real API. Each SDK is installed under the target directory on first run.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{path::PathBuf, process::Command};

use common::*;

const PYTHON_SDK: &str = "limitless-sdk==1.3.0";
const TYPESCRIPT_SDK: &str = "@limitless-exchange/sdk@1.1.0";

/// A directory whose `node_modules` holds the published TypeScript SDK, installed once.
fn node_modules_with_sdk() -> PathBuf {
    let prefix = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("official-typescript-sdk");
    let marker = prefix.join("installed");
    if marker.exists() {
        return prefix.join("node_modules");
    }
    std::fs::create_dir_all(&prefix).unwrap();
    let installed = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
        .arg(&prefix)
        .arg(TYPESCRIPT_SDK)
        .output()
        .unwrap_or_else(|e| panic!("npm is needed (Debian: apt-get install nodejs npm): {e}"));
    assert!(
        installed.status.success(),
        "npm install {TYPESCRIPT_SDK} failed (the npm registry must be reachable):\n{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    std::fs::write(&marker, "").unwrap();
    prefix.join("node_modules")
}

/// Runs `command` (a seed-flow script) against a fresh `lmts serve --dev`, where the partner
/// already holds a token with SPEC C2's expiry and addresses: the SDK must parse a list that
/// carries them (unknown fields to it), and list two tokens.
async fn run_seed_flow(mut command: Command) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = Service::start(&data, &dir.path().join("log"), &[]).await;
    let expires_at = lmts_server::clock::Clock::system().now() + chrono::TimeDelta::days(30);
    let body = serde_json::json!({
        "label": "with-lifecycle",
        "expiresAt": lmts_core::signing::format_timestamp(expires_at),
        "allowedIps": ["127.0.0.0/8", "::1"],
    });
    let (_, _, held) = derive_token(&service.base, &data, &body.to_string()).await;
    assert_eq!(
        held["allowedIps"],
        serde_json::json!(["127.0.0.0/8", "::1/128"])
    );
    let output = command
        .env("LMTS_BASE_URL", &service.base)
        .env("LMTS_IDENTITY_TOKEN", identity_token(&data))
        .output()
        .unwrap();
    let (out, err) = (stdout(&output), stderr(&output));
    assert!(output.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("listed 2")
            && out.contains("refused after revoke")
            && out.trim_end().ends_with("OK"),
        "{out}"
    );
}

#[tokio::test]
async fn the_published_python_sdk_runs_the_seed_flow() {
    let mut command =
        Command::new(python_venv("official-python-sdk", PYTHON_SDK).join("bin/python"));
    command.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/official/python_seed_flow.py"
    ));
    run_seed_flow(command).await;
}

#[tokio::test]
async fn the_published_typescript_sdk_runs_the_seed_flow() {
    let mut command = Command::new("node");
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/official/typescript_seed_flow.js"
        ))
        .env("NODE_PATH", node_modules_with_sdk());
    run_seed_flow(command).await;
}
